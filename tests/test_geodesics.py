"""Geodesics of (M_d, g^N): exp, log and distance (dln_manifolds.geodesics).

Checked against closed forms (radial and diagonal geodesics), an independent
integrator (scipy's DOP853 on the core Christoffel term), the Euclidean case
N = 1, and the failure modes: the singular set, the two components of GL(d),
rank-deficient input.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dln_manifolds import geodesics
from dln_manifolds.depth_metric import depth_christoffel, depth_inner_product
from dln_manifolds.geodesics import (
    DifferentComponentsError,
    GeodesicError,
    LogConvergenceError,
    SingularGeodesicError,
    depth_distance,
    depth_exp,
    depth_log,
    depth_parallel_transport,
    direction_geodesic,
    geodesic_acceleration,
)

DEPTHS = [1, 2, 3, np.inf]

# The pair of issue 13 (EndToEndMatrices(2, 2) vectors): a geodesic of length 2.288
# joins them (found by continuation, confirmed by an adaptive integrator).
ISSUE_X = np.array([[0.484, -0.197], [0.296, 0.893]])
ISSUE_Y = np.array([[-0.781, 0.546], [-1.043, -0.51]])


# A far 5 x 5 pair at N = 3 whose polar rotation Q_X^T Q_Y turns by 0.989 pi: the
# polar path from either end leads to a geodesic of length 4.0735, the path turning the
# other way round to one of length 4.0496 (random search: 3 such of 75 pairs).
BRANCH_X = np.array(
    [
        [-1.384793260123, 0.603465603309, 0.527644509986, 1.869969815518, 0.016824784405],
        [0.891839532016, -0.162643831209, -1.06501418483, -0.882672230135, -0.710195235424],
        [0.775107780178, -0.782222591508, 0.039016968756, 0.897848074437, 1.240563814586],
        [0.93663650602, 1.491572142807, -1.135064167727, -0.489353304072, 0.317045412777],
        [1.114730965383, 0.502904831096, -0.767421625305, -0.19022961753, -1.651578624224],
    ]
)
BRANCH_Y = np.array(
    [
        [1.211346056864, -2.680171223287, 0.32364540336, 1.615465122827, 1.355733775949],
        [-2.418317889695, 0.321147200726, -0.521512928866, -0.445347460417, 2.46391334199],
        [0.43092398633, -2.148614787203, -1.619533998554, 1.06493015031, 0.337105136952],
        [-1.70360277579, -2.518278022699, -0.835972524762, -0.66619537779, 1.218170548789],
        [-0.926600778535, 0.99114756188, 1.803769710136, -2.420608615723, -0.897095455139],
    ]
)


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _random_pairs(rng, d, n):
    """Pairs sampled as EndToEndMatrices.random_point does (Haar frames, s in [1/2, 2]),
    kept when both lie in the same component of GL(d)."""
    pairs = []
    while len(pairs) < n:
        P = [
            (_haar(rng, d) * np.exp(rng.uniform(np.log(0.5), np.log(2.0), d))) @ _haar(rng, d)
            for _ in range(2)
        ]
        if np.sign(np.linalg.det(P[0])) == np.sign(np.linalg.det(P[1])):
            pairs.append(P)
    P = np.array(pairs)
    return P[:, 0], P[:, 1]


def _reference_exp(X, V, depth):
    """Independent integration: scipy's DOP853 on X'' = -Gamma_X(X', X'), tight tolerances."""
    d = X.shape[0]

    def f(_, y):
        Xt, Vt = y[: d * d].reshape(d, d), y[d * d :].reshape(d, d)
        return np.concatenate([Vt.ravel(), -depth_christoffel(Xt, depth, Vt, Vt).ravel()])

    sol = solve_ivp(
        f,
        (0.0, 1.0),
        np.concatenate([X.ravel(), V.ravel()]),
        method="DOP853",
        rtol=1e-12,
        atol=1e-13,
    )
    return sol.y[: d * d, -1].reshape(d, d)


