"""geomstats adapters: the spaces of the deep linear network as geomstats manifolds.

Importing this subpackage imports geomstats (the top-level ``dln_manifolds``
does not). geomstats reads ``GEOMSTATS_BACKEND`` once, at its first import;
everything here works under its numpy, autograd and pytorch backends (section
*Backends* below).

- :class:`EndToEndMatrices`, :class:`DepthMetric`: (M_d, g^N), points of
  shape (d * d,) (row-major; :func:`matrix_to_vector`, :func:`vector_to_matrix`).
- :class:`Fiber`, :class:`BalancedManifold`: the fiber F_X and the balanced
  manifold M (points of shape (N, d, d)) with the induced Frobenius metric
  (:class:`BalancedMetric` adds numerical geodesics of M). With ``widths=(d_0, ...,
  d_N)`` (general widths) points are flat vectors (D,), the layers row-major and
  concatenated, input layer first (``to_layers``, ``from_layers``).
- :class:`BalancedBundle`: the submersion M -> (M_d, g^N) as a geomstats
  ``FiberBundle``; ``BalancedManifold.equip_with_quotient()`` builds geomstats'
  ``QuotientMetric`` on (M_d, g^N) from it ([G] Thm 13). Its ``align`` goes
  through :class:`OrbitAligner`, a geomstats ``AlignerAlgorithm``
  (the core :func:`dln_manifolds.geodesic_orbit_alignment`: nearest in the geodesic
  distance of M, along the orbits of :func:`orthogonal_group_action`; the
  Frobenius-nearest point is :func:`align_orbit`).

Batches (..., N, d, d), and for BalancedManifold and Fiber the batches of flat points
of general widths (``to_tangent``, ``projection``, ``retraction``, ``belongs``), go to
the core functions in one call where they take stacks; the rest (the geodesics of
general widths among them) loop over the points.

Backends
--------
Every method takes and returns the arrays of geomstats' active backend
(``GEOMSTATS_BACKEND`` = numpy, autograd or pytorch): the numpy core runs behind
a conversion boundary. Under autograd and pytorch these are differentiable (first
order), with derivatives from the core:

- :class:`DepthMetric`: ``inner_product``, ``squared_norm``, ``norm``,
  ``metric_matrix``, ``cometric_matrix`` (hence geomstats'
  ``inner_product_derivative_matrix``), ``dist``, ``squared_dist`` (in every
  argument, closed form: [G] eq. 4.16-4.17 and the derivative of the depth
  operator); ``exp`` in the tangent vector and the base point and ``log`` in both
  points, by the Jacobian of the geodesic flow (4th-order central differences of
  the batched RK4 flow, relative error ~1e-9; ``log`` by the implicit function
  theorem); with fixed RK4 steps (``n_steps``) ``dist`` is differentiated as the
  computed distance, not the exact one; square and non-square (m x n) points alike;
  ``EndToEndMatrices.to_tangent``, ``to_matrix``, ``to_vector``,
  :func:`matrix_to_vector`, :func:`vector_to_matrix`.
- ``AutodiffDepthMetric`` (the metric matrix differentiated by the backend): its
  curvature under pytorch raises ``NotImplementedError``, since geomstats 2.8.0's
  pytorch ``jacobian_vec`` drops second derivatives (measured: off by a relative 1 to
  2.4); the Christoffel symbols are correct there.
- :class:`Fiber`, :class:`BalancedManifold` and their metrics: ``inner_product``,
  ``squared_norm``, ``norm`` (backend operations; general widths too),
  ``to_tangent`` in the vector (general widths too), ``to_layers`` and
  ``from_layers`` (general widths),
  ``dist``, ``squared_dist`` (both points), ``exp`` in the tangent vector, ``log`` in
  the point (tangent directions), ``parallel_transport`` in the tangent vector, square
  and general widths alike: ``exp`` by the Jacobian of the RK4 geodesic flow along a
  tangent basis (4th-order central differences), ``log`` and ``dist`` (the gradient of
  the computed distance, not the first variation of the exact one, which is off by the
  RK4 error) by the implicit function theorem, the transport (linear) by transporting a
  tangent basis.
- :class:`BalancedBundle`: ``riemannian_submersion``;
  ``tangent_riemannian_submersion``, ``vertical_projection``,
  ``horizontal_projection`` and ``horizontal_lift`` in the tangent vector; hence
  the quotient metric's ``inner_product`` and ``squared_norm`` in the tangent
  vectors.

The rest (``random_point``, ``belongs``, ``projection``, ``retraction``,
Christoffel symbols and curvature, ``exp``/``log`` upstairs in the base point,
``parallel_transport`` upstairs in the base point, the direction and the end point,
``lift``, ``align``, ...) converts types but has no derivatives: an input that
carries a gradient (an autograd box, a torch tensor with ``requires_grad``) raises
``NotDifferentiableError``, a ``NotImplementedError``, instead of being silently
cut from the graph.

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
