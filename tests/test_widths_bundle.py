"""The fiber bundle M -> (rank-r matrices (d_N, d_0), g^N) for general widths.

Core (dln_manifolds.alignment, .balanced, .fiber on lists of layers) and the geomstats
adapters (``BalancedManifold(widths=...).equip_with_quotient()``): projections, the
vertical space as the image of the skew generators, the horizontal lift, the orbit
alignment, the horizontal log against brute force (the stacked path for square layers
given as lists; the geodesic equation of g^N by finite differences and the log of M for
rectangular ends), parallel transport, generators and group elements of
GL(d_1) x ... x GL(d_{N-1}), and geomstats' generic FiberBundle and QuotientMetric test
cases on widths points.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

pytest.importorskip("geomstats")

import geomstats.backend as gs  # noqa: E402
from geomstats.test_cases.geometry.fiber_bundle import FiberBundleTestCase  # noqa: E402
from geomstats.test_cases.geometry.quotient_metric import QuotientMetricTestCase  # noqa: E402
from geomstats_data import (  # noqa: E402
    CONNECTION,
    DIST,
    FIBER_BUNDLE,
    GEODESIC_BVP,
    RIEMANNIAN,
    TWO_POINT,
    BaseGenerator,
    ComponentGenerator,
    DataBasedParametrizer,
    WidthsGenerator,
    data_class,
    without,
)

import dln_manifolds as dm  # noqa: E402
from dln_manifolds import submanifold_geodesics as sg  # noqa: E402
from dln_manifolds.depth_metric import DepthFrame  # noqa: E402
from dln_manifolds.geodesics import DifferentComponentsError  # noqa: E402
from dln_manifolds.geomstats import BalancedManifold  # noqa: E402
from dln_manifolds.pymanopt import Fiber as PymanoptFiber  # noqa: E402


@pytest.fixture(autouse=True)
def _seed(request):
    gs.random.seed(zlib.crc32(request.node.nodeid.encode()))


def widths_id(widths) -> str:
    """Test id of a widths tuple, "3-4-2" (the ids seed the data: kept as they were)."""
    return "-".join(str(w) for w in widths)


def flat(layers) -> np.ndarray:
    return np.concatenate([np.ravel(z) for z in layers])


def norm(layers) -> float:
    return float(np.linalg.norm(flat(layers)))


def _point(widths, seed, sign=None):
    """A balanced point; for d_0 = d_N, with det(phi) of the given sign (output row flip,
    an orthogonal move of the output side that keeps the balance)."""
    W = dm.random_balanced_point(widths=widths, seed=seed)
    if sign is not None and np.sign(np.linalg.det(dm.end_to_end(W))) != sign:
        W[-1] = W[-1] * np.array([-1.0] + [1.0] * (widths[-1] - 1))[:, None]
    return W


def _tangent(W, seed, size=1.0):
    rng = np.random.default_rng(seed)
    V = dm.balanced_tangent_projection(W, [rng.standard_normal(w.shape) for w in W])
    return [size * v / norm(V) for v in V]


def _rotations(widths, seed):
    rng = np.random.default_rng(seed)
    return [np.linalg.qr(rng.standard_normal((d, d)))[0] for d in widths[1:-1]]


def _skew_generators(widths):
    """A basis of so(d_1) x ... x so(d_{N-1}), as lists of N - 1 matrices."""
    out = []
    for k, d in enumerate(widths[1:-1]):
        for i in range(d):
            for j in range(i + 1, d):
                a = [np.zeros((h, h)) for h in widths[1:-1]]
                a[k][i, j], a[k][j, i] = 1.0, -1.0
                out.append(a)
    return out


WIDTHS = [(3, 4, 2), (2, 3, 3, 4)]


# --- projections, vertical space, horizontal lift -----------------------------------------


@pytest.mark.parametrize("widths", WIDTHS, ids=widths_id)
def test_projections_are_complementary_orthogonal_projections(widths):
    W = _point(widths, 1)
    Z = [np.random.default_rng(2).standard_normal(w.shape) for w in W]
    T = dm.balanced_tangent_projection(W, Z)
    H, V = dm.horizontal_projection(W, T), dm.vertical_projection(W, T)
    assert np.allclose(flat(H) + flat(V), flat(T), atol=1e-13)
    assert abs(flat(H) @ flat(V)) < 1e-13 * norm(T) ** 2
    assert np.allclose(flat(dm.horizontal_projection(W, H)), flat(H), atol=1e-13)
    assert np.allclose(flat(dm.vertical_projection(W, V)), flat(V), atol=1e-13)
    # vertical: killed by dphi; horizontal: orthogonal to every vertical vector
    assert np.linalg.norm(dm.end_to_end_differential(W, V)) < 1e-12
    # the adapter's projections are the core's, on flat points
    space = BalancedManifold(widths=widths)
    space.equip_with_quotient()
    bundle = space.fiber_bundle
    Wf, Tf = space.layout.join(W), space.layout.join(T)
    assert np.allclose(bundle.horizontal_projection(Tf, Wf), flat(H), atol=1e-13)
    assert np.allclose(bundle.vertical_projection(Tf, Wf), flat(V), atol=1e-13)
    assert bundle.is_horizontal(flat(H), Wf) and bundle.is_vertical(flat(V), Wf)
    assert not bundle.is_horizontal(flat(T), Wf)  # negative control


@pytest.mark.parametrize("widths", WIDTHS, ids=widths_id)
def test_vertical_space_is_the_image_of_the_skew_generators(widths):
    """ker dphi in T_W M is {w_a : a in so(d_1) x ... x so(d_{N-1})} ([G] Thm 13)."""
    W = _point(widths, 3)
    frame = dm.BalancedFrame(W)
    images = np.stack([flat(dm.generator_to_tangent(W, a)) for a in _skew_generators(widths)])
    for row, a in zip(images, _skew_generators(widths), strict=True):
        Va = dm.generator_to_tangent(W, a)
        assert np.allclose(flat(dm.vertical_projection(W, Va)), row, atol=1e-12)
    s = np.linalg.svd(images, compute_uv=False)
    rank = int(np.sum(s > 1e-10 * s[0]))
    m, n = widths[-1], widths[0]
    assert rank == frame.dim - m * n  # dim of the fiber of phi on M
    _, vertical_basis = frame.orthonormal_basis()
    Vb = np.stack([flat([v[i] for v in vertical_basis]) for i in range(vertical_basis[0].shape[0])])
    assert Vb.shape[0] == rank
    coef = np.linalg.lstsq(images.T, Vb.T, rcond=None)[0]
    assert np.allclose(images.T @ coef, Vb.T, atol=1e-10)
    # negative control: a symmetric generator moves W off M (not vertical)
    a = [np.eye(d) for d in widths[1:-1]]
    a[0][0, 1] = a[0][1, 0] = 1.0
    Va = dm.generator_to_tangent(W, a)
    assert norm(dm.vertical_projection(W, Va)) < 0.99 * norm(Va)


@pytest.mark.parametrize("widths", WIDTHS, ids=widths_id)
def test_horizontal_lift_pushes_forward_with_the_depth_metric_norm(widths):
    W = _point(widths, 4)
    X = dm.end_to_end(W)
    Z = np.random.default_rng(5).standard_normal(X.shape)
    H = dm.horizontal_lift(W, Z)
    assert np.allclose(dm.end_to_end_differential(W, H), Z, atol=1e-12)
    assert np.allclose(flat(dm.horizontal_projection(W, H)), flat(H), atol=1e-12)
    gN = float(DepthFrame(X, len(W)).inner(Z, Z))
    assert abs(norm(H) ** 2 - gN) < 1e-10 * gN


# --- orbits and alignment ------------------------------------------------------------------


@pytest.mark.parametrize("widths", WIDTHS, ids=widths_id)
def test_orbit_action_keeps_the_product_and_the_balance(widths):
    W = _point(widths, 6)
    R = _rotations(widths, 7)
    moved = dm.orbit_action(R, W)
    assert np.allclose(dm.end_to_end(moved), dm.end_to_end(W), atol=1e-12)
    assert dm.balance_error(moved) < 1e-12
    assert np.allclose(flat(moved), flat(dm.group_action(R, W)), atol=1e-12)
    with pytest.raises(ValueError, match=r"rotations\[0\] must be orthogonal"):
        dm.orbit_action([2.0 * r for r in R], W)


@pytest.mark.parametrize("widths", WIDTHS, ids=widths_id)
def test_alignment_is_a_fixed_point_on_the_orbit_and_decreases_the_distance(widths):
    W, T = _point(widths, 8), _point(widths, 9)
    R = _rotations(widths, 10)
    aligned, rot = dm.orbit_alignment(dm.orbit_action(R, W), W, return_rotations=True)
    assert np.allclose(flat(aligned), flat(W), atol=1e-10)
    assert np.allclose(flat(dm.orbit_action(rot, dm.orbit_action(R, W))), flat(aligned))
    A = dm.orbit_alignment(W, T)
    gap = norm([a - t for a, t in zip(A, T, strict=True)])
    assert gap <= norm([w - t for w, t in zip(W, T, strict=True)])
    assert np.allclose(dm.end_to_end(A), dm.end_to_end(W), atol=1e-12)
    # stationary: one more sweep from the result does not move it
    assert np.allclose(flat(dm.orbit_alignment(A, T)), flat(A), atol=1e-9)


def test_square_lists_align_as_the_stack():
    W, T = dm.random_balanced_point(2, 3, seed=6), dm.random_balanced_point(2, 3, seed=1006)
    R = np.stack(_rotations((2, 2, 2, 2), 11))
    got = dm.orbit_alignment(list(dm.orbit_action(R, W)), list(T))
    want = dm.orbit_alignment(dm.orbit_action(R, W), T)
    assert np.allclose(np.stack(got), want, atol=1e-9)


# --- the horizontal log against brute force -------------------------------------------------


def test_square_list_log_matches_the_stacked_path():
    """Lists and stacks both lift depth_log (the former shooting upstairs agreed to the RK4
    error of its 20-step geodesics, 3.1e-7); measured 0 now."""
    W, T = dm.random_balanced_point(2, 3, seed=6), dm.random_balanced_point(2, 3, seed=1006)
    got = np.stack(dm.horizontal_log(list(W), list(T)))
    want = dm.horizontal_log(W, T)
    assert np.max(np.abs(got - want)) < 1e-10
    assert abs(np.linalg.norm(got) - np.linalg.norm(want)) < 1e-10  # the orbit distances


@pytest.mark.slow
def test_square_list_log_error_is_rk4():
    """With ``n_steps`` (fixed RK4 steps of depth_exp inside depth_log) the gap to the
    adaptive log shrinks like h^4."""
    W, T = dm.random_balanced_point(2, 3, seed=6), dm.random_balanced_point(2, 3, seed=1006)
    want = dm.horizontal_log(W, T, tol=1e-12)
    errs = [
        np.max(np.abs(np.stack(dm.horizontal_log(list(W), list(T), n_steps=n)) - want))
        for n in (10, 20)
    ]
    assert errs[1] < errs[0] / 8


def _geodesic_equation_residual(W, H, t=0.5, h=1e-2, n_steps=40):
    """|X'' + Gamma_X(X', X')| / |X'|^2 along X(s) = phi(exp_W(s H)) at s = t (central
    differences; the exp of M with ``n_steps`` RK4 steps)."""
    X = [dm.end_to_end(sg.balanced_exp(W, [s * v for v in H], n_steps)) for s in (t - h, t, t + h)]
    dX = (X[2] - X[0]) / (2 * h)
    ddX = (X[2] - 2 * X[1] + X[0]) / h**2
    acc = DepthFrame(X[1], len(W)).geodesic_acceleration(dX)
    return np.linalg.norm(ddX - acc) / np.linalg.norm(dX) ** 2


def test_rectangular_log_is_a_geodesic_of_the_depth_metric():
    """dphi of the horizontal log: the initial velocity of a g^N geodesic to phi(T), checked
    by the geodesic equation of g^N (rectangular Christoffel symbols) by finite differences,
    and exp_W(H) lands on the fiber of T."""
    widths = (3, 4, 2)
    W, T = _point(widths, 12), _point(widths, 13)
    H = dm.horizontal_log(W, T)
    assert np.allclose(flat(dm.horizontal_projection(W, H)), flat(H), atol=1e-12)
    end = sg.balanced_exp(W, H)
    assert np.allclose(dm.end_to_end(end), dm.end_to_end(T), atol=1e-9)
    assert _geodesic_equation_residual(W, H) < 1e-3  # orbit_distance = |H|: batched test
    # negative control: add a vertical part of 10%: the projected curve is no geodesic
    Vt = dm.vertical_projection(W, _tangent(W, 14))
    bent = [h + 0.1 * norm(H) * v / norm(Vt) for h, v in zip(H, Vt, strict=True)]
    assert _geodesic_equation_residual(W, bent) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("widths", WIDTHS, ids=widths_id)
def test_geodesic_alignment_against_the_log_of_m(widths):
    """The log of M (shooting on M, independent of depth_log) from W to the geodesic
    alignment of T is horizontal and equals horizontal_log(W, T), to the RK4 errors of the
    alignment's geodesic and of the log of M, which fall like h^4 (measured at (2, 3, 3, 4)
    with 20, 40, 80 steps for both: vertical part 1.6e-8, 1.3e-9, 8.8e-11 relative,
    |L - H| 1.0e-6, 6.7e-8, 4.3e-9; hence 80 steps here)."""
    W, T = _point(widths, 15), _point(widths, 16)
    A = dm.geodesic_orbit_alignment(T, W, n_steps=80)
    assert np.allclose(dm.end_to_end(A), dm.end_to_end(T), atol=1e-12)
    L = sg.balanced_log(W, A, n_steps=80)
    assert norm(dm.vertical_projection(W, L)) < 1e-8 * norm(L)
    assert np.allclose(flat(L), flat(dm.horizontal_log(W, T)), atol=1e-8)
    # negative control: the log to the Frobenius alignment has a vertical part
    L_frob = sg.balanced_log(W, dm.orbit_alignment(T, W))
    assert norm(dm.vertical_projection(W, L_frob)) > 1e-4 * norm(L_frob)


def test_components_of_square_ends_are_not_joined():
    widths = (2, 3, 2)
    W, T = _point(widths, 17, sign=1), _point(widths, 18, sign=-1)
    assert dm.orbit_distance(W, T) == np.inf
    with pytest.raises(DifferentComponentsError, match="different components"):
        dm.horizontal_log(W, T)
    # the geodesic alignment falls back to the Frobenius one
    got = dm.geodesic_orbit_alignment(T, W)
    assert np.allclose(flat(got), flat(dm.orbit_alignment(T, W)))


def test_log_options_are_checked():
    W = _point((3, 4, 2), 19)
    with pytest.raises(TypeError, match="options of depth_log"):
        dm.horizontal_log(W, W, foo=1e-8)
    with pytest.raises(ValueError, match="n_steps"):
        dm.horizontal_log(W, W, n_steps=0)
    with pytest.raises(ValueError, match="T must have the widths of W"):
        dm.horizontal_log(W, _point((3, 5, 2), 1))
    assert norm(dm.horizontal_log(W, W)) == 0.0
    assert norm(dm.horizontal_log(W, W, rtol=1e-8)) == 0.0  # passed to depth_log


# --- parallel transport ------------------------------------------------------------------


def test_square_list_transport_matches_the_stacked_path():
    """The horizontal lift of the g^N transport: lists integrate it upstairs, stacks
    transport downstairs with depth_parallel_transport (measured 1e-10)."""
    W = dm.random_balanced_point(2, 3, seed=6)
    frame = dm.BalancedFrame(W)
    rng = np.random.default_rng(1)
    V = frame.horizontal_lift(0.5 * rng.standard_normal((2, 2)))
    U = frame.horizontal_lift(rng.standard_normal((2, 2)))
    got, end = dm.horizontal_parallel_transport(list(W), list(V), list(U), return_end_point=True)
    want = dm.horizontal_parallel_transport(W, V, U)
    assert np.max(np.abs(np.stack(got) - want)) < 1e-8
    assert np.allclose(np.stack(end), sg.balanced_exp(W, V), atol=1e-12)


def test_rectangular_transport_is_an_isometry_and_carries_the_velocity():
    """The lift of the g^N transport: norm and inner products kept to the tolerance of
    depth_parallel_transport (measured 1.5e-11 relative, 3e-11; the former RK4 of the
    lifted field upstairs: 1.1e-7 at 20 steps); the velocity goes to the end velocity of
    the RK4 geodesic up to its error, which falls like h^4 (measured 3.9e-6, 2.6e-7 with
    10, 20 steps). U and V go in one batched call."""
    widths = (3, 4, 2)
    W = _point(widths, 20)
    frame = dm.BalancedFrame(W)
    rng = np.random.default_rng(21)
    V = frame.horizontal_lift(0.4 * rng.standard_normal((2, 3)))
    U = frame.horizontal_lift(rng.standard_normal((2, 3)))
    pair = [np.stack([a, b]) for a, b in zip(U, V, strict=True)]
    moved, ends = dm.horizontal_parallel_transport(
        [np.stack([w, w]) for w in W], [np.stack([v, v]) for v in V], pair, return_end_point=True
    )
    U1, V1, W1 = [m[0] for m in moved], [m[1] for m in moved], [e[0] for e in ends]
    assert abs(norm(U1) - norm(U)) < 1e-9 * norm(U)
    assert np.allclose(flat(dm.horizontal_projection(W1, U1)), flat(U1), atol=1e-12)
    assert abs(flat(U1) @ flat(V1) - flat(U) @ flat(V)) < 1e-9
    # the velocity is parallel: V goes to the end velocity of the geodesic
    errors = []
    for n, Vn in ((10, dm.horizontal_parallel_transport(W, V, V, n_steps=10)), (20, V1)):
        _, velocity = sg.balanced_exp(W, V, n, velocity=True)
        errors.append(np.max(np.abs(flat(Vn) - flat(velocity))))
    assert errors[1] < 1e-5 and errors[1] < errors[0] / 8  # order 4
    with pytest.raises(ValueError, match="U must be horizontal"):
        dm.horizontal_parallel_transport(W, V, _tangent(W, 22))


# --- generators and group elements of GL(d_1) x ... x GL(d_{N-1}) -----------------------------


@pytest.mark.parametrize("widths", [(2, 4, 3, 2), (3, 5, 4, 2)], ids=widths_id)
def test_generator_round_trips(widths):
    W = _point(widths, 23)
    rng = np.random.default_rng(24)
    a = [rng.standard_normal((d, d)) for d in widths[1:-1]]
    Va = dm.generator_to_tangent(W, a)
    b = dm.tangent_to_generator(W, Va)
    assert [x.shape for x in b] == [x.shape for x in a]
    assert np.allclose(flat(dm.generator_to_tangent(W, b)), flat(Va), atol=1e-12)
    assert norm(b) <= norm(a) + 1e-12  # the minimal-norm generator
    # b is orthogonal to the stabilizer: adding a stabilizing generator keeps w_a
    A = [np.eye(d) + 0.2 * x for d, x in zip(widths[1:-1], a, strict=True)]
    moved = dm.group_action(A, W)
    E = dm.fiber_group_element(W, moved)
    assert np.allclose(flat(dm.group_action(E, W)), flat(moved), atol=1e-10)
    assert np.allclose(flat(dm.fiber_group_element(W, W)), flat([np.eye(d) for d in widths[1:-1]]))


def _dense_chain(left, right):
    """Brute force: the dense matrix of (b_k) -> (b_p L_p - R_p b_{p-1})_p (b_0 = b_N = 0),
    row-major, by Kronecker products (the solver in the library is matrix-free)."""
    N, hidden = len(left), [w.shape[0] for w in left[:-1]]
    cols = np.cumsum([0] + [h * h for h in hidden])
    rows = np.cumsum([0] + [w.size for w in left])
    M = np.zeros((rows[-1], cols[-1]))
    for p in range(N):
        if p < N - 1:
            M[rows[p] : rows[p + 1], cols[p] : cols[p + 1]] = np.kron(np.eye(hidden[p]), left[p].T)
        if p > 0:
            M[rows[p] : rows[p + 1], cols[p - 1] : cols[p]] = -np.kron(
                right[p], np.eye(left[p].shape[1])
            )
    return M


@pytest.mark.parametrize("widths", [(5, 12, 12, 5), (3, 6, 5, 6, 2)], ids=widths_id)
def test_matrix_free_solves_match_the_dense_minimal_norm_solution(widths):
    """LSQR (matrix-free) against the SVD least squares of the dense matrix: the
    minimal-norm generator and the group element nearest the identity (measured 1e-14 to
    3e-13 relative; LAPACK's gelsy on the dense matrix, the former solver, was off by up
    to 4e-1 relative at widths (5, 20, 20, 5) to (10, 30, 30, 30, 10): its rank decision
    kept part of the stabilizer, so its generator was not the minimal-norm one)."""
    W = _point(widths, 32)
    rng = np.random.default_rng(33)
    a = [rng.standard_normal((d, d)) for d in widths[1:-1]]
    Va = dm.generator_to_tangent(W, a)
    M = _dense_chain(W, W)
    want = np.linalg.lstsq(M, flat(Va), rcond=None)[0]
    got = flat(dm.tangent_to_generator(W, Va))
    assert np.linalg.norm(got - want) <= 1e-8 * np.linalg.norm(want)
    # the group element nearest the identity: I + the minimal-norm correction
    moved = dm.group_action([np.eye(d) + 0.2 * x for d, x in zip(widths[1:-1], a, strict=True)], W)
    M = _dense_chain(W, moved)
    rhs = np.zeros(M.shape[0])
    rhs[: W[0].size], rhs[M.shape[0] - W[-1].size :] = flat([moved[0]]), -flat([W[-1]])
    eye = flat([np.eye(d) for d in widths[1:-1]])
    want = eye + np.linalg.lstsq(M, rhs - M @ eye, rcond=None)[0]
    got = flat(dm.fiber_group_element(W, moved))
    assert np.linalg.norm(got - want) <= 1e-8 * np.linalg.norm(want)
    # negative control: another generator of the same tangent (a stabilizer part added)
    # is not the minimal-norm one
    _, s, vh = np.linalg.svd(_dense_chain(W, W))
    kernel = vh[int(np.sum(s > 1e-10 * s[0])) :]
    assert kernel.shape[0] > 0
    other = np.linalg.lstsq(_dense_chain(W, W), flat(Va), rcond=None)[0] + kernel[0]
    assert np.allclose(_dense_chain(W, W) @ other, flat(Va), atol=1e-10)
    assert np.linalg.norm(flat(dm.tangent_to_generator(W, Va)) - other) > 0.5


def test_generators_and_group_elements_raise_where_none_exists():
    widths = (2, 4, 3, 2)
    W = _point(widths, 25)  # balanced: every layer has rank 2 < hidden widths
    X = dm.end_to_end(W)
    rng = np.random.default_rng(26)
    V = dm.fiber_tangent_projection(W, [rng.standard_normal(w.shape) for w in W])
    with pytest.raises(ValueError, match="V is not generated"):
        dm.tangent_to_generator(W, V)
    moved = dm.fiber_retraction(W, [0.2 * v for v in V], X=X)  # same fiber, other orbit
    assert np.allclose(dm.end_to_end(moved), X, atol=1e-10)
    with pytest.raises(ValueError, match="W_target is not in the orbit of W"):
        dm.fiber_group_element(W, moved)
    with pytest.raises(ValueError, match="W_target is not in the orbit of W"):
        dm.fiber_group_element(W, [1.1 * w for w in W])  # other fiber
    # negative control: the generated part of V is generated
    Vg = dm.generator_to_tangent(
        W,
        dm.tangent_to_generator(
            W, dm.generator_to_tangent(W, [rng.standard_normal((d, d)) for d in widths[1:-1]])
        ),
    )
    dm.tangent_to_generator(W, Vg)


def test_group_element_is_the_one_nearest_the_identity():
    """Widths (1, 2, 1): the stabilizer of a balanced point is diag(1, c); the element nearest
    the identity is invertible (the minimal-norm one, diag(1, 0), is not)."""
    W = [np.array([[1.0], [0.0]]), np.array([[1.0, 0.0]])]
    (A,) = dm.fiber_group_element(W, W)
    assert np.allclose(A, np.eye(2))
    R = np.array([[0.0, -1.0], [1.0, 0.0]])
    moved = dm.group_action([R], W)
    (B,) = dm.fiber_group_element(W, moved)
    assert np.allclose(flat(dm.group_action([B], W)), flat(moved))
    assert abs(np.linalg.det(B)) > 0.1


def test_pymanopt_fiber_generators_for_widths():
    widths = (3, 5, 4, 2)
    X = np.random.default_rng(27).standard_normal((2, 3))
    F = PymanoptFiber(X, 3, seed=2, widths=widths)
    x = F.random_point()
    a = [np.eye(5) * 0.5, np.diag([1.0, 2.0, 3.0, 4.0])]
    w = F.generator_to_tangent(x, a)
    b = F.tangent_to_generator(x, w)
    assert np.allclose(flat(F.generator_to_tangent(x, b)), flat(w), atol=1e-12)


# --- the geomstats bundle and quotient metric ---------------------------------------------------


def test_geomstats_quotient_of_general_widths():
    widths = (3, 4, 2)
    space = BalancedManifold(widths=widths)
    quotient = space.equip_with_quotient()
    assert quotient.matrix_shape == (2, 3) and quotient.dim == 6
    bundle = space.fiber_bundle
    W = space.random_point(2)
    x = bundle.riemannian_submersion(W)
    assert x.shape == (2, 6)
    assert np.allclose(bundle.riemannian_submersion(bundle.lift(x)), x, atol=1e-12)
    Z = np.random.default_rng(28).standard_normal((2, 6))
    H = bundle.horizontal_lift(Z, fiber_point=W)
    assert np.allclose(bundle.tangent_riemannian_submersion(H, W), Z, atol=1e-12)
    G = quotient.metric.metric_matrix(x[0])
    frame = DepthFrame(x[0].reshape(2, 3), 2)
    assert np.allclose(Z[0] @ G @ Z[0], frame.inner(Z[0].reshape(2, 3), Z[0].reshape(2, 3)))
    assert np.allclose(
        quotient.metric.inner_product(Z[0], Z[1], x[0]),
        frame.inner(Z[0].reshape(2, 3), Z[1].reshape(2, 3)),
    )
    y = x[1]
    log = quotient.metric.log(y, x[0])
    assert np.allclose(quotient.metric.exp(log, x[0]), y, atol=1e-9)
    assert np.isclose(quotient.metric.dist(x[0], y), quotient.metric.norm(log, x[0]))
    aligned = bundle.align(W[1], W[0])
    assert np.allclose(bundle.riemannian_submersion(aligned), x[1], atol=1e-10)
    # lists of layers act as in the core
    layers = space.to_layers(W[0])
    R = _rotations(widths, 29)
    moved = space.group_action(R, layers)
    assert np.allclose(dm.end_to_end(moved), x[0].reshape(2, 3))


# --- geomstats' generic test cases on points of general widths ------------------------------

_SKIP_BUNDLE = ("integrability_tensor_vec", "integrability_tensor_derivative_vec")
_ALIGN = {"align", "log_after_align_is_horizontal"}
#: the default run: no alignment (a depth_log and an RK4 geodesic per pair, about 1 s)
WidthsBundleTestData = data_class(
    "WidthsBundleTestData", without(FIBER_BUNDLE, _ALIGN), skips=_SKIP_BUNDLE
)
WidthsBundleFullTestData = data_class("WidthsBundleFullTestData", FIBER_BUNDLE, skips=_SKIP_BUNDLE)

#: as tests/test_geomstats_generic.py: coordinate expressions, curvature and the optional
#: methods are not implemented by geomstats' QuotientMetric; the metric matrix is.
_QUOTIENT_SKIPS = (
    "injectivity_radius_vec",
    "curvature_derivative_vec",
    "directional_curvature_derivative_vec",
    "inner_product_derivative_matrix_vec",
    "christoffels_vec",
    "geodesic_equation_vec",
    "riemann_tensor_vec",
    "curvature_vec",
    "ricci_tensor_vec",
    "directional_curvature_vec",
    "covariant_riemann_tensor_vec",
    "covariant_riemann_tensor_is_skew_symmetric_1",
    "covariant_riemann_tensor_is_skew_symmetric_2",
    "covariant_riemann_tensor_bianchi_identity",
    "covariant_riemann_tensor_is_interchange_symmetric",
    "sectional_curvature_vec",
    "scalar_curvature_vec",
)
#: exp is the RK4 geodesic upstairs, log the lift of the adaptive depth_log: exp_after_log
#: and reversed geodesics hold to the RK4 error of exp.
_QUOTIENT_TOL = {
    name: {"atol": 1e-5}
    for name in (
        "exp_after_log",
        "log_after_exp",
        "geodesic_boundary_points",
        "geodesic_bvp_reverse",
        "dist_is_symmetric",
        "squared_dist_is_symmetric",
        "parallel_transport_ivp_norm",
        "parallel_transport_bvp_norm",
    )
}
_GROUPS = (CONNECTION, GEODESIC_BVP, DIST, RIEMANNIAN)
WidthsQuotientTestData = data_class(
    "WidthsQuotientTestData", *_GROUPS, skips=_QUOTIENT_SKIPS, tolerances=_QUOTIENT_TOL
)
#: the default run: the metric at one point and one exp (each log or transport of the
#: quotient solves g^N geodesics, about 1 s for far pairs: the slow classes)
WidthsQuotientOnePointTestData = data_class(
    "WidthsQuotientOnePointTestData",
    without(RIEMANNIAN, TWO_POINT | {"parallel_transport_ivp_norm"}),
    {"random": ["exp_belongs"]},
    skips=tuple(
        k
        for k in _QUOTIENT_SKIPS
        if any(k.removesuffix("_vec") in names for names in RIEMANNIAN.values())
    ),
)


class PositiveWidthsGenerator(WidthsGenerator):
    """Balanced points of general widths with d_0 = d_N whose end-to-end matrix has a
    positive determinant (one component: the geodesic tests pair points a curve joins)."""

    def _kept(self, pts):
        layers = self.space.layout.split(gs.to_numpy(pts))
        signs = np.sign(np.linalg.det(_product(layers)))
        return [p for p, s in zip(pts, signs, strict=True) if s > 0]


def _product(layers):
    X = layers[0]
    for layer in layers[1:]:
        X = layer @ X
    return X


def _make(name, bases, slow, **attrs):
    if slow:
        attrs["pytestmark"] = pytest.mark.slow
    globals()[name] = DataBasedParametrizer(name, bases, attrs)


#: (widths, slow): (3, 4, 2) in the default run (rectangular ends, one component);
#: (2, 3, 2) (square ends, two components) and the full data in the slow run.
for _widths, _slow in (((3, 4, 2), False), ((3, 4, 2), True), ((2, 3, 2), True)):
    _total = BalancedManifold(widths=_widths)
    _quotient = _total.equip_with_quotient()
    _square = _widths[0] == _widths[-1]
    _sfx = "w" + "".join(map(str, _widths)) + ("_full" if _slow else "")
    _up = PositiveWidthsGenerator(_total) if _square else WidthsGenerator(_total)
    _down = ComponentGenerator(_quotient, 1) if _square else BaseGenerator(_quotient, 1)
    _make(
        f"TestWidthsBundle_{_sfx}",
        (FiberBundleTestCase,),
        _slow,
        total_space=_total,
        base=_quotient,
        bundle=_total.fiber_bundle,
        data_generator=_up,
        base_data_generator=_down,
        testing_data=WidthsBundleFullTestData() if _slow else WidthsBundleTestData(),
    )
    _make(
        f"TestWidthsQuotientMetric_{_sfx}",
        (QuotientMetricTestCase,),
        _slow,
        space=_quotient,
        data_generator=_down,
        testing_data=WidthsQuotientTestData() if _slow else WidthsQuotientOnePointTestData(),
    )


@pytest.mark.parametrize(
    "widths", [(3, 4, 2), pytest.param((2, 3, 3, 4), marks=pytest.mark.slow)], ids=widths_id
)
def test_downstairs_log_agrees_with_the_horizontal_geodesic_upstairs(widths):
    """The log is the lift of depth_log ([G] Thm 13); the RK4 horizontal geodesic upstairs
    from it lands on the fiber of T, with an error falling like h^4 (measured for these
    pairs: 1.5e-8, 9.1e-10, 5.8e-11 relative with 10, 20, 40 steps at (3, 4, 2); 1.2e-8,
    7.8e-10, 6.8e-11 at (2, 3, 3, 4)). The former upstairs Newton shooting agreed with this
    log to its own RK4 error (6.1e-6, 3.4e-7, 2.0e-8 with 10, 20, 40 steps on a far pair
    at (3, 4, 2))."""
    W = _point(widths, 34)
    T = dm.orbit_action(_rotations(widths, 35), sg.balanced_exp(W, _tangent(W, 35, size=1.0)))
    Y = dm.end_to_end(T)
    H = dm.horizontal_log(W, T)
    misses = [
        np.linalg.norm(dm.end_to_end(sg.balanced_exp(W, H, n)) - Y) / np.linalg.norm(Y)
        for n in (10, 20)
    ]
    assert misses[1] < 1e-8 and misses[1] < misses[0] / 8
    assert abs(dm.orbit_distance(W, T) - dm.depth_distance(dm.end_to_end(W), Y, len(W))) < 1e-9
    # negative control: the first-order velocity lift(Y - X) misses the fiber
    first = dm.horizontal_lift(W, Y - dm.end_to_end(W))
    miss = np.linalg.norm(dm.end_to_end(sg.balanced_exp(W, first, 20)) - Y)
    assert miss > 1e-2 * np.linalg.norm(Y)


def test_batched_lists_match_one_network_at_a_time():
    """Layers with leading batch axes: one network per index, one depth_log call."""
    widths = (3, 4, 2)
    Ws = [_point(widths, 36 + i) for i in range(3)]
    Ts = [sg.balanced_exp(w, _tangent(w, 46 + i, size=0.5)) for i, w in enumerate(Ws)]
    Wb = [np.stack([w[k] for w in Ws]) for k in range(len(widths) - 1)]
    Tb = [np.stack([t[k] for t in Ts]) for k in range(len(widths) - 1)]
    H = dm.horizontal_log(Wb, Tb)
    dist = dm.orbit_distance(Wb, Tb)
    assert dist.shape == (3,)
    for i in range(3):
        assert abs(dist[i] - norm([h[i] for h in H])) < 1e-12
    one = dm.horizontal_log(Ws[1], Ts[1])
    assert np.allclose(flat([h[1] for h in H]), flat(one), atol=1e-10)
    # negative control: the networks are not interchangeable
    assert not np.allclose(flat([h[0] for h in H]), flat(one))
    # transport of batched lists: test_rectangular_transport_is_an_isometry_and_carries_...


def test_log_is_the_minimizing_geodesic():
    """Widths (2, 3, 2): the base is GL(2) with g^2, so the quotient distance is the depth
    distance of the square matrices. For this pair the Newton solve from phi(T) - X of the
    former upstairs shooting landed on a longer geodesic (3.22, not 2.63); the log of g^N
    downstairs starts from the polar path."""
    space = BalancedManifold(widths=(2, 3, 2))
    metric = space.equip_with_quotient().metric
    x = np.array([0.823085, 0.143908, 0.037823, 0.568417])
    y = np.array([-1.669608, -0.014856, -0.277027, -0.545926])
    want = dm.depth_distance(x.reshape(2, 2), y.reshape(2, 2), 2)
    assert abs(metric.dist(x, y) - want) < 1e-9
    # negative control: a log that does not converge is an error, not a wrong distance
    W, T = (space.to_layers(space.fiber_bundle.lift(p)) for p in (x, y))
    with pytest.raises(dm.LogConvergenceError):
        dm.orbit_distance(W, T, max_iter=1)