# --- exp ------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", DEPTHS)
def test_exp_along_the_point_is_closed_form(rng, depth):
    """exp_X(tX) = (1 + t/N)^N X (e^t X for N = inf), batched over points and times."""
    X = np.stack([_haar(rng, 3) * [1.7, 1.0, 0.6] for _ in range(2)])
    for t in (0.8, -0.6):
        got = depth_exp(X, t * X, depth)
        np.testing.assert_allclose(got, direction_geodesic(X, depth, t), rtol=0, atol=1e-9)


@pytest.mark.parametrize("depth", [2, 5, np.inf])
def test_diagonal_geodesics_exp_log_distance(rng, depth):
    """In a fixed singular frame, r_k = s_k^{1/N} are flat coordinates with g^N = N sum dr_k^2.

    exp_X(U diag(delta) V^T) has singular values (s^{1/N} + delta s^{1/N - 1}/N)^N and
    dist = sqrt(N) |tau^{1/N} - s^{1/N}| (|log tau - log s| for N = inf).
    """
    U, V = _haar(rng, 3), _haar(rng, 3)
    s = np.array([1.7, 1.0, 0.6])
    delta = np.array([0.9, -0.5, 0.4])
    if np.isinf(depth):
        tau = s * np.exp(delta / s)
        dist = np.linalg.norm(np.log(tau) - np.log(s))
    else:
        q = 1.0 / depth
        tau = (s**q + delta * s ** (q - 1) / depth) ** depth
        dist = np.sqrt(depth) * np.linalg.norm(tau**q - s**q)
    X, Y, W = (U * s) @ V.T, (U * tau) @ V.T, (U * delta) @ V.T
    np.testing.assert_allclose(depth_exp(X, W, depth), Y, atol=1e-9)
    np.testing.assert_allclose(depth_log(X, Y, depth), W, atol=1e-8)
    assert depth_distance(X, Y, depth) == pytest.approx(dist, rel=1e-9)
    assert depth_distance(Y, X, depth) == pytest.approx(dist, rel=1e-9)


@pytest.mark.parametrize("depth", [2, 3, np.inf])
def test_exp_matches_an_independent_integrator(rng, depth):
    X = _haar(rng, 2) * [1.5, 0.7] @ _haar(rng, 2)
    V = rng.standard_normal((2, 2))
    V *= 1.5 / np.sqrt(depth_inner_product(X, depth, V, V))  # a long geodesic: length 1.5
    np.testing.assert_allclose(depth_exp(X, V, depth), _reference_exp(X, V, depth), atol=1e-8)
    # the fixed-step RK4 option converges to the same point (order 4)
    err = [
        np.abs(depth_exp(X, V, depth, n_steps=n) - _reference_exp(X, V, depth)).max()
        for n in (20, 40)
    ]
    assert err[1] < 1e-5 and 3.0 < np.log2(err[0] / err[1]) < 5.0


def test_exp_batches_broadcast(rng):
    X = _haar(rng, 2) * [1.5, 0.7]
    V = 0.3 * rng.standard_normal((3, 2, 2))
    batch = depth_exp(X, V, 3)
    assert batch.shape == (3, 2, 2)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], depth_exp(X, V[i], 3))
    np.testing.assert_allclose(
        geodesic_acceleration(X, V[0], 3), -depth_christoffel(X, 3, V[0], V[0]), atol=1e-14
    )


# --- the singular set ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "depth, n_steps", [(2, None), (2, 20), (2, 200), (3, None), (4, 10), (1, None)]
)
def test_exp_past_the_singular_set_raises(depth, n_steps):
    """exp_I(diag(0, -c)) is diagonal: sigma_2(t) = (1 - c t/N)^N reaches 0 at t = N/c < 1.

    For even N the ODE solution in X "bounces" (sigma_2 = (1 - ct/N)^2 > 0 again), for odd
    N it crosses det = 0; both are past the end of the geodesic.
    """
    c = 1.25 * depth
    with pytest.raises(SingularGeodesicError, match="singular set"):
        depth_exp(np.eye(2), np.diag([0.0, -c]), depth, n_steps=n_steps)
    # negative control: before the singular set the same geodesic is fine
    got = depth_exp(np.eye(2), np.diag([0.0, -0.75 * depth]), depth, n_steps=n_steps)
    expected = 0.25 if depth == 1 else 0.25**depth
    # RK4 with 10 steps is only accurate to ~1e-2 this close to the singular set
    rtol = 1e-8 if n_steps is None else 1e-2
    np.testing.assert_allclose(got, np.diag([1.0, expected]), rtol=rtol, atol=1e-14)


