"""The balanced manifold for general widths (d_0, ..., d_N), every hidden width >= r.

Brute-force references: the Jacobian of the moment map (its rank), curves through a
parametrization W_k = Q_k Lambda Q_{k-1}^T (the tangent space), the dense Kronecker form
of the rectangular depth operator (the submersion), finite differences (Weingarten map)
and pymanopt's slope tests. The square path is checked against the same code given a
list of square layers.
"""

from __future__ import annotations

import numpy as np
import pymanopt
import pytest
from pymanopt.optimizers import TrustRegions
from slopes import taylor_slopes

from dln_manifolds import (
    BalancedFrame,
    balance_error,
    balanced_dimension,
    balanced_orthonormal_basis,
    balanced_restore,
    balanced_retraction,
    balanced_tangent_projection,
    balanced_weingarten,
    check_balanced,
    end_to_end,
    end_to_end_differential,
    horizontal_lift,
    horizontal_projection,
    lifted_gradient,
    moments,
    random_balanced_point,
    vertical_projection,
)
from dln_manifolds.pymanopt import BalancedManifold

pytestmark = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim:DeprecationWarning"
)

WIDTHS = [(2, 3, 2), (2, 5, 5, 2), (5, 4, 6, 3), (3, 4, 5, 6), (4, 4, 2), (3, 7, 3), (6, 3)]


def flat(Z):
    return np.concatenate([z.ravel() for z in Z])


def unflat(v, widths):
    out, o = [], 0
    for k in range(1, len(widths)):
        n = widths[k] * widths[k - 1]
        out.append(v[o : o + n].reshape(widths[k], widths[k - 1]))
        o += n
    return out


def ambient(widths):
    return sum(widths[k] * widths[k - 1] for k in range(1, len(widths)))


def moment_jacobian(W, widths):
    """Dense Jacobian of the moments (upper triangles of the G_k) in the flat layers."""
    cols = []
    for e in np.eye(ambient(widths)):
        Z = unflat(e, widths)
        dG = [
            Zk @ Wk.T + Wk @ Zk.T - Zu.T @ Wu - Wu.T @ Zu
            for Zk, Wk, Zu, Wu in zip(Z[:-1], W[:-1], Z[1:], W[1:], strict=True)
        ]
        cols.append(np.concatenate([g[np.triu_indices(g.shape[0])] for g in dG] + [[]]))
    return np.array(cols).T


def projector(W, widths):
    f = BalancedFrame(W)
    return np.array(
        [flat(f.tangent_projection(unflat(e, widths))) for e in np.eye(ambient(widths))]
    ).T


def ill_point(widths, seed):
    r = min(widths[0], widths[-1])
    return random_balanced_point(widths=widths, seed=seed, singular_values=np.logspace(0, -3, r))


# ---------------------------------------------------------------------------
# points and dimension
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("widths", WIDTHS)
def test_random_point_is_balanced_with_full_rank_product(widths):
    W = random_balanced_point(widths=widths, seed=0)
    assert [w.shape for w in W] == [(widths[k], widths[k - 1]) for k in range(1, len(widths))]
    assert balance_error(W) < 1e-14
    assert max(np.abs(G).max() for G in moments(W)) < 1e-13 if len(W) > 1 else True
    r = min(widths[0], widths[-1])
    assert np.linalg.matrix_rank(end_to_end(W)) == r
    assert check_balanced(W, widths=widths) is not None


