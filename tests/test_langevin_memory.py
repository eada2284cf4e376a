"""Bounded memory in the samplers (chunks of paths, streamed or callback saves) and loud
failures for non-finite drifts (issue 10, items 5 and 8)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from dln_manifolds import QuadraticEnergy
from dln_manifolds.langevin import brownian_motion, end_to_end_langevin, weight_langevin

X0 = np.diag([1.0, 0.3])
# Huge nominal steps: steps are halved in advance and some proposals are rejected and
# refined (and some paths stop at the boundary), so the chunked run must reproduce the
# bridge refinement exactly.
KW = dict(t_final=0.5, dt=0.25, n_paths=60, seed=1, save_every=1, max_halvings=8)


def _run(**extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return end_to_end_langevin(X0, 3, 1.0, 1.0, **KW, **extra)


@functools.cache
def _full():
    return _run()


def test_chunked_run_is_bit_identical():
    full = _full()
    assert full.n_split > 100 and not full.alive.all()  # refined to the last level
    for chunk_size in (1, 7, 60, 1000):
        part = _run(chunk_size=chunk_size)
        assert part.n_split == full.n_split
        np.testing.assert_array_equal(part.states, full.states)
        np.testing.assert_array_equal(part.exit_times, full.exit_times)
        np.testing.assert_array_equal(part.times, full.times)
        assert part.n_rejected == full.n_rejected
    # negative control: the comparison sees a different seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        other = end_to_end_langevin(X0, 3, 1.0, 1.0, **{**KW, "seed": 2})
    assert not np.array_equal(other.states, full.states)


def test_streamed_states_match(tmp_path):
    full = _full()
    path = tmp_path / "states.npy"
    streamed = _run(chunk_size=16, out=path)
    assert isinstance(streamed.states, np.memmap) and not streamed.states.flags.writeable
    np.testing.assert_array_equal(streamed.states, full.states)
    np.testing.assert_array_equal(np.load(path), full.states)
    np.testing.assert_array_equal(streamed.final, full.final)


def test_on_save_sees_every_saved_state_and_keeps_only_the_ends():
    full = _full()
    seen = []

    def on_save(t, states):
        with pytest.raises(ValueError):
            states[0, 0, 0] = 1.0  # read-only view
        seen.append((t, states.copy()))

    res = _run(on_save=on_save, chunk_size=25)
    assert [t for t, _ in seen] == list(full.times)
    np.testing.assert_array_equal(np.stack([s for _, s in seen]), full.states)
    assert res.states.shape == (2,) + full.states.shape[1:]
    np.testing.assert_array_equal(res.states, full.states[[0, -1]])
    np.testing.assert_array_equal(res.times, full.times[[0, -1]])


def test_running_statistics_with_bounded_memory():
    """Brownian motion: a running mean over saved times equals the mean of stored states."""
    kw = dict(t_final=0.02, dt=0.002, n_paths=500, seed=5, save_every=2)
    stored = brownian_motion(np.eye(3), 2, **kw)
    total = np.zeros((3, 3))

    def accumulate(t, states):
        nonlocal total
        total = total + states.sum(axis=0)

    brownian_motion(np.eye(3), 2, **kw, chunk_size=64, on_save=accumulate)
    np.testing.assert_allclose(total, stored.states.sum(axis=(0, 1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        {"chunk_size": 0},
        {"chunk_size": 2.5},
        {"out": 3},
        {"on_save": "print"},
    ],
)
def test_validation(bad):
    with pytest.raises((ValueError, TypeError), match=f"{next(iter(bad))} must"):
        brownian_motion(np.eye(2), 2, t_final=0.1, dt=0.05, **bad)


def _nan_energy(X):
    return np.full_like(X, np.nan)


@pytest.mark.parametrize("kappa", [1.0, 0.0])
def test_nan_energy_gradient_raises_not_boundary(kappa):
    """A NaN energy gradient used to be reported as '4 of 4 paths reached the boundary'."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no boundary warning either
        with pytest.raises(FloatingPointError, match=r"energy gradient.*NaN/Inf") as info:
            end_to_end_langevin(
                np.eye(2), 3, 1.0, kappa, _nan_energy, t_final=0.05, dt=0.01, n_paths=4, seed=0
            )
    assert "nominal step 0" in str(info.value)


