"""Flow solvers: FSAL dopri5, the RKC method, stop_when, rtol/atol and the factor evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds import (
    MatrixCompletionEnergy,
    QuadraticEnergy,
    balanced_point,
    depth_operator,
    end_to_end,
    lifted_gradient,
)
from dln_manifolds.flows import end_to_end_flow, integrate_flow, learning_flow
from dln_manifolds.flows.integrators import (
    ERKC_DAMPING,
    rkc_coefficients,
    rkc_stability_bound,
    rkc_stages,
)
from dln_manifolds.flows.learning import factor_velocity


class _Counter:
    """Velocity wrapper that counts its evaluations."""

    def __init__(self, f):
        self.f, self.n = f, 0

    def __call__(self, t, y):
        self.n += 1
        return self.f(t, y)


def _stiff_linear(rng, d=6, lam_max=1e3):
    """y' = A y with A symmetric negative definite, eigenvalues in [-lam_max, -1]."""
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    lam = -np.geomspace(1.0, lam_max, d)
    A = (Q * lam) @ Q.T
    y0 = rng.standard_normal(d)

    def exact(t):
        return (Q * np.exp(lam * t)) @ (Q.T @ y0)

    return A, y0, exact


def _rkc_polynomial(s: int, z, damping: float = 2.0 / 13.0):
    """Stability polynomial of s-stage RKC: one step of y' = z y from y = 1 with h = 1."""
    mu, nu, mu_t, gamma_t, _ = rkc_coefficients(s, damping=damping)
    y0 = 1.0
    z = np.asarray(z, dtype=float)
    prev2, prev = y0, y0 + mu_t[1] * z * y0
    for j in range(2, s + 1):
        cur = (1 - mu[j] - nu[j]) * y0 + mu[j] * prev + nu[j] * prev2
        cur += mu_t[j] * z * prev + gamma_t[j] * z * y0
        prev2, prev = prev, cur
    return prev


@pytest.mark.parametrize("s", [2, 5, 17, 60])
def test_rkc_coefficients_second_order_and_stable_on_the_promised_interval(s):
    # second order: P(z) = 1 + z + z^2/2 + O(z^3)
    z = 1e-3
    assert abs(_rkc_polynomial(s, z) - (1 + z + z * z / 2)) < 50 * s**4 * z**3
    # stage times: consistent, c_s = 1
    assert rkc_coefficients(s)[-1][-1] == pytest.approx(1.0, rel=1e-12)
    # |P| <= 1 on [-beta, 0], beta = (s^2 - 1) / 1.54 the bound used to pick the stages
    beta = (s**2 - 1) / 1.54
    zs = np.linspace(-beta, 0.0, 4001)
    assert np.abs(_rkc_polynomial(s, zs)).max() <= 1.0 + 1e-12
    assert rkc_stages(beta * 0.999) == s
    # negative control: well past the interval the polynomial grows
    assert abs(_rkc_polynomial(s, -1.2 * beta - 2)) > 1.0


def test_rkc_is_second_order_with_fixed_steps(rng):
    A, y0, exact = _stiff_linear(rng, lam_max=5.0)
    T = 1.0
    errs = []
    for n in (20, 40, 80):
        res = integrate_flow(lambda t, y: A @ y, y0, T, dt=T / n, method="rkc")
        errs.append(np.linalg.norm(res.final - exact(T)))
    slopes = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(slopes > 1.8) and np.all(slopes < 2.3), slopes


@pytest.mark.parametrize(("method", "tol"), [("rkc", 5e-3), ("erkc", 1e-3)])
def test_rkc_is_stable_where_explicit_runge_kutta_blows_up(rng, method, tol):
    A, y0, exact = _stiff_linear(rng, lam_max=1e4)
    T, dt = 2.0, 0.05  # dt * lambda_max = 500, far outside the rk4 / dopri5 regions
    res = integrate_flow(lambda t, y: A @ y, y0, T, dt=dt, method=method)
    assert np.linalg.norm(res.final - exact(T)) < tol * np.linalg.norm(y0)
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(FloatingPointError):  # negative control
            integrate_flow(lambda t, y: A @ y, y0, T, dt=dt, method="rk4")


