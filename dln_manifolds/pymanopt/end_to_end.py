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

import warnings
from collections import OrderedDict

import numpy as np
from pymanopt.manifolds.manifold import Manifold

from .._checks import as_array, check_full_rank, check_matrix_space, check_positive
from .._linalg import haar_orthogonal
from ..depth_metric import DepthFrame
from ..geodesics import GeodesicError, depth_exp, depth_log
from ..retraction import depth_retraction_unchecked

__all__ = ["EndToEndMatrices", "BoundaryWarning", "WARN_CONDITION"]

#: Condition number (of the point or of the metric tensor) above which
#: :meth:`EndToEndMatrices.norm` warns: 1/sqrt(eps).
WARN_CONDITION = 1.0 / np.sqrt(np.finfo(np.float64).eps)


#: Logs kept by :meth:`EndToEndMatrices.log` (exact repeats are answered from this cache).
_LOG_CACHE_SIZE = 256
#: Largest number of recent partners computed along with a requested log.
_MAX_PARTNERS = 16
#: Largest number of recently produced points (by :meth:`EndToEndMatrices.random_point` and
#: :meth:`EndToEndMatrices.retraction`) kept as the next base points of a batched log.
_MAX_FRESH = 64


class BoundaryWarning(RuntimeWarning):
    """An iterate is close to the rank-deficient boundary of GL(d) (det = 0)."""


