r"""Batched Christoffel terms of :math:`g^N` in the singular frame (pure numpy).

:func:`dln_manifolds.depth_metric.depth_christoffel` evaluates
:math:`\Gamma_X(U, V)` for one pair of matrices and recomputes the SVD of X
seven times. The geodesic equation and the full Christoffel tensor need many
evaluations at the same X, so :class:`DepthFrame` computes the SVD
:math:`X = U \operatorname{diag}(s) V^T`, the multipliers :math:`m_{kl}` of
:math:`\mathcal{A}_{N,X}` ([G] eq. 7.13-7.14) and the first divided differences
:math:`T_{imj}` of its symbol once, and then applies the same Koszul formula as
``depth_christoffel`` to whole batches of frame coordinates
:math:`\hat Z = U^T Z V`:

.. math::

    \Gamma(U, V) = -\tfrac12\big(D\mathcal{A}[U](BV) + D\mathcal{A}[V](BU)\big)
    + \tfrac12 \mathcal{A}\big(K(BU, BV)\big), \qquad B = \mathcal{A}^{-1},

with :math:`\langle K(Y, Z), W\rangle = \langle Y, D\mathcal{A}[W] Z\rangle`.
Every term is entrywise or an O(d^3) contraction in the frame, so one
evaluation costs one SVD plus O(d^3) per pair, whatever the depth (``numpy.inf``
included). The module has no geomstats import: it is numpy core that the
geomstats adapter uses.

Vector convention: a matrix Z of shape (d, d) corresponds to the vector
``Z.reshape(d * d)`` (row-major); in that basis the frame change is the
orthogonal matrix ``R = kron(U, V)``, ``vec(U Zh V^T) = R vec(Zh)``.
"""

from __future__ import annotations

import numpy as np

from .._checks import as_matrix, check_depth, check_full_rank
from ..depth_metric import (
    _DIVDIFF_CUTOFF,
    _first_divided_differences,
    _multiplier_d_alpha,
    _multiplier_from_alpha,
    _q_and_scale,
)

__all__ = ["DepthFrame"]


def _multipliers_and_divided_differences(s: np.ndarray, depth) -> tuple[np.ndarray, np.ndarray]:
    """Multipliers M[..., k, l] = f(l_k, l_l) and divided differences T of ``depth_metric``.

    Same formulas as :func:`dln_manifolds.depth_metric.depth_multipliers` and
    ``_first_divided_differences`` (equal to rounding), but the quotients reuse
    M, so only the diagonal ``T[..., i, i, :]`` needs the derivative of the
    symbol, and a batch of singular values (shape (..., d)) is processed at
    once. Where two singular values are (nearly) equal the core routine is used.
    """
    q, scale = _q_and_scale(depth)
    with np.errstate(divide="ignore"):
        alpha = 2.0 * np.log(s)
    ai, aj = alpha[..., :, None], alpha[..., None, :]
    M = _multiplier_from_alpha(ai, aj, q, scale)
    d = s.shape[-1]
    lam = s**2
    eye = np.eye(d, dtype=bool)
    den = np.where(eye, 1.0, lam[..., :, None] - lam[..., None, :])
    with np.errstate(divide="ignore", invalid="ignore"):  # (near) ties are replaced below
        T = (M[..., :, None, :] - M[..., None, :, :]) / den[..., :, :, None]
    a, c = np.broadcast_arrays(ai, aj)
    idx = np.arange(d)
    T[..., idx, idx, :] = _multiplier_d_alpha(a, c, q, scale) * np.exp(-a)
    close = (np.abs(ai - aj) < _DIVDIFF_CUTOFF) & ~eye
    if np.any(close):
        flat_s = s.reshape(-1, d)
        flat_T = T.reshape(-1, d, d, d)
        for b in np.flatnonzero(np.any(close.reshape(-1, d * d), axis=1)):
            flat_T[b] = _first_divided_differences(flat_s[b], depth)
    return M, T


def _t(A: np.ndarray) -> np.ndarray:
    return np.swapaxes(A, -1, -2)


