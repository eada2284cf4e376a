"""Geodesics of the depth metric g^N on full-rank m x n matrices, m != n (finite N).

The geodesic equation is the square one with the rectangular Christoffel term of
DepthFrame (thin SVD plus the complement block). Checks: exp against two independent
routes, the Riemannian submersion of the balanced manifold of widths (n, r, ..., r, m)
(horizontal geodesics upstairs, [G] Thm 13 and O'Neill) and an RK4 integration of the
geodesic equation with Christoffel symbols from finite differences of the dense metric
matrix (Koszul); closed forms on the (totally geodesic) rectangular-diagonal matrices;
log/exp round trips for near and far pairs, tall and wide; dist; parallel transport;
the square path unchanged (bit for bit against the module before non-square X);
depth 1 and the singular set; refusal of depth = inf; negative controls.
"""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import numpy as np
import pymanopt
import pytest
from dense import dense_cometric
from hypothesis import given, settings
from hypothesis import strategies as st

from dln_manifolds import geodesics as geo
from dln_manifolds.balanced import horizontal_lift
from dln_manifolds.depth_metric import DepthFrame
from dln_manifolds.geodesics import (
    SingularGeodesicError,
    depth_distance,
    depth_exp,
    depth_log,
    depth_parallel_transport,
    direction_geodesic,
    geodesic_acceleration,
)
from dln_manifolds.geomstats import DepthMetric
from dln_manifolds.geomstats import EndToEndMatrices as GeomstatsEndToEndMatrices
from dln_manifolds.network import balanced_point
from dln_manifolds.pymanopt import EndToEndMatrices
from dln_manifolds.submanifold_geodesics import balanced_exp

SHAPES = [(3, 2), (2, 3)]
SLOW = pytest.mark.slow


def _cases_with_default(cases, default):
    """pytest params: the ``default`` cases run by default, the others are slow."""
    return [c if c in default else pytest.param(*c, marks=SLOW) for c in cases]


SHAPE_DEPTH = [(shape, N) for shape in SHAPES for N in (2, 3)]
DEFAULT_SHAPE_DEPTH = [((3, 2), 2), ((2, 3), 3)]


def _orthonormal(rng, m, r):
    Q, R = np.linalg.qr(rng.standard_normal((m, r)))
    return Q * np.sign(np.diag(R))


def _point(rng, shape, spread=0.5):
    """U diag(s) V^T with Haar-like frames and log s uniform in [-spread, spread]."""
    m, n = shape
    r = min(m, n)
    s = np.exp(rng.uniform(-spread, spread, size=r))
    return (_orthonormal(rng, m, r) * s) @ _orthonormal(rng, n, r).T


def _vector(rng, X, N, length):
    """A Gaussian direction at X of g^N length ``length``."""
    Z = rng.standard_normal(X.shape)
    return length * Z / np.sqrt(DepthFrame(X, N).inner(Z, Z))


def _norm_g(X, N, V):
    return float(np.sqrt(DepthFrame(X, N).inner(V, V)))


def _product(layers):
    P = layers[0]
    for W in layers[1:]:
        P = W @ P
    return P


def _submersion_exp(X, Z, N, hidden=None, n_steps=100):
    """exp_X(Z) through the balanced manifold of widths (n, h, ..., h, m), h >= r."""
    m, n = X.shape
    h = min(m, n) if hidden is None else hidden
    widths = (n,) + (h,) * (N - 1) + (m,)
    W = balanced_point(X, N, widths=widths)
    H = horizontal_lift(W, Z, widths=widths)
    return _product(balanced_exp(W, H, n_steps=n_steps))


def _rk4(X, V, acc, n_steps):
    """Classical RK4 for X'' = acc(X, X') on [0, 1]."""
    h = 1.0 / n_steps
    for _ in range(n_steps):
        k1x, k1v = V, acc(X, V)
        k2x, k2v = V + 0.5 * h * k1v, acc(X + 0.5 * h * k1x, V + 0.5 * h * k1v)
        k3x, k3v = V + 0.5 * h * k2v, acc(X + 0.5 * h * k2x, V + 0.5 * h * k2v)
        k4x, k4v = V + h * k3v, acc(X + h * k3x, V + h * k3v)
        X = X + h / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)
        V = V + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
    return X


