"""Downstairs RLE [G] eq. 12.12: drift pieces, kappa = 0 flow, step control, seeding."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dln_manifolds.depth_metric import depth_operator
from dln_manifolds.energies import QuadraticEnergy
from dln_manifolds.entropy import entropy_gradient
from dln_manifolds.flows import integrate_flow
from dln_manifolds.langevin import (
    brownian_drift,
    brownian_increment,
    brownian_motion,
    end_to_end_langevin,
    free_energy_drift,
)


def _entropy_thm10(X, depth):
    r"""Thm 10 minus constants: sum_{i<j} log((s_i^2 - s_j^2) / (s_i^{2/N} - s_j^{2/N})) / 2."""
    s = np.linalg.svd(X, compute_uv=False)
    i, j = np.triu_indices(s.size, 1)
    return 0.5 * np.sum(
        np.log((s[i] ** 2 - s[j] ** 2) / (s[i] ** (2 / depth) - s[j] ** (2 / depth)))
    )


@given(d=st.integers(1, 4), depth=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_entropic_drift_is_depth_gradient_of_thm10(d, depth, seed):
    """free_energy_drift(E=0, kappa=0) = (1/beta) grad_{g^N} S: vs entropy.py and vs A(FD grad)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d, d)) + 2 * np.eye(d)
    beta = 2.0
    drift = free_energy_drift(X, depth, beta, kappa=0.0)
    np.testing.assert_allclose(drift, entropy_gradient(X, depth) / beta, rtol=1e-10, atol=1e-12)
    s = np.linalg.svd(X, compute_uv=False)
    if d > 1 and np.min(np.abs(np.diff(s))) > 1e-2:
        h = 1e-6  # central differences: O(h^2) truncation, eps/h rounding ~ 1e-10
        E = np.eye(d * d).reshape(-1, d, d) * h
        g = np.array([_entropy_thm10(X + e, depth) - _entropy_thm10(X - e, depth) for e in E])
        ref = depth_operator(X, depth, (g / (2 * h)).reshape(d, d)) / beta
        np.testing.assert_allclose(drift, ref, atol=1e-6 * max(1, np.abs(ref).max()))


def test_drift_is_sum_of_parts_and_stable_at_repeated_singular_values():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 3, 3))
    energy = QuadraticEnergy(rng.standard_normal((3, 3)))
    beta, kappa, N = 1.5, 0.7, 4
    full = free_energy_drift(X, N, beta, kappa, energy)
    for b in range(5):
        ref = (
            -depth_operator(X[b], N, energy.gradient(X[b]))
            + entropy_gradient(X[b], N) / beta
            + kappa * brownian_drift(X[b], N, beta)
        )
        np.testing.assert_allclose(full[b], ref, rtol=1e-10, atol=1e-12)
    # repeated singular values: continuous (the summand tends to (N-1)/2 lambda^{N-2})
    Q = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    X0 = Q @ np.diag([1.0, 1.0, 0.5])
    X1 = Q @ np.diag([1.0, 1.0 + 1e-9, 0.5])
    assert np.all(np.isfinite(free_energy_drift(X0, N, 1.0)))
    np.testing.assert_allclose(
        free_energy_drift(X0, N, 1.0), free_energy_drift(X1, N, 1.0), atol=1e-8
    )


def test_kappa_zero_is_free_energy_flow():
    """kappa = 0: no noise; Euler converges at order 1 to the flow dX/dt = -grad F_beta."""
    X0 = np.array([[1.0, 0.4], [-0.2, 0.7]])
    energy = QuadraticEnergy(np.diag([1.5, 0.3]))
    N, beta, T = 3, 2.0, 0.5
    ref = integrate_flow(
        lambda t, X: free_energy_drift(X, N, beta, 0.0, energy), X0, T, dt=1e-3, method="rk4"
    ).final
    errs = []
    for dt in (0.02, 0.01):
        res = end_to_end_langevin(X0, N, beta, 0.0, energy, t_final=T, dt=dt, n_paths=3, seed=0)
        np.testing.assert_array_equal(res.final[0], res.final[1])  # deterministic
        errs.append(np.abs(res.final[0] - ref).max())
    assert errs[1] < 0.6 * errs[0] and errs[1] < 0.02  # first order: error halves with dt


