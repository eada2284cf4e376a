"""(M_d, g^N) as a pymanopt manifold: slopes, Hessian symmetry, retraction, solvers."""

from __future__ import annotations

import warnings
from unittest import mock

import autograd.numpy as anp
import numpy as np
import pymanopt
import pytest
from slopes import quadratic_problem, taylor_slopes
from threadpoolctl import threadpool_limits

from dln_manifolds import depth_christoffel, depth_inner_product, depth_operator
from dln_manifolds.geodesics import DifferentComponentsError, SingularGeodesicError
from dln_manifolds.pymanopt import BoundaryWarning, EndToEndMatrices

DEPTHS = [1, 2, 3, 7, np.inf]

# pymanopt's slope fit converts a 1-element array to a scalar (numpy deprecation).
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array:DeprecationWarning")


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    """3 x 3 problems: a multi-threaded BLAS only adds thread start-up (scipy's
    expm of a 3 x 3 takes ~5 ms instead of ~10 us on a loaded 2-core machine)."""
    with threadpool_limits(1):
        yield


def _same_component(x, reference):
    """Flip a column of x if needed so that det x has the sign of det reference.

    GL(d) has two components and a descent method never crosses det = 0, so a
    start in the other component cannot reach the minimizer.
    """
    x = x.copy()
    if np.linalg.det(x) * np.linalg.det(reference) < 0:
        x[:, 0] *= -1
    return x


def _quartic_problem(manifold, T):
    """E(X) = sum(X^4)/4 + |X - T|^2/2: non-quadratic, autograd backend."""

    @pymanopt.function.autograd(manifold)
    def cost(X):
        return anp.sum(X**4) / 4 + anp.sum((X - T) ** 2) / 2

    return pymanopt.Problem(manifold, cost)


# ---------------------------------------------------------------------------
# Taylor slopes and Hessian symmetry
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", DEPTHS)
def test_gradient_and_hessian_slopes(depth):
    M = EndToEndMatrices(3, depth, seed=7)
    problem = _quartic_problem(M, M.random_point())
    x = M.random_point()
    g_slope, h_slope = taylor_slopes(problem, x, M.random_tangent_vector(x))
    # First-order model error O(t^2), second-order model error O(t^3) (the
    # retraction is second order, so slope 3 holds away from critical points).
    assert 1.9 <= g_slope <= 2.1
    assert 2.85 <= h_slope <= 3.15


def test_hessian_slope_fails_without_christoffel_term(monkeypatch):
    """The slope test is sharp: dropping the connection term breaks slope 3."""
    M = EndToEndMatrices(3, 3, seed=8)
    problem = _quartic_problem(M, M.random_point())
    x = M.random_point()
    v = M.random_tangent_vector(x)

    def hess_without_gamma(point, egrad, ehess, u):
        return depth_operator(point, 3, ehess)

    monkeypatch.setattr(M, "euclidean_to_riemannian_hessian", hess_without_gamma)
    _, h_slope = taylor_slopes(problem, x, v)
    assert h_slope < 2.5


def test_hessian_and_retraction_use_one_svd(rng):
    """One DepthFrame per call (the retraction's step-length bound uses the same frame): the
    Hessian used to compute ten SVDs, the retraction seven."""
    M = EndToEndMatrices(4, 3, seed=1)
    x = M.random_point()
    G, H, U = rng.standard_normal((3, 4, 4))
    with mock.patch.object(np.linalg, "svd", wraps=np.linalg.svd) as svd:
        M.euclidean_to_riemannian_hessian(x, G, H, U)
        assert svd.call_count == 1
        M.retraction(x, 0.1 * U)
        assert svd.call_count == 2


@pytest.mark.parametrize("depth", DEPTHS)
def test_hessian_is_symmetric(depth):
    M = EndToEndMatrices(3, depth, seed=9)
    problem = _quartic_problem(M, M.random_point())
    x = M.random_point()
    U, V = M.random_tangent_vector(x), M.random_tangent_vector(x)
    hu, hv = problem.riemannian_hessian(x, U), problem.riemannian_hessian(x, V)
    a, b = M.inner_product(x, hu, V), M.inner_product(x, U, hv)
    # Self-adjointness in g^N: exact up to rounding of O(1) quantities.
    assert abs(a - b) <= 1e-11 * (abs(a) + abs(b))


# ---------------------------------------------------------------------------
# Retraction
# ---------------------------------------------------------------------------


def _fitted_slope(ts, errors):
    return float(np.polyfit(np.log(ts), np.log(errors), 1)[0])


