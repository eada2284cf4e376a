r"""The fiber :math:`\mathcal{F}_X = \{W : W_N \cdots W_1 = X\}` of [R] section 2, for geomstats.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [KN] G. Kempf and L. Ness, *The length of vectors in representation spaces*, Lecture
  Notes in Math. 732 (1979).
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import geomstats.backend as gs
import numpy as np

from .._checks import (
    as_matrix,
    as_stack,
    check_count,
    check_full_rank,
    check_positive,
)
from ..fiber import (
    check_fiber_depth,
    fiber_restore,
    fiber_retraction,
    fiber_tangent_projection,
    group_action_exp,
)
from ..network import balanced_point, end_to_end
from ..submanifold_geodesics import fiber_dist, fiber_exp, fiber_log
from ._backend import boundary, plain
from .induced import InducedSubmanifold, batched_over_points

__all__ = ["Fiber"]


class Fiber(InducedSubmanifold):
    r"""The fiber :math:`\mathcal{F}_X` over a full-rank X, with the induced Frobenius metric.

    :math:`\dim \mathcal{F}_X = (N-1)d^2`. Points and tangent vectors are
    arrays of shape (N, d, d), input layer first. Thin layer over
    :mod:`dln_manifolds.fiber`.

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank real end-to-end matrix.
    depth : int
        Number of layers N >= 2: for N = 1 the fiber is the single point X,
        refused with the same ValueError as
        :class:`dln_manifolds.pymanopt.Fiber` (:func:`~dln_manifolds.fiber.check_fiber_depth`).
    equip : bool, default True
        Equip with :class:`~dln_manifolds.geomstats.induced.InducedFrobeniusMetric`.

    Notes
    -----
    - ``to_tangent``: orthogonal projection onto :math:`\ker d\phi_W`
      (:func:`~dln_manifolds.fiber.fiber_tangent_projection`).
    - ``projection``: :func:`~dln_manifolds.fiber.fiber_restore` (recomputes
      the output layer; a smooth map onto the fiber fixing it, *not* the
      nearest point).
    - ``retraction``: the second-order retraction
      :func:`~dln_manifolds.fiber.fiber_retraction` with ``X`` (layers
      1..N-1 step, the output layer is solved from X, so the product is X
      to the rounding of one solve after every step).
    - metric: :class:`~dln_manifolds.geomstats.induced.InducedFrobeniusMetric`;
      ``exp`` integrates the geodesic equation (RK4, restored onto X after
      every step), ``log`` shoots, ``dist`` is the norm of ``log``
      (:func:`~dln_manifolds.submanifold_geodesics.fiber_exp`,
      :func:`~dln_manifolds.submanifold_geodesics.fiber_log`).
    """

    def __init__(self, X, depth: int, equip: bool = True):
        X = as_matrix(X)
        if np.iscomplexobj(X):
            raise TypeError("X must be a real matrix")
        depth = check_fiber_depth(depth)
        check_full_rank(np.linalg.svd(X, compute_uv=False), "X")
        self.X = X.copy()
        self.depth = depth
        self.d = X.shape[0]
        super().__init__(
            dim=(self.depth - 1) * self.d**2,
            shape=(self.depth, self.d, self.d),
            intrinsic=False,
            equip=equip,
        )

    @property
    @boundary
    def center(self) -> np.ndarray:
        """The center of [R] (Kempf-Ness minimizer of :math:`|W|^2`), shape (N, d, d)."""
        return balanced_point(self.X, self.depth)

    def _belongs_one(self, W, atol):
        r"""True if :math:`|W_N\cdots W_1 - X|_F \le` ``atol`` :math:`\max(1, |X|_F)`."""
        scale = max(1.0, float(np.linalg.norm(self.X)))
        return np.linalg.norm(end_to_end(W) - self.X) <= atol * scale

    @staticmethod
    def _tangent_projection(W, V):
        # orthogonal projection onto ker dphi_W ([R] eq. 2.21; docs/mathematics.rst)
        return fiber_tangent_projection(W, V)

    def _restore(self, W):
        return fiber_restore(W, self.X)

    def _retract(self, W, V):
        return fiber_retraction(W, V, X=self.X)

    def _geodesic_exp(self, W, V, n_steps):
        return batched_over_points(lambda V1, W1: fiber_exp(W1, V1, self.X, n_steps), V, W)

    def _geodesic_log(self, W, T, n_steps, tol, max_iter):
        return batched_over_points(
            lambda T1, W1: fiber_log(W1, T1, self.X, n_steps, tol=tol, max_iter=max_iter), T, W
        )

    def _geodesic_dist(self, W, T, n_steps, tol, max_iter):
        return batched_over_points(
            lambda T1, W1: fiber_dist(W1, T1, self.X, n_steps, tol=tol, max_iter=max_iter), T, W
        )

    @boundary
    def random_point(self, n_samples: int = 1, bound: float = 1.0):
        r"""Random points :math:`e^{a}\cdot C`: C the center, a Gaussian of scale 0.3 ``bound``.

        Returns
        -------
        ndarray, shape (N, d, d) or (n_samples, N, d, d)
        """
        n_samples = check_count(n_samples, "n_samples")
        check_positive(bound, "bound")
        C = self.center
        N, d = self.depth, self.d
        a = 0.3 * bound * plain(gs.random.normal(size=(n_samples, N - 1, d, d)))
        pts = np.stack([self.projection(group_action_exp(ai, C)) for ai in a])
        return pts[0] if n_samples == 1 else pts

    @boundary
    def check_point(self, point) -> np.ndarray:
        """Validate a single point: shape (N, d, d), finite, on the fiber."""
        W = as_stack(point, "point", depth=self.depth, d=self.d, real=True)
        if not self.belongs(W, atol=1e-6):
            raise ValueError("point is not on the fiber F_X (end-to-end product differs from X)")
        return W