def test_gradient_that_turns_nan_later_names_the_step():
    def energy(X):
        grad = X - np.eye(2)
        return np.where(np.abs(X).max(axis=(-2, -1), keepdims=True) > 1.05, np.inf, grad)

    with pytest.raises(FloatingPointError, match=r"nominal step [1-9]\d* .*energy gradient"):
        end_to_end_langevin(
            np.eye(2), 2, 50.0, 1.0, energy, t_final=2.0, dt=0.01, n_paths=4, seed=0
        )
    # the same energy with finite values samples fine (negative control)
    res = end_to_end_langevin(
        np.eye(2), 2, 50.0, 1.0, QuadraticEnergy(np.eye(2)), t_final=2.0, dt=0.01, n_paths=4
    )
    assert res.alive.all()


def test_nan_energy_gradient_raises_in_weight_sampler():
    """The weight-space sampler has no step control: NaN used to propagate into the states."""
    W0 = np.stack([np.eye(2)] * 3)
    with pytest.raises(FloatingPointError, match="energy gradient"):
        weight_langevin(W0, 1.0, 0.1, _nan_energy, t_final=0.05, dt=0.01, n_paths=3, seed=0)


def test_non_finite_step_is_not_a_boundary_hit():
    """A step function returning NaN for some path raises after the halvings (generic guard)."""
    from dln_manifolds.langevin import _stepping

    def step(x, dW, h):
        y = x + dW
        y[x[:, 0] > 1.5] = np.nan
        return y

    x0 = np.array([[0.0], [2.0]])
    accept = lambda x, y: np.isfinite(y).all(axis=1)  # noqa: E731
    with pytest.raises(FloatingPointError, match="not a boundary hit"):
        _stepping.run_sampler(x0, step, (1,), 0.1, 0.05, accept=accept, max_halvings=3)


def _lambda_sample(n_paths, t, dt, depth=20):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = brownian_motion(np.eye(1), depth, 1.0, t_final=t, dt=dt, n_paths=n_paths, seed=3)
    return res, res.final[:, 0, 0] ** (1.0 / depth)


def test_long_steps_at_depth_keep_the_law(monkeypatch):
    """d = 1: lambda = x^(1/N) of Brownian motion on (M_1, g^N) is a driftless Brownian motion
    with variance 2t/(beta N) ([G] Thm 18), so lambda_t ~ Normal(1, 2t/N) exactly.

    N = 20 with nominal steps dt = 0.05 (N dt = 1, twenty times the time scale of the log
    singular values): the steps are halved in advance from the state and the law is right.
    Negative control: without the advance halving, every step is refined by rejection only,
    whose decision looks at the noise, and the sample is biased upwards (mean lambda - 1
    about +0.06 here, +0.3 at t = 0.5).
    """
    import scipy.stats

    from dln_manifolds.langevin import brownian as brownian_module

    n, t = 1000, 0.1
    sd = np.sqrt(2 * t / 20)
    res, lam = _lambda_sample(n, t, 0.05)
    assert res.n_split > 0 and res.n_rejected < res.n_split / 100
    assert abs(lam.mean() - 1.0) < 4 * sd / np.sqrt(n)
    assert scipy.stats.kstest(lam, "norm", args=(1.0, sd)).pvalue > 1e-3
    monkeypatch.setattr(brownian_module, "_SPLIT_FRACTION", np.inf)
    old, lam_old = _lambda_sample(n, t, 0.05)
    assert old.n_split == 0 and old.n_rejected > 0
    assert lam_old.mean() - 1.0 > 8 * sd / np.sqrt(n)
    assert scipy.stats.kstest(lam_old, "norm", args=(1.0, sd)).pvalue < 1e-6
