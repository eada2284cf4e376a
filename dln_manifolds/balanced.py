r"""The balanced manifold :math:`\mathcal{M} = \{W_{p+1}^T W_{p+1} = W_p W_p^T\}` ([G] eq. 4.5).

Full-rank balanced weights, shape (N, d, d), input layer first.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_stack

__all__ = ["balanced_restore", "balanced_retraction"]


def _h(A: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(A, -1, -2)) if np.iscomplexobj(A) else np.swapaxes(A, -1, -2)


def _psd_sqrt(P: np.ndarray) -> np.ndarray:
    lam, Q = np.linalg.eigh(P)
    return (Q * np.sqrt(np.clip(lam, 0.0, None))) @ _h(Q)


def balanced_restore(Y) -> np.ndarray:
    r"""Map weights near :math:`\mathcal{M}` onto :math:`\mathcal{M}` (identity on :math:`\mathcal{M}`).

    Keeps layer 1 and, for p >= 2, sets layer p to
    :math:`O_p\,(W_{p-1}W_{p-1}^*)^{1/2}` where :math:`O_p` is the orthogonal
    (unitary) polar factor of :math:`Y_p`. The result is exactly balanced,
    needs no distinct singular values, and equals Y when Y is balanced
    (MATH_NOTES). Cost O(N d^3).

    Parameters
    ----------
    Y : array_like, shape (N, d, d)
        Full-rank layers.

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    Y = as_stack(Y, "Y")
    out = np.empty_like(Y)
    out[0] = Y[0]
    for p in range(1, Y.shape[0]):
        u, _, vh = np.linalg.svd(Y[p])
        out[p] = (u @ vh) @ _psd_sqrt(out[p - 1] @ _h(out[p - 1]))
    return out


def balanced_retraction(W, V) -> np.ndarray:
    r"""Retraction on :math:`\mathcal{M}`: :math:`R_W(V) = \mathrm{restore}(W + V)`.

    First-order (R(W, 0) = W, dR = identity on tangent vectors); see
    :func:`balanced_restore`.
    """
    W = as_stack(W)
    V = as_stack(V, "V", depth=W.shape[0], d=W.shape[1])
    return balanced_restore(W + V)
