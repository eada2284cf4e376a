"""Geodesics of the induced metric on M and F_X, checked against the constraint functions."""

from __future__ import annotations

import numpy as np
import pymanopt
import pytest
from scipy.integrate import solve_ivp

from dln_manifolds.balanced import (
    balance_error,
    balanced_restore,
    balanced_retraction,
    balanced_tangent_projection,
    random_balanced_point,
)
from dln_manifolds.fiber import fiber_retraction, fiber_tangent_projection
from dln_manifolds.network import balanced_point, end_to_end, moments
from dln_manifolds.submanifold_geodesics import (
    balanced_dist,
    balanced_exp,
    balanced_geodesic_acceleration,
    balanced_geodesic_midpoint,
    balanced_log,
    fiber_dist,
    fiber_exp,
    fiber_geodesic_acceleration,
    fiber_log,
)

SHAPES = [(2, 3), (3, 2)]


def _balanced_pair(d, N, seed, size):
    """A balanced point and a unit-scaled tangent vector of norm ``size`` |W|."""
    rng = np.random.default_rng(seed)
    W = random_balanced_point(d, N, rng)
    V = balanced_tangent_projection(W, rng.standard_normal(W.shape))
    return W, V * (size * np.linalg.norm(W) / np.linalg.norm(V))


def _fiber_pair(d, N, seed, size, cplx=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d, d)) + (1j * rng.standard_normal((d, d)) if cplx else 0)
    C = balanced_point(X, N)

    def rand():
        Z = rng.standard_normal(C.shape)
        return Z + 1j * rng.standard_normal(C.shape) if cplx else Z

    W = fiber_retraction(C, 0.3 * fiber_tangent_projection(C, rand()), X=X)
    V = fiber_tangent_projection(W, rand())
    return X, W, V * (size * np.linalg.norm(W) / np.linalg.norm(V))


def _jacobian(c, W, eps=1e-6):
    """Dense Jacobian of the constraint c at W by central differences (brute force)."""
    m = W.size
    cols = []
    for i in range(m):
        E = np.zeros(m)
        E[i] = eps
        E = E.reshape(W.shape)
        cols.append((c(W + E) - c(W - E)).ravel() / (2 * eps))
    return np.array(cols).T


def _second(c, W, V, eps=1e-4):
    return (c(W + eps * V) - 2 * c(W) + c(W - eps * V)).ravel() / eps**2


# --- the geodesic equation ---------------------------------------------------------------


@pytest.mark.parametrize("d,N", SHAPES + [(3, 5)])
def test_balanced_acceleration_is_normal_and_keeps_the_moments(d, N):
    W, V = _balanced_pair(d, N, 1, 0.5)
    A = balanced_geodesic_acceleration(W, V)
    # brute force from the constraint G alone: dG(A) + D^2G[V, V] = 0, A normal
    J = _jacobian(moments, W)
    res = J @ A.ravel() + _second(moments, W, V)
    assert np.linalg.norm(res) < 1e-7 * np.linalg.norm(_second(moments, W, V))
    assert np.linalg.norm(balanced_tangent_projection(W, A)) < 1e-12 * np.linalg.norm(A)
    # minimum-norm solution of the same system = the normal one
    ref = np.linalg.lstsq(J, -_second(moments, W, V), rcond=None)[0]
    np.testing.assert_allclose(A.ravel(), ref, atol=1e-7 * np.linalg.norm(A))
    # negative control: a vector with the same dG image but a tangent part fails the check
    T = balanced_tangent_projection(W, np.random.default_rng(2).standard_normal(W.shape))
    assert np.linalg.norm(balanced_tangent_projection(W, A + T)) > 1e-3
    # batched: a stack gives the stacked results
    W2, V2 = _balanced_pair(d, N, 3, 0.5)
    np.testing.assert_allclose(
        balanced_geodesic_acceleration(np.stack([W, W2]), np.stack([V, V2]))[1],
        balanced_geodesic_acceleration(W2, V2),
        atol=1e-14 * np.linalg.norm(A),
    )


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("d,N", SHAPES)
def test_fiber_acceleration_is_normal_and_keeps_the_product(d, N, cplx):
    X, W, V = _fiber_pair(d, N, 4, 0.5, cplx)
    A = fiber_geodesic_acceleration(W, V)
    eps = 1e-5
    dphiA = (end_to_end(W + eps * A) - end_to_end(W - eps * A)) / (2 * eps)
    d2 = _second(end_to_end, W, V).reshape(d, d)
    assert np.linalg.norm(dphiA + d2) < 1e-6 * np.linalg.norm(d2)
    assert np.linalg.norm(fiber_tangent_projection(W, A)) < 1e-11 * np.linalg.norm(A)


