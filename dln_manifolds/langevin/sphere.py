r"""Tangential noise on spheres: the mean-curvature example of [G] section 11.2.

The Ito SDE :math:`dm = P_m\,dW`, :math:`P_m = I - mm^T/|m|^2` ([G] eq. 11.10), moves
m by isotropic steps tangent to the sphere through m; its Ito correction makes
the radius grow, :math:`\dot r = (d-1)/(2r)` ([G] eq. 11.11), i.e. the spheres move
by minus one half their mean curvature, and :math:`E|m_t|^2 = |m_0|^2 + (d-1)t`.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ._batch import real_vector_ensemble
from ._stepping import SampleResult, run_sampler

__all__ = ["sphere_tangential_noise"]


def sphere_tangential_noise(
    m0,
    *,
    t_final: float,
    dt: float,
    n_paths: int | None = None,
    seed=None,
    save_every: int | None = None,
    progress: bool = False,
) -> SampleResult:
    r"""Sample [G] eq. 11.10, :math:`dm = (I - mm^T/|m|^2)\,dW`, by Euler-Maruyama.

    Each Euler step adds exactly :math:`(d-1)h` to :math:`|m|^2` in mean (and never
    decreases :math:`|m|`, so m stays away from 0), matching
    :math:`E|m_t|^2 = |m_0|^2 + (d-1)t`.

    Parameters
    ----------
    m0 : array_like, shape (d,) or (B, d)
        Nonzero starting point(s).
    t_final, dt : float
    n_paths : int, optional
    seed : None, int, SeedSequence or Generator
    save_every : int, optional
    progress : bool, default False

    Returns
    -------
    SampleResult
        ``states`` of shape (n_saved, B, d).
    """
    m0 = real_vector_ensemble(m0, n_paths, "m0")
    if not np.all(np.isfinite(m0)) or np.any(np.linalg.norm(m0, axis=-1) == 0):
        raise ValueError("m0 must be finite and nonzero")

    def step(m, dW, h):
        r2 = np.sum(m * m, axis=-1, keepdims=True)
        return m + dW - m * (np.sum(m * dW, axis=-1, keepdims=True) / r2)

    return run_sampler(
        m0,
        step,
        m0.shape[1:],
        t_final,
        dt,
        seed=seed,
        save_every=save_every,
        progress=progress,
        desc="sphere",
    )
