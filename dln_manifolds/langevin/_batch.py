"""Batched helpers shared by the samplers (private).

Everything here acts on stacks of matrices with arbitrary leading axes, so
that an ensemble of B paths is advanced with a handful of batched LAPACK
calls (``numpy.linalg.svd`` and ``eigh`` work on stacks) instead of a Python
loop over paths.
"""

from __future__ import annotations

import numpy as np

from .._checks import as_array, as_layer_stack, as_matrix_batch, check_count, check_real_scalar


def as_real_points(X, name: str = "X") -> np.ndarray:
    """Validate a real matrix or stack of matrices of shape (..., d, d); return float64."""
    arr = as_array(X, name, batch=True, real=True)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (..., d, d), got {arr.shape}")
    arr = as_matrix_batch(arr, arr.shape[-1], name)
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} must have d >= 1")
    return arr


def check_real(value, name: str, *, positive: bool = False, allow_zero: bool = False) -> float:
    """Validate a finite real scalar (positive, or non-negative when ``allow_zero``)."""
    value = check_real_scalar(value, name)
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {kind}, got {value}")
    return value


def ensemble(X0, n_paths, core_ndim: int, name: str) -> np.ndarray:
    """Broadcast one starting point (core shape) to ``n_paths`` copies, or validate a batch."""
    X0 = np.asarray(X0)
    X0 = X0.astype(np.result_type(X0.dtype, np.float64), copy=False)
    if X0.ndim == core_ndim:
        n = 1 if n_paths is None else check_count(n_paths, "n_paths", integral=True)
        return np.repeat(X0[None], n, axis=0)
    if X0.ndim == core_ndim + 1:
        if n_paths is not None and check_count(n_paths, "n_paths", integral=True) != X0.shape[0]:
            raise ValueError(
                f"n_paths={n_paths} does not match the {X0.shape[0]} starting points in {name}"
            )
        return X0.copy()
    raise ValueError(
        f"{name} must have {core_ndim} axes (one starting point) or {core_ndim + 1} "
        f"(one per path), got shape {X0.shape}"
    )


def real_vector_ensemble(x0, n_paths, name: str) -> np.ndarray:
    """Validate real starting point(s) of shape (d,) or (B, d); return B float64 copies (B, d)."""
    x0 = as_array(x0, name, batch=True, real=True)
    if x0.ndim not in (1, 2) or x0.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (d,) or (B, d), got {x0.shape}")
    return ensemble(x0, n_paths, 1, name)


def as_real_stacks(W, name: str = "W") -> np.ndarray:
    """Validate real layers of shape (..., N, d, d)."""
    arr = as_array(W, name, batch=True, real=True)
    if arr.ndim < 3:
        raise ValueError(f"{name} must have shape (..., N, d, d), got {arr.shape}")
    arr = as_layer_stack(arr, name)
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real")
    return arr