# --- exp -------------------------------------------------------------------------------------


def _brute_geodesic(c, W, V, t_end=1.0):
    """Integrate W'' = min-norm solution of dc(W'') = -D^2c[W', W'] (dense, finite differences)."""
    shape = W.shape

    def rhs(_, y):
        Wt, Vt = y[: W.size].reshape(shape), y[W.size :].reshape(shape)
        J = _jacobian(c, Wt, 1e-6)
        a = np.linalg.lstsq(J, -_second(c, Wt, Vt, 1e-3), rcond=None)[0]
        return np.concatenate([Vt.ravel(), a])

    sol = solve_ivp(rhs, (0, t_end), np.concatenate([W.ravel(), V.ravel()]), rtol=1e-10, atol=1e-11)
    return sol.y[: W.size, -1].reshape(shape)


@pytest.mark.parametrize("d,N", SHAPES)
def test_balanced_exp_on_manifold_constant_speed_and_brute_force(d, N):
    W, V = _balanced_pair(d, N, 5, 0.4)
    T, V1 = balanced_exp(W, V, velocity=True)
    assert balance_error(T) < 1e-14
    assert abs(np.linalg.norm(V1) / np.linalg.norm(V) - 1) < 1e-7
    # fourth order: error against 160 steps drops ~16x from 10 to 20 steps
    ref = balanced_exp(W, V, n_steps=160)
    e10, e20 = (np.linalg.norm(balanced_exp(W, V, n_steps=n) - ref) for n in (10, 20))
    assert 10 < e10 / e20 < 25
    brute = _brute_geodesic(moments, W, V)
    err = np.linalg.norm(T - brute) / np.linalg.norm(V)
    assert err < 1e-6
    # negative control: the (second-order) retraction is not the geodesic
    assert (
        np.linalg.norm(balanced_retraction(W, V, order=2) - brute) / np.linalg.norm(V) > 100 * err
    )


@pytest.mark.parametrize("d,N", SHAPES)
def test_fiber_exp_on_fiber_constant_speed_and_brute_force(d, N):
    X, W, V = _fiber_pair(d, N, 6, 0.4)
    T, V1 = fiber_exp(W, V, X, velocity=True)
    assert np.linalg.norm(end_to_end(T) - X) < 1e-13 * np.linalg.norm(X)
    assert abs(np.linalg.norm(V1) / np.linalg.norm(V) - 1) < 1e-7
    ref = fiber_exp(W, V, X, n_steps=160)
    e10, e20 = (np.linalg.norm(fiber_exp(W, V, X, n_steps=n) - ref) for n in (10, 20))
    assert 10 < e10 / e20 < 25
    brute = _brute_geodesic(lambda Z: end_to_end(Z) - X, W, V)
    err = np.linalg.norm(T - brute) / np.linalg.norm(V)
    assert err < 1e-6
    assert np.linalg.norm(fiber_retraction(W, V, X=X) - brute) / np.linalg.norm(V) > 100 * err


# --- log, dist, midpoint ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0.3, 0.8])
@pytest.mark.parametrize("d,N", SHAPES)
def test_balanced_log_inverts_exp_far_pairs(d, N, size):
    W, V = _balanced_pair(d, N, 7, size)
    T = balanced_exp(W, V)
    L = balanced_log(W, T)
    assert np.linalg.norm(L - V) < 1e-8 * np.linalg.norm(V)
    dist_wt, dist_tw = balanced_dist(W, T), balanced_dist(T, W)
    assert abs(dist_wt - np.linalg.norm(V)) < 1e-8 * np.linalg.norm(V)
    assert abs(dist_wt - dist_tw) < 1e-7 * dist_wt
    # a pair that is not built by exp: chord restored onto M
    rng = np.random.default_rng(8)
    T2 = balanced_restore(W + size * np.linalg.norm(W) * rng.standard_normal(W.shape) / 4)
    if balanced_dist(W, T2) < np.inf:
        L2 = balanced_log(W, T2)
        assert np.linalg.norm(balanced_exp(W, L2) - T2) < 1e-9 * np.linalg.norm(W)
    M = balanced_geodesic_midpoint(W, T)
    assert abs(balanced_dist(W, M) - dist_wt / 2) < 1e-7 * dist_wt
    assert abs(balanced_dist(M, T) - dist_wt / 2) < 1e-7 * dist_wt