def test_exp_raises_for_one_bad_geodesic_in_a_batch():
    V = np.stack([np.diag([0.0, -0.5]), np.diag([0.0, -2.5]), np.zeros((2, 2))])
    with pytest.raises(SingularGeodesicError, match=r"batch index \(1,\)"):
        depth_exp(np.eye(2), V, 2)


def test_exp_at_depth_infinity_stays_in_gl():
    """g^inf is complete along the diagonal: exp_I(diag(0, -c)) = diag(1, e^{-c})."""
    got = depth_exp(np.eye(2), np.diag([0.0, -4.5]), np.inf)
    np.testing.assert_allclose(got, np.diag([1.0, np.exp(-4.5)]), rtol=1e-9)


def test_direction_geodesic_past_zero_raises():
    with pytest.raises(SingularGeodesicError):
        direction_geodesic(np.eye(2), 3, -3.0)


# --- log and distance ----------------------------------------------------------------------


def test_issue_pair():
    """Issue 13: before, |exp(log y) - y| = 0.235 and dist(x, y) = 3.216 != dist(y, x) = 3.379."""
    V = depth_log(ISSUE_X, ISSUE_Y, 2)
    np.testing.assert_allclose(depth_exp(ISSUE_X, V, 2), ISSUE_Y, atol=1e-9)
    np.testing.assert_allclose(_reference_exp(ISSUE_X, V, 2), ISSUE_Y, atol=1e-8)
    d_xy, d_yx = depth_distance(ISSUE_X, ISSUE_Y, 2), depth_distance(ISSUE_Y, ISSUE_X, 2)
    assert d_xy == pytest.approx(2.288, abs=1e-3)
    assert d_xy == pytest.approx(d_yx, rel=1e-9)


# Values of the code before the lean evaluation of the geodesic equation (DepthFrame
# reusing the multipliers' pieces, inlined acceleration, leaner right-hand side),
# recorded with its default tolerances: (X, Y, W, depth, log_X Y, exp_X(that log),
# dist(X, Y), transport of W along it, geodesic_acceleration(X, W)). The lean path
# reproduced them bit for bit on the machine that recorded them.
_RECT_X = np.array([[1.2, -0.3, 0.5], [0.4, 0.9, -0.7]])
_RECT_Y = np.array([[-0.8, 0.6, 0.2], [0.5, -0.4, 1.1]])
RECORDED = {
    "2x2 N=3": (
        ISSUE_X,
        ISSUE_Y,
        np.array([[0.3, -1.1], [0.7, 0.2]]),
        3,
        [[0.37938114288919017, 1.7082068693059902], [-2.2154285969960608, -0.3531483634898366]],
        [[-0.7809999999999933, 0.5460000000000127], [-1.0430000000000104, -0.5100000000000062]],
        1.9922697877278897,
        [[1.4331475663452788, 0.3860747245300816], [-0.7136280315488543, 0.6499527845621293]],
        [[-0.38132658118689206, -0.8560186976503811], [0.46595537147405847, -0.4437411787061299]],
    ),
    "2x2 N=inf": (
        ISSUE_X,
        ISSUE_Y,
        np.array([[0.3, -1.1], [0.7, 0.2]]),
        np.inf,
        [[0.9853408279607224, 1.5178781587301613], [-1.9065861118735854, 0.5750209779941529]],
        [[-0.7810000000000052, 0.5460000000000026], [-1.0430000000000048, -0.510000000000004]],
        3.769816768686322,
        [[0.6150950634172059, 0.8502213542700676], [-1.7880233663292342, -0.10841061117847266]],
        [[-0.48555987567873204, -1.3520463715554982], [0.7055926982951046, -0.7588240845285817]],
    ),
    "2x3 N=3": (
        _RECT_X,
        _RECT_Y,
        np.array([[0.3, -1.1, 0.4], [0.7, 0.2, -0.5]]),
        3,
        [
            [-2.280707463715564, -0.8193085265672717, 1.0067833101086867],
            [2.2787379305129463, -2.6356109662175817, 1.2939120737225955],
        ],
        [
            [-0.799999999999998, 0.5999999999999944, 0.20000000000000356],
            [0.499999999999995, -0.39999999999999664, 1.0999999999999968],
        ],
        2.389109740367108,
        [
            [-0.6817388289461337, 0.5645518442910401, 0.3949514530086466],
            [0.3881995124663839, -0.9522503122679006, 0.3817609832626201],
        ],
        [
            [-0.2522726451372228, -0.43245600108755355, 0.397272828480056],
            [0.36003871581429225, -0.3392385258560604, -0.2785195268097553],
        ],
    ),
}


