"""dln_manifolds.training for networks of general widths (issue 12 item 1 with issue 11).

Brute-force references: explicit loops over the layers with ``lifted_gradient``, the
upstairs learning flow integrated by RK4 on the list of layers, the exact second-order
change of the moments under one GD step, the rectangular depth operator as a dense
Kronecker matrix (tests/dense.py), and the seeded permutations of SGD replayed by hand.
Each scaling test has a negative control.
"""

from __future__ import annotations

import numpy as np
import pytest
from dense import dense_cometric
from hypothesis import given, settings
from hypothesis import strategies as st

from dln_manifolds import (
    LayersTrainingResult,
    QuadraticEnergy,
    RegressionEnergy,
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
from dln_manifolds.flows import learning_flow

WIDTHS = (4, 6, 5, 3)  # d_0, ..., d_N: end-to-end matrices are 3 x 4
N = len(WIDTHS) - 1


def _target(rng, m=3, n=4):
    """A well-conditioned (m, n) matrix with singular values in [0.6, 1.4]."""
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    r = min(m, n)
    return (U[:, :r] * np.linspace(0.6, 1.4, r)) @ V[:, :r].T


def _max_layer_error(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def _explicit_gd(W, energy, lr, steps):
    W = [w.copy() for w in W]
    for _ in range(steps):
        g = lifted_gradient(W, energy.gradient(end_to_end(W)))
        W = [w - lr * gk for w, gk in zip(W, g, strict=True)]
    return W


# ------------------------------------------------------------------ gradient descent


def test_gd_steps_are_the_explicit_loop_and_the_result_holds_lists(rng):
    E = QuadraticEnergy(_target(rng))
    W0 = init_weights(widths=WIDTHS, seed=rng)  # unbalanced
    res = gradient_descent(W0, E, 0.05, 6, save_every=1)
    assert isinstance(res, LayersTrainingResult) and isinstance(res, TrainingResult)
    assert res.states.shape == (7, 6 * 4 + 5 * 6 + 3 * 5)
    assert [w.shape for w in res.final] == [(6, 4), (5, 6), (3, 5)]
    np.testing.assert_array_equal(res.widths, WIDTHS)
    np.testing.assert_array_equal(res.steps, np.arange(7))
    for k in (0, 1, 6):
        ref = _explicit_gd(W0, E, 0.05, k)
        assert _max_layer_error(res.layers(k), ref) <= 1e-14 * max(np.abs(w).max() for w in ref)
    assert res.monitors["end_to_end"].shape == (7, 3, 4)
    np.testing.assert_allclose(res.monitors["end_to_end"][-1], end_to_end(res.final), rtol=1e-14)
    np.testing.assert_allclose(res.monitors["energy"][-1], E.value(end_to_end(res.final)))
    # the input is not modified, and a tuple of layers is accepted too
    assert _max_layer_error(gradient_descent(tuple(W0), E, 0.05, 6).final, res.final) == 0.0
    # negative control: another learning rate gives visibly different layers
    assert _max_layer_error(_explicit_gd(W0, E, 0.051, 6), res.final) > 1e-6


@settings(max_examples=15)
@given(
    widths=st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple),
    seed=st.integers(0, 2**16),
)
def test_one_step_on_any_widths_is_the_lifted_gradient_step(widths, seed):
    """Any widths (bottlenecks, N = 1 included): one step is W - lr grad, and the moments
    change by exactly lr^2 (g_k g_k^T - g_{k+1}^T g_{k+1})."""
    rng = np.random.default_rng(seed)
    E = QuadraticEnergy(rng.standard_normal((widths[-1], widths[0])))
    W0 = init_weights(widths=widths, seed=rng)
    lr = 0.01
    res = gradient_descent(W0, E, lr, 1)
    g = lifted_gradient(W0, E.gradient(end_to_end(W0)))
    ref = [w - lr * gk for w, gk in zip(W0, g, strict=True)]
    assert _max_layer_error(res.final, ref) <= 1e-13
    G0, G1 = moments(W0), moments(res.final)
    for k in range(len(widths) - 2):
        exact = lr**2 * (g[k] @ g[k].T - g[k + 1].T @ g[k + 1])
        np.testing.assert_allclose(G1[k] - G0[k], exact, rtol=1e-6, atol=1e-13)
    assert res.monitors["moment_drift"].shape == (2, len(widths) - 2)


def test_gd_tracks_the_upstairs_learning_flow_to_first_order(rng):
    """GD with lr = T/n against the flow (RK4, error ~1e-10) at time T: error halves with lr."""
    T = 0.5
    E = QuadraticEnergy(_target(rng))
    W0 = init_weights(widths=WIDTHS, scale=1.2, seed=rng)
    flow = learning_flow(W0, E, T, dt=T / 50).final
    later = learning_flow(W0, E, 1.02 * T, dt=T / 50).final
    errors, errors_later = [], []
    for steps in (40, 80, 160):
        gd = gradient_descent(W0, E, T / steps, steps)
        assert gd.times[-1] == pytest.approx(T)
        errors.append(_max_layer_error(gd.final, flow))
        errors_later.append(_max_layer_error(gd.final, later))
    assert 1.8 < errors[0] / errors[1] < 2.2 and 1.8 < errors[1] / errors[2] < 2.2, errors
    assert errors[-1] < 1e-2
    # negative control: against the flow at a slightly different time the error does not
    # go to zero with lr (it levels off at the O(0.01 T) gap)
    assert errors_later[1] / errors_later[2] < 1.5, errors_later


def test_moment_drift_is_second_order_per_step_from_a_balanced_start(rng):
    E = QuadraticEnergy(2.0 * _target(rng))
    W0 = init_weights(widths=WIDTHS, method="balanced", scale=1.5, seed=rng)
    G0 = moments(W0)
    assert max(np.abs(g).max() for g in G0) < 1e-13
    g = lifted_gradient(W0, E.gradient(end_to_end(W0)))
    drifts, moves = [], []
    for lr in (0.02, 0.01, 0.005):
        res = gradient_descent(W0, E, lr, 1)
        G1 = moments(res.final)
        for k in range(N - 1):  # exact: lr^2 (g_k g_k^T - g_{k+1}^T g_{k+1}), sizes d_k x d_k
            exact = lr**2 * (g[k] @ g[k].T - g[k + 1].T @ g[k + 1])
            np.testing.assert_allclose(G1[k] - G0[k], exact, rtol=1e-7, atol=1e-14)
        drift = res.monitors["moment_drift"]
        assert drift.shape == (2, N - 1) and np.all(drift[0] == 0.0)
        np.testing.assert_allclose(
            drift[-1], [np.linalg.norm(a - b) for a, b in zip(G1, G0, strict=True)], rtol=1e-12
        )
        drifts.append(drift[-1])
        moves.append(np.linalg.norm(res.monitors["end_to_end"][-1] - end_to_end(W0)))
    drifts = np.array(drifts)
    assert np.all(drifts[0] > 1e-6)
    np.testing.assert_allclose(drifts[0] / drifts[1], 4.0, rtol=1e-6)
    np.testing.assert_allclose(drifts[1] / drifts[2], 4.0, rtol=1e-6)
    # negative control: the same ratio test rejects a first-order quantity (X moves by O(lr))
    assert abs(moves[0] / moves[1] - 4.0) > 1.0


@pytest.mark.parametrize("shape", [(3, 4), (4, 3)])
def test_end_to_end_gd_step_is_the_rectangular_ach_update(rng, shape):
    lr = 0.03
    E = QuadraticEnergy(_target(rng, *shape))
    X0 = 1.5 * _target(rng, *shape)
    res = end_to_end_gradient_descent(X0, E, N, lr, 3, save_every=1)
    assert res.states.shape == (4, *shape) and res.monitors["singular_values"].shape == (4, 3)
    X = X0
    for k in range(1, 4):
        # A_{N,X} summed literally as a Kronecker matrix ([ACH] Thm 1, [G] eq. 4.14)
        X = X - lr * (dense_cometric(X, N) @ E.gradient(X).ravel()).reshape(shape)
        np.testing.assert_allclose(res.states[k], X, rtol=1e-11, atol=1e-12)


def test_end_to_end_gd_tracks_gd_to_second_order_for_rectangular_x(rng):
    E = QuadraticEnergy(_target(rng))
    X0 = 1.3 * _target(rng)
    W0 = balanced_point(X0, N, widths=WIDTHS)
    e = []
    for lr in (0.02, 0.01, 0.005):
        up = gradient_descent(W0, E, lr, 1)
        down = end_to_end_gradient_descent(X0, E, N, lr, 1)
        e.append(np.max(np.abs(up.monitors["end_to_end"][-1] - down.final)))
    assert e[-1] > 1e-8
    assert 3.9 < e[0] / e[1] < 4.2 and 3.9 < e[1] / e[2] < 4.2, e
    # negative control: from an unbalanced start the difference is first order
    Wu = init_weights(widths=WIDTHS, seed=3)
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
    assert 1.7 < eu[0] / eu[1] < 2.3, eu


# ------------------------------------------------------------------ SGD


def _regression(rng, n=48):
    A = rng.standard_normal((WIDTHS[0], n))
    return A, _target(rng) @ A + 0.05 * rng.standard_normal((WIDTHS[-1], n))


def test_sgd_on_rectangular_regression_is_seeded_and_reduces_the_loss(rng):
    A, B = _regression(rng)
    E = RegressionEnergy(A, B)
    W0 = init_weights(widths=WIDTHS, method="orthogonal", scale=0.8, seed=rng)
    lr, b = 0.05, 8
    res = sgd(W0, A, B, lr, 400, batch_size=b, seed=7)
    assert isinstance(res, LayersTrainingResult)
    again = sgd(W0, A, B, lr, 400, batch_size=b, seed=7)
    np.testing.assert_array_equal(res.states, again.states)
    loss = res.monitors["energy"]
    assert loss[-1] < 0.02 * loss[0], loss[[0, -1]]
    # the first two steps use the first two batches of the seeded permutation
    order = np.random.default_rng(7).permutation(A.shape[1])
    W = [w.copy() for w in W0]
    for i in range(2):
        cols = order[i * b : (i + 1) * b]
        g = lifted_gradient(W, E.batch_gradient(end_to_end(W), cols))
        W = [w - lr * gk for w, gk in zip(W, g, strict=True)]
    first = sgd(W0, A, B, lr, 2, batch_size=b, seed=7, save_every=1)
    assert _max_layer_error(first.final, W) < 1e-14
    # negative control: another seed draws other batches
    other = sgd(W0, A, B, lr, 2, batch_size=b, seed=8, save_every=1)
    assert _max_layer_error(other.final, W) > 1e-6
    # the full batch is gradient descent on the regression energy
    full = sgd(W0, A, B, lr, 5, batch_size=A.shape[1])
    np.testing.assert_array_equal(full.states, gradient_descent(W0, E, lr, 5).states)


# ------------------------------------------------------------------ initializers


def test_init_weights_gaussian_widths_fan_in_variance():
    """Entries of layer k have variance scale^2 / d_{k-1}. The mean of m n squared
    N(0, v) samples has relative standard deviation sqrt(2 / (m n)): 5 of them is the
    tolerance (0.029 and 0.041 here), far from the fan-out convention (ratios 1.5, 1/3)."""
    widths, scale = (200, 300, 100), 1.7
    W = init_weights(widths=widths, scale=scale, seed=11)
    assert [w.shape for w in W] == [(300, 200), (100, 300)]
    for k, w in enumerate(W):
        tol = 5 * np.sqrt(2 / w.size)
        ratio = np.mean(w**2) / (scale**2 / widths[k])
        assert abs(ratio - 1) < tol, (k, ratio, tol)
        assert abs(np.mean(w)) < 5 * scale / np.sqrt(widths[k] * w.size)
        # negative control: the fan-out variance scale^2 / d_k fails the same test
        assert abs(np.mean(w**2) / (scale**2 / widths[k + 1]) - 1) > tol
    np.testing.assert_array_equal(W[1], init_weights(widths=widths, scale=scale, seed=11)[1])
    assert not np.array_equal(W[0], init_weights(widths=widths, scale=scale, seed=12)[0])


def test_init_weights_orthogonal_and_balanced_widths():
    W = init_weights(widths=WIDTHS, method="orthogonal", scale=0.5, seed=2)
    assert [w.shape for w in W] == [(6, 4), (5, 6), (3, 5)]
    np.testing.assert_allclose(W[0].T @ W[0], 0.25 * np.eye(4), atol=1e-14)  # tall: columns
    np.testing.assert_allclose(W[1] @ W[1].T, 0.25 * np.eye(5), atol=1e-14)  # wide: rows
    np.testing.assert_allclose(W[2] @ W[2].T, 0.25 * np.eye(3), atol=1e-14)
    assert np.linalg.norm(W[0] @ W[0].T - 0.25 * np.eye(6)) > 0.1  # rank 4 < 6: not I
    Bl = init_weights(widths=WIDTHS, method="balanced", scale=2.0, seed=2)
    assert max(np.abs(g).max() for g in moments(Bl)) < 1e-13
    A = 2.0 / np.sqrt(4) * np.random.default_rng(2).standard_normal((3, 4))
    np.testing.assert_allclose(end_to_end(Bl), A, atol=1e-13)


@pytest.mark.parametrize("method", ["gaussian", "orthogonal", "balanced"])
def test_init_weights_equal_widths_are_the_stack(method):
    d, depth = 4, 3
    stack = init_weights(d, depth, method, scale=0.7, seed=9)
    layers = init_weights(widths=(d,) * (depth + 1), method=method, scale=0.7, seed=9)
    assert isinstance(layers, list) and len(layers) == depth
    # balanced: the same draw A, the same balanced point up to rounding
    np.testing.assert_allclose(np.stack(layers), stack, rtol=0, atol=1e-13)


# ------------------------------------------------------------------ stopping, divergence, files


def test_stop_when_monitors_divergence_and_files_with_lists(rng, tmp_path):
    E = QuadraticEnergy(_target(rng))
    W0 = init_weights(widths=WIDTHS, method="balanced", seed=1)
    seen = []

    def stop(t, W):
        seen.append([w.shape for w in W])
        return float(E.value(end_to_end(W))) < 0.05

    res = gradient_descent(
        W0, E, 0.05, 500, stop_when=stop, monitors={"norm0": lambda t, W: np.linalg.norm(W[0])}
    )
    assert res.stopped == "stop_when" and res.n_steps < 500
    assert seen[0] == [(6, 4), (5, 6), (3, 5)]
    assert res.monitors["energy"][-1] < 0.05 <= res.monitors["energy"][-2]
    np.testing.assert_allclose(res.monitors["norm0"][-1], np.linalg.norm(res.final[0]))
    res.save(tmp_path / "r.npz")
    for cls in (TrainingResult, LayersTrainingResult):
        back = cls.load(tmp_path / "r.npz")
        assert type(back) is LayersTrainingResult
        np.testing.assert_array_equal(back.widths, WIDTHS)
        assert back.lr == res.lr and back.stopped == res.stopped
        assert _max_layer_error(back.final, res.final) == 0.0
    with pytest.raises(TrainingDivergedError, match="smaller learning rate") as info:
        gradient_descent(W0, E, 50.0, 100, save_every=1)
    bad = info.value.result
    assert isinstance(bad, LayersTrainingResult) and bad.stopped == "diverged"
    assert np.all(np.isfinite(bad.states)) and np.all(np.isfinite(bad.monitors["energy"]))
    assert 1 <= info.value.step <= 100


# ------------------------------------------------------------------ bad input


def test_bad_input_names_the_argument_and_the_numbers(rng):
    E = QuadraticEnergy(_target(rng))
    W0 = init_weights(widths=WIDTHS, seed=0)
    with pytest.raises(ValueError, match=r"W0\[2\] has shape \(3, 5\) but widths .* \(2, 5\)"):
        gradient_descent(W0, E, 0.1, 2, widths=(4, 6, 5, 2))
    with pytest.raises(ValueError, match="widths has 3 entries"):
        gradient_descent(W0, E, 0.1, 2, widths=(4, 6, 5))
    with pytest.raises(ValueError, match=r"widths must be \(d, ..., d\)"):
        gradient_descent(np.ones((2, 3, 3)), QuadraticEnergy(np.eye(3)), 0.1, 2, widths=(3, 4, 3))
    with pytest.raises(ValueError, match=r"energy acts on 4 x 3 .* W0 is 3 x 4"):
        gradient_descent(W0, QuadraticEnergy(np.ones((4, 3))), 0.1, 2)
    with pytest.raises(ValueError, match=r"W0\[1\] must have 6 columns"):
        gradient_descent([W0[0], W0[2], W0[2]], E, 0.1, 2)
    with pytest.raises(ValueError, match=r"W0 has non-square layers of shape \(3, 4\)"):
        gradient_descent(np.ones((2, 3, 4)), E, 0.1, 2)
    A = np.ones((4, 10))
    with pytest.raises(ValueError, match="inputs has 5 rows but the input width d_0 of W0 is 4"):
        sgd(W0, np.ones((5, 10)), np.ones((3, 10)), 0.1, 2, batch_size=2)
    with pytest.raises(ValueError, match="outputs has 2 rows but the output width d_N of W0 is 3"):
        sgd(W0, A, np.ones((2, 10)), 0.1, 2, batch_size=2)
    with pytest.raises(ValueError, match=r"W0\[0\] has shape \(6, 4\) but widths"):
        sgd(W0, A, np.ones((3, 10)), 0.1, 2, batch_size=2, widths=(3, 6, 5, 3))
    with pytest.raises(ValueError, match=r"energy acts on 3 x 4 matrices .* X0 is 4 x 3"):
        end_to_end_gradient_descent(np.ones((4, 3)), E, N, 0.1, 2)
    with pytest.raises(ValueError, match="X0 must be a matrix"):
        end_to_end_gradient_descent(np.ones((2, 3, 4)), E, N, 0.1, 2)
    with pytest.raises(ValueError, match=r"widths must have depth \+ 1 = 3 entries .* got 4"):
        init_weights(depth=2, widths=WIDTHS)
    with pytest.raises(TypeError, match="either d .* or widths"):
        init_weights(4, widths=WIDTHS)
    with pytest.raises(ValueError, match=r"widths\[1\]"):
        init_weights(widths=(4, 0, 3))
    with pytest.raises(ValueError, match=r"min\(d_0, d_N\) = 3 .* widths\[1\] = d_1 = 2"):
        init_weights(widths=(4, 2, 3), method="balanced")
    assert len(init_weights(widths=(4, 2, 3), method="gaussian")) == 2  # fine unbalanced
