"""Stochastic dynamics on the deep linear network ([G] sections 10-12, [R] section 1.6).

Samplers advance an ensemble of B independent paths at once (arrays with a
leading path axis, no Python loop over paths), take a numpy ``Generator``,
``SeedSequence`` or int as ``seed``, and return a :class:`SampleResult`
(saved times and states, ``.final``, rejection count, exit times). Step
control: Brownian-bridge reject-and-halve, documented in
:mod:`dln_manifolds.langevin._stepping`.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from ._stepping import SampleResult
from .balanced import balanced_langevin, balanced_noise
from .brownian import brownian_drift, brownian_increment, brownian_motion
from .dyson import dyson_brownian_motion, dyson_drift, dyson_lift, hermitian_noise
from .end_to_end import end_to_end_langevin, free_energy_drift
from .ensemble import (
    ResultDirectoryError,
    ResultFileWarning,
    langevin_task,
    run_ensemble,
    sweep_grid,
    task_name,
)
from .sphere import sphere_tangential_noise
from .weight import weight_langevin

__all__ = [
    "ResultDirectoryError",
    "ResultFileWarning",
    "SampleResult",
    "balanced_langevin",
    "balanced_noise",
    "brownian_drift",
    "brownian_increment",
    "brownian_motion",
    "dyson_brownian_motion",
    "dyson_drift",
    "dyson_lift",
    "end_to_end_langevin",
    "free_energy_drift",
    "hermitian_noise",
    "langevin_task",
    "run_ensemble",
    "sphere_tangential_noise",
    "sweep_grid",
    "task_name",
    "weight_langevin",
]