class DepthFrame:
    r"""SVD-frame data of :math:`\mathcal{A}_{N,X}` at a full-rank real point X, or a batch of them.

    Parameters
    ----------
    X : array_like, shape (..., d, d)
        Full-rank real base point(s). The methods broadcast matrix arguments
        of shape (..., d, d) against the batch shape of X.
    depth : int or numpy.inf
    check : bool, default True
        Validate X (finite, real, full rank). ``False`` skips the checks
        (used inside ODE right-hand sides).

    Attributes
    ----------
    U, s, Vh : ndarray
        ``X = U @ diag(s) @ Vh``.
    M : ndarray, shape (..., d, d)
        Multipliers of the depth operator in the frame ([G] eq. 7.13-7.14).
    """

    def __init__(self, X, depth, check: bool = True):
        if check:
            X = np.asarray(X)
            if X.ndim == 2:
                X = as_matrix(X)
            if np.iscomplexobj(X):
                raise TypeError("X must be real for the geomstats adapters")
            X = np.asarray(X, dtype=np.float64)
            if X.ndim < 2 or X.shape[-1] != X.shape[-2]:
                raise ValueError(f"X must have shape (..., d, d), got {X.shape}")
            if not np.all(np.isfinite(X)):
                raise ValueError("X contains NaN or Inf entries")
            depth = check_depth(depth)
        self.depth = depth
        self.d = X.shape[-1]
        self.U, self.s, self.Vh = np.linalg.svd(X)
        if check or not np.all(self.s[..., -1] > 0):
            for s_ in self.s.reshape(-1, self.d):
                check_full_rank(s_, "X")
        if depth == 1:
            self.M = np.ones(self.s.shape + (self.d,))
            self._T = None
        else:
            self.M, self._T = _multipliers_and_divided_differences(self.s, depth)

    # -- frame changes ---------------------------------------------------------
    def to_frame(self, Z: np.ndarray) -> np.ndarray:
        """Frame coordinates ``U^T Z V`` of (a batch of) matrices, shape (..., d, d)."""
        return _t(self.U) @ Z @ _t(self.Vh)

    def from_frame(self, Zh: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_frame`: ``U Zh V^T``."""
        return self.U @ Zh @ self.Vh

    @property
    def rotation(self) -> np.ndarray:
        """The orthogonal ``kron(U, V)``, shape (..., d^2, d^2): vec(U Zh V^T) = R vec(Zh)."""
        R = np.einsum("...ac,...db->...abcd", self.U, self.Vh)
        n = self.d * self.d
        return R.reshape(R.shape[:-4] + (n, n))

    def _flat_M(self) -> np.ndarray:
        return self.M.reshape(self.M.shape[:-2] + (self.d * self.d,))

    # -- metric ----------------------------------------------------------------
    def metric_matrix(self) -> np.ndarray:
        r"""Matrix of :math:`g^N_X` in the row-major basis, shape (..., d^2, d^2).

        :math:`R\,\mathrm{diag}(1/m)\,R^T` with :math:`R` = :attr:`rotation`.
        """
        R = self.rotation
        return (R / self._flat_M()[..., None, :]) @ _t(R)

    def cometric_matrix(self) -> np.ndarray:
        r"""Inverse of :meth:`metric_matrix` (the operator :math:`\mathcal{A}_{N,X}` itself)."""
        R = self.rotation
        return (R * self._flat_M()[..., None, :]) @ _t(R)

    def inner_product(self, Z1: np.ndarray, Z2: np.ndarray) -> np.ndarray:
        r""":math:`g^N_X(Z_1, Z_2)` for batches of matrices, shape (...,)."""
        return np.sum(self.to_frame(Z1) * self.to_frame(Z2) / self.M, axis=(-2, -1))

    # -- derivatives of the operator, in frame coordinates -------------------
    def _dA_hat(self, Vh: np.ndarray, Zh: np.ndarray) -> np.ndarray:
        """(DA[V] Z)^ for frame coordinates V^, Z^ (batched)."""
        row, col = self.s[..., None, :], self.s[..., :, None]
        dP = Vh * row + col * _t(Vh)
        dQ = _t(Vh) * row + col * Vh
        T = self._T
        return np.einsum("...imj,...im,...mj->...ij", T, dP, Zh) + np.einsum(
            "...mji,...im,...mj->...ij", T, Zh, dQ
        )

    def _dA_adjoint_hat(self, Zh: np.ndarray, Yh: np.ndarray) -> np.ndarray:
        """Frame coordinates of K with <K, V> = <Y, DA[V] Z> (batched)."""
        T = self._T
        C1 = np.einsum("...ij,...imj,...mj->...im", Yh, T, Zh)
        C2 = np.einsum("...ij,...mji,...im->...mj", Yh, T, Zh)
        return (C1 + _t(C1)) * self.s[..., None, :] + self.s[..., :, None] * (C2 + _t(C2))

    def christoffel_hat(self, Uh: np.ndarray, Vh: np.ndarray) -> np.ndarray:
        r"""Frame coordinates of :math:`\Gamma_X(U, V)` from frame coordinates (batched)."""
        Uh, Vh = np.broadcast_arrays(Uh, Vh)
        if self.depth == 1:
            return np.zeros(Uh.shape)
        BU, BV = Uh / self.M, Vh / self.M
        t = self._dA_hat(Uh, BV) + self._dA_hat(Vh, BU)
        k = self._dA_adjoint_hat(BV, BU)
        return -0.5 * t + 0.5 * self.M * k

    def christoffel(self, U_vec: np.ndarray, V_vec: np.ndarray) -> np.ndarray:
        r""":math:`\Gamma_X(U, V)` for (batches of) (d, d) matrices, as ``depth_christoffel``."""
        return self.from_frame(self.christoffel_hat(self.to_frame(U_vec), self.to_frame(V_vec)))

    def geodesic_acceleration(self, V: np.ndarray) -> np.ndarray:
        r""":math:`-\Gamma_X(V, V)`, the acceleration of the geodesic through X with velocity V."""
        if self.depth == 1:
            return np.zeros(np.broadcast_shapes(np.shape(V), self.U.shape))
        Vh = self.to_frame(V)
        BV = Vh / self.M
        acc = self._dA_hat(Vh, BV) - 0.5 * self.M * self._dA_adjoint_hat(BV, BV)
        return self.from_frame(acc)

    def christoffel_tensor(self) -> np.ndarray:
        r"""All Christoffel symbols in the row-major basis, geomstats layout.

        Returns
        -------
        ndarray, shape (d^2, d^2, d^2)
            ``G[k, i, j]`` is the k-th coordinate of :math:`\Gamma_X(e_i, e_j)`
            (contravariant index first, as in ``geomstats``). Cost O(d^7).
            Single base point only.
        """
        if self.s.ndim != 1:
            raise ValueError("christoffel_tensor needs a single base point")
        d = self.d
        n = d * d
        # Frame coordinates of the standard basis: row a of R, reshaped.
        E = self.rotation.reshape(n, d, d)
        G = self.christoffel_hat(E[:, None], E[None, :])  # (n, n, d, d) in the frame
        G = self.from_frame(G).reshape(n, n, n)
        return np.transpose(G, (2, 0, 1))
