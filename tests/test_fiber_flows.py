"""Flows on the fiber: regularizing flow ([R] Thm 2), Ness flow, regularized gradient flow."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds import (
    QuadraticEnergy,
    balanced_point,
    end_to_end,
    fiber_tangent_projection,
    group_action_exp,
    lifted_gradient,
    moments,
    regularizer_gradient,
)
from dln_manifolds.flows import (
    ness_flow,
    regularized_gradient_flow,
    regularizing_flow,
    split_velocity,
)


def _randn(rng, shape, cplx):
    Z = rng.standard_normal(shape)
    return Z + 1j * rng.standard_normal(shape) if cplx else Z


def _start(seed, d, N, cplx, spread=0.4):
    rng = np.random.default_rng(seed)
    X = _randn(rng, (d, d), cplx) + 2 * np.eye(d)
    W0 = group_action_exp(spread * _randn(rng, (N - 1, d, d), cplx), balanced_point(X, N))
    return X, W0


def _theorem2_error(result):
    """max over saved times and k of |G_k(t) - G_k(0) e^{-4t}| / |G_k(0) e^{-4t}|."""
    G = result.monitors["moments"]
    exact = G[0][None] * np.exp(-4 * result.times)[:, None, None, None]
    num = np.linalg.norm(G - exact, axis=(2, 3))
    den = np.linalg.norm(exact, axis=(2, 3))
    return float(np.max(num / den))


@pytest.mark.parametrize(("d", "N", "cplx"), [(3, 3, False), (2, 4, True)])
def test_theorem2_moments_decay_exactly(d, N, cplx):
    X, W0 = _start(1, d, N, cplx)
    res = regularizing_flow(W0, 1.0, dt=1e-3, method="rk4", save_every=50)
    # RK4 with h = 1e-3: global error O(h^4) ~ 1e-12 times the derivative bounds
    assert _theorem2_error(res) <= 1e-8
    assert np.max(res.monitors["product_error"]) <= 1e-13  # restore keeps phi(W) = X
    assert np.all(np.diff(res.monitors["norm_sq"]) < 0)  # gradient flow of |W|^2
    assert np.array_equal(W0, _start(1, d, N, cplx)[1])  # input not modified


@pytest.mark.slow
@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize(("d", "N"), [(1, 2), (2, 2), (2, 5), (3, 4), (4, 3), (4, 6)])
def test_theorem2_sweep(d, N, cplx):
    _, W0 = _start(2, d, N, cplx)
    res = regularizing_flow(W0, 1.0, dt=1e-3, save_every=100)
    assert _theorem2_error(res) <= 1e-8


def test_regularizing_flow_rk4_order_and_cg():
    _, W0 = _start(3, 2, 3, False)
    errs = [_theorem2_error(regularizing_flow(W0, 0.5, dt=h)) for h in (0.05, 0.025)]
    assert np.log2(errs[0] / errs[1]) == pytest.approx(4, abs=0.5)  # fourth order
    cg = regularizing_flow(W0, 0.5, dt=0.025, projection="cg")
    assert _theorem2_error(cg) == pytest.approx(errs[1], rel=1e-3)


@pytest.mark.parametrize("cplx", [False, True])
def test_ness_flow_dissipation_and_balance(cplx):
    X, W0 = _start(4, 2, 3, cplx, spread=0.1)
    h = 1e-3
    res = ness_flow(W0, 1.5, dt=h, save_every=1)
    g2 = res.monitors["moment_norm_sq"]
    # d/dt |G|^2 = -|grad|G|^2|^2, with the fourth-order central difference of the RK4
    # trajectory (truncation O(h^4)); restricted to |G|^2 >= 1e-8 |G_0|^2, below which the
    # rounding of G (~1e-16 |W|^2) divided by h dominates
    dg2 = (-g2[4:] + 8 * g2[3:-1] - 8 * g2[1:-3] + g2[:-4]) / (12 * h)
    grad2 = res.monitors["grad_norm_sq"][2:-2]
    keep = g2[2:-2] >= 1e-8 * g2[0]
    assert keep.sum() > 100
    assert np.max(np.abs(dg2 + grad2)[keep] / grad2[keep]) <= 3e-4
    # the flow ends balanced, on the same fiber
    assert np.sqrt(g2[-1]) <= 1e-6 * np.sqrt(g2[0])
    assert np.linalg.norm(end_to_end(res.final) - X) <= 1e-13 * np.linalg.norm(X)
    # [R]'s scaling (-2 w_G, eq. 2.26) is the same flow at half speed
    half = ness_flow(W0, 0.5, dt=1e-3, scaling="paper")
    full = ness_flow(W0, 0.25, dt=5e-4)
    assert np.linalg.norm(half.final - full.final) <= 1e-9 * np.linalg.norm(full.final)


@pytest.mark.parametrize("cplx", [False, True])
def test_regularized_gradient_flow_moments(cplx):
    rng = np.random.default_rng(5)
    d, N, kappa = 2, 3, 0.7
    _, W0 = _start(5, d, N, cplx)
    T = rng.standard_normal((d, d))
    energy = QuadraticEnergy(T, 1.0) if not cplx else (lambda X: X - T)
    res = regularized_gradient_flow(W0, energy, kappa, 0.5, dt=1e-3, save_every=50)
    G = res.monitors["moments"]
    exact = G[0][None] * np.exp(-2 * kappa * res.times)[:, None, None, None]
    # G obeys the linear ODE dG/dt = -2 kappa G exactly (docs/mathematics.rst); RK4 error O(h^4)
    assert (
        np.max(np.linalg.norm(G - exact, axis=(2, 3)) / np.linalg.norm(exact, axis=(2, 3))) <= 1e-8
    )
    if not cplx:
        assert res.monitors["energy"][-1] < res.monitors["energy"][0]


@pytest.mark.parametrize("cplx", [False, True])
def test_split_velocity(cplx):
    rng = np.random.default_rng(6)
    d, N, kappa = 3, 3, 0.3
    _, W = _start(6, d, N, cplx)
    dE = _randn(rng, (d, d), cplx)
    v = -lifted_gradient(W, dE) - kappa * W
    tangent, normal = split_velocity(W, v)
    assert np.allclose(tangent + normal, v, rtol=0, atol=1e-14 * np.linalg.norm(v))
    assert abs(np.real(np.vdot(tangent, normal))) <= 1e-12 * np.linalg.norm(v) ** 2
    # the loss part is normal (range of dphi^*), so the tangent part is the regularizing flow
    assert np.linalg.norm(
        tangent + 0.5 * kappa * regularizer_gradient(W)
    ) <= 1e-12 * np.linalg.norm(v)
    assert np.linalg.norm(fiber_tangent_projection(W, normal)) <= 1e-12 * np.linalg.norm(v)


def test_flow_input_errors():
    X, W0 = _start(7, 2, 3, False)
    with pytest.raises(ValueError, match="single point"):
        regularizing_flow(W0[:1], 1.0)
    singular = W0.copy()
    singular[0] = np.diag([1.0, 0.0])
    with pytest.raises(ValueError, match="rank-deficient"):
        ness_flow(singular, 1.0)
    with pytest.raises(ValueError, match="scaling"):
        ness_flow(W0, 1.0, scaling="half")
    with pytest.raises(ValueError, match="kappa"):
        regularized_gradient_flow(W0, QuadraticEnergy(X, 1.0), -1.0, 1.0)
    with pytest.raises(TypeError, match="energy"):
        regularized_gradient_flow(W0, 3.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="t_final"):
        regularizing_flow(W0, -1.0)
    assert moments(W0).shape == (2, 2, 2)
