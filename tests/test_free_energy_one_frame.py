"""Free energy: validation at the public door, one factorization per ODE stage (issue 14).

``free_energy_flow`` validates depth, beta, energy and X0 once; each stage of its right-hand
side builds exactly one DepthFrame (one SVD) for both terms of [G] eq. 12.13. The counts are
taken by wrapping ``numpy.linalg.svd`` and ``_checks.check_depth``; the reference is the
two-factorization implementation before the change, rebuilt here from the public pieces.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import dln_manifolds._checks as checks
from dln_manifolds import QuadraticEnergy, depth_operator
from dln_manifolds.entropy import entropy_gradient, free_energy_gradient
from dln_manifolds.flows import free_energy_flow
from dln_manifolds.flows.integrators import integrate_flow

DT = 0.01
NO_SAVES = 10**6  # save only the start and the end: the monitors cost the same for any length


def _old_free_energy_gradient(X, energy, depth, beta, metric="depth"):
    """The implementation before issue 14: entropy_gradient and depth_operator, two SVDs."""
    dE = energy.gradient(X)
    if metric == "depth":
        dE = depth_operator(X, depth, dE)
    return dE - entropy_gradient(X, depth, metric=metric) / beta


class _Counts:
    """Counts calls of numpy.linalg.svd and of the depth check while active."""

    def __init__(self, monkeypatch):
        self.svd = self.check_depth = 0
        svd, check_depth = np.linalg.svd, checks.check_depth

        def counted_svd(*args, **kwargs):
            self.svd += 1
            return svd(*args, **kwargs)

        def counted_check_depth(*args, **kwargs):
            self.check_depth += 1
            return check_depth(*args, **kwargs)

        monkeypatch.setattr(np.linalg, "svd", counted_svd)
        # every module that imported the check by name
        for name, module in list(sys.modules.items()):
            if name.startswith("dln_manifolds") and getattr(module, "check_depth", None) is (
                check_depth
            ):
                monkeypatch.setattr(module, "check_depth", counted_check_depth)

    def of(self, f) -> tuple[int, int]:
        before = (self.svd, self.check_depth)
        f()
        return self.svd - before[0], self.check_depth - before[1]


def _problem(rng, d=3):
    A = rng.standard_normal((d, d))
    X0 = np.eye(d) + 0.3 * A / np.linalg.norm(A, 2)
    return X0, QuadraticEnergy(np.diag(np.linspace(1.0, 0.5, d)))


def _per_stage(counts, run) -> tuple[float, float]:
    """(SVDs, depth checks) per RK4 stage: the difference of a run of 10 and one of 5 steps."""
    short, long = counts.of(lambda: run(5)), counts.of(lambda: run(10))
    return ((long[0] - short[0]) / 20, (long[1] - short[1]) / 20)


@pytest.mark.parametrize("depth", [1, 3, np.inf])
def test_free_energy_flow_builds_one_frame_per_stage_and_validates_once(rng, monkeypatch, depth):
    X0, energy = _problem(rng)
    beta = 2.0
    counts = _Counts(monkeypatch)

    def new(n):
        return free_energy_flow(X0, energy, depth, beta, n * DT, dt=DT, save_every=NO_SAVES)

    def old(n):  # negative control: the same flow through the old right-hand side
        return integrate_flow(
            lambda t, X: -_old_free_energy_gradient(X, energy, depth, beta),
            X0,
            n * DT,
            dt=DT,
            save_every=NO_SAVES,
        )

    assert _per_stage(counts, new) == (1.0, 0.0)
    svd_old, checks_old = _per_stage(counts, old)
    assert svd_old == 2.0 and checks_old >= 2.0  # the counters see what they count
    # the whole call: depth validated once at the door
    assert counts.of(lambda: new(5))[1] == 1
    # same trajectory as the old implementation (same stages, same step)
    np.testing.assert_allclose(new(10).final, old(10).final, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["depth", "euclidean"])
@pytest.mark.parametrize("depth", [1, 2, 5, np.inf])
def test_free_energy_gradient_one_svd_same_values(rng, monkeypatch, depth, metric):
    X, energy = _problem(rng, 4)
    X = X @ np.diag([3.0, 1.0, 1.0, 0.2])  # spread and a repeated singular value
    new = free_energy_gradient(X, energy, depth=depth, beta=0.7, metric=metric)
    old = _old_free_energy_gradient(X, energy, depth, 0.7, metric)
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-12 * np.abs(old).max())
    counts = _Counts(monkeypatch)
    svds, depth_checks = counts.of(
        lambda: free_energy_gradient(X, energy, depth=depth, beta=0.7, metric=metric)
    )
    assert (svds, depth_checks) == (1, 1)
    old_svds, _ = counts.of(lambda: _old_free_energy_gradient(X, energy, depth, 0.7, metric))
    assert old_svds == (2 if metric == "depth" else 1)  # negative control


def test_free_energy_rejects_a_singular_start_and_a_non_finite_gradient(rng):
    X0, energy = _problem(rng, 2)
    with pytest.raises(ValueError, match="X0 is rank-deficient"):
        free_energy_flow(np.diag([1.0, 0.0]), energy, 3, 2.0, 0.1, dt=DT)
    with pytest.raises(ValueError, match="energy returned a non-finite"):
        free_energy_gradient(X0, lambda X: np.full((2, 2), np.nan), depth=3, beta=1.0)
