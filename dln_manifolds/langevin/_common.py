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

from .._checks import as_array
from .._linalg import stack_product
from ..energies import energy_functions
from ..network import lifted_gradient_unchecked

__all__ = [
    "RUN_OPTIONS",
    "as_real_matrices",
    "check_energy",
    "check_rectangular_depth",
    "energy_gradient",
    "lifted_energy_gradient",
    "run_options",
]

#: The options of every sampler that go unchanged to ``_stepping.run_sampler`` (documented
#: once: in :func:`~dln_manifolds.langevin.brownian_motion` for the matrix samplers and in
#: :func:`~dln_manifolds.langevin.dyson_brownian_motion` for the Dyson samplers).
RUN_OPTIONS = (
    "seed",
    "save_every",
    "max_halvings",
    "on_boundary",
    "progress",
    "chunk_size",
    "out",
    "on_save",
)


def run_options(arguments: dict) -> dict:
    """The :data:`RUN_OPTIONS` among a sampler's arguments (its ``locals()`` at the door)."""
    return {name: arguments[name] for name in RUN_OPTIONS if name in arguments}


def as_real_matrices(X, name: str = "X") -> np.ndarray:
    """Validate a real matrix or stack of matrices of shape (..., m, n), m, n >= 1; float64."""
    arr = as_array(X, name, (), real=True, batch=True)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (..., m, n), got {arr.shape}")
    return arr


def check_rectangular_depth(shape: tuple[int, ...], depth, name: str = "X") -> None:
    r"""Reject ``depth = inf`` for non-square points: g^inf is not a metric there.

    The rescaled operator :math:`\mathcal{A}_\infty = \lim\mathcal{A}_N/N` vanishes on the
    complement block of an m x n matrix (m != n), so neither its inverse (the metric) nor a
    diffusion with covariance :math:`\mathcal{A}_\infty` on all of the space exists.
    """
    if np.isinf(depth) and shape[-1] != shape[-2]:
        raise ValueError(
            f"depth must be finite for non-square {name} (shape (..., {shape[-2]}, "
            f"{shape[-1]})): the limit metric g^inf is not defined on the complement block"
        )


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
