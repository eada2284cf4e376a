r"""(M_d, g^N) as a geomstats open set with the depth metric.

Point shape
-----------
geomstats' generic geodesic machinery (Christoffel symbols from
``metric_matrix``, ``ExpODESolver``, ``LogODESolver``, ``BrownianMotion``,
curvature) works on *vectors*. A d x d matrix X is therefore represented by the
vector ``x = X.reshape(d * d)`` (row-major: ``x[k * d + l] = X[k, l]``), and
tangent vectors likewise. :func:`matrix_to_vector` and :func:`vector_to_matrix`
(also :meth:`EndToEndMatrices.to_vector` / :meth:`EndToEndMatrices.to_matrix`)
convert between the two forms, with any leading batch shape.

All geometry comes from the numpy core (:mod:`dln_manifolds.depth_metric`,
through its batched frame evaluator :class:`~dln_manifolds.depth_metric.DepthFrame`),
never from geomstats' autodiff, so everything works under the default numpy
backend as well as under ``GEOMSTATS_BACKEND=autograd`` or ``pytorch`` (arrays
converted at the door of every method, derivatives supplied from the core; see
the section *Backends* of :mod:`dln_manifolds.geomstats`). Geodesics come from
:mod:`dln_manifolds.geodesics`.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import math

import geomstats.backend as gs
import numpy as np
from geomstats.geometry.base import VectorSpaceOpenSet
from geomstats.geometry.euclidean import Euclidean
from geomstats.geometry.riemannian_metric import RiemannianMetric
from geomstats.numerics.geodesic import ExpODESolver, ExpSolver, LogSolver
from geomstats.numerics.ivp import GSIVPIntegrator

from .._checks import (
    as_array,
    as_arrays,
    check_count,
    check_depth,
    check_matrix_space,
    check_positive,
)
from .._linalg import haar_from_gaussian
from ..geodesics import (
    DifferentComponentsError,
    LogConvergenceError,
    SingularGeodesicError,
    depth_distance,
    depth_exp,
    depth_log,
    depth_parallel_transport,
    direction_geodesic,
)
from ..retraction import depth_retraction
from ._backend import BACKEND, boundary, differentiable, plain
from ._derivatives import (
    cometric_matrix_vjp,
    dist_vjp,
    exp_vjp,
    identity_vjp,
    inner_product_vjp,
    log_vjp,
    metric_matrix_vjp,
    reshape_vjp,
)
from ._frame import DenseDepthFrame

__all__ = [
    "EndToEndMatrices",
    "DepthMetric",
    "AutodiffDepthMetric",
    "DepthLogShootingSolver",
    "matrix_to_vector",
    "vector_to_matrix",
    "direction_geodesic",
    "SingularGeodesicError",
    "DifferentComponentsError",
    "LogConvergenceError",
]


# ---------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------


@differentiable(reshape_vjp("X"), wrt=("X",))
def matrix_to_vector(X) -> np.ndarray:
    """Row-major vector form of a batch of square matrices.

    Parameters
    ----------
    X : array_like, shape (..., d, d)

    Returns
    -------
    ndarray, shape (..., d * d)
        ``x[..., k * d + l] = X[..., k, l]``.
    """
    X = as_array(X, "X", batch=True, real=True)
    if X.ndim < 2 or X.shape[-1] != X.shape[-2]:
        raise ValueError(f"X must have shape (..., d, d), got {X.shape}")
    return X.reshape(X.shape[:-2] + (X.shape[-1] ** 2,))


@differentiable(reshape_vjp("x"), wrt=("x",))
def vector_to_matrix(x, d: int | None = None) -> np.ndarray:
    """Inverse of :func:`matrix_to_vector`.

    Parameters
    ----------
    x : array_like, shape (..., d * d)
    d : int, optional
        Matrix size; inferred from the last axis if omitted.

    Returns
    -------
    ndarray, shape (..., d, d)
    """
    x = as_array(x, "x", batch=True, real=True)
    if x.ndim < 1:
        raise ValueError("x must have shape (..., d * d)")
    n = x.shape[-1]
    if d is None:
        d = math.isqrt(n)
    if d * d != n:
        raise ValueError(f"x must have last axis d * d = {d * d}, got {n}")
    return x.reshape(x.shape[:-1] + (d, d))


def _batch_shape(space_ndim: int, *arrays) -> tuple:
    shapes = [np.shape(a)[: np.ndim(a) - space_ndim] for a in arrays if a is not None]
    return np.broadcast_shapes(*shapes) if shapes else ()


# ---------------------------------------------------------------------------
# The space
# ---------------------------------------------------------------------------


class EndToEndMatrices(VectorSpaceOpenSet):
    r"""Full-rank real d x d matrices :math:`\mathfrak{M}_d`, open in :math:`\mathbb{R}^{d^2}`.

    Equipped by default with :class:`DepthMetric`, the metric :math:`g^N` of
    [G] eq. 4.16-4.17 that the balanced manifold submerses onto ([G] Thm 13).

    Parameters
    ----------
    d : int or (int, int)
        Matrix size d, or the shape (m, n) of non-square matrices (full rank
        min(m, n); the depth must then be finite).
    depth : int or numpy.inf, default 2
        Depth N of the network (``numpy.inf``: the rescaled limit
        :math:`g^\infty`, [G] eq. 14.7-14.10).
    equip : bool, default True
        Equip with :class:`DepthMetric`.

    Notes
    -----
    Points and tangent vectors have shape ``(d * d,)`` (``(m * n,)``; row-major
    flattening, see :meth:`to_vector`). ``intrinsic`` is True: the flat coordinates
    are global coordinates of the open set, as ``BrownianMotion`` requires. The
    full-rank m x n matrices with m != n form one connected open set (GL(d) has two
    components); every geodesic tool of :class:`DepthMetric` works on both.
    """

    def __init__(self, d: int | tuple[int, int], depth=2, equip: bool = True):
        (m, n), self.depth = check_matrix_space(d, depth)
        #: Shape (m, n) of the matrices ((d, d) if square).
        self.matrix_shape = (m, n)
        #: The matrix size d (square), or the shape (m, n) (non-square).
        self.d = m if m == n else (m, n)
        super().__init__(dim=m * n, embedding_space=Euclidean(m * n), equip=equip)

    @property
    def is_square(self) -> bool:
        """True for d x d matrices (m x n with m != n: one component, finite depth only)."""
        return self.matrix_shape[0] == self.matrix_shape[1]

    @staticmethod
    def default_metric():
        """Metric to equip the space with if equip is True."""
        return DepthMetric

    @differentiable(reshape_vjp("point"), wrt=("point",))
    def to_matrix(self, point) -> np.ndarray:
        """Matrix form (..., m, n) of points or tangent vectors of shape (..., m * n)."""
        (point,) = as_arrays((self.dim,), batch=True, point=point)
        return point.reshape(point.shape[:-1] + self.matrix_shape)

    @differentiable(reshape_vjp("matrix"), wrt=("matrix",))
    def to_vector(self, matrix) -> np.ndarray:
        """Vector form (..., m * n) of matrices of shape (..., m, n) (row-major)."""
        matrix = as_array(matrix, "matrix", self.matrix_shape, batch=True, real=True)
        return matrix.reshape(matrix.shape[:-2] + (self.dim,))

    @differentiable(identity_vjp, wrt=("vector", "base_point"))
    def to_tangent(self, vector, base_point=None):
        """Tangent spaces are all of R^(d*d): a validated copy of ``vector``."""
        (vector,) = as_arrays((self.dim,), batch=True, vector=vector)
        if base_point is not None:
            (base_point,) = as_arrays((self.dim,), batch=True, base_point=base_point)
            vector = np.broadcast_to(vector, np.broadcast_shapes(vector.shape, base_point.shape))
        return np.array(vector, dtype=np.float64)

    @boundary
    def belongs(self, point, atol=gs.atol):
        """True where the point has shape (..., d * d) and full rank.

        Full rank means smallest singular value at least ``atol`` (so that
        :meth:`projection` with the same ``atol`` lands in the set) and condition
        number below ``1 / (d eps)``.
        """
        point = np.asarray(point)
        if point.shape[-1:] != self.shape:
            return np.zeros(point.shape[:-1], dtype=bool)
        s = np.linalg.svd(self.to_matrix(point), compute_uv=False)
        smax, smin = s[..., 0], s[..., -1]
        return (smin >= atol) & (smax * max(self.matrix_shape) * np.finfo(float).eps < smin)

    @boundary
    def projection(self, point, atol: float = 1e-6):
        r"""Nearest point whose singular values are at least ``atol * max(1, s_max)``.

        Full-rank points are returned unchanged (copied); singular values
        below the floor are raised to it (the nearest point in Frobenius norm
        of the closed set of matrices with :math:`\sigma_{\min} \ge` floor),
        times :math:`1 + 10^{-8}` so that the rounding of the product
        :math:`U \operatorname{diag}(s) V^T` keeps them above the floor:
        ``belongs(projection(x, atol), atol)`` holds.
        """
        (point,) = as_arrays((self.dim,), batch=True, point=point)
        U, s, Vh = np.linalg.svd(self.to_matrix(point), full_matrices=False)
        floor = atol * np.maximum(1.0, s[..., :1])
        if np.all(s >= floor):
            return point.copy()
        s = np.where(s >= floor, s, floor * (1.0 + 1e-8))
        return self.to_vector((U * s[..., None, :]) @ Vh)

    @boundary
    def random_point(self, n_samples: int = 1, bound: float = 1.0):
        r"""Well-conditioned random points.

        Haar singular frames and singular values log-uniform in [bound/2, 2 bound].

        Returns
        -------
        ndarray, shape (d * d,) or (n_samples, d * d)
        """
        n_samples = check_count(n_samples, "n_samples")
        check_positive(bound, "bound")
        shape = () if n_samples == 1 else (n_samples,)
        m, n = self.matrix_shape
        r = min(m, n)
        U = _haar(shape, m)[..., :r]
        V = _haar(shape, n)[..., :r]
        s = bound * np.exp(plain(gs.random.uniform(np.log(0.5), np.log(2.0), size=shape + (r,))))
        return self.to_vector((U * s[..., None, :]) @ np.swapaxes(V, -1, -2))


def _haar(shape: tuple, d: int) -> np.ndarray:
    """Haar orthogonal matrices from geomstats' global generator (``gs.random.seed``)."""
    return haar_from_gaussian(plain(gs.random.normal(size=shape + (d, d))))


