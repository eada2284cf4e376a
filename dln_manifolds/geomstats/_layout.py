r"""Flat points of the geomstats spaces of general widths.

geomstats needs one array shape per space, so a network of widths
:math:`(d_0, \dots, d_N)` is stored as a flat vector of size
:math:`D = \sum_k d_{k+1}d_k`: the layers ``W[k]`` of shape :math:`(d_{k+1}, d_k)`,
input layer first, each row-major, concatenated. :class:`FlatLayers` converts both ways
on batches (..., D), with the array operations of whatever array it is given (numpy,
an autograd box, a torch tensor), so that the conversion keeps a gradient tape.

References
----------
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import geomstats.backend as gs
import numpy as np

from .._checks import as_array, as_layer_sequence
from ._backend import is_traced, plain, to_backend

__all__ = ["FlatLayers", "LayersConversion", "flat_inner_product", "lists_for_lists"]


class FlatLayers:
    """The flat layout (..., D) of networks of widths :math:`(d_0, \\dots, d_N)`.

    Parameters
    ----------
    widths : sequence of int
        :math:`(d_0, \\dots, d_N)`, validated by the caller.
    """

    def __init__(self, widths: Sequence[int]):
        self.widths = tuple(int(w) for w in widths)
        self.shapes = [(self.widths[k + 1], self.widths[k]) for k in range(len(self.widths) - 1)]
        self.offsets = np.concatenate([[0], np.cumsum([a * b for a, b in self.shapes])])
        self.size = int(self.offsets[-1])

    def split(self, flat) -> list:
        """The layers (..., d_{k+1}, d_k) of flat vectors (..., D) (views for numpy)."""
        lead = tuple(flat.shape[:-1])
        o = self.offsets
        return [
            flat[..., int(o[k]) : int(o[k + 1])].reshape(lead + shape)
            for k, shape in enumerate(self.shapes)
        ]

    def join(self, layers):
        """The flat vectors (..., D) of layers (..., d_{k+1}, d_k) with the same batch axes."""
        lead = tuple(layers[0].shape[:-2])
        parts = [layer.reshape(lead + (-1,)) for layer in layers]
        if any(is_traced(p) for p in parts):
            return gs.concatenate(parts, axis=-1)
        return np.concatenate(parts, axis=-1)

    def check(self, value, name: str) -> np.ndarray:
        """Validate real flat vectors (..., D), or a list of N layers (joined), as numpy."""
        if isinstance(value, (list, tuple)):
            value = self.join(
                as_layer_sequence(value, name, widths=self.widths, real=True, batch=True)
            )
        return as_array(value, name, (self.size,), real=True, batch=True)

    def to_layers(self, point, name: str = "point") -> list:
        """Validated :meth:`split` that keeps the backend: the layers of the caller's array
        (its gradient tape kept), or of the validated numpy array as a backend array."""
        checked = self.check(plain(point), name)
        return self.split(point if is_traced(point) else to_backend(checked))

    def from_layers(self, layers, name: str = "layers"):
        """Validated :meth:`join` that keeps the backend (see :meth:`to_layers`)."""
        if not isinstance(layers, (list, tuple)):
            raise TypeError(
                f"{name} must be a list or tuple of layers, got {type(layers).__name__}"
            )
        checked = self.check(plain(layers), name)
        if any(is_traced(layer) for layer in layers):
            return self.join(list(layers))
        return to_backend(checked)

    def _broadcast(self, arrays):
        batch = np.broadcast_shapes(*(a.shape[:-1] for a in arrays))
        return batch, [np.broadcast_to(a, batch + a.shape[-1:]) for a in arrays]

    def stacked(self, fun: Callable, *arrays: np.ndarray):
        """Apply fun, which takes and returns lists of layers with leading batch axes (a core
        function vectorized over networks), once to broadcast batches of validated flat
        vectors (..., D): no Python loop over the networks."""
        batch, flat = self._broadcast(arrays)
        if 0 in batch:
            return np.empty(batch + (self.size,))
        return self.join(fun(*(self.split(f) for f in flat)))

    def over(self, fun: Callable, *arrays: np.ndarray, layers: bool = False):
        """Apply fun, which takes and returns the layers of one network, to broadcast
        batches of validated flat vectors (..., D), one network at a time (for core
        functions that take a single network).

        Returns flat vectors (..., D), or with ``layers`` the list of layers
        (..., d_{k+1}, d_k). A result of fun that is not a list of layers (a bool, a
        number) comes back as an array of the batch shape.
        """
        batch, flat = self._broadcast(arrays)
        flat = [f.reshape(-1, self.size) for f in flat]
        out = [fun(*(self.split(f[i]) for f in flat)) for i in range(flat[0].shape[0])]
        if out and not isinstance(out[0], list):
            return np.asarray(out).reshape(batch)
        if not out:
            joined = np.empty(batch + (self.size,))
        else:
            joined = np.stack([self.join(o) for o in out]).reshape(batch + (self.size,))
        return self.split(joined) if layers else joined


class LayersConversion:
    """Mixin of the geomstats spaces of general widths (``self.widths``, ``self.layout``):
    conversion between flat points (..., D) and lists of layers."""

    def to_layers(self, point) -> list:
        """The layers ``W[k]`` (..., d_{k+1}, d_k) of flat points (..., D) (general widths).

        Backend arrays in, backend arrays out (differentiable: a reshape).
        """
        self._require_widths("to_layers")
        return self.layout.to_layers(point)

    def from_layers(self, layers):
        """The flat points (..., D) of a list of N layers ``W[k]`` (..., d_{k+1}, d_k)."""
        self._require_widths("from_layers")
        return self.layout.from_layers(layers)

    def _require_widths(self, name: str) -> None:
        if getattr(self, "widths", None) is None:
            raise ValueError(
                f"{name} is for a {type(self).__name__} of general widths (built with "
                "widths=...); this space's points are already stacks of layers (N, d, d)"
            )


def flat_inner_product(layout: FlatLayers, tangent_vec_a, tangent_vec_b, base_point=None):
    """Frobenius inner product of flat vectors (..., D) (or lists of layers); shape (...,).

    Written with backend operations on the caller's arrays: differentiable under autograd
    and pytorch in both vectors (the Frobenius metric does not depend on the point).
    """
    vectors = []
    for name, value in (("tangent_vec_a", tangent_vec_a), ("tangent_vec_b", tangent_vec_b)):
        checked = layout.check(plain(value), name)
        if isinstance(value, (list, tuple)):
            value = layout.join(list(value))
        # the caller's tensors keep their gradient tape; anything else is validated numpy
        vectors.append(value if is_traced(value) else to_backend(checked))
    out = gs.sum(vectors[0] * vectors[1], axis=-1)
    if base_point is not None:
        bp = layout.check(plain(base_point), "base_point")
        shape = np.broadcast_shapes(tuple(out.shape), bp.shape[:-1])
        if shape != tuple(out.shape):
            out = gs.broadcast_to(out, shape)
    return out


def lists_for_lists(points: bool = True):
    """Decorate a method of a space with an optional ``layout`` (a :class:`FlatLayers`,
    set when ``self.widths`` is not None): arguments given as lists of layers are
    validated (named), joined into flat vectors, and, if ``points``, the result comes back
    as a list of layers (the package's convention: lists in, lists out).

    Joining keeps the gradient tape of backend arrays.
    """

    def decorate(method):
        names = list(inspect.signature(method).parameters)[1:]

        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            if getattr(self, "widths", None) is None:
                return method(self, *args, **kwargs)
            bound = dict(zip(names, args, strict=False))
            bound.update(kwargs)
            lists = False
            for name, value in bound.items():
                if isinstance(value, (list, tuple)):
                    as_layer_sequence(plain(value), name, widths=self.widths, batch=True)
                    bound[name] = self.layout.join(list(value))
                    lists = True
            out = method(self, **bound)
            return self.layout.split(out) if lists and points else out

        return wrapper

    return decorate
