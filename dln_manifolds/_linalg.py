"""Batched linear-algebra primitives shared by the whole package: the one internal layer.

Every function takes arrays of shape ``(..., m, n)`` (stacks of matrices, any
number of leading axes), works for real and complex input, and does no input
validation: the public functions that call them validate their arguments at
the door (see :mod:`dln_manifolds._checks`). Modelled on pymanopt's
``tools/multi.py``: one-line formulas that the modules above compose, so that
no module needs another module's private helpers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conj_transpose",
    "solve_right",
    "polar_factor",
    "haar_orthogonal",
    "haar_unitary",
]


def conj_transpose(A: np.ndarray) -> np.ndarray:
    """Conjugate transpose of the last two axes (a plain transpose for real input)."""
    At = np.swapaxes(A, -1, -2)
    return np.conj(At) if np.iscomplexobj(A) else At


def solve_right(Y: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``Y @ inv(M)`` for stacks, through a solve (never forms the inverse)."""
    return np.swapaxes(np.linalg.solve(np.swapaxes(M, -1, -2), np.swapaxes(Y, -1, -2)), -1, -2)


def polar_factor(M: np.ndarray) -> np.ndarray:
    """The orthogonal (unitary) polar factor ``U V^*`` of ``M = U S V^*``, for stacks."""
    u, _, vh = np.linalg.svd(M)
    return u @ vh


def haar_orthogonal(rng: np.random.Generator, d: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Haar-distributed orthogonal matrices of shape ``shape + (d, d)``.

    QR of a Gaussian matrix with the signs of R's diagonal moved into Q
    (Mezzadri 2007), so that the law is exactly Haar.
    """
    Q, R = np.linalg.qr(rng.standard_normal(tuple(shape) + (d, d)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., None, :]


def haar_unitary(rng: np.random.Generator, d: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Haar-distributed unitary matrices of shape ``shape + (d, d)`` (Mezzadri 2007)."""
    size = tuple(shape) + (d, d)
    Z = (rng.standard_normal(size) + 1j * rng.standard_normal(size)) / np.sqrt(2.0)
    Q, R = np.linalg.qr(Z)
    diag = np.diagonal(R, axis1=-2, axis2=-1)
    return Q * (diag / np.abs(diag))[..., None, :]
