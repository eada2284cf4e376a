"""[G] Thm 2 (Arora-Cohen-Hazan): balanced upstairs gradient flow = downstairs g^N flow.

From a balanced start W(0) with phi(W(0)) = X(0), the end-to-end matrix of
dW/dt = -grad_W E(phi(W)) solves dX/dt = -A_{N,X}(E'(X)) ([G] eq. 4.9, 4.14).
Both flows are integrated with RK4; their difference must be the integrators'
global error O(dt^4).
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from dln_manifolds import (
    MatrixSensingEnergy,
    balanced_point,
    depth_operator,
    end_to_end,
    lifted_gradient,
)
from dln_manifolds.flows import integrate_flow

T_FINAL = 1.5


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    with threadpool_limits(1):
        yield


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _setup(d, N, seed):
    rng = np.random.default_rng(seed)
    target = _haar(rng, d) @ np.diag(np.linspace(0.5, 1.5, d)) @ _haar(rng, d)
    energy = MatrixSensingEnergy.random(target, 3 * d * d, seed=seed)
    X0 = 0.6 * _haar(rng, d) @ np.diag(np.linspace(0.8, 1.2, d)) @ _haar(rng, d)
    rotations = np.stack([_haar(rng, d) for _ in range(N - 1)]) if N > 1 else None
    W0 = balanced_point(X0, N, rotations=rotations)
    return energy, X0, W0


def _upstairs(energy, W0, dt):
    def velocity(t, W):
        return -lifted_gradient(W, energy.gradient(end_to_end(W)))

    res = integrate_flow(
        velocity,
        W0,
        T_FINAL,
        dt=dt,
        method="rk4",
        save_every=int(round(0.25 / dt)),
        monitors={"X": lambda t, W: end_to_end(W)},
    )
    return res.times, res.monitors["X"]


def _downstairs(energy, X0, N, dt):
    def velocity(t, X):
        return -depth_operator(X, N, energy.gradient(X))

    res = integrate_flow(
        velocity, X0, T_FINAL, dt=dt, method="rk4", save_every=int(round(0.25 / dt))
    )
    return res.times, res.states


@pytest.mark.parametrize("d,N", [(2, 2), (3, 3), (3, 5)])
def test_balanced_upstairs_flow_tracks_downstairs_flow(d, N):
    energy, X0, W0 = _setup(d, N, seed=100 * d + N)
    gaps = {}
    for dt in (0.05, 0.025):
        t_up, X_up = _upstairs(energy, W0, dt)
        t_down, X_down = _downstairs(energy, X0, N, dt)
        np.testing.assert_allclose(t_up, t_down)
        assert len(t_up) == 7  # compared at t = 0, 0.25, ..., 1.5
        gaps[dt] = np.abs(X_up - X_down).max(axis=(1, 2))
    moved = np.abs(X_down[-1] - X0).max()
    assert moved > 0.05  # the flows really move
    assert gaps[0.05][0] == pytest.approx(0.0, abs=1e-14)
    # Each side has global error C dt^4 |X|: at dt = 0.025, dt^4 = 3.9e-7, and C
    # (measured 0.1 to 15, growing with N through the velocity's derivatives) < 25.
    # The order is the sharp part: halving dt divides the gap by ~16.
    assert np.all(gaps[0.025] <= 25 * 0.025**4 * moved)
    assert gaps[0.05][-1] / gaps[0.025][-1] >= 8.0


def test_unbalanced_start_does_not_track():
    """The theorem needs balancedness: an unbalanced start with the same X(0) deviates."""
    d, N = 3, 3
    energy, X0, W0 = _setup(d, N, seed=7)
    rng = np.random.default_rng(1)
    g = np.eye(d) + 0.4 * rng.standard_normal((d, d))
    W = W0.copy()
    W[1] = g @ W0[1]
    W[2] = W0[2] @ np.linalg.inv(g)  # same end-to-end matrix, moments != 0
    np.testing.assert_allclose(end_to_end(W), X0, atol=1e-12)
    _, X_up = _upstairs(energy, W, 0.05)
    _, X_down = _downstairs(energy, X0, N, 0.05)
    assert np.abs(X_up[-1] - X_down[-1]).max() > 1e-3
