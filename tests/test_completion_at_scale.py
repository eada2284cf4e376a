"""Experiment 6 (completion_at_scale): plain GD beside the flow, and its learning-rate rule."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from dln_manifolds.energies import MatrixCompletionEnergy  # noqa: E402
from dln_manifolds.experiments import get_experiment, run_experiment  # noqa: E402
from dln_manifolds.experiments.completion_at_scale import stable_lr  # noqa: E402
from dln_manifolds.flows.learning import learning_velocity  # noqa: E402
from dln_manifolds.network import balanced_point  # noqa: E402
from dln_manifolds.training import TrainingDivergedError, gradient_descent  # noqa: E402


def _dense_hessian(W: np.ndarray, energy, h: float = 1e-5) -> np.ndarray:
    """Hessian of E(phi(W)) by central differences of the backpropagated gradient."""
    n = W.size
    H = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        e = e.reshape(W.shape)
        H[:, i] = (learning_velocity(W - e, energy) - learning_velocity(W + e, energy)).ravel()
    H /= 2 * h
    return (H + H.T) / 2


@pytest.mark.parametrize("N", [1, 2, 3, 4])
def test_stable_lr_is_half_the_stability_limit_at_a_balanced_minimizer(N):
    """With every entry observed (E'' = I) the sharpness at the balanced lift of the target is
    exactly N sigma^(2 - 2/N): the rule's lr is 1/sharpness, T a whole number of its steps."""
    rng = np.random.default_rng(N)
    d = 3
    M = rng.standard_normal((d, d))
    sigma = np.linalg.svd(M, compute_uv=False)[0]
    energy = MatrixCompletionEnergy(np.ones((d, d), dtype=bool), M)
    sharpness = np.linalg.eigvalsh(_dense_hessian(balanced_point(M, N), energy))[-1]
    assert sharpness == pytest.approx(N * sigma ** (2 - 2 / N), rel=1e-6)
    lr = stable_lr(sigma, N, 10.0)
    assert lr * sharpness <= 1 + 1e-6
    assert lr * sharpness > 0.9  # lowered only to fit whole steps into T
    assert 10.0 / lr == pytest.approx(round(10.0 / lr), abs=1e-9)


@pytest.mark.parametrize("N", [2, 3])
def test_gd_at_the_rule_converges_and_above_the_limit_does_not(N):
    """Negative control for the rule: from near a balanced minimizer GD at stable_lr
    converges monotonically; at 1.1 times the stability limit 2 / sharpness it does not."""
    rng = np.random.default_rng(10 + N)
    d = 3
    M = rng.standard_normal((d, d))
    sigma = np.linalg.svd(M, compute_uv=False)[0]
    energy = MatrixCompletionEnergy(np.ones((d, d), dtype=bool), M)
    W = balanced_point(M, N) + 1e-3 * rng.standard_normal((N, d, d))
    good = gradient_descent(W, energy, stable_lr(sigma, N, 10.0), 100, save_every=1)
    e = good.monitors["energy"]
    assert e[-1] < 1e-4 * e[0]
    above_roundoff = e[:-1] > 1e-20
    assert np.all(np.diff(e)[above_roundoff] <= 0)
    bad_lr = 2.2 / (N * sigma ** (2 - 2 / N))
    try:
        bad = gradient_descent(W, energy, bad_lr, 40, save_every=1)
        assert bad.monitors["energy"][-1] > 100 * e[0]
    except TrainingDivergedError:
        pass


@pytest.fixture(scope="module")
def tiny():
    return run_experiment("completion_at_scale", size="tiny", seed=1)


def test_tiny_run_has_gd_beside_the_flow_and_passes(tiny):
    D = tiny.data
    assert tiny.passed, [(c.claim, c.measured) for c in tiny.claims if not c.passed]
    n = len(D["depths"])
    assert D["gd_lr"].shape == (n,) and D["gd_gap"].shape == (n, 2)
    for i, N in enumerate(D["depths"]):
        tg = D["gd_times"][i]
        # recorded at t = steps * lr, up to the flow's final time
        assert tg[0] == 0.0 and tg[-1] == pytest.approx(D["times"][i][-1])
        assert np.allclose(tg / D["gd_lr"][i], np.rint(tg / D["gd_lr"][i]))
        assert D["gd_test_error"][i].shape == tg.shape == D["gd_train_energy"][i].shape
        if N >= 2:
            # the first-order gap is far above the flow's own error (the upstairs check)
            assert D["gd_gap"][i, 1] > 1e3 * D["upstairs_gap"]
    # depth 1: GD never moves the unobserved entries either
    i1 = list(D["depths"]).index(1)
    assert D["gd_test_error"][i1][-1] == pytest.approx(D["test_error"][i1][-1], abs=1e-6)
    names = [c.claim for c in tiny.claims]
    assert any("halving lr halves the gap" in c for c in names)


def test_plot_draws_gd_from_the_data(tiny):
    import matplotlib.pyplot as plt

    exp = get_experiment("completion_at_scale")
    ax = exp.plot(tiny)[0].figure.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == len(tiny.data["depths"])
    before = [np.asarray(ln.get_ydata()) for ln in dashed]
    altered = dict(tiny.data)
    altered["gd_test_error"] = [2.0 * e for e in tiny.data["gd_test_error"]]
    tiny2 = type(tiny)(**{**tiny.__dict__, "data": altered})
    ax2 = exp.plot(tiny2)[0].figure.axes[0]
    after = [np.asarray(ln.get_ydata()) for ln in ax2.get_lines() if ln.get_linestyle() == "--"]
    for b, a in zip(before, after, strict=True):
        assert np.allclose(a, 2.0 * b)
    plt.close("all")
