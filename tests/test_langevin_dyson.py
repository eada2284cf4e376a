"""Dyson Brownian motion [G] eq. 11.1 and its lift eq. 11.4 (Thm 15a): same eigenvalue law."""

import warnings

import numpy as np
import pytest
import scipy.stats

from dln_manifolds.langevin import (
    dyson_brownian_motion,
    dyson_drift,
    dyson_lift,
    hermitian_noise,
)


def test_drift_and_noise():
    x = np.array([-1.0, 0.5, 2.0])
    expected = [1 / (-1.5) + 1 / (-3.0), 1 / 1.5 + 1 / (-1.5), 1 / 3.0 + 1 / 1.5]
    np.testing.assert_allclose(dyson_drift(x), expected, rtol=1e-14)
    H = hermitian_noise(np.random.default_rng(0).standard_normal((20000, 2, 3, 3)))
    np.testing.assert_allclose(H, np.conj(np.swapaxes(H, -1, -2)))
    # unit variance along each orthonormal direction of (Her_d, tr(M^* M)): 5 SE ~ 0.05
    assert abs(np.var(H[:, 0, 0].real) - 1) < 0.05
    assert abs(np.var(np.sqrt(2) * H[:, 0, 1].real) - 1) < 0.05
    assert abs(np.var(np.sqrt(2) * H[:, 0, 1].imag) - 1) < 0.05


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_lift_eigenvalues_match_direct_sde(beta):
    """KS two-sample test per ordered eigenvalue at T = 0.25 (1500 paths each, dt = 2.5e-3).

    Negative control: the same direct SDE with half the Coulomb drift (what a real
    symmetric lift would give) is rejected. At beta = 1 the gaps are 2-dimensional
    Bessel processes (no collision, but neighbourhood recurrent), so a path may come
    within ~1e-6 of a collision, beyond the reach of 30 halvings: it is stopped and
    left out (at most 1% of the paths).
    """
    x0 = np.array([-1.0, 0.0, 1.0])
    kw = dict(t_final=0.25, dt=2.5e-3, n_paths=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lift = dyson_lift(np.diag(x0), beta, seed=1, **kw)
        direct = dyson_brownian_motion(x0, beta, seed=2, **kw)
    assert lift.alive.mean() > 0.99 and direct.alive.mean() > 0.99
    ev = np.linalg.eigvalsh(lift.final[lift.alive])
    xd = direct.final[direct.alive]
    pvals = [scipy.stats.ks_2samp(ev[:, k], xd[:, k]).pvalue for k in range(3)]
    assert min(pvals) > 1e-3, pvals
    rng = np.random.default_rng(3)
    x = np.repeat(x0[None], 1500, axis=0)
    for _ in range(100):
        x = (
            x
            + 2.5e-3 * 0.5 * dyson_drift(x)
            + np.sqrt(2 / beta * 2.5e-3) * rng.standard_normal(x.shape)
        )
    x = np.sort(x, axis=1)
    assert min(scipy.stats.ks_2samp(ev[:, k], x[:, k]).pvalue for k in (0, 2)) < 1e-4


def test_lift_normal_part_and_validation():
    """beta = inf would freeze the spectrum's martingale part: with a huge beta the
    eigenvalues move only by the drift (Thm 15b), so their spread is tiny."""
    res = dyson_lift(np.diag([-1.0, 0.0, 1.0]), 1e12, t_final=0.05, dt=1e-3, n_paths=200, seed=0)
    ev = np.linalg.eigvalsh(res.final)
    assert ev.std(axis=0).max() < 0.02
    assert np.abs(res.final - np.diag([-1.0, 0.0, 1.0])).max() > 0.05  # the matrix moved
    with pytest.raises(ValueError, match="increasing"):
        dyson_brownian_motion([1.0, 0.0], 1.0, t_final=1.0, dt=0.1)
    with pytest.raises(ValueError, match="Hermitian"):
        dyson_lift(np.array([[0.0, 1.0], [0.0, 1.0]]), 1.0, t_final=1.0, dt=0.1)
    with pytest.raises(ValueError, match="distinct"):
        dyson_lift(np.eye(2), 1.0, t_final=1.0, dt=0.1)
