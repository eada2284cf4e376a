"""Fiber, BalancedManifold and the submersion M -> (M_d, g^N) as geomstats objects.

Brute force throughout: tangent projectors from explicit null spaces
(scipy.linalg.null_space) of dense Jacobians built with np.kron or exact
central differences of quadratic maps, orbit tangent spaces from explicit
generators, and geomstats' QuotientMetric against DepthMetric ([G] Thm 13).
"""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("geomstats")

import geomstats.backend as gs  # noqa: E402
from geomstats.geometry.quotient_metric import QuotientMetric  # noqa: E402

from dln_manifolds.geomstats import (  # noqa: E402
    BalancedBundle,
    BalancedManifold,
    EndToEndMatrices,
    Fiber,
    align_orbit,
    orthogonal_group_action,
)
from dln_manifolds.geomstats.balanced import second_fundamental_form  # noqa: E402
from dln_manifolds.network import end_to_end, moments, partial_products  # noqa: E402


def _full_rank(rng, d):
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (U * np.exp(rng.uniform(-0.7, 0.7, d))) @ V.T


def _rotations(rng, count, d):
    Q, R = np.linalg.qr(rng.standard_normal((count, d, d)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[:, None, :]


def _projector(basis_columns):
    Q = scipy.linalg.orth(basis_columns)
    return Q @ Q.T


def _apply(fun, W):
    """Dense matrix of a linear map on (N, d, d) arrays, column by column."""
    n = W.size
    return np.stack([np.ravel(fun(e.reshape(W.shape))) for e in np.eye(n)], axis=1)


# --- Fiber -------------------------------------------------------------------------------


def _dphi_dense(W):
    """d phi_W(V) = sum_p A_{p+1} V_p B_{p-1}; row-major vec(A V B) = kron(A, B^T) vec(V)."""
    A, B = partial_products(W)
    return np.hstack([np.kron(A[p + 1], B[p].T) for p in range(W.shape[0])])


@pytest.mark.parametrize("d, depth", [(2, 3), (3, 2)])
def test_fiber_tangent_projection_is_null_space_projector(rng, d, depth):
    X = _full_rank(rng, d)
    space = Fiber(X, depth)
    assert space.dim == (depth - 1) * d * d
    W = space.random_point()
    assert space.belongs(W)
    kernel = scipy.linalg.null_space(_dphi_dense(W))
    assert kernel.shape[1] == space.dim
    P = _apply(lambda Z: space.to_tangent(Z, W), W)
    np.testing.assert_allclose(P, kernel @ kernel.T, atol=1e-10)
    V = space.random_tangent_vec(W)
    assert space.is_tangent(V, W)
    assert not space.is_tangent(rng.standard_normal(W.shape), W)


def test_fiber_points_projection_retraction_and_metric(rng):
    d, depth = 2, 3
    X = _full_rank(rng, d)
    space = Fiber(X, depth)
    gs.random.seed(1)
    pts = space.random_point(3)
    assert pts.shape == (3, depth, d, d) and np.all(space.belongs(pts))
    assert space.belongs(space.center)
    W = pts[0]
    off = W + 1e-3 * rng.standard_normal(W.shape)
    assert not space.belongs(off)
    assert space.belongs(space.projection(off))
    V = space.to_tangent(rng.standard_normal(W.shape), W)
    errs = []
    for t in (1e-2, 5e-3):
        R = space.retraction(t * V, W)
        assert space.belongs(R)
        errs.append(np.linalg.norm(R - W - t * V))
    assert np.log2(errs[0] / errs[1]) > 1.8  # |R(tV) - W - tV| = O(t^2)
    np.testing.assert_array_equal(space.retraction(0 * V, W), W)
    ip = space.metric.inner_product(V, 2 * V, W)
    assert ip == pytest.approx(2 * np.sum(V * V))
    assert space.belongs(space.metric.exp(0.1 * V, W))  # see test_submanifold_geodesics.py


def test_fiber_rejects_bad_input():
    with pytest.raises(ValueError, match="rank"):
        Fiber(np.diag([1.0, 0.0]), 3)
    with pytest.raises(ValueError, match="depth"):
        Fiber(np.eye(2), 0)
    with pytest.raises(TypeError):
        Fiber(np.eye(2) * 1j, 2)
    space = Fiber(np.eye(2), 2)
    with pytest.raises(TypeError, match="base_point"):  # a missing argument, as in Python
        space.to_tangent(np.zeros((2, 2, 2)))


# --- BalancedManifold ------------------------------------------------------------------------


def _moment_jacobian(W):
    """Exact: G is quadratic, so central differences with step 1 are exact (up to rounding)."""
    return _apply(lambda Z: (moments(W + Z) - moments(W - Z)) / 2.0, W)


@pytest.mark.parametrize("d, depth", [(2, 3), (3, 2), (2, 1)])
def test_balanced_tangent_projection_is_null_space_projector(d, depth):
    gs.random.seed(d + depth)
    space = BalancedManifold(d, depth)
    assert space.dim == d * d + (depth - 1) * d * (d - 1) // 2
    W = space.random_point()
    assert space.belongs(W)
    P = _apply(lambda Z: space.to_tangent(Z, W), W)
    if depth == 1:
        np.testing.assert_allclose(P, np.eye(W.size), atol=1e-12)
        return
    kernel = scipy.linalg.null_space(_moment_jacobian(W))
    assert kernel.shape[1] == space.dim
    np.testing.assert_allclose(P, kernel @ kernel.T, atol=1e-10)


def test_balanced_points_projection_retraction_basis(rng):
    d, depth = 2, 3
    gs.random.seed(5)
    space = BalancedManifold(d, depth)
    pts = space.random_point(2)
    assert pts.shape == (2, depth, d, d) and np.all(space.belongs(pts))
    W = pts[0]
    off = W + 1e-3 * rng.standard_normal(W.shape)
    assert not space.belongs(off)
    assert space.belongs(space.projection(off))
    V = space.to_tangent(rng.standard_normal(W.shape), W)
    assert space.is_tangent(V, W) and not space.is_tangent(off, W)
    errs = []
    for t in (1e-2, 5e-3):
        R = space.retraction(t * V, W)
        assert space.belongs(R)
        # second order: R(tV) = W + tV + t^2 (normal) + O(t^3), so the tangential error is O(t^3)
        errs.append(np.linalg.norm(space.to_tangent(R - W - t * V, W)))
    assert np.log2(errs[0] / errs[1]) > 2.7
    hor, ver = space.orthonormal_basis(W)
    basis = np.concatenate([hor, ver]).reshape(space.dim, -1)
    np.testing.assert_allclose(basis @ basis.T, np.eye(space.dim), atol=1e-12)
    assert np.isfinite(space.metric.dist(W, space.metric.exp(0.1 * space.to_tangent(pts[1], W), W)))
    with pytest.raises(ValueError, match="d must be"):
        BalancedManifold(0, 2)


# --- the bundle -------------------------------------------------------------------------------


@pytest.fixture
def bundle_setup():
    gs.random.seed(11)
    total = BalancedManifold(3, 3)
    quotient = total.equip_with_quotient()
    return total, quotient, total.fiber_bundle


def test_submersion_lift_and_horizontal_lift(bundle_setup, rng):
    total, quotient, bundle = bundle_setup
    assert isinstance(bundle, BalancedBundle)
    x = EndToEndMatrices(3, 3).random_point(2)
    W = bundle.lift(x)
    assert W.shape == (2, 3, 3, 3) and np.all(total.belongs(W))
    np.testing.assert_allclose(bundle.riemannian_submersion(W), x, atol=1e-12)
    v = rng.standard_normal((2, 9))
    H = bundle.horizontal_lift(v, fiber_point=W)
    np.testing.assert_allclose(bundle.tangent_riemannian_submersion(H, W), v, atol=1e-12)
    assert np.all(bundle.is_horizontal(H, W))
    np.testing.assert_allclose(bundle.horizontal_lift(v, base_point=x), H, atol=1e-12)


def test_vertical_space_is_orbit_tangent_space(bundle_setup, rng):
    """Vertical projector = projector onto {a_p W_p - W_p a_{p-1} : a_k in so(d)} (brute force)."""
    total, _, bundle = bundle_setup
    W = total.random_point()
    N, d, _ = W.shape
    gens = []
    for k in range(N - 1):
        for i, j in zip(*np.triu_indices(d, 1), strict=True):
            a = np.zeros((N - 1, d, d))
            a[k, i, j], a[k, j, i] = 1.0, -1.0
            w = np.zeros(W.shape)
            w[:-1] += a @ W[:-1]
            w[1:] -= W[1:] @ a
            gens.append(w.ravel())
    P_orbit = _projector(np.array(gens).T)
    P_ver = _apply(lambda Z: bundle.vertical_projection(Z, W), W)
    np.testing.assert_allclose(P_ver, P_orbit, atol=1e-10)
    Z = rng.standard_normal(W.shape)
    Vv, Hh = bundle.vertical_projection(Z, W), bundle.horizontal_projection(Z, W)
    np.testing.assert_allclose(Vv + Hh, total.to_tangent(Z, W), atol=1e-12)
    assert abs(np.sum(Vv * Hh)) < 1e-12 * np.sum(Z * Z)
    assert bundle.is_vertical(Vv, W) and not bundle.is_vertical(Hh, W)


@settings(max_examples=8)
@given(seed=st.integers(0, 2**16), d=st.sampled_from([2, 3]), depth=st.sampled_from([1, 2, 3, 5]))
def test_quotient_metric_is_depth_metric(seed, d, depth):
    """[G] Thm 13 through geomstats: QuotientMetric(BalancedBundle) inner products = g^N."""
    rng = np.random.default_rng(seed)
    total = BalancedManifold(d, depth)
    quotient = total.equip_with_quotient()
    assert isinstance(quotient.metric, QuotientMetric)
    reference = EndToEndMatrices(d, depth)
    x = _full_rank(rng, d).ravel()
    a, b = rng.standard_normal((2, d * d))
    expected = reference.metric.inner_product(a, b, x)
    assert quotient.metric.inner_product(a, b, x) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # any point of the fiber over x gives the same value (the metric is O(d)^{N-1}-invariant)
    W = orthogonal_group_action(_rotations(rng, depth - 1, d), total.fiber_bundle.lift(x))
    got = quotient.metric.inner_product(a, b, fiber_point=W)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_align_recovers_orbit_points(bundle_setup, rng):
    total, _, bundle = bundle_setup
    W = total.random_point()
    R = _rotations(rng, 2, 3)
    W2 = orthogonal_group_action(R, W)
    np.testing.assert_allclose(bundle.align(W2, W), W, atol=1e-10)


def test_align_between_fibers_minimizes_distance(bundle_setup, rng):
    total, _, bundle = bundle_setup
    W, W2 = total.random_point(2)
    aligned = align_orbit(W2, W)
    # stays in the orbit of W2: same end-to-end matrix, balanced
    np.testing.assert_allclose(end_to_end(aligned), end_to_end(W2), atol=1e-12)
    assert total.belongs(aligned)
    best = np.linalg.norm(aligned - W)
    # no random orbit point, and no small perturbation of the optimum, does better
    for _ in range(20):
        trial = orthogonal_group_action(_rotations(rng, 2, 3), W2)
        assert np.linalg.norm(trial - W) >= best - 1e-12
    for _ in range(5):
        skew = rng.standard_normal((2, 3, 3)) * 1e-3
        small = np.array([scipy.linalg.expm(s - s.T) for s in skew])
        assert np.linalg.norm(orthogonal_group_action(small, aligned) - W) >= best - 1e-12


def test_quotient_log_across_components(bundle_setup):
    """The quotient's log raises between the components of GL(d) and its dist is inf (log,
    dist and transport in one component: tests/test_quotient_metric.py)."""
    from dln_manifolds.geodesics import DifferentComponentsError

    _, quotient, _ = bundle_setup
    x = np.eye(3).reshape(-1)
    y = np.diag([-1.0, 1.0, 2.0]).reshape(-1)
    with pytest.raises(DifferentComponentsError, match="base_point and point"):
        quotient.metric.log(y, x)
    assert np.isinf(quotient.metric.dist(x, y))
    with pytest.raises(TypeError, match="BalancedManifold"):
        BalancedBundle(EndToEndMatrices(2, 2))


# --- geodesics upstairs and downstairs ------------------------------------------------------


@pytest.mark.parametrize("d, depth", [(2, 3), (3, 4)])
def test_second_fundamental_form_is_curve_acceleration(d, depth):
    """II(V, V) = c''(0) for the second-order retraction curve c(t) = R_W(tV).

    Central second difference, h = 1e-3: error ~h^2 |c^(4)| ~ 1e-6, rounding ~eps/h^2 ~ 1e-10.
    """
    gs.random.seed(depth)
    space = BalancedManifold(d, depth)
    W = space.random_point()
    V = space.random_tangent_vec(W)
    II = second_fundamental_form(W, V)
    assert np.abs(space.to_tangent(II, W)).max() < 1e-12 * np.abs(II).max()
    h = 1e-3
    c2 = (space.retraction(h * V, W) - 2 * W + space.retraction(-h * V, W)) / h**2
    np.testing.assert_allclose(II, c2, atol=1e-5 * np.abs(II).max())


@pytest.mark.parametrize("d, depth", [(2, 2), (2, 3), (3, 3)])
def test_horizontal_geodesics_project_to_depth_metric_geodesics(d, depth, rng):
    """O'Neill + [G] Thm 13: QuotientMetric.exp (horizontal geodesic of M, pushed down) equals
    DepthMetric.exp (our Christoffel symbols). Two independent integrations: RK4 with 20 steps
    upstairs (error ~1e-10 here, order 4 checked by hand) and adaptive DOP853 downstairs."""
    total = BalancedManifold(d, depth)
    quotient = total.equip_with_quotient()
    reference = EndToEndMatrices(d, depth)
    reference.metric.set_integrator(adaptive=True, rtol=1e-12, atol=1e-14)
    x = _full_rank(rng, d).ravel()
    v = rng.standard_normal(d * d)
    v *= 0.5 / reference.metric.norm(v, x)
    expected = reference.metric.exp(v, x)
    np.testing.assert_allclose(quotient.metric.exp(v, x), expected, atol=1e-8)
    # the upstairs geodesic stays on M, and its midpoint projects to the midpoint downstairs
    W = total.fiber_bundle.lift(x)
    H = total.fiber_bundle.horizontal_lift(v, fiber_point=W)
    assert total.belongs(total.metric.exp(H, W))
    W_half = total.metric.exp(0.5 * H, W)
    np.testing.assert_allclose(
        total.fiber_bundle.riemannian_submersion(W_half),
        reference.metric.exp(0.5 * v, x),
        atol=1e-8,
    )


def test_balanced_exp_is_a_geodesic_of_the_embedding():
    """Constant speed and the semigroup property exp(V) = exp_{W(1/2)}(W'(1/2) / 2)."""
    gs.random.seed(7)
    space = BalancedManifold(2, 3)
    W = space.random_point()
    V = space.random_tangent_vec(W)
    V *= 0.4 / np.linalg.norm(V)
    np.testing.assert_allclose(space.metric.exp(0 * V, W), W, atol=1e-15)
    W1 = space.metric.exp(V, W)
    Wm = space.metric.exp(0.5 * V, W)
    h = 1e-4  # central difference of the velocity: error ~h^2 + eps/h ~ 1e-8
    Vm = (space.metric.exp((0.5 + h) * V, W) - space.metric.exp((0.5 - h) * V, W)) / (2 * h)
    assert np.linalg.norm(Vm) == pytest.approx(np.linalg.norm(V), rel=1e-6)
    np.testing.assert_allclose(space.metric.exp(0.5 * Vm, Wm), W1, atol=1e-7)


def test_batched_methods_equal_the_loop_over_points(bundle_setup, rng):
    """One call on a stack (broadcast against one base point too) = the per-point results."""
    total, _, bundle = bundle_setup
    W = total.random_point(4)
    V = rng.standard_normal((2,) + W.shape)
    T = total.to_tangent(V, W)
    cases = {
        "to_tangent": (total.to_tangent, (V, W)),
        "projection": (lambda Y: total.projection(Y), (W + 1e-2 * V,)),
        "retraction": (total.retraction, (0.1 * T, W)),
        "is_tangent": (
            total.is_tangent,
            (T + 1e-3 * V * (np.arange(4) % 2)[:, None, None, None], W),
        ),
        "horizontal_projection": (bundle.horizontal_projection, (V, W)),
        "vertical_projection": (bundle.vertical_projection, (V, W)),
        "riemannian_submersion": (bundle.riemannian_submersion, (V,)),
    }
    for name, (fun, args) in cases.items():
        got = fun(*args)
        args = np.broadcast_arrays(*args)
        loop = np.array([[fun(*(a[i, j] for a in args)) for j in range(4)] for i in range(2)])
        assert got.shape == loop.shape, name
        np.testing.assert_allclose(got, loop, rtol=1e-13, atol=1e-13, err_msg=name)
    assert list(
        total.is_tangent(T[0] + 1e-3 * V[0] * (np.arange(4) % 2)[:, None, None, None], W)
    ) == [True, False, True, False]
    # one base point against a batch of vectors
    np.testing.assert_allclose(
        total.to_tangent(V[:, 0], W[0]), np.array([total.to_tangent(v, W[0]) for v in V[:, 0]])
    )


def test_bundle_aligns_through_a_geomstats_aligner(bundle_setup, rng):
    """bundle.aligner is an AlignerAlgorithm; FiberBundle.align delegates to it, batched."""
    from geomstats.geometry.fiber_bundle import AlignerAlgorithm

    from dln_manifolds.geomstats import OrbitAligner

    total, _, bundle = bundle_setup
    assert isinstance(bundle.aligner, OrbitAligner)
    assert isinstance(bundle.aligner, AlignerAlgorithm)
    W = total.random_point(3)
    W2 = orthogonal_group_action(_rotations(rng, 2, 3), W)
    np.testing.assert_allclose(bundle.align(W2, W), W, atol=1e-10)
    np.testing.assert_allclose(bundle.aligner.align(W2[1], W[1]), W[1], atol=1e-10)
    with pytest.raises(ValueError, match="max_sweeps"):
        OrbitAligner(total, max_sweeps=0)


def test_fiber_adapters_agree_on_depth_rule_and_center(rng):
    """Both Fiber adapters refuse depth 1 with the same error; both have a center property."""
    from dln_manifolds.pymanopt import Fiber as PymanoptFiber

    messages = []
    for cls in (Fiber, PymanoptFiber):
        with pytest.raises(ValueError, match="depth must be >= 2") as info:
            cls(np.eye(2), 1)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    X = _full_rank(rng, 2)
    C = Fiber(X, 3).center
    assert isinstance(C, np.ndarray) and C.shape == (3, 2, 2)
    np.testing.assert_allclose(PymanoptFiber(X, 3).center, C, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(end_to_end(C), X, atol=1e-12)


def test_balanced_random_point_spread_matches_pymanopt_option():
    """spread bounds the layer condition numbers as in pymanopt; bound scales the points."""
    from dln_manifolds.pymanopt import BalancedManifold as PymanoptBalanced

    gs.random.seed(3)
    for spread, bound in ((1.0, 2.0), (9.0, 1.0), (9.0, 0.5)):
        W = BalancedManifold(3, 3, spread=spread).random_point(5, bound=bound)
        s = np.linalg.svd(W, compute_uv=False)
        assert np.all(s >= bound / np.sqrt(spread) * (1 - 1e-12))
        assert np.all(s <= bound * np.sqrt(spread) * (1 + 1e-12))
        if spread == 1.0:
            np.testing.assert_allclose(s, bound, rtol=1e-12)  # Lambda = bound * I
        else:
            assert np.ptp(s) > 0.1 * bound  # a genuine spread, not a fixed value
        Wp = PymanoptBalanced(3, 3, seed=0, spread=spread).random_point()
        sp = np.linalg.svd(Wp, compute_uv=False)
        assert np.all((sp >= 1 / np.sqrt(spread) - 1e-12) & (sp <= np.sqrt(spread) + 1e-12))
    with pytest.raises(ValueError, match="spread"):
        BalancedManifold(2, 2, spread=0.5)
