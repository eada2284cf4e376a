"""geomstats adapters: the spaces of the deep linear network as geomstats manifolds.

Importing this subpackage imports geomstats (the top-level ``dln_manifolds``
does not). geomstats reads ``GEOMSTATS_BACKEND`` once, at its first import;
everything here works under the default numpy backend and under autograd.

- :class:`EndToEndMatrices`, :class:`DepthMetric`: (M_d, g^N), points of
  shape (d * d,) (row-major; :func:`matrix_to_vector`, :func:`vector_to_matrix`).
- :class:`Fiber`, :class:`BalancedManifold`: the fiber F_X and the balanced
  manifold M (points of shape (N, d, d)) with the induced Frobenius metric
  (:class:`BalancedMetric` adds numerical geodesics of M).
- :class:`BalancedBundle`: the submersion M -> (M_d, g^N) as a geomstats
  ``FiberBundle``; ``BalancedManifold.equip_with_quotient()`` builds geomstats'
  ``QuotientMetric`` on (M_d, g^N) from it ([G] Thm 13). Its ``align`` goes
  through :class:`OrbitAligner`, a geomstats ``AlignerAlgorithm``
  (:func:`align_orbit` along the orbits of :func:`orthogonal_group_action`).

Batches (..., N, d, d) go to the core functions in one call where they take
stacks; the rest loop over the points.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from .balanced import (
    BalancedManifold,
    BalancedMetric,
    second_fundamental_form,
)
from .bundle import BalancedBundle, OrbitAligner, align_orbit, orthogonal_group_action
from .end_to_end import (
    AutodiffDepthMetric,
    DepthLogShootingSolver,
    DepthMetric,
    EndToEndMatrices,
    direction_geodesic,
    matrix_to_vector,
    vector_to_matrix,
)
from .fiber import Fiber
from .induced import InducedFrobeniusMetric

__all__ = [
    "AutodiffDepthMetric",
    "BalancedBundle",
    "BalancedManifold",
    "BalancedMetric",
    "DepthLogShootingSolver",
    "DepthMetric",
    "EndToEndMatrices",
    "Fiber",
    "InducedFrobeniusMetric",
    "OrbitAligner",
    "align_orbit",
    "direction_geodesic",
    "matrix_to_vector",
    "orthogonal_group_action",
    "second_fundamental_form",
    "vector_to_matrix",
]