def test_seeding_and_saving():
    X0 = np.diag([1.0, 0.8])
    # max_halvings bounds the cost of a path that comes close to the boundary
    kw = dict(t_final=0.1, dt=0.01, n_paths=50, max_halvings=12)
    a = end_to_end_langevin(X0, 2, 1.0, 1.0, seed=5, save_every=2, **kw)
    b = end_to_end_langevin(X0, 2, 1.0, 1.0, seed=np.random.default_rng(5), save_every=2, **kw)
    c = end_to_end_langevin(X0, 2, 1.0, 1.0, seed=6, **kw)
    np.testing.assert_array_equal(a.final, b.final)
    assert not np.allclose(a.final, c.final)
    np.testing.assert_allclose(a.times, np.linspace(0, 0.1, 6))
    assert a.states.shape == (6, 50, 2, 2) and c.states.shape == (2, 50, 2, 2)
    np.testing.assert_array_equal(a.states[-1], a.final)


def test_step_control_never_crosses_the_singular_set():
    """Huge nominal steps: refinement keeps every path on the side det > 0 it started on.

    Negative control: one plain Euler-Maruyama step of the same size crosses for many paths.
    """
    X0 = np.diag([1.0, 0.3])
    with np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        res = end_to_end_langevin(
            X0,
            3,
            1.0,
            1.0,
            t_final=0.5,
            dt=0.25,
            n_paths=200,
            seed=1,
            save_every=1,
            max_halvings=12,
        )
    assert res.n_rejected > 0
    assert np.all(np.linalg.det(res.states) > 0)
    rng = np.random.default_rng(1)
    X = np.broadcast_to(X0, (200, 2, 2))
    naive = X + brownian_increment(X, 3, 1.0, 0.25, rng.standard_normal((200, 2, 2)))
    assert np.any(np.linalg.det(naive) < 0)


def test_boundary_is_stopped_or_raises():
    """d = 1, N = 2: lambda = sqrt|x| is a driftless Brownian motion near 0, so paths hit 0."""
    with pytest.warns(RuntimeWarning, match="reached the boundary"):
        res = brownian_motion(
            np.array([[0.05]]), 2, 1.0, t_final=0.5, dt=0.01, n_paths=100, seed=0, max_halvings=8
        )
    dead = ~res.alive
    assert dead.any() and np.all(res.exit_times[dead] < 0.5)
    assert np.all(res.final[:, 0, 0] > 0)  # stopped before crossing
    with pytest.raises(RuntimeError, match="halvings"):
        brownian_motion(
            np.array([[0.05]]),
            2,
            1.0,
            t_final=0.5,
            dt=0.01,
            n_paths=100,
            seed=0,
            max_halvings=8,
            on_boundary="raise",
        )


def test_validation():
    with pytest.raises(ValueError, match="kappa"):
        end_to_end_langevin(np.eye(2), 2, 1.0, -1.0, t_final=1.0, dt=0.1)
    with pytest.raises(ValueError, match="n_paths"):
        end_to_end_langevin(np.stack([np.eye(2)] * 3), 2, 1.0, t_final=1.0, dt=0.1, n_paths=2)
    with pytest.raises(TypeError, match="energy"):
        end_to_end_langevin(np.eye(2), 2, 1.0, energy="quadratic", t_final=1.0, dt=0.1)
    with pytest.raises(TypeError, match="seed"):
        end_to_end_langevin(np.eye(2), 2, 1.0, t_final=1.0, dt=0.1, seed="abc")
    with pytest.raises(ValueError, match="depth"):
        end_to_end_langevin(np.eye(2), np.inf, 1.0, t_final=1.0, dt=0.1)
    with pytest.raises(ValueError, match="on_boundary"):
        end_to_end_langevin(np.eye(2), 2, 1.0, t_final=1.0, dt=0.1, on_boundary="ignore")
