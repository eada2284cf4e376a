r"""Common base of the pymanopt adapters for submanifolds of :math:`(\mathbb{F}^{d\times d})^N`."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from pymanopt.manifolds.manifold import RiemannianSubmanifold
from pymanopt.tools import ndarraySequenceMixin

from .._checks import as_arrays, as_layer_sequence
from .._linalg import components_differ

__all__ = ["InducedSubmanifold", "LayerList"]

#: Logs kept by :meth:`InducedSubmanifold.log` and :meth:`InducedSubmanifold.dist`: exact
#: repeats of a pair (same points, ``geodesic_steps`` and ``geodesic_tol``) are answered
#: from this cache. pymanopt's NelderMead asks for the dist and then the log of the same
#: pairs (``compute_centroid``): 27 % of the shooting solves of one iteration on the fiber
#: of widths (3, 4, 5, 2), 36 % on the balanced manifold of widths (2, 4, 3, 3).
_LOG_CACHE_SIZE = 256


class InducedSubmanifold(RiemannianSubmanifold):
    r"""Submanifold of N stacked d x d layers with the induced Frobenius metric.

    Shared by :class:`~dln_manifolds.pymanopt.Fiber` and
    :class:`~dln_manifolds.pymanopt.BalancedManifold`: the metric
    :math:`\langle V, Z\rangle = \mathrm{Re\,tr}(V^*Z)` summed over layers,
    vector transport by projection onto the new tangent space; ``exp``, ``log`` and
    ``dist`` raise NotImplementedError unless the subclass defines them (both do, for
    square layers and general widths). A
    subclass sets ``_depth``, ``_d`` (and ``_dtype`` for complex points, ``_widths``
    for general widths: then points and vectors are :class:`LayerList` s) and
    defines ``projection`` and ``_riemannian_hessian``.
    """

    #: Name of the space in error messages.
    _space_name = "submanifold"
    _dtype = np.float64
    #: Widths (d_0, ..., d_N) of a network of general widths, None for square layers.
    _widths: tuple[int, ...] | None = None
    #: The cache of :meth:`log` and :meth:`dist` (created at the first log).
    _logs: OrderedDict | None = None

    @property
    def depth(self) -> int:
        """Number of layers N."""
        return self._depth

    @property
    def d(self) -> int:
        """Layer size d."""
        return self._d

    def _arrays(self, **arrays) -> tuple:
        """Validate points and vectors of shape (N, d, d), or lists of layers of the widths
        ``_widths``, named by their keywords."""
        real = not np.issubdtype(np.dtype(self._dtype), np.complexfloating)
        if self._widths is None:
            return as_arrays((self._depth, self._d, self._d), real=real, **arrays)
        return tuple(
            LayerList(as_layer_sequence(value, name, widths=self._widths, real=real, batch=False))
            for name, value in arrays.items()
        )

    def _out(self, value):
        """A core result as the adapter's vector type (a :class:`LayerList` for general widths)."""
        return LayerList(value) if self._widths is not None else value

    def inner_product(self, point, tangent_vector_a, tangent_vector_b) -> float:
        point, tangent_vector_a, tangent_vector_b = self._arrays(
            point=point, tangent_vector_a=tangent_vector_a, tangent_vector_b=tangent_vector_b
        )
        if self._widths is None:
            return float(np.real(np.vdot(tangent_vector_a, tangent_vector_b)))
        pairs = zip(tangent_vector_a, tangent_vector_b, strict=True)
        return float(sum(np.real(np.vdot(a, b)) for a, b in pairs))

    def norm(self, point, tangent_vector) -> float:
        if self._widths is None:
            point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
            return float(np.linalg.norm(tangent_vector))
        return float(np.sqrt(self.inner_product(point, tangent_vector, tangent_vector)))

    def euclidean_to_riemannian_gradient(self, point, euclidean_gradient):
        point, euclidean_gradient = self._arrays(point=point, euclidean_gradient=euclidean_gradient)
        return self.projection(point, euclidean_gradient)

    def euclidean_to_riemannian_hessian(
        self, point, euclidean_gradient, euclidean_hessian, tangent_vector
    ):
        return self._riemannian_hessian(
            *self._arrays(
                point=point,
                euclidean_gradient=euclidean_gradient,
                euclidean_hessian=euclidean_hessian,
                tangent_vector=tangent_vector,
            )
        )

    def to_tangent_space(self, point, vector):
        return self.projection(point, vector)

    def transport(self, point_a, point_b, tangent_vector_a):
        point_a, point_b, tangent_vector_a = self._arrays(
            point_a=point_a, point_b=point_b, tangent_vector_a=tangent_vector_a
        )
        return self.projection(point_b, tangent_vector_a)

    def zero_vector(self, point):
        (point,) = self._arrays(point=point)
        if self._widths is None:
            return np.zeros((self._depth, self._d, self._d), dtype=self._dtype)
        return LayerList(np.zeros(layer.shape, dtype=self._dtype) for layer in point)

    def _no_geodesics(self, *args, **kwargs):
        raise NotImplementedError(f"geodesics of the {self._space_name} have no closed form here")

    exp = _no_geodesics

    def _solve_log(self, point_a, point_b):
        """The core's log at validated points (a subclass's shooting solve)."""
        return self._no_geodesics()

    def _solve_dist(self, point_a, point_b) -> float:
        """The core's dist at points of different components: inf once the core has
        checked that both are points of the space (else its ValueError)."""
        return self._no_geodesics()

    def _cached_log(self, point_a, point_b):
        """log at validated points, from the cache of exact repeats (copy before handing out)."""
        options = (self.geodesic_steps, self.geodesic_tol)
        key = (
            *(b"".join(np.ascontiguousarray(z).tobytes() for z in p) for p in (point_a, point_b)),
            options,
        )
        if self._logs is None:
            self._logs = OrderedDict()
        logs = self._logs
        hit = logs.get(key)
        if hit is not None:
            logs.move_to_end(key)
            return hit
        V = self._solve_log(point_a, point_b)
        logs[key] = V
        while len(logs) > _LOG_CACHE_SIZE:
            logs.popitem(last=False)
        return V

    def log(self, point_a, point_b):
        """Riemannian logarithm at ``point_a`` of ``point_b`` (shooting; ValueError if none).

        Exact repeats of a pair are answered from a cache (``_LOG_CACHE_SIZE`` pairs).
        """
        point_a, point_b = self._arrays(point_a=point_a, point_b=point_b)
        V = self._cached_log(point_a, point_b)
        return self._out([z.copy() for z in V]) if isinstance(V, list) else V.copy()

    def dist(self, point_a, point_b) -> float:
        """Geodesic distance, the norm of :meth:`log` (inf across connected components)."""
        point_a, point_b = self._arrays(point_a=point_a, point_b=point_b)
        if components_differ(point_a, point_b):
            return self._solve_dist(point_a, point_b)
        V = self._cached_log(point_a, point_b)
        return float(np.sqrt(sum(np.sum(np.abs(z) ** 2) for z in V)))


class LayerList(ndarraySequenceMixin, list):
    """A network of general widths (a list of layers) with the vector-space operations.

    Points and tangent vectors of the pymanopt adapters for general widths: a ``list``
    of N arrays (so every function of the package accepts it as layers) on which
    pymanopt's solvers can add, subtract, negate and scale, layer by layer.
    """

    def __add__(self, other):
        return LayerList(a + b for a, b in zip(self, other, strict=True))

    def __sub__(self, other):
        return LayerList(a - b for a, b in zip(self, other, strict=True))

    def __mul__(self, scalar):
        return LayerList(scalar * a for a in self)

    __rmul__ = __mul__

    def __truediv__(self, scalar):
        return LayerList(a / scalar for a in self)

    def __neg__(self):
        return LayerList(-a for a in self)
