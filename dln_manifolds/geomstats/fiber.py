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

from collections.abc import Sequence

import geomstats.backend as gs
import numpy as np

from .._checks import (
    as_array,
    as_arrays,
    as_matrix,
    as_stack,
    check_count,
    check_full_rank,
    check_positive,
)
from .._linalg import chain_product
from ..fiber import (
    check_fiber_depth,
    check_fiber_widths,
    fiber_restore,
    fiber_retraction,
    fiber_tangent_projection,
    group_action_exp,
    project_layers,
    restore_chain_layers,
    retract_chain_layers,
)
from ..network import balanced_point, end_to_end
from ..submanifold_geodesics import fiber_dist, fiber_exp, fiber_log, fiber_parallel_transport
from ._backend import boundary, plain
from ._layout import FlatLayers, LayersConversion, flat_inner_product
from .induced import InducedFrobeniusMetric, InducedSubmanifold, batched_over_points

__all__ = ["Fiber"]


class _FlatFrobeniusMetric(InducedFrobeniusMetric):
    """The Frobenius metric on flat points (..., D) of a :class:`Fiber` of general widths."""

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        """Euclidean inner product of the flat vectors; shapes (..., D) -> (...,).

        Written with backend operations: differentiable under autograd and pytorch.
        """
        return flat_inner_product(self._space.layout, tangent_vec_a, tangent_vec_b, base_point)


