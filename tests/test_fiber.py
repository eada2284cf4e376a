"""The fiber F_X: normal system, projection, group action, retraction, Weingarten map, Fiber."""

from __future__ import annotations

import numpy as np
import pymanopt
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from slopes import taylor_slopes

from dln_manifolds import (
    FiberNormalSolver,
    balanced_point,
    end_to_end,
    end_to_end_differential,
    fiber_group_element,
    fiber_normal_matrix,
    fiber_normal_operator,
    fiber_restore,
    fiber_retraction,
    fiber_tangent_projection,
    fiber_weingarten,
    generator_to_tangent,
    group_action,
    group_action_exp,
    moments,
    ness_gradient,
    regularizer_gradient,
    tangent_to_generator,
)
from dln_manifolds.pymanopt import Fiber


def _randn(rng, shape, cplx):
    Z = rng.standard_normal(shape)
    return Z + 1j * rng.standard_normal(shape) if cplx else Z


def _point(rng, d, N, cplx, spread=0.4):
    """A point of F_X away from the center: exp(a).C for a random generator a."""
    X = _randn(rng, (d, d), cplx) + 2.0 * np.eye(d)
    W = group_action_exp(spread * _randn(rng, (N - 1, d, d), cplx), balanced_point(X, N))
    return X, W


def _rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _dense_jacobian(W):
    """Complex-linear Jacobian of phi, shape (d^2, N d^2), by applying dphi to unit vectors."""
    n = W.size
    cols = [end_to_end_differential(W, e.reshape(W.shape)).ravel() for e in np.eye(n)]
    return np.stack(cols, axis=1)


shapes = st.tuples(st.integers(1, 3), st.integers(2, 4), st.booleans(), st.integers(0, 2**31))


# --------------------------------------------------------------------------- projection


@settings(max_examples=12)
@given(shapes)
def test_projection_properties_against_dense_nullspace(args):
    d, N, cplx, seed = args
    rng = np.random.default_rng(seed)
    _, W = _point(rng, d, N, cplx)
    Z = _randn(rng, W.shape, cplx)
    P = fiber_tangent_projection(W, Z)
    # in ker dphi: the residual is the normal solve's residual (backward-stable Cholesky with
    # one refinement step; cond(K) <= ~1e3 here), so 1e-12 relative is a safe float64 bound
    assert np.linalg.norm(end_to_end_differential(W, P)) <= 1e-12 * np.linalg.norm(
        end_to_end_differential(W, Z)
    )
    # idempotent
    assert _rel(fiber_tangent_projection(W, P), P) <= 1e-12
    # orthogonal: P Z - Z is orthogonal to tangent vectors w_a (a random generator)
    Tv = generator_to_tangent(W, _randn(rng, (N - 1, d, d), cplx))
    assert abs(np.real(np.vdot(P - Z, Tv))) <= 1e-12 * np.linalg.norm(Z) * np.linalg.norm(Tv)
    # equal to the projection onto the dense null space of the Jacobian (complex-linear, so
    # the complex null space is the real tangent space and QQ^* is the real-orthogonal projector)
    Q = scipy.linalg.null_space(_dense_jacobian(W))
    assert Q.shape[1] == (N - 1) * d * d
    dense = (Q @ (Q.conj().T @ Z.ravel())).reshape(W.shape)
    assert _rel(P, dense) <= 1e-10


@pytest.mark.parametrize("cplx", [False, True])
def test_normal_matrix_is_kron_sum_and_jacobian_gram(rng, cplx):
    d, N = 3, 4
    _, W = _point(rng, d, N, cplx)
    K = fiber_normal_matrix(W)
    # brute force: sum_p kron(L_p, R_p^T) from explicit partial products
    brute = np.zeros((d * d, d * d), dtype=W.dtype)
    for p in range(N):
        Ap = end_to_end(W[p + 1 :]) if p < N - 1 else np.eye(d)
        Bp = end_to_end(W[:p]) if p > 0 else np.eye(d)
        brute += np.kron(Ap @ Ap.conj().T, (Bp.conj().T @ Bp).T)
    assert _rel(K, brute) <= 1e-13
    J = _dense_jacobian(W)
    assert _rel(K, J @ J.conj().T) <= 1e-13
    Y = _randn(rng, (d, d), cplx)
    assert _rel(fiber_normal_operator(W, Y).ravel(), K @ Y.ravel()) <= 1e-13
    assert np.all(np.linalg.eigvalsh(K) > 0)


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("d", [3, 6])
def test_cholesky_and_cg_agree(rng, d, cplx):
    N = 5
    _, W = _point(rng, d, N, cplx, spread=0.3)
    Z = _randn(rng, W.shape, cplx)
    Pc = fiber_tangent_projection(W, Z, method="cholesky")
    Pg = fiber_tangent_projection(W, Z, method="cg", tol=1e-14)
    # both solve K y = dphi(Z) to relative residual ~1e-14; cond(K) ~ 1e2 here
    assert _rel(Pg, Pc) <= 1e-11
    assert np.linalg.norm(end_to_end_differential(W, Pg)) <= 1e-12 * np.linalg.norm(
        end_to_end_differential(W, Z)
    )