def test_adaptive_rkc_meets_its_tolerance_on_a_stiff_problem_with_fewer_evaluations(rng):
    A, y0, exact = _stiff_linear(rng, lam_max=2e3)
    T = 2.0
    rkc = _Counter(lambda t, y: A @ y)
    dop = _Counter(lambda t, y: A @ y)
    r1 = integrate_flow(rkc, y0, T, dt=1e-4, method="rkc", adaptive=True, rtol=1e-4, atol=1e-7)
    r2 = integrate_flow(dop, y0, T, dt=1e-4, method="dopri5", adaptive=True, rtol=1e-4, atol=1e-7)
    for r in (r1, r2):
        assert np.abs(r.final - exact(T)).max() < 1e-3 * np.abs(y0).max()
    assert rkc.n * 5 < dop.n, (rkc.n, dop.n)


def test_dopri5_uses_first_same_as_last():
    # accepted and rejected steps both cost 6 evaluations (the old code spent 7)
    f = _Counter(lambda t, y: -y + np.sin(5 * t))
    res = integrate_flow(f, np.ones(3), 10.0, dt=1.0, method="dopri5", adaptive=True, rtol=1e-6)
    assert res.n_rejected > 0
    assert f.n == 1 + 6 * (res.n_steps + res.n_rejected)
    # a restore that returns a new array forbids the reuse: 7 evaluations per accepted step
    g = _Counter(lambda t, y: -y + np.sin(5 * t))
    res2 = integrate_flow(
        g, np.ones(3), 10.0, dt=1.0, method="dopri5", adaptive=True, rtol=1e-6, restore=np.copy
    )
    assert g.n == 1 + 6 * (res2.n_steps + res2.n_rejected) + res2.n_steps - 1
    np.testing.assert_allclose(res.final, res2.final, rtol=1e-12)


@pytest.mark.parametrize("method", ["rk4", "dopri5", "rkc"])
def test_stop_when_stops_at_the_first_step_that_meets_it(method):
    res = integrate_flow(
        lambda t, y: -y,
        np.ones(2),
        10.0,
        dt=0.01,
        method=method,
        adaptive=method != "rk4",
        rtol=1e-6,
        stop_when=lambda t, y: y[0] < 0.5,
    )
    assert res.times[-1] < 10.0
    assert res.final[0] < 0.5 <= res.states[-2][0]
    assert res.times[-2] <= np.log(2.0) + 1e-6 <= res.times[-1] + 2e-6


def test_tolerances_validated():
    v = lambda t, y: -y  # noqa: E731
    with pytest.raises(ValueError, match="rtol"):
        integrate_flow(v, np.ones(2), 1.0, adaptive=True, rtol=-1.0)
    with pytest.raises(ValueError, match="atol"):
        integrate_flow(v, np.ones(2), 1.0, adaptive=True, atol=np.nan)
    with pytest.raises(ValueError, match="both"):
        integrate_flow(v, np.ones(2), 1.0, adaptive=True, rtol=0.0, atol=0.0)
    with pytest.raises(TypeError, match="stop_when"):
        integrate_flow(v, np.ones(2), 1.0, stop_when=1.0)
    with pytest.raises(TypeError, match="save_as"):
        integrate_flow(v, np.ones(2), 1.0, save_as="x")


def _completion(rng, d=6, rank=2):
    target = rng.standard_normal((d, rank)) @ rng.standard_normal((rank, d)) / np.sqrt(d)
    mask = rng.random((d, d)) < 0.6
    return MatrixCompletionEnergy(mask, np.where(mask, target, 0.0))


