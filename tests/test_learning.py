"""Learning flows upstairs on M and downstairs on (M_d, g^N) ([G] Thm 1-3)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
from hypothesis import given, settings
from hypothesis import strategies as st

import dln_manifolds.balanced as balanced_module
from dln_manifolds import (
    MatrixSensingEnergy,
    QuadraticEnergy,
    balanced_point,
    completion_energy_2x2,
    depth_operator,
    end_to_end,
    free_energy,
    free_energy_gradient,
)
from dln_manifolds.balanced import random_balanced_point
from dln_manifolds.flows import end_to_end_flow, free_energy_flow, learning_flow, learning_velocity


def _orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _moment_derivative(W, V):
    """dG_k[V] = V_k W_k^T + W_k V_k^T - V_{k+1}^T W_{k+1} - W_{k+1}^T V_{k+1}."""
    Wt, Vt = np.swapaxes(W, 1, 2), np.swapaxes(V, 1, 2)
    return (V[:-1] @ Wt[:-1] + W[:-1] @ Vt[:-1]) - (Vt[1:] @ W[1:] + Wt[1:] @ V[1:])


@settings(max_examples=10)
@given(
    d=st.integers(1, 4),
    N=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["quadratic", "sensing"]),
)
def test_learning_velocity_is_tangent_to_M(d, N, seed, kind):
    rng = np.random.default_rng(seed)
    W = random_balanced_point(d, N, rng)
    target = rng.standard_normal((d, d))
    energy = (
        QuadraticEnergy(target)
        if kind == "quadratic"
        else MatrixSensingEnergy.random(target, 3 * d * d, seed=seed)
    )
    V = learning_velocity(W, energy)
    scale = np.linalg.norm(V) * np.linalg.norm(W)
    # [G] Thm 1: the lifted gradient conserves every moment G_k exactly at balanced W
    assert np.linalg.norm(_moment_derivative(W, V)) <= 1e-12 * max(scale, 1e-300)
    projection = getattr(balanced_module, "balanced_tangent_projection", None)
    if projection is not None and N > 1:
        np.testing.assert_allclose(projection(W, V), V, atol=1e-11 * np.linalg.norm(V))


@settings(max_examples=10)
@given(d=st.integers(1, 4), N=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_learning_velocity_is_the_horizontal_lift_of_the_downstairs_velocity(d, N, seed):
    """[G] Thm 2-3 at the level of velocities: -grad E(phi(W)) = lift(-A_{N,X} E'(X))."""
    lift = getattr(balanced_module, "horizontal_lift", None)
    if lift is None:
        pytest.skip("horizontal_lift not available")
    rng = np.random.default_rng(seed)
    W = random_balanced_point(d, N, rng)
    X = end_to_end(W)
    energy = QuadraticEnergy(rng.standard_normal((d, d)))
    V = learning_velocity(W, energy)
    expected = lift(W, -depth_operator(X, N, energy.gradient(X)))
    # both O(N d^3) products of well-conditioned factors (layer condition <= 4)
    np.testing.assert_allclose(V, expected, atol=1e-11 * np.abs(V).max())


@pytest.mark.parametrize("d, N", [(2, 3), (3, 4), (3, 2)])
def test_upstairs_and_downstairs_trajectories_agree(d, N):
    """[G] Thm 2-3: phi(W(t)) solves dX/dt = -A_{N,X}(E'(X)) when W(0) is balanced."""
    rng = np.random.default_rng(10 * d + N)
    W0 = random_balanced_point(d, N, rng, spread=1.5)
    X0 = end_to_end(W0)
    energy = QuadraticEnergy(0.5 * rng.standard_normal((d, d)))
    diffs = []
    for dt in (0.02, 0.01):
        up = learning_flow(W0, energy, 1.0, dt=dt)
        down = end_to_end_flow(X0, energy, N, 1.0, dt=dt)
        np.testing.assert_allclose(up.times, down.times)
        assert up.monitors["balance_error"].max() < 1e-13  # restore keeps M to rounding
        diffs.append(np.abs(up.monitors["end_to_end"] - down.states).max())
    # Two RK4 discretizations of the same curve: difference O(dt^4) -> ratio 16 per halving
    # (8..40 allows pre-asymptotic constants); at dt = 0.01 it is below 1e-6.
    assert diffs[1] < 1e-6
    assert 8 < diffs[0] / diffs[1] < 40


@pytest.mark.parametrize("N", [2, 3])
def test_matrix_completion_limit_has_zero_energy(N):
    """[G] eq. 14.1: E = ((X11 - 1)^2 + (X22 - 1)^2)/2 -> 0 along the flows.

    Rate: dE/dt = -<E', A E'> <= -lambda_min(A)|E'|^2 = -2 lambda_min(A) E and
    lambda_min(A_{N,X}) = N sigma_min^{2-2/N} (the off-diagonal multipliers are mean
    values of the diagonal ones), so E(T) <= E(0) exp(-2 N min_t sigma_min^{2-2/N} T).
    """
    energy = completion_energy_2x2()
    X0 = np.array([[0.5, 0.1], [-0.2, 0.6]])
    T, dt = 10.0, 0.02
    down = end_to_end_flow(X0, energy, N, T, dt=dt)
    up = learning_flow(balanced_point(X0, N), energy, T, dt=dt)
    smin = down.monitors["singular_values"][:, -1].min()
    bound = down.monitors["energy"][0] * np.exp(-2 * N * smin ** (2 - 2 / N) * T)
    assert bound < 1e-9
    # 1.5 = slack for the min over saved times only and the O(dt^4) integrator error
    assert down.monitors["energy"][-1] <= 1.5 * bound
    assert up.monitors["energy"][-1] <= 1.5 * bound
    np.testing.assert_allclose(np.diag(down.final), [1.0, 1.0], atol=1e-4)
    assert np.all(np.diff(down.monitors["energy"]) <= 1e-15)  # gradient flow: E decreases
    np.testing.assert_allclose(up.monitors["end_to_end"][-1], down.final, atol=1e-8)


@pytest.mark.parametrize("N", [2, 3, 5])
def test_aligned_singular_values_follow_scalar_odes(N):
    """Aligned start, aligned target: X = U diag(sigma) V^T with
    d sigma_r / dt = -N sigma_r^{2-2/N} <E'(X), u_r v_r^T> = -N sigma_r^{2-2/N} (sigma_r - tau_r).
    """
    rng = np.random.default_rng(N)
    d = 3
    U, V = _orthogonal(rng, d), _orthogonal(rng, d)
    sigma0, tau = np.array([1.3, 0.8, 0.5]), np.array([0.4, 1.1, 0.9])
    X0, target = (U * sigma0) @ V.T, (U * tau) @ V.T
    energy = QuadraticEnergy(target)
    T = 1.0
    ref = scipy.integrate.solve_ivp(
        lambda t, s: -N * s ** (2 - 2 / N) * (s - tau),
        (0, T),
        sigma0,
        rtol=1e-12,
        atol=1e-14,
        method="DOP853",
    )
    sigma_T = ref.y[:, -1]
    down = end_to_end_flow(X0, energy, N, T, dt=0.01)
    up = learning_flow(balanced_point(X0, N, rotations=None), energy, T, dt=0.01)
    # RK4 with dt = 0.01 on rates O(N): error ~ (N dt)^4 ~ 1e-8
    np.testing.assert_allclose(U.T @ down.final @ V, np.diag(sigma_T), atol=1e-7)
    np.testing.assert_allclose(U.T @ up.monitors["end_to_end"][-1] @ V, np.diag(sigma_T), atol=1e-7)


def test_singular_value_velocity_general_point(rng):
    """d sigma_r/dt = -N sigma_r^{2-2/N} <E'(X), u_r v_r^T> at any X with distinct sigma."""
    N, d = 3, 3
    X = (_orthogonal(rng, d) * [1.4, 0.9, 0.6]) @ _orthogonal(rng, d).T
    energy = QuadraticEnergy(rng.standard_normal((d, d)))
    h = 1e-5
    run = end_to_end_flow(X, energy, N, 2 * h, dt=h)  # X(0), X(h), X(2h)
    sv = run.monitors["singular_values"]
    U, s, Vh = np.linalg.svd(run.states[1])
    predicted = (
        -N * s ** (2 - 2 / N) * np.einsum("ir,ij,rj->r", U, energy.gradient(run.states[1]), Vh)
    )
    # central difference around t = h: sigma''' h^2 / 6 ~ 1e-8 (sigma''' ~ (N |E'|)^3 ~ 1e3),
    # rounding eps / h ~ 1e-11; the RK4 error ~ h^5 is negligible
    np.testing.assert_allclose((sv[2] - sv[0]) / (2 * h), predicted, rtol=1e-6)


def test_depth_inf_flow_decreases_energy(rng):
    energy = QuadraticEnergy(rng.standard_normal((3, 3)))
    X0 = (_orthogonal(rng, 3) * [1.2, 0.8, 0.5]) @ _orthogonal(rng, 3).T
    run = end_to_end_flow(X0, energy, np.inf, 1.0, dt=0.02)
    assert np.all(np.diff(run.monitors["energy"]) <= 1e-15)
    # N = inf is the limit of the depth-N flows with time rescaled by N
    big = end_to_end_flow(X0, energy, 2000, 1.0 / 2000, dt=0.02 / 2000)
    # A_N / N = A_inf (1 + O(1/N)): agreement to O(1/N) = O(5e-4)
    np.testing.assert_allclose(big.final, run.final, atol=5e-3)


def test_free_energy_flow():
    N, beta = 3, 2.0
    energy = QuadraticEnergy(np.diag([1.0, 0.5]))
    X0 = np.array([[1.1, 0.2], [0.1, 0.6]])  # det > 0, like the minimizer
    run = free_energy_flow(X0, energy, N, beta, 5.0, dt=0.01, save_every=10)
    F = run.monitors["free_energy"]
    assert np.all(np.diff(F) <= 1e-14)  # gradient flow of F
    assert F[-1] == pytest.approx(free_energy(run.final, energy, depth=N, beta=beta), rel=1e-14)
    # converged (rate ~ 2/s here) to a critical point of F, aligned with the target and
    # with singular values pushed apart and up by the entropy: (1.175, 0.686) vs (1, 0.5)
    g = free_energy_gradient(run.final, energy, depth=N, beta=beta)
    g0 = free_energy_gradient(X0, energy, depth=N, beta=beta)
    assert np.linalg.norm(g) < 1e-4 * np.linalg.norm(g0)
    sv = run.monitors["singular_values"][-1]
    assert sv[0] > 1.1 and sv[1] > 0.6
    # beta -> infinity recovers the energy flow
    cold = free_energy_flow(X0, energy, N, 1e12, 0.5, dt=0.01)
    np.testing.assert_allclose(
        cold.final, end_to_end_flow(X0, energy, N, 0.5, dt=0.01).final, atol=1e-10
    )


def test_leaving_gl_is_detected():
    """Target with det < 0 from det > 0: the exact flow stalls at the boundary."""
    energy = QuadraticEnergy(np.diag([1.0, -1.0]))
    X0 = np.diag([1.0, 0.05])
    with pytest.raises(RuntimeError, match="left GL"):
        end_to_end_flow(X0, energy, 2, 5.0, dt=2.0, method="euler")
    run = end_to_end_flow(X0, energy, 2, 5.0, dt=0.05)
    assert np.all(run.monitors["singular_values"][:, -1] > 0)
    assert np.linalg.det(run.final) > 0
    # depth 1 is plain gradient descent on all matrices: crossing det = 0 is allowed
    assert np.linalg.det(end_to_end_flow(X0, energy, 1, 5.0, dt=0.05).final) < 0


def test_inputs_are_validated_and_not_modified(rng):
    energy = QuadraticEnergy(np.eye(2))
    W0 = random_balanced_point(2, 3, rng)
    W0_copy = W0.copy()
    learning_flow(W0, energy, 0.1, dt=0.05)
    np.testing.assert_array_equal(W0, W0_copy)
    unbalanced = W0.copy()
    unbalanced[1] *= 1.5
    with pytest.raises(ValueError, match="W0"):
        learning_flow(unbalanced, energy, 1.0)
    with pytest.raises(TypeError, match="energy"):
        learning_flow(W0, "quadratic", 1.0)
    with pytest.raises(ValueError, match=r"energy must return E'\(X\) of shape \(2, 2\)"):
        learning_flow(W0, lambda X: 0.0, 1.0)  # a gradient callable of the wrong shape
    with pytest.raises(ValueError, match="energy"):
        learning_flow(W0, QuadraticEnergy(np.eye(3)), 1.0)
    with pytest.raises(ValueError, match="t_final"):
        end_to_end_flow(np.eye(2), energy, 2, -1.0)
    with pytest.raises(ValueError, match="X0"):
        end_to_end_flow(np.diag([1.0, 0.0]), energy, 2, 1.0)
    with pytest.raises(ValueError, match="depth"):
        end_to_end_flow(np.eye(2), energy, 0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        free_energy_flow(np.eye(2), energy, 2, -1.0, 1.0)
    with pytest.raises(TypeError, match="X0"):
        end_to_end_flow(np.eye(2) * 1j, energy, 2, 1.0)


def test_pymanopt_solvers_up_and_down_reach_the_same_minimizer():
    """Issue 4: solvers on M minimizing E(phi(W)) and on (M_d, g^N) minimizing E agree.

    For a strictly convex E (sensing with m = 2 d^2 generic measurements) the only
    critical point on M is phi(W) = target (phi is a submersion on M), in the
    component of the start (det > 0 on both sides here).
    """
    pymanopt = pytest.importorskip("pymanopt")
    adapters = pytest.importorskip("dln_manifolds.pymanopt")
    if not hasattr(adapters, "BalancedManifold"):
        pytest.skip("BalancedManifold not available")
    from pymanopt.optimizers import TrustRegions

    d, N = 3, 3
    target = np.array([[1.2, 0.3, 0.0], [0.1, 0.9, 0.2], [0.0, -0.3, 1.1]])
    energy = MatrixSensingEnergy.random(target, 2 * d * d, seed=1)
    X0 = np.array([[0.8, 0.0, 0.1], [0.2, 1.0, 0.0], [0.0, 0.1, 0.7]])

    up_manifold = adapters.BalancedManifold(d, N)

    @pymanopt.function.autograd(up_manifold)
    def up_cost(W):
        X = W[0]
        for p in range(1, N):
            X = W[p] @ X
        return energy.value(X)

    down_manifold = adapters.EndToEndMatrices(d, N)

    @pymanopt.function.numpy(down_manifold)
    def down_cost(X):
        return float(energy.value(X))

    @pymanopt.function.numpy(down_manifold)
    def down_egrad(X):
        return energy.gradient(X)

    @pymanopt.function.numpy(down_manifold)
    def down_ehess(X, Z):
        return energy.hessian(X, Z)

    solver = TrustRegions(verbosity=0, min_gradient_norm=1e-10)
    up = solver.run(pymanopt.Problem(up_manifold, up_cost), initial_point=balanced_point(X0, N))
    down = solver.run(
        pymanopt.Problem(
            down_manifold, down_cost, euclidean_gradient=down_egrad, euclidean_hessian=down_ehess
        ),
        initial_point=X0,
    )
    # gradient norm 1e-10 and a well-conditioned Hessian: minimizers to ~1e-9
    np.testing.assert_allclose(end_to_end(up.point), target, atol=1e-8)
    np.testing.assert_allclose(down.point, target, atol=1e-8)
    assert balanced_module.balance_error(up.point) < 1e-12