# ---------------------------------------------------------------------------
# Geodesic solvers
# ---------------------------------------------------------------------------


class _MetricExpODESolver(ExpODESolver):
    """geomstats' ``ExpODESolver`` bound to a metric (used by :class:`AutodiffDepthMetric`)."""

    def __init__(self, metric, integrator):
        self._metric = metric
        super().__init__(metric._space, integrator=integrator)

    def _solve(self, tangent_vec, base_point, t_eval=None):
        tangent_vec = gs.array(tangent_vec, dtype=float)
        base_point = gs.array(base_point, dtype=float)
        if base_point.ndim != tangent_vec.ndim:
            base_point, tangent_vec = gs.broadcast_arrays(base_point, tangent_vec)
        initial_state = gs.stack([base_point, tangent_vec], axis=-2)
        force = lambda state, _: self._metric.geodesic_equation(state)  # noqa: E731
        if t_eval is None:
            return self.integrator.integrate(force, initial_state)
        return self.integrator.integrate_t(force, initial_state, t_eval)


class DepthExpSolver(ExpSolver):
    r"""Exponential map of :math:`g^N` by :func:`dln_manifolds.geodesics.depth_exp`.

    Embedded Dormand-Prince 5(4) (``rtol``, ``atol``) or fixed-step RK4
    (``n_steps``), batched over all pairs; raises
    :class:`~dln_manifolds.geodesics.SingularGeodesicError` when a geodesic
    reaches the singular set before t = 1.
    """

    def __init__(self, metric, rtol: float = 1e-10, atol: float = 1e-12, n_steps=None):
        super().__init__(solves_ivp=False)
        self._metric = metric
        self.options = {"rtol": rtol, "atol": atol, "n_steps": n_steps}

    @differentiable(exp_vjp, wrt=("tangent_vec", "base_point"))
    def exp(self, tangent_vec, base_point):
        """Exponential map; shapes (..., m * n), broadcast against each other."""
        space = self._metric._space
        tangent_vec, base_point = as_arrays(
            (space.dim,), batch=True, tangent_vec=tangent_vec, base_point=base_point
        )
        Y = depth_exp(
            space.to_matrix(base_point),
            space.to_matrix(tangent_vec),
            self._metric.depth,
            names=("base_point", "tangent_vec"),
            **self.options,
        )
        return Y.reshape(Y.shape[:-2] + (space.dim,))


