"""Energy helpers shared by the Langevin samplers (internal; public names, no underscore).

The samplers validate their arguments at their own door and call these on
validated states: :func:`check_energy` once at the door, the gradients at every
step (no input checks there). The lifted gradient is [G] eq. 3.6.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import numpy as np

from .._linalg import stack_product
from ..energies import energy_functions
from ..network import lifted_gradient_unchecked

__all__ = ["check_energy", "energy_gradient", "lifted_energy_gradient"]


def energy_gradient(energy, X):
    """E'(X) as float64; FloatingPointError when it is not finite (never a silent NaN drift).

    The samplers evaluate it only at accepted (finite, full-rank) states, so a NaN/Inf
    here is a defect of the energy, not a boundary hit; the sampler adds the step index.
    """
    if energy is None:
        return None
    gradient, _ = energy_functions(energy)
    dE = np.asarray(gradient(X), dtype=np.float64)
    finite = np.isfinite(dE)
    if not finite.all():
        where = ""
        if dE.ndim >= 2:
            per_matrix = finite.reshape((-1,) + finite.shape[-2:]).all(axis=(-2, -1))
            where = f" at {int(np.sum(~per_matrix))} of {per_matrix.size} point(s)"
        raise FloatingPointError(f"the energy gradient returned NaN/Inf{where}")
    return dE


def check_energy(energy):
    """Validate ``energy`` at a sampler's door (None, an Energy or a gradient callable)."""
    if energy is not None:
        energy_functions(energy)  # raises TypeError naming the problem
    return energy


def lifted_energy_gradient(energy, W):
    r"""Euclidean gradient of :math:`E(\phi(W))` for stacks (..., N, d, d) ([G] eq. 3.6).

    No input checks (a sampler step on validated states); a non-finite E'(X) raises
    FloatingPointError (see :func:`energy_gradient`).

    None when ``energy`` is None (E = 0).
    """
    if energy is None:
        return None
    return lifted_gradient_unchecked(W, energy_gradient(energy, stack_product(W)))