def _complement_projector(X):
    """The projector Z -> (I - UU^T) Z (tall X) or Z (I - VV^T) (wide X): the complement block."""
    U, _, Vh = np.linalg.svd(X, full_matrices=False)
    if X.shape[0] > X.shape[1]:
        return lambda Z: Z - U @ (U.T @ Z)
    return lambda Z: Z - (Z @ Vh.T) @ Vh


# -- exp against independent routes ---------------------------------------------------


@pytest.mark.parametrize("shape, N", _cases_with_default(SHAPE_DEPTH, DEFAULT_SHAPE_DEPTH))
def test_exp_matches_the_submersion_route(rng, shape, N):
    """Horizontal geodesics of the balanced manifold project to geodesics of g^N.

    Measured (|V|_g = 0.8): 2e-12 to 2e-11 at 100 RK4 steps upstairs, falling 16-fold
    per halving of the step (the RK4 error of the upstairs route).
    """
    X = _point(rng, shape)
    Z = _vector(rng, X, N, 0.8)
    Y = depth_exp(X, Z, N, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(Y - _submersion_exp(X, Z, N))) < 1e-9
    # hidden widths above r: another total space, the same geodesic
    assert np.max(np.abs(Y - _submersion_exp(X, Z, N, hidden=min(shape) + 1))) < 1e-9
    s = np.linalg.svd(Y, compute_uv=False)
    assert s.size == min(shape) and s[-1] > 1e-3 * s[0]  # full rank kept


@pytest.mark.parametrize("shape", [(3, 2), pytest.param((2, 3), marks=SLOW)])
def test_the_complement_block_of_the_acceleration_matters(rng, shape):
    """Negative control: RK4 on the geodesic equation agrees with the submersion route
    with the true acceleration and is far off with its complement block removed."""
    N = 2
    X = _point(rng, shape)
    Z = _vector(rng, X, N, 0.8)
    ref = _submersion_exp(X, Z, N)

    def true_acc(X, V):
        return geodesic_acceleration(X, V, N)

    def broken_acc(X, V):
        a = geodesic_acceleration(X, V, N)
        return a - _complement_projector(X)(a)

    assert np.max(np.abs(_rk4(X, Z, true_acc, 100) - ref)) < 1e-8
    assert np.max(np.abs(_rk4(X, Z, broken_acc, 100) - ref)) > 1e-3


def _koszul_acceleration(N, h=1e-4):
    """-Gamma_X(V, V) from central differences of the dense metric matrix (row-major)."""

    def metric(X):
        return np.linalg.inv(dense_cometric(X, N))

    def acc(X, V):
        shape, n = X.shape, X.size
        dG = [
            (metric(X + h * E) - metric(X - h * E)) / (2 * h)
            for E in np.eye(n).reshape((n,) + shape)
        ]
        v = V.reshape(-1)
        dGv = sum(vi * g for vi, g in zip(v, dG, strict=True))
        w = np.array([v @ g @ v for g in dG])
        gamma = np.linalg.solve(metric(X), dGv @ v - 0.5 * w)
        return -gamma.reshape(shape)

    return acc


@pytest.mark.parametrize("shape, N", [((2, 3), 2), pytest.param((3, 2), 3, marks=SLOW)])
def test_exp_matches_the_brute_force_geodesic_equation(rng, shape, N):
    """RK4 (40 steps) with Christoffel symbols of the dense metric (Koszul formula,
    central differences): agrees with depth_exp to the RK4 and difference errors."""
    X = _point(rng, shape)
    Z = _vector(rng, X, N, 0.6)
    brute = _rk4(X, Z, _koszul_acceleration(N), 40)
    Y = depth_exp(X, Z, N)
    assert np.max(np.abs(Y - brute)) < 1e-8  # measured 4e-10 to 9e-10


# -- closed forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, N",
    _cases_with_default(
        [(shape, N) for shape in [(3, 2), (2, 3), (4, 1), (1, 3)] for N in (2, 5)],
        [((3, 2), 2), ((1, 3), 5)],
    ),
)
def test_direction_geodesic_closed_form(rng, shape, N):
    X = _point(rng, shape)
    for t in (-1.0, 0.7, 2.0):
        expected = direction_geodesic(X, N, t)
        np.testing.assert_allclose(depth_exp(X, t * X, N), expected, rtol=1e-9, atol=1e-10)


