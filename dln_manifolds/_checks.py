"""Input validation shared by the whole package.

Every public function validates its arguments through these helpers, so that
bad input raises a :class:`ValueError` or :class:`TypeError` naming the
argument instead of a numpy traceback or a silent NaN.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_matrix",
    "as_stack",
    "as_matrix_batch",
    "check_depth",
    "check_finite_depth",
    "check_positive",
    "check_full_rank",
]


def _as_float_array(value, name: str) -> np.ndarray:
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be an array of numbers: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        arr = arr.astype(np.complex128, copy=False)
    else:
        arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf entries")
    return arr


def as_matrix(X, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite float64 (or complex128) square matrix of shape (d, d)."""
    arr = _as_float_array(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a square matrix of shape (d, d), got shape {arr.shape}")
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be square, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have d >= 1, got shape {arr.shape}")
    return arr


def as_matrix_batch(Z, d: int, name: str = "Z") -> np.ndarray:
    """Return ``Z`` as a finite array of shape (..., d, d)."""
    arr = _as_float_array(Z, name)
    if arr.ndim < 2 or arr.shape[-2:] != (d, d):
        raise ValueError(f"{name} must have shape (..., {d}, {d}), got shape {arr.shape}")
    return arr


def as_stack(W, name: str = "W", depth: int | None = None, d: int | None = None) -> np.ndarray:
    """Return ``W`` as a finite stack of layers of shape (N, d, d).

    ``W[0]`` is the input layer W_1 and ``W[N-1]`` the output layer W_N.
    """
    arr = _as_float_array(W, name)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(
            f"{name} must be a stack of square layers of shape (N, d, d), got shape {arr.shape}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have N >= 1 layers and d >= 1, got shape {arr.shape}")
    if depth is not None and arr.shape[0] != depth:
        raise ValueError(f"{name} must have {depth} layers, got {arr.shape[0]}")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have layers of size {d} x {d}, got {arr.shape[1:]}")
    return arr


def check_depth(depth, allow_inf: bool = True) -> int | float:
    """Validate a network depth N: an integer >= 1, or ``numpy.inf`` if allowed."""
    if isinstance(depth, bool):
        raise TypeError("depth must be an integer >= 1 or numpy.inf, got a bool")
    if isinstance(depth, numbers.Integral):
        depth = int(depth)
    elif isinstance(depth, numbers.Real):
        if np.isinf(depth):
            if depth < 0:
                raise ValueError("depth must be >= 1, got -inf")
            if not allow_inf:
                raise ValueError("depth must be a finite integer >= 1 here, got inf")
            return np.inf
        if np.isnan(depth) or depth != int(depth):
            raise TypeError(f"depth must be an integer >= 1 or numpy.inf, got {depth!r}")
        depth = int(depth)
    else:
        raise TypeError(f"depth must be an integer >= 1 or numpy.inf, got {type(depth).__name__}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return depth


def check_finite_depth(depth) -> int:
    """Validate a finite depth N >= 1."""
    return check_depth(depth, allow_inf=False)


def check_positive(value, name: str) -> float:
    """Validate a positive finite real scalar."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def check_full_rank(
    singular_values: np.ndarray, name: str = "X", max_condition: float | None = None
):
    """Raise ValueError if the singular values describe a (numerically) singular matrix.

    Parameters
    ----------
    singular_values : ndarray, shape (d,)
        Singular values in any order.
    name : str
        Name used in the error message.
    max_condition : float, optional
        Largest accepted condition number. Defaults to ``1 / (d * eps)``.
    """
    s = np.asarray(singular_values)
    smax, smin = float(np.max(s)), float(np.min(s))
    if max_condition is None:
        max_condition = 1.0 / (s.size * np.finfo(np.float64).eps)
    if smin <= 0 or smax / smin > max_condition:
        cond = np.inf if smin <= 0 else smax / smin
        raise ValueError(
            f"{name} is rank-deficient or too ill-conditioned "
            f"(condition number {cond:.3g} > {max_condition:.3g})"
        )
