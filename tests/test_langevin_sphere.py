"""Tangential noise on spheres [G] eq. 11.10-11.11: E|m_t|^2 = |m_0|^2 + (d-1) t."""

import numpy as np
import pytest

from dln_manifolds.langevin import sphere_tangential_noise


@pytest.mark.parametrize("d", [2, 3, 5])
def test_mean_square_radius_grows_linearly(d):
    m0 = np.zeros(d)
    m0[0] = 1.5
    T = 0.5
    res = sphere_tangential_noise(m0, t_final=T, dt=0.01, n_paths=3000, seed=d, save_every=10)
    r2 = np.sum(res.states**2, axis=-1)  # (n_saved, B)
    se = r2.std(axis=1, ddof=1) / np.sqrt(r2.shape[1])
    expected = 1.5**2 + (d - 1) * res.times
    assert np.all(np.abs(r2.mean(axis=1) - expected) < 5 * se + 1e-12)
    assert abs(r2[-1].mean() - (1.5**2 + d * T)) > 5 * se[-1]  # not the ambient rate d t


def test_steps_are_tangent_and_radius_never_decreases():
    res = sphere_tangential_noise(
        np.array([1.0, 2.0, 0.5]), t_final=0.1, dt=0.01, n_paths=100, seed=0, save_every=1
    )
    r = np.linalg.norm(res.states, axis=-1)
    assert np.all(np.diff(r, axis=0) >= -1e-14)


def test_validation():
    with pytest.raises(ValueError, match="nonzero"):
        sphere_tangential_noise(np.zeros(3), t_final=1.0, dt=0.1)
    with pytest.raises(ValueError, match="m0"):
        sphere_tangential_noise(np.zeros((2, 2, 2)), t_final=1.0, dt=0.1)
