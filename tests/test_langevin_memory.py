"""Bounded memory in the samplers (chunks of paths, streamed or callback saves) and loud
failures for non-finite drifts (issue 10, items 5 and 8)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dln_manifolds import QuadraticEnergy
from dln_manifolds.langevin import brownian_motion, end_to_end_langevin, weight_langevin

X0 = np.diag([1.0, 0.3])
# Huge nominal steps: many proposals are rejected and refined (and a few paths stop at
# the boundary), so the chunked run must reproduce the bridge refinement exactly.
KW = dict(t_final=0.5, dt=0.25, n_paths=60, seed=1, save_every=1, max_halvings=12)


def _run(**extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return end_to_end_langevin(X0, 3, 1.0, 1.0, **KW, **extra)


def test_chunked_run_is_bit_identical():
    full = _run()
    assert full.n_rejected > 100 and not full.alive.all()  # the refinement is exercised
    for chunk_size in (1, 7, 60, 1000):
        part = _run(chunk_size=chunk_size)
        np.testing.assert_array_equal(part.states, full.states)
        np.testing.assert_array_equal(part.exit_times, full.exit_times)
        np.testing.assert_array_equal(part.times, full.times)
        assert part.n_rejected == full.n_rejected
    # negative control: the comparison sees a different seed
    other = end_to_end_langevin(X0, 3, 1.0, 1.0, **{**KW, "seed": 2, "max_halvings": 30})
    assert not np.array_equal(other.states, full.states)


def test_streamed_states_match(tmp_path):
    full = _run()
    path = tmp_path / "states.npy"
    streamed = _run(chunk_size=16, out=path)
    assert isinstance(streamed.states, np.memmap) and not streamed.states.flags.writeable
    np.testing.assert_array_equal(streamed.states, full.states)
    np.testing.assert_array_equal(np.load(path), full.states)
    np.testing.assert_array_equal(streamed.final, full.final)


def test_on_save_sees_every_saved_state_and_keeps_only_the_ends():
    full = _run()
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
    with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
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