@pytest.mark.parametrize("N", [1, 2, 3, 5])
def test_factor_velocity_is_the_lifted_gradient_and_projects_to_the_depth_operator(rng, N):
    d = 4
    energy = _completion(rng, d)
    X = rng.standard_normal((d, d))
    W = balanced_point(X, N, rotations=np.linalg.qr(rng.standard_normal((N - 1, d, d)))[0])
    V = factor_velocity(W, energy.gradient)
    np.testing.assert_allclose(V, -lifted_gradient(W, energy.gradient(X)), atol=1e-12)
    # end-to-end differential of V at balanced W is -A_{N,X}(E'(X)) ([G] Thm 2)
    eps = 1e-6
    dX = (end_to_end(W + eps * V) - end_to_end(W - eps * V)) / (2 * eps)
    np.testing.assert_allclose(dX, -depth_operator(X, N, energy.gradient(X)), atol=1e-7)


@pytest.mark.parametrize("N", [2, 3, 6])
def test_factor_and_svd_evaluations_follow_the_same_flow(rng, N):
    energy = _completion(rng)
    X0 = 0.3 * np.eye(6) + 0.05 * rng.standard_normal((6, 6))
    kw = dict(dt=1e-3, method="dopri5", adaptive=True, rtol=1e-10, atol=1e-12, save_every=10**6)
    r_svd = end_to_end_flow(X0, energy, N, 3.0, evaluation="svd", **kw)
    r_fac = end_to_end_flow(X0, energy, N, 3.0, evaluation="factors", **kw)
    assert r_fac.states.shape == r_svd.states.shape == (2, 6, 6)
    scale = np.linalg.norm(r_svd.final)
    assert np.linalg.norm(r_fac.final - r_svd.final) < 1e-7 * scale
    assert np.linalg.norm(r_fac.final - X0) > 0.1 * scale  # it moved
    np.testing.assert_allclose(r_fac.monitors["energy"][-1], energy.value(r_fac.final))


@pytest.mark.parametrize("evaluation", ["svd", "factors"])
def test_rtol_controls_the_path_error_and_the_cost(rng, evaluation):
    energy = _completion(rng)
    X0 = 0.3 * np.eye(6)
    ref = end_to_end_flow(
        X0, energy, 3, 4.0, adaptive=True, rtol=1e-11, atol=1e-13, evaluation=evaluation
    ).final
    errs, steps = [], []
    for rtol in (1e-3, 1e-6):
        res = end_to_end_flow(
            X0, energy, 3, 4.0, adaptive=True, rtol=rtol, atol=rtol * 1e-2, evaluation=evaluation
        )
        errs.append(np.linalg.norm(res.final - ref) / np.linalg.norm(ref))
        steps.append(res.n_steps)
    assert errs[1] < 1e-5 and errs[1] < errs[0] < 1e-2
    assert steps[0] < steps[1]


@pytest.mark.parametrize("evaluation", ["svd", "factors"])
def test_end_to_end_flow_stops_when_the_loss_is_reached(rng, evaluation):
    energy = _completion(rng)
    goal = 1e-6
    res = end_to_end_flow(
        0.3 * np.eye(6),
        energy,
        3,
        1e3,
        dt=1e-2,
        method="rkc",
        adaptive=True,
        rtol=1e-4,
        atol=1e-7,
        evaluation=evaluation,
        stop_when=lambda t, X: energy.value(X) < goal,
    )
    assert res.times[-1] < 1e3
    assert res.monitors["energy"][-1] < goal <= res.monitors["energy"][-2]


def test_factor_path_detects_a_layer_leaving_gl():
    # d = 1, N = 2, E = (x + 1)^2 / 2 from x = 1: one Euler step of dt = 1 flips both layers
    # (x stays positive, so only the layer guard can see it); the svd path flips x itself.
    energy = QuadraticEnergy(-np.ones((1, 1)))
    for evaluation in ("factors", "svd"):
        with pytest.raises(RuntimeError, match="left GL"):
            end_to_end_flow(
                np.ones((1, 1)), energy, 2, 1.0, dt=1.0, method="euler", evaluation=evaluation
            )