@pytest.mark.parametrize("case", list(RECORDED))
def test_values_recorded_before_the_lean_evaluation(case):
    """exp, log, dist, transport and the acceleration agree with the former code: far pairs
    (continuation), square and 2 x 3, finite N and N = inf. The log is solved once per case:
    by depth_log where N is finite, inside depth_distance at N = inf (which reports only its
    length). On this machine the lean evaluation reproduced every value bit for bit; the
    tolerances allow another BLAS: the acceleration is one formula (1e-12), exp and transport
    are adaptive integrations whose accepted steps may shift with rounding (1e-10), the log
    and dist are Newton solves stopped at tol 1e-10 relative (1e-9)."""
    X, Y, W, depth, log, exp, dist, transport, acc = RECORDED[case]
    if np.isfinite(depth):
        np.testing.assert_allclose(depth_log(X, Y, depth), log, rtol=0, atol=1e-9 * _mx(log))
    else:
        assert depth_distance(X, Y, depth) == pytest.approx(dist, rel=1e-9)
    np.testing.assert_allclose(depth_exp(X, log, depth), exp, rtol=0, atol=1e-10 * _mx(exp))
    P = depth_parallel_transport(X, log, W, depth)
    np.testing.assert_allclose(P, transport, rtol=0, atol=1e-10 * _mx(transport))
    A = geodesic_acceleration(X, W, depth)
    np.testing.assert_allclose(A, acc, rtol=0, atol=1e-12 * _mx(acc))
    # the length of the recorded log is the recorded distance
    assert np.sqrt(depth_inner_product(X, depth, log, log)) == pytest.approx(dist, rel=1e-12)
    # negative control: a perturbation of 1e-8 of the velocity is seen at these tolerances
    moved = depth_exp(X, np.asarray(log) * (1 + 1e-8), depth)
    assert np.abs(moved - exp).max() > 1e-10 * _mx(exp)


def _mx(A) -> float:
    return float(np.abs(np.asarray(A)).max())


def _polar_path_length(X, Y, depth, n=400):
    """g^N length of the polar path from X to Y (midpoint rule): an upper bound for dist."""
    from dln_manifolds.geodesics import _PolarPath

    path = _PolarPath(X[None], Y[None])
    tau = np.linspace(0.0, 1.0, n + 1)
    P = np.stack([path(np.array([t]), np.array([0]))[0] for t in tau])
    mids, steps = 0.5 * (P[1:] + P[:-1]), P[1:] - P[:-1]
    return sum(
        np.sqrt(depth_inner_product(m, depth, s, s)) for m, s in zip(mids, steps, strict=True)
    )