@pytest.mark.parametrize("size", [0.3, 0.8])
@pytest.mark.parametrize("d,N", SHAPES)
def test_fiber_log_inverts_exp_far_pairs(d, N, size):
    X, W, V = _fiber_pair(d, N, 9, size)
    T = fiber_exp(W, V, X)
    L = fiber_log(W, T, X)
    assert np.linalg.norm(L - V) < 1e-8 * np.linalg.norm(V)
    dist_wt, dist_tw = fiber_dist(W, T, X), fiber_dist(T, W, X)
    assert abs(dist_wt - np.linalg.norm(V)) < 1e-8 * np.linalg.norm(V)
    assert abs(dist_wt - dist_tw) < 1e-6 * dist_wt  # to the RK4 error (20 steps), measured 1.6e-7


def test_near_pairs_take_the_broyden_path_and_agree_with_shooting(monkeypatch):
    """A near pair (|T - W| = 0.1 |W|) is solved by :meth:`_LogProblem.near` (Broyden
    from V = 0, a few exps) to the log found by shooting with it turned off, to the log
    tolerance. Negative controls (near returns None, shooting takes over): an unreachable
    tolerance (the steps stop halving the residual at rounding level), a far pair."""
    from dln_manifolds import submanifold_geodesics as sg

    W, V = _balanced_pair(3, 2, 7, 0.1)
    X, Wf, Vf = _fiber_pair(3, 2, 9, 0.1)
    cases = [
        (sg._balanced_problem(20), balanced_log, W, balanced_exp(W, V)),
        (sg._fiber_problem(X, 20), lambda A, B: fiber_log(A, B, X), Wf, fiber_exp(Wf, Vf, X)),
    ]
    for problem, log, A, B in cases:
        assert problem(A).near(B, 1e-10) is not None
        assert problem(A).near(B, 1e-17) is None
        fast = log(A, B)
        monkeypatch.setattr(sg._LogProblem, "near", lambda self, T, tol: None)
        slow = log(A, B)
        monkeypatch.undo()
        scale = max(1.0, np.linalg.norm(A), np.linalg.norm(B))
        assert np.linalg.norm(fast - slow) < 1e-10 * scale  # measured 1.4e-12, 4.4e-13
    W, V = _balanced_pair(3, 2, 7, 0.8)  # |T - W| = 0.57 max(1, |W|, |T|)
    assert sg._balanced_problem(20)(W).near(balanced_exp(W, V), 1e-10) is None


def test_complex_fiber_log_round_trip():
    X, W, V = _fiber_pair(2, 3, 10, 0.5, cplx=True)
    T = fiber_exp(W, V, X)
    assert np.linalg.norm(fiber_log(W, T, X) - V) < 1e-8 * np.linalg.norm(V)


def test_log_refuses_points_in_other_components():
    W, V = _balanced_pair(2, 3, 11, 0.3)
    T = W.copy()
    T[0, 0, :] *= -1
    T[1, :, 0] *= -1  # D_1 = diag(-1, 1) acting: still balanced, det W_1 and det W_2 flip
    assert balance_error(T) < 1e-14
    with pytest.raises(ValueError, match="different connected components"):
        balanced_log(W, T)
    assert balanced_dist(W, T) == np.inf
    X, Wf, _ = _fiber_pair(2, 3, 12, 0.3)
    Tf = Wf.copy()
    Tf[0, 0, :] *= -1
    Tf[1, :, 0] *= -1  # same product, det of layers 1 and 2 flip
    np.testing.assert_allclose(end_to_end(Tf), X, atol=1e-13)
    with pytest.raises(ValueError, match="different connected components"):
        fiber_log(Wf, Tf, X)
    assert fiber_dist(Wf, Tf, X) == np.inf


