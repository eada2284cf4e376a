r"""The Frobenius metric induced on submanifolds of :math:`(\mathbb{R}^{d\times d})^N`.

References
----------
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import geomstats.backend as gs
import numpy as np
from geomstats.geometry.manifold import Manifold
from geomstats.geometry.riemannian_metric import RiemannianMetric

from .._checks import as_arrays, check_count, check_positive
from ._backend import boundary, differentiable, is_traced, plain, to_backend
from ._derivatives import (
    induced_dist_vjp,
    induced_exp_vjp,
    induced_log_vjp,
    induced_transport_vjp,
    projection_vjp,
)

__all__ = ["InducedFrobeniusMetric", "InducedSubmanifold"]


def stacked_over_points(fun, *arrays, point_ndim: int = 3):
    """Broadcast the batches of (N, d, d) arrays and call fun once on the flat stacks.

    For core functions that take stacks (B, N, d, d): no Python loop. Without
    batch dimensions fun gets the single points.
    """
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    batch = np.broadcast_shapes(*(a.shape[: a.ndim - point_ndim] for a in arrays))
    if not batch:
        return fun(*arrays)
    flat = [np.broadcast_to(a, batch + a.shape[a.ndim - point_ndim :]) for a in arrays]
    flat = [a.reshape((-1,) + a.shape[len(batch) :]) for a in flat]
    if flat[0].shape[0] == 0:
        return np.empty(batch + flat[0].shape[1:])
    out = np.asarray(fun(*flat))
    return out.reshape(batch + out.shape[1:])


def batched_over_points(fun, *arrays, point_ndim: int = 3):
    """Apply fun to broadcast batches of (N, d, d) arrays one point at a time (Python loop).

    Only for core functions that take a single point; see :func:`stacked_over_points`.
    """
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    batch = np.broadcast_shapes(*(a.shape[: a.ndim - point_ndim] for a in arrays))
    flat = [np.broadcast_to(a, batch + a.shape[a.ndim - point_ndim :]) for a in arrays]
    flat = [a.reshape((-1,) + a.shape[len(batch) :]) for a in flat]
    out = [fun(*items) for items in zip(*flat, strict=True)]
    out = np.stack(out) if out else np.empty((0,))
    return out.reshape(batch + out.shape[1:])


class InducedFrobeniusMetric(RiemannianMetric):
    r"""Metric induced on submanifolds by :math:`\sum_p \mathrm{tr}(V_p^T Z_p)`, with geodesics.

    Used by :class:`~dln_manifolds.geomstats.Fiber` and
    :class:`~dln_manifolds.geomstats.BalancedManifold` (points and tangent
    vectors of shape (..., N, d, d)). ``exp`` integrates the geodesic equation
    of the embedded submanifold by RK4 with ``n_steps`` steps and the space's
    restore map; ``log`` inverts it by shooting, ``dist`` is the norm of
    ``log`` (:mod:`dln_manifolds.submanifold_geodesics`). ``log`` raises
    ValueError when shooting does not converge (never an unconverged vector).

    Under autograd and pytorch (points of shape (..., N, d, d), or flat points (..., D)
    of general widths alike): ``exp`` is differentiable in ``tangent_vec``, ``log`` in
    ``point``, ``dist`` and ``squared_dist`` in both points and ``parallel_transport`` in
    ``tangent_vec`` (VJPs of the computed maps: the RK4 flow differenced along a tangent
    basis, the implicit function theorem for ``log`` and ``dist``, a transported basis);
    ``exp`` and ``log`` in ``base_point`` and the transport in ``base_point``,
    ``direction`` or ``end_point`` raise ``NotDifferentiableError``.

    Parameters
    ----------
    space : InducedSubmanifold
    n_steps : int, default 20
        RK4 steps of ``exp`` (and of the ``exp`` that ``log`` inverts).
    tol : float, default 1e-10
        Relative residual of the shooting in ``log``.
    max_iter : int, default 30
        Gauss-Newton iterations per shooting attempt.
    """

    def __init__(
        self, space, n_steps: int = 20, tol: float = 1e-10, max_iter: int = 30, signature=None
    ):
        super().__init__(space=space, signature=signature)
        self.n_steps = check_count(n_steps, "n_steps")
        self.tol = check_positive(tol, "tol")
        self.max_iter = check_count(max_iter, "max_iter")

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        """Frobenius inner product summed over layers; shapes (..., N, d, d) -> (...,).

        Written with backend operations: differentiable under autograd and pytorch.
        """
        a, b = self._space._arrays(
            tangent_vec_a=plain(tangent_vec_a), tangent_vec_b=plain(tangent_vec_b)
        )
        # the caller's tensors keep their gradient tape; anything else is validated numpy
        a = tangent_vec_a if is_traced(tangent_vec_a) else to_backend(a)
        b = tangent_vec_b if is_traced(tangent_vec_b) else to_backend(b)
        out = gs.sum(a * b, axis=(-3, -2, -1))
        if base_point is not None:
            (bp,) = self._space._arrays(base_point=plain(base_point))
            shape = np.broadcast_shapes(tuple(out.shape), bp.shape[:-3])
            if shape != tuple(out.shape):
                out = gs.broadcast_to(out, shape)
        return out

    def _geodesics(self):
        if not hasattr(self._space, "_geodesic_exp"):
            raise NotImplementedError(
                f"geodesics of the induced metric on {type(self._space).__name__} are not "
                "implemented; use space.retraction(tangent_vec, base_point) (not exp)"
            )
        return self._space

    @differentiable(induced_exp_vjp, wrt=("tangent_vec",))
    def exp(self, tangent_vec, base_point):
        """Riemannian exponential (RK4 on the geodesic equation); shape (..., N, d, d)."""
        space = self._geodesics()
        tangent_vec, base_point = space._arrays(tangent_vec=tangent_vec, base_point=base_point)
        return space._geodesic_exp(base_point, tangent_vec, self.n_steps)

    @differentiable(induced_log_vjp, wrt=("point",))
    def log(self, point, base_point):
        """Riemannian logarithm (shooting); shape (..., N, d, d); ValueError if not found."""
        space = self._geodesics()
        point, base_point = space._arrays(point=point, base_point=base_point)
        return space._geodesic_log(base_point, point, self.n_steps, self.tol, self.max_iter)

    def parallel_transport(self, tangent_vec, base_point, direction=None, end_point=None):
        r"""Parallel transport of ``tangent_vec`` along the geodesic in ``direction``.

        The transport ODE :math:`\dot U = \mathrm{II}(\dot\gamma, U)` of the
        submanifold integrated with the geodesic by the RK4 of :meth:`exp`
        (same ``n_steps``), for :math:`t \in [0, 1]`:
        :func:`~dln_manifolds.submanifold_geodesics.balanced_parallel_transport`,
        :func:`~dln_manifolds.submanifold_geodesics.fiber_parallel_transport`.
        With ``end_point`` instead of ``direction``, the geodesic to
        ``end_point`` is :meth:`log` (``end_point``, ``base_point``).
        Differentiable under autograd and pytorch in ``tangent_vec`` (the transport is
        linear in it); ``direction``, ``end_point`` and ``base_point`` raise
        :class:`~dln_manifolds.geomstats.NotDifferentiableError`.

        Parameters
        ----------
        tangent_vec, base_point : array_like, shape (..., N, d, d)
        direction : array_like, shape (..., N, d, d), optional
        end_point : array_like, shape (..., N, d, d), optional
            Exactly one of ``direction`` and ``end_point``.

        Returns
        -------
        ndarray, shape (..., N, d, d)
            Tangent vectors at :math:`\exp_W(\text{direction})`.
        """
        self._geodesics()
        if (direction is None) == (end_point is None):
            raise ValueError("give exactly one of direction and end_point")
        if direction is None:
            direction = self.log(end_point, base_point)
        return self._transport(tangent_vec, base_point, direction)

    @differentiable(induced_transport_vjp, wrt=("tangent_vec",))
    def _transport(self, tangent_vec, base_point, direction):
        """:meth:`parallel_transport` along ``direction`` (a backend primitive)."""
        space = self._geodesics()
        tangent_vec, base_point, direction = space._arrays(
            tangent_vec=tangent_vec, base_point=base_point, direction=direction
        )
        return space._geodesic_transport(base_point, direction, tangent_vec, self.n_steps)

    def squared_dist(self, point_a, point_b):
        """Squared geodesic distance; shape (...,)."""
        return self.dist(point_a, point_b) ** 2

    @differentiable(induced_dist_vjp, wrt=("point_a", "point_b"))
    def dist(self, point_a, point_b):
        """Geodesic distance, the norm of ``log(point_b, point_a)`` (inf across components)."""
        space = self._geodesics()
        point_a, point_b = space._arrays(point_a=point_a, point_b=point_b)
        return space._geodesic_dist(point_a, point_b, self.n_steps, self.tol, self.max_iter)


class InducedSubmanifold(Manifold):
    r"""Base of the submanifolds of :math:`(\mathbb{R}^{d\times d})^N` with the induced metric.

    Shared by :class:`~dln_manifolds.geomstats.Fiber` and
    :class:`~dln_manifolds.geomstats.BalancedManifold`: points and tangent
    vectors have shape (..., N, d, d) and every method maps the single-point
    functions below over the batch. A subclass sets ``self.shape`` (through
    ``Manifold.__init__``) and provides, for one point W of shape (N, d, d)
    (or, where the class attribute ``core_takes_stacks`` is True, for
    stacks W, V of shape (B, N, d, d), passed in one call without a loop):

    - ``_tangent_projection(W, V)``: orthogonal projection onto :math:`T_W`;
    - ``_restore(W)``: smooth map of nearby points onto the manifold fixing it;
    - ``_retract(W, V)``: the retraction;
    - ``_belongs_one(W, atol)``: membership test;
    - optionally ``_geodesic_exp(W, V, n_steps)``,
      ``_geodesic_log(W, T, n_steps, tol, max_iter)``, ``_geodesic_dist`` (same
      arguments) and ``_geodesic_transport(W, V, U, n_steps)`` on batches (..., N, d, d),
      used by :class:`InducedFrobeniusMetric` (without them its geodesic
      methods raise NotImplementedError).
    """

    #: True if ``_tangent_projection``, ``_restore`` and ``_retract`` take stacks (B, N, d, d).
    core_takes_stacks: bool = False

    @staticmethod
    def default_metric():
        """Metric to equip the space with if equip is True."""
        return InducedFrobeniusMetric

    def _over(self, fun, *arrays):
        """Map fun over the batch: one call on the stack if the core takes stacks, else a loop."""
        if self.core_takes_stacks:
            return stacked_over_points(fun, *arrays)
        return batched_over_points(fun, *arrays)

    def _arrays(self, **arrays) -> tuple[np.ndarray, ...]:
        """Validate real points and vectors of shape (..., N, d, d), named by their keywords."""
        return as_arrays(tuple(self.shape), batch=True, **arrays)

    @boundary
    def belongs(self, point, atol: float = 1e-9):
        """True where the point has shape (N, d, d) and passes the space's membership test."""
        point = np.asarray(point, dtype=float)
        k = len(self.shape)
        if point.shape[-k:] != self.shape:
            return np.zeros(point.shape[: max(point.ndim - k, 0)], dtype=bool)
        return batched_over_points(
            lambda W: self._belongs_one(W, atol), point, point_ndim=k
        ).astype(bool)

    @boundary
    def is_tangent(self, vector, base_point=None, atol: float = 1e-9):
        r"""True where :math:`|V - P_W V| \le` ``atol`` :math:`\max(1, |V|)`."""
        if base_point is None:
            raise TypeError("base_point is required: the tangent space depends on it")
        vector, base_point = self._arrays(vector=vector, base_point=base_point)
        residual = vector - self.to_tangent(vector, base_point)
        axes = tuple(range(-len(self.shape), 0))
        norm = np.sqrt(np.sum(vector * vector, axis=axes))
        return np.sqrt(np.sum(residual * residual, axis=axes)) <= atol * np.maximum(1.0, norm)

    @differentiable(projection_vjp("to_tangent"), wrt=("vector",))
    def to_tangent(self, vector, base_point=None):
        r"""Orthogonal projection :math:`P_W V` onto the tangent space at ``base_point``."""
        if base_point is None:
            raise TypeError("base_point is required: the tangent space depends on it")
        vector, base_point = self._arrays(vector=vector, base_point=base_point)
        return self._over(lambda V, W: self._tangent_projection(W, V), vector, base_point)

    @boundary
    def projection(self, point):
        """Map nearby points onto the manifold by its restore map (not the nearest point)."""
        (point,) = self._arrays(point=point)
        return self._over(self._restore, point)

    @boundary
    def retraction(self, tangent_vec, base_point):
        """The space's second-order retraction (not the exponential map)."""
        tangent_vec, base_point = self._arrays(tangent_vec=tangent_vec, base_point=base_point)
        return self._over(lambda V, W: self._retract(W, V), tangent_vec, base_point)
