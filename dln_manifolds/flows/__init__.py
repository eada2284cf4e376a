"""Flows: time integrators and the regularizing, Ness and learning flows.

Integrators live in :mod:`dln_manifolds.flows.integrators`; each family of
flows has its own module and is re-exported here.
"""

from .integrators import TABLEAUS, FlowResult, integrate_flow

__all__ = ["FlowResult", "integrate_flow", "TABLEAUS"]

# --- fiber flows (regularizing, Ness, regularized gradient): flows/fiber.py ---
from .fiber import (  # noqa: E402
    ness_flow,
    regularized_gradient_flow,
    regularizing_flow,
    split_velocity,
)

__all__ += ["ness_flow", "regularized_gradient_flow", "regularizing_flow", "split_velocity"]

# --- learning flows (upstairs on M, downstairs on (M_d, g^N)): flows/learning.py ---
from .learning import (  # noqa: E402
    LayersFlowResult,
    end_to_end_flow,
    free_energy_flow,
    learning_flow,
    learning_velocity,
)

__all__ += [
    "LayersFlowResult",
    "end_to_end_flow",
    "free_energy_flow",
    "learning_flow",
    "learning_velocity",
]