def test_bad_arguments_are_named():
    W, V = _balanced_pair(2, 2, 13, 0.3)
    with pytest.raises(ValueError, match="n_steps"):
        balanced_exp(W, V, n_steps=0)
    with pytest.raises(ValueError, match="tol"):
        balanced_log(W, W, tol=-1.0)
    with pytest.raises(ValueError, match="T"):
        balanced_log(W, W + 1.0)
    X, Wf, Vf = _fiber_pair(2, 2, 14, 0.3)
    with pytest.raises(ValueError, match="T is not on the fiber"):
        fiber_log(Wf, Wf + 0.1, X)
    with pytest.raises(ValueError, match="V"):
        fiber_exp(Wf, Vf[:1], X)


# --- far pairs, drawn as the geomstats adapters draw them -------------------------------------


def _far_balanced_pair(d, N, seed):
    """Two independent random points of M (the law of geomstats' ``random_point``: Haar
    frames, singular values log-uniform in [1/2, 2]) in the component of positive
    determinants, as the generic tests pair them: far apart (|log| ~ 1.5 |W|)."""
    rng = np.random.default_rng(seed)
    pts = []
    while len(pts) < 2:
        W = random_balanced_point(d, N, seed=int(rng.integers(2**31)))
        if np.all(np.linalg.det(W) > 0):
            pts.append(W)
    return pts


def _far_fiber_pair(d, N, seed):
    """Two random points of F_X (pymanopt's ``Fiber.random_point``: the center acted on by
    random group elements of condition number up to 4)."""
    from dln_manifolds.pymanopt import Fiber

    rng = np.random.default_rng(seed)
    X = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    M = Fiber(X, N, seed=seed)
    return X, M.random_point(), M.random_point()


def _check_far_log(log, exp, W, T, sym_tol):
    """exp(log) hits T to the shooting tolerance; log(T, W) is the same geodesic reversed
    (its initial velocity is minus the final velocity of exp_W(t log_W T)) and
    |log(W, T)| = |log(T, W)|, both to the RK4 error ``sym_tol`` (relative)."""
    V = log(W, T)
    scale = max(1.0, np.linalg.norm(W), np.linalg.norm(T))
    end, velocity = exp(W, V, velocity=True)
    assert np.linalg.norm(end - T) <= 1e-10 * scale
    U = log(T, W)
    assert np.linalg.norm(exp(T, U) - W) <= 1e-10 * scale
    assert np.linalg.norm(velocity + U) <= sym_tol * np.linalg.norm(V)
    assert abs(np.linalg.norm(V) - np.linalg.norm(U)) <= sym_tol * np.linalg.norm(V)
    return V, U


def test_balanced_log_far_random_pair():
    W, T = _far_balanced_pair(2, 2, 0)
    V, U = _check_far_log(balanced_log, balanced_exp, W, T, 1e-4)
    assert np.linalg.norm(V) > np.linalg.norm(W)  # far: |log| > |W|
    # negative control: a vector off by 1e-6 relative misses T by far more than the tolerance
    miss = balanced_exp(W, V + 1e-6 * np.linalg.norm(V) * balanced_tangent_projection(W, W))
    assert np.linalg.norm(miss - T) > 1e3 * 1e-10 * np.linalg.norm(W)


def test_fiber_log_far_random_pair():
    X, W, T = _far_fiber_pair(2, 3, 1)
    V, U = _check_far_log(
        lambda A, B: fiber_log(A, B, X),
        lambda A, B, velocity=False: fiber_exp(A, B, X, velocity=velocity),
        W,
        T,
        1e-4,
    )


@pytest.mark.slow
def test_log_keeps_the_shorter_of_two_geodesics_both_ways():
    """A far pair (d, N = 2, 2) joined by two geodesics whose lengths differ by 2.4e-3
    relative: shooting from W and from T alone (negative control) ends on different ones,
    log(W, T) and log(T, W) both follow the shorter, to the RK4 error."""
    from dln_manifolds import submanifold_geodesics as sg

    W, T = _far_balanced_pair(2, 2, 57)
    problem = sg._balanced_problem(sg.DEFAULT_GEODESIC_STEPS)
    one_sided = [np.linalg.norm(problem(A).shoot(B, 1e-10, 30)) for A, B in ((W, T), (T, W))]
    assert abs(one_sided[0] - one_sided[1]) > 1e-3 * min(one_sided)
    V, U = _check_far_log(balanced_log, balanced_exp, W, T, 1e-4)
    assert np.linalg.norm(V) == pytest.approx(min(one_sided), rel=1e-5)