class EndToEndMatrices(Manifold):
    r"""Full-rank d x d real matrices with the depth metric :math:`g^N` ([G] eq. 4.16-4.17).

    :math:`g^N_X(Z_1, Z_2) = \mathrm{tr}(Z_1^T \mathcal{A}_{N,X}^{-1} Z_2)`, the metric that
    the balanced manifold submerses onto ([G] Thm 13). Points and tangent
    vectors are arrays of shape (d, d) (point layout 1).

    Parameters
    ----------
    d : int or (int, int)
        Matrix size d, or the shape (m, n) of non-square matrices.
    depth : int or numpy.inf
        Depth N >= 1 (finite for non-square shapes). ``numpy.inf`` gives
        :math:`g^\infty` built from the rescaled operator :math:`\mathcal{A}_{\infty,X}`
        ([G] eq. 14.7). Depth 1 is the Euclidean metric.
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
    - Geodesics: ``exp``, ``log``, ``dist`` and
      ``pair_mean`` by :mod:`dln_manifolds.geodesics` (ODE integration and
      Newton shooting; a ``log`` of a random 2 x 2 pair takes ~0.1-1 s, of a
      near pair ~0.02-0.05 s). ``dist`` is ``inf`` between the two components
      of GL(d); ``log`` and ``pair_mean`` raise DifferentComponentsError there.
      ``geodesic_tol`` (default 1e-10) sets the accuracy of ``log``.
    - ``log`` is memoized and batched: exact repeats of a pair are answered
      from a cache (256 pairs), and a log from a new base point is computed in
      one batched :func:`~dln_manifolds.geodesics.depth_log` call together with
      the logs to the (up to 16) points that were partners of both previous
      base points, which pymanopt's NelderMead (its Karcher mean asks for
      ``dist(y, p)`` for each simplex point p, then for ``log`` at the same y,
      for a sequence of points y) ask for next. An end point asked for from the
      previous base point too (ParticleSwarm: the global best, from each particle
      in turn) is computed in one batch from the base and from the points that
      :meth:`random_point` and :meth:`retraction` returned after it (up to 64, those
      not yet a base point: the next particles), once per base point and not
      again for an end point whose batch failed; two
      iterations of ParticleSwarm (d = 2) take 2 s instead of 8-10 s. A batch in
      which a speculative pair fails falls back to the requested pair alone.
      Results agree with single calls to rounding.
      pymanopt's NelderMead and ParticleSwarm draw :meth:`random_point` from both
      components (give them points of one component) and call ``log`` or
      ``dist`` many times per iteration: one NelderMead iteration takes about
      2 s (d = 2, near start, ``geodesic_tol = 1e-8``) to 20-30 s (random starts),
      and ParticleSwarm's random velocities or a line search of NelderMead's
      Karcher mean can reach a point close to the boundary, where ``log``
      raises LogConvergenceError.
    - Non-square points ``d = (m, n)``: full-rank m x n matrices (rank
      min(m, n), a connected open set), finite depth only; the retraction is
      :math:`X + Z - \tfrac12\Gamma_X(Z, Z)` (damped, kept of full rank), and
      ``exp``, ``log``, ``dist``, ``pair_mean`` use the rectangular Christoffel term
      (one component: ``dist`` is always finite; the singular set is
      rank X < min(m, n)).
    - GL(d) has two components (sign of det), and a solver never crosses
      det = 0. :meth:`random_point` draws from both, so start a solver in the
      component of the minimizer (flip a column of the start if needed);
      otherwise it drifts to the rank-deficient boundary, where
      :math:`\mathcal{A}_{N,X}` degenerates and the Riemannian gradient vanishes.
      Even in the right component, descent can be drawn to a rank-deficient
      critical point (for N >= 2, :math:`X \to 0` from
      :math:`X_0 \approx \mathrm{diag}(1, -1)` towards
      :math:`T \approx \mathrm{diag}(-1, 1)`). The retraction never leaves
      GL(d): its results have condition number at most :math:`10^{-2}/(d\epsilon)`,
      so such a run stalls near the boundary, and :meth:`norm` warns with
      :class:`BoundaryWarning` where the condition number of the point or of
      the metric tensor exceeds ``WARN_CONDITION`` (:math:`1/\sqrt{\epsilon}`). A solver's
      "min grad norm" at such a point is not convergence to a minimizer.
    - Depth 1 is the Euclidean metric on the open set GL(d): inner products
      and norms need no inverse and work at any rank.
    - Arguments are validated with pymanopt's names (``point``,
      ``tangent_vector``, ...): real (complex input is a TypeError) arrays of
      shape (d, d). Points must be finite. Tangent vectors with NaN or Inf
      entries are the one exception: pymanopt's truncated CG produces them
      (0/0) when it solves the trust-region model exactly, which happens at
      depth 1. As on pymanopt's own manifolds, :meth:`inner_product`,
      :meth:`norm` and :meth:`retraction` then return NaN, so that
      TrustRegions rejects that step and shrinks its radius instead of crashing.
    """

    #: Accuracy of :meth:`log` (and :meth:`dist`, :meth:`pair_mean`): the endpoint mismatch
    #: tolerance ``tol`` and the integrator's ``rtol`` of
    #: :func:`~dln_manifolds.geodesics.depth_log` (``atol`` is 1/100 of it). Derivative-free
    #: solvers need far less than the default; 1e-8 halves the cost of a log of near points.
    geodesic_tol: float = 1e-10

    def __init__(self, d: int | tuple[int, int], depth=2, seed=None):
        (m, n), self._depth = check_matrix_space(d, depth)
        self._shape = (m, n)
        self._rect = m != n
        self._d = m if not self._rect else (m, n)
        self._rng = np.random.default_rng(seed)
        # memoized logs {(base bytes, end bytes): V} and the partners of the last base points
        self._logs: OrderedDict[tuple[bytes, bytes], np.ndarray] = OrderedDict()
        self._base: bytes | None = None
        self._partners: dict[bytes, np.ndarray] = {}
        self._previous: dict[bytes, np.ndarray] = {}
        self._older: dict[bytes, np.ndarray] = {}
        # points produced in order and not yet a base point; those produced after the base
        self._fresh: list[np.ndarray] = []
        self._later: list[np.ndarray] = []
        self._hub_failed: dict[bytes, None] = {}  # end points whose batch failed (ordered set)
        self._logs_options: dict = {}
        name = f"End-to-end matrices ({m}x{n}) with the depth metric g^{self._depth}"
        super().__init__(name, m * n)

    @property
    def d(self) -> int | tuple[int, int]:
        """The matrix size d (square), or the shape (m, n) (non-square)."""
        return self._d

    @property
    def shape(self) -> tuple[int, int]:
        """Shape (m, n) of points and tangent vectors ((d, d) if square)."""
        return self._shape

    @property
    def depth(self):
        return self._depth

    @property
    def typical_dist(self) -> float:
        return float(np.sqrt(self.dim))

    # -- argument checks (pymanopt's argument names) ---------------------------
    def _vector(self, value, name: str, *, finite: bool = True) -> np.ndarray:
        """A real (m, n) float64 array; non-finite entries are refused if ``finite``."""
        return as_array(value, name, self._shape, real=True, finite=finite)

    def _check(self, point, name: str = "point") -> np.ndarray:
        return self._vector(point, name)

    def _frame(self, point, name: str = "point") -> DepthFrame:
        """DepthFrame of a validated, full-rank point (errors name ``name``)."""
        frame = DepthFrame(self._check(point, name), self._depth)
        check_full_rank(frame.s, name)
        return frame

    def inner_product(self, point, tangent_vector_a, tangent_vector_b) -> np.float64:
        r""":math:`g^N_X(Z_1, Z_2)` ([G] eq. 4.17).

        Tangent vectors with NaN or Inf entries give NaN (see the class notes);
        the point must be finite and of full rank (Euclidean at depth 1: any rank).
        """
        a = self._vector(tangent_vector_a, "tangent_vector_a", finite=False)
        b = self._vector(tangent_vector_b, "tangent_vector_b", finite=False)
        return self._inner(point, a, b)[0]

    def _inner(self, point, a, b) -> tuple[np.float64, float]:
        """The inner product and max(condition number of the point, of g^N there)."""
        point = self._check(point)
        frame = DepthFrame(point, self._depth, check=False)
        s = frame.s
        with np.errstate(divide="ignore", invalid="ignore"):
            mult = np.concatenate([frame.M.ravel(), frame.c]) if self._rect else frame.M
            cond = max(_condition(s), float(np.max(mult) / np.min(mult)))
        if self._depth != 1:
            check_full_rank(s, "point")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            return np.float64(np.nan), cond
        if self._depth == 1:
            return np.float64(np.sum(a * b)), cond
        return np.float64(frame.inner(a, b)), cond

    def norm(self, point, tangent_vector) -> np.float64:
        r""":math:`\sqrt{g^N_X(Z, Z)}`.

        Warns with :class:`BoundaryWarning` at a point where the condition
        number of X or of the metric tensor (ratio of the largest to the
        smallest multiplier of :math:`\mathcal{A}_{N,X}`, about
        :math:`\kappa(X)^{2-2/N}`) exceeds ``WARN_CONDITION`` =
        :math:`1/\sqrt{\epsilon} \approx 6.7 \cdot 10^7`. There the gradient
        components along the small singular directions are damped by more
        than :math:`\sqrt{\epsilon}`, so a small gradient norm no longer means
        a critical point. Solvers evaluate the norm of the gradient at every
        accepted iterate.
        """
        Z = self._vector(tangent_vector, "tangent_vector", finite=False)
        value, cond = self._inner(point, Z, Z)
        if cond > WARN_CONDITION:
            warnings.warn(
                f"the point or the depth metric there has condition number {cond:.3g}: "
                "the point is close to the rank-deficient boundary of GL(d), where the "
                "depth metric degenerates and a small gradient norm does not mean a "
                "critical point. A solver cannot cross det = 0: the minimizer may lie in the other "
                "component of GL(d) (flip a column of the start), or the iterates "
                "approach a rank-deficient critical point.",
                BoundaryWarning,
                stacklevel=2,
            )
        if np.isnan(value):
            return value
        return np.float64(np.sqrt(max(value, 0.0)))

    def projection(self, point, vector) -> np.ndarray:
        self._check(point)
        return np.array(self._vector(vector, "vector"), dtype=np.float64)

    to_tangent_space = projection

    def euclidean_to_riemannian_gradient(self, point, euclidean_gradient) -> np.ndarray:
        point = self._check(point)
        egrad = self._vector(euclidean_gradient, "euclidean_gradient")
        return DepthFrame(point, self._depth, check=False).operator(egrad)

    def euclidean_to_riemannian_hessian(
        self, point, euclidean_gradient, euclidean_hessian, tangent_vector
    ) -> np.ndarray:
        point = self._check(point)
        egrad = self._vector(euclidean_gradient, "euclidean_gradient")
        ehess = self._vector(euclidean_hessian, "euclidean_hessian")
        U = self._vector(tangent_vector, "tangent_vector")
        if self._depth == 1:  # Euclidean: the Hessian is the Euclidean one, at any rank
            return ehess.copy()
        frame = self._frame(point)  # one SVD for the three terms
        grad = frame.operator(egrad)
        return frame.operator(ehess) + frame.derivative(U, egrad) + frame.christoffel(U, grad)

    def retraction(self, point, tangent_vector) -> np.ndarray:
        r"""Second-order retraction that stays in the component of the point, inside GL(d).

        :math:`R_X(Z) = X \exp(\sigma_c(K))` with
        :math:`K = K_1 + K_2 / (1 + |K_2|_F^2)`, :math:`K_1 = X^{-1} Z`,
        :math:`K_2 = -\tfrac12 X^{-1}\big(\Gamma_X(Z, Z) + Z X^{-1} Z\big)`, and the
        saturation :math:`\sigma_c(K) = K / (1 + (|K|_F / c)^4)^{1/4}`, so that
        :math:`R_X(Z) = X + Z - \tfrac12\Gamma_X(Z,Z) + O(|Z|^3)` agrees with the
        exponential map to second order (needed for Hessian slope tests and
        superlinear trust-region convergence). The damping of the quadratic
        correction and the saturation only change terms of order :math:`|Z|^5`;
        the damping keeps long steps monotone (without it a long step along
        :math:`Z = tX` would fold back towards 0, since :math:`t - t^2/(2N)`
        turns negative).

        Why the saturation: :math:`X \exp(K)` is invertible for every K, but its
        condition number can reach :math:`\kappa(X) e^{2|K|_2}`; without a bound
        a long step towards the boundary underflows to an exactly singular
        matrix (or overflows). With the budget
        :math:`c = \tfrac12 \log(\kappa_{\max} / \kappa_2(X))` and
        :math:`\kappa_{\max} = 10^{-2} / (d\,\epsilon)`,

        .. math::

            \kappa_2(R_X(Z)) \le \kappa_2(X)\, e^{2|\sigma_c(K)|_2}
            \le \kappa_2(X)\, e^{2c} = \kappa_{\max}

        (where rounding could break this bound, the saturated step is halved
        until the computed result satisfies it), so every result is finite, of
        full rank (well inside the tolerance of :meth:`norm`), and
        :math:`\det R_X(Z) = \det X\, e^{\mathrm{tr}\,\sigma_c(K)}` has the sign
        of :math:`\det X`. Steps towards the boundary get shorter as the budget
        shrinks, so a solver that is drawn to the boundary stalls
        there (with a :class:`BoundaryWarning` from :meth:`norm`) instead of
        crashing.

        Step length: the tangent vector is first scaled to
        :math:`Z / (1 + (|Z|_{g^N_X}/\rho)^4)^{1/4}`, :math:`\rho` = ``typical_dist``
        (:math:`\sqrt{\dim}`), which changes only terms of order :math:`|Z|^5` and
        bounds the g-length of every step by :math:`\rho`. Without it, pymanopt's
        backtracking line search (NelderMead's Karcher mean: a first trial step
        up to ~500 times the gradient) tries points at g-distance ~7 or more, next
        to the singular set, from which :meth:`log` finds no geodesic and
        NelderMead stops with LogConvergenceError; trust-region steps are at most
        ``typical_dist`` long anyway.

        Raises
        ------
        ValueError
            If the point has a condition number above
            :math:`\kappa_{\max}` (no step can be guaranteed to stay in GL(d));
            the retraction never returns such a point.

        Notes
        -----
        A tangent vector with NaN or Inf entries gives a matrix of NaN, as on
        pymanopt's own manifolds (see the class notes).
        """
        point = self._check(point)
        Z = self._vector(tangent_vector, "tangent_vector", finite=False)
        return self._produced(
            depth_retraction_unchecked(
                point, Z, self._depth, name="point", max_length=self.typical_dist
            )
        )

    def transport(self, point_a, point_b, tangent_vector_a) -> np.ndarray:
        r"""Isometric vector transport :math:`\mathcal{A}_{N,Y}^{1/2}\mathcal{A}_{N,X}^{-1/2} Z`.

        X = ``point_a``, Y = ``point_b``. Since :math:`g^N_X(Z, Z) =
        |\mathcal{A}_{N,X}^{-1/2} Z|_F^2`, this map is an isometry from
        :math:`(T_X, g^N_X)` onto :math:`(T_Y, g^N_Y)`; it is linear, the identity
        for Y = X (and at depth 1), and smooth in (X, Y) (a spectral function of
        the singular values, no choice of singular frames): a vector transport
        in the sense of [pymanopt]. Two SVDs, O(d^3).

        Why not the identity of the embedding: it changes norms by
        factors up to :math:`\kappa(\mathcal{A})^{1/2}`, and the conjugate-gradient
        rules that divide by :math:`g(y_k, d_k)` with :math:`y_k = \mathrm{grad}_{k+1}
        - \mathcal{T}\mathrm{grad}_k` then see a spurious denominator near 0: for one
        start at depth 3 it was 0.019 (identity) against 4.4 (parallel transport along
        the geodesic) and 2.4 (this map); Hager-Zhang took
        :math:`\beta = 6.6\cdot 10^3`, a direction of norm :math:`1.8\cdot 10^4`, and
        its line search stalled ("min step_size").
        """
        a = self._check(point_a, "point_a")
        b = self._check(point_b, "point_b")
        Z = np.array(self._vector(tangent_vector_a, "tangent_vector_a"), dtype=np.float64)
        if self._depth == 1 or np.array_equal(a, b):
            return Z
        W = self._frame(a, "point_a").power(Z, -0.5)
        return self._frame(b, "point_b").power(W, 0.5)

    def random_point(self):
        """A well-conditioned point: Haar frames and log-uniform singular values in [1/2, 2]."""
        m, n = self._shape
        r = min(m, n)
        U = haar_orthogonal(self._rng, m)[:, :r]
        V = haar_orthogonal(self._rng, n)[:, :r]
        s = np.exp(self._rng.uniform(np.log(0.5), np.log(2.0), size=r))
        return self._produced((U * s) @ V.T)

    def _produced(self, X: np.ndarray) -> np.ndarray:
        """Remember a returned point (a reference: its content is read when it is used)."""
        self._fresh.append(X)
        del self._fresh[:-_MAX_FRESH]
        return X

    def random_tangent_vector(self, point):
        """A Gaussian tangent vector normalized to unit g^N norm."""
        self._check(point)
        Z = self._rng.standard_normal(self._shape)
        return Z / self.norm(point, Z)

    def zero_vector(self, point) -> np.ndarray:
        self._check(point)
        return np.zeros(self._shape)

    # -- geodesics (dln_manifolds.geodesics) ------------------------------------
    def exp(self, point, tangent_vector) -> np.ndarray:
        r"""Riemannian exponential :math:`\exp_X(Z)` by :func:`~dln_manifolds.geodesics.depth_exp`.

        Raises
        ------
        SingularGeodesicError
            (a ValueError) If the geodesic reaches the singular set (det X = 0, or
            rank X < min(m, n) for non-square X) before t = 1.
        """
        point = self._check(point)
        Z = self._vector(tangent_vector, "tangent_vector")
        return depth_exp(point, Z, self._depth, names=("point", "tangent_vector"))

    def log(self, point_a, point_b) -> np.ndarray:
        r"""Riemannian logarithm :math:`\log_X(Y)` by :func:`~dln_manifolds.geodesics.depth_log`.

        Memoized and batched (see the class notes on geodesics): the result is the
        one of :func:`~dln_manifolds.geodesics.depth_log` for this pair, possibly
        computed in one batch with other pairs of the same base point (identical up
        to rounding).

        Raises
        ------
        DifferentComponentsError
            (a ValueError) If det X and det Y have different signs: no curve in
            GL(d) joins them (square points only; the m x n matrices of full rank,
            m != n, are connected).
        LogConvergenceError
            If no geodesic is found (never a wrong vector).
        """
        a, b = self._check(point_a, "point_a"), self._check(point_b, "point_b")
        return self._log(a, b).copy()

    def dist(self, point_a, point_b) -> float:
        r"""Geodesic distance :math:`|\log_X(Y)|_{g^N_X}`; ``inf`` between the components of GL(d).

        As geomstats' :meth:`dln_manifolds.geomstats.DepthMetric.dist`
        (:func:`~dln_manifolds.geodesics.depth_distance`), through the memoized
        :meth:`log`. Raises LogConvergenceError where the log fails (never a
        wrong distance).
        """
        a, b = self._check(point_a, "point_a"), self._check(point_b, "point_b")
        if _sign(a) * _sign(b) < 0:
            check_full_rank(np.linalg.svd(a, compute_uv=False), "point_a")
            check_full_rank(np.linalg.svd(b, compute_uv=False), "point_b")
            return np.inf
        V = self._log(a, b)
        if self._depth == 1:
            return float(np.linalg.norm(V))
        return float(np.sqrt(max(float(DepthFrame(a, self._depth).inner(V, V)), 0.0)))

    def pair_mean(self, point_a, point_b) -> np.ndarray:
        r"""Geodesic midpoint :math:`\exp_X(\tfrac12 \log_X(Y))` (used by NelderMead).

        Raises DifferentComponentsError (a ValueError) for points in different
        components of GL(d), which have no midpoint.
        """
        a, b = self._check(point_a, "point_a"), self._check(point_b, "point_b")
        V = self._log(a, b)
        return depth_exp(a, 0.5 * V, self._depth, names=("point_a", "tangent_vector"))

    def _log(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """log_a(b) from the cache, or computed with the speculative partners (read-only result)."""
        options = self._log_options()
        if options != self._logs_options:  # geodesic_tol changed: the cached logs are stale
            self._logs.clear()
            self._logs_options = options
        base, key = a.tobytes(), b.tobytes()
        if base != self._base:  # a new base point
            self._older, self._previous = self._previous, self._partners
            self._partners, self._base = {}, base
            self._later = []
            for i, p in enumerate(self._fresh):  # the points produced after it
                if p.tobytes() == base:
                    self._later, self._fresh = self._fresh[i + 1 :], self._fresh[i + 1 :]
                    break
        hub = key in self._previous  # an end point asked for from the previous base too
        self._partners[key] = b
        while len(self._partners) > _MAX_PARTNERS:
            self._partners.pop(next(iter(self._partners)))
        hit = self._logs.get((base, key))
        if hit is not None:
            self._logs.move_to_end((base, key))
            return hit
        if key == base:
            return self._store(base, key, np.zeros_like(a))  # depth_log's answer for Y = X
        sign = _sign(a)
        # speculation: the partners asked for with each of the last two base points
        recurring = {k: p for k, p in self._previous.items() if k in self._older}
        extra = [
            (k, p)
            for k, p in recurring.items()
            if k != key and (base, k) not in self._logs and _sign(p) == sign and _full_rank(p)
        ][:_MAX_PARTNERS]
        names = ("point_a", "point_b")
        V = None
        same = _sign(b) == sign
        if extra and self._depth != 1 and same and _full_rank(a) and _full_rank(b):
            Y = np.stack([b] + [p for _, p in extra])
            try:
                Vs = depth_log(a, Y, self._depth, names=names, **options)
            except GeodesicError:
                Vs = None  # a speculative pair failed: compute the requested pair alone
            if Vs is not None:
                for (k, _), Vk in zip(extra, Vs[1:], strict=True):
                    self._store(base, k, Vk)
                V = Vs[0]
        hub &= key not in self._hub_failed
        if V is None and hub and self._depth != 1 and same and _full_rank(a) and _full_rank(b):
            # speculation: the same end point from the points produced after the base
            # (ParticleSwarm: log(x_i, global best) for the particles i in order)
            later = [p.copy() for p in self._later]
            later = [
                p
                for p in later
                if p.shape == a.shape
                and np.all(np.isfinite(p))
                and p.tobytes() not in (base, key)
                and (p.tobytes(), key) not in self._logs
                and _sign(p) == sign
                and _full_rank(p)
            ][:_MAX_FRESH]
            if later:
                self._later = []  # once per base point
                try:
                    Vs = depth_log(np.stack([a] + later), b, self._depth, names=names, **options)
                except GeodesicError:  # not again for this end point (a pair fails)
                    Vs = None
                    self._hub_failed[key] = None
                    while len(self._hub_failed) > _MAX_PARTNERS:
                        self._hub_failed.pop(next(iter(self._hub_failed)))
                if Vs is not None:
                    for p, Vp in zip(later, Vs[1:], strict=True):
                        self._store(p.tobytes(), key, Vp)
                    V = Vs[0]
        if V is None:
            V = depth_log(a, b, self._depth, names=names, **options)
        return self._store(base, key, V)

    def _log_options(self) -> dict:
        tol = check_positive(self.geodesic_tol, "geodesic_tol")
        return {"tol": tol, "rtol": tol, "atol": 1e-2 * tol}

    def _store(self, base: bytes, key: bytes, V: np.ndarray) -> np.ndarray:
        V = np.array(V, dtype=np.float64)
        V.flags.writeable = False
        self._logs[(base, key)] = V
        while len(self._logs) > _LOG_CACHE_SIZE:
            self._logs.popitem(last=False)
        return V


def _sign(X: np.ndarray) -> float:
    """The component of X: sign(det X) for square X, 1 for m x n (m != n, connected)."""
    return float(np.sign(np.linalg.det(X))) if X.shape[0] == X.shape[1] else 1.0


def _full_rank(X: np.ndarray) -> bool:
    """Whether X passes depth_log's full-rank test (so that a batch cannot fail on it)."""
    try:
        limit = 1.0 / (max(X.shape) * np.finfo(np.float64).eps)
        check_full_rank(np.linalg.svd(X, compute_uv=False), max_condition=limit)
    except ValueError:
        return False
    return True


def _condition(s: np.ndarray) -> float:
    """Condition number s_max / s_min from decreasing singular values (inf if singular)."""
    return float(s[0] / s[-1]) if s[-1] > 0 else np.inf