@pytest.mark.parametrize("depth", [1, 2, 5, np.inf])
def test_retraction_orders(depth):
    M = EndToEndMatrices(3, depth, seed=10)
    X = M.random_point()
    Z = M.random_tangent_vector(X)
    assert np.array_equal(M.retraction(X, np.zeros_like(Z)), X)
    ts = np.logspace(-3, -1, 7)
    first = [np.linalg.norm(M.retraction(X, t * Z) - X - t * Z) for t in ts]
    gamma = depth_christoffel(X, depth, Z, Z)
    second = [np.linalg.norm(M.retraction(X, t * Z) - (X + t * Z - 0.5 * t**2 * gamma)) for t in ts]
    # R(X, tZ) = X + tZ - t^2/2 Gamma(Z, Z) + O(t^3): first-order error t^2 (t^3 at
    # depth 1, where Gamma = 0), the geodesic's second-order Taylor polynomial to O(t^3).
    expected = 3.0 if depth == 1 else 2.0
    assert expected - 0.1 <= _fitted_slope(ts, first) <= expected + 0.1
    assert 2.85 <= _fitted_slope(ts, second) <= 3.15


@pytest.mark.parametrize("depth", [2, 7, np.inf])
def test_retraction_stays_in_component_and_is_monotone(depth):
    M = EndToEndMatrices(3, depth, seed=11)
    X = M.random_point()
    Z = M.random_tangent_vector(X)
    # det R = det X exp(tr K) never vanishes; long steps (condition numbers up to
    # ~1e7 here, so that the sign of the computed determinant is reliable).
    for t in (0.5, 1.0, 2.0, 5.0, -0.5, -1.0, -2.0, -5.0):
        Y = M.retraction(X, t * Z)
        assert np.all(np.isfinite(Y))
        assert np.sign(np.linalg.det(Y)) == np.sign(np.linalg.det(X))
    # Along Z = tX the singular values grow monotonically (no fold-back).
    norms = [np.linalg.norm(M.retraction(X, t * X)) for t in np.linspace(0, 20, 41)]
    assert np.all(np.diff(norms) > 0)