def test_log_failure_raises_instead_of_returning():
    """Negative control of convergence: an unreachable tolerance with one Newton iteration
    per target is an error, never a returned vector."""
    W, T = _far_balanced_pair(2, 2, 0)
    with pytest.raises(ValueError, match="log did not converge"):
        balanced_log(W, T, 4, tol=1e-17, max_iter=1)


def test_batched_fiber_field_matches_single():
    """The stacked field and settle of fiber_log's batched exponential equal the single ones."""
    from dln_manifolds import submanifold_geodesics as sg
    from dln_manifolds.pymanopt import Fiber

    rng = np.random.default_rng(21)
    X = np.eye(2) + 0.3 * rng.standard_normal((2, 2))
    M = Fiber(X, 3, seed=21)
    Ws = [M.random_point() + 1e-3 * rng.standard_normal((3, 2, 2)) for _ in range(3)]
    Vs = [rng.standard_normal((3, 2, 2)) for _ in range(3)]  # off the fiber: settle restores
    Ws, Vs = np.stack(Ws), np.stack(Vs)
    field = sg._fiber_field_batch(Ws, Vs)
    W1, V1 = sg._fiber_settler_batch(X)(Ws, Vs)
    settle = sg._fiber_settler(X)
    for k in range(3):
        np.testing.assert_allclose(field[k], sg._fiber_field(Ws[k], Vs[k]), atol=1e-12)
        Wk, Vk = settle(Ws[k], Vs[k])
        np.testing.assert_allclose(W1[k], Wk, atol=1e-12)
        np.testing.assert_allclose(V1[k], Vk, atol=1e-12)
    assert np.abs(field[0] - field[1]).max() > 1e-3  # negative control: the points differ


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("d,N", [(2, 2), (2, 3), (3, 2)])
def test_balanced_log_far_random_pairs(d, N, seed):
    W, T = _far_balanced_pair(d, N, 100 + seed)
    _check_far_log(balanced_log, balanced_exp, W, T, 2e-3)
    M = balanced_geodesic_midpoint(W, T)
    half = 0.5 * balanced_dist(W, T)
    assert half == pytest.approx(0.5 * np.linalg.norm(balanced_log(T, W)), rel=2e-3)
    assert abs(balanced_dist(W, M) - half) < 1e-3 * half


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("d,N", [(2, 2), (2, 3), (3, 2)])
def test_fiber_log_far_random_pairs(d, N, seed):
    X, W, T = _far_fiber_pair(d, N, 100 + seed)
    _check_far_log(
        lambda A, B: fiber_log(A, B, X),
        lambda A, B, velocity=False: fiber_exp(A, B, X, velocity=velocity),
        W,
        T,
        2e-3,
    )


# --- geomstats ------------------------------------------------------------------------------


def test_geomstats_metrics_and_frechet_mean():
    from geomstats.learning.frechet_mean import FrechetMean

    from dln_manifolds.geomstats import BalancedManifold, Fiber

    rng = np.random.default_rng(15)
    X = np.array([[2.0, 0.5], [0.3, 1.0]])
    for space in (BalancedManifold(2, 3), Fiber(X, 3)):
        space.metric.n_steps = 8  # log inverts this exp exactly; fewer steps keep the test fast
        W = space.projection(space.random_point()) if isinstance(space, Fiber) else None
        if W is None:
            W = random_balanced_point(2, 3, rng)
        vecs = space.to_tangent(0.3 * rng.standard_normal((3,) + W.shape), W)
        pts = space.metric.exp(vecs, W)
        assert pts.shape == (3,) + W.shape and np.all(space.belongs(pts))
        logs = space.metric.log(pts, W)
        np.testing.assert_allclose(logs, vecs, atol=1e-8)
        dists = space.metric.dist(W, pts)  # the norm of log at W of pts
        np.testing.assert_allclose(dists, np.sqrt(np.sum(vecs**2, axis=(-3, -2, -1))), rtol=1e-8)
        mean = FrechetMean(space).set(epsilon=1e-14, max_iter=50).fit(pts).estimate_
        assert space.belongs(mean)
        grad = np.sum(space.metric.log(pts, mean), axis=0)
        assert np.linalg.norm(grad) < 1e-4 * np.linalg.norm(vecs)
        # negative control: the first sample is not the mean
        assert np.linalg.norm(np.sum(space.metric.log(pts, pts[0]), axis=0)) > 1e-2