def _diagonal(shape, values):
    D = np.zeros(shape)
    D[np.arange(len(values)), np.arange(len(values))] = values
    return D


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("N", [2, 3])
def test_diagonal_closed_forms_of_exp_and_transport(rng, shape, N):
    """On rectangular-diagonal matrices (totally geodesic, flat in r = sigma^{1/N}),
    r is affine in t; transport scales the diagonal entries and the complement block
    of row or column j by (sigma_j(1) / sigma_j(0))^{1 - 1/N} (isometries X -> D X D'
    fixing the geodesic make it diagonal there, and it keeps the norm)."""
    r = min(shape)
    s = np.exp(rng.uniform(-0.5, 0.5, size=r))
    v = rng.uniform(-0.5, 0.5, size=r) * s
    X, V = _diagonal(shape, s), _diagonal(shape, v)
    rate = v / (N * s ** (1 - 1 / N))
    s1 = (s ** (1 / N) + rate) ** N
    np.testing.assert_allclose(depth_exp(X, V, N), _diagonal(shape, s1), atol=1e-10)
    W = _diagonal(shape, rng.standard_normal(r))
    if shape[0] > shape[1]:
        W[r:, :] = rng.standard_normal((shape[0] - r, r))  # the complement block of tall X
        factor = (s1 / s)[None, :] ** (1 - 1 / N)
    else:
        W[:, r:] = rng.standard_normal((r, shape[1] - r))
        factor = (s1 / s)[:, None] ** (1 - 1 / N)
    got = depth_parallel_transport(X, V, W, N)
    np.testing.assert_allclose(got, W * factor, atol=1e-9)


# -- log, exp round trips ----------------------------------------------------------------


@st.composite
def _cases(draw):
    m = draw(st.integers(1, 4))
    n = draw(st.sampled_from([k for k in range(1, 5) if k != m]))
    N = draw(st.sampled_from([2, 3, 5]))
    seed = draw(st.integers(0, 2**32 - 1))
    return (m, n), N, seed


def _round_trip(shape, N, seed, length):
    rng = np.random.default_rng(seed)
    X = _point(rng, shape)
    V = _vector(rng, X, N, length)
    Y = depth_exp(X, V, N)
    W = depth_log(X, Y, N)
    scale = 1.0 + np.linalg.norm(V)
    assert np.linalg.norm(W - V) < 1e-8 * scale
    assert np.linalg.norm(depth_exp(X, W, N) - Y) < 1e-9 * (1.0 + np.linalg.norm(Y))
    assert np.linalg.svd(Y, compute_uv=False)[-1] > 0


@settings(max_examples=4)
@given(_cases())
def test_log_inverts_exp_near(case):
    shape, N, seed = case
    _round_trip(shape, N, seed, 0.3)


@pytest.mark.slow
@settings(max_examples=40)
@given(_cases())
def test_log_inverts_exp_near_many(case):
    shape, N, seed = case
    _round_trip(shape, N, seed, 0.3)


FAR = [(shape, N) for shape in [(3, 2), (2, 3), (5, 3)] for N in (2, 3, 5)]


def _far_pair(shape, N, seed):
    rng = np.random.default_rng(seed)
    return _point(rng, shape), _point(rng, shape)


def _check_far(shape, N, seed):
    X, Y = _far_pair(shape, N, seed)
    V = depth_log(X, Y, N)
    assert np.linalg.norm(depth_exp(X, V, N) - Y) < 1e-9 * (1.0 + np.linalg.norm(Y))
    # and back: the log of the endpoint of V is V (the same geodesic)
    np.testing.assert_allclose(depth_log(X, depth_exp(X, V, N), N), V, atol=1e-8)
    return X, Y, V


@pytest.mark.slow
@pytest.mark.parametrize("shape, N", [((3, 2), 3)])
def test_exp_inverts_log_far(shape, N):
    X, Y, V = _check_far(shape, N, 5)
    assert _norm_g(X, N, V) > 1.0  # a far pair indeed