class DepthLogShootingSolver(LogSolver):
    r"""Riemannian log of :math:`g^N` by :func:`dln_manifolds.geodesics.depth_log`.

    Newton shooting on the endpoint of the metric's own exponential map (same
    integrator options), with continuation in the endpoint along a path from
    the base point to the target; batched over all pairs. The round trip
    ``exp(log(Y)) = Y`` holds to ``tol`` (relative to ``1 + |Y|``).

    Raises
    ------
    DifferentComponentsError
        Points in different components of GL(d) (``dist`` returns inf there).
    LogConvergenceError
        No geodesic found (never a wrong vector).
    ValueError
        A rank-deficient point or base point.

    Parameters
    ----------
    metric : DepthMetric
    tol : float, default 1e-10
    max_iter : int, default 200
        Newton/continuation rounds.
    """

    def __init__(self, metric, tol: float = 1e-10, max_iter: int = 200):
        super().__init__(solves_bvp=False)
        self._metric = metric
        self.tol = check_positive(tol, "tol")
        self.max_iter = int(max_iter)

    @differentiable(log_vjp, wrt=("point", "base_point"))
    def log(self, point, base_point):
        """Logarithm map; shapes (..., m * n), broadcasting point against base_point."""
        space = self._metric._space
        point, base_point = as_arrays((space.dim,), batch=True, point=point, base_point=base_point)
        V = depth_log(
            space.to_matrix(base_point),
            space.to_matrix(point),
            self._metric.depth,
            tol=self.tol,
            max_iter=self.max_iter,
            names=("base_point", "point"),
            **self._metric.exp_solver.options,
        )
        return V.reshape(V.shape[:-2] + (space.dim,))