# --- pymanopt -------------------------------------------------------------------------------


def _kempf_ness_problem(M):
    @pymanopt.function.numpy(M)
    def cost(W):
        return float(np.sum(W * W))

    @pymanopt.function.numpy(M)
    def egrad(W):
        return 2.0 * W

    @pymanopt.function.numpy(M)
    def ehess(W, V):
        return 2.0 * V

    problem = pymanopt.Problem(M, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)
    return problem, cost


def test_pymanopt_geodesic_methods_and_particle_swarm():
    from pymanopt.optimizers import ParticleSwarm

    from dln_manifolds.pymanopt import BalancedManifold, Fiber

    X = np.array([[2.0, 0.5], [0.3, 1.0]])
    for M in (Fiber(X, 2, seed=0), BalancedManifold(2, 2, seed=0)):
        a = M.random_point()
        V = 0.5 * M.random_tangent_vector(a)
        b = M.exp(a, V)
        assert np.linalg.norm(M.log(a, b) - V) < 1e-8
        assert abs(M.dist(a, b) - 0.5) < 1e-8
        m = M.pair_mean(a, b)
        assert abs(M.dist(a, m) - 0.25) < 1e-7 and abs(M.dist(m, b) - 0.25) < 1e-7
        # random points share one connected component, so dist is finite
        assert np.isfinite(M.dist(M.random_point(), M.random_point()))
    M = Fiber(X, 2, seed=1)
    M.geodesic_steps = 4
    problem, cost = _kempf_ness_problem(M)
    start = [M.random_point() for _ in range(5)]
    c0 = min(cost(x) for x in start)
    res = ParticleSwarm(max_iterations=4, population_size=5, verbosity=0).run(
        problem, initial_point=start
    )
    assert M.minimum_norm_sq() <= res.cost <= c0


@pytest.mark.slow
def test_every_pymanopt_optimizer_runs_on_both_spaces():
    from pymanopt.optimizers import (
        ConjugateGradient,
        NelderMead,
        ParticleSwarm,
        SteepestDescent,
        TrustRegions,
    )

    from dln_manifolds.pymanopt import BalancedManifold, Fiber

    X = np.array([[2.0, 0.5], [0.3, 1.0]])
    # NelderMead: each iteration takes ~15 steepest-descent steps of a Karcher mean, hundreds
    # of logs: d = 1 (dimension 2 and 1) keeps it to seconds
    for make in (
        lambda s: Fiber(np.array([[2.0]]), 3, seed=s),
        lambda s: BalancedManifold(1, 3, seed=s),
    ):
        M, twin = make(0), make(0)  # same seed: the twin reproduces the random initial simplex
        problem, cost = _kempf_ness_problem(M)
        c0 = min(cost(twin.random_point()) for _ in range(M.dim + 1))
        res = NelderMead(max_iterations=3, verbosity=0).run(problem)
        assert res.iterations == 3 and res.cost < c0
    for make in (lambda s: Fiber(X, 2, seed=s), lambda s: BalancedManifold(2, 2, seed=s)):
        M = make(3)
        problem, cost = _kempf_ness_problem(M)
        start = [M.random_point() for _ in range(4)]
        c0 = min(cost(x) for x in start)  # before the run: ParticleSwarm moves the list in place
        res = ParticleSwarm(max_iterations=3, population_size=4, verbosity=0).run(
            problem, initial_point=start
        )
        assert res.cost <= c0
        x0 = M.random_point()
        for opt in (SteepestDescent, ConjugateGradient, TrustRegions):
            res = opt(max_iterations=30, verbosity=0).run(problem, initial_point=x0)
            assert res.cost < cost(x0)
        if isinstance(M, Fiber):
            assert res.cost == pytest.approx(M.minimum_norm_sq(), rel=1e-6)
