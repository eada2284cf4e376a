r"""The core :class:`~dln_manifolds.depth_metric.DepthFrame` in geomstats' vector layout.

All formulas (SVD frame, multipliers, divided differences, Christoffel terms)
live in :class:`dln_manifolds.depth_metric.DepthFrame`; this subclass only adds
the dense d^2 x d^2 forms that geomstats' generic machinery needs, and insists
on real points and full rank at construction (as the adapters always did).

Vector convention: a matrix Z of shape (d, d) corresponds to the vector
``Z.reshape(d * d)`` (row-major); in that basis the frame change is the
orthogonal matrix ``R = kron(U, V)``, ``vec(U Zh V^T) = R vec(Zh)``.
"""

from __future__ import annotations

import numpy as np

from ..depth_metric import DepthFrame

__all__ = ["DenseDepthFrame"]


def _t(A: np.ndarray) -> np.ndarray:
    return np.swapaxes(A, -1, -2)


class DenseDepthFrame(DepthFrame):
    r"""Real, full-rank :class:`~dln_manifolds.depth_metric.DepthFrame` with dense forms.

    Parameters
    ----------
    X : array_like, shape (..., d, d)
        Full-rank real base point(s).
    depth : int or numpy.inf
    check : bool, default True
        As in the core class; full rank is tested at construction either way
        (by condition number if ``check``, else only exact zeros).
    """

    def __init__(self, X, depth, check: bool = True):
        if check and np.iscomplexobj(X):
            raise TypeError("X must be real for the geomstats adapters")
        super().__init__(X, depth, check=check, full_rank=True)

    def _dense(self, apply) -> np.ndarray:
        """Row-major matrix of a linear map on (m, n) matrices, column by column."""
        m, n = self.shape
        batch = self.s.shape[:-1]
        cols = [
            apply(np.broadcast_to(e, batch + (m, n))).reshape(batch + (m * n,))
            for e in np.eye(m * n).reshape(m * n, m, n)
        ]
        return np.stack(cols, axis=-1)

    @property
    def rotation(self) -> np.ndarray:
        """The orthogonal ``kron(U, V)``, shape (..., d^2, d^2): vec(U Zh V^T) = R vec(Zh)."""
        R = np.einsum("...ac,...db->...abcd", self.U, self.Vh)
        n = self.d * self.d
        return R.reshape(R.shape[:-4] + (n, n))

    def _flat_M(self) -> np.ndarray:
        return self.M.reshape(self.M.shape[:-2] + (self.d * self.d,))

    def metric_matrix(self) -> np.ndarray:
        r"""Matrix of :math:`g^N_X` in the row-major basis, shape (..., d^2, d^2).

        :math:`R\,\mathrm{diag}(1/m)\,R^T` with :math:`R` = :attr:`rotation`; for
        non-square X (shape (m, n), size mn x mn) the inverse operator applied to
        the basis matrices.
        """
        if self.shape[0] != self.shape[1]:
            return self._dense(self.inverse)
        R = self.rotation
        return (R / self._flat_M()[..., None, :]) @ _t(R)

    def cometric_matrix(self) -> np.ndarray:
        r"""Inverse of :meth:`metric_matrix` (the operator :math:`\mathcal{A}_{N,X}` itself)."""
        if self.shape[0] != self.shape[1]:
            return self._dense(self.operator)
        R = self.rotation
        return (R * self._flat_M()[..., None, :]) @ _t(R)

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