# ---------------------------------------------------------------------------
# The metric
# ---------------------------------------------------------------------------


class DepthMetric(RiemannianMetric):
    r"""The depth metric :math:`g^N` on full-rank matrices ([G] eq. 4.16-4.17).

    :math:`g^N_X(Z_1, Z_2) = \mathrm{tr}(Z_1^T \mathcal{A}_{N,X}^{-1} Z_2)`.

    Parameters
    ----------
    space : EndToEndMatrices
    depth : int or numpy.inf, optional
        Defaults to ``space.depth``.
    n_steps : int, optional
        Use fixed-step RK4 with ``n_steps`` steps for :meth:`exp` (error
        O(n_steps^-4)) instead of the adaptive integrator.
    adaptive : bool, optional
        Force the adaptive integrator (True) or RK4 (False; 20 steps unless
        ``n_steps`` is given). Default: adaptive unless ``n_steps`` is given.
    rtol, atol : float
        Tolerances of the adaptive integrator (embedded Dormand-Prince 5(4)).

    Notes
    -----
    - ``metric_matrix``, ``cometric_matrix``, ``inner_product``: closed form
      in the SVD frame ([G] eq. 7.13-7.14).
    - ``christoffels``: the Levi-Civita Christoffel symbols of
      :func:`~dln_manifolds.depth_metric.depth_christoffel` (Daleckii-Krein,
      O(d^3) per pair), batched; no autodiff.
    - ``geodesic_equation``: :math:`\ddot X = -\Gamma_X(\dot X, \dot X)`, one
      SVD and O(d^3) per evaluation, independent of N.
    - ``exp``: :func:`dln_manifolds.geodesics.depth_exp` (:class:`DepthExpSolver`),
      batched; raises :class:`~dln_manifolds.geodesics.SingularGeodesicError`
      when the geodesic reaches the singular set (det X = 0) before t = 1.
    - ``log``: :func:`dln_manifolds.geodesics.depth_log`
      (:class:`DepthLogShootingSolver`: Newton shooting with continuation),
      raises :class:`~dln_manifolds.geodesics.DifferentComponentsError` between
      the components of GL(d) and
      :class:`~dln_manifolds.geodesics.LogConvergenceError` where it fails.
    - ``dist``, ``squared_dist``: the norm of ``log``; ``inf`` between the two
      components of GL(d) (no curve joins them).
    - Non-square points (shape (m, n), finite depth): ``exp``, ``log``, ``dist``
      and ``parallel_transport`` use the same solvers with the rectangular
      Christoffel term (docs/mathematics.rst, :ref:`math-widths-geodesics`); the
      set is connected (``dist`` is always finite) and its singular set is
      rank X < min(m, n).
    - ``riemann_tensor`` (hence ``curvature``, ``sectional_curvature``,
      ``ricci_tensor``, ``scalar_curvature``): geomstats' formula from the
      Christoffel symbols and their Jacobian, the latter by 4th-order central
      differences of the closed-form symbols (error ~1e-10 relative).
    """

    def __init__(
        self,
        space,
        depth=None,
        n_steps: int | None = None,
        adaptive: bool | None = None,
        rtol: float = 1e-10,
        atol: float = 1e-12,
        signature=None,
    ):
        super().__init__(space=space, signature=signature)
        self.depth = check_depth(space.depth if depth is None else depth)
        self.set_integrator(n_steps=n_steps, adaptive=adaptive, rtol=rtol, atol=atol)
        self.log_solver = DepthLogShootingSolver(self)

    def set_integrator(
        self,
        n_steps: int | None = None,
        adaptive: bool | None = None,
        rtol: float = 1e-10,
        atol: float = 1e-12,
    ) -> DepthMetric:
        """Choose the geodesic integrator of :meth:`exp` (and of :meth:`log`, which inverts it).

        Adaptive Dormand-Prince 5(4) with ``rtol``, ``atol`` (the default, or
        ``adaptive=True``), or fixed-step RK4 with ``n_steps`` steps (if
        ``n_steps`` is given and ``adaptive`` is not True; ``adaptive=False``
        alone means 20 steps).
        """
        rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
        if adaptive is None:
            adaptive = n_steps is None
        if adaptive:
            n_steps = None
        else:
            n_steps = 20 if n_steps is None else n_steps
            if (
                isinstance(n_steps, bool)
                or not isinstance(n_steps, (int, np.integer))
                or n_steps < 1
            ):
                raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
            n_steps = int(n_steps)
        self.exp_solver = DepthExpSolver(self, rtol=rtol, atol=atol, n_steps=n_steps)
        return self

    @differentiable(exp_vjp, wrt=("tangent_vec", "base_point"))
    def exp(self, tangent_vec, base_point):
        r"""Riemannian exponential: integrate :math:`\ddot X = -\Gamma_X(\dot X, \dot X)` on [0, 1].

        Parameters
        ----------
        tangent_vec, base_point : array_like, shape (..., m * n)
            Broadcast against each other.

        Returns
        -------
        ndarray, shape (..., m * n)

        Raises
        ------
        SingularGeodesicError
            If the geodesic reaches the singular set (det X = 0, or rank X < min(m, n))
            before t = 1.
        """
        return self.exp_solver.exp(tangent_vec, base_point)

    @boundary
    def retraction(self, tangent_vec, base_point):
        r"""Second-order retraction :math:`R_X(V)`, a cheap stand-in for :meth:`exp`.

        :func:`dln_manifolds.depth_retraction` (the retraction of
        :class:`dln_manifolds.pymanopt.EndToEndMatrices`), batched with no Python
        loop: agrees with :meth:`exp` to second order in V, never leaves full rank
        (condition number at most :func:`~dln_manifolds.retraction_condition_limit`)
        and, for square points, keeps the sign of det X. geomstats' convention
        (``PoincareBallMetric.retraction``, ``StiefelCanonicalMetric.retraction``).

        Parameters
        ----------
        tangent_vec, base_point : array_like, shape (..., dim)
            Vectors of the (m, n) matrices in row-major order; broadcast.

        Returns
        -------
        ndarray, shape (..., dim)
        """
        n = self._space.dim
        tangent_vec, base_point = as_arrays(
            (n,), batch=True, tangent_vec=tangent_vec, base_point=base_point
        )
        shape = self._space.matrix_shape
        X = base_point.reshape(base_point.shape[:-1] + shape)
        V = tangent_vec.reshape(tangent_vec.shape[:-1] + shape)
        out = depth_retraction(X, V, self.depth, names=("base_point", "tangent_vec"))
        return out.reshape(out.shape[:-2] + (n,))

    def squared_dist(self, point_a, point_b, **kwargs):
        """Squared geodesic distance; ``inf`` for points in different components of GL(d)."""
        return self.dist(point_a, point_b) ** 2

    def squared_norm(self, vector, base_point=None):
        """Squared g^N norm of vectors of shape (..., d^2)."""
        as_arrays((self._space.dim,), batch=True, vector=plain(vector))
        return self.inner_product(vector, vector, base_point)

    @differentiable(dist_vjp, wrt=("point_a", "point_b"))
    def dist(self, point_a, point_b):
        """Geodesic distance (norm of :meth:`log`); ``inf`` between components of GL(d).

        Raises :class:`~dln_manifolds.geodesics.LogConvergenceError` where the
        log fails (never a wrong distance).
        """
        space = self._space
        a, b = np.broadcast_arrays(
            *as_arrays((space.dim,), batch=True, point_a=point_a, point_b=point_b)
        )
        out = depth_distance(
            space.to_matrix(a),
            space.to_matrix(b),
            self.depth,
            names=("point_a", "point_b"),
            tol=self.log_solver.tol,
            max_iter=self.log_solver.max_iter,
            **self.exp_solver.options,
        )
        return np.asarray(out)[()] if np.ndim(out) == 0 else out

    @boundary
    def parallel_transport(self, tangent_vec, base_point, direction=None, end_point=None):
        r"""Parallel transport of ``tangent_vec`` along the geodesic in ``direction``.

        :func:`dln_manifolds.geodesics.depth_parallel_transport` (the transport
        ODE with the closed-form Christoffel term, integrated with the
        geodesic). With ``end_point`` instead of ``direction``, the geodesic
        to ``end_point`` is :meth:`log` (``end_point``, ``base_point``).

        Parameters
        ----------
        tangent_vec, base_point : array_like, shape (..., m * n)
        direction : array_like, shape (..., m * n), optional
        end_point : array_like, shape (..., m * n), optional
            Exactly one of ``direction`` and ``end_point``.

        Returns
        -------
        ndarray, shape (..., m * n)
            Tangent vectors at :math:`\exp_X(\text{direction})`.

        Raises
        ------
        SingularGeodesicError
            The geodesic reaches the singular set before t = 1.
        DifferentComponentsError, LogConvergenceError
            From :meth:`log` with ``end_point``.
        """
        space = self._space
        if (direction is None) == (end_point is None):
            raise ValueError("give exactly one of direction and end_point")
        if direction is None:
            direction = self.log(end_point, base_point)
        tangent_vec, base_point, direction = as_arrays(
            (space.dim,),
            batch=True,
            tangent_vec=tangent_vec,
            base_point=base_point,
            direction=direction,
        )
        rtol, atol = self.exp_solver.options["rtol"], self.exp_solver.options["atol"]
        W = depth_parallel_transport(
            space.to_matrix(base_point),
            space.to_matrix(direction),
            space.to_matrix(tangent_vec),
            self.depth,
            rtol=rtol,
            atol=atol,
            names=("base_point", "direction", "tangent_vec"),
        )
        return W.reshape(W.shape[:-2] + (space.dim,))

    # -- helpers ----------------------------------------------------------------
    def _frames_apply(self, fun, base_point, *vectors, out_shape=()):
        """Evaluate fun(frame, *matrices) over a broadcast batch of base points."""
        shape = self._space.matrix_shape
        n = self._space.dim
        base_point = np.asarray(base_point, dtype=float)
        vectors = [np.asarray(v, dtype=float) for v in vectors]
        for name, arr in [("base_point", base_point)] + [("tangent_vec", v) for v in vectors]:
            if arr.shape[-1:] != (n,):
                raise ValueError(f"{name} must have shape (..., {n}), got {arr.shape}")
        batch = _batch_shape(1, base_point, *vectors)
        bp = np.broadcast_to(base_point, batch + (n,)).reshape(batch + shape)
        vs = [np.broadcast_to(v, batch + (n,)).reshape(batch + shape) for v in vectors]
        out = fun(DenseDepthFrame(bp, self.depth), *vs)
        return np.asarray(out).reshape(batch + out_shape)

    # -- metric tensor ------------------------------------------------------------
    @differentiable(metric_matrix_vjp, wrt=("base_point",))
    def metric_matrix(self, base_point=None):
        """Matrix of g^N in the row-major basis, shape (..., d^2, d^2)."""
        (base_point,) = as_arrays((self._space.dim,), batch=True, base_point=base_point)
        n = self._space.dim
        return self._frames_apply(lambda f: f.metric_matrix(), base_point, out_shape=(n, n))

    @differentiable(cometric_matrix_vjp, wrt=("base_point",))
    def cometric_matrix(self, base_point=None):
        r"""Inverse metric matrix, i.e. :math:`\mathcal{A}_{N,X}`; shape (..., d^2, d^2)."""
        (base_point,) = as_arrays((self._space.dim,), batch=True, base_point=base_point)
        n = self._space.dim
        return self._frames_apply(lambda f: f.cometric_matrix(), base_point, out_shape=(n, n))

    def _pair_at(self, tangent_vec_a, tangent_vec_b, base_point):
        """Validate two tangent vectors and a base point, all of shape (..., d^2)."""
        return as_arrays(
            (self._space.dim,),
            batch=True,
            tangent_vec_a=tangent_vec_a,
            tangent_vec_b=tangent_vec_b,
            base_point=base_point,
        )

    @differentiable(inner_product_vjp, wrt=("tangent_vec_a", "tangent_vec_b", "base_point"))
    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        """g^N inner product of vectors of shape (..., d^2); returns shape (...,)."""
        tangent_vec_a, tangent_vec_b, base_point = self._pair_at(
            tangent_vec_a, tangent_vec_b, base_point
        )
        return self._frames_apply(
            lambda f, a, b: f.inner(a, b), base_point, tangent_vec_a, tangent_vec_b
        )

    # -- connection ---------------------------------------------------------------
    @boundary
    def christoffels(self, base_point=None):
        """Christoffel symbols ``G[..., k, i, j]`` (contravariant first), shape (..., n, n, n).

        One batched frame for all base points (no Python loop); O(d^7) per point.
        """
        shape = self._space.matrix_shape
        n = self._space.dim
        (base_point,) = as_arrays((n,), batch=True, base_point=base_point)
        batch = base_point.shape[:-1]
        X = base_point.reshape((-1, 1, 1) + shape)
        frame = DenseDepthFrame(X, self.depth)
        if not self._space.is_square:
            E = np.eye(n).reshape((n,) + shape)
            G = frame.christoffel(E[:, None], E[None, :])  # (b, n, n, m, n'): Gamma(e_i, e_j)
            G = np.moveaxis(G.reshape(-1, n, n, n), -1, 1)
            return G.reshape(batch + (n, n, n))
        d = shape[0]
        # frame coordinates of the standard basis: the rows of R = kron(U, V), reshaped
        E = frame.rotation[:, 0, 0].reshape(-1, n, d, d)
        G = frame.from_frame(frame.christoffel_hat(E[:, :, None], E[:, None, :]))
        G = np.moveaxis(G.reshape(-1, n, n, n), -1, 1)
        return G.reshape(batch + (n, n, n))

    @boundary
    def christoffel_term(self, tangent_vec_a, tangent_vec_b, base_point):
        r""":math:`\Gamma_X(U, V)` for vectors of shape (..., d^2) (no full tensor)."""
        tangent_vec_a, tangent_vec_b, base_point = self._pair_at(
            tangent_vec_a, tangent_vec_b, base_point
        )
        n = self._space.dim
        return self._frames_apply(
            lambda f, a, b: f.christoffel(a, b),
            base_point,
            tangent_vec_a,
            tangent_vec_b,
            out_shape=(n,),
        )

    @boundary
    def geodesic_equation(self, state):
        r"""Right-hand side of the geodesic ODE: ``(velocity, -Gamma_X(velocity, velocity))``.

        Parameters
        ----------
        state : array_like, shape (..., 2, d^2)
            Position and velocity.

        Returns
        -------
        ndarray, shape (..., 2, d^2)
        """
        state = np.asarray(state, dtype=float)
        shape = self._space.matrix_shape
        batch = state.shape[:-2]
        pos = state[..., 0, :].reshape(batch + shape)
        vel = state[..., 1, :].reshape(batch + shape)
        acc = DenseDepthFrame(pos, self.depth, check=False).geodesic_acceleration(vel)
        return np.stack([state[..., 1, :], acc.reshape(batch + (self._space.dim,))], axis=-2)

    @boundary
    def jacobian_christoffels(self, base_point):
        r"""Derivatives ``J[..., k, i, j, l]`` of the Christoffel symbols in coordinate l.

        4th-order central differences of the closed-form symbols, step
        :math:`h = 10^{-3} \max(1, |X|)`: truncation O(h^4) ~ 1e-12, rounding
        O(eps/h) ~ 1e-13 relative.
        """
        base_point = np.asarray(base_point, dtype=float)
        n = self._space.dim
        batch = base_point.shape[:-1]
        flat = base_point.reshape(-1, n)
        h = 1e-3 * np.maximum(1.0, np.linalg.norm(flat, axis=-1))  # (b,)
        offsets = np.array([2.0, 1.0, -1.0, -2.0])[:, None, None] * np.eye(n)  # (4, l, n)
        out = np.empty((flat.shape[0], n, n, n, n))
        # all stencil points of a block of base points in one christoffels call; the block
        # (4 n^5 floats of symbols per base point) is kept small enough for the cache: the
        # batched symbols are memory-bound, one giant call is slower than blocks for d >= 3
        block = max(1, 2**14 // (4 * n**4))
        for start in range(0, flat.shape[0], block):
            x, hb = flat[start : start + block], h[start : start + block]
            pts = x[:, None, None, :] + offsets * hb[:, None, None, None]  # (b, 4, l, n)
            G = self.christoffels(pts.reshape(-1, n)).reshape((-1, 4, n, n, n, n))
            J = (-G[:, 0] + 8 * G[:, 1] - 8 * G[:, 2] + G[:, 3]) / (
                12 * hb[:, None, None, None, None]
            )
            out[start : start + block] = np.moveaxis(J, 1, -1)
        return out.reshape(batch + (n, n, n, n))

    def riemann_tensor(self, base_point=None):
        r"""Riemann tensor ``R[..., i, j, k, l]`` = :math:`R_{ijk}^l` (geomstats' convention).

        geomstats' formula :math:`\partial_j \Gamma^l_{ki} - \partial_k \Gamma^l_{ji}
        + \Gamma^l_{jm}\Gamma^m_{ki} - \Gamma^l_{km}\Gamma^m_{ji}` with the closed-form
        symbols and :meth:`jacobian_christoffels`.
        """
        christoffels = self.christoffels(base_point)
        jac = self.jacobian_christoffels(base_point)
        prod = gs.einsum("...ijk,...klm->...ijlm", christoffels, christoffels)
        return (
            gs.einsum("...ijlm->...lmji", jac)
            - gs.einsum("...ijlm->...ljmi", jac)
            + gs.einsum("...ijlm->...mjli", prod)
            - gs.einsum("...ijlm->...lmji", prod)
        )


class AutodiffDepthMetric(DepthMetric):
    r"""Reference :math:`g^N` whose Christoffel symbols come from geomstats' autodiff.

    ``metric_matrix`` implements [G] eq. 4.14 directly with backend operations,
    :math:`\mathcal{A} = \sum_{k=1}^{N} (XX^T)^{(N-k)/N} \otimes (X^TX)^{(k-1)/N}`
    (row-major Kronecker form, fractional powers by ``eigh``; for m x n matrices the
    singular Gram matrix of the longer side has power 0 the identity and powers
    :math:`a > 0` written through the other one, e.g. :math:`X (X^TX)^{a-1} X^T`),
    inverted; and ``christoffels``, ``geodesic_equation`` and ``riemann_tensor`` are
    geomstats' generic ones (automatic differentiation of ``metric_matrix``).
    Needs an autodiff backend (``GEOMSTATS_BACKEND=autograd``) and a finite
    depth (``riemann_tensor``, hence ``curvature``, refuses pytorch: geomstats' pytorch
    ``jacobian_vec`` does not differentiate twice). It is the baseline of
    ``benchmarks/bench_geomstats_exp.py`` and an independent cross-check of
    :class:`DepthMetric`; it is slow.
    """

    def __init__(self, space, depth=None, **kwargs):
        super().__init__(space, depth=depth, **kwargs)
        if np.isinf(self.depth):
            raise ValueError("AutodiffDepthMetric needs a finite depth")

    def exp(self, tangent_vec, base_point):
        """geomstats' generic ``ExpODESolver`` (RK4, ``n_steps`` or 20 steps) on the autodiff
        geodesic equation; no singular-set checks."""
        n_steps = self.exp_solver.options["n_steps"] or 20
        solver = _MetricExpODESolver(self, GSIVPIntegrator(n_steps=n_steps, step_type="rk4"))
        return solver.exp(tangent_vec, base_point)

    def metric_matrix(self, base_point=None):
        m, n = self._space.matrix_shape
        N = self.depth
        X = gs.reshape(base_point, base_point.shape[:-1] + (m, n))
        Xt = gs.moveaxis(X, -1, -2)

        def power(S, a):
            w, Q = gs.linalg.eigh(S)
            return gs.matmul(Q * gs.expand_dims(w**a, -2), gs.moveaxis(Q, -1, -2))

        # the Gram matrix of the longer side is singular for m != n: its powers a > 0 as
        # X (X^T X)^(a-1) X^T (tall) or X^T (X X^T)^(a-1) X (wide), its power 0 the identity
        # (so that no eigenvalue 0 is raised to a fractional power under autodiff)
        def left(a):
            if m <= n:
                return power(gs.matmul(X, Xt), a)
            if a == 0:
                return gs.eye(m)
            return gs.matmul(gs.matmul(X, power(gs.matmul(Xt, X), a - 1)), Xt)

        def right(a):
            if m >= n:
                return power(gs.matmul(Xt, X), a)
            if a == 0:
                return gs.eye(n)
            return gs.matmul(gs.matmul(Xt, power(gs.matmul(X, Xt), a - 1)), X)

        A = 0.0
        for k in range(1, N + 1):
            kron = gs.einsum("...ac,...bd->...abcd", left((N - k) / N), right((k - 1) / N))
            A = A + gs.reshape(kron, kron.shape[:-4] + (m * n, m * n))
        return gs.linalg.inv(A)

    def cometric_matrix(self, base_point=None):
        return gs.linalg.inv(self.metric_matrix(base_point))

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        return RiemannianMetric.inner_product(self, tangent_vec_a, tangent_vec_b, base_point)

    def christoffels(self, base_point=None):
        return RiemannianMetric.christoffels(self, base_point)

    def geodesic_equation(self, state):
        return RiemannianMetric.geodesic_equation(self, state)

    def riemann_tensor(self, base_point=None):
        """geomstats' generic Riemann tensor; autograd only (see the class docstring)."""
        if BACKEND == "pytorch":
            # geomstats' pytorch jacobian_vec calls torch.autograd.functional.jacobian
            # without create_graph: the Jacobian of the autodiff Christoffel symbols (a
            # second derivative) drops the dependence of their first one on the point
            # (measured: relative errors ~1 in the curvature, square and non-square)
            raise NotImplementedError(
                "AutodiffDepthMetric.riemann_tensor needs GEOMSTATS_BACKEND=autograd: "
                "geomstats' pytorch jacobian_vec does not differentiate twice"
            )
        return RiemannianMetric.riemann_tensor(self, base_point)
