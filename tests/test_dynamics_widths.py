"""Learning dynamics for networks of general widths (issue 11, items 5-6).

The upstairs gradient flow dW_k/dt = -dE/dW_k of a network of widths (d_0, ..., d_N),
integrated here by a test-local fixed-step RK4 directly on the layers (velocity from
:func:`dln_manifolds.lifted_gradient`), against the downstairs flow
dX/dt = -A_{N,X}(E'(X)) on the full-rank (d_N, d_0) matrices ([G] Thm 2 for general
widths; Arora, Cohen and Hazan 2018, Thm 1). From an unbalanced start they disagree.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dln_manifolds as dm
from dln_manifolds.flows import LayersFlowResult, end_to_end_flow, learning_flow, learning_velocity


def _rk4_layers(W0, energy, t_final, dt):
    """Fixed-step RK4 on the list of layers, velocity -lifted_gradient(W, E'(phi(W)))."""

    def velocity(W):
        return [-g for g in dm.lifted_gradient(W, energy.gradient(dm.end_to_end(W)))]

    def axpy(W, h, K):
        return [w + h * k for w, k in zip(W, K, strict=True)]

    W = [np.array(w) for w in W0]
    n = round(t_final / dt)
    for _ in range(n):
        k1 = velocity(W)
        k2 = velocity(axpy(W, dt / 2, k1))
        k3 = velocity(axpy(W, dt / 2, k2))
        k4 = velocity(axpy(W, dt, k3))
        W = [
            w + dt / 6 * (a + 2 * b + 2 * c + e)
            for w, a, b, c, e in zip(W, k1, k2, k3, k4, strict=True)
        ]
    return W


def _problem(widths, seed, kind):
    """A full-rank start X0 (d_N, d_0) and an energy on (d_N, d_0) matrices."""
    rng = np.random.default_rng(seed)
    m, n = widths[-1], widths[0]
    X0 = 0.8 * rng.standard_normal((m, n)) / np.sqrt(n)
    if kind == "quadratic":
        energy = dm.QuadraticEnergy(rng.standard_normal((m, n)))
    else:  # regression on data: non-white inputs, so E'(X) = X Sxx - Syx is not X - T
        A = rng.standard_normal((n, 3 * n))
        energy = dm.RegressionEnergy(A, rng.standard_normal((m, n)) @ A)
    return X0, energy


CASES = [
    ((4, 6, 5, 3), "quadratic"),  # wide X (3 x 4), hidden widths above r = 3
    ((3, 7, 8, 5), "regression"),  # tall X (5 x 3)
    ((6, 12, 12, 12, 2), "quadratic"),  # wide X (2 x 6), wide hidden layers, N = 4
]


@pytest.mark.parametrize(("widths", "kind"), CASES, ids=lambda c: str(c))
def test_balanced_upstairs_rk4_is_the_downstairs_flow(widths, kind):
    N = len(widths) - 1
    X0, energy = _problem(widths, sum(widths), kind)
    W0 = dm.balanced_point(X0, N, widths=widths)
    assert max(np.abs(G).max() for G in dm.moments(W0)) < 1e-13
    T, dt = 0.5, 2.5e-3
    X_up = dm.end_to_end(_rk4_layers(W0, energy, T, dt))
    down = end_to_end_flow(X0, energy, N, T, adaptive=True, rtol=1e-12, atol=1e-14, save_every=50)
    assert down.final.shape == (widths[-1], widths[0])
    assert np.linalg.norm(down.final - X0) > 0.05 * np.linalg.norm(X0)  # it moved
    rel = np.abs(X_up - down.final).max() / np.abs(down.final).max()
    assert rel < 1e-8, rel
    # the library's upstairs flow on the list of layers: the same RK4, another velocity code
    up = learning_flow(W0, energy, T, dt=dt, save_every=50, widths=widths)
    assert isinstance(up, LayersFlowResult)
    assert [w.shape for w in up.final] == [w.shape for w in W0]
    np.testing.assert_allclose(dm.end_to_end(up.final), X_up, rtol=0, atol=1e-12)
    np.testing.assert_allclose(up.monitors["end_to_end"][-1], X_up, rtol=0, atol=1e-12)
    assert up.monitors["balance_error"].max() < 1e-9  # moments are conserved


@pytest.mark.parametrize(("widths", "kind"), CASES[:2], ids=lambda c: str(c))
def test_unbalanced_start_leaves_the_downstairs_flow(widths, kind):
    """Negative control: the same comparison from an unbalanced lift of X0 fails."""
    N = len(widths) - 1
    X0, energy = _problem(widths, sum(widths), kind)
    rng = np.random.default_rng(1)
    W0 = [w + 0.3 * rng.standard_normal(w.shape) for w in dm.balanced_point(X0, N, widths=widths)]
    X0u = dm.end_to_end(W0)
    T, dt = 0.5, 5e-3
    X_up = dm.end_to_end(_rk4_layers(W0, energy, T, dt))
    down = end_to_end_flow(X0u, energy, N, T, dt=dt, save_every=100)
    rel = np.abs(X_up - down.final).max() / np.abs(down.final).max()
    assert rel > 1e-3, rel
    # the upstairs flow itself is still the gradient flow: the library agrees with RK4, and
    # the (nonzero) moments are conserved (by the exact flow; RK4 drifts at O(dt^4))
    up = learning_flow(W0, energy, T, dt=dt, save_every=100)
    np.testing.assert_allclose(dm.end_to_end(up.final), X_up, rtol=0, atol=1e-12)
    G0, G1 = dm.moments(W0), dm.moments(up.final)
    drift = max(np.abs(a - b).max() for a, b in zip(G1, G0, strict=True))
    assert drift < 1e-5 and up.monitors["balance_error"][0] > 1e-2


def test_learning_velocity_of_layers_is_minus_the_gradient():
    """Directional derivative of E(phi(W)) by central differences, general widths."""
    widths = (4, 6, 5, 3)
    rng = np.random.default_rng(7)
    W = [rng.standard_normal((widths[k + 1], widths[k])) for k in range(3)]
    V = [rng.standard_normal(w.shape) for w in W]
    energy = dm.QuadraticEnergy(rng.standard_normal((3, 4)))
    vel = learning_velocity(W, energy, widths=widths)
    h = 1e-5

    def E(t):
        return energy.value(dm.end_to_end([w + t * v for w, v in zip(W, V, strict=True)]))

    fd = (E(h) - E(-h)) / (2 * h)
    exact = -sum(np.sum(a * b) for a, b in zip(vel, V, strict=True))
    assert abs(fd - exact) < 1e-7 * max(1.0, abs(exact))
    # a tuple of square layers is a sequence too, and agrees with the stacked fast path
    Ws = tuple(rng.standard_normal((3, 3)) for _ in range(3))
    sq = dm.QuadraticEnergy(rng.standard_normal((3, 3)))
    np.testing.assert_allclose(
        np.stack(learning_velocity(Ws, sq)), learning_velocity(np.stack(Ws), sq), atol=1e-13
    )


def test_rectangular_energies():
    rng = np.random.default_rng(3)
    m, n, k = 3, 5, 11
    T = rng.standard_normal((m, n))
    quad = dm.QuadraticEnergy(T, scale=2.0)
    assert quad.shape == (m, n) and quad.d == (m, n)
    assert dm.QuadraticEnergy(np.eye(2)).d == 2  # square: d stays an int
    X, Z = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    assert quad.value(X) == pytest.approx(np.sum((X - T) ** 2))
    A, B = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    reg = dm.RegressionEnergy(A, B)
    cov = dm.RegressionEnergy.from_covariances(A @ A.T / k, B @ A.T / k, np.sum(B * B) / (2 * k))
    assert reg.shape == cov.shape == (m, n)
    for energy in (quad, reg, cov):
        h = 1e-6
        fd = (energy.value(X + h * Z) - energy.value(X - h * Z)) / (2 * h)
        assert fd == pytest.approx(np.sum(energy.gradient(X) * Z), rel=1e-7)
        g = (energy.gradient(X + h * Z) - energy.gradient(X - h * Z)) / (2 * h)
        np.testing.assert_allclose(energy.hessian(X, Z), g, atol=1e-6)
    assert reg.value(X) == pytest.approx(np.sum((X @ A - B) ** 2) / (2 * k))
    assert cov.value(X) == pytest.approx(reg.value(X))
    with pytest.raises(ValueError, match="X"):
        quad.value(X.T)


def test_layers_flow_result_save_load_and_stop(tmp_path):
    widths = (3, 4, 2)
    rng = np.random.default_rng(5)
    W0 = [rng.standard_normal((widths[k + 1], widths[k])) for k in range(2)]
    energy = dm.QuadraticEnergy(np.zeros((2, 3)))
    seen = []

    def stop(t, W):
        seen.append([w.shape for w in W])
        return t >= 0.3

    res = learning_flow(W0, energy, 1.0, dt=0.1, stop_when=stop)
    assert res.times[-1] == pytest.approx(0.3) and seen[0] == [(4, 3), (2, 4)]
    assert res.states.shape == (4, 4 * 3 + 2 * 4)
    assert [w.shape for w in res.layers(0)] == [(4, 3), (2, 4)]
    np.testing.assert_array_equal(res.layers(0)[1], W0[1])
    assert np.all(np.diff(res.monitors["energy"]) < 0)
    path = tmp_path / "flow.npz"
    res.save(path)
    back = LayersFlowResult.load(path)
    assert isinstance(back, LayersFlowResult)
    np.testing.assert_array_equal(back.widths, widths)
    for a, b in zip(back.final, res.final, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rectangular_flows_bad_input():
    rng = np.random.default_rng(0)
    X0 = rng.standard_normal((3, 4))
    square = dm.QuadraticEnergy(np.eye(3))
    with pytest.raises(ValueError, match=r"X0 has shape \(3, 4\)"):
        end_to_end_flow(X0, square, 2, 0.1)
    rect = dm.QuadraticEnergy(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="factors"):
        end_to_end_flow(X0, rect, 2, 0.1, evaluation="factors")
    auto = end_to_end_flow(X0, rect, 2, 0.1, dt=0.05, evaluation="auto")
    svd = end_to_end_flow(X0, rect, 2, 0.1, dt=0.05)
    np.testing.assert_array_equal(auto.final, svd.final)
    with pytest.raises(ValueError, match="X0"):  # rank deficient
        end_to_end_flow(np.outer([1.0, 2.0, 3.0], [1.0, 0.0, 0.0, 1.0]), rect, 2, 0.1)
    W0 = dm.balanced_point(X0, 2, widths=(4, 5, 3))
    with pytest.raises(ValueError, match="widths"):
        learning_flow(W0, rect, 0.1, widths=(4, 6, 3))
    with pytest.raises(ValueError, match="W0"):
        learning_flow(W0, dm.QuadraticEnergy(np.zeros((4, 3))), 0.1)
    with pytest.raises(ValueError, match="widths"):
        learning_flow(
            np.stack([np.eye(2)] * 2), dm.QuadraticEnergy(np.eye(2)), 0.1, widths=(2, 3, 2)
        )


@settings(max_examples=15)
@given(
    widths=st.lists(st.integers(1, 5), min_size=2, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_velocity_of_layers_maps_to_the_depth_operator(widths, seed):
    """[G] Thm 2 at the level of velocities, any widths with hidden widths >= min(d_0, d_N):
    d phi_W(learning_velocity(W)) = -A_{N,X}(E'(X)) at balanced W; and the velocity is
    -lifted_gradient (an independent implementation in network.py)."""
    r = min(widths[0], widths[-1])
    widths = (widths[0], *(max(w, r) for w in widths[1:-1]), widths[-1])
    N = len(widths) - 1
    rng = np.random.default_rng(seed)
    m, n = widths[-1], widths[0]
    U = np.linalg.qr(rng.standard_normal((m, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    X = (U * rng.uniform(0.5, 2.0, r)) @ V.T  # full rank, condition <= 4
    W = dm.balanced_point(X, N, widths=widths)
    energy = dm.QuadraticEnergy(rng.standard_normal((m, n)))
    vel = learning_velocity(W, energy, widths=widths)
    lifted = dm.lifted_gradient(W, energy.gradient(X))
    for a, b in zip(vel, lifted, strict=True):
        np.testing.assert_allclose(a, -b, atol=1e-12 * (1 + np.abs(b).max()))
    image = dm.end_to_end_differential(W, vel)
    expected = -dm.depth_operator(X, N, energy.gradient(X))
    np.testing.assert_allclose(image, expected, atol=1e-11 * (1 + np.abs(expected).max()))
