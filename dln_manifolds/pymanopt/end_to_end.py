r"""(M_d, g^N): full-rank d x d matrices with the depth metric, as a pymanopt manifold.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [DK] Ju. L. Daleckii and S. G. Krein, *Integration and differentiation of functions of
  Hermitian operators and applications to the theory of perturbations*, AMS Transl. (2)
  47 (1965).
- [pymanopt] J. Townsend, N. Koep and S. Weichwald, *Pymanopt: a Python toolbox for
  optimization on manifolds using automatic differentiation*, JMLR 17 (2016).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from pymanopt.manifolds.manifold import Manifold

from .._checks import as_arrays, as_matrix, check_count, check_depth
from ..depth_metric import DepthFrame, depth_inner_product, depth_operator

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
      + \Gamma_X(U, \mathcal{A}\nabla E)`, all three terms from one
      :class:`~dln_manifolds.depth_metric.DepthFrame` (one SVD; Daleckii-Krein
      derivatives of the SVD-frame operator, O(d^3) whatever N).
    - Retraction: a second-order correction of :math:`X \exp(X^{-1} Z)`, which
      never leaves GL(d) (see :meth:`retraction`).
    - Geodesics have no closed form: ``exp``, ``log`` and ``dist`` raise
      NotImplementedError; use :class:`dln_manifolds.geomstats.EndToEndMatrices`.
    - GL(d) has two components (sign of det), and a solver never crosses
      det = 0. :meth:`random_point` draws from both, so start a solver in the
      component of the minimizer (flip a column of the start if needed);
      otherwise it drifts to the rank-deficient boundary, where
      :math:`\mathcal{A}_{N,X}` degenerates and the Riemannian gradient vanishes.
    """

    def __init__(self, d: int, depth=2, seed=None):
        self._d = check_count(d, "d")
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
        point = as_matrix(point, "point")
        if point.shape != (self._d, self._d):
            raise ValueError(f"point must have shape ({self._d}, {self._d}), got {point.shape}")
        return point

    def _arrays(self, **arrays) -> tuple[np.ndarray, ...]:
        """Validate real (d, d) points and vectors, named by their keywords."""
        return as_arrays((self._d, self._d), **arrays)

    def inner_product(self, point, tangent_vector_a, tangent_vector_b) -> np.float64:
        point, tangent_vector_a, tangent_vector_b = self._arrays(
            point=point, tangent_vector_a=tangent_vector_a, tangent_vector_b=tangent_vector_b
        )
        return np.float64(
            depth_inner_product(point, self._depth, tangent_vector_a, tangent_vector_b)
        )

    def norm(self, point, tangent_vector) -> np.float64:
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        return np.sqrt(max(self.inner_product(point, tangent_vector, tangent_vector), 0.0))

    def projection(self, point, vector):
        point, vector = self._arrays(point=point, vector=vector)
        return np.array(vector, dtype=np.float64)

    to_tangent_space = projection

    def euclidean_to_riemannian_gradient(self, point, euclidean_gradient):
        point, euclidean_gradient = self._arrays(point=point, euclidean_gradient=euclidean_gradient)
        return depth_operator(point, self._depth, euclidean_gradient)

    def euclidean_to_riemannian_hessian(
        self, point, euclidean_gradient, euclidean_hessian, tangent_vector
    ):
        point, euclidean_gradient, euclidean_hessian, tangent_vector = self._arrays(
            point=point,
            euclidean_gradient=euclidean_gradient,
            euclidean_hessian=euclidean_hessian,
            tangent_vector=tangent_vector,
        )
        frame = DepthFrame(self._check(point), self._depth)  # one SVD for the three terms
        grad = frame.operator(euclidean_gradient)
        return (
            frame.operator(euclidean_hessian)
            + frame.derivative(tangent_vector, euclidean_gradient)
            + frame.christoffel(tangent_vector, grad)
        )

    def retraction(self, point, tangent_vector):
        r"""Second-order retraction that never leaves GL(d).

        :math:`R_X(Z) = X \exp(K_1 + K_2 / (1 + |K_2|_F^2))` with
        :math:`K_1 = X^{-1} Z` and
        :math:`K_2 = -\tfrac12 X^{-1}\big(\Gamma_X(Z, Z) + Z X^{-1} Z\big)`, so that
        :math:`R_X(Z) = X + Z - \tfrac12\Gamma_X(Z,Z) + O(|Z|^3)` agrees with the
        exponential map to second order (needed for Hessian slope tests and
        superlinear trust-region convergence). The damping of the quadratic
        correction only changes terms of order :math:`|Z|^6`; it keeps long
        steps monotone (without it a long step along :math:`Z = tX` would fold
        back towards 0, since :math:`t - t^2/(2N)` turns negative).

        The result is invertible whenever it is finite. A step so long that
        the matrix exponential overflows float64 returns a matrix of ``+inf``
        instead of a mixture of inf and NaN, so that a cost which is ``+inf``
        there makes pymanopt's line searches backtrack (a NaN cost would be
        accepted by their Armijo test).
        """
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        point = self._check(point)
        Z = np.asarray(tangent_vector, dtype=np.float64)
        if not np.any(Z):
            return point.copy()
        K1 = np.linalg.solve(point, Z)
        gamma = DepthFrame(point, self._depth).christoffel(Z, Z)
        K2 = -0.5 * np.linalg.solve(point, gamma + Z @ K1)
        K = K1 + K2 / (1.0 + np.sum(K2 * K2))
        with np.errstate(over="ignore", invalid="ignore"):
            out = point @ scipy.linalg.expm(K)
        if not np.all(np.isfinite(out)):
            return np.full_like(out, np.inf)
        return out

    def transport(self, point_a, point_b, tangent_vector_a):
        point_a, point_b, tangent_vector_a = self._arrays(
            point_a=point_a, point_b=point_b, tangent_vector_a=tangent_vector_a
        )
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
        self._arrays(point=point)
        Z = self._rng.standard_normal((self._d, self._d))
        return Z / self.norm(point, Z)

    def zero_vector(self, point):
        self._arrays(point=point)
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