@pytest.mark.parametrize("depth", [1, 2, np.inf])
def test_long_steps_stay_well_inside_gl_d(depth):
    """Steps of any length give a finite point of the same component with condition
    number <= 1e-2 / (d eps) (the old retraction overflowed to +inf, or underflowed
    to the zero matrix towards the boundary)."""
    M = EndToEndMatrices(2, depth, seed=12)
    X = M.random_point()
    limit = 1e-2 / (2 * np.finfo(np.float64).eps)
    Z = M.random_tangent_vector(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", BoundaryWarning)  # norm() at ill-conditioned Y
        for V in (1e6 * X, -1e6 * X, 1e3 * Z, -1e3 * Z, 1e300 * Z, 1e-300 * Z):
            Y = M.retraction(X, V)
            s = np.linalg.svd(Y, compute_uv=False)
            assert np.all(np.isfinite(Y)) and s[0] / s[-1] <= limit
            assert np.sign(np.linalg.det(Y)) == np.sign(np.linalg.det(X))
            M.norm(Y, Z)  # usable by a solver
    # From a point at the limit, no step raises the condition number past it.
    U, _, Vt = np.linalg.svd(X)
    edge = U @ np.diag([1.0, 2.0 / limit]) @ Vt  # condition number limit / 2
    for t in (1e-3, 1.0, 1e3, 1e9):
        Y = M.retraction(edge, -t * U @ np.diag([0.0, 2.0 / limit]) @ Vt)  # shrinks s_min
        s = np.linalg.svd(Y, compute_uv=False)
        assert s[0] / s[-1] <= limit


def test_retraction_does_not_mutate():
    M = EndToEndMatrices(3, 3, seed=13)
    X = M.random_point()
    Z = M.random_tangent_vector(X)
    X0, Z0 = X.copy(), Z.copy()
    M.retraction(X, Z)
    M.euclidean_to_riemannian_hessian(X, Z, Z, Z)
    assert np.array_equal(X, X0) and np.array_equal(Z, Z0)


# ---------------------------------------------------------------------------
# Solvers reach the optimum of |X - T|^2 / 2
# ---------------------------------------------------------------------------


def _start_near(M, T, rng):
    """A start with |X0 - T| = sigma_min(T) / 2.

    The sublevel set {E <= E(X0)} is then the ball of radius sigma_min(T)/2
    around T, which contains no singular matrix (Eckart-Young): a monotone
    descent method stays in it, where T is the only critical point.
    """
    D = rng.standard_normal(T.shape)
    return T + 0.5 * np.linalg.svd(T, compute_uv=False)[-1] * D / np.linalg.norm(D)


@pytest.mark.parametrize("depth", [2, 5, np.inf])
@pytest.mark.parametrize(
    "optimizer",
    [pymanopt.optimizers.SteepestDescent, pymanopt.optimizers.ConjugateGradient],
    ids=["SteepestDescent", "ConjugateGradient"],
)
def test_line_search_solvers_reach_optimum(optimizer, depth, rng):
    M = EndToEndMatrices(3, depth, seed=14)
    T = M.random_point()
    problem = quadratic_problem(M, T)
    result = optimizer(verbosity=0, max_iterations=500).run(
        problem, initial_point=_start_near(M, T, rng)
    )
    assert "min grad norm" in result.stopping_criterion
    # |grad|_g <= 1e-6 and A^{-1} has norm <= 1/min multiplier ~ 1/(N s_min^2) <= 4:
    # the Euclidean distance to T is <= 4e-6.
    assert np.linalg.norm(result.point - T) <= 1e-5


@pytest.mark.parametrize("depth", [2, 5, np.inf])
def test_trust_regions_reaches_optimum_fast(depth, rng):
    M = EndToEndMatrices(3, depth, seed=15)
    T = M.random_point()
    problem = quadratic_problem(M, T)
    result = pymanopt.optimizers.TrustRegions(verbosity=0, max_iterations=50).run(
        problem, initial_point=_start_near(M, T, rng)
    )
    assert "min grad norm" in result.stopping_criterion
    assert np.linalg.norm(result.point - T) <= 1e-6
    # Newton-like (the Hessian is exact): a handful of outer iterations.
    assert result.iterations <= 8  # measured 4


@pytest.mark.parametrize("depth", [2, np.inf])
def test_trust_regions_from_far_start(depth):
    """From a random start in T's component (distance O(1)), still few iterations."""
    M = EndToEndMatrices(4, depth, seed=16)
    T = M.random_point()
    x0 = _same_component(M.random_point(), T)
    problem = quadratic_problem(M, T)
    result = pymanopt.optimizers.TrustRegions(verbosity=0, max_iterations=100).run(
        problem, initial_point=x0
    )
    assert np.linalg.norm(result.point - T) <= 1e-6
    assert result.iterations <= 15  # measured 6 (N = 2) and 9 (N = inf)


# ---------------------------------------------------------------------------
# The rest of the Manifold interface
# ---------------------------------------------------------------------------


def _pair_in_one_component(M):
    X, Y = M.random_point(), M.random_point()
    return X, _same_component(Y, X)


@pytest.mark.parametrize("depth", [3])
def test_exp_log_round_trip_and_dist(depth):
    """exp(log) = id, dist symmetric and = |log|, against the core and an RK4 exp."""
    M = EndToEndMatrices(2, depth, seed=21)
    X, Y = _pair_in_one_component(M)
    V = M.log(X, Y)
    np.testing.assert_allclose(M.exp(X, V), Y, atol=1e-9)
    # independent integrator: fixed-step RK4 of the geodesic ODE (Christoffel form)
    Xt, Vt, h = X.copy(), V.copy(), 1.0 / 100

    def f(P, W):
        return W, -depth_christoffel(P, depth, W, W)

    for _ in range(100):
        k1 = f(Xt, Vt)
        k2 = f(Xt + h / 2 * k1[0], Vt + h / 2 * k1[1])
        k3 = f(Xt + h / 2 * k2[0], Vt + h / 2 * k2[1])
        k4 = f(Xt + h * k3[0], Vt + h * k3[1])
        Xt = Xt + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        Vt = Vt + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    np.testing.assert_allclose(Xt, Y, atol=1e-6)
    d_xy, d_yx = M.dist(X, Y), M.dist(Y, X)
    assert isinstance(d_xy, float) and d_xy > 0
    assert d_xy == pytest.approx(d_yx, rel=1e-8)
    assert d_xy == pytest.approx(np.sqrt(depth_inner_product(X, depth, V, V)), rel=1e-12)
    assert M.dist(X, X) == 0.0


def test_pair_mean_is_the_midpoint():
    M = EndToEndMatrices(2, 3, seed=22)
    X, Y = _pair_in_one_component(M)
    mid = M.pair_mean(X, Y)
    total = M.dist(X, Y)
    assert M.dist(X, mid) == pytest.approx(total / 2, rel=1e-7)
    assert M.dist(mid, Y) == pytest.approx(total / 2, rel=1e-7)
    # negative control: the Euclidean midpoint is not the geodesic one
    euclid = (X + Y) / 2
    assert abs(M.dist(X, euclid) - total / 2) > 1e-4 * total


def test_geodesics_between_components():
    """No curve joins the two components: dist is inf, log and pair_mean raise."""
    M = EndToEndMatrices(2, 2)
    X, Y = np.eye(2), np.diag([1.0, -1.0])
    assert M.dist(X, Y) == np.inf
    with pytest.raises(DifferentComponentsError, match="point_a and point_b"):
        M.log(X, Y)
    with pytest.raises(DifferentComponentsError):
        M.pair_mean(X, Y)
    with pytest.raises(SingularGeodesicError, match="tangent_vector"):
        # along X = s I the geodesic has s(t)^(1/N) = 1 - 4t/N: s = 0 at t = 1/2 (N = 2)
        M.exp(X, -4.0 * X)
    with pytest.raises(ValueError, match="point_b"):
        M.dist(X, np.zeros((2, 2)))


@pytest.mark.slow
def test_nelder_mead_decreases_cost():
    """NelderMead (exp/log/dist/pair_mean) on E = |X - T|^2/2; ~75 s for 3 iterations.

    Its simplex comes from random_point, which draws from both components of
    GL(d); here it draws near a start X0 (T at g^N-distance ~1), so that all
    logs stay in one component and away from the boundary. (pymanopt 2.2.1
    refuses an explicit simplex of exactly dim + 1 points, and starts each
    centroid computation at a random_point too.) Measured: best simplex cost
    1.23 -> 0.52 after 3 iterations.
    """
    M = EndToEndMatrices(2, 2, seed=0)
    X0 = M.random_point()
    T = M.retraction(X0, M.random_tangent_vector(X0))
    simplex = []

    def near_start():
        simplex.append(M.retraction(X0, 0.3 * M.random_tangent_vector(X0)))
        return simplex[-1]

    M.random_point = near_start
    problem = quadratic_problem(M, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        result = pymanopt.optimizers.NelderMead(max_iterations=3, verbosity=0).run(problem)
    # the first dim + 1 draws are the simplex (later ones start the centroid solver)
    start = min(problem.cost(x) for x in simplex[: M.dim + 1])
    assert result.cost < 0.6 * start


@pytest.mark.parametrize("depth", [1, 3, np.inf])
def test_interface(depth):
    d = 3
    M = EndToEndMatrices(d, depth, seed=17)
    assert M.dim == d * d and M.d == d and M.depth == depth
    assert M.typical_dist == pytest.approx(d)
    X = M.random_point()
    s = np.linalg.svd(X, compute_uv=False)
    assert 0.5 <= s.min() and s.max() <= 2.0  # well conditioned: cond <= 4
    Z1, Z2 = M.random_tangent_vector(X), M.random_tangent_vector(X)
    ip, nrm = M.inner_product(X, Z1, Z2), M.norm(X, Z1)
    assert isinstance(ip, np.floating) and isinstance(nrm, np.floating)
    assert ip == pytest.approx(depth_inner_product(X, depth, Z1, Z2), rel=1e-14)
    assert nrm == pytest.approx(1.0, rel=1e-12)
    assert not np.any(M.zero_vector(X))
    P = M.projection(X, Z1)
    assert np.array_equal(P, Z1) and P is not Z1
    assert np.array_equal(M.to_tangent_space(X, Z1), Z1)
    Y = M.random_point()
    TZ1, TZ2 = M.transport(X, Y, Z1), M.transport(X, Y, Z2)
    if depth == 1:
        assert np.array_equal(TZ1, Z1)  # Euclidean: the identity
    else:  # isometric, linear, the identity from X to X; not the identity (negative control)
        assert M.inner_product(Y, TZ1, TZ2) == pytest.approx(ip, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(M.transport(X, Y, Z1 - 2 * Z2), TZ1 - 2 * TZ2, atol=1e-12)
        assert np.array_equal(M.transport(X, X, Z1), Z1)
        assert M.inner_product(Y, Z1, Z1) != pytest.approx(1.0, rel=1e-3)
    egrad = np.arange(9.0).reshape(3, 3)
    np.testing.assert_allclose(
        M.euclidean_to_riemannian_gradient(X, egrad), depth_operator(X, depth, egrad)
    )
    # The Riemannian gradient represents the differential in g^N: g(grad, Z) = <egrad, Z>.
    assert M.inner_product(X, M.euclidean_to_riemannian_gradient(X, egrad), Z1) == pytest.approx(
        np.vdot(egrad, Z1), rel=1e-12
    )


def test_seeded_randomness_is_reproducible():
    a, b = EndToEndMatrices(3, 2, seed=3), EndToEndMatrices(3, 2, seed=3)
    np.testing.assert_array_equal(a.random_point(), b.random_point())
