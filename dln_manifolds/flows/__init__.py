"""Flows: time integrators and the regularizing, Ness and learning flows.

Integrators live in :mod:`dln_manifolds.flows.integrators`; each family of
flows has its own module and is re-exported here.
"""

from .integrators import TABLEAUS, FlowResult, integrate_flow

__all__ = ["FlowResult", "integrate_flow", "TABLEAUS"]

# --- fiber flows (regularizing, Ness, regularized gradient): flows/fiber.py ---

# --- learning flows (upstairs on M, downstairs on (M_d, g^N)): flows/learning.py ---