@pytest.mark.parametrize("widths", WIDTHS)
def test_dimension_against_jacobian_and_parametrization(widths):
    """dim M = d_0 d_N + sum_k (d_k r - r(r+1)/2): the rank of the projector, the rank of
    the tangents of curves W_k(t) = Q_k(t) Lambda(t) Q_{k-1}(t)^T with Q_k(t) on
    St(d_k, r); the moment Jacobian has rank sum_k (r d_k - r(r-1)/2), and its kernel
    exceeds T_W M by sum_k (d_k - r)(d_{k-1} - r) (rank-raising blocks)."""
    rng = np.random.default_rng(1)
    W = random_balanced_point(widths=widths, seed=2)
    r, N = min(widths[0], widths[-1]), len(widths) - 1
    dim = balanced_dimension(widths)
    assert dim == widths[0] * widths[-1] + sum(w * r - r * (r + 1) // 2 for w in widths[1:-1])
    P = projector(W, widths)
    assert np.linalg.matrix_rank(P, tol=1e-9) == dim
    J = moment_jacobian(W, widths)
    rank = np.linalg.matrix_rank(J, tol=1e-9) if J.size else 0
    assert rank == sum(r * w - r * (r - 1) // 2 for w in widths[1:-1])
    extra = sum((widths[k] - r) * (widths[k - 1] - r) for k in range(1, N + 1))
    assert ambient(widths) - rank == dim + extra
    # tangents of curves through the parametrization span a space of dimension dim
    f = BalancedFrame(W)
    Q = [F[:, :r] for F in f.Q]
    tangents = []
    for _ in range(3 * dim):
        dQ = [rng.standard_normal(q.shape) for q in Q]
        dlam = rng.standard_normal(r)
        # d/dt of Q_k(t) = qf(Q_k + t dQ_k) at t = 0: (I - QQ^T) dQ + Q skew(Q^T dQ) part
        dQ = [
            (np.eye(q.shape[0]) - q @ q.T) @ a + q @ np.triu(q.T @ a, 1) - q @ np.triu(q.T @ a, 1).T
            for q, a in zip(Q, dQ, strict=True)
        ]
        lam = f.lam
        V = [
            dQ[k] * lam @ Q[k - 1].T + (Q[k] * dlam) @ Q[k - 1].T + Q[k] * lam @ dQ[k - 1].T
            for k in range(1, N + 1)
        ]
        tangents.append(flat(V))
    T = np.array(tangents).T
    assert np.linalg.matrix_rank(T, tol=1e-9) == dim
    np.testing.assert_allclose(P @ T, T, atol=1e-12)  # the curves' tangents are tangent
    # negative control: a generic ambient vector is not (when M has codimension > 0)
    z = rng.standard_normal(P.shape[0])
    assert dim == ambient(widths) or np.linalg.norm(P @ z - z) > 0.1


@pytest.mark.parametrize("widths", WIDTHS)
def test_projection_is_orthogonal_and_tangent(widths):
    rng = np.random.default_rng(3)
    W = ill_point(widths, 4)
    P = projector(W, widths)
    scale = 1e-12 * 1e3  # frames of a condition number 1e3 point
    np.testing.assert_allclose(P @ P, P, atol=scale)
    np.testing.assert_allclose(P, P.T, atol=scale)
    Z = unflat(rng.standard_normal(P.shape[0]), widths)
    T = balanced_tangent_projection(W, Z)
    # tangent: moment derivative zero and no rank-raising block
    dG = [
        Zk @ Wk.T + Wk @ Zk.T - Zu.T @ Wu - Wu.T @ Zu
        for Zk, Wk, Zu, Wu in zip(T[:-1], W[:-1], T[1:], W[1:], strict=True)
    ]
    assert all(np.abs(g).max() < 1e-12 for g in dG)
    f = BalancedFrame(W)
    r = f.r
    assert all(np.abs(t[r:, r:]).max(initial=0) < 1e-12 for t in f.to_frame(T))
    # normal part orthogonal to the tangent space
    normal = [z - t for z, t in zip(Z, T, strict=True)]
    V = balanced_tangent_projection(W, unflat(rng.standard_normal(P.shape[0]), widths))
    assert abs(flat(normal) @ flat(V)) < 1e-12
    # the moment derivative of the raw Z is generally not zero (negative control)
    dGz = [
        Zk @ Wk.T + Wk @ Zk.T - Zu.T @ Wu - Wu.T @ Zu
        for Zk, Wk, Zu, Wu in zip(Z[:-1], W[:-1], Z[1:], W[1:], strict=True)
    ]
    assert len(W) == 1 or max(np.abs(g).max() for g in dGz) > 1e-3


def test_square_layers_as_a_list_match_the_stack():
    rng = np.random.default_rng(5)
    W = random_balanced_point(3, 4, seed=6)
    Z = rng.standard_normal(W.shape)
    np.testing.assert_allclose(
        np.stack(balanced_tangent_projection(list(W), list(Z))),
        balanced_tangent_projection(W, Z),
        atol=1e-13,
    )
    np.testing.assert_allclose(
        np.stack(horizontal_projection(list(W), list(Z))), horizontal_projection(W, Z), atol=1e-13
    )
    X = rng.standard_normal((3, 3))
    np.testing.assert_allclose(
        np.stack(horizontal_lift(list(W), X)), horizontal_lift(W, X), atol=1e-13
    )
    np.testing.assert_allclose(
        np.stack(balanced_restore(list(W + 0.01 * Z))), balanced_restore(W + 0.01 * Z), atol=1e-2
    )
    assert balanced_dimension((3,) * 5) == BalancedFrame(W).dim == 9 + 3 * 3


# ---------------------------------------------------------------------------
# retraction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("widths", [(2, 5, 5, 2), (5, 4, 6, 3), (3, 7, 3)])
def test_retraction_is_first_or_second_order(widths, order):
    rng = np.random.default_rng(7)
    W = random_balanced_point(widths=widths, seed=8)
    V = balanced_tangent_projection(W, unflat(rng.standard_normal(ambient(widths)), widths))
    np.testing.assert_allclose(
        flat(balanced_retraction(W, [0 * v for v in V], order=order)), flat(W), atol=1e-13
    )
    errs = []
    for t in (1e-2, 5e-3):
        R = balanced_retraction(W, [t * v for v in V], order=order)
        assert balance_error(R) < 1e-14
        d = flat(R) - flat(W) - t * flat(V)
        if order == 2:  # the O(t^2) error is normal: its tangent part is O(t^3)
            d = flat(balanced_tangent_projection(W, unflat(d, widths)))
        errs.append(np.linalg.norm(d))
    expected = 4.0 if order == 1 else 8.0  # t^2 or t^3
    assert errs[0] / errs[1] == pytest.approx(expected, rel=0.15)


def retraction_walk(widths, steps, seed, singular_values=None):
    rng = np.random.default_rng(seed)
    r = min(widths[0], widths[-1])
    W = random_balanced_point(widths=widths, seed=seed, singular_values=singular_values)
    worst = 0.0
    for _ in range(steps):
        Z = unflat(0.05 * rng.standard_normal(ambient(widths)), widths)
        W = balanced_retraction(W, balanced_tangent_projection(W, Z), order=1)
        worst = max(worst, balance_error(W))
    s = np.linalg.svd(W[0], compute_uv=False)
    assert s[r - 1] > 0 and (len(s) == r or s[r] < 1e-12 * s[0])
    return worst


def test_retraction_keeps_balance_over_1000_steps():
    """At an ill-conditioned point (layer condition number 1e3, end-to-end 1e9)."""
    assert retraction_walk((2, 5, 4, 3), 1000, 9, np.array([1.0, 1e-3])) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize(
    "singular_values", [None, np.array([1.0, 1e-3, 1e-3])], ids=["random", "ill-conditioned"]
)
def test_retraction_keeps_balance_over_10000_steps(singular_values):
    assert retraction_walk((5, 6, 7, 3), 10000, 10, singular_values) < 1e-10


def test_restore_is_identity_on_the_manifold_and_balances():
    rng = np.random.default_rng(11)
    widths = (5, 4, 6, 3)
    W = random_balanced_point(widths=widths, seed=12)
    np.testing.assert_allclose(flat(balanced_restore(W)), flat(W), atol=1e-13)
    Y = [w + 0.1 * rng.standard_normal(w.shape) for w in W]
    assert balance_error(Y) > 1e-3  # negative control
    R = balanced_restore(Y)
    assert balance_error(R) < 1e-14


# ---------------------------------------------------------------------------
# the submersion onto (M_{d_N x d_0}, g^N)
# ---------------------------------------------------------------------------


def dense_depth_operator(X, N):
    """A_{N,X}(Z) = sum_k (XX^T)^{(N-k)/N} Z (X^TX)^{(k-1)/N} as an (mn x mn) matrix."""

    def power(S, p):
        w, V = np.linalg.eigh(S)
        w = np.clip(w, 0.0, None)
        return (V * np.where(w > 1e-13 * w.max(), w, 0.0) ** p) @ V.T if p else np.eye(len(S))

    m, n = X.shape
    A = np.zeros((m * n, m * n))
    for k in range(1, N + 1):
        L, R = power(X @ X.T, (N - k) / N), power(X.T @ X, (k - 1) / N)
        A += np.kron(L, R.T)  # row-major vec: vec(L Z R) = (L kron R^T) vec(Z)
    return A


@pytest.mark.parametrize("widths", [(2, 5, 5, 4), (4, 6, 3, 2), (3, 4, 3), (3, 3, 5, 3), (4, 2)])
def test_horizontal_lift_is_an_isometry_onto_the_horizontal_space(widths):
    """[G] Thm 13 for general widths: d phi (lift Z) = Z and |lift Z|^2 = g^N_X(Z, Z),
    with g^N from the dense Kronecker depth operator."""
    rng = np.random.default_rng(13)
    W = random_balanced_point(widths=widths, seed=14)
    N, X = len(W), end_to_end(W)
    A = dense_depth_operator(X, N)
    for _ in range(3):
        Z = rng.standard_normal(X.shape)
        H = horizontal_lift(W, Z)
        np.testing.assert_allclose(end_to_end_differential(W, H), Z, atol=1e-12)
        g = Z.ravel() @ np.linalg.solve(A, Z.ravel())
        assert flat(H) @ flat(H) == pytest.approx(g, rel=1e-10)
        np.testing.assert_allclose(flat(balanced_tangent_projection(W, H)), flat(H), atol=1e-12)
        np.testing.assert_allclose(flat(horizontal_projection(W, H)), flat(H), atol=1e-12)
        assert np.linalg.norm(flat(vertical_projection(W, H))) < 1e-12
    # dphi dphi^* = A_{N,X}: the lift of A(Z) is dphi^*(Z) = lifted_gradient
    Z = rng.standard_normal(X.shape)
    AZ = (A @ Z.ravel()).reshape(X.shape)
    np.testing.assert_allclose(
        flat(horizontal_lift(W, AZ)), flat(lifted_gradient(W, Z)), atol=1e-11
    )
    # negative control: the plain Frobenius norm of Z is not the lifted norm (N > 1)
    assert (
        N == 1
        or abs(flat(horizontal_lift(W, Z)) @ flat(horizontal_lift(W, Z)) - Z.ravel() @ Z.ravel())
        > 1e-3
    )


@pytest.mark.parametrize("widths", [(2, 5, 5, 4), (4, 6, 3, 2), (3, 4, 3)])
def test_vertical_space_is_the_kernel_of_dphi(widths):
    rng = np.random.default_rng(15)
    W = random_balanced_point(widths=widths, seed=16)
    Z = unflat(rng.standard_normal(ambient(widths)), widths)
    V, H = vertical_projection(W, Z), horizontal_projection(W, Z)
    T = balanced_tangent_projection(W, Z)
    np.testing.assert_allclose(flat(V) + flat(H), flat(T), atol=1e-12)
    assert np.abs(end_to_end_differential(W, V)).max() < 1e-12
    assert abs(flat(V) @ flat(H)) < 1e-12
    hor, ver = balanced_orthonormal_basis(W)
    B = np.concatenate(
        [
            np.stack([flat([h[i] for h in hor]) for i in range(hor[0].shape[0])]),
            np.stack([flat([v[i] for v in ver]) for i in range(ver[0].shape[0])]),
        ]
    )
    assert B.shape[0] == balanced_dimension(widths) and hor[0].shape[0] == widths[0] * widths[-1]
    np.testing.assert_allclose(B @ B.T, np.eye(B.shape[0]), atol=1e-12)
    np.testing.assert_allclose(B @ projector(W, widths), B, atol=1e-12)  # tangent
    nv = ver[0].shape[0]
    for i in range(nv):
        assert np.abs(end_to_end_differential(W, [v[i] for v in ver])).max() < 1e-12


# ---------------------------------------------------------------------------
# Weingarten map, Hessian: finite differences, slopes, trust regions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(2, 5, 5, 2), (5, 4, 6, 3), (3, 4, 5, 6)])
def test_weingarten_against_finite_differences(widths):
    """W_V(n) = P_W(D_V P [n]) for normal n: differentiate the projector along a curve."""
    rng = np.random.default_rng(17)
    W = random_balanced_point(widths=widths, seed=18)
    Z = unflat(rng.standard_normal(ambient(widths)), widths)
    n = [z - t for z, t in zip(Z, balanced_tangent_projection(W, Z), strict=True)]
    V = balanced_tangent_projection(W, unflat(rng.standard_normal(ambient(widths)), widths))
    h = 1e-5
    Wp = balanced_retraction(W, [h * v for v in V], order=2)
    Wm = balanced_retraction(W, [-h * v for v in V], order=2)
    dP = (flat(balanced_tangent_projection(Wp, n)) - flat(balanced_tangent_projection(Wm, n))) / (
        2 * h
    )
    fd = flat(balanced_tangent_projection(W, unflat(dP, widths)))
    got = flat(balanced_weingarten(W, V, n))
    np.testing.assert_allclose(got, fd, atol=1e-6 * max(1.0, np.linalg.norm(fd)))
    assert np.linalg.norm(got) > 1e-2  # not trivially zero


def lifted_hessian(W, V, R):
    """Euclidean Hessian of E(phi(W)) along V for E'(X) = R(X) = X - T (product rule)."""
    N = len(W)
    out = lifted_gradient(W, end_to_end_differential(W, V))  # E''(X)[dphi(V)] lifted
    for p in range(N):  # derivative of A_{p+1}^T R B_{p-1}^T with R fixed
        for q in range(N):
            if q == p:
                continue
            layers = [V[i] if i == q else W[i] for i in range(N)]
            left = np.eye(W[-1].shape[0])
            for i in range(N - 1, p, -1):
                left = left @ layers[i]
            right = np.eye(W[p].shape[1])
            for i in range(p - 1, -1, -1):
                right = right @ layers[i]
            out[p] = out[p] + left.T @ R @ right.T
    return out


def rectangular_problem(manifold, widths, seed):
    """A cost that is not lifted: E(W) = 1/2 |X - T|^2 + 1/2 sum_k <W_k, C_k W_k> - <B, W>,
    so its gradient has normal parts of every kind (the rank-raising blocks included)."""
    rng = np.random.default_rng(seed)
    T = rng.standard_normal((widths[-1], widths[0]))
    C = [(lambda a: a @ a.T)(rng.standard_normal((w, w))) for w in widths[1:]]
    Bs = [rng.standard_normal((widths[k], widths[k - 1])) for k in range(1, len(widths))]

    @pymanopt.function.numpy(manifold)
    def cost(W):
        X = end_to_end(list(W))
        return 0.5 * np.sum((X - T) ** 2) + sum(
            0.5 * np.sum(w * (c @ w)) - np.sum(b * w) for w, c, b in zip(W, C, Bs, strict=True)
        )

    @pymanopt.function.numpy(manifold)
    def egrad(W):
        g = lifted_gradient(list(W), end_to_end(list(W)) - T)
        return [gk + c @ w - b for gk, w, c, b in zip(g, W, C, Bs, strict=True)]

    @pymanopt.function.numpy(manifold)
    def ehess(W, V):
        W, V = list(W), list(V)
        out = lifted_hessian(W, V, end_to_end(W) - T)
        return [o + c @ v for o, c, v in zip(out, C, V, strict=True)]

    return pymanopt.Problem(manifold, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)


@pytest.mark.parametrize("widths", [(2, 5, 5, 2), (5, 4, 6, 3), (3, 4, 5, 6)])
def test_gradient_and_hessian_slopes(widths):
    M = BalancedManifold(widths=widths, seed=19)
    g, h = taylor_slopes(rectangular_problem(M, widths, 20))
    assert g > 1.9 and h > 2.9


def test_hessian_slope_fails_without_the_rank_term(monkeypatch):
    """Negative control: dropping the Weingarten term of the rank-r layers breaks slope 3."""
    widths = (2, 5, 5, 2)
    M = BalancedManifold(widths=widths, seed=21)
    orig = BalancedFrame._weingarten_layers_hat

    def without_rank_term(self, Vh, Nh):
        Nh = [n.copy() for n in Nh]
        for n in Nh:
            n[self.r :, self.r :] = 0.0
        return orig(self, Vh, Nh)

    monkeypatch.setattr(BalancedFrame, "_weingarten_layers_hat", without_rank_term)
    _, h = taylor_slopes(rectangular_problem(M, widths, 22))
    assert h < 2.5


def test_trust_regions_on_a_rectangular_cost():
    widths = (4, 5, 6, 3)
    M = BalancedManifold(widths=widths, seed=23)
    rng = np.random.default_rng(24)
    target = rng.standard_normal((3, 4))

    @pymanopt.function.numpy(M)
    def cost(W):
        return 0.5 * np.sum((end_to_end(list(W)) - target) ** 2)

    @pymanopt.function.numpy(M)
    def egrad(W):
        return lifted_gradient(list(W), end_to_end(list(W)) - target)

    @pymanopt.function.numpy(M)
    def ehess(W, V):
        return lifted_hessian(list(W), list(V), end_to_end(list(W)) - target)

    problem = pymanopt.Problem(M, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)
    result = TrustRegions(verbosity=0, max_iterations=200, min_gradient_norm=1e-12).run(problem)
    W = list(result.point)
    assert np.abs(end_to_end(W) - target).max() < 1e-8
    assert balance_error(W) < 1e-12


# ---------------------------------------------------------------------------
# adapters: pymanopt basics, geomstats
# ---------------------------------------------------------------------------


def test_pymanopt_adapter_for_general_widths():
    widths = (3, 4, 5, 2)
    M = BalancedManifold(widths=widths, seed=25)
    assert M.dim == balanced_dimension(widths) == 6 + (8 - 3) + (10 - 3)
    W = M.random_point()
    assert isinstance(W, list) and [w.shape for w in W] == [(4, 3), (5, 4), (2, 5)]
    V = M.random_tangent_vector(W)
    assert M.norm(W, V) == pytest.approx(1.0)
    U = 2.0 * V - V / 2 + (-V)  # the vector-space operations of pymanopt's solvers
    np.testing.assert_allclose(flat(U), 0.5 * flat(V), atol=1e-15)
    np.testing.assert_allclose(flat(M.projection(W, V)), flat(V), atol=1e-12)
    R = M.retraction(W, 0.1 * V)
    assert balance_error(R) < 1e-14 and M.check_point(R) is not None
    H = M.horizontal_lift(W, np.ones((2, 3)))
    np.testing.assert_allclose(M.end_to_end_differential(W, H), np.ones((2, 3)), atol=1e-12)
    E = M.exp(W, 0.1 * V)  # geodesics of general widths (tests/test_widths_geodesics.py)
    assert isinstance(E, list) and balance_error(E) < 1e-14
    assert M.dist(W, W) == 0.0
    with pytest.raises(ValueError, match="widths"):
        M.projection(W, [np.ones((4, 3)), np.ones((5, 4)), np.ones((3, 5))])
    with pytest.raises(ValueError, match="widths\\[1\\] = 1 is below r"):
        BalancedManifold(widths=(3, 1, 2))
    with pytest.raises(TypeError, match="either d"):
        BalancedManifold(3, widths=(3, 3))


def test_geomstats_adapter_for_general_widths():
    pytest.importorskip("geomstats")
    from dln_manifolds.geomstats import BalancedManifold as GBalanced

    widths = (2, 5, 4, 3)
    space = GBalanced(widths=widths)
    assert space.dim == balanced_dimension(widths)
    W = space.random_point()
    assert space.random_point(n_samples=3).shape == (3, 10 + 20 + 12)  # flat, as Fiber's
    batch = space.to_layers(space.random_point(n_samples=3))  # lists in, lists out below
    assert [w.shape for w in batch] == [(3, 5, 2), (3, 4, 5), (3, 3, 4)]
    assert space.belongs(W) and np.all(space.belongs(batch))
    rng = np.random.default_rng(26)
    Z = [rng.standard_normal(w.shape) for w in batch]
    T = space.to_tangent(Z, batch)
    assert np.all(space.is_tangent(T, batch)) and not np.any(space.is_tangent(Z, batch))
    for i in range(3):  # the loop over the batch gives the single-point results
        np.testing.assert_allclose(
            flat([t[i] for t in T]),
            flat(balanced_tangent_projection([w[i] for w in batch], [z[i] for z in Z])),
            atol=1e-13,
        )
    R = space.retraction([0.1 * t for t in T], batch)
    assert np.all(space.belongs(R))
    inner = space.metric.inner_product(T, T)
    assert inner.shape == (3,)
    np.testing.assert_allclose(
        inner, [flat([t[i] for t in T]) @ flat([t[i] for t in T]) for i in range(3)]
    )
    off = [w + 0.01 * z for w, z in zip(batch, Z, strict=True)]
    assert not np.any(space.belongs(off)) and np.all(space.belongs(space.projection(off)))
    E = space.metric.exp([0.1 * t for t in T], batch)  # lists in, lists out
    assert [e.shape for e in E] == [w.shape for w in batch] and np.all(space.belongs(E))
    quotient = space.equip_with_quotient()  # tests/test_widths_bundle.py
    assert quotient.matrix_shape == (space.widths[-1], space.widths[0])