@pytest.mark.slow
@pytest.mark.parametrize("shape, N", FAR)
@pytest.mark.parametrize("seed", [0, 1])
def test_exp_inverts_log_far_many(shape, N, seed):
    _check_far(shape, N, seed)


def test_log_batches_and_broadcasts(rng):
    X = _point(rng, (3, 2))
    Vs = np.stack([_vector(rng, X, 2, 0.4) for _ in range(3)])
    Ys = depth_exp(X, Vs, 2)
    assert Ys.shape == (3, 3, 2)
    W = depth_log(X, Ys, 2)
    np.testing.assert_allclose(W, Vs, atol=1e-9)
    np.testing.assert_allclose(W[1], depth_log(X, Ys[1], 2), atol=1e-12)


# -- distance --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 2), pytest.param((2, 3), marks=SLOW)])
def test_distance(rng, shape):
    N = 2
    X = _point(rng, shape)
    Y = depth_exp(X, _vector(rng, X, N, 0.8), N)
    d_xy, d_yx = depth_distance(X, Y, N), depth_distance(Y, X, N)
    assert d_xy == pytest.approx(0.8, rel=1e-8)  # the length of a short geodesic
    assert abs(d_xy - d_yx) < 1e-8 * d_xy
    assert depth_distance(X, X, N) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_distance_of_random_pairs(rng, shape):
    N = 2
    X, Y = _point(rng, shape), _point(rng, shape)
    d_xy, d_yx = _norm_g(X, N, depth_log(X, Y, N)), depth_distance(Y, X, N)
    assert np.isfinite(d_yx) and d_yx > 0  # one component: always joined
    assert abs(d_xy - d_yx) < 1e-8 * d_xy


# -- parallel transport ----------------------------------------------------------------


