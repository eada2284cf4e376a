"""Isotropic weight Langevin equation [R] eq. 1.21: mean moments decay as exp(-2 kappa t)."""

import numpy as np
import pytest

from dln_manifolds.energies import MatrixCompletionEnergy, QuadraticEnergy
from dln_manifolds.langevin import weight_langevin
from dln_manifolds.network import moments


@pytest.mark.parametrize(
    "energy",
    [
        None,
        QuadraticEnergy(np.array([[1.0, 0.5], [0.0, 2.0]])),
        MatrixCompletionEnergy(np.array([[1, 0], [0, 1]]), np.array([[1.0, 0.0], [0.0, 1.0]])),
    ],
    ids=["none", "quadratic", "completion"],
)
def test_mean_moments_decay_at_rate_two_kappa(energy):
    """E G(T) = exp(-2 kappa T) G(0) ([R] 1.6.1, corrected rate 2 kappa: docs/mathematics.rst).

    Tolerance: 5 standard errors of the 2000-path mean plus the O(dt) Euler bias
    (1 - kappa dt)^{2n} vs exp(-2 kappa T) and O(dt^2) per step of the energy part,
    bounded by 0.02 |G(0)|. The rate kappa (as stated in [R]) is far outside.
    """
    rng = np.random.default_rng(11)
    W0 = rng.standard_normal((3, 2, 2))
    G0 = moments(W0)
    kappa, beta, T = 1.0, 4.0, 0.5
    res = weight_langevin(W0, beta, kappa, energy, t_final=T, dt=2e-3, n_paths=2000, seed=12)
    G = np.stack([moments(W) for W in res.final])
    mean, se = G.mean(axis=0), G.std(axis=0, ddof=1) / np.sqrt(G.shape[0])
    tol = 5 * se + 0.02 * np.abs(G0).max()
    assert np.all(np.abs(mean - np.exp(-2 * kappa * T) * G0) < tol)
    assert np.any(np.abs(mean - np.exp(-kappa * T) * G0) > tol)


def test_ornstein_uhlenbeck_variance():
    """E = 0: each weight is an OU process, Var W(T) = (1 - exp(-2 kappa T)) / (beta kappa)."""
    kappa, beta, T = 2.0, 3.0, 0.5
    res = weight_langevin(
        np.zeros((2, 2, 2)), beta, kappa, t_final=T, dt=1e-3, n_paths=2000, seed=0
    )
    var = res.final.var(axis=0).mean()  # average of 8 * 2000 samples: rel. SE ~ 0.011
    expected = (1 - np.exp(-2 * kappa * T)) / (beta * kappa)
    assert abs(var / expected - 1) < 0.06  # 5 SE + O(dt) Euler bias


def test_validation():
    with pytest.raises(ValueError, match="W0"):
        weight_langevin(np.zeros((2, 2)), 1.0, t_final=1.0, dt=0.1)
    with pytest.raises(ValueError, match="kappa"):
        weight_langevin(np.zeros((2, 2, 2)), 1.0, -1.0, t_final=1.0, dt=0.1)