class Fiber(LayersConversion, InducedSubmanifold):
    r"""The fiber :math:`\mathcal{F}_X` over a full-rank X, with the induced Frobenius metric.

    :math:`\dim \mathcal{F}_X = (N-1)d^2`. Points and tangent vectors are
    arrays of shape (N, d, d), input layer first. Thin layer over
    :mod:`dln_manifolds.fiber`.

    **General widths.** With ``widths`` :math:`(d_0, \dots, d_N)` (every hidden width
    at least :math:`r = \min(d_0, d_N)`, X of shape :math:`(d_N, d_0)` and rank r), points
    and tangent vectors are flat vectors of shape (..., D),
    :math:`D = \sum_k d_k d_{k+1}`: the layers ``W[k]`` of shape :math:`(d_{k+1}, d_k)`,
    input layer first, each row-major, concatenated (geomstats needs one array shape per
    space). :meth:`to_layers` and :meth:`from_layers` convert. The dimension is
    :math:`D - d_0 d_N`. The geodesics (``metric.exp``, ``log``, ``dist``,
    ``parallel_transport``) are those of :mod:`~dln_manifolds.submanifold_geodesics` for
    general widths (``exp`` and ``parallel_transport`` on the layers of the whole batch in
    one call, one RK4 run; ``log`` and ``dist`` one network at a time), and are
    differentiable under autograd and pytorch as for square layers
    (:class:`~dln_manifolds.geomstats.induced.InducedFrobeniusMetric`). ``to_tangent``,
    ``projection``, ``retraction`` and ``belongs`` take the whole batch in one call of
    the core's vectorized internals (networks too ill-conditioned for the batched normal
    solve go one at a time through :class:`~dln_manifolds.fiber.FiberNormalSolver`).

    Parameters
    ----------
    X : array_like, shape (d, d), or (d_N, d_0) with ``widths``
        Full-rank real end-to-end matrix.
    depth : int
        Number of layers N >= 2: for N = 1 the fiber is the single point X,
        refused with the same ValueError as
        :class:`dln_manifolds.pymanopt.Fiber` (:func:`~dln_manifolds.fiber.check_fiber_depth`).
    equip : bool, default True
        Equip with :class:`~dln_manifolds.geomstats.induced.InducedFrobeniusMetric`.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`: a fiber of general widths, with flat points.

    Raises
    ------
    ValueError
        If X is rank-deficient, if a hidden width is below rank X, or if ``widths``
        disagrees with the shape of X or the depth (each naming the argument and the
        numbers).

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

    def __init__(self, X, depth: int, equip: bool = True, *, widths: Sequence[int] | None = None):
        depth = check_fiber_depth(depth)
        self.widths = None
        if widths is not None:
            X = as_array(X, "X", (), real=True, batch=True)
            if X.ndim != 2:
                raise ValueError(f"X must be a matrix of shape (d_N, d_0), got shape {X.shape}")
            widths = check_fiber_widths(
                X, depth, widths, 1.0 / (min(X.shape) * np.finfo(float).eps)
            )
            self.X = X.copy()
            self.depth = depth
            self.d = None
            self.widths = widths
            self.layout = FlatLayers(widths)
            size = self.layout.size
            super().__init__(dim=size - X.size, shape=(size,), intrinsic=False, equip=False)
            if equip:
                self.equip_with_metric(_FlatFrobeniusMetric)
            return
        X = as_matrix(X)
        if np.iscomplexobj(X):
            raise TypeError("X must be a real matrix")
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
        """The center of [R] (Kempf-Ness minimizer of :math:`|W|^2`), shape (N, d, d).

        With ``widths``: ``balanced_point(X, N, widths=widths)`` as a flat vector (D,).
        """
        if self.widths is not None:
            return self.layout.join(balanced_point(self.X, self.depth, widths=self.widths))
        return balanced_point(self.X, self.depth)

    # -- general widths: flat points ----------------------------------------------------
    def _split(self, flat: np.ndarray) -> list[np.ndarray]:
        return self.layout.split(flat)

    def _over(self, fun, *arrays):
        """Map fun over the batch; with ``widths``, once on the layers (..., d_{k+1}, d_k)
        of the flat points (fun takes and returns lists of layers with batch axes)."""
        if self.widths is None:
            return super()._over(fun, *arrays)
        return self.layout.stacked(fun, *arrays)

    def _over_networks(self, fun, *arrays):
        """Map fun, which takes the layers of one network, over a batch of flat points."""
        if self.widths is None:
            return super()._over(fun, *arrays)
        return self.layout.over(fun, *arrays)

    @boundary
    def belongs(self, point, atol: float = 1e-9):
        r"""True where :math:`|W_N\cdots W_1 - X|_F \le` ``atol`` :math:`\max(1, |X|_F)`
        (vectorized over the batch for general widths)."""
        if self.widths is None:
            return super().belongs(point, atol)
        point = np.asarray(point, dtype=float)
        if point.shape[-1:] != self.shape:
            return np.zeros(point.shape[: max(point.ndim - 1, 0)], dtype=bool)
        scale = max(1.0, float(np.linalg.norm(self.X)))
        residual = chain_product(self._split(point)) - self.X
        return np.linalg.norm(residual, axis=(-2, -1)) <= atol * scale

    def _belongs_one(self, W, atol):
        r"""True if :math:`|W_N\cdots W_1 - X|_F \le` ``atol`` :math:`\max(1, |X|_F)`."""
        scale = max(1.0, float(np.linalg.norm(self.X)))
        return np.linalg.norm(end_to_end(W) - self.X) <= atol * scale

    # general widths: the core's vectorized internals on lists of layers with batch axes,
    # validated at the adapter's door (shapes, finite, real)
    @staticmethod
    def _tangent_projection(W, V):
        # orthogonal projection onto ker dphi_W ([R] eq. 2.21; docs/mathematics.rst)
        if isinstance(W, list):
            return project_layers(W, V)
        return fiber_tangent_projection(W, V)

    def _restore(self, W):
        if isinstance(W, list):
            return restore_chain_layers(W, self.X)
        return fiber_restore(W, self.X)

    def _retract(self, W, V):
        if isinstance(W, list):
            return retract_chain_layers(W, V, self.X)
        return fiber_retraction(W, V, X=self.X)

    # general widths: the exp and the transport of the core take a batch of networks (the
    # flat points' layers in one call, one RK4 run); the log and dist take one network
    def _geodesic_exp(self, W, V, n_steps):
        return self._over(lambda V1, W1: fiber_exp(W1, V1, self.X, n_steps), V, W)

    def _geodesic_log(self, W, T, n_steps, tol, max_iter):
        return self._over_networks(
            lambda T1, W1: fiber_log(W1, T1, self.X, n_steps, tol=tol, max_iter=max_iter), T, W
        )

    def _geodesic_dist(self, W, T, n_steps, tol, max_iter):
        def one(T1, W1):
            if self.widths is not None:
                T1, W1 = self._split(T1), self._split(W1)
            return fiber_dist(W1, T1, self.X, n_steps, tol=tol, max_iter=max_iter)

        return batched_over_points(one, T, W, point_ndim=len(self.shape))

    def _geodesic_transport(self, W, V, U, n_steps):
        return self._over(
            lambda U1, V1, W1: fiber_parallel_transport(W1, V1, U1, X=self.X, n_steps=n_steps),
            U,
            V,
            W,
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
        if self.widths is not None:
            C = balanced_point(self.X, self.depth, widths=self.widths)
            hidden = self.widths[1:-1]
            pts = []
            for _ in range(n_samples):
                a = [0.3 * bound * plain(gs.random.normal(size=(dk, dk))) for dk in hidden]
                pts.append(self.layout.join(fiber_restore(group_action_exp(a, C), self.X)))
            pts = np.stack(pts)
            return pts[0] if n_samples == 1 else pts
        C = self.center
        N, d = self.depth, self.d
        a = 0.3 * bound * plain(gs.random.normal(size=(n_samples, N - 1, d, d)))
        pts = np.stack([self.projection(group_action_exp(ai, C)) for ai in a])
        return pts[0] if n_samples == 1 else pts

    @boundary
    def check_point(self, point) -> np.ndarray:
        """Validate a single point: shape (N, d, d) (or (D,) with widths), finite, on the fiber."""
        if self.widths is not None:
            (W,) = as_arrays(self.shape, point=point)
            if not self.belongs(W, atol=1e-6):
                raise ValueError(
                    "point is not on the fiber F_X (end-to-end product differs from X)"
                )
            return W
        W = as_stack(point, "point", depth=self.depth, d=self.d, real=True)
        if not self.belongs(W, atol=1e-6):
            raise ValueError("point is not on the fiber F_X (end-to-end product differs from X)")
        return W
