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
backend as well as under ``GEOMSTATS_BACKEND=autograd``.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [DK] Ju. L. Daleckii and S. G. Krein, *Integration and differentiation of functions of
  Hermitian operators and applications to the theory of perturbations*, AMS Transl. (2)
  47 (1965).
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import logging
import math

import geomstats.backend as gs
import numpy as np
from geomstats.geometry.base import VectorSpaceOpenSet
from geomstats.geometry.euclidean import Euclidean
from geomstats.geometry.riemannian_metric import RiemannianMetric
from geomstats.numerics.geodesic import ExpODESolver, LogSolver
from geomstats.numerics.ivp import GSIVPIntegrator, ScipySolveIVP

from .._checks import (
    as_array,
    as_arrays,
    as_matrix,
    check_count,
    check_depth,
    check_positive,
    check_real_scalar,
)
from ._frame import DepthFrame

__all__ = [
    "EndToEndMatrices",
    "DepthMetric",
    "AutodiffDepthMetric",
    "DepthLogShootingSolver",
    "matrix_to_vector",
    "vector_to_matrix",
    "direction_geodesic",
]


# ---------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------


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


def direction_geodesic(X, depth, t) -> np.ndarray:
    r"""Closed-form geodesic :math:`\exp_X(tX) = (1 + t/N)^N X` of :math:`g^N`.

    The diagonal matrices in a fixed singular frame are the fixed points of the
    isometries :math:`X \mapsto DXD` (D diagonal with entries :math:`\pm 1`), so
    they form a totally geodesic submanifold, on which
    :math:`g^N = \sum_k d\sigma_k^2 / (N \sigma_k^{2-2/N})` ([G] eq. 7.14) is flat
    in :math:`r_k = \sigma_k^{1/N}` (:math:`g^N = N \sum_k dr_k^2`). Hence
    :math:`r_k(t)` is affine and, for the initial velocity X,
    :math:`\sigma_k(t) = \sigma_k (1 + t/N)^N`; for ``depth = inf``
    (:math:`g^\infty = \sum_k d\sigma_k^2/\sigma_k^2`) it is :math:`e^t X`.
    Valid for :math:`t > -N`.

    Parameters
    ----------
    X : array_like, shape (d, d)
    depth : int or numpy.inf
    t : float

    Returns
    -------
    ndarray, shape (d, d)
    """
    depth = check_depth(depth)
    X = as_matrix(X, "X", real=True)
    t = check_real_scalar(t, "t")
    if np.isinf(depth):
        return np.exp(t) * X
    if 1.0 + t / depth <= 0:
        raise ValueError(f"t must exceed -depth = {-depth}, got {t}")
    return (1.0 + t / depth) ** depth * X


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
    d : int
        Matrix size.
    depth : int or numpy.inf, default 2
        Depth N of the network (``numpy.inf``: the rescaled limit
        :math:`g^\infty`, [G] eq. 14.7-14.10).
    equip : bool, default True
        Equip with :class:`DepthMetric`.

    Notes
    -----
    Points and tangent vectors have shape ``(d * d,)`` (row-major flattening,
    see :func:`matrix_to_vector`). ``intrinsic`` is True: the flat coordinates
    are global coordinates of the open set, as ``BrownianMotion`` requires.
    """

    def __init__(self, d: int, depth=2, equip: bool = True):
        self.d = check_count(d, "d")
        self.depth = check_depth(depth)
        super().__init__(
            dim=self.d * self.d, embedding_space=Euclidean(self.d * self.d), equip=equip
        )

    @staticmethod
    def default_metric():
        """Metric to equip the space with if equip is True."""
        return DepthMetric

    def to_matrix(self, point) -> np.ndarray:
        """Matrix form (..., d, d) of points or tangent vectors of shape (..., d * d)."""
        (point,) = as_arrays((self.dim,), batch=True, point=point)
        return vector_to_matrix(point, self.d)

    def to_vector(self, matrix) -> np.ndarray:
        """Vector form (..., d * d) of matrices of shape (..., d, d)."""
        matrix = as_array(matrix, "matrix", (self.d, self.d), batch=True, real=True)
        return matrix_to_vector(matrix)

    def to_tangent(self, vector, base_point=None):
        """Tangent spaces are all of R^(d*d): a validated copy of ``vector``."""
        (vector,) = as_arrays((self.dim,), batch=True, vector=vector)
        if base_point is not None:
            (base_point,) = as_arrays((self.dim,), batch=True, base_point=base_point)
            vector = np.broadcast_to(vector, np.broadcast_shapes(vector.shape, base_point.shape))
        return np.array(vector, dtype=np.float64)

    def belongs(self, point, atol=gs.atol):
        """True where the point has shape (..., d * d) and full rank.

        Full rank means smallest singular value above ``atol`` and condition
        number below ``1 / (d eps)``.
        """
        point = gs.array(point)
        if point.shape[-1:] != self.shape:
            return gs.zeros(point.shape[:-1], dtype=bool)
        s = np.linalg.svd(self.to_matrix(point), compute_uv=False)
        smax, smin = s[..., 0], s[..., -1]
        return (smin > atol) & (smax * self.d * np.finfo(float).eps < smin)

    def projection(self, point, atol: float = 1e-6):
        r"""Nearest point whose singular values are at least ``atol * max(1, s_max)``.

        Full-rank points are returned unchanged (copied); singular values
        below the floor are raised to it (the nearest point in Frobenius norm
        of the closed set of matrices with :math:`\sigma_{\min} \ge` floor).
        """
        (point,) = as_arrays((self.dim,), batch=True, point=point)
        U, s, Vh = np.linalg.svd(self.to_matrix(point))
        floor = atol * np.maximum(1.0, s[..., :1])
        if np.all(s >= floor):
            return gs.copy(point)
        s = np.maximum(s, floor)
        return self.to_vector((U * s[..., None, :]) @ Vh)

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
        d = self.d
        U = _haar(shape, d)
        V = _haar(shape, d)
        s = bound * np.exp(gs.random.uniform(np.log(0.5), np.log(2.0), size=shape + (d,)))
        return self.to_vector((U * s[..., None, :]) @ np.swapaxes(V, -1, -2))


def _haar(shape: tuple, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(gs.random.normal(size=shape + (d, d)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., None, :]


# ---------------------------------------------------------------------------
# Geodesic solvers
# ---------------------------------------------------------------------------


class _MetricExpODESolver(ExpODESolver):
    """``ExpODESolver`` bound to a metric (not to ``space.metric``)."""

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


class DepthLogShootingSolver(LogSolver):
    r"""Riemannian log of :math:`g^N` by shooting: solve :math:`\exp_X(v) = Y` for v.

    Warm start (second order): with :math:`\Delta = Y - X`,
    :math:`v_0 = \Delta + \tfrac12 \Gamma_X(\Delta, \Delta)`, which inverts
    :math:`\exp_X(v) = X + v - \tfrac12\Gamma_X(v, v) + O(|v|^3)` up to
    :math:`O(|\Delta|^3)`. Then Newton iterations on the endpoint mismatch with
    the Jacobian :math:`I - \Gamma_X(v_0, \cdot)` (the first-order Jacobian of
    the exponential map), improved by Broyden rank-one updates, with
    backtracking. Where that stalls, the Jacobian is recomputed by forward
    differences of the exponential map (d^2 extra geodesics) and Newton goes on.
    A batch of pairs is solved simultaneously: each iteration integrates all
    pending geodesics as one batch.

    The log inverts the metric's own (discretized) exponential map, so the
    round trip ``exp(log(Y)) = Y`` holds to ``tol`` whatever the integrator.

    Parameters
    ----------
    metric : DepthMetric
    tol : float, default 1e-11
        Target Frobenius norm of the endpoint mismatch, relative to ``1 + |Y|``.
    max_iter : int, default 40
    """

    def __init__(self, metric, tol: float = 1e-11, max_iter: int = 40):
        super().__init__(solves_bvp=False)
        self._metric = metric
        self.tol = check_positive(tol, "tol")
        self.max_iter = int(max_iter)
        self.last_n_iter = None

    def log(self, point, base_point):
        """Logarithm map; shapes (..., d * d), broadcasting point against base_point."""
        point, base_point = as_arrays(
            (self._metric._space.dim,), batch=True, point=point, base_point=base_point
        )
        n = self._metric._space.dim
        point = np.asarray(point, dtype=float)
        base_point = np.asarray(base_point, dtype=float)
        if point.shape[-1:] != (n,) or base_point.shape[-1:] != (n,):
            raise ValueError(
                f"point and base_point must have shape (..., {n}), got "
                f"{point.shape} and {base_point.shape}"
            )
        point, base_point = np.broadcast_arrays(point, base_point)
        out = self._log_batch(point.reshape(-1, n), base_point.reshape(-1, n))
        return out.reshape(point.shape)

    def _exp(self, v, x):
        return np.asarray(self._metric.exp(v, x)).reshape(v.shape)

    def _safe_residual(self, v, x, y):
        """exp(v) - y, with rows whose geodesic fails (leaves GL(d)) set to inf."""
        try:
            return self._exp(v, x) - y
        except (ValueError, np.linalg.LinAlgError):
            out = np.empty_like(v)
            for i in range(v.shape[0]):
                try:
                    out[i] = self._exp(v[i : i + 1], x[i : i + 1])[0] - y[i]
                except (ValueError, np.linalg.LinAlgError):
                    out[i] = np.inf
            return out

    def _log_batch(self, Y, Xv):
        metric = self._metric
        d = metric._space.d
        n = d * d
        b = Y.shape[0]
        Xm = Xv.reshape(b, d, d)
        frame = DepthFrame(Xm, metric.depth)
        delta = Y - Xv
        v = delta + 0.5 * frame.christoffel(delta.reshape(b, d, d), delta.reshape(b, d, d)).reshape(
            b, n
        )
        # Jacobian I - Gamma_X(v, .) of the exponential map to first order
        wide = DepthFrame(Xm[:, None], metric.depth, check=False)
        E = np.eye(n).reshape(1, n, d, d)
        cols = wide.christoffel(v.reshape(b, 1, d, d), E).reshape(b, n, n)
        J = np.eye(n) - np.swapaxes(cols, -1, -2)
        tol = self.tol * (1.0 + np.linalg.norm(Y, axis=1))
        F = self._safe_residual(v, Xv, Y)
        err = np.linalg.norm(F, axis=1)
        used_fd = np.zeros(b, dtype=bool)
        failed = np.zeros(b, dtype=bool)
        it = 0
        for it in range(self.max_iter):  # noqa: B007
            active = np.flatnonzero((err > tol) & ~failed)
            if active.size == 0:
                break
            try:
                step = -np.linalg.solve(J[active], F[active][..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = -F[active]
            lam = np.ones(active.size)
            pending = np.ones(active.size, dtype=bool)
            v_new, F_new, err_new = v[active].copy(), F[active].copy(), err[active].copy()
            for _ in range(12):  # backtracking on the mismatch
                sel = np.flatnonzero(pending)
                if sel.size == 0:
                    break
                rows = active[sel]
                trial = v[rows] + lam[sel, None] * step[sel]
                Ft = self._safe_residual(trial, Xv[rows], Y[rows])
                et = np.linalg.norm(Ft, axis=1)
                ok = et < err[rows]
                v_new[sel[ok]], F_new[sel[ok]], err_new[sel[ok]] = trial[ok], Ft[ok], et[ok]
                pending[sel[ok]] = False
                lam[sel[~ok]] *= 0.5
            accepted = ~pending
            need_fd = []
            for k, row in enumerate(active):
                if not accepted[k]:
                    if used_fd[row]:
                        failed[row] = True
                    else:
                        need_fd.append(row)
                    continue
                s_ = v_new[k] - v[row]
                y_ = F_new[k] - F[row]
                J[row] += np.outer(y_ - J[row] @ s_, s_) / (s_ @ s_)  # Broyden's good update
                if err_new[k] > 0.5 * err[row] and not used_fd[row] and err_new[k] > tol[row]:
                    need_fd.append(row)
                v[row], F[row], err[row] = v_new[k], F_new[k], err_new[k]
            if need_fd:
                rows = np.array(need_fd)
                J[rows] = self._fd_jacobian(v[rows], Xv[rows], F[rows] + Y[rows])
                used_fd[rows] = True
        self.last_n_iter = it
        bad = err > tol
        if np.any(bad):
            logging.warning(
                "DepthLogShootingSolver did not converge for %d of %d pairs "
                "(largest endpoint mismatch %.3e)",
                int(np.count_nonzero(bad)),
                b,
                float(np.max(err)),
            )
        return v

    def _fd_jacobian(self, v, x, exp_v):
        """Forward-difference Jacobians of v -> exp_x(v), all integrated as one batch of geodesics.

        Step h = 1e-7 max(1, |v|): error ~h |exp''| + eps/h ~ 1e-7 relative, enough for Newton.
        """
        k, n = v.shape
        h = 1e-7 * np.maximum(1.0, np.linalg.norm(v, axis=1))
        V = v[:, None, :] + h[:, None, None] * np.eye(n)[None]
        ends = self._exp(V.reshape(k * n, n), np.repeat(x, n, axis=0)).reshape(k, n, n)
        return np.swapaxes(ends - exp_v[:, None, :], -1, -2) / h[:, None, None]


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
    n_steps : int, default 20
        Steps of the fixed-step RK4 integrator of the geodesic equation used by
        :meth:`exp` (ignored if ``adaptive``).
    adaptive : bool, default False
        Use ``scipy.integrate.solve_ivp`` (DOP853, ``rtol``, ``atol``) instead.
    rtol, atol : float
        Tolerances of the adaptive integrator.

    Notes
    -----
    - ``metric_matrix``, ``cometric_matrix``, ``inner_product``: closed form
      in the SVD frame ([G] eq. 7.13-7.14).
    - ``christoffels``: the Levi-Civita Christoffel symbols of
      :func:`~dln_manifolds.depth_metric.depth_christoffel` (Daleckii-Krein,
      O(d^3) per pair), batched; no autodiff.
    - ``geodesic_equation``: :math:`\ddot X = -\Gamma_X(\dot X, \dot X)`, one
      SVD and O(d^3) per evaluation, independent of N.
    - ``exp``: geomstats' ``ExpODESolver`` on that equation (RK4 with
      ``n_steps`` steps, error O(n_steps^-4); or adaptive DOP853).
    - ``log``: :class:`DepthLogShootingSolver` (warm-started Newton-Broyden
      shooting); ``dist`` and ``squared_dist`` come from it.
    - ``riemann_tensor`` (hence ``curvature``, ``sectional_curvature``,
      ``ricci_tensor``, ``scalar_curvature``): geomstats' formula from the
      Christoffel symbols and their Jacobian, the latter by 4th-order central
      differences of the closed-form symbols (error ~1e-10 relative).
    """

    def __init__(
        self,
        space,
        depth=None,
        n_steps: int = 20,
        adaptive: bool = False,
        rtol: float = 1e-10,
        atol: float = 1e-12,
        signature=None,
    ):
        super().__init__(space=space, signature=signature)
        self.depth = check_depth(space.depth if depth is None else depth)
        self.set_integrator(n_steps=n_steps, adaptive=adaptive, rtol=rtol, atol=atol)
        self.log_solver = DepthLogShootingSolver(self)

    def set_integrator(
        self, n_steps: int = 20, adaptive: bool = False, rtol: float = 1e-10, atol: float = 1e-12
    ) -> DepthMetric:
        """Choose the geodesic integrator of :meth:`exp` (fixed-step RK4 or adaptive DOP853)."""
        if adaptive:
            integrator = ScipySolveIVP(
                method="DOP853",
                rtol=check_positive(rtol, "rtol"),
                atol=check_positive(atol, "atol"),
            )
        else:
            if (
                isinstance(n_steps, bool)
                or not isinstance(n_steps, (int, np.integer))
                or n_steps < 1
            ):
                raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
            integrator = GSIVPIntegrator(n_steps=int(n_steps), step_type="rk4")
        self.exp_solver = _MetricExpODESolver(self, integrator)
        return self

    def exp(self, tangent_vec, base_point):
        r"""Riemannian exponential: integrate :math:`\ddot X = -\Gamma_X(\dot X, \dot X)` on [0, 1].

        Parameters
        ----------
        tangent_vec, base_point : array_like, shape (..., d * d)
            Broadcast against each other.

        Returns
        -------
        ndarray, shape (..., d * d)
        """
        tangent_vec, base_point = as_arrays(
            (self._space.dim,), batch=True, tangent_vec=tangent_vec, base_point=base_point
        )
        n = self._space.dim
        for name, arr in (("tangent_vec", tangent_vec), ("base_point", base_point)):
            if np.shape(arr)[-1:] != (n,):
                raise ValueError(f"{name} must have shape (..., {n}), got {np.shape(arr)}")
        return self.exp_solver.exp(tangent_vec, base_point)

    # -- helpers ----------------------------------------------------------------
    def _frames_apply(self, fun, base_point, *vectors, out_shape=()):
        """Evaluate fun(frame, *matrices) over a broadcast batch of base points."""
        d = self._space.d
        n = d * d
        base_point = np.asarray(base_point, dtype=float)
        vectors = [np.asarray(v, dtype=float) for v in vectors]
        for name, arr in [("base_point", base_point)] + [("tangent_vec", v) for v in vectors]:
            if arr.shape[-1:] != (n,):
                raise ValueError(f"{name} must have shape (..., {n}), got {arr.shape}")
        batch = _batch_shape(1, base_point, *vectors)
        bp = np.broadcast_to(base_point, batch + (n,)).reshape(batch + (d, d))
        vs = [np.broadcast_to(v, batch + (n,)).reshape(batch + (d, d)) for v in vectors]
        out = fun(DepthFrame(bp, self.depth), *vs)
        return np.asarray(out).reshape(batch + out_shape)

    # -- metric tensor ------------------------------------------------------------
    def metric_matrix(self, base_point=None):
        """Matrix of g^N in the row-major basis, shape (..., d^2, d^2)."""
        (base_point,) = as_arrays((self._space.dim,), batch=True, base_point=base_point)
        n = self._space.dim
        return self._frames_apply(lambda f: f.metric_matrix(), base_point, out_shape=(n, n))

    def cometric_matrix(self, base_point=None):
        r"""Inverse metric matrix, i.e. :math:`\mathcal{A}_{N,X}`; shape (..., d^2, d^2)."""
        (base_point,) = as_arrays((self._space.dim,), batch=True, base_point=base_point)
        n = self._space.dim
        return self._frames_apply(lambda f: f.cometric_matrix(), base_point, out_shape=(n, n))

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        """g^N inner product of vectors of shape (..., d^2); returns shape (...,)."""
        tangent_vec_a, tangent_vec_b, base_point = as_arrays(
            (self._space.dim,),
            batch=True,
            tangent_vec_a=tangent_vec_a,
            tangent_vec_b=tangent_vec_b,
            base_point=base_point,
        )
        return self._frames_apply(
            lambda f, a, b: f.inner(a, b), base_point, tangent_vec_a, tangent_vec_b
        )

    def squared_norm(self, vector, base_point=None):
        """Squared g^N norm of vectors of shape (..., d^2)."""
        (vector,) = as_arrays((self._space.dim,), batch=True, vector=vector)
        return self.inner_product(vector, vector, base_point)

    def squared_dist(self, point_a, point_b, **kwargs):
        """Squared geodesic distance (through :meth:`log`); shapes (..., d^2)."""
        point_a, point_b = as_arrays(
            (self._space.dim,), batch=True, point_a=point_a, point_b=point_b
        )
        return super().squared_dist(point_a, point_b, **kwargs)

    # -- connection ---------------------------------------------------------------
    def christoffels(self, base_point=None):
        """Christoffel symbols ``G[..., k, i, j]`` (contravariant first), shape (..., n, n, n)."""
        (base_point,) = as_arrays((self._space.dim,), batch=True, base_point=base_point)
        n = self._space.dim
        base_point = np.asarray(base_point, dtype=float)
        flat = base_point.reshape(-1, n)
        out = np.stack(
            [
                self._frames_apply(lambda f: f.christoffel_tensor(), x, out_shape=(n, n, n))
                for x in flat
            ]
        )
        return out.reshape(base_point.shape[:-1] + (n, n, n))

    def christoffel_term(self, tangent_vec_a, tangent_vec_b, base_point):
        r""":math:`\Gamma_X(U, V)` for vectors of shape (..., d^2) (no full tensor)."""
        tangent_vec_a, tangent_vec_b, base_point = as_arrays(
            (self._space.dim,),
            batch=True,
            tangent_vec_a=tangent_vec_a,
            tangent_vec_b=tangent_vec_b,
            base_point=base_point,
        )
        n = self._space.dim
        return self._frames_apply(
            lambda f, a, b: f.christoffel(a, b),
            base_point,
            tangent_vec_a,
            tangent_vec_b,
            out_shape=(n,),
        )

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
        d = self._space.d
        batch = state.shape[:-2]
        pos = state[..., 0, :].reshape(batch + (d, d))
        vel = state[..., 1, :].reshape(batch + (d, d))
        acc = DepthFrame(pos, self.depth, check=False).geodesic_acceleration(vel)
        return np.stack([state[..., 1, :], acc.reshape(batch + (d * d,))], axis=-2)

    def jacobian_christoffels(self, base_point):
        r"""Derivatives ``J[..., k, i, j, l]`` of the Christoffel symbols in coordinate l.

        4th-order central differences of the closed-form symbols, step
        :math:`h = 10^{-3} \max(1, |X|)`: truncation O(h^4) ~ 1e-12, rounding
        O(eps/h) ~ 1e-13 relative.
        """
        base_point = gs.array(base_point, dtype=float)
        n = self._space.dim
        batch = base_point.shape[:-1]
        flat = base_point.reshape(-1, n)
        out = np.empty((flat.shape[0], n, n, n, n))
        for b, x in enumerate(flat):
            h = 1e-3 * max(1.0, float(np.linalg.norm(x)))
            E = h * np.eye(n)
            pts = np.concatenate([x + 2 * E, x + E, x - E, x - 2 * E])
            G = self.christoffels(pts).reshape(4, n, n, n, n)
            out[b] = np.moveaxis((-G[0] + 8 * G[1] - 8 * G[2] + G[3]) / (12 * h), 0, -1)
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
    (row-major Kronecker form, fractional powers by ``eigh``), inverted; and
    ``christoffels``, ``geodesic_equation`` and ``riemann_tensor`` are
    geomstats' generic ones (automatic differentiation of ``metric_matrix``).
    Needs an autodiff backend (``GEOMSTATS_BACKEND=autograd``) and a finite
    depth. It is the baseline of ``benchmarks/bench_geomstats_exp.py`` and an
    independent cross-check of :class:`DepthMetric`; it is slow.
    """

    def __init__(self, space, depth=None, **kwargs):
        super().__init__(space, depth=depth, **kwargs)
        if np.isinf(self.depth):
            raise ValueError("AutodiffDepthMetric needs a finite depth")

    def metric_matrix(self, base_point=None):
        d = self._space.d
        N = self.depth
        X = gs.reshape(base_point, base_point.shape[:-1] + (d, d))
        Xt = gs.moveaxis(X, -1, -2)
        p, E = gs.linalg.eigh(gs.matmul(X, Xt))
        q, F = gs.linalg.eigh(gs.matmul(Xt, X))

        def power(w, Q, a):
            return gs.matmul(Q * gs.expand_dims(w**a, -2), gs.moveaxis(Q, -1, -2))

        A = 0.0
        for k in range(1, N + 1):
            L = power(p, E, (N - k) / N)
            R = power(q, F, (k - 1) / N)
            kron = gs.einsum("...ac,...bd->...abcd", L, R)
            A = A + gs.reshape(kron, kron.shape[:-4] + (d * d, d * d))
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
        return RiemannianMetric.riemann_tensor(self, base_point)