def test_new_flow_options_validated(rng):
    energy = _completion(rng)
    with pytest.raises(ValueError, match="evaluation"):
        end_to_end_flow(np.eye(6), energy, 3, 1.0, evaluation="qr")
    with pytest.raises(ValueError, match="finite depth"):
        end_to_end_flow(np.eye(6), energy, np.inf, 1.0, evaluation="factors")


def test_learning_flow_accepts_tolerances_and_stop_when(rng):
    energy = _completion(rng)
    W0 = balanced_point(0.5 * np.eye(6), 3)
    res = learning_flow(
        W0,
        energy,
        100.0,
        adaptive=True,
        rtol=1e-5,
        atol=1e-8,
        stop_when=lambda t, W: energy.value(end_to_end(W)) < 1e-4,
    )
    assert res.times[-1] < 100.0 and res.monitors["energy"][-1] < 1e-4


def test_error_scale_norm_is_relative_to_the_size_of_the_state():
    # y = (1, 0) rotating: the second entry starts at 0, so the entrywise criterion with a
    # tiny atol asks for absolute accuracy 1e-12 there; "norm" asks for rtol * max|y|.
    A = np.array([[0.0, -1.0], [1.0, 0.0]])
    counts = {}
    for scale in ("entrywise", "norm"):
        f = _Counter(lambda t, y: A @ y)
        res = integrate_flow(
            f,
            np.array([1.0, 0.0]),
            1.0,
            dt=1e-3,
            method="dopri5",
            adaptive=True,
            rtol=1e-6,
            atol=1e-14,
            error_scale=scale,
        )
        exact = np.array([np.cos(1.0), np.sin(1.0)])
        assert np.abs(res.final - exact).max() < 1e-5
        counts[scale] = f.n
    assert counts["norm"] < counts["entrywise"]
    with pytest.raises(ValueError, match="error_scale"):
        integrate_flow(lambda t, y: y, np.ones(2), 1.0, adaptive=True, error_scale="max")


# --- extrapolated RKC (third order) and the dopri5 / stiff-solver switch ---------------------


def _erkc_polynomial(s: int, z, damping: float = ERKC_DAMPING):
    """Stability polynomial of one erkc step: (4 R_s(z/2)^2 - R_s(z)) / 3, R_s of damped RKC."""
    r = lambda w: _rkc_polynomial(s, w, damping)  # noqa: E731
    return (4.0 * r(np.asarray(z) / 2) ** 2 - r(z)) / 3.0


@pytest.mark.parametrize("s", [2, 3, 4, 7, 15, 40])
def test_erkc_stability_polynomial_is_bounded_on_the_rkc_interval(s):
    beta = rkc_stability_bound(s, damping=ERKC_DAMPING)
    # the interval of R_s itself, brute force: |R_s| <= 1 on [-beta, 0]
    zs = np.linspace(-beta, 0.0, 20001)
    assert np.abs(_rkc_polynomial(s, zs, ERKC_DAMPING)).max() <= 1.0 + 1e-12
    # the extrapolated step is stable there too, and third order at 0
    assert np.abs(_erkc_polynomial(s, zs)).max() <= 1.0 + 1e-12
    z = 1e-3
    assert abs(_erkc_polynomial(s, z) - np.exp(z)) < 10 * s**6 * z**4
    # more stages are stable for more: the bound grows like s^2
    assert rkc_stability_bound(s + 1, damping=ERKC_DAMPING) > beta > 0.45 * s**2 - 1


def test_rkc_stability_bound_validates_its_arguments():
    with pytest.raises(ValueError, match="s >= 2"):
        rkc_stability_bound(1)
    with pytest.raises(ValueError, match="damping"):
        rkc_stability_bound(4, damping=0.0)


