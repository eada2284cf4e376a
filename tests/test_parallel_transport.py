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


# ---------------------------------------------------------------------------------------------
# The induced (Frobenius) metrics of the balanced manifold M and of the fibers F_X
# (dln_manifolds.submanifold_geodesics.balanced_parallel_transport / fiber_parallel_transport).
#
# A field U(t) tangent along a curve of an embedded submanifold is parallel iff dU/dt is
# normal, i.e. U' = (d/dt P_gamma(t)) U. Independent reference: the projection ladder
# U_{k+1} = P_{gamma(t_{k+1})} U_k along m points of the geodesic, which converges to the
# transport at first order in 1/m (Richardson: 2 L_{2m} - L_m, second order). The ladder with
# m = n_steps is also the negative control "the normal term dropped, projection kept".
# ---------------------------------------------------------------------------------------------

from dln_manifolds.balanced import balanced_tangent_projection, random_balanced_point  # noqa: E402
from dln_manifolds.fiber import (  # noqa: E402
    fiber_retraction,
    fiber_tangent_projection,
)
from dln_manifolds.network import balanced_point  # noqa: E402
from dln_manifolds.submanifold_geodesics import (  # noqa: E402
    balanced_exp,
    balanced_parallel_transport,
    fiber_exp,
    fiber_parallel_transport,
)


def _scaled(V, W, size):
    return V * (size * np.linalg.norm(W) / np.linalg.norm(V))


def _balanced_case(d, N, seed, size=0.4):
    rng = np.random.default_rng(seed)
    W = random_balanced_point(d, N, rng)

    def P(Z, base=W):
        return balanced_tangent_projection(base, Z)

    V = _scaled(P(rng.standard_normal(W.shape)), W, size)
    U1, U2 = (P(rng.standard_normal(W.shape)) for _ in range(2))
    transport = balanced_parallel_transport

    def exp(W_, V_, n, velocity=False):
        return balanced_exp(W_, V_, n, velocity=velocity)

    return W, V, U1, U2, P, transport, exp


def _fiber_case(d, N, seed, size=0.4, cplx=False):
    rng = np.random.default_rng(seed)

    def rand(shape):
        Z = rng.standard_normal(shape)
        return Z + 1j * rng.standard_normal(shape) if cplx else Z

    X = rand((d, d))
    C = balanced_point(X, N)
    W = fiber_retraction(C, 0.3 * fiber_tangent_projection(C, rand(C.shape)), X=X)

    def P(Z, base=W):
        return fiber_tangent_projection(base, Z)

    V = _scaled(P(rand(W.shape)), W, size)
    U1, U2 = (P(rand(W.shape)) for _ in range(2))

    def transport(W_, V_, U_, n_steps):
        return fiber_parallel_transport(W_, V_, U_, X=X, n_steps=n_steps)

    def exp(W_, V_, n, velocity=False):
        return fiber_exp(W_, V_, X, n, velocity=velocity)

    return W, V, U1, U2, P, transport, exp


CASES = {
    "balanced_d2_N3": lambda: _balanced_case(2, 3, 11),
    "balanced_d3_N2": lambda: _balanced_case(3, 2, 12),
    "fiber_d2_N3": lambda: _fiber_case(2, 3, 13),
    "fiber_d3_N2": lambda: _fiber_case(3, 2, 14),
    "fiber_complex_d2_N2": lambda: _fiber_case(2, 2, 15, cplx=True),
}


def _ip(A, B):
    return float(np.real(np.vdot(A, B)))


def _ladder(W, V, U, P, exp, m):
    """Projection ladder along the RK4 geodesic, chained one step of size 1/m at a time."""
    for _ in range(m):
        W, Vm = exp(W, V / m, 1, velocity=True)
        V = m * Vm
        U = P(U, W)
    return U


@pytest.mark.parametrize("case", list(CASES))
def test_induced_transport_tangent_isometric_and_velocity(case):
    W, V, U1, U2, P, transport, exp = CASES[case]()
    n = 40
    T1, T2, TV = (transport(W, V, U, n_steps=n) for U in (U1, U2, V))
    W1, V1 = exp(W, V, n, velocity=True)
    scale = np.linalg.norm(U1) + np.linalg.norm(U2)
    for T in (T1, T2, TV):  # tangent at the end point
        assert np.linalg.norm(T - P(T, W1)) < 1e-10 * np.linalg.norm(T)
    # isometry: the Gram matrix of (U1, U2, V) is kept
    for (a, b), (ta, tb) in zip(
        [(U1, U1), (U1, U2), (U2, U2), (U1, V), (V, V)],
        [(T1, T1), (T1, T2), (T2, T2), (T1, TV), (TV, TV)],
        strict=True,
    ):
        assert abs(_ip(ta, tb) - _ip(a, b)) < 1e-8 * scale**2
    # V goes to the geodesic velocity: exp's own velocity and a central difference in s of
    # exp_W(sV) at s = 1 (exp alone, no transport equation)
    np.testing.assert_allclose(TV, V1, atol=1e-12 * np.linalg.norm(V))
    h = 1e-4
    fd = (exp(W, (1 + h) * V, n) - exp(W, (1 - h) * V, n)) / (2 * h)
    assert np.linalg.norm(TV - fd) < 1e-6 * np.linalg.norm(V)
    assert np.linalg.norm(TV - V) > 1e-2 * np.linalg.norm(V)  # the velocity does turn
    # negative controls: U left unchanged is not tangent at the end point, and dropping the
    # normal term (projection after each step only: the ladder with n_steps steps) is not
    # an isometry at this accuracy
    assert np.linalg.norm(U1 - P(U1, W1)) > 1e-3 * np.linalg.norm(U1)
    dropped = _ladder(W, V, U1, P, exp, n)
    assert abs(_ip(dropped, dropped) - _ip(U1, U1)) > 1e-5 * scale**2


