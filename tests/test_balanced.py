"""Tests for the balanced manifold M and the Riemannian submersion onto (M_d, g^N).

Brute-force references: dense Jacobians of the moment map G and of phi,
their null spaces (scipy.linalg.null_space), finite differences, and solvers
on (M_d, g^N). Rounding-level tolerances are a few hundred eps times the
scale (all computations are O(N d^3) products of well-conditioned matrices).
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pymanopt
import pytest
import scipy.linalg
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st
from pymanopt.optimizers import ConjugateGradient, SteepestDescent, TrustRegions
from slopes import taylor_slopes

from dln_manifolds import (
    BalancedFrame,
    balance_error,
    balanced_normal_multipliers,
    balanced_orthonormal_basis,
    balanced_restore,
    balanced_retraction,
    balanced_riemannian_hessian,
    balanced_tangent_projection,
    balanced_weingarten,
    check_balanced,
    depth_inner_product,
    end_to_end,
    end_to_end_differential,
    horizontal_lift,
    horizontal_projection,
    lifted_gradient,
    moments,
    random_balanced_point,
    vertical_projection,
)
from dln_manifolds.pymanopt import BalancedManifold, EndToEndMatrices

# pymanopt's diagnostics convert 1-element arrays to scalars (numpy deprecation, not ours)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim:DeprecationWarning"
)

TOL = 1e-12  # rounding level for O(N d^3) well-conditioned products (values O(1))


# ---------------------------------------------------------------------------
# dense references
# ---------------------------------------------------------------------------


def moment_derivative(W, Z):
    """dG_k(Z) = Z_k W_k^T + W_k Z_k^T - Z_{k+1}^T W_{k+1} - W_{k+1}^T Z_{k+1}."""
    T = np.swapaxes
    return (
        Z[:-1] @ T(W[:-1], 1, 2)
        + W[:-1] @ T(Z[:-1], 1, 2)
        - T(Z[1:], 1, 2) @ W[1:]
        - T(W[1:], 1, 2) @ Z[1:]
    )


def dense_jacobian(f, W):
    """Dense matrix of a linear map on (N, d, d) arrays, built column by column."""
    n = W.size
    cols = []
    for i in range(n):
        E = np.zeros(n)
        E[i] = 1.0
        cols.append(np.ravel(f(E.reshape(W.shape))))
    return np.array(cols).T


def dense_tangent_basis(W):
    """Orthonormal basis (columns) of T_W M = ker dG (dense null space)."""
    return scipy.linalg.null_space(dense_jacobian(lambda Z: moment_derivative(W, Z), W))


def dense_vertical_basis(W):
    """Orthonormal basis of ker dG ∩ ker dphi."""
    J = np.vstack(
        [
            dense_jacobian(lambda Z: moment_derivative(W, Z), W),
            dense_jacobian(lambda Z: end_to_end_differential(W, Z), W),
        ]
    )
    return scipy.linalg.null_space(J)


def point(d, N, seed, kind="generic"):
    """Balanced points with generic, exactly repeated, or close singular values."""
    rng = np.random.default_rng(seed)
    if kind == "generic":
        return random_balanced_point(d, N, rng)
    if kind == "identity":
        return random_balanced_point(d, N, rng, singular_values=np.ones(d))
    if kind == "repeated":
        sv = np.repeat([1.7, 0.6], [d - d // 2, d // 2])
        return random_balanced_point(d, N, rng, singular_values=sv)
    if kind == "close":
        sv = 1.0 + 1e-9 * np.arange(d)
        return random_balanced_point(d, N, rng, singular_values=sv)
    raise ValueError(kind)


KINDS = ["generic", "identity", "repeated", "close"]


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# ---------------------------------------------------------------------------
# points, frames, checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_random_point_and_frames(kind):
    W = point(4, 5, 1, kind)
    assert balance_error(W) < 1e-14
    frame = BalancedFrame(W)
    Q, lam = frame.Q, frame.lam
    assert np.all(np.diff(lam) <= 0) and lam[-1] > 0
    np.testing.assert_allclose(
        np.swapaxes(Q, 1, 2) @ Q, np.broadcast_to(np.eye(4), Q.shape), atol=TOL
    )
    np.testing.assert_allclose((Q[1:] * lam) @ np.swapaxes(Q[:-1], 1, 2), W, atol=TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_frames_stay_accurate_along_depth(kind):
    """Regression: propagating Q_p = W_p Q_{p-1} / Lambda amplifies rounding errors
    geometrically in N (reconstruction error 4e-9 at d = 8, N = 64); the clustered
    per-layer SVD keeps W_p = Q_p Lambda Q_{p-1}^T to rounding at N = 300."""
    W = point(5, 300, 21, kind)
    frame = BalancedFrame(W)
    Q, lam = frame.Q, frame.lam
    # no drift along depth; isolated layers reach ~1e-13 (eps / relative gap ~ 0.03)
    assert np.max(np.abs((Q[1:] * lam) @ np.swapaxes(Q[:-1], 1, 2) - W)) < 1e-12
    Z = np.random.default_rng(22).standard_normal(W.shape)
    P = balanced_tangent_projection(W, Z)
    assert np.linalg.norm(moment_derivative(W, P)) < 1e-13 * np.linalg.norm(W) * np.linalg.norm(Z)


def test_frames_reject_unbalanced_points(rng):
    W = random_balanced_point(3, 3, rng)
    W[2] *= 1.1
    with pytest.raises(ValueError, match="not balanced"):
        BalancedFrame(W)
    with pytest.raises(ValueError, match="not balanced"):
        balanced_tangent_projection(W, W)


def test_random_point_spread(rng):
    W = random_balanced_point(3, 4, rng, spread=9.0)
    s = np.linalg.svd(W, compute_uv=False)
    assert np.all(s <= 3.0 + 1e-12) and np.all(s >= 1 / 3.0 - 1e-12)
    np.testing.assert_allclose(s, np.broadcast_to(s[0], s.shape), rtol=1e-12)
    with pytest.raises(ValueError, match="spread"):
        random_balanced_point(3, 4, rng, spread=0.5)
    with pytest.raises(ValueError, match="singular_values"):
        random_balanced_point(3, 4, rng, singular_values=[1.0, 0.0, 1.0])


def test_check_point_errors(rng):
    W = random_balanced_point(3, 3, rng)
    M = BalancedManifold(3, 3)
    np.testing.assert_array_equal(M.check_point(W), W)
    off = W.copy()
    off[1] *= 1.01
    with pytest.raises(ValueError, match="not on the balanced manifold"):
        M.check_point(off)
    with pytest.raises(ValueError, match="not on the balanced manifold"):
        check_balanced(W + 1e-3 * rng.standard_normal(W.shape))
    singular = balanced_restore(np.stack([np.diag([1.0, 1.0, 0.0])] * 3))
    with pytest.raises(ValueError, match="rank-deficient"):
        check_balanced(singular)
    with pytest.raises(ValueError, match="shape"):
        M.check_point(random_balanced_point(3, 4, rng))
    with pytest.raises(ValueError, match="shape"):
        check_balanced(np.ones((3, 2)))
    with pytest.raises(TypeError, match="real"):
        check_balanced(W.astype(complex))
    with pytest.raises(TypeError):
        check_balanced("W")
    with pytest.raises(ValueError, match="rank-deficient"):
        BalancedFrame(singular)


def test_inputs_not_mutated(rng):
    W = random_balanced_point(3, 3, rng)
    Z = rng.standard_normal(W.shape)
    W0, Z0 = W.copy(), Z.copy()
    balanced_tangent_projection(W, Z)
    balanced_retraction(W, Z, order=2)
    vertical_projection(W, Z)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(Z, Z0)


@pytest.mark.parametrize("depth_solver_max", [64, 0])  # sine transform, Thomas elimination
def test_leading_batch_axis_matches_single_points(depth_solver_max, monkeypatch):
    """A stack (B, N, d, d) mixing all KINDS (frame clusters in some points only) gives the
    single-point results: the samplers of dln_manifolds.langevin rely on this. Same
    operations point by point, so equal to rounding (TOL)."""
    import dln_manifolds.balanced as balanced_module

    monkeypatch.setattr(balanced_module, "_DST_MAX", depth_solver_max)
    W = np.stack([point(3, 4, 40 + i, kind) for i, kind in enumerate(KINDS)])
    Z = np.random.default_rng(41).standard_normal(W.shape)
    Wb, Zb = W.reshape((2, 2) + W.shape[1:]), Z.reshape((2, 2) + W.shape[1:])  # two batch axes
    frame = BalancedFrame(Wb)
    Q, lam = frame.Q, frame.lam
    assert Q.shape == (2, 2, 5, 3, 3) and lam.shape == (2, 2, 3)
    batched = {
        "tangent": balanced_tangent_projection(Wb, Zb),
        "multipliers": balanced_normal_multipliers(Wb, Zb),
        "horizontal": horizontal_projection(Wb, Zb),
        "vertical": vertical_projection(Wb, Zb, frame=frame),
        "restore": balanced_restore(Wb + 0.1 * Zb),
        "retraction": balanced_retraction(Wb, 0.1 * Zb, order=2),
    }
    for b in range(4):
        w, z = W[b], Z[b]
        single = {
            "tangent": balanced_tangent_projection(w, z),
            "multipliers": balanced_normal_multipliers(w, z),
            "horizontal": horizontal_projection(w, z),
            "vertical": vertical_projection(w, z),
            "restore": balanced_restore(w + 0.1 * z),
            "retraction": balanced_retraction(w, 0.1 * z, order=2),
        }
        for name, value in single.items():
            got = batched[name].reshape((4,) + value.shape)[b]
            assert rel(got, value) < TOL, name
        Qb, lb = Q.reshape(4, 5, 3, 3)[b], lam.reshape(4, 3)[b]
        assert rel((Qb[1:] * lb) @ np.swapaxes(Qb[:-1], 1, 2), w) < TOL
    assert balance_error(Wb) == max(balance_error(w) for w in W)
    unbalanced = W.copy()
    unbalanced[2, 1] *= 1.1
    with pytest.raises(ValueError, match="not balanced"):
        balanced_tangent_projection(unbalanced, Z)
    with pytest.raises(ValueError, match="Z must have shape"):
        balanced_tangent_projection(W, Z[:2])


def test_simons_cone(rng):
    """[G] Remark 8: for d = N = 2, eq. 4.25-4.27 hold, hence |W_1|^2 = |W_2|^2 (eq. 4.28)."""
    for _ in range(5):
        W = random_balanced_point(2, 2, rng)
        (x1, x2), (x3, x4) = W[0]
        (x5, x6), (x7, x8) = W[1]
        np.testing.assert_allclose(x5**2 + x7**2, x1**2 + x2**2, rtol=TOL)  # (4.25)
        np.testing.assert_allclose(x5 * x6 + x7 * x8, x1 * x3 + x2 * x4, atol=TOL)  # (4.26)
        np.testing.assert_allclose(x6**2 + x8**2, x3**2 + x4**2, rtol=TOL)  # (4.27)
        np.testing.assert_allclose(np.sum(W[0] ** 2), np.sum(W[1] ** 2), rtol=TOL)  # (4.28)


# ---------------------------------------------------------------------------
# tangent projection and normal space
# ---------------------------------------------------------------------------


@settings(max_examples=12)
@given(
    d=st.integers(1, 3),
    N=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(KINDS),
)
def test_projection_equals_dense_nullspace(d, N, seed, kind):
    W = point(d, N, seed, kind)
    Z = np.random.default_rng(seed + 1).standard_normal(W.shape)
    P = balanced_tangent_projection(W, Z)
    if N == 1:
        np.testing.assert_allclose(P, Z, atol=0)
        return
    K = dense_tangent_basis(W)
    assert K.shape[1] == d * d + (N - 1) * d * (d - 1) // 2  # [G] eq. 4.6
    dense = (K @ (K.T @ Z.ravel())).reshape(W.shape)
    assert rel(P, dense) < 1e-12


@pytest.mark.parametrize("kind", KINDS)
def test_projection_properties(kind, rng):
    W = point(4, 6, 7, kind)
    Z = rng.standard_normal(W.shape)
    P = balanced_tangent_projection(W, Z)
    # tangent: dG(PZ) = 0 relative to |dG| |Z| scale
    scale = np.linalg.norm(W) * np.linalg.norm(Z)
    assert np.linalg.norm(moment_derivative(W, P)) < 1e-12 * scale
    # idempotent
    assert rel(balanced_tangent_projection(W, P), P) < 1e-13
    # orthogonal: the normal part is w_S with symmetric S, and orthogonal to tangents
    S = balanced_normal_multipliers(W, Z)
    np.testing.assert_allclose(S, np.swapaxes(S, 1, 2), atol=TOL)
    Sp = np.concatenate([np.zeros((1, 4, 4)), S, np.zeros((1, 4, 4))])
    wS = Sp[1:] @ W - W @ Sp[:-1]
    assert rel(Z - P, wS) < 1e-12
    T = balanced_tangent_projection(W, rng.standard_normal(W.shape))
    assert abs(np.vdot(Z - P, T)) < 1e-12 * np.linalg.norm(Z) * np.linalg.norm(T)


def test_projection_dense_at_repeated_values_larger():
    """d = 4 with a doubly repeated value and Lambda = I against the dense null space."""
    for kind in ("repeated", "identity"):
        W = point(4, 3, 3, kind)
        Z = np.random.default_rng(4).standard_normal(W.shape)
        K = dense_tangent_basis(W)
        assert (
            rel(balanced_tangent_projection(W, Z), (K @ (K.T @ Z.ravel())).reshape(W.shape)) < 1e-12
        )


@pytest.mark.parametrize("kind", KINDS)
def test_both_depth_solvers_match_dense(kind, monkeypatch):
    """The sine-transform path (N - 1 <= 64) and the Thomas path agree with the dense null space."""
    import dln_manifolds.balanced as balanced_module

    W = point(3, 6, 31, kind)
    Z = np.random.default_rng(32).standard_normal(W.shape)
    K = dense_tangent_basis(W)
    dense = (K @ (K.T @ Z.ravel())).reshape(W.shape)
    assert rel(balanced_tangent_projection(W, Z), dense) < 1e-12
    monkeypatch.setattr(balanced_module, "_DST_MAX", 0)
    assert rel(balanced_tangent_projection(W, Z), dense) < 1e-12


def test_lifted_gradients_are_tangent(rng):
    """[G] Thm 1: Euclidean gradients of E(phi(W)) are tangent to M."""
    W = random_balanced_point(3, 5, rng)
    G = lifted_gradient(W, rng.standard_normal((3, 3)))
    assert rel(balanced_tangent_projection(W, G), G) < 1e-13
    assert np.linalg.norm(moment_derivative(W, G)) < 1e-12 * np.linalg.norm(W) * np.linalg.norm(G)


# ---------------------------------------------------------------------------
# retraction
# ---------------------------------------------------------------------------


def test_retraction_stays_balanced_after_many_steps():
    rng = np.random.default_rng(11)
    W = random_balanced_point(2, 3, rng)
    for _ in range(10_000):
        V = balanced_tangent_projection(W, 0.05 * rng.standard_normal(W.shape))
        W = balanced_retraction(W, V)
    assert balance_error(W) < 1e-10
    assert np.linalg.cond(end_to_end(W)) < 1e12


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("order", [1, 2])
def test_retraction_orders(kind, order, rng):
    W = point(3, 4, 5, kind)
    V = balanced_tangent_projection(W, rng.standard_normal(W.shape))
    V /= np.linalg.norm(V)
    np.testing.assert_allclose(balanced_retraction(W, np.zeros_like(W), order=order), W, atol=TOL)
    ts = np.logspace(-1, -3, 5)
    err, tan = [], []
    for t in ts:
        R = balanced_retraction(W, t * V, order=order)
        assert balance_error(R) < 1e-13
        err.append(np.linalg.norm(R - W - t * V))
        tan.append(np.linalg.norm(balanced_tangent_projection(W, R - W - t * V)))
    slope = np.polyfit(np.log(ts), np.log(err), 1)[0]
    assert abs(slope - 2) < 0.1  # first order: ambient error O(t^2)
    slope_tan = np.polyfit(np.log(ts), np.log(tan), 1)[0]
    # second order: the O(t^2) term is normal, the tangential error is O(t^3)
    assert abs(slope_tan - (3 if order == 2 else 2)) < 0.15


# ---------------------------------------------------------------------------
# gradient and Hessian
# ---------------------------------------------------------------------------


def _phi(W):
    X = W[0]
    for p in range(1, W.shape[0]):
        X = W[p] @ X
    return X


def _energy(target, target2):
    """A strictly convex, non-quadratic E: sum log cosh(X - T) + |X - T2|^2 / 4."""

    def E(X):
        return anp.sum(anp.log(anp.cosh(X - target))) + 0.25 * anp.sum((X - target2) ** 2)

    return E


def _problem(manifold, E):
    @pymanopt.function.autograd(manifold)
    def cost(W):
        return E(_phi(W))

    return pymanopt.Problem(manifold, cost)


@pytest.mark.parametrize("kind", ["generic", "identity"])
@pytest.mark.parametrize("lifted", [True, False])
def test_gradient_and_hessian_slopes(kind, lifted, rng):
    """Slopes 2 and 3 (second-order retraction) for E(phi(W)) and for a cost that is not
    a function of phi, whose Euclidean gradient has a normal part (exercising the Weingarten
    term: for lifted losses the gradient is tangent and that term vanishes)."""
    d, N = 3, 3
    M = BalancedManifold(d, N, seed=2)
    E = _energy(rng.standard_normal((d, d)), rng.standard_normal((d, d)))
    C = rng.standard_normal((N, d, d))
    if lifted:
        problem = _problem(M, E)
    else:

        @pymanopt.function.autograd(M)
        def cost(W):
            return E(_phi(W)) + 0.5 * anp.sum((W - C) ** 2) + 0.25 * anp.sum(W**4)

        problem = pymanopt.Problem(M, cost)
        egrad = problem.euclidean_gradient(point(d, N, 9, kind))
        assert np.linalg.norm(egrad - M.projection(point(d, N, 9, kind), egrad)) > 0.1
    W = point(d, N, 9, kind)
    V = M.random_tangent_vector(W)
    g, h = taylor_slopes(problem, W, V)
    assert g > 1.9
    assert h > 2.85


def test_weingarten_against_finite_differences(rng):
    """W_V(n) = P(D_V P [n]); the derivative of P by central differences (error O(t^2))."""
    W = random_balanced_point(3, 4, rng)
    V = balanced_tangent_projection(W, rng.standard_normal(W.shape))
    Z = rng.standard_normal(W.shape)
    n = Z - balanced_tangent_projection(W, Z)
    t = 1e-5
    Wp = balanced_retraction(W, t * V)
    Wm = balanced_retraction(W, -t * V)
    dP = (balanced_tangent_projection(Wp, n) - balanced_tangent_projection(Wm, n)) / (2 * t)
    expected = balanced_tangent_projection(W, dP)
    assert rel(balanced_weingarten(W, V, n), expected) < 1e-8
    H = rng.standard_normal(W.shape)
    hess = balanced_riemannian_hessian(W, Z, H, V)
    assert rel(hess, balanced_tangent_projection(W, H) + expected) < 1e-8


# ---------------------------------------------------------------------------
# orthonormal basis and the submersion
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d,N", [(3, 4), (2, 2), (3, 1)])
def test_orthonormal_basis(kind, d, N):
    W = point(d, N, 13, kind)
    hor, ver = balanced_orthonormal_basis(W)
    assert hor.shape == (d * d, N, d, d)
    assert ver.shape == ((N - 1) * d * (d - 1) // 2, N, d, d)
    B = np.concatenate([hor, ver]).reshape(-1, W.size)
    assert B.shape[0] == d * d + (N - 1) * d * (d - 1) // 2
    np.testing.assert_allclose(B @ B.T, np.eye(B.shape[0]), atol=1e-13)  # orthonormal
    if N > 1:
        K = dense_tangent_basis(W)
        assert np.linalg.norm(B - (B @ K) @ K.T) < 1e-12  # tangent (dense reference)
        Kv = dense_vertical_basis(W)
        assert Kv.shape[1] == ver.shape[0]
        Vb = ver.reshape(-1, W.size)
        # same subspace: projectors agree
        assert np.linalg.norm(Vb.T @ Vb - Kv @ Kv.T) < 1e-12
    X = end_to_end(W)
    images = np.array([end_to_end_differential(W, h) for h in hor])
    gram = np.array([[depth_inner_product(X, N, a, b) for b in images] for a in images])
    np.testing.assert_allclose(gram, np.eye(d * d), atol=1e-12)  # [G] Thm 13


@pytest.mark.parametrize("kind", KINDS)
def test_horizontal_lift_and_projections(kind, rng):
    d, N = 3, 4
    W = point(d, N, 17, kind)
    X = end_to_end(W)
    Z1, Z2 = rng.standard_normal((2, d, d))
    H1, H2 = horizontal_lift(W, Z1), horizontal_lift(W, Z2)
    assert rel(end_to_end_differential(W, H1), Z1) < 1e-13
    np.testing.assert_allclose(np.vdot(H1, H2), depth_inner_product(X, N, Z1, Z2), rtol=1e-12)
    assert rel(horizontal_projection(W, H1), H1) < 1e-13  # horizontal
    assert rel(balanced_tangent_projection(W, H1), H1) < 1e-13  # tangent
    Z = rng.standard_normal(W.shape)
    P = balanced_tangent_projection(W, Z)
    h, v = horizontal_projection(W, Z), vertical_projection(W, Z)
    assert rel(h + v, P) < 1e-13
    assert abs(np.vdot(h, v)) < 1e-12 * np.linalg.norm(Z) ** 2
    assert np.linalg.norm(end_to_end_differential(W, v)) < 1e-12 * np.linalg.norm(
        Z
    ) * np.linalg.norm(X)
    assert rel(vertical_projection(W, v), v) < 1e-13
    # the horizontal part is the lift of dphi(Z)
    assert rel(h, horizontal_lift(W, end_to_end_differential(W, Z))) < 1e-12
    # vertical vectors are tangent to the orbit: generated by skew a_k (w_a of [R] eq. 2.3)
    a = rng.standard_normal((N - 1, d, d))
    a = a - np.swapaxes(a, 1, 2)
    ap = np.concatenate([np.zeros((1, d, d)), a, np.zeros((1, d, d))])
    w = ap[1:] @ W - W @ ap[:-1]
    assert rel(vertical_projection(W, w), w) < 1e-12


def test_large_depth_lift_is_finite():
    W = random_balanced_point(3, 400, np.random.default_rng(0), spread=1.5)
    H = horizontal_lift(W, np.eye(3))
    assert np.all(np.isfinite(H))
    hor, _ = balanced_orthonormal_basis(random_balanced_point(2, 300, np.random.default_rng(1)))
    np.testing.assert_allclose(np.sum(hor**2, axis=(1, 2, 3)), 1.0, rtol=1e-12)


# ---------------------------------------------------------------------------
# pymanopt manifold
# ---------------------------------------------------------------------------


def test_manifold_basics():
    M = BalancedManifold(3, 4, seed=0)
    assert M.dim == 9 + 3 * 3
    W = M.random_point()
    M.check_point(W)
    V = M.random_tangent_vector(W)
    np.testing.assert_allclose(M.norm(W, V), 1.0)
    assert rel(M.projection(W, V), V) < 1e-13
    np.testing.assert_array_equal(M.zero_vector(W), np.zeros_like(W))
    R = M.retraction(W, 0.3 * V)
    assert balance_error(R) < 1e-13
    T = M.transport(W, R, V)
    assert rel(M.projection(R, T), T) < 1e-13
    assert M.typical_dist > 0
    hor, ver = M.orthonormal_basis(W)
    assert hor.shape[0] + ver.shape[0] == M.dim
    assert rel(M.end_to_end_differential(W, M.horizontal_lift(W, np.eye(3))), np.eye(3)) < 1e-13
    assert M.dist(W, M.exp(W, 0.1 * V)) == pytest.approx(0.1 * M.norm(W, V), rel=1e-6)
    with pytest.raises(ValueError, match="d must be"):
        BalancedManifold(0, 3)


@pytest.mark.parametrize("optimizer", ["sd", "cg", "tr"])
def test_solvers_reach_end_to_end_minimizer(optimizer):
    """Solvers on M and on (M_d, g^N) reach the minimizer of a strictly convex E."""
    d, N = 2, 3
    rng = np.random.default_rng(3)
    T1 = np.array([[1.5, 0.3], [-0.2, 1.1]])
    E = _energy(T1, T1 + 0.3 * rng.standard_normal((d, d)))
    ref = scipy.optimize.minimize(
        lambda x: float(E(x.reshape(d, d))), T1.ravel(), method="BFGS", options={"gtol": 1e-11}
    ).x.reshape(d, d)
    opts = dict(verbosity=0, min_gradient_norm=1e-9, max_iterations=3000, max_time=30)
    make = {"sd": SteepestDescent, "cg": ConjugateGradient, "tr": TrustRegions}[optimizer]
    up = BalancedManifold(d, N, seed=4)
    W0 = up.random_point()
    W_opt = make(**opts).run(_problem(up, E), initial_point=W0).point
    down = EndToEndMatrices(d, N, seed=4)
    X_opt = make(**opts).run(_problem_down(down, E), initial_point=end_to_end(W0)).point
    assert balance_error(W_opt) < 1e-12
    np.testing.assert_allclose(end_to_end(W_opt), ref, atol=1e-6)
    np.testing.assert_allclose(X_opt, ref, atol=1e-6)


def _problem_down(manifold, E):
    @pymanopt.function.autograd(manifold)
    def cost(X):
        return E(X)

    return pymanopt.Problem(manifold, cost)


def test_moments_of_basis_vectors_vanish_to_first_order():
    """Sanity: moving along a basis vector keeps G = 0 to first order (dG = 0)."""
    W = random_balanced_point(2, 3, np.random.default_rng(8))
    hor, ver = balanced_orthonormal_basis(W)
    for b in np.concatenate([hor, ver]):
        assert np.linalg.norm(moment_derivative(W, b)) < 1e-12
    t = 1e-4
    G = moments(W + t * hor[0])
    assert np.linalg.norm(G) < 10 * t**2