def test_erkc_needs_its_damping_negative_control():
    # with the light damping 2/13 of plain RKC, the extrapolation leaves the unit disc
    worst = 0.0
    for s in (3, 6, 10):
        zs = np.linspace(-rkc_stability_bound(s), 0.0, 20001)
        worst = max(worst, float(np.abs(_erkc_polynomial(s, zs, 2.0 / 13.0)).max()))
    assert worst > 1.05


def _logistic(n=4):
    """y' = y (1 - y) componentwise, from y0 in (0, 1): a nonlinear problem with a closed form."""
    y0 = np.linspace(0.1, 0.7, n)

    def exact(t):
        return 1.0 / (1.0 + (1.0 / y0 - 1.0) * np.exp(-t))

    return (lambda t, y: y * (1.0 - y)), y0, exact


def test_erkc_is_third_order_on_a_nonlinear_problem():
    f, y0, exact = _logistic()
    T = 2.0
    errs = []
    for n in (10, 20, 40):
        res = integrate_flow(f, y0, T, dt=T / n, method="erkc")
        errs.append(np.abs(res.final - exact(T)).max())
    slopes = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(slopes > 2.7) and np.all(slopes < 3.5), slopes
    # negative control: plain RKC at the same steps is second order
    e_rkc = [
        np.abs(integrate_flow(f, y0, T, dt=T / n, method="rkc").final - exact(T)).max()
        for n in (20, 40)
    ]
    assert 1.7 < np.log2(e_rkc[0] / e_rkc[1]) < 2.3


def test_adaptive_erkc_tolerance_controls_the_error(rng):
    f, y0, exact = _logistic()
    errs, counts = [], []
    for rtol in (1e-4, 1e-7):
        g = _Counter(f)
        res = integrate_flow(g, y0, 3.0, dt=1e-2, method="erkc", adaptive=True, rtol=rtol, atol=0)
        errs.append(np.abs(res.final - exact(3.0)).max())
        counts.append(g.n)
    assert errs[0] < 1e-3 and errs[1] < 1e-6 and errs[1] < errs[0] / 30
    assert counts[0] < counts[1]


@pytest.mark.parametrize("hybrid", ["dopri5-erkc", "dopri5-rkc"])
def test_dopri5_erkc_switches_to_the_stiff_solver_only_where_the_flow_is_stiff(rng, hybrid):
    # stiff linear: after the fast transient, dopri5 is held by stability; the switch to erkc
    # (or rkc) cuts the evaluations and keeps the tolerance
    A, y0, exact = _stiff_linear(rng, lam_max=2e3)
    T = 4.0
    counts = {}
    for method in ("dopri5", hybrid):
        f = _Counter(lambda t, y: A @ y)
        res = integrate_flow(f, y0, T, dt=1e-4, method=method, adaptive=True, rtol=1e-5, atol=1e-8)
        assert np.abs(res.final - exact(T)).max() < 1e-4 * np.abs(y0).max()
        counts[method] = f.n
    assert counts[hybrid] * 3 < counts["dopri5"], counts
    # not stiff: it never switches, and is dopri5 step for step (negative control)
    f, y0, _ = _logistic()
    a = integrate_flow(f, y0, 5.0, method="dopri5", adaptive=True, rtol=1e-6)
    b = integrate_flow(f, y0, 5.0, method=hybrid, adaptive=True, rtol=1e-6)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.states, b.states)


@pytest.mark.parametrize("hybrid", ["dopri5-erkc", "dopri5-rkc"])
def test_switching_methods_need_adaptive_steps(hybrid):
    with pytest.raises(ValueError, match="adaptive"):
        integrate_flow(lambda t, y: -y, np.ones(2), 1.0, method=hybrid)


# --- trial steps that overflow are rejected, not raised ---------------------------------------


