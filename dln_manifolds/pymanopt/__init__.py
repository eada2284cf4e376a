"""pymanopt adapters: thin manifold classes over the numpy core.

- :class:`EndToEndMatrices`: (M_d, g^N), full-rank matrices with the depth metric.
- :class:`Fiber`: the fiber F_X with the Euclidean induced metric.
- :class:`BalancedManifold`: the balanced manifold M with the induced metric.

References
----------
- [pymanopt] J. Townsend, N. Koep and S. Weichwald, *Pymanopt: a Python toolbox for
  optimization on manifolds using automatic differentiation*, JMLR 17 (2016).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from .end_to_end import BoundaryWarning, EndToEndMatrices

__all__ = ["EndToEndMatrices", "BoundaryWarning"]

# --- fiber (pymanopt/fiber.py) ---
from .fiber import Fiber  # noqa: E402
from .line_search import RoundingTolerantLineSearcher  # noqa: E402

__all__ += ["Fiber", "RoundingTolerantLineSearcher"]

# --- balanced manifold (pymanopt/balanced.py) ---
from .balanced import BalancedManifold  # noqa: E402

__all__ += ["BalancedManifold"]