@pytest.mark.parametrize("case", ["balanced_d2_N3", "fiber_d3_N2"])
def test_induced_transport_against_the_projection_ladder(case):
    W, V, U1, _, P, transport, exp = CASES[case]()
    T = transport(W, V, U1, n_steps=40)
    L1, L2 = (_ladder(W, V, U1, P, exp, m) for m in (60, 120))
    richardson = 2 * L2 - L1
    err = np.linalg.norm(T - richardson) / np.linalg.norm(U1)
    first = np.linalg.norm(T - L2) / np.linalg.norm(U1)
    assert err < 1e-5
    assert first > 10 * err  # the ladder alone is first order: Richardson is needed


@pytest.mark.parametrize("case", ["balanced_d3_N2", "fiber_d2_N3"])
def test_induced_transport_converges_at_order_four(case):
    W, V, U1, _, _, transport, _ = CASES[case]()
    ref = transport(W, V, U1, n_steps=160)
    e10, e20 = (np.linalg.norm(transport(W, V, U1, n_steps=k) - ref) for k in (10, 20))
    assert 10 < e10 / e20 < 24  # 2^4 = 16 for RK4
    assert e20 < 1e-6 * np.linalg.norm(U1)


def test_balanced_transport_batched_linear_and_input_unchanged():
    W, V, U1, U2, _, _, _ = CASES["balanced_d2_N3"]()
    W2, V2, U3, _, _, _, _ = _balanced_case(2, 3, 21)
    copies = [A.copy() for A in (W, V, U1, U2)]
    T = balanced_parallel_transport(W, V, np.stack([U1, U2, U1 + 2 * U2]))
    np.testing.assert_allclose(T[1], balanced_parallel_transport(W, V, U2), atol=1e-13)
    np.testing.assert_allclose(T[2], T[0] + 2 * T[1], atol=1e-10)  # linear in U
    Tb = balanced_parallel_transport(np.stack([W, W2]), np.stack([V, V2]), np.stack([U1, U3]))
    np.testing.assert_allclose(Tb[1], balanced_parallel_transport(W2, V2, U3), atol=1e-13)
    for A, B in zip((W, V, U1, U2), copies, strict=True):
        np.testing.assert_array_equal(A, B)
    # the normal part of U is removed first
    Z = np.random.default_rng(1).standard_normal(W.shape)
    normal = Z - balanced_tangent_projection(W, Z)
    np.testing.assert_allclose(
        balanced_parallel_transport(W, V, U1 + normal),
        balanced_parallel_transport(W, V, U1),
        atol=1e-12,
    )


def test_fiber_transport_lists_and_bad_arguments():
    W, V, U1, _, _, transport, _ = CASES["fiber_d2_N3"]()
    out = fiber_parallel_transport(list(W), V, U1)  # the general-widths path, to rounding
    assert isinstance(out, list)
    np.testing.assert_allclose(out, fiber_parallel_transport(W, V, U1), atol=1e-12)
    with pytest.raises(ValueError, match="U"):
        fiber_parallel_transport(W, V, U1[:2])
    with pytest.raises(ValueError, match="n_steps"):
        fiber_parallel_transport(W, V, U1, n_steps=0)
    with pytest.raises(ValueError, match="U"):
        balanced_parallel_transport(random_balanced_point(2, 3, 0), V, np.full(V.shape, np.nan))


@pytest.mark.parametrize("space_name", ["Fiber", "BalancedManifold"])
def test_geomstats_induced_parallel_transport(space_name):
    pytest.importorskip("geomstats")
    from dln_manifolds import geomstats as dg

    space = (
        dg.Fiber(np.array([[2.0, 1.0], [0.0, 1.0]]), 3)
        if space_name == "Fiber"
        else (dg.BalancedManifold(2, 3))
    )
    metric = space.metric
    rng = np.random.default_rng(9)
    x = space.random_point(2)
    v = 0.3 * space.to_tangent(rng.standard_normal(x.shape), x)
    w = space.to_tangent(rng.standard_normal(x.shape), x)
    t = metric.parallel_transport(w, x, direction=v)
    y = metric.exp(v, x)
    assert np.all(space.is_tangent(t, y, atol=1e-10))
    np.testing.assert_allclose(metric.norm(t, y), metric.norm(w, x), rtol=1e-7)
    np.testing.assert_allclose(metric.parallel_transport(w, x, end_point=y), t, atol=1e-7)
    with pytest.raises(ValueError, match="exactly one"):
        metric.parallel_transport(w, x)