@pytest.mark.parametrize("shape, N", _cases_with_default(SHAPE_DEPTH, DEFAULT_SHAPE_DEPTH))
def test_parallel_transport_is_linear_isometric_and_carries_the_velocity(rng, shape, N):
    X = _point(rng, shape)
    V = _vector(rng, X, N, 0.9)
    W = rng.standard_normal((3,) + shape)
    W[2] = 0.7 * W[0] - 1.3 * W[1]
    Y = depth_exp(X, V, N)
    P = depth_parallel_transport(X, V, W, N)
    assert P.shape == (3,) + shape
    gram_x = DepthFrame(X, N).inner(W[:, None], W[None, :])
    gram_y = DepthFrame(Y, N).inner(P[:, None], P[None, :])
    np.testing.assert_allclose(gram_y, gram_x, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(P[2], 0.7 * P[0] - 1.3 * P[1], atol=1e-8)
    # transport of the initial velocity is the final velocity (central difference)
    h = 1e-4
    velocity = (
        depth_exp(X, (1 + h) * V, N, rtol=1e-13) - depth_exp(X, (1 - h) * V, N, rtol=1e-13)
    ) / (2 * h)
    np.testing.assert_allclose(depth_parallel_transport(X, V, V, N), velocity, atol=1e-6)
    # negative control: the identity map is not the transport
    assert not np.allclose(P[0], W[0], atol=1e-3)


# -- the square path is the module as it was ------------------------------------------

# the last commit of dln_manifolds/geodesics.py before non-square points
_BASE = "44c7c95"


def _old_module():
    root = Path(__file__).resolve().parents[1]
    try:
        src = subprocess.run(
            ["git", "show", f"{_BASE}:dln_manifolds/geodesics.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git history with the square-only geodesics.py not available")
    mod = types.ModuleType("dln_manifolds._geodesics_before_rectangular")
    mod.__package__ = "dln_manifolds"
    exec(compile(src, "geodesics@" + _BASE, "exec"), mod.__dict__)
    return mod


def test_square_results_bit_identical_to_before(rng):
    old = _old_module()
    with pytest.raises(ValueError):  # negative control: the old module had no m x n
        old.depth_exp(np.eye(3, 2), np.ones((3, 2)), 2)
    X = np.eye(2) + 0.3 * rng.standard_normal((2, 2))
    Y = X + 0.2 * rng.standard_normal((2, 2))
    V, W = 0.3 * rng.standard_normal((2, 2, 2))
    for N in (1, 3, np.inf):
        for name, args in [
            ("depth_exp", (X, V, N)),
            ("depth_log", (X, Y, N)),
            ("depth_distance", (X, Y, N)),
            ("depth_parallel_transport", (X, V, W, N)),
            ("geodesic_acceleration", (X, V, N)),
            ("direction_geodesic", (X, N, 0.4)),
        ]:
            new = getattr(geo, name)(*args)
            if name in ("depth_log", "depth_distance") and N != 1:
                # the log's Newton schedule changed since (looser intermediate stages):
                # the same geodesic to the requested tol = 1e-10; measured differences
                # up to 6e-12 (random near pairs, d = 2)
                np.testing.assert_allclose(new, getattr(old, name)(*args), rtol=0, atol=1e-9)
                continue
            assert np.array_equal(new, getattr(old, name)(*args)), (name, N)
    # n_steps (fixed-step RK4) and a batch
    Xb = np.stack([X, Y])
    assert np.array_equal(depth_exp(Xb, V, 3, n_steps=7), old.depth_exp(Xb, V, 3, n_steps=7))


# -- depth 1, the singular set, refusals ------------------------------------------------


def test_depth_one_is_the_segment():
    X = np.eye(3, 2)
    V = np.array([[0.2, 0.1], [0.0, -0.3], [0.5, 0.4]])
    np.testing.assert_array_equal(depth_exp(X, V, 1), X + V)
    np.testing.assert_allclose(depth_log(X, X + V, 1), V, atol=1e-15)
    assert depth_distance(X, X + V, 1) == pytest.approx(np.linalg.norm(V))
    np.testing.assert_array_equal(depth_parallel_transport(X, V, V, 1), V)
    # the segment through a rank-deficient matrix (first column 1 - 2t = 0 at t = 1/2)
    through = np.array([[-2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(SingularGeodesicError, match="rank X < 2"):
        depth_exp(X, through, 1)
    with pytest.raises(SingularGeodesicError, match="singular set"):
        depth_log(X, X + through, 1)
    with pytest.raises(SingularGeodesicError, match="rank X < 2"):
        depth_exp(X.T, through.T, 1)  # wide
    # a near miss (distance 1e-3 from the rank-deficient set) is a geodesic
    near = through + np.array([[0.0, 0.0], [0.0, 0.0], [1e-3, 0.0]])
    np.testing.assert_array_equal(depth_exp(X, near, 1), X + near)


@pytest.mark.parametrize("shape, N", _cases_with_default(SHAPE_DEPTH, [((2, 3), 2)]))
def test_geodesic_into_the_singular_set_raises(shape, N):
    """r_2 = sigma_2^{1/N} moves at rate v / N and reaches 0 at t = 2/3."""
    X = _diagonal(shape, [1.0, 1.0])
    V = _diagonal(shape, [0.0, -1.5 * N])
    with pytest.raises(SingularGeodesicError, match="rank X < 2"):
        depth_exp(X, V, N)
    depth_exp(X, 0.5 * V, N)  # negative control: stopping short of it is fine


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_transport_into_the_singular_set_raises(shape):
    X = _diagonal(shape, [1.0, 1.0])
    V = _diagonal(shape, [0.0, -3.0])
    with pytest.raises(SingularGeodesicError, match="rank X < 2"):
        depth_parallel_transport(X, V, V, 2)


@pytest.mark.parametrize("shape", SHAPES)
def test_infinite_depth_is_refused(rng, shape):
    X, Y = _point(rng, shape), _point(rng, shape)
    V = rng.standard_normal(shape)
    for call in [
        lambda: depth_exp(X, V, np.inf),
        lambda: depth_log(X, Y, np.inf),
        lambda: depth_distance(X, Y, np.inf),
        lambda: depth_parallel_transport(X, V, V, np.inf),
        lambda: geodesic_acceleration(X, V, np.inf),
        lambda: direction_geodesic(X, np.inf, 0.5),
    ]:
        with pytest.raises(ValueError, match="depth must be finite for a non-square X"):
            call()


def test_shapes_must_match(rng):
    X = _point(rng, (3, 2))
    with pytest.raises(ValueError, match=r"V must have shape \(\.\.\., 3, 2\) like X"):
        depth_exp(X, np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="W must have shape"):
        depth_parallel_transport(X, X, np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="Y is rank-deficient"):
        depth_log(X, np.ones((3, 2)), 2)
    with pytest.raises(ValueError, match="X must have shape"):
        depth_exp(np.ones((0, 2)), np.ones((0, 2)), 2)


# -- the adapters: pymanopt's solvers and geomstats ------------------------------------


def _quadratic(M, T):
    @pymanopt.function.numpy(M)
    def cost(X):
        return 0.5 * np.sum((X - T) ** 2)

    @pymanopt.function.numpy(M)
    def egrad(X):
        return X - T

    return pymanopt.Problem(M, cost, euclidean_gradient=egrad)


def _near_simplex(M, T, rng, k):
    radius = 0.3 * np.linalg.svd(T, compute_uv=False)[-1]
    return [
        T + radius * rng.uniform() * rng.standard_normal(T.shape) / np.sqrt(T.size)
        for _ in range(k)
    ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pymanopt_steepest_descent_then_geodesics(rng):
    """SteepestDescent on a non-square space, then the geodesic tools at its result."""
    M = EndToEndMatrices((3, 2), 3, seed=1)
    T = M.random_point()
    X0 = _near_simplex(M, T, rng, 1)[0]
    opt = pymanopt.optimizers.SteepestDescent(max_iterations=60, verbosity=0)
    X = opt.run(_quadratic(M, T), initial_point=X0).point
    assert np.linalg.norm(X - T) < 1e-3 * np.linalg.norm(X0 - T)
    V = M.log(X0, T)
    np.testing.assert_allclose(M.exp(X0, V), T, atol=1e-9)
    assert M.dist(X0, T) == pytest.approx(M.norm(X0, V), rel=1e-12)
    assert M.dist(X, T) < 1e-3 * M.dist(X0, T)
    mid = M.pair_mean(X0, T)
    assert M.dist(X0, mid) == pytest.approx(0.5 * M.dist(X0, T), rel=1e-7)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("shape", SHAPES)
def test_pymanopt_nelder_mead(rng, shape):
    """NelderMead (dist, log, pair_mean and the retraction) from a simplex near T.

    pymanopt 2.2's NelderMead rejects an initial simplex of the right size (its length
    test is inverted): the simplex comes from ``random_point``, drawn near T here.
    """
    M = EndToEndMatrices(shape, 2, seed=2)
    M.geodesic_tol = 1e-8
    T = M.random_point()
    drawn = []

    def random_point():  # also the start of each Karcher mean: near T
        drawn.append(_near_simplex(M, T, rng, 1)[0])
        return drawn[-1]

    M.random_point = random_point
    opt = pymanopt.optimizers.NelderMead(max_iterations=4, verbosity=0)
    result = opt.run(_quadratic(M, T))
    start = min(0.5 * np.sum((x - T) ** 2) for x in drawn[: M.dim + 1])  # the simplex
    assert np.all(np.isfinite(result.point)) and result.cost <= start
    assert np.linalg.svd(result.point, compute_uv=False)[-1] > 0


def test_geomstats_adapter_matches_the_core(rng):
    """geomstats' DepthMetric on a non-square space: exp, log, dist, parallel transport
    are the core's functions on the row-major vectors; depth = inf is refused."""
    space = GeomstatsEndToEndMatrices((2, 3), 2)
    X = _point(rng, (2, 3))
    V = _vector(rng, X, 2, 0.4)
    W = rng.standard_normal((2, 3))
    x, v, w = X.reshape(-1), V.reshape(-1), W.reshape(-1)
    Y = depth_exp(X, V, 2)
    np.testing.assert_array_equal(space.metric.exp(v, x), Y.reshape(-1))
    np.testing.assert_allclose(space.metric.log(Y.reshape(-1), x), v, atol=1e-9)
    assert space.metric.dist(x, Y.reshape(-1)) == pytest.approx(0.4, rel=1e-8)
    np.testing.assert_array_equal(
        space.metric.parallel_transport(w, x, direction=v),
        depth_parallel_transport(X, V, W, 2).reshape(-1),
    )
    with pytest.raises(ValueError, match="depth must be finite for a non-square base_point"):
        DepthMetric(space, depth=np.inf).exp(v, x)
