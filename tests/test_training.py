"""dln_manifolds.training: GD, end-to-end GD, SGD, initializers, save/load, plotting.

Brute-force references: explicit numpy loops with lifted_gradient, the learning
flows integrated by RK4, the Arora-Cohen-Hazan formula for A_{N,X} by matrix
powers, and the exact second-order change of the moments under one GD step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from dln_manifolds import (
    MatrixSensingEnergy,
    QuadraticEnergy,
    TrainingDivergedError,
    TrainingResult,
    balanced_point,
    end_to_end,
    end_to_end_gradient_descent,
    gradient_descent,
    init_weights,
    lifted_gradient,
    moments,
    sgd,
)
from dln_manifolds.flows import FlowResult, end_to_end_flow, learning_flow
from dln_manifolds.flows.learning import learning_velocity


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    with threadpool_limits(1):
        yield


def _target(rng, d):
    Q1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return Q1 @ np.diag(np.linspace(0.6, 1.4, d)) @ Q2


def _explicit_gd(W, energy, lr, steps):
    W = W.copy()
    for _ in range(steps):
        W = W - lr * lifted_gradient(W, energy.gradient(end_to_end(W)))
    return W


# ------------------------------------------------------------------ gradient descent


def test_gd_equals_explicit_loop(rng):
    d, N = 4, 3
    E = MatrixSensingEnergy.random(_target(rng, d), 30, seed=rng)
    W0 = init_weights(d, N, "gaussian", seed=rng)  # unbalanced
    res = gradient_descent(W0, E, 0.05, 7, save_every=1)
    assert res.states.shape == (8, N, d, d)
    np.testing.assert_allclose(res.times, 0.05 * np.arange(8), rtol=0, atol=1e-15)
    for k in (1, 4, 7):
        ref = _explicit_gd(W0, E, 0.05, k)
        assert np.max(np.abs(res.states[k] - ref)) <= 1e-14 * np.max(np.abs(ref))
    # a callable E'(X) gives the same steps (no energy monitor then)
    res2 = gradient_descent(W0, E.gradient, 0.05, 7, save_every=1)
    np.testing.assert_array_equal(res2.final, res.final)
    assert "energy" not in res2.monitors and "energy" in res.monitors
    np.testing.assert_allclose(res.monitors["energy"][-1], E.value(end_to_end(res.final)))
    # negative control: a different learning rate is visibly different
    assert np.max(np.abs(_explicit_gd(W0, E, 0.051, 7) - res.final)) > 1e-6
    # W0 is not modified, results are copies
    assert res.states[0] is not W0 and np.array_equal(res.states[0], W0)


def test_gd_accepts_sequence_of_layers(rng):
    E = QuadraticEnergy(_target(rng, 3))
    W0 = init_weights(3, 2, seed=1)
    a = gradient_descent(list(W0), E, 0.1, 3)
    b = gradient_descent(W0, E, 0.1, 3)
    np.testing.assert_array_equal(a.final, b.final)


def test_gd_tracks_learning_flow_as_lr_vanishes(rng):
    d, N, T = 3, 3, 0.6
    E = QuadraticEnergy(_target(rng, d))
    W0 = balanced_point(_target(rng, d) * 0.8, N)
    flow = learning_flow(W0, E, T, dt=T / 60)
    down = end_to_end_flow(end_to_end(W0), E, N, T, dt=T / 60)
    errors, errors_down = [], []
    for steps in (40, 80, 160):
        gd = gradient_descent(W0, E, T / steps, steps)
        assert gd.times[-1] == pytest.approx(T)
        errors.append(np.max(np.abs(gd.final - flow.final)))
        errors_down.append(np.max(np.abs(gd.monitors["end_to_end"][-1] - down.final)))
    # first order in lr: halving lr halves the error
    for e in (errors, errors_down):
        assert 1.8 < e[0] / e[1] < 2.2 and 1.8 < e[1] / e[2] < 2.2, e
    assert errors[-1] < 1e-2


def test_moment_drift_is_second_order_per_step(rng):
    d, N = 3, 3
    E = MatrixSensingEnergy.random(_target(rng, d), 20, seed=rng)
    W0 = init_weights(d, N, "gaussian", scale=1.5, seed=rng)
    g = lifted_gradient(W0, E.gradient(end_to_end(W0)))
    drifts = []
    for lr in (0.02, 0.01, 0.005):
        res = gradient_descent(W0, E, lr, 1)
        dG = res.monitors["moments"][-1] - res.monitors["moments"][0]
        exact = lr**2 * (g[:-1] @ np.swapaxes(g[:-1], -1, -2) - np.swapaxes(g[1:], -1, -2) @ g[1:])
        np.testing.assert_allclose(dG, exact, rtol=1e-7, atol=1e-13)
        drifts.append(res.monitors["moment_drift"][-1])
        np.testing.assert_allclose(
            drifts[-1], np.linalg.norm(moments(res.final) - moments(W0), axis=(-2, -1))
        )
    drifts = np.array(drifts)
    assert np.all(drifts[0] > 1e-6)
    np.testing.assert_allclose(drifts[0] / drifts[1], 4.0, rtol=1e-5)
    np.testing.assert_allclose(drifts[1] / drifts[2], 4.0, rtol=1e-5)


def test_moments_conserved_by_the_flow(rng):
    """d/dt G_k = 0 along the learning velocity at an unbalanced point (vs a random direction)."""
    d, N = 3, 4
    E = MatrixSensingEnergy.random(_target(rng, d), 20, seed=rng)
    W = init_weights(d, N, seed=rng)
    assert np.max(np.abs(moments(W))) > 0.1

    def dmoments(V):
        T = np.swapaxes
        return (
            V[:-1] @ T(W[:-1], -1, -2)
            + W[:-1] @ T(V[:-1], -1, -2)
            - T(V[1:], -1, -2) @ W[1:]
            - T(W[1:], -1, -2) @ V[1:]
        )

    V = learning_velocity(W, E)
    assert np.max(np.abs(dmoments(V))) < 1e-13 * np.max(np.abs(V)) * np.max(np.abs(W))
    assert np.max(np.abs(dmoments(rng.standard_normal(W.shape)))) > 1e-2  # negative control


# ------------------------------------------------------------------ end-to-end GD


def _ach_operator(X, N, Z):
    """Arora-Cohen-Hazan: sum_j (XX^T)^{(j-1)/N} Z (X^TX)^{(N-j)/N}, powers by eigh."""

    def power(S, a):
        w, U = np.linalg.eigh(S)
        return (U * np.clip(w, 0, None) ** a) @ U.T

    return sum(
        power(X @ X.T, (j - 1) / N) @ Z @ power(X.T @ X, (N - j) / N) for j in range(1, N + 1)
    )


def test_end_to_end_gd_step_is_the_ach_update(rng):
    d, N, lr = 4, 3, 0.03
    E = MatrixSensingEnergy.random(_target(rng, d), 25, seed=rng)
    X0 = _target(rng, d)
    res = end_to_end_gradient_descent(X0, E, N, lr, 3, save_every=1)
    X = X0
    for k in range(1, 4):
        X = X - lr * _ach_operator(X, N, E.gradient(X))
        np.testing.assert_allclose(res.states[k], X, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(
        res.monitors["singular_values"][-1], np.linalg.svd(X, compute_uv=False), rtol=1e-11
    )


def test_end_to_end_gd_tracks_gd_to_second_order(rng):
    d, N = 3, 3
    E = MatrixSensingEnergy.random(_target(rng, d), 20, seed=rng)
    X0 = _target(rng, d)
    W0 = balanced_point(X0, N)
    # one step: the local error is C lr^2 (ratio 4 under halving); five steps from
    # the same start: still second order, with larger higher-order terms
    for steps, lrs, low in ((1, (0.02, 0.01, 0.005), 3.9), (5, (0.005, 0.0025, 0.00125), 3.3)):
        e = []
        for lr in lrs:
            up = gradient_descent(W0, E, lr, steps)
            down = end_to_end_gradient_descent(X0, E, N, lr, steps)
            e.append(np.max(np.abs(up.monitors["end_to_end"][-1] - down.final)))
        assert e[-1] > 1e-7
        assert low < e[0] / e[1] < 4.2 and low < e[1] / e[2] < 4.2, (steps, e)
    # negative control: from an unbalanced start the difference is first order
    Wu = init_weights(d, N, "gaussian", seed=3)
    Xu = end_to_end(Wu)
    eu = [
        np.max(
            np.abs(
                gradient_descent(Wu, E, lr, 1).monitors["end_to_end"][-1]
                - end_to_end_gradient_descent(Xu, E, N, lr, 1).final
            )
        )
        for lr in (0.02, 0.01)
    ]
    assert 1.7 < eu[0] / eu[1] < 2.3


# ------------------------------------------------------------------ SGD


def _regression(rng, d=3, n=12):
    A = rng.standard_normal((d, n))
    return A, _target(rng, d) @ A + 0.1 * rng.standard_normal((d, n))


def test_sgd_full_batch_equals_gd(rng):
    from dln_manifolds import RegressionEnergy

    A, B = _regression(rng)
    W0 = init_weights(3, 3, seed=2)
    s = sgd(W0, A, B, 0.05, 20, batch_size=12, seed=0, save_every=5)
    g = gradient_descent(W0, RegressionEnergy(A, B), 0.05, 20, save_every=5)
    np.testing.assert_array_equal(s.states, g.states)
    np.testing.assert_array_equal(s.monitors["energy"], g.monitors["energy"])
    ref = _explicit_gd(W0, RegressionEnergy(A, B), 0.05, 20)
    assert np.max(np.abs(s.final - ref)) < 1e-13


def test_sgd_minibatches_follow_the_seeded_permutations(rng):
    A, B = _regression(rng, n=6)
    W0 = init_weights(3, 2, seed=2)
    lr, b = 0.05, 3
    res = sgd(W0, A, B, lr, 5, batch_size=b, seed=11, save_every=1)
    gen = np.random.default_rng(11)
    batches = []
    for _ in range(3):  # 2 batches per epoch
        perm = gen.permutation(6)
        batches += [perm[:3], perm[3:]]
    W = W0.copy()
    for k in range(5):
        S = batches[k]
        X = end_to_end(W)
        dE = (X @ A[:, S] - B[:, S]) @ A[:, S].T / b
        W = W - lr * lifted_gradient(W, dE)
        assert np.max(np.abs(res.states[k + 1] - W)) < 1e-14
    # reproducible with the same seed, different with another
    again = sgd(W0, A, B, lr, 5, batch_size=b, seed=np.random.default_rng(11), save_every=1)
    np.testing.assert_array_equal(again.states, res.states)
    other = sgd(W0, A, B, lr, 5, batch_size=b, seed=12, save_every=1)
    assert np.max(np.abs(other.final - res.final)) > 1e-6


def test_sgd_decreases_loss(rng):
    A, B = _regression(rng, n=40)
    W0 = init_weights(3, 2, "balanced", seed=0)
    res = sgd(W0, A, B, 0.05, 400, batch_size=8, seed=1)
    assert res.monitors["energy"][-1] < 0.2 * res.monitors["energy"][0]


# ------------------------------------------------------------------ initializers


def test_init_weights():
    d, N = 60, 3
    G = init_weights(d, N, "gaussian", scale=2.0, seed=5)
    assert G.shape == (N, d, d)
    assert np.var(G) == pytest.approx(4.0 / d, rel=0.05)
    np.testing.assert_array_equal(G, init_weights(d, N, "gaussian", scale=2.0, seed=5))
    assert not np.array_equal(G, init_weights(d, N, "gaussian", scale=2.0, seed=6))
    O = init_weights(5, N, "orthogonal", scale=0.5, seed=5)
    np.testing.assert_allclose(
        np.swapaxes(O, -1, -2) @ O, 0.25 * np.eye(5)[None].repeat(N, 0), atol=1e-14
    )
    assert np.max(np.abs(moments(O))) < 1e-14
    Bl = init_weights(5, N, "balanced", scale=1.0, seed=5)
    assert np.max(np.abs(moments(Bl))) < 1e-12
    A = np.random.default_rng(5).standard_normal((5, 5)) / np.sqrt(5)
    np.testing.assert_allclose(end_to_end(Bl), A, atol=1e-12)
    with pytest.raises(ValueError, match="method"):
        init_weights(3, 2, "xavier")
    with pytest.raises(ValueError, match="scale"):
        init_weights(3, 2, scale=0.0)
    with pytest.raises(ValueError, match="d must"):
        init_weights(0, 2)


# ------------------------------------------------------------------ stopping, divergence


def test_stop_when(rng):
    E = QuadraticEnergy(_target(rng, 3))
    W0 = init_weights(3, 2, "balanced", seed=1)
    full = gradient_descent(W0, E, 0.05, 300, save_every=1)
    thr = 0.5 * full.monitors["energy"][0]
    k = int(np.argmax(full.monitors["energy"] < thr))
    assert k > 1
    res = gradient_descent(
        W0, E, 0.05, 300, save_every=1000, stop_when=lambda t, W: E.value(end_to_end(W)) < thr
    )
    assert res.stopped == "stop_when" and res.n_steps == k
    assert res.times[-1] == pytest.approx(k * 0.05)
    np.testing.assert_array_equal(res.final, full.states[k])
    np.testing.assert_array_equal(res.steps, [0, k])

    def boom(t, W):
        if t > 3.5 * 0.05:
            raise RuntimeError("user failure")
        return False

    with pytest.raises(RuntimeError, match="user failure") as info:
        gradient_descent(W0, E, 0.05, 100, stop_when=boom)
    assert any("step 4" in note for note in info.value.__notes__)


@pytest.mark.parametrize("save_every", [1, 2, 10**6])
def test_divergence_names_step_and_keeps_trajectory(rng, save_every):
    E = QuadraticEnergy(_target(rng, 3))
    W0 = init_weights(3, 3, "gaussian", scale=1.5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (overflow) leaks: one named error
        with pytest.raises(TrainingDivergedError, match=r"step \d+.*smaller learning rate") as info:
            gradient_descent(W0, E, 3.0, 10_000, save_every=save_every)
    err = info.value
    assert isinstance(err, ValueError)
    res = err.result
    assert f"step {err.step}" in str(err)
    assert res.stopped == "diverged" and res.n_steps == err.step - 1
    assert np.all(np.isfinite(res.states)) and np.all(np.isfinite(res.monitors["energy"]))
    ref = _explicit_gd(W0, E, 3.0, err.step - 1)
    assert np.max(np.abs(res.final - ref)) <= 1e-13 * np.max(np.abs(ref))
    assert res.times[-1] == pytest.approx((err.step - 1) * 3.0)
    # saved: every save_every-th step before the divergence, and the last finite one
    expected = sorted(set(range(0, err.step, save_every)) | {err.step - 1})
    np.testing.assert_array_equal(res.steps, expected)


class _CappedEnergy(QuadraticEnergy):
    """Finite gradient everywhere, but the value is inf once |X| > 1e3."""

    def value(self, X):
        return np.inf if np.max(np.abs(X)) > 1e3 else super().value(X)


def test_divergence_detected_by_the_loss(rng):
    E = _CappedEnergy(_target(rng, 3))
    W0 = init_weights(3, 2, "gaussian", scale=1.5, seed=0)
    with pytest.raises(TrainingDivergedError, match="step") as info:
        gradient_descent(W0, E, 1.0, 1000, save_every=1)
    res = info.value.result
    assert np.all(np.isfinite(res.monitors["energy"]))
    assert np.max(np.abs(res.monitors["end_to_end"][-1])) <= 1e3
    step = info.value.step
    assert np.max(np.abs(end_to_end(_explicit_gd(W0, E, 1.0, step)))) > 1e3
    assert res.n_steps == step - 1 and res.steps[-1] == step - 1


def test_divergence_of_end_to_end_gd(rng):
    E = QuadraticEnergy(_target(rng, 3))
    with pytest.raises(TrainingDivergedError, match="smaller learning rate") as info:
        end_to_end_gradient_descent(2 * _target(rng, 3), E, 3, 5.0, 10_000)
    assert np.all(np.isfinite(info.value.result.final))


# ------------------------------------------------------------------ memory, monitors


def test_monitors_only_at_save_points_and_bounded_memory(rng):
    E = QuadraticEnergy(_target(rng, 2))
    calls = []
    res = gradient_descent(
        init_weights(2, 2, seed=0),
        E,
        1e-3,
        3000,
        save_every=10**9,
        monitors={"count": lambda t, W: calls.append(t) or len(calls)},
    )
    assert len(calls) == 2 and res.states.shape[0] == 2 and res.n_steps == 3000
    assert res.times[-1] == pytest.approx(3.0)
    default = gradient_descent(init_weights(2, 2, seed=0), E, 1e-3, 3000)
    assert default.states.shape[0] == 101  # save_every = max_steps // 100


def test_no_progress_bar_off_terminal(rng, capsys):
    gradient_descent(init_weights(2, 2, seed=0), QuadraticEnergy(np.eye(2)), 0.1, 20)
    assert capsys.readouterr().err == ""
    gradient_descent(init_weights(2, 2, seed=0), QuadraticEnergy(np.eye(2)), 0.1, 20, progress=True)
    assert "gradient descent" in capsys.readouterr().err


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"lr": np.nan}, ValueError, "lr"),
        ({"lr": np.inf}, ValueError, "lr"),
        ({"lr": "0.1"}, TypeError, "lr"),
        ({"max_steps": 0}, ValueError, "max_steps"),
        ({"max_steps": 2.5}, TypeError, "max_steps"),
        ({"save_every": 0}, ValueError, "save_every"),
        ({"stop_when": 3}, TypeError, "stop_when"),
        ({"monitors": {"x": 1}}, TypeError, "monitors"),
        ({"W0": np.ones((2, 3, 4))}, ValueError, "W0"),
        ({"W0": [np.eye(3), np.ones((3, 2))]}, ValueError, "W0"),
        ({"W0": np.full((2, 3, 3), np.nan)}, ValueError, "W0"),
        ({"W0": np.ones((2, 2, 2))}, ValueError, "energy"),
        ({"energy": 5}, TypeError, "energy"),
    ],
)
def test_gd_bad_input_names_argument(kwargs, exc, word):
    args = {"W0": np.ones((2, 3, 3)), "energy": QuadraticEnergy(np.eye(3)), "lr": 0.1}
    args["max_steps"] = 5
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        gradient_descent(
            args.pop("W0"), args.pop("energy"), args.pop("lr"), args.pop("max_steps"), **args
        )


def test_other_bad_inputs():
    E = QuadraticEnergy(np.eye(3))
    with pytest.raises(ValueError, match="X0"):
        end_to_end_gradient_descent(np.ones((3, 2)), E, 2, 0.1, 5)
    with pytest.raises(ValueError, match="depth"):
        end_to_end_gradient_descent(np.eye(3), E, 0, 0.1, 5)
    with pytest.raises(ValueError, match="lr"):
        end_to_end_gradient_descent(np.eye(3), E, 2, -0.1, 5)
    A = np.ones((3, 8))
    W0 = np.ones((2, 2, 2))
    with pytest.raises(ValueError, match="inputs"):
        sgd(W0, A, A, 0.1, 5, batch_size=2)
    W0 = np.ones((2, 3, 3))
    with pytest.raises(ValueError, match="outputs"):
        sgd(W0, A, np.ones((3, 7)), 0.1, 5, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        sgd(W0, A, A, 0.1, 5, batch_size=9)
    with pytest.raises(ValueError, match="batch_size"):
        sgd(W0, A, A, 0.1, 5, batch_size=0)
    with pytest.raises(TypeError, match="seed"):
        sgd(W0, A, A, 0.1, 5, batch_size=2, seed="x")


# ------------------------------------------------------------------ save / load


def _assert_same(a, b):
    assert type(a) is type(b)
    for name in ("times", "states"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()
    assert list(a.monitors) == list(b.monitors)
    for k in a.monitors:
        assert a.monitors[k].dtype == b.monitors[k].dtype
        assert a.monitors[k].tobytes() == b.monitors[k].tobytes()
    assert a.n_steps == b.n_steps and a.n_rejected == b.n_rejected


def test_save_load_round_trip(rng, tmp_path):
    E = QuadraticEnergy(_target(rng, 3))
    res = gradient_descent(init_weights(3, 3, seed=0), E, 0.0123, 50, save_every=7)
    path = tmp_path / "run"  # no suffix added
    res.save(path)
    assert path.is_file()
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            data[key]  # every entry loads without pickle
    back = TrainingResult.load(path)
    _assert_same(res, back)
    assert back.lr == res.lr and back.stopped == res.stopped
    np.testing.assert_array_equal(back.steps, res.steps)
    _assert_same(res, FlowResult.load(str(path)))  # the saved subclass comes back
    flow = learning_flow(balanced_point(_target(rng, 3), 2), E, 0.1, dt=0.02)
    flow.save(tmp_path / "flow.npz")
    _assert_same(flow, FlowResult.load(tmp_path / "flow.npz"))
    with pytest.raises(ValueError, match="FlowResult"):
        TrainingResult.load(tmp_path / "flow.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="FlowResult.save"):
        FlowResult.load(tmp_path / "other.npz")
    np.save(tmp_path / "plain.npy", np.ones(3))
    with pytest.raises(ValueError, match="FlowResult.save"):
        FlowResult.load(tmp_path / "plain.npy")
    bad = FlowResult(np.zeros(1), np.zeros((1, 2)), monitors={"o": np.array([None], dtype=object)})
    with pytest.raises(TypeError, match="o"):
        bad.save(tmp_path / "bad.npz")


# ------------------------------------------------------------------ plotting


def test_plotting_smoke(rng):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from dln_manifolds import plotting

    E = QuadraticEnergy(_target(rng, 3))
    gd = gradient_descent(init_weights(3, 3, seed=0), E, 0.05, 20)
    e2e = end_to_end_gradient_descent(_target(rng, 3), E, 3, 0.05, 20)
    flow = learning_flow(balanced_point(_target(rng, 3), 2), E, 0.1, dt=0.05)
    figs = [
        plotting.plot_training(gd),
        plotting.plot_training(e2e),
        plotting.plot_loss(e2e),
        plotting.plot_singular_values(flow),
        plotting.plot_moments(flow),
    ]
    fig, ax = plt.subplots()
    assert plotting.plot_moments(gd, ax=ax) is fig
    figs.append(fig)
    assert all(isinstance(f, Figure) for f in figs)
    assert len(figs[0].axes) == 3 and len(figs[1].axes) == 2
    with pytest.raises(ValueError, match="monitor"):
        plotting.plot_loss(gd, key="nope")
    with pytest.raises(ValueError, match="moments"):
        plotting.plot_moments(e2e)
    for f in figs:
        plt.close(f)