def test_cg_preconditioner_is_exact_at_balanced_points(rng):
    # at balanced points K equals the depth operator A_{N,X}: one CG step suffices
    X = rng.standard_normal((5, 5))
    C = balanced_point(X, 6)
    solver = FiberNormalSolver(C, method="cg")
    solver.project(rng.standard_normal(C.shape))
    assert solver.last_iterations <= 1
    assert FiberNormalSolver(np.stack([np.eye(33)] * 2)).method == "cg"
    assert FiberNormalSolver(np.stack([np.eye(3)] * 2)).method == "cholesky"


def test_projection_input_errors(rng):
    W = balanced_point(rng.standard_normal((3, 3)), 3)
    with pytest.raises(ValueError, match="Z"):
        fiber_tangent_projection(W, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="method"):
        fiber_tangent_projection(W, W, method="lu")
    singular = W.copy()
    singular[1] = np.diag([1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="rank-deficient"):
        fiber_tangent_projection(singular, W)
    with pytest.raises(ValueError, match="rank-deficient"):
        fiber_tangent_projection(singular, W, method="cg")
    with pytest.raises(TypeError):
        fiber_tangent_projection("W", W)


# --------------------------------------------------------------------------- group action


@pytest.mark.parametrize("cplx", [False, True])
def test_group_action_and_generators(rng, cplx):
    d, N = 3, 4
    X, W = _point(rng, d, N, cplx)
    a = 0.3 * _randn(rng, (N - 1, d, d), cplx)
    # [R] eq. 1.5 by hand
    A = scipy.linalg.expm(a)
    by_hand = np.empty_like(W)
    by_hand[0] = A[0] @ W[0]
    for p in range(1, N - 1):
        by_hand[p] = A[p] @ W[p] @ np.linalg.inv(A[p - 1])
    by_hand[N - 1] = W[N - 1] @ np.linalg.inv(A[N - 2])
    assert _rel(group_action(A, W), by_hand) <= 1e-13
    assert _rel(group_action_exp(a, W), by_hand) <= 1e-13
    assert _rel(end_to_end(by_hand), X) <= 1e-13
    # [R] eq. 2.2-2.3: w_a is the velocity of tau -> exp(tau a).W (central difference, O(h^2))
    h = 1e-5
    fd = (group_action_exp(h * a, W) - group_action_exp(-h * a, W)) / (2 * h)
    wa = generator_to_tangent(W, a)
    assert _rel(fd, wa) <= 1e-8
    assert np.linalg.norm(end_to_end_differential(W, wa)) <= 1e-13 * np.linalg.norm(wa) * 10
    # inverse map
    assert _rel(tangent_to_generator(W, wa), a) <= 1e-12
    # orbit coordinates
    assert _rel(fiber_group_element(W, by_hand), A) <= 1e-12
    assert (
        _rel(group_action(fiber_group_element(balanced_point(X, N), W), balanced_point(X, N)), W)
        < 1e-12
    )


def test_group_action_input_errors(rng):
    W = balanced_point(rng.standard_normal((2, 2)), 3)
    with pytest.raises(ValueError, match="a"):
        group_action(np.zeros((3, 2, 2)), W)
    with pytest.raises(ValueError, match="rank-deficient"):
        group_action(np.zeros((2, 2, 2)), W)
    with pytest.raises(ValueError, match="V"):
        tangent_to_generator(W, np.zeros((3, 3, 3)))


# --------------------------------------------------------------------------- retraction


@pytest.mark.parametrize("cplx", [False, True])
def test_retraction_orders(rng, cplx):
    d, N = 3, 3
    X, W = _point(rng, d, N, cplx)
    V = fiber_tangent_projection(W, _randn(rng, W.shape, cplx))
    V /= np.linalg.norm(V)
    assert np.array_equal(fiber_retraction(W, 0 * V), W)
    P = lambda Z: fiber_tangent_projection(W, Z)  # noqa: E731
    ts = np.array([1e-2, 1e-3])
    first = [np.linalg.norm(fiber_retraction(W, t * V, second_order=False) - W - t * V) for t in ts]
    second = [np.linalg.norm(P(fiber_retraction(W, t * V) - W - t * V)) for t in ts]
    # first order: R(tV) = W + tV + O(t^2); second order: tangent part of the O(t^2) term vanishes
    assert np.log10(first[0] / first[1]) == pytest.approx(2, abs=0.05)
    assert np.log10(second[0] / second[1]) == pytest.approx(3, abs=0.1)
    for t in ts:
        assert _rel(end_to_end(fiber_retraction(W, t * V)), X) <= 1e-13


def test_retraction_keeps_product_after_many_steps():
    rng = np.random.default_rng(7)
    d, N = 2, 3
    X = rng.standard_normal((d, d)) + 2 * np.eye(d)
    W = balanced_point(X, N)
    for _ in range(10_000):
        V = generator_to_tangent(W, rng.standard_normal((N - 1, d, d)))
        W = fiber_retraction(W, 0.01 * V / np.linalg.norm(V), second_order=False)
    # the output layer is solved from the product of the input: rounding accumulates like a
    # random walk of eps |X|-sized steps (test_fiber_reliability has the long walks)
    assert _rel(end_to_end(W), X) <= 1e-10


def test_restore(rng):
    X, W = _point(rng, 3, 4, False)
    assert _rel(fiber_restore(W, X), W) <= 1e-13
    Y = W + 1e-3 * rng.standard_normal(W.shape)
    R = fiber_restore(Y, X)
    assert _rel(end_to_end(R), X) <= 1e-13
    assert np.array_equal(R[:-1], Y[:-1])
    with pytest.raises(ValueError, match="X"):
        fiber_restore(W, np.eye(2))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("cplx", [False, True])
def test_regularizer_gradient_solves_R_lemma5(rng, cplx):
    d, N = 3, 4
    _, W = _point(rng, d, N, cplx)
    g = regularizer_gradient(W)
    # [R] Lemma 5: grad |W|^2 = w_b with H_k(b) Hermitian (eq. 2.20) and equal to 2 G_k
    # (eq. 2.8, 2.19); b itself is in general not Hermitian
    b = tangent_to_generator(W, g)
    G = moments(W)
    Wh = np.conj(np.swapaxes(W, 1, 2))
    bp = np.concatenate([np.zeros((1, d, d)), b, np.zeros((1, d, d))])
    H = np.stack(
        [
            -W[k] @ bp[k] @ Wh[k]
            + bp[k + 1] @ W[k] @ Wh[k]
            + Wh[k + 1] @ W[k + 1] @ bp[k + 1]
            - Wh[k + 1] @ bp[k + 2] @ W[k + 1]
            for k in range(N - 1)
        ]
    )
    assert _rel(H, 2 * G) <= 1e-10
    # dG(grad) = 4G ([R] eq. 2.23), by a central difference along the group curve
    h = 1e-5
    dG = (moments(group_action_exp(h * b, W)) - moments(group_action_exp(-h * b, W))) / (2 * h)
    assert _rel(dG, 4 * G) <= 1e-8


@pytest.mark.parametrize("cplx", [False, True])
def test_ness_gradient_is_euclidean_and_tangent(rng, cplx):
    d, N = 2, 4
    _, W = _point(rng, d, N, cplx)
    g = ness_gradient(W)
    f = lambda W: float(np.sum(np.abs(moments(W)) ** 2))  # noqa: E731
    E = _randn(rng, W.shape, cplx)
    h = 1e-6
    fd = (f(W + h * E) - f(W - h * E)) / (2 * h)
    assert np.real(np.vdot(g, E)) == pytest.approx(fd, rel=1e-7)  # O(h^2) central difference
    assert _rel(fiber_tangent_projection(W, g), g) <= 1e-12
    assert _rel(g, 4 * generator_to_tangent(W, moments(W))) <= 1e-15


@pytest.mark.parametrize("cplx", [False, True])
def test_weingarten_against_finite_difference_of_projector(rng, cplx):
    d, N = 3, 3
    _, W = _point(rng, d, N, cplx)
    V = fiber_tangent_projection(W, _randn(rng, W.shape, cplx))
    n = _randn(rng, W.shape, cplx)
    n = n - fiber_tangent_projection(W, n)
    h = 1e-5
    # P (DP[V] n) with the projector extended off the fiber (it is defined for any W)
    dP = (fiber_tangent_projection(W + h * V, n) - fiber_tangent_projection(W - h * V, n)) / (2 * h)
    expected = fiber_tangent_projection(W, dP)
    got = fiber_weingarten(W, V, n)
    assert _rel(got, expected) <= 1e-7  # central difference, O(h^2) ~ 1e-10 plus rounding/h
    # only the normal part of the last argument matters
    assert _rel(fiber_weingarten(W, V, n + V), got) <= 1e-12


# --------------------------------------------------------------------------- pymanopt Fiber


@pytest.mark.parametrize("cplx", [False, True])
def test_fiber_manifold_basics(rng, cplx):
    d, N = 3, 3
    X = _randn(rng, (d, d), cplx) + 2 * np.eye(d)
    M = Fiber(X, N, seed=1)
    assert M.dim == (N - 1) * d * d * (2 if cplx else 1)
    W = M.random_point()
    assert _rel(end_to_end(W), X) <= 1e-13
    V = M.random_tangent_vector(W)
    assert M.norm(W, V) == pytest.approx(1.0)
    assert np.linalg.norm(end_to_end_differential(W, V)) <= 1e-13
    U = M.random_tangent_vector(W)
    assert M.inner_product(W, U, V) == pytest.approx(np.real(np.vdot(U, V)))
    assert isinstance(M.inner_product(W, U, V), float)
    assert not np.any(M.zero_vector(W))
    C = M.center
    assert _rel(C, balanced_point(X, N)) == 0
    assert np.sum(np.abs(C) ** 2) == pytest.approx(M.minimum_norm_sq(), rel=1e-13)
    assert np.sum(np.abs(W) ** 2) > M.minimum_norm_sq()
    assert M.typical_dist == pytest.approx(np.linalg.norm(C))
    assert np.linalg.norm(M.moments(C)) <= 1e-12 * np.sum(np.abs(C) ** 2)
    R = W
    for _ in range(50):
        R = M.retraction(R, 0.3 * M.random_tangent_vector(R))
    assert _rel(end_to_end(R), X) <= 1e-13
    T = M.transport(W, R, V)
    assert _rel(M.projection(R, T), T) <= 1e-12
    a = 0.2 * _randn(rng, (N - 1, d, d), cplx) + np.eye(d)
    assert _rel(M.act(a, W), group_action(a, W)) == 0
    assert _rel(M.tangent_to_generator(W, M.generator_to_tangent(W, a)), a) <= 1e-12
    assert _rel(M.regularizer_gradient(W), regularizer_gradient(W)) <= 1e-13
    assert _rel(M.ness_gradient(W), ness_gradient(W)) == 0
    assert M.dist(W, M.exp(W, 0.1 * V)) == pytest.approx(0.1 * M.norm(W, V), rel=1e-6)


def test_fiber_input_errors():
    with pytest.raises(ValueError, match="rank-deficient"):
        Fiber(np.diag([1.0, 0.0]), 3)
    with pytest.raises(ValueError, match="ill-conditioned"):
        Fiber(np.diag([1.0, 1e-7]), 3)
    Fiber(np.diag([1.0, 1e-7]), 3, max_condition=1e8)  # the bound is a parameter
    with pytest.raises(ValueError, match="single point"):
        Fiber(np.eye(2), 1)
    with pytest.raises(ValueError, match="depth"):
        Fiber(np.eye(2), 0)
    with pytest.raises(ValueError, match="square"):
        Fiber(np.ones((2, 3)), 3)
    with pytest.raises(TypeError):
        Fiber(np.eye(2), 2.5)
    M = Fiber(np.eye(2), 3)
    with pytest.raises(ValueError, match="vector"):
        M.projection(M.center, np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="point"):
        M.projection(np.zeros((2, 2, 2)), np.zeros((3, 2, 2)))


def _problem(M, rng, cplx):
    """A cost with nonzero normal gradient: f = Re<C, W> + |W|^4 / 4 (egrad, ehess by hand)."""
    Cc = _randn(rng, (M.depth, M.d, M.d), cplx)

    @pymanopt.function.numpy(M)
    def cost(W):
        return float(np.real(np.vdot(Cc, W)) + 0.25 * np.sum(np.abs(W) ** 2) ** 2)

    @pymanopt.function.numpy(M)
    def egrad(W):
        return Cc + np.sum(np.abs(W) ** 2) * W

    @pymanopt.function.numpy(M)
    def ehess(W, V):
        return np.sum(np.abs(W) ** 2) * V + 2 * np.real(np.vdot(W, V)) * W

    return pymanopt.Problem(M, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)


@pytest.mark.filterwarnings("ignore:Conversion of an array:DeprecationWarning")  # pymanopt
@pytest.mark.parametrize("cplx", [False, True])
def test_gradient_and_hessian_slopes(rng, cplx):
    X = _randn(rng, (3, 3), cplx) + 2 * np.eye(3)
    M = Fiber(X, 3, seed=3)
    problem = _problem(M, rng, cplx)
    W = M.random_point()
    g_slope, h_slope = taylor_slopes(problem, W, M.random_tangent_vector(W))
    assert g_slope == pytest.approx(2, abs=0.1)
    assert h_slope == pytest.approx(3, abs=0.1)  # second-order retraction + Weingarten map
    # the Hessian is symmetric on the tangent space
    U, V = M.random_tangent_vector(W), M.random_tangent_vector(W)
    hu, hv = problem.riemannian_hessian(W, U), problem.riemannian_hessian(W, V)
    assert M.inner_product(W, hu, V) == pytest.approx(M.inner_product(W, U, hv), rel=1e-10)