@pytest.mark.parametrize(
    "d, depth, n_pairs",
    [
        (2, 2, 4),
        (2, np.inf, 3),
        (3, 3, 3),
        pytest.param(2, 3, 20, marks=pytest.mark.slow),
        pytest.param(3, 2, 20, marks=pytest.mark.slow),
        pytest.param(3, np.inf, 20, marks=pytest.mark.slow),
    ],
)
def test_log_round_trip_on_random_pairs(d, depth, n_pairs):
    """Random pairs of the same component, as geomstats samples them (far ones included)."""
    rng = np.random.default_rng(10 * d + (7 if np.isinf(depth) else depth))
    X, Y = _random_pairs(rng, d, n_pairs)
    V = depth_log(X, Y, depth)
    np.testing.assert_allclose(depth_exp(X, V, depth), Y, rtol=0, atol=1e-8)
    W = depth_log(Y, X, depth)
    np.testing.assert_allclose(depth_exp(Y, W, depth), X, rtol=0, atol=1e-8)
    dist = np.sqrt(depth_inner_product(X[0], depth, V[0], V[0]))
    assert dist == pytest.approx(np.sqrt(depth_inner_product(Y[0], depth, W[0], W[0])), rel=1e-8)
    # the geodesic is at most as long as one explicit curve joining the points
    assert dist <= _polar_path_length(X[0], Y[0], depth) * (1 + 1e-6)
    # and the two directions are the same geodesic: W is minus the final velocity of V's
    for k in range(n_pairs):
        ends = depth_exp(X[k], np.array([0.999, 1.0])[:, None, None] * V[k], depth)
        np.testing.assert_allclose(
            -(ends[1] - ends[0]) / 1e-3, W[k], rtol=0, atol=5e-3 * np.abs(W[k]).max()
        )


def _length(X, V, depth):
    return float(np.sqrt(depth_inner_product(X, depth, V, V)))


@pytest.mark.slow
def test_log_is_the_shortest_geodesic_found(monkeypatch):
    """The polar path alone leads to a longer geodesic for this pair; the log keeps the
    shortest of the solves from both ends and along both branches (about 4 s)."""
    X, Y = BRANCH_X, BRANCH_Y
    V = depth_log(X, Y, 3)
    np.testing.assert_allclose(depth_exp(X, V, 3), Y, rtol=0, atol=1e-8)
    d_xy = _length(X, V, 3)
    assert d_xy == pytest.approx(4.0496, abs=1e-3)
    assert d_xy == pytest.approx(depth_distance(Y, X, 3), rel=1e-9)
    # negative control: the one-sided polar-path solve finds a longer geodesic joining them
    monkeypatch.setattr(geodesics, "_TWO_SIDED", False)
    W = depth_log(X, Y, 3)
    np.testing.assert_allclose(depth_exp(X, W, 3), Y, rtol=0, atol=1e-8)
    assert _length(X, W, 3) == pytest.approx(4.0735, abs=1e-3)
    assert d_xy < 0.995 * _length(X, W, 3)


def test_log_near_a_half_turn_is_symmetric_and_no_longer(monkeypatch):
    """A far 2 x 2 pair whose polar rotation turns by more than 0.9 pi (both branches and
    both ends solved): dist(X, Y) = dist(Y, X), and no longer than the polar-path solve
    (about 1 s)."""
    c, s = np.cos(0.95 * np.pi), np.sin(0.95 * np.pi)
    X = np.array([[1.3, 0.2], [0.1, 0.6]])
    Y = np.array([[c, -s], [s, c]]) @ np.array([[0.8, -0.1], [0.0, 1.2]])
    assert np.linalg.det(X) * np.linalg.det(Y) > 0
    assert geodesics._max_angle(X[None], Y[None])[0] > geodesics._BRANCH_ANGLE
    V = depth_log(X, Y, 2)
    np.testing.assert_allclose(depth_exp(X, V, 2), Y, rtol=0, atol=1e-8)
    d_xy = _length(X, V, 2)
    assert d_xy == pytest.approx(depth_distance(Y, X, 2), rel=1e-9)
    monkeypatch.setattr(geodesics, "_TWO_SIDED", False)
    assert d_xy <= _length(X, depth_log(X, Y, 2), 2) * (1 + 1e-9)


