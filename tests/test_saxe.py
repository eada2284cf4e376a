"""Saxe, McClelland and Ganguli (2014): closed-form learning curves of a deep linear network.

Whitened regression E = 1/2 |X - S|^2 with S = U diag(s) V^T, balanced start aligned with S,
X0 = U diag(u0) V^T. The flow keeps X aligned and each mode solves the scalar ODE
du/dt = -m(u) (u - s) with m(u) = N u^{2-2/N}, the diagonal multiplier of A_{N,X}
([G] eq. 7.13-7.14). For N = 2 this is the logistic equation du/dt = 2u(s - u), solved by

    u(t) = s e^{2st} / (e^{2st} - 1 + s/u0):

differentiating, with D = e^{2st} - 1 + s/u0, du/dt = 2s^2 e^{2st}/D - s e^{2st} 2s e^{2st}/D^2
= 2u (s - s e^{2st}/D) = 2u (s - u), and u(0) = s / (s/u0) = u0.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dln_manifolds as dm
from dln_manifolds.experiments.saxe_hierarchy import saxe_closed_form
from dln_manifolds.flows import end_to_end_flow, learning_flow


def _frames(rng, m, n):
    U = np.linalg.qr(rng.standard_normal((m, m)))[0]
    V = np.linalg.qr(rng.standard_normal((n, min(m, n))))[0]
    return U[:, : min(m, n)], V


def _problem(m=6, n=8, seed=0, scale=0.02):
    rng = np.random.default_rng(seed)
    U, V = _frames(rng, m, n)
    s = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5])[: min(m, n)]
    u0 = np.geomspace(scale, scale / 4, min(m, n))
    S = (U * s) @ V.T
    return U, V, s, u0, S, (U * u0) @ V.T


def _modes(U, X, V):
    """U^T X V for X (..., m, n): the diagonal holds the modes, the rest must vanish."""
    return np.swapaxes(U, 0, 1) @ X @ V


def test_closed_form_solves_the_logistic_equation():
    s, u0 = np.array([3.0, 0.5, 0.0]), np.array([0.01, 0.2, 0.1])
    t = np.linspace(0.0, 4.0, 41)
    u = saxe_closed_form(t, s, u0)
    np.testing.assert_allclose(u[0], u0, rtol=1e-15)
    h = 1e-5
    du = (saxe_closed_form(t + h, s, u0) - saxe_closed_form(t - h, s, u0)) / (2 * h)
    np.testing.assert_allclose(du, 2 * u * (s - u), rtol=1e-8, atol=1e-10)
    # s = 0 is the limit u0 / (1 + 2 u0 t) of du/dt = -2u^2
    np.testing.assert_allclose(u[:, 2], 0.1 / (1 + 0.2 * t), rtol=1e-14)
    # the factor 2 is the diagonal multiplier N u^{2 - 2/N} of A_{2,X} at N = 2
    U, V, s6, u06, S, X0 = _problem()
    A = _modes(U, dm.depth_operator(X0, 2, X0 - S), V)
    np.testing.assert_allclose(np.diag(A), 2 * u06 * (u06 - s6), rtol=1e-12)
    assert np.abs(A - np.diag(np.diag(A))).max() < 1e-14


def test_library_flows_follow_the_closed_form():
    """N = 2, rectangular S (6 x 8), hidden width 10: upstairs and downstairs, to 1e-8."""
    U, V, s, u0, S, X0 = _problem()
    energy = dm.RegressionEnergy.from_covariances(np.eye(8), S)
    T = 6.0
    opts = {"adaptive": True, "rtol": 1e-10, "atol": 1e-14}
    down = end_to_end_flow(X0, energy, 2, T, **opts)
    up = learning_flow(dm.balanced_point(X0, 2, widths=(8, 10, 6)), energy, T, **opts)
    for res, X in ((down, down.states), (up, up.monitors["end_to_end"])):
        M = _modes(U, X, V)
        exact = saxe_closed_form(res.times, s, u0)
        diag = np.diagonal(M, axis1=-2, axis2=-1)
        assert np.abs(diag - exact).max() < 1e-8, np.abs(diag - exact).max()
        assert np.abs(M - np.einsum("ti,ij->tij", diag, np.eye(6))).max() < 1e-9  # aligned
        assert np.abs(X[-1] - S).max() < 0.1  # every mode has been learned
    assert np.all(np.diff(down.monitors["energy"]) <= 0)


def test_unbalanced_or_misaligned_start_breaks_the_closed_form():
    """Negative controls: the formula needs a balanced and aligned start."""
    U, V, s, u0, S, X0 = _problem()
    energy = dm.QuadraticEnergy(S)
    T, opts = 3.0, {"adaptive": True, "rtol": 1e-10, "atol": 1e-14}
    W = dm.balanced_point(X0, 2, widths=(8, 10, 6))
    unbalanced = [2.0 * W[0], 0.5 * W[1]]  # same X0, moments 3.75 W1 W1^T != 0
    up = learning_flow(unbalanced, energy, T, **opts)
    diag = np.diagonal(_modes(U, up.monitors["end_to_end"], V), axis1=-2, axis2=-1)
    assert np.abs(diag - saxe_closed_form(up.times, s, u0)).max() > 1e-2
    rng = np.random.default_rng(1)
    X0m = X0 + 0.01 * rng.standard_normal(X0.shape)
    down = end_to_end_flow(X0m, energy, 2, T, **opts)
    sv = np.linalg.svd(X0m, compute_uv=False)
    diag = np.diagonal(_modes(U, down.states, V), axis1=-2, axis2=-1)
    assert np.abs(diag - saxe_closed_form(down.times, s, sv)).max() > 1e-3


def test_gradient_descent_converges_to_the_closed_form_at_order_lr():
    """Rectangular S, widths (8, 10, 6): error O(lr) at t = k lr."""
    U, V, s, u0, S, X0 = _problem(m=6, n=8, seed=2)
    energy = dm.QuadraticEnergy(S)
    W0 = dm.balanced_point(X0, 2, widths=(8, 10, 6))
    T, errors = 3.0, []
    for lr in (4e-3, 2e-3, 1e-3):
        res = dm.gradient_descent(W0, energy, lr, round(T / lr), save_every=round(0.25 / lr))
        diag = np.diagonal(_modes(U, res.monitors["end_to_end"], V), axis1=-2, axis2=-1)
        errors.append(np.abs(diag - saxe_closed_form(res.times, s, u0)).max())
    assert errors[-1] < 2e-2
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((1.7 < ratios) & (ratios < 2.3)), ratios  # first order in lr


def _scalar_ode(N, s, u0, times):
    """The modes u_i(t) of du/dt = N u^{2-2/N} (s - u) at ``times`` (DOP853, tight)."""
    sol = solve_ivp(
        lambda t, u: N * u ** (2 - 2 / N) * (s - u),
        (0.0, times[-1]),
        u0,
        t_eval=times,
        rtol=1e-12,
        atol=1e-15,
        method="DOP853",
    )
    return sol.y.T


@pytest.mark.parametrize("N", [3, 5])
def test_deeper_aligned_modes_follow_the_scalar_ode(N):
    """du/dt = N u^{2-2/N} (s - u) per mode, rectangular X, against solve_ivp."""
    U, V, s, u0, S, X0 = _problem(m=4, n=7, seed=N, scale=0.1)
    energy = dm.QuadraticEnergy(S)
    T = 2.5
    opts = {"adaptive": True, "rtol": 1e-10, "atol": 1e-14}
    down = end_to_end_flow(X0, energy, N, T, **opts)
    diag = np.diagonal(_modes(U, down.states, V), axis1=-2, axis2=-1)
    assert np.abs(diag - _scalar_ode(N, s, u0, down.times)).max() < 1e-8
    assert np.abs(diag[-1] - s)[:3].max() < 1e-2  # the strong modes are learned
    if N == 3:  # and upstairs, widths (7, 9, 5, 4)
        W0 = dm.balanced_point(X0, N, widths=(7, 9, 5, 4))
        up = learning_flow(W0, energy, T, **opts)
        vals = np.diagonal(_modes(U, up.monitors["end_to_end"], V), axis1=-2, axis2=-1)
        assert np.abs(vals - _scalar_ode(N, s, u0, up.times)).max() < 1e-8
    # negative control: the N = 2 law is a different curve
    assert np.abs(diag - saxe_closed_form(down.times, s, u0)).max() > 1e-2


def test_saxe_hierarchy_experiment(monkeypatch):
    """The registered experiment (tiny): claims pass, figures come from the data, and the
    closed-form claim fails against a wrong formula (negative control)."""
    import matplotlib.pyplot as plt

    from dln_manifolds.experiments import ExperimentResult, get_experiment, run_experiment
    from dln_manifolds.experiments import saxe_hierarchy as mod

    res = run_experiment("saxe_hierarchy", size="tiny", seed=1)
    assert res.passed, [c for c in res.claims if not c.passed]
    D = res.data
    assert D["modes"].shape == (2, len(D["times"]), 6) and D["off_diagonal"].max() < 1e-12
    assert np.all(np.diff(D["t50"], axis=1) > 0)  # weaker modes later
    figs = get_experiment("saxe_hierarchy").plot(res)
    assert [f.name for f in figs] == ["mode_strengths", "transition_width"]
    line = figs[0].figure.axes[0].lines[1]  # closed form of the strongest mode
    np.testing.assert_array_equal(line.get_ydata(), D["closed_form"][:, 0])
    altered = ExperimentResult(
        **{**res.__dict__, "data": {**D, "closed_form": D["closed_form"] + 1.0}}
    )
    line2 = get_experiment("saxe_hierarchy").plot(altered)[0].figure.axes[0].lines[1]
    np.testing.assert_array_equal(line2.get_ydata(), D["closed_form"][:, 0] + 1.0)
    plt.close("all")

    def slow(t, s, u0):  # the logistic law without its factor 2: u' = u (s - u)
        return saxe_closed_form(np.asarray(t) / 2, s, u0)

    monkeypatch.setattr(mod, "saxe_closed_form", slow)
    bad = run_experiment("saxe_hierarchy", size="tiny", seed=1)
    assert not bad.claims[0].passed and bad.claims[0].measured > 0.1
