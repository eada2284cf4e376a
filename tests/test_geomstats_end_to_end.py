"""(M_d, g^N) as a geomstats space: metric, Christoffel symbols, exp, log, curvature.

Every quantity is compared with an independent computation: dense matrices
built from the core operator, finite differences of the metric matrix, the
closed-form geodesics of the diagonal (totally geodesic) submanifold, and
geomstats' own Bures-Wasserstein metric.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gs_geometry = pytest.importorskip("geomstats.geometry.spd_matrices")

from dln_manifolds.depth_metric import (  # noqa: E402
    depth_christoffel,
    depth_inner_product,
    depth_operator,
)
from dln_manifolds.geomstats import (  # noqa: E402
    DepthMetric,
    EndToEndMatrices,
    direction_geodesic,
    matrix_to_vector,
    vector_to_matrix,
)
from dln_manifolds.geomstats._frame import DenseDepthFrame  # noqa: E402
from dln_manifolds.pymanopt import EndToEndMatrices as PymanoptEndToEnd  # noqa: E402

DEPTHS = [1, 2, 3, np.inf]


def _point(rng, d, smin=0.5, smax=2.0):
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = np.exp(rng.uniform(np.log(smin), np.log(smax), d))
    return (U * s) @ V.T


def _dense_operator(X, depth):
    """Matrix of A_{N,X} in the row-major basis, column by column from the core."""
    d = X.shape[0]
    E = np.eye(d * d).reshape(d * d, d, d)
    return np.stack([depth_operator(X, depth, e).ravel() for e in E], axis=1)


# --- converters and the space ---------------------------------------------------


def test_converters_round_trip(rng):
    X = rng.standard_normal((3, 2, 2))
    x = matrix_to_vector(X)
    assert x.shape == (3, 4)
    assert x[1, 2] == X[1, 1, 0]  # row-major: x[k * d + l] = X[k, l]
    np.testing.assert_array_equal(vector_to_matrix(x), X)
    space = EndToEndMatrices(2, 3)
    np.testing.assert_array_equal(space.to_matrix(space.to_vector(X)), X)
    with pytest.raises(ValueError, match="x must have last axis"):
        vector_to_matrix(np.zeros(5))
    with pytest.raises(ValueError, match="matrix must have shape"):
        space.to_vector(np.zeros((3, 3)))


def test_space_basics(rng):
    space = EndToEndMatrices(3, depth=4)
    assert space.dim == 9 and space.shape == (9,) and space.intrinsic
    assert isinstance(space.metric, DepthMetric) and space.metric.depth == 4
    pts = space.random_point(5)
    assert pts.shape == (5, 9) and np.all(space.belongs(pts))
    singular = np.diag([1.0, 1.0, 0.0]).ravel()
    assert not space.belongs(singular)
    assert not space.belongs(np.zeros(4))
    proj = space.projection(singular)
    assert space.belongs(proj)
    assert np.linalg.norm(proj - singular) <= 1e-5
    x = pts[0]
    np.testing.assert_array_equal(space.projection(x), x)
    v = space.random_tangent_vec(x)
    assert v.shape == (9,) and space.is_tangent(v, x)


@pytest.mark.parametrize(
    "kwargs, exc",
    [({"d": 0}, ValueError), ({"d": 2.5}, TypeError), ({"d": 2, "depth": 0}, ValueError)],
)
def test_space_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        EndToEndMatrices(**kwargs)


def test_metric_rejects_bad_shapes():
    space = EndToEndMatrices(2, 2)
    x = space.random_point()
    with pytest.raises(ValueError, match="tangent_vec must have shape"):
        space.metric.exp(np.ones(3), x)
    with pytest.raises(ValueError, match="base_point must have shape"):
        space.metric.inner_product(np.ones(4), np.ones(4), np.ones(9))
    with pytest.raises(ValueError, match="point must have shape"):
        space.metric.log(np.ones((2, 2)), x)
    with pytest.raises(ValueError, match="rank"):
        space.metric.inner_product(np.ones(4), np.ones(4), np.zeros(4))


def test_set_integrator_rejects_bad_steps():
    space = EndToEndMatrices(2, 2)
    with pytest.raises(ValueError, match="n_steps"):
        space.metric.set_integrator(n_steps=0)
    with pytest.raises(ValueError, match="rtol"):
        space.metric.set_integrator(adaptive=True, rtol=-1.0)


# --- metric tensor ------------------------------------------------------------------


@pytest.mark.parametrize("depth", DEPTHS)
def test_metric_matrix_is_inverse_of_dense_operator(rng, depth):
    d = 3
    space = EndToEndMatrices(d, depth)
    X = _point(rng, d)
    x = matrix_to_vector(X)
    A = _dense_operator(X, depth)
    G = space.metric.metric_matrix(x)
    np.testing.assert_allclose(G @ A, np.eye(d * d), atol=1e-12)
    np.testing.assert_allclose(space.metric.cometric_matrix(x), A, rtol=1e-12, atol=1e-12)
    Z1, Z2 = rng.standard_normal((2, d, d))
    expected = depth_inner_product(X, depth, Z1, Z2)
    got = space.metric.inner_product(Z1.ravel(), Z2.ravel(), x)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(Z1.ravel() @ G @ Z2.ravel(), rel=1e-12)


def test_inner_product_broadcasts(rng):
    space = EndToEndMatrices(2, 3)
    xs = space.random_point(3)
    vs = rng.standard_normal((3, 4))
    out = space.metric.inner_product(vs, vs[0], xs)
    assert out.shape == (3,)
    for i in range(3):
        assert out[i] == pytest.approx(
            depth_inner_product(xs[i].reshape(2, 2), 3, vs[i].reshape(2, 2), vs[0].reshape(2, 2))
        )
    assert space.metric.metric_matrix(xs).shape == (3, 4, 4)


def test_depth_two_is_twice_bures_wasserstein(rng):
    """[G] Remark 9: g^2 = 2 g^BW on symmetric tangent vectors at SPD points."""
    from geomstats.geometry.spd_matrices import SPDBuresWassersteinMetric, SPDMatrices

    d = 3
    spd = SPDMatrices(d, equip=False).equip_with_metric(SPDBuresWassersteinMetric)
    space = EndToEndMatrices(d, 2)
    for _ in range(3):
        B = rng.standard_normal((d, d))
        P = B @ B.T + 0.1 * np.eye(d)
        U1, U2 = rng.standard_normal((2, d, d))
        U1, U2 = U1 + U1.T, U2 + U2.T
        ours = space.metric.inner_product(U1.ravel(), U2.ravel(), P.ravel())
        bw = spd.metric.inner_product(U1, U2, P)
        assert ours / bw == pytest.approx(2.0, rel=1e-12, abs=0)


# --- Christoffel symbols ---------------------------------------------------------------


@pytest.mark.parametrize("depth", DEPTHS)
def test_christoffels_match_core(rng, depth):
    d = 2
    space = EndToEndMatrices(d, depth)
    X = _point(rng, d)
    G = space.metric.christoffels(X.ravel())
    assert G.shape == (4, 4, 4)
    np.testing.assert_allclose(G, np.swapaxes(G, 1, 2), atol=1e-13)  # torsion free
    U, V = rng.standard_normal((2, d, d))
    expected = depth_christoffel(X, depth, U, V).ravel()
    np.testing.assert_allclose(
        np.einsum("kij,i,j->k", G, U.ravel(), V.ravel()), expected, rtol=1e-11, atol=1e-12
    )
    eq = space.metric.geodesic_equation(np.stack([X.ravel(), V.ravel()]))
    np.testing.assert_allclose(eq[1], -depth_christoffel(X, depth, V, V).ravel(), atol=1e-12)
    np.testing.assert_array_equal(eq[0], V.ravel())


def test_frame_fast_path_matches_core_with_equal_singular_values():
    # X = 2 * orthogonal: all singular values equal, the core fallback is used
    Q, _ = np.linalg.qr(np.arange(9.0).reshape(3, 3) + np.eye(3))
    X = 2.0 * Q
    U, V = np.eye(3), np.arange(9.0).reshape(3, 3) / 9
    got = DenseDepthFrame(X, 3).christoffel(U, V)
    np.testing.assert_allclose(got, depth_christoffel(X, 3, U, V), atol=1e-12)


def test_adapter_frame_is_the_core_frame(rng):
    from dln_manifolds.depth_metric import DepthFrame as CoreFrame

    assert issubclass(DenseDepthFrame, CoreFrame)
    X = _point(rng, 3)
    V = rng.standard_normal((3, 3))
    f = DenseDepthFrame(X, 3)
    np.testing.assert_allclose(
        f.cometric_matrix() @ V.ravel(), depth_operator(X, 3, V).ravel(), rtol=1e-12
    )
    np.testing.assert_allclose(
        f.metric_matrix() @ f.cometric_matrix(), np.eye(9), rtol=0, atol=1e-12
    )
    with pytest.raises(TypeError, match="real"):
        DenseDepthFrame(X + 0j, 3)
    with pytest.raises(ValueError, match="rank-deficient"):  # at construction, as before
        DenseDepthFrame(np.diag([1.0, 0.0, 1.0]), 3)


@pytest.mark.parametrize("depth", [2, 3, np.inf])
def test_christoffels_match_finite_differences_of_metric(rng, depth):
    """Koszul: Gamma^k_ij = 1/2 g^kl (d_i g_jl + d_j g_il - d_l g_ij), metric derivatives by FD.

    Central differences with h = 1e-4: truncation ~h^2 |g'''| ~ 1e-8, rounding ~eps/h ~ 1e-12.
    """
    d = 2
    n = d * d
    space = EndToEndMatrices(d, depth)
    x = matrix_to_vector(_point(rng, d))
    h = 1e-4
    dg = np.stack(
        [
            (space.metric.metric_matrix(x + h * e) - space.metric.metric_matrix(x - h * e))
            / (2 * h)
            for e in np.eye(n)
        ],
        axis=-1,
    )  # dg[i, j, l] = d_l g_ij
    ginv = space.metric.cometric_matrix(x)
    koszul = 0.5 * (
        np.einsum("kl,jli->kij", ginv, dg)
        + np.einsum("kl,ilj->kij", ginv, dg)
        - np.einsum("kl,ijl->kij", ginv, dg)
    )
    G = space.metric.christoffels(x)
    np.testing.assert_allclose(G, koszul, atol=1e-6 * np.abs(G).max())


# --- exp and log ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", DEPTHS)
def test_exp_along_the_point_is_closed_form(rng, depth):
    """exp_X(tX) = (1 + t/N)^N X (e^t X for N = inf); see direction_geodesic."""
    d = 2
    space = EndToEndMatrices(d, depth)
    X = _point(rng, d)
    space.metric.set_integrator(adaptive=True, rtol=1e-12, atol=1e-13)
    for t in (0.5, -0.4):
        got = space.metric.exp(t * X.ravel(), X.ravel())
        np.testing.assert_allclose(got, direction_geodesic(X, depth, t).ravel(), atol=1e-9)


@pytest.mark.parametrize("depth", [2, 5, np.inf])
def test_diagonal_geodesics_and_distance_closed_form(rng, depth):
    """In a fixed singular frame, r_k = s_k^{1/N} are flat coordinates with g^N = N sum dr_k^2.

    So exp_X(U diag(delta) V^T) has singular values (s^{1/N} + delta s^{1/N - 1}/N)^N and
    dist(U diag(s) V^T, U diag(tau) V^T) = sqrt(N) |tau^{1/N} - s^{1/N}| (|log tau - log s|
    for N = inf). RK4 with 40 steps: error ~1e-9 here.
    """
    d = 3
    space = EndToEndMatrices(d, depth)
    space.metric.set_integrator(n_steps=40)
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = np.array([1.7, 1.0, 0.6])
    delta = np.array([0.3, -0.2, 0.1])
    x = ((U * s) @ V.T).ravel()
    v = ((U * delta) @ V.T).ravel()
    if np.isinf(depth):
        tau = s * np.exp(delta / s)
        dist = np.linalg.norm(np.log(tau) - np.log(s))
    else:
        q = 1.0 / depth
        tau = (s**q + delta * s ** (q - 1) / depth) ** depth
        dist = np.sqrt(depth) * np.linalg.norm(tau**q - s**q)
    y = ((U * tau) @ V.T).ravel()
    np.testing.assert_allclose(space.metric.exp(v, x), y, atol=1e-8)
    np.testing.assert_allclose(space.metric.log(y, x), v, atol=1e-7)
    assert space.metric.dist(x, y) == pytest.approx(dist, rel=1e-7)
    assert space.metric.squared_dist(x, y) == pytest.approx(dist**2, rel=1e-7)


def test_rk4_converges_with_order_four(rng):
    d, depth = 2, 3
    space = EndToEndMatrices(d, depth)
    X = _point(rng, d)
    exact = direction_geodesic(X, depth, 1.0).ravel()
    errs = []
    for n in (8, 16):
        space.metric.set_integrator(n_steps=n)
        errs.append(np.linalg.norm(space.metric.exp(X.ravel(), X.ravel()) - exact))
    assert 3.6 < np.log2(errs[0] / errs[1]) < 4.4


@settings(max_examples=6)
@given(
    seed=st.integers(0, 2**16),
    d=st.sampled_from([2, 3]),
    depth=st.sampled_from([2, 3, np.inf]),
    radius=st.floats(0.05, 1.0),
)
def test_exp_log_round_trip(seed, d, depth, radius):
    rng = np.random.default_rng(seed)
    space = EndToEndMatrices(d, depth)
    x = matrix_to_vector(_point(rng, d))
    v = rng.standard_normal(d * d)
    v *= radius / space.metric.norm(v, x)
    y = space.metric.exp(v, x)
    w = space.metric.log(y, x)
    assert np.linalg.norm(w - v) <= 1e-6 * max(1.0, np.linalg.norm(v))
    assert space.metric.dist(x, y) == pytest.approx(radius, rel=1e-6)


def test_geomstats_bvp_log_solver_runs_on_our_symbols(rng):
    """geomstats' LogODESolver (collocation, scipy solve_bvp) needs christoffels and their
    Jacobian: with ours it reproduces the shooting log (BVP tolerance 1e-8)."""
    from geomstats.numerics.bvp import ScipySolveBVP
    from geomstats.numerics.geodesic import LogODESolver

    space = EndToEndMatrices(2, 3)
    space.metric.set_integrator(adaptive=True, rtol=1e-12, atol=1e-14)
    x = matrix_to_vector(_point(rng, 2))
    v = rng.standard_normal(4)
    v *= 0.5 / space.metric.norm(v, x)
    y = space.metric.exp(v, x)
    solver = LogODESolver(space, n_nodes=10, integrator=ScipySolveBVP(tol=1e-8))
    np.testing.assert_allclose(solver.log(y, x), v, atol=1e-7)


def test_log_batch_and_zero(rng):
    space = EndToEndMatrices(2, 2)
    x = space.random_point()
    vs = 0.2 * rng.standard_normal((2, 4))
    ys = space.metric.exp(vs, x)
    assert ys.shape == (2, 4)
    np.testing.assert_allclose(space.metric.log(ys, x), vs, atol=1e-9)
    np.testing.assert_array_equal(space.metric.log(x, x), np.zeros(4))


def test_exp_agrees_with_pymanopt_retraction(rng):
    """The pymanopt retraction is second order: |exp(tZ) - R(tZ)| = O(t^3)."""
    d, depth = 2, 3
    space = EndToEndMatrices(d, depth)
    space.metric.set_integrator(adaptive=True, rtol=1e-12, atol=1e-14)
    retr = PymanoptEndToEnd(d, depth)
    X = _point(rng, d)
    Z = rng.standard_normal((d, d))
    ts = np.array([0.1, 0.05, 0.025])
    errs = [
        np.linalg.norm(
            space.metric.exp(t * Z.ravel(), X.ravel()) - retr.retraction(X, t * Z).ravel()
        )
        for t in ts
    ]
    slope = np.polyfit(np.log(ts), np.log(errs), 1)[0]
    assert slope > 2.7  # at least first order (slope > 2) is what agreement to first order means


# --- curvature -----------------------------------------------------------------------------


def _brute_force_curvature(metric, x, a, b, c):
    """R(a, b)c from the metric matrix alone: Koszul Christoffels by FD of g, then FD of those.

    Inner step h1 = 1e-4 (error ~1e-8), outer step h2 = 1e-3 (error ~h2^2 + 1e-8/h2 ~ 1e-5).
    """
    n = x.size

    def gamma(p, h1=1e-4):
        dg = np.stack(
            [
                (metric.metric_matrix(p + h1 * e) - metric.metric_matrix(p - h1 * e)) / (2 * h1)
                for e in np.eye(n)
            ],
            axis=-1,
        )
        ginv = np.linalg.inv(metric.metric_matrix(p))
        return 0.5 * (
            np.einsum("kl,jli->kij", ginv, dg)
            + np.einsum("kl,ilj->kij", ginv, dg)
            - np.einsum("kl,ijl->kij", ginv, dg)
        )

    def dgamma(direction, h2=1e-3):
        return (gamma(x + h2 * direction) - gamma(x - h2 * direction)) / (2 * h2)

    G = gamma(x)

    def bil(T, u, v):
        return np.einsum("kij,i,j->k", T, u, v)

    return (
        bil(dgamma(a), b, c)
        - bil(dgamma(b), a, c)
        + bil(G, a, bil(G, b, c))
        - bil(G, b, bil(G, a, c))
    )


@pytest.mark.parametrize("depth", [2, np.inf])
def test_curvature_matches_finite_differences(rng, depth):
    d = 2
    space = EndToEndMatrices(d, depth)
    x = matrix_to_vector(_point(rng, d))
    a, b, c = rng.standard_normal((3, d * d))
    got = space.metric.curvature(a, b, c, x)
    expected = _brute_force_curvature(space.metric, x, a, b, c)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    # sectional curvature is symmetric in its two arguments
    k_ab = space.metric.sectional_curvature(a, b, x)
    assert k_ab == pytest.approx(space.metric.sectional_curvature(b, a, x), rel=1e-8)


def test_depth_one_is_flat(rng):
    space = EndToEndMatrices(2, 1)
    x = space.random_point()
    assert np.abs(space.metric.christoffels(x)).max() == 0.0
    assert np.abs(space.metric.riemann_tensor(x)).max() == 0.0
    v = rng.standard_normal(4)
    v *= 0.4 / np.linalg.norm(v)  # shorter than sigma_min(x) >= 0.5: the segment stays in GL(2)
    np.testing.assert_allclose(space.metric.exp(v, x), x + v, atol=1e-14)
    np.testing.assert_allclose(space.metric.log(x + v, x), v, atol=1e-14)
    # the straight line through 0 leaves GL(2) at t = 1/2
    with pytest.raises(ValueError, match="singular set"):
        space.metric.exp(-2.0 * x, x)


# --- exp, log and dist: failure modes and far pairs (issue 13) ------------------------------


def test_issue_pair_log_dist_and_geodesic():
    """Before: |exp_x(log_x y) - y| = 0.235, dist(x, y) = 3.216, dist(y, x) = 3.379; a geodesic
    of length 2.288 joins them (found by continuation, confirmed by an adaptive integrator)."""
    space = EndToEndMatrices(2, 2)
    metric = space.metric
    x = np.array([0.484, -0.197, 0.296, 0.893])
    y = np.array([-0.781, 0.546, -1.043, -0.51])
    v = metric.log(y, x)
    np.testing.assert_allclose(metric.exp(v, x), y, atol=1e-9)
    dist = metric.dist(x, y)
    assert dist == pytest.approx(2.288, abs=1e-3)
    assert dist == pytest.approx(metric.dist(y, x), rel=1e-9)
    path = metric.geodesic(initial_point=x, end_point=y)(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(path[0], x, atol=1e-12)
    np.testing.assert_allclose(path[-1], y, atol=1e-9)


@pytest.mark.parametrize(
    "d, depth", [(2, 2), pytest.param(2, np.inf, marks=pytest.mark.slow), (3, 3)]
)
def test_log_on_random_point_pairs(d, depth):
    """Pairs drawn by EndToEndMatrices.random_point (as geomstats' generic tests do), one
    batched call; about half of such pairs used to fail."""
    import geomstats.backend as gs

    gs.random.seed(4)
    space = EndToEndMatrices(d, depth)
    metric = space.metric
    pts = space.random_point(16).reshape(8, 2, d * d)
    signs = np.sign(np.linalg.det(space.to_matrix(pts)))
    pts = pts[signs[:, 0] == signs[:, 1]][:3]
    x, y = pts[:, 0], pts[:, 1]
    v = metric.log(y, x)
    np.testing.assert_allclose(metric.exp(v, x), y, atol=1e-8)
    np.testing.assert_allclose(metric.norm(v, x), metric.dist(y, x), rtol=1e-8)


def test_points_in_different_components():
    """Before: dist(I, diag(1, -1)) = 1.77 on (M_2, g^2), with no warning."""
    space = EndToEndMatrices(2, 2)
    x, y = np.eye(2).ravel(), np.diag([1.0, -1.0]).ravel()
    assert space.metric.dist(x, y) == np.inf
    assert space.metric.squared_dist(x, y) == np.inf
    np.testing.assert_array_equal(
        space.metric.dist(np.stack([x, x]), np.stack([y, 2 * x]))[0], np.inf
    )
    with pytest.raises(ValueError, match="different components") as info:
        space.metric.log(y, x)
    assert info.type.__name__ == "DifferentComponentsError"


@pytest.mark.parametrize("n_steps", [None, 10, 40])
def test_exp_past_the_singular_set_raises(n_steps):
    """Before: exp_I([0, 0, 0, -2.5]) gave 5.3e3 to 5.9e3 in the last entry; the geodesic
    reaches det = 0 at t = 0.8."""
    space = EndToEndMatrices(2, 2)
    if n_steps is not None:
        space.metric.set_integrator(n_steps=n_steps)
    with pytest.raises(ValueError, match="singular set") as info:
        space.metric.exp(np.array([0.0, 0.0, 0.0, -2.5]), np.eye(2).ravel())
    assert info.type.__name__ == "SingularGeodesicError"


def test_log_to_a_singular_point_raises():
    space = EndToEndMatrices(2, 3)
    with pytest.raises(ValueError, match="rank-deficient"):
        space.metric.log(np.array([1.0, 0.0, 0.0, 0.0]), np.eye(2).ravel())


def test_christoffels_batch_matches_single_points(rng):
    space = EndToEndMatrices(2, 3)
    xs = np.stack([matrix_to_vector(_point(rng, 2)) for _ in range(3)]).reshape(3, 1, 4)
    batch = space.metric.christoffels(xs)
    assert batch.shape == (3, 1, 4, 4, 4)
    for i in range(3):
        single = space.metric.christoffels(xs[i, 0])
        np.testing.assert_allclose(batch[i, 0], single, rtol=0, atol=1e-13)
        U, V = rng.standard_normal((2, 2, 2))
        expected = depth_christoffel(xs[i, 0].reshape(2, 2), 3, U, V).ravel()
        np.testing.assert_allclose(
            np.einsum("kij,i,j->k", single, U.ravel(), V.ravel()), expected, atol=1e-12
        )
