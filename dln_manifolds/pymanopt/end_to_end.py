r"""(M_d, g^N): full-rank d x d matrices with the depth metric, as a pymanopt manifold."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from pymanopt.manifolds.manifold import Manifold

from .._checks import as_matrix, check_depth
from ..depth_metric import (
    depth_christoffel,
    depth_inner_product,
    depth_operator,
    depth_operator_derivative,
    inverse_depth_operator,
)

__all__ = ["EndToEndMatrices"]


class EndToEndMatrices(Manifold):
    r"""Full-rank d x d real matrices with the depth metric :math:`g^N` ([G] eq. 4.16-4.17).

    :math:`g^N_X(Z_1, Z_2) = \mathrm{tr}(Z_1^T \mathcal{A}_{N,X}^{-1} Z_2)`, the metric that
    the balanced manifold submerses onto ([G] Thm 13). Points and tangent
    vectors are arrays of shape (d, d) (point layout 1).

    Parameters
    ----------
    d : int
        Matrix size.
    depth : int or numpy.inf
        Depth N >= 1. ``numpy.inf`` gives :math:`g^\infty` built from the
        rescaled operator :math:`\mathcal{A}_{\infty,X}` ([G] eq. 14.7). Depth 1
        is the Euclidean metric.
    seed : int or numpy.random.Generator, optional
        Source of randomness for :meth:`random_point` and :meth:`random_tangent_vector`.

    Notes
    -----
    - Riemannian gradient: :math:`\mathcal{A}_{N,X}(\nabla E)` ([G] eq. 4.19).
    - Riemannian Hessian: :math:`\mathcal{A}(\nabla^2 E[U]) + D\mathcal{A}[U](\nabla E)
      + \Gamma_X(U, \mathcal{A}\nabla E)`, with the Christoffel term of
      :func:`~dln_manifolds.depth_metric.depth_christoffel` (Daleckii-Krein
      derivatives of the SVD-frame operator, O(d^3) whatever N).
    - Retraction: a second-order correction of :math:`X \exp(X^{-1} Z)`, which
      never leaves GL(d) (see :meth:`retraction`).
    - Geodesics have no closed form: ``exp``, ``log`` and ``dist`` raise
      NotImplementedError; use :class:`dln_manifolds.geomstats.EndToEndMatrices`.
    """

    def __init__(self, d: int, depth=2, seed=None):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"d must be a positive integer, got {d!r}")
        self._d = int(d)
        self._depth = check_depth(depth)
        self._rng = np.random.default_rng(seed)
        name = f"End-to-end matrices ({d}x{d}) with the depth metric g^{self._depth}"
        super().__init__(name, self._d * self._d)

    @property
    def d(self) -> int:
        return self._d

    @property
    def depth(self):
        return self._depth

    @property
    def typical_dist(self) -> float:
        return float(np.sqrt(self.dim))

    def _check(self, point):
        return as_matrix(point, "point") if np.shape(point) != (self._d, self._d) else point

    def inner_product(self, point, tangent_vector_a, tangent_vector_b) -> float:
        return depth_inner_product(point, self._depth, tangent_vector_a, tangent_vector_b)

    def norm(self, point, tangent_vector) -> float:
        return float(np.sqrt(max(self.inner_product(point, tangent_vector, tangent_vector), 0.0)))

    def projection(self, point, vector):
        return np.array(vector, dtype=np.float64)

    to_tangent_space = projection

    def euclidean_to_riemannian_gradient(self, point, euclidean_gradient):
        return depth_operator(point, self._depth, euclidean_gradient)

    def euclidean_to_riemannian_hessian(
        self, point, euclidean_gradient, euclidean_hessian, tangent_vector
    ):
        grad = depth_operator(point, self._depth, euclidean_gradient)
        return (
            depth_operator(point, self._depth, euclidean_hessian)
            + depth_operator_derivative(point, self._depth, tangent_vector, euclidean_gradient)
            + depth_christoffel(point, self._depth, tangent_vector, grad)
        )

    def retraction(self, point, tangent_vector):
        r"""Second-order retraction that never leaves GL(d).

        :math:`R_X(Z) = X \exp\big(X^{-1} Y\big)` with
        :math:`Y = Z - \tfrac12\Gamma_X(Z, Z) - \tfrac12 Z X^{-1} Z`, so that
        :math:`R_X(Z) = X + Z - \tfrac12\Gamma_X(Z,Z) + O(|Z|^3)` agrees with the
        exponential map to second order (needed for Hessian slope tests and
        superlinear trust-region convergence).
        """
        point = self._check(point)
        Z = np.asarray(tangent_vector, dtype=np.float64)
        if not np.any(Z):
            return point.copy()
        XinvZ = np.linalg.solve(point, Z)
        Y = Z - 0.5 * depth_christoffel(point, self._depth, Z, Z) - 0.5 * Z @ XinvZ
        return point @ scipy.linalg.expm(np.linalg.solve(point, Y))

    def transport(self, point_a, point_b, tangent_vector_a):
        return np.array(tangent_vector_a, dtype=np.float64)

    def random_point(self):
        """A well-conditioned point: Haar frames and log-uniform singular values in [1/2, 2]."""
        d = self._d
        U = _haar_orthogonal(self._rng, d)
        V = _haar_orthogonal(self._rng, d)
        s = np.exp(self._rng.uniform(np.log(0.5), np.log(2.0), size=d))
        return (U * s) @ V.T

    def random_tangent_vector(self, point):
        """A Gaussian tangent vector normalized to unit g^N norm."""
        Z = self._rng.standard_normal((self._d, self._d))
        return Z / self.norm(point, Z)

    def zero_vector(self, point):
        return np.zeros((self._d, self._d))

    def _no_geodesics(self, *args, **kwargs):
        raise NotImplementedError(
            "geodesics of g^N have no closed form; use "
            "dln_manifolds.geomstats.EndToEndMatrices (ODE-based exp, log and dist)"
        )

    exp = log = dist = _no_geodesics


def _haar_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))
