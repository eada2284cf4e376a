"""Every pymanopt optimizer on every space, from random starts (as pymanopt 2.2's tests).

Cost E(W) = |W - T|^2 / 2 with T a random point of the space (tests/slopes.py):
its unique minimizer on the space is T. Spaces: EndToEndMatrices for depths
1, 2, 3 and inf (starts in T's component of GL(d)), the fiber F_X and the
balanced manifold M (whose random points lie in one connected component).
Optimizers: SteepestDescent, ConjugateGradient with each beta rule,
TrustRegions, NelderMead, ParticleSwarm.

Each run must converge to T, stop with a named error of the geodesic solvers
(the GeodesicError family of dln_manifolds.geodesics, or the ValueError of a
submanifold log that finds no geodesic), or stop away from T after a
BoundaryWarning (EndToEndMatrices: a descent path drawn to the rank-deficient
boundary of GL(d), which the adapter reports), or run out of iterations without
claiming convergence; never another exception, a NaN, a point off the space, or a
claim of convergence away from T (except at the undetectable saddle W = 0).

The derivative-free optimizers need the Riemannian log (NelderMead: the Karcher
mean of the simplex by 15 steepest-descent steps from a random point per
iteration, about 300 dist/log calls; ParticleSwarm: two logs per particle per
iteration), which makes them orders of magnitude slower here than on pymanopt's
closed-form manifolds. EndToEndMatrices memoizes its logs, computes those from
one base point in one batch, and those to ParticleSwarm's global best from the
particles in one batch (one NelderMead iteration, d = 2: 0.1 s CPU at depth 1;
from random starts ~40 s at depth 2 before, see the CHANGELOG for the measured
speed-up; from a near start ~2 s). The default run gives them a few iterations at
depth 1; the slow run 20 starts at depth 1 (NelderMead to convergence), NelderMead
to convergence from a near start at depth 2 and inf, and one iteration elsewhere.

pymanopt 2.2's NelderMead rejects an initial simplex of the right size (its
length test is inverted), so the simplex comes from ``manifold.random_point``:
for EndToEndMatrices the test draws it in T's component.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pymanopt
import pytest
from slopes import quadratic_problem
from threadpoolctl import threadpool_limits

from dln_manifolds.geodesics import GeodesicError
from dln_manifolds.pymanopt import BalancedManifold, BoundaryWarning, EndToEndMatrices, Fiber

pytestmark = [
    pytest.mark.filterwarnings("ignore:Conversion of an array:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

BETA_RULES = ["FletcherReeves", "PolakRibiere", "HestenesStiefel", "HagerZhang", "LiuStorey"]
GRADIENT = ["SteepestDescent", *(f"CG-{b}" for b in BETA_RULES), "TrustRegions"]
DERIVATIVE_FREE = ["NelderMead", "ParticleSwarm"]
SPACES = ["E2E-N1", "E2E-N2", "E2E-N3", "E2E-Ninf", "Fiber-N3", "Balanced-N3"]
NAMED_ERRORS = (GeodesicError,)


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    with threadpool_limits(1):
        yield


def _space(name: str, seed: int, ball: bool = False, near: bool = False):
    rng = np.random.default_rng(seed)
    kind, depth = name.split("-N")
    depth = np.inf if depth == "inf" else int(depth)
    if kind == "E2E":
        M = EndToEndMatrices(2, depth, seed=rng)
        T = M.random_point()
        draw = M.random_point

        def random_point():  # in T's component: the only points a geodesic reaches
            x = draw()
            if np.linalg.det(x) * np.linalg.det(T) < 0:
                x[:, 0] *= -1
            return x

        if (depth == 1 and ball) or near:
            # the log of g^1 exists only where the segment stays in GL(d): in the ball
            # |X - T| < sigma_min(T) (Eckart-Young), convex, every pair is joined;
            # ``near``: the same ball at any depth (a near start)
            radius = 0.5 * np.linalg.svd(T, compute_uv=False)[-1]

            def random_point():
                D = rng.standard_normal(T.shape)
                return T + radius * rng.uniform() * D / np.linalg.norm(D)

        M.random_point = random_point
    elif kind == "Fiber":
        X = np.eye(2) + 0.3 * rng.standard_normal((2, 2))
        M = Fiber(X, depth, seed=rng)
        T = M.random_point()
    else:
        M = BalancedManifold(2, depth, seed=rng)
        T = M.random_point()
    return M, T


def _optimizer(name: str, max_iterations: int):
    common = dict(verbosity=0, max_iterations=max_iterations)
    if name == "SteepestDescent":
        return pymanopt.optimizers.SteepestDescent(**common)
    if name == "TrustRegions":
        return pymanopt.optimizers.TrustRegions(**common)
    if name == "NelderMead":
        return pymanopt.optimizers.NelderMead(**common)
    if name == "ParticleSwarm":
        return pymanopt.optimizers.ParticleSwarm(**common)
    return pymanopt.optimizers.ConjugateGradient(beta_rule=name[3:], **common)


def _on_space(M, W) -> bool:
    if not np.all(np.isfinite(W)):
        return False
    if isinstance(M, EndToEndMatrices):
        s = np.linalg.svd(W, compute_uv=False)
        return bool(s[-1] > 1e-12 * s[0])
    return bool(np.linalg.norm(M.projection(W, np.zeros_like(W))) == 0.0) and _belongs(M, W)


def _belongs(M, W) -> bool:
    if isinstance(M, Fiber):
        P = W[0]
        for Wk in W[1:]:
            P = Wk @ P
        return bool(np.allclose(P, M.X, atol=1e-8 * max(1.0, np.abs(M.X).max())))
    G = np.array([W[k + 1].T @ W[k + 1] - W[k] @ W[k].T for k in range(len(W) - 1)])
    return bool(np.abs(G).max() <= 1e-8 * max(1.0, np.abs(W).max() ** 2))


def _run(
    space: str,
    name: str,
    seed: int,
    max_iterations: int,
    *,
    target_shift: float = 0.0,
    near: bool = False,
):
    """Run once; return (outcome, |W - T| / |T| or the error's name, seconds).

    Outcomes: "converged" (|W - T| < 1e-5 |T|), "named error" (GeodesicError family,
    or the ValueError of a submanifold log without a geodesic), "boundary" (stopped
    away from T after a BoundaryWarning: the run was drawn to the rank-deficient
    boundary of GL(d) and said so), "saddle" (EndToEndMatrices: |W| < |T| / 100, the
    saddle W = 0), "budget" (max iterations, no claim of convergence), "stopped"
    (a claim of convergence away from T, silently: a failure). ``target_shift``
    (negative controls only) optimizes towards T + shift but judges against T. ``near``:
    the random points (start, simplex, swarm, the centroid's starts) of EndToEndMatrices
    in the ball |X - T| < sigma_min(T) / 2 at every depth.
    """
    M, T = _space(space, seed, ball=name in DERIVATIVE_FREE, near=near)
    problem = quadratic_problem(M, T + target_shift)
    np.random.seed(seed)  # noqa: NPY002 (pymanopt's ParticleSwarm draws from the global state)
    x0 = None if name in DERIVATIVE_FREE else M.random_point()
    start = time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _optimizer(name, max_iterations).run(problem, initial_point=x0)
        except NAMED_ERRORS as exc:
            return "named error", type(exc).__name__, time.process_time() - start
        except ValueError as exc:  # a submanifold log that finds no geodesic
            if not isinstance(M, EndToEndMatrices) and "geodesic" in str(exc):
                return "named error", "ValueError", time.process_time() - start
            raise
    seconds = time.process_time() - start
    boundary = any(issubclass(w.category, BoundaryWarning) for w in caught)
    W = result.point
    err = float(np.linalg.norm(W - T) / np.linalg.norm(T))
    if err < 1e-5:
        return "converged", err, seconds
    if boundary:
        return "boundary", err, seconds
    assert _on_space(M, W), f"{name} on {space} (seed {seed}) left the space silently"
    if isinstance(M, EndToEndMatrices) and np.linalg.norm(W) < 1e-2 * np.linalg.norm(T):
        # the saddle W = 0 of the network: g^N is homogeneous in X, so a small point is
        # not detectable by the manifold (as in tests/test_pymanopt_solvers.py)
        return "saddle", err, seconds
    if "max iterations" in result.stopping_criterion:
        return "budget", err, seconds  # no claim of convergence: the iteration budget ran out
    return "stopped", err, seconds


def _check_gradient(space, name, seeds, max_iterations=300):
    for seed in seeds:
        outcome, err, _ = _run(space, name, seed, max_iterations)
        assert outcome != "stopped", (space, name, seed, outcome, err)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("name", GRADIENT)
def test_gradient_optimizers_converge(name, space):
    _check_gradient(space, name, seeds=range(2))


@pytest.mark.slow
@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("name", GRADIENT)
def test_gradient_optimizers_converge_from_20_starts(name, space, request):
    if name == "CG-HagerZhang" and space == "E2E-N2":
        # Seed 101: "min step_size" after 5 iterations, |grad| = 0.58, near X = 0 (singular
        # values 0.065, 0.009). Upstream (pymanopt 2.2): the Hager-Zhang rule divides by
        # g(y_k, d_k) with no safeguard and runs with the Armijo-only AdaptiveLineSearcher,
        # which does not enforce the Wolfe curvature condition that makes g(y_k, d_k) > 0;
        # here g(y_k, d_k) = 0.0022 (isometric transport; 0.07 with parallel transport),
        # although phi'(alpha) - phi'(0) = 1.9 along the retraction curve, which near
        # X = 0 is far from the geodesic. beta = 6.4e3 and the next line search fails.
        # pymanopt's own Euclidean manifold shows the same missing safeguard
        # (ZeroDivisionError in Hager-Zhang on Rosenbrock, 3 of 40 starts). The former
        # failure at depth 3 (seed 109) was ours: the identity transport (transport docs).
        reason = "pymanopt 2.2 Hager-Zhang: no safeguard for g(y_k, d_k) ~ 0 (Armijo-only search)"
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    _check_gradient(space, name, seeds=range(100, 120))


def _check_derivative_free(space, name, seed, max_iterations, converge: bool):
    outcome, err, _ = _run(space, name, seed, max_iterations)
    if converge and outcome not in ("named error", "boundary"):
        assert err < 1e-2, (space, name, seed, err)
    return outcome


@pytest.mark.parametrize("name", DERIVATIVE_FREE)
def test_derivative_free_optimizers_run_at_depth_one(name):
    """Closed-form log (depth 1): a few iterations end on the space or with a named error.

    The simplex and the swarm are drawn in the ball |X - T| < sigma_min(T) / 2: from
    random points of one component, ParticleSwarm and NelderMead stop at once with
    SingularGeodesicError, since the segment between two points of one component
    often crosses det = 0 and then no geodesic of g^1 inside GL(d) joins them (the
    log does not exist; the error is the right answer).
    """
    for seed in range(2):
        _check_derivative_free("E2E-N1", name, seed, max_iterations=5, converge=False)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_nelder_mead_converges_at_depth_one_from_20_starts(seed):
    _check_derivative_free("E2E-N1", "NelderMead", seed, max_iterations=400, converge=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_particle_swarm_at_depth_one_from_20_starts(seed):
    _check_derivative_free("E2E-N1", "ParticleSwarm", seed, max_iterations=100, converge=False)


@pytest.mark.slow
@pytest.mark.parametrize("space", SPACES[1:])
@pytest.mark.parametrize("name", DERIVATIVE_FREE)
def test_derivative_free_optimizers_run_on_every_space(name, space):
    """Two iterations (CPU, d = 2: NelderMead 23 s at depth 2, 30 s at depth inf (76 s and
    124 s before the memoized, batched log), 100 s on F_X (batched shooting; over 10 min
    before); ParticleSwarm 2.3 s at depth 2, 1.9 s at depth inf (7.5 s and 9.4 s, measured
    in the same run, before the logs to the global best were batched over the particles:
    benchmarks/bench_log.py), 57 s on F_X)."""
    _check_derivative_free(space, name, 100, max_iterations=2, converge=False)


def _near_start_nelder_mead(space: str, seed: int, max_iterations: int):
    """NelderMead from a simplex in the ball |X - T| < sigma_min(T) / 2 (log accuracy 1e-8).

    Returns (error of the result, best error of the initial simplex, outcome, CPU seconds).
    """
    M, T = _space(space, seed, near=True)
    M.geodesic_tol = 1e-8  # the Karcher-mean descent of NelderMead needs far less than 1e-10
    simplex = [M.random_point() for _ in range(M.dim + 1)]
    start_err = min(float(np.linalg.norm(x - T) / np.linalg.norm(T)) for x in simplex)
    draws, draw = iter(simplex), M.random_point

    def random_point():  # the simplex above first, then the centroid's random starts
        x = next(draws, None)
        return draw() if x is None else x

    M.random_point = random_point
    start = time.process_time()
    result = _optimizer("NelderMead", max_iterations).run(quadratic_problem(M, T))
    seconds = time.process_time() - start
    err = float(np.linalg.norm(result.point - T) / np.linalg.norm(T))
    return err, start_err, result.stopping_criterion, seconds


@pytest.mark.slow
@pytest.mark.parametrize("space", ["E2E-N2", "E2E-Ninf"])
def test_nelder_mead_converges_from_a_near_start(space):
    """NelderMead reaches |X - T| < 1e-2 |T| from a near start at depth 2 and inf.

    CPU (loaded 2-core box, d = 2): 35 to 47 s per run of 25 iterations with the
    memoized, batched log and the step-length saturation of the retraction
    (EndToEndMatrices class notes); before, seed 103 stopped with LogConvergenceError
    at a far line-search trial point of the Karcher mean.
    """
    for seed in (102, 103):
        err, start_err, stop, seconds = _near_start_nelder_mead(space, seed, max_iterations=25)
        assert start_err > 1e-2, (space, seed, start_err)  # the run has work to do
        assert err < 1e-2, (space, seed, err, start_err, stop, seconds)


def test_memoized_batched_log(monkeypatch):
    """EndToEndMatrices.log/dist/pair_mean: depth_log's answers, one batched call per base point.

    pymanopt's NelderMead asks for dist(y, p) for the simplex points p one by one, then for
    the log at the same y; the adapter computes the logs from a new base point to the
    partners of the previous one in one batch and answers repeats from a cache.
    """
    from dln_manifolds.geodesics import DifferentComponentsError, depth_log
    from dln_manifolds.pymanopt import end_to_end

    calls = []

    def counted(*args, **kwargs):
        calls.append(np.shape(args[1]))
        return depth_log(*args, **kwargs)

    monkeypatch.setattr(end_to_end, "depth_log", counted)
    rng = np.random.default_rng(5)
    M = EndToEndMatrices(2, 2, seed=rng)
    M.geodesic_tol = 1e-8
    T = np.array([[1.2, 0.3], [-0.2, 0.9]])
    P = [T + 0.2 * rng.standard_normal((2, 2)) for _ in range(3)]
    y0, yb, y1 = (T + 0.1 * rng.standard_normal((2, 2)) for _ in range(3))
    for y in (y0, yb):
        for p in P:
            M.dist(y, p)  # first two base points: nothing recurs yet, one call each
    assert calls == [(2, 2)] * 6
    d1 = [M.dist(y1, p) for p in P]  # new base point: one batch with the recurring partners
    assert calls[6:] == [(3, 2, 2)]
    V = [M.log(y1, p) for p in P]  # repeats: from the cache
    assert len(calls) == 7
    for p, v, dist in zip(P, V, d1, strict=True):
        np.testing.assert_allclose(v, depth_log(y1, p, 2), atol=1e-8)
        assert dist == pytest.approx(np.sqrt(M.inner_product(y1, v, v)), rel=1e-12)
    V[0][:] = 0.0  # the caller's copy: the cache is not changed
    assert np.linalg.norm(M.log(y1, P[0])) > 0.1
    assert not np.allclose(V[1], V[2])  # negative control: the pairs are not mixed up
    mid = M.pair_mean(y1, P[1])
    np.testing.assert_allclose(M.dist(y1, mid), 0.5 * d1[1], rtol=1e-6)
    # another component: dist is inf, log raises, and the batch skips that partner
    Q = P[2] * np.array([1.0, -1.0])
    assert M.dist(y0, Q) == np.inf
    with pytest.raises(DifferentComponentsError):
        M.log(y0, Q)
    # a new geodesic_tol empties the cache
    before = len(calls)
    M.geodesic_tol = 1e-6
    M.log(y1, P[0])
    assert len(calls) > before
    with pytest.raises(ValueError, match="geodesic_tol"):
        M.geodesic_tol = -1.0
        M.log(y1, P[0])


def test_batched_logs_to_a_recurring_end_point(monkeypatch):
    """ParticleSwarm's pattern: log(x_i, best) for the particles x_i in the order produced.

    From the second particle on, the adapter computes the logs from the particles produced
    (by retraction or random_point) after the base point to the same end point in one
    batched call; the answers are depth_log's.
    """
    from dln_manifolds.geodesics import depth_log
    from dln_manifolds.pymanopt import end_to_end

    calls = []

    def counted(*args, **kwargs):
        calls.append(np.shape(args[0]))
        return depth_log(*args, **kwargs)

    monkeypatch.setattr(end_to_end, "depth_log", counted)
    rng = np.random.default_rng(6)
    M = EndToEndMatrices(2, 3, seed=rng)
    M.geodesic_tol = 1e-8
    T = np.array([[1.2, 0.3], [-0.2, 0.9]])
    best = T + 0.1 * rng.standard_normal((2, 2))
    swarm = [M.retraction(T, 0.2 * rng.standard_normal((2, 2))) for _ in range(5)]
    V = []
    for x in swarm:
        assert not np.any(M.log(x, x))  # the personal best, at the start
        V.append(M.log(x, best))
    assert calls == [(2, 2), (4, 2, 2)]  # x_1 alone, then x_2 with x_3, x_4, x_5
    for x, v in zip(swarm, V, strict=True):
        np.testing.assert_allclose(v, depth_log(x, best, 3, tol=1e-8, rtol=1e-8), atol=1e-8)
    assert not np.allclose(V[2], V[3])  # negative control: the pairs are not mixed up
    # a batch that fails (a speculative pair without a geodesic) falls back to the
    # requested pair alone and is not tried again for that end point
    from dln_manifolds.geodesics import LogConvergenceError

    def failing(X, Y, *args, **kwargs):
        calls.append(np.shape(X))
        if np.ndim(X) == 3:
            raise LogConvergenceError("a speculative pair")
        return depth_log(X, Y, *args, **kwargs)

    monkeypatch.setattr(end_to_end, "depth_log", failing)
    calls.clear()
    best = T - 0.1 * rng.standard_normal((2, 2))
    swarm = [M.retraction(T, 0.2 * rng.standard_normal((2, 2))) for _ in range(4)]
    for x in swarm:
        M.log(x, best)
    assert calls == [(2, 2), (3, 2, 2), (2, 2), (2, 2), (2, 2)]


def test_transport_is_isometric_and_fixes_hager_zhang():
    """The former strict xfail (depth 3, seed 109): Hager-Zhang now converges."""
    assert _run("E2E-N3", "CG-HagerZhang", 109, 300)[0] == "converged"
    M, _ = _space("E2E-N3", 109)
    X, Y = M.random_point(), M.random_point()
    Z = M.random_tangent_vector(X)
    assert M.norm(Y, M.transport(X, Y, Z)) == pytest.approx(1.0, rel=1e-10)
    assert M.norm(Y, Z) != pytest.approx(1.0, rel=1e-3)  # the identity is not isometric


def test_negative_controls():
    """The classification can fail a run: a wrong target converges "silently" elsewhere."""
    outcome, err, _ = _run("E2E-N2", "SteepestDescent", 0, max_iterations=1)
    assert outcome == "budget" and err > 1e-3
    outcome, err, _ = _run("E2E-N2", "TrustRegions", 0, max_iterations=300, target_shift=0.05)
    assert outcome == "stopped" and err > 1e-3  # what _check_gradient rejects
