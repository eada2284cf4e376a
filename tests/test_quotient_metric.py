"""The quotient metric of M -> (M_d, g^N): log, distance and transport through horizontal lifts.

Core: horizontal_log, orbit_distance, horizontal_parallel_transport (dln_manifolds.alignment);
adapter: BalancedQuotientMetric (geomstats' QuotientMetric, BalancedManifold.equip_with_quotient).
Checked against closed forms on the diagonal (straight horizontal lines upstairs), against the
downstairs quantities of DepthMetric, and against the geometry upstairs (the end of the
horizontal geodesic lies on the target's orbit, horizontality, isometry). Negative controls:
the total-space log between unaligned points and the Levi-Civita transport of M are not
horizontal, and fail the d(phi) checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import dln_manifolds as dm
from dln_manifolds import (
    DifferentComponentsError,
    balanced_point,
    end_to_end,
    end_to_end_differential,
    group_action,
    horizontal_lift,
    horizontal_log,
    horizontal_parallel_transport,
    orbit_distance,
    random_balanced_point,
    vertical_projection,
)
from dln_manifolds.submanifold_geodesics import (
    balanced_exp,
    balanced_log,
    balanced_parallel_transport,
)


def _norm(A) -> np.ndarray:
    return np.sqrt(np.sum(np.asarray(A) ** 2, axis=(-3, -2, -1)))


def _orthogonal(rng, shape, d) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal(shape + (d, d)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., None, :]


def _near_pairs(d, N, seed, n=1, scale=0.4):
    """Balanced W, and T on the orbit over exp_X(Z) (random rotations): log_X phi(T) = Z."""
    rng = np.random.default_rng(seed)
    W = np.stack([random_balanced_point(d, N, seed=seed + 17 * k) for k in range(n)])
    X = end_to_end(W)
    G = rng.standard_normal((n, d, d))
    Z = (
        scale
        * G
        * (np.linalg.norm(X, axis=(-2, -1)) / np.linalg.norm(G, axis=(-2, -1)))[:, None, None]
    )
    Y = dm.depth_exp(X, Z, N)
    T = dm.orbit_action(_orthogonal(rng, (n, N - 1), d), balanced_point(Y, N))
    return W, T, Z


# --- closed form: on the diagonal the horizontal geodesic is a straight line -------------


def _diagonal_point(Q, r, P, N):
    """Layers diag(r) P^T, diag(r), ..., Q diag(r) (balanced, end-to-end Q diag(r^N) P^T)."""
    if N == 1:
        return (Q @ np.diag(r) @ P.T)[None]
    layers = [np.diag(r) @ P.T] + [np.diag(r)] * (N - 2) + [Q @ np.diag(r)]
    return np.stack(layers)


@pytest.mark.parametrize(("d", "N"), [(2, 1), (2, 2), (2, 3), (3, 2), (3, 4)])
def test_horizontal_log_closed_form_on_the_diagonal(d, N):
    """W = (diag(r) P^T, diag(r), ..., Q diag(r)) and T on the orbit of the same with r':
    the straight line W + H with H = (diag(r' - r) P^T, diag(r' - r), ..., Q diag(r' - r))
    stays in M, is horizontal and ends over phi(T), so it is the horizontal geodesic to the
    orbit of T, and the distance between the orbits is sqrt(N) |r' - r|."""
    rng = np.random.default_rng(10 * d + N)
    Q, P = _orthogonal(rng, (), d), _orthogonal(rng, (), d)
    r, r1 = rng.uniform(0.7, 1.4, d), rng.uniform(0.7, 1.4, d)
    W = _diagonal_point(Q, r, P, N)
    T = _diagonal_point(Q, r1, P, N)
    if N > 1:
        T = dm.orbit_action(_orthogonal(rng, (N - 1,), d), T)
    expected = _diagonal_point(Q, r1 - r, P, N)

    H = horizontal_log(W, T)
    np.testing.assert_allclose(H, expected, atol=1e-9)
    np.testing.assert_allclose(orbit_distance(W, T), np.sqrt(N) * np.linalg.norm(r1 - r), rtol=1e-9)
    np.testing.assert_allclose(end_to_end(W + H), end_to_end(T), atol=1e-9)
    np.testing.assert_allclose(dm.balance_error(W + H), 0.0, atol=1e-12)
    # negative controls: T itself (not aligned) is farther than its orbit, and for N > 2
    # the chord to it leaves M
    if N > 1:
        assert np.linalg.norm(T - W) > np.linalg.norm(H) + 1e-2
    if N > 2:
        assert dm.balance_error(W + 0.5 * (T - W)) > 1e-3


# --- the log: d(phi) of it is the log downstairs, and it is horizontal ------------------


@pytest.mark.parametrize(("d", "N", "seed"), [(2, 2, 0), (2, 3, 1), (3, 2, 2)])
def test_horizontal_log_pushes_forward_to_the_depth_log(d, N, seed):
    W, T, Z = _near_pairs(d, N, seed, n=1)
    H = horizontal_log(W, T)
    # d(phi)(H) is log_X(Y) (Z by construction, to the tolerance of the shooting)
    np.testing.assert_allclose(end_to_end_differential(W, H), Z, atol=1e-8)
    np.testing.assert_allclose(
        end_to_end_differential(W, H), dm.depth_log(end_to_end(W), end_to_end(T), N), atol=1e-12
    )
    # horizontal, and isometric: |H|_F^2 = g^N(Z, Z)
    assert np.max(_norm(vertical_projection(W, H))) < 1e-12 * np.max(_norm(H))
    np.testing.assert_allclose(H, horizontal_lift(W, Z), atol=1e-8)
    frame = dm.DepthFrame(end_to_end(W), N)
    np.testing.assert_allclose(_norm(H) ** 2, frame.inner(Z, Z), rtol=1e-8)


def test_total_space_log_of_unaligned_points_fails_the_dphi_test():
    """Negative control: the log of M from W to T itself (shooting upstairs, T not aligned)
    reaches T but has a vertical part, so d(phi) of it is not the depth log and it is longer
    than the horizontal log."""
    W, T, Z = _near_pairs(2, 3, 5, n=1, scale=0.3)
    W, T, Z = W[0], T[0], Z[0]
    V = balanced_log(W, T)
    np.testing.assert_allclose(balanced_exp(W, V), T, atol=1e-8)  # a genuine log of M
    assert np.linalg.norm(end_to_end_differential(W, V) - Z) > 1e-2 * np.linalg.norm(Z)
    assert _norm(vertical_projection(W, V)) > 1e-2 * _norm(V)
    assert _norm(V) > _norm(horizontal_log(W, T)) + 1e-3  # the orbit is nearer than T


@pytest.mark.parametrize(("d", "N", "seed"), [(2, 2, 3), (2, 3, 4), (3, 2, 6)])
def test_exp_of_horizontal_log_lies_on_the_orbit_of_t(d, N, seed):
    """exp_W(log_W T) is on the orbit of T (phi equal) to the RK4 error, order 4 in the
    steps, and it is the geodesic alignment of T to W."""
    W, T, _ = _near_pairs(d, N, seed, n=1)
    H = horizontal_log(W, T)
    errors = [np.max(np.abs(end_to_end(balanced_exp(W, H, n)) - end_to_end(T))) for n in (10, 20)]
    assert errors[1] < 1e-6
    assert errors[0] / errors[1] > 8  # order 4: ratio 16 in exact arithmetic
    np.testing.assert_allclose(balanced_exp(W, H, 20), dm.geodesic_orbit_alignment(T, W), atol=1e-5)


# --- the distance -------------------------------------------------------------------------


def test_orbit_distance_is_the_depth_metric_distance_and_inf_across_components():
    from dln_manifolds.geomstats import EndToEndMatrices

    W, T, _ = _near_pairs(2, 3, 7, n=2)
    flip = np.diag([-1.0, 1.0])
    T_other = T.copy()
    T_other[:, -1] = flip @ T[:, -1]  # det of phi flips: the other component
    T_mixed = np.stack([T[0], T_other[1]])
    dist = orbit_distance(W, T_mixed)
    space = EndToEndMatrices(2, 3)
    expected = space.metric.dist(
        space.to_vector(end_to_end(W)), space.to_vector(end_to_end(T_mixed))
    )
    assert np.isinf(dist[1]) and np.isinf(expected[1])
    np.testing.assert_allclose(dist[0], expected[0], rtol=1e-10)
    one = orbit_distance(W[0], T[0])
    assert isinstance(one, float)
    np.testing.assert_allclose(one, expected[0], rtol=1e-10)
    with pytest.raises(DifferentComponentsError, match="phi"):
        horizontal_log(W, T_mixed)


# --- the transport --------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "N", "seed"), [(2, 2, 8), (2, 3, 9), (3, 2, 10)])
def test_transport_is_horizontal_isometric_and_matches_the_depth_transport(d, N, seed):
    rng = np.random.default_rng(seed)
    W = np.stack([random_balanced_point(d, N, seed=seed + k) for k in range(2)])
    X = end_to_end(W)
    Zv = 0.3 * rng.standard_normal((2, d, d))
    Zu = rng.standard_normal((2, 2, d, d))
    V = horizontal_lift(W, Zv)
    U = np.stack([horizontal_lift(W, Zu[0]), horizontal_lift(W, Zu[1]), V])  # (3, 2, N, d, d)
    U1, W1 = horizontal_parallel_transport(W, V, U, return_end_point=True)  # broadcast
    W1 = W1[0]

    # the end point: exactly over exp_X(Zv), within the RK4 error of the horizontal geodesic
    np.testing.assert_allclose(end_to_end(W1), dm.depth_exp(X, Zv, N), atol=1e-12)
    np.testing.assert_allclose(W1, balanced_exp(W, V, 20), atol=1e-5)
    # horizontal at the end point, pushes forward to the transport downstairs
    assert np.max(_norm(vertical_projection(W1, U1[0]))) < 1e-12 * np.max(_norm(U1[0]))
    np.testing.assert_allclose(
        end_to_end_differential(W1, U1[0]),
        dm.depth_parallel_transport(X, Zv, Zu[0], N),
        atol=1e-12,
    )
    # isometric (Frobenius upstairs): norms and inner products kept
    np.testing.assert_allclose(_norm(U1), _norm(U), rtol=1e-8)
    np.testing.assert_allclose(
        np.sum(U1[0] * U1[1], axis=(-3, -2, -1)), np.sum(U[0] * U[1], axis=(-3, -2, -1)), rtol=1e-7
    )
    # the velocity is transported to the velocity of the horizontal geodesic
    _, velocity = balanced_exp(W, V, 40, velocity=True)
    np.testing.assert_allclose(U1[2], velocity, atol=1e-6)
    # negative control: the Levi-Civita transport of M leaves the horizontal space
    P = balanced_parallel_transport(W, V, U[0])
    assert np.max(_norm(vertical_projection(W1, P))) > 1e-2 * np.max(_norm(U[0]))


def test_transport_diagonal_closed_form():
    """Diagonal X, V, W (the totally geodesic flat diagonal): the g^N transport is
    W_k (|x_k(1)| / |x_k(0)|)^(1 - 1/N), lifted at the end of the straight horizontal line."""
    N, s, v, w = 3, np.array([1.5, 0.7]), np.array([0.4, -0.2]), np.array([1.0, 2.0])
    W = balanced_point(np.diag(s), N)
    V, U = horizontal_lift(W, np.diag(v)), horizontal_lift(W, np.diag(w))
    U1, W1 = horizontal_parallel_transport(W, V, U, return_end_point=True)
    np.testing.assert_allclose(W1, W + V, atol=1e-10)  # V_p = diag(dr): the straight line
    x1 = np.diagonal(end_to_end(W + V))
    np.testing.assert_allclose(
        end_to_end_differential(W1, U1), np.diag(w * (x1 / s) ** (1 - 1 / N)), atol=1e-9
    )


# --- the geomstats adapter ----------------------------------------------------------------


@pytest.fixture(scope="module")
def spaces():
    from dln_manifolds.geomstats import BalancedManifold, EndToEndMatrices

    total = BalancedManifold(2, 3)
    return total, total.equip_with_quotient(), EndToEndMatrices(2, 3)


def test_quotient_log_dist_are_the_depth_metric_ones(spaces):
    total, quotient, space = spaces
    W, T, Z = _near_pairs(2, 3, 11, n=2)
    x, y = space.to_vector(end_to_end(W)), space.to_vector(end_to_end(T))
    log = quotient.metric.log(y, x)
    np.testing.assert_allclose(log, space.to_vector(Z), atol=1e-8)
    np.testing.assert_allclose(log, space.metric.log(y, x), atol=1e-12)
    # negative control: d(phi) of the total-space log between the (unaligned) lifts is not it
    bundle = total.fiber_bundle
    Wx, Wy = bundle.lift(x[0]), bundle.lift(y[0])
    V = balanced_log(Wx, Wy)
    assert np.linalg.norm(bundle.tangent_riemannian_submersion(V, Wx) - log[0]) > 1e-2
    # dist = |log| in g^N (DepthMetric's norm), squared_dist its square
    norm = space.metric.norm(log, x)
    np.testing.assert_allclose(quotient.metric.dist(x, y), norm, rtol=1e-10)
    np.testing.assert_allclose(quotient.metric.squared_dist(x[0], y[0]), norm[0] ** 2, rtol=1e-10)
    # exp(log) is back on y to the RK4 error of the horizontal geodesic (20 steps)
    np.testing.assert_allclose(quotient.metric.exp(log, x), y, atol=1e-6)
    # batches: the same as one point at a time
    np.testing.assert_allclose(quotient.metric.log(y[1], x[1]), log[1], atol=1e-12)


def test_quotient_components(spaces):
    _, quotient, space = spaces
    x = space.to_vector(np.array([[1.0, 0.2], [0.1, 1.5]]))
    y = space.to_vector(np.array([[-1.0, 0.3], [0.2, 1.2]]))
    assert np.isinf(quotient.metric.dist(x, y))
    with pytest.raises(DifferentComponentsError, match="base_point and point"):
        quotient.metric.log(y, x)


def test_quotient_transport_is_the_depth_metric_transport(spaces):
    _, quotient, space = spaces
    rng = np.random.default_rng(12)
    x = space.to_vector(end_to_end(np.stack([random_balanced_point(2, 3, seed=k) for k in (1, 2)])))
    u, w = rng.standard_normal((2, 2, 4))
    w = 0.2 * w
    out = quotient.metric.parallel_transport(u, x, direction=w)
    np.testing.assert_allclose(out, space.metric.parallel_transport(u, x, direction=w), atol=1e-12)
    end = quotient.metric.exp(w, x)
    np.testing.assert_allclose(
        quotient.metric.norm(out, end), quotient.metric.norm(u, x), rtol=1e-8
    )
    # one base point against a batch of vectors (geomstats' vectorization)
    np.testing.assert_allclose(
        quotient.metric.parallel_transport(u, x[0], direction=w[0]),
        quotient.metric.parallel_transport(u, np.stack([x[0]] * 2), direction=w[0]),
        atol=1e-14,
    )
    y = quotient.metric.exp(w, x)
    np.testing.assert_allclose(
        quotient.metric.parallel_transport(u, x, end_point=y), out, atol=1e-6
    )
    with pytest.raises(ValueError, match="exactly one"):
        quotient.metric.parallel_transport(u, x)


def test_quotient_geodesic_to_an_end_point(spaces):
    _, quotient, space = spaces
    W, T, _ = _near_pairs(2, 3, 13, n=1)
    x, y = space.to_vector(end_to_end(W[0])), space.to_vector(end_to_end(T[0]))
    path = quotient.metric.geodesic(x, end_point=y)
    ends = path(np.array([0.0, 1.0]))
    np.testing.assert_allclose(ends[0], x, atol=1e-12)
    np.testing.assert_allclose(ends[1], y, atol=1e-6)
    mid = path(0.5)[0]
    expected = space.metric.exp(0.5 * space.metric.log(y, x), x)
    np.testing.assert_allclose(mid, expected, atol=1e-6)


# --- bad input ------------------------------------------------------------------------------


def test_bad_arguments_name_the_argument():
    W, T, Z = _near_pairs(2, 2, 14, n=1)
    W, T = W[0], T[0]
    V = horizontal_lift(W, Z[0])
    with pytest.raises(ValueError, match=r"\bT must be full-rank balanced"):
        horizontal_log(W, T + 0.1)
    with pytest.raises(ValueError, match=r"\bW must be full-rank balanced"):
        orbit_distance(W + 0.1, T)
    R = np.array([[[0.0, -1.0], [1.0, 0.0]]])
    not_horizontal = V + 0.1 * (group_action(scipy.linalg.expm(0.1 * R[0])[None], W) - W)
    with pytest.raises(ValueError, match=r"\bU must be horizontal"):
        horizontal_parallel_transport(W, V, not_horizontal)
    with pytest.raises(ValueError, match=r"\bV must be horizontal"):
        horizontal_parallel_transport(W, not_horizontal, V)
    with pytest.raises(ValueError, match="do not broadcast"):
        horizontal_log(np.stack([W, W]), np.stack([T, T, T]))
    with pytest.raises(TypeError, match="return_end_point"):
        horizontal_parallel_transport(W, V, V, return_end_point=1)


def test_quotient_metric_matrix_is_the_depth_metric_matrix(spaces):
    """Gram matrix of the horizontal lifts = the g^N matrix (DepthMetric's closed form)."""
    _, quotient, space = spaces
    x = space.to_vector(end_to_end(np.stack([random_balanced_point(2, 3, seed=k) for k in (3, 4)])))
    G = quotient.metric.metric_matrix(x)
    np.testing.assert_allclose(G, space.metric.metric_matrix(x), atol=1e-12)
    np.testing.assert_allclose(quotient.metric.metric_matrix(x[1]), G[1], atol=1e-14)
    u, v = np.random.default_rng(15).standard_normal((2, 4))
    np.testing.assert_allclose(u @ G[0] @ v, quotient.metric.inner_product(u, v, x[0]), rtol=1e-12)


def test_frechet_mean_on_the_quotient(spaces):
    """geomstats' FrechetMean runs on the quotient (log and exp) and finds DepthMetric's mean;
    negative control: the Euclidean mean of the points differs."""
    from geomstats.learning.frechet_mean import FrechetMean

    _, quotient, space = spaces
    rng = np.random.default_rng(16)
    points = np.array([1.0, 0.2, 0.1, 1.5]) + 0.2 * rng.standard_normal((4, 4))
    mean = FrechetMean(quotient).fit(points).estimate_
    expected = FrechetMean(space).fit(points).estimate_
    np.testing.assert_allclose(mean, expected, atol=1e-8)
    assert np.abs(mean - points.mean(axis=0)).max() > 1e-3
