"""Parallel transport on (M_d, g^N) (dln_manifolds.geodesics.depth_parallel_transport).

Checked for isometry, against the closed form on diagonal geodesics, against an
independent integrator (scipy's DOP853 on the core Christoffel term), against
the geodesic velocity (transport of the initial velocity), and with negative
controls (no connection term, the wrong sign of the connection, a wrong exponent
in the closed form).

Closed form on the diagonal. For diagonal X the isometries X -> D X D
(D = diag(+-1)) fix the diagonal matrices, a totally geodesic submanifold on which
g^N = sum_k dx_k^2 / (N |x_k|^{2q}), q = 1 - 1/N ([G] eq. 7.14). Per entry the
Christoffel symbol is Gamma^k_kk = (1/2) g_kk^{-1} d g_kk / dx_k = -q / x_k, so the
transport of a diagonal W along a diagonal geodesic solves dw_k/dt = q (x_k'/x_k) w_k:
w_k(t) = w_k(0) (|x_k(t)| / |x_k(0)|)^q (q = 1 for N = inf). The geodesic itself is
affine in the flat coordinate r_k = sign(x_k) |x_k|^{1/N} (log|x_k| for N = inf).
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dln_manifolds.depth_metric import depth_christoffel, depth_inner_product
from dln_manifolds.geodesics import (
    SingularGeodesicError,
    depth_exp,
    depth_parallel_transport,
)

DEPTHS = [2, 3, np.inf]


def _point(rng, d):
    return np.eye(d) + 0.3 * rng.standard_normal((d, d))


def _inner(X, depth, A, B):
    return np.array([depth_inner_product(x, depth, a, b) for x, a, b in zip(X, A, B, strict=True)])


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("d", [2, 3])
def test_transport_is_an_isometry(depth, d):
    rng = np.random.default_rng(10 * d + (9 if np.isinf(depth) else depth))
    B = 4
    X = np.stack([_point(rng, d) for _ in range(B)])
    V = 0.2 * rng.standard_normal((B, d, d))
    W, W2 = rng.standard_normal((2, B, d, d))
    T = depth_parallel_transport(X[:, None], V[:, None], np.stack([W, W2], axis=1), depth)
    X1 = depth_exp(X, V, depth)
    for a, b, ta, tb in [(W, W, 0, 0), (W, W2, 0, 1), (W2, W2, 1, 1)]:
        before = _inner(X, depth, a, b)
        after = _inner(X1, depth, T[:, ta], T[:, tb])
        np.testing.assert_allclose(after, before, rtol=1e-8, atol=1e-9)
    # negative control: the vectors left unchanged (no connection term) are not isometric
    moved = _inner(X1, depth, W, W)
    assert np.max(np.abs(moved - _inner(X, depth, W, W))) > 1e-2


def _diagonal_geodesic(x, v, depth):
    """Closed-form end point of the diagonal geodesic (module docstring)."""
    if np.isinf(depth):
        return x * np.exp(v / x)
    r = np.sign(x) * np.abs(x) ** (1.0 / depth)
    r1 = r + v / (depth * np.abs(x) ** (1.0 - 1.0 / depth))
    return np.sign(r1) * np.abs(r1) ** depth


@pytest.mark.parametrize("depth", [1, 2, 3, 5, np.inf])
def test_diagonal_closed_form(depth):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 2.0, 3) * np.array([1.0, -1.0, 1.0])  # both signs of entries
    v = rng.uniform(-0.5, 0.5, 3) * np.abs(x)
    w = rng.standard_normal(3)
    x1 = _diagonal_geodesic(x, v, depth)
    np.testing.assert_allclose(depth_exp(np.diag(x), np.diag(v), depth), np.diag(x1), atol=1e-9)
    q = 1.0 if np.isinf(depth) else 1.0 - 1.0 / depth
    expected = w * (np.abs(x1) / np.abs(x)) ** q
    got = depth_parallel_transport(np.diag(x), np.diag(v), np.diag(w), depth)
    np.testing.assert_allclose(got, np.diag(expected), rtol=1e-9, atol=1e-10)
    if depth > 1:
        # negative control: the exponent of the flat metric (q = 1 - 1/N) matters
        wrong = w * (np.abs(x1) / np.abs(x)) ** (q + 0.1)
        assert np.max(np.abs(np.diag(got) - wrong)) > 1e-3


@pytest.mark.parametrize("depth", DEPTHS)
def test_transport_of_the_velocity_is_the_velocity(depth):
    rng = np.random.default_rng(5)
    X, V = _point(rng, 3), 0.6 * rng.standard_normal((3, 3))
    T = depth_parallel_transport(X, V, V, depth)
    # exp_X(sV) is the geodesic at time s: its velocity at s = 1 by central differences
    h = 1e-4
    vel = (depth_exp(X, (1 + h) * V, depth) - depth_exp(X, (1 - h) * V, depth)) / (2 * h)
    np.testing.assert_allclose(T, vel, atol=1e-7 * np.abs(V).max())
    assert np.max(np.abs(T - V)) > 1e-2  # the velocity does change along the geodesic


def _scipy_transport(X, V, W, depth, sign=1.0):
    d = X.shape[0]

    def rhs(_, y):
        x, v, w = y.reshape(3, d, d)
        acc = -depth_christoffel(x, depth, v, v)
        dw = -sign * depth_christoffel(x, depth, v, w)
        return np.concatenate([v.ravel(), acc.ravel(), dw.ravel()])

    y0 = np.concatenate([X.ravel(), V.ravel(), W.ravel()])
    sol = solve_ivp(rhs, (0.0, 1.0), y0, method="DOP853", rtol=1e-12, atol=1e-13)
    return sol.y[:, -1].reshape(3, d, d)


@pytest.mark.parametrize("depth", [2, np.inf])
def test_matches_an_independent_integrator(depth):
    rng = np.random.default_rng(7)
    X, V, W = _point(rng, 2), 0.5 * rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    ref = _scipy_transport(X, V, W, depth)[2]
    np.testing.assert_allclose(depth_parallel_transport(X, V, W, depth), ref, atol=1e-9)
    # negative control: the connection term with the wrong sign is not an isometry
    X1, _, bad = _scipy_transport(X, V, W, depth, sign=-1.0)
    g0 = depth_inner_product(X, depth, W, W)
    assert abs(depth_inner_product(X1, depth, bad, bad) - g0) > 1e-2 * g0


def test_depth_one_is_the_identity():
    rng = np.random.default_rng(2)
    X, V, W = _point(rng, 3), 0.2 * rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    np.testing.assert_array_equal(depth_parallel_transport(X, V, W, 1), W)
    with pytest.raises(SingularGeodesicError):
        depth_parallel_transport(np.eye(2), -2.0 * np.eye(2), W[:2, :2], 1)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_singular_geodesic_raises(depth):
    # exp_I(-t c I) = (1 - c t / N)^N I reaches 0 at t = N / c < 1
    c = 1.5 * depth
    with pytest.raises(SingularGeodesicError, match="V"):
        depth_parallel_transport(np.eye(2), -c * np.eye(2), np.ones((2, 2)), depth)


def test_broadcasting_and_input_unchanged():
    rng = np.random.default_rng(4)
    X, V = _point(rng, 2), 0.3 * rng.standard_normal((2, 2))
    W = rng.standard_normal((5, 2, 2))
    copies = (X.copy(), V.copy(), W.copy())
    T = depth_parallel_transport(X, V, W, 3)
    assert T.shape == (5, 2, 2)
    for k in range(5):
        np.testing.assert_allclose(T[k], depth_parallel_transport(X, V, W[k], 3), atol=1e-9)
    # linear in W
    np.testing.assert_allclose(
        depth_parallel_transport(X, V, W[0] + 2 * W[1], 3), T[0] + 2 * T[1], atol=1e-9
    )
    for a, b in zip((X, V, W), copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_geomstats_parallel_transport():
    pytest.importorskip("geomstats")
    from dln_manifolds.geomstats import EndToEndMatrices

    space = EndToEndMatrices(2, 3)
    metric = space.metric
    rng = np.random.default_rng(8)
    x = space.to_vector(np.stack([_point(rng, 2) for _ in range(3)]))
    v = 0.3 * rng.standard_normal((3, 4))
    w = rng.standard_normal((3, 4))
    t = metric.parallel_transport(w, x, direction=v)
    y = metric.exp(v, x)
    np.testing.assert_allclose(metric.norm(t, y), metric.norm(w, x), rtol=1e-9)
    np.testing.assert_allclose(metric.parallel_transport(w, x, end_point=y), t, atol=1e-8)
    with pytest.raises(ValueError, match="exactly one"):
        metric.parallel_transport(w, x)