def test_log_of_exp_is_the_initial_velocity(rng):
    X = _haar(rng, 3) * [1.6, 1.0, 0.7] @ _haar(rng, 3)
    V = rng.standard_normal((4, 3, 3))
    V *= 0.6 / np.sqrt(depth_inner_product(X, 3, V, V))[:, None, None]
    np.testing.assert_allclose(depth_log(X, depth_exp(X, V, 3), 3), V, atol=1e-8)
    np.testing.assert_array_equal(depth_log(X, X, 3), np.zeros((3, 3)))


def test_depth_one_is_euclidean(rng):
    X = np.eye(2) + 0.1 * rng.standard_normal((2, 2))
    Y = X + rng.standard_normal((2, 2)) * 0.3
    np.testing.assert_allclose(depth_log(X, Y, 1), Y - X, atol=1e-15)
    assert depth_distance(X, Y, 1) == pytest.approx(np.linalg.norm(Y - X), rel=1e-14)
    # random far pairs: the segment is a geodesic iff X^{-1} Y has no real eigenvalue <= 0
    Xs, Ys = _random_pairs(np.random.default_rng(2), 2, 12)  # 2 of 12 cross det = 0
    for X, Y in zip(Xs, Ys, strict=True):
        lam = np.linalg.eigvals(np.linalg.solve(X, Y))
        if np.any((np.abs(lam.imag) < 1e-12) & (lam.real <= 0)):
            with pytest.raises(SingularGeodesicError):
                depth_log(X, Y, 1)
        else:
            np.testing.assert_allclose(depth_exp(X, depth_log(X, Y, 1), 1), Y, atol=1e-14)
    # I and -I are in the same component, but the segment between them crosses X = 0
    with pytest.raises(SingularGeodesicError, match="crosses the singular set"):
        depth_log(np.eye(2), -np.eye(2), 1)


@pytest.mark.parametrize("depth", DEPTHS)
def test_different_components(depth):
    """dist(I, diag(1, -1)) was 1.77 on (M_2, g^2); no curve in GL(2) joins the two points."""
    X, Y = np.eye(2), np.diag([1.0, -1.0])
    with pytest.raises(DifferentComponentsError, match="different components"):
        depth_log(X, Y, depth)
    assert issubclass(DifferentComponentsError, ValueError)
    assert depth_distance(X, Y, depth) == np.inf
    both = depth_distance(np.stack([X, X]), np.stack([Y, 2.0 * X]), depth)
    assert both[0] == np.inf and np.isfinite(both[1])


def test_log_of_a_singular_point_raises():
    with pytest.raises(ValueError, match="Y is rank-deficient"):
        depth_log(np.eye(2), np.diag([1.0, 0.0]), 2)
    with pytest.raises(ValueError, match="X is rank-deficient"):
        depth_exp(np.zeros((2, 2)), np.eye(2), 2)


def test_log_failure_is_an_error():
    """A budget of one Newton round cannot reach a far point: an error, not a wrong vector."""
    with pytest.raises(LogConvergenceError):
        depth_log(ISSUE_X, ISSUE_Y, 2, max_iter=1)
    assert issubclass(LogConvergenceError, GeodesicError)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: depth_exp(np.eye(2), np.eye(3), 2), ValueError, "V must have shape"),
        (lambda: depth_exp(np.eye(2), np.eye(2) + 0j, 2), TypeError, "V must be real"),
        (lambda: depth_exp(np.eye(2), np.eye(2), 0), ValueError, "depth"),
        (lambda: depth_exp(np.eye(2), np.eye(2), 2, rtol=-1.0), ValueError, "rtol"),
        (lambda: depth_exp(np.eye(2), np.eye(2), 2, n_steps=0), ValueError, "n_steps"),
        (lambda: depth_log(np.eye(2), "a", 2), TypeError, "Y"),
        # a non-square X is a point (tests/test_geodesics_rectangular.py): shapes must match
        (lambda: depth_log(np.ones((2, 3)), np.eye(2), 2), ValueError, "Y must have shape"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