class _FiniteOnly:
    """``y' = -y^3`` defined for finite y only, as an energy's input check is: it raises
    ValueError on a non-finite argument, and counts how often it did."""

    def __init__(self):
        self.raised = 0

    def __call__(self, t, y):
        if not np.all(np.isfinite(y)):
            self.raised += 1
            raise ValueError("y contains NaN or Inf entries")
        return -(y**3)


def test_a_trial_step_whose_stages_overflow_is_rejected_and_shrunk():
    # y' = -y^3, y(0) = 1: y(t) = 1 / sqrt(1 + 2t). A first trial step of 1e3 sends the
    # dopri5 stages to -199, 1e9, 1e28, ... until they overflow and the velocity raises.
    f, T = _FiniteOnly(), 1e4
    res = integrate_flow(f, np.ones(2), T, dt=1e3, method="dopri5", adaptive=True, rtol=1e-8)
    assert f.raised >= 1  # negative control: the overflow did reach the velocity ...
    assert res.n_rejected >= f.raised  # ... and each such trial was rejected, not accepted
    assert np.all(np.isfinite(res.states))
    np.testing.assert_allclose(res.final, 1 / np.sqrt(1 + 2 * T), rtol=1e-6)
    # a fixed step cannot shrink: the same overflow is a clear FloatingPointError
    with pytest.raises(FloatingPointError, match="reduce dt") as info:
        integrate_flow(_FiniteOnly(), np.ones(2), T, dt=1e3, method="dopri5")
    assert isinstance(info.value.__cause__, ValueError)


def test_a_velocity_that_fails_at_every_trial_step_gives_a_clear_error():
    # the velocity raises off the initial time: every trial fails, and after a bounded number
    # of shrinking retries the error names the failure and chains the velocity's exception
    calls = []

    def broken(t, y):
        calls.append(t)
        if t > 0:
            raise ValueError("broken off t = 0")
        return -y

    with pytest.raises(FloatingPointError, match="consecutive trial steps") as info:
        integrate_flow(broken, np.ones(2), 1.0, dt=0.1, method="dopri5", adaptive=True)
    assert isinstance(info.value.__cause__, ValueError)
    assert len(calls) < 30
    # an error at the accepted state itself is the caller's: it propagates unchanged
    with pytest.raises(ZeroDivisionError):
        integrate_flow(lambda t, y: 1 / 0, np.ones(2), 1.0, method="dopri5", adaptive=True)

    def bad(t, y):
        raise ValueError("bad everywhere")

    for method in ("rk4", "rkc", "erkc"):  # fixed steps too
        with pytest.raises(ValueError, match="bad everywhere"):
            integrate_flow(bad, np.ones(2), 1.0, dt=0.1, method=method)


def test_end_to_end_flow_survives_overflowing_stages_of_the_stiff_solver(rng):
    # the benchmark's failure in miniature: depth 8, the balanced factors, a first step far
    # too large, so that the stages of the trial steps overflow in the layer products and the
    # completion energy's input check raises on the end-to-end matrix
    d, N = 5, 8
    mask = rng.random((d, d)) < 0.7
    target = rng.standard_normal((d, 2)) @ rng.standard_normal((2, d))
    energy = MatrixCompletionEnergy(mask, np.where(mask, target, 0.0))
    X0 = 0.5 * np.eye(d)
    raised = []

    def gradient(X):  # the energy's gradient, recording when its input check fires
        try:
            return energy.gradient(X)
        except ValueError:
            raised.append(X)
            raise

    options = dict(method="dopri5-erkc", adaptive=True, rtol=1e-6, atol=0.0, error_scale="norm")
    res = end_to_end_flow(X0, gradient, N, 1.0, dt=50.0, evaluation="factors", **options)
    ref = end_to_end_flow(X0, energy, N, 1.0, dt=1e-3, evaluation="svd", **options)
    assert raised and not np.all(np.isfinite(raised[0]))  # negative control: it overflowed
    assert res.n_rejected >= len(raised)
    np.testing.assert_allclose(res.final, ref.final, atol=1e-4 * np.abs(ref.final).max())
