r"""The isotropic Langevin equation on the weights, [R] eq. 1.19-1.21.

.. math::

    d\mathbf W = -\big(\nabla_{\mathbf W}E(\phi(\mathbf W)) + \kappa\mathbf W\big)\,dt
                 + \sqrt{2/\beta}\,d\mathbf B,

on all of :math:`(\mathbb M_d)^N` (background noise with :math:`L^2` regularization
:math:`\tfrac\kappa2|\mathbf W|^2`; with E = 0 it is the Ornstein-Uhlenbeck process
[R] eq. 1.19 with invariant density :math:`\propto e^{-\beta\kappa|\mathbf W|^2/2}`).
The lifted gradient conserves the moments
:math:`G_k = W_kW_k^T - W_{k+1}^TW_{k+1}`, the regularizer contracts them at rate
:math:`2\kappa`, and the Ito terms of the noise cancel in G (square layers), so
:math:`E\,G(t) = e^{-2\kappa t}G(0)` for every lifted energy (:ref:`math-corrections`; [R] section
1.6.1 states rate :math:`\kappa`, which is :math:`2\kappa` in this normalization).

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ._batch import as_real_stacks, check_real, ensemble
from ._common import check_energy, lifted_energy_gradient
from ._stepping import SampleResult, run_sampler

__all__ = ["weight_langevin"]


def weight_langevin(
    W0,
    beta: float,
    kappa: float = 0.0,
    energy=None,
    *,
    t_final: float,
    dt: float,
    n_paths: int | None = None,
    seed=None,
    save_every: int | None = None,
    progress: bool = False,
) -> SampleResult:
    r"""Sample [R] eq. 1.21 by Euler-Maruyama for an ensemble of B networks.

    Parameters
    ----------
    W0 : array_like, shape (N, d, d) or (B, N, d, d)
        Starting weights (any, balanced or not; rank-deficient allowed: the
        state space is all of :math:`(\mathbb M_d)^N`, so no step control is needed).
    beta : float
        Inverse temperature (> 0).
    kappa : float, default 0
        Strength of the :math:`L^2` regularizer (>= 0).
    energy : Energy or callable, optional
        Loss E of the end-to-end matrix (``gradient(X)``); None means E = 0.
    t_final, dt : float
    n_paths : int, optional
    seed : None, int, SeedSequence or Generator
    save_every : int, optional
    progress : bool, default False

    Returns
    -------
    SampleResult
        ``states`` of shape (n_saved, B, N, d, d).
    """
    beta = check_real(beta, "beta", positive=True)
    kappa = check_real(kappa, "kappa", positive=True, allow_zero=True)
    energy = check_energy(energy)
    w0 = ensemble(as_real_stacks(W0, "W0"), n_paths, 3, "W0")
    noise_scale = np.sqrt(2.0 / beta)

    def step(W, dW, h):
        force = kappa * W
        grad = lifted_energy_gradient(energy, W)
        if grad is not None:
            force = force + grad
        return W - h * force + noise_scale * dW

    return run_sampler(
        w0,
        step,
        w0.shape[1:],
        t_final,
        dt,
        seed=seed,
        save_every=save_every,
        progress=progress,
        desc="weights",
    )
