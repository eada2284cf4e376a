r"""The submersion :math:`\phi: \mathcal{M} \to (\mathfrak{M}_d, g^N)` as a ``FiberBundle``.

[G] Thm 13: the end-to-end map restricted to the balanced manifold (with the
Frobenius metric) is a Riemannian submersion onto :math:`(\mathfrak{M}_d, g^N)`;
its fibers are the orbits :math:`O_X` of :math:`O(d)^{N-1}` acting by
:math:`W_p \mapsto R_p W_p R_{p-1}^T`. Upstairs points have shape (N, d, d);
downstairs points are the vectors (d*d,) of :class:`~dln_manifolds.geomstats.EndToEndMatrices`.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np
from geomstats.geometry.fiber_bundle import AlignerAlgorithm, FiberBundle

from .._checks import as_array, as_arrays, check_count, check_positive
from .._linalg import chain_partial_products, chain_product
from ..alignment import geodesic_orbit_alignment, orbit_action, orbit_alignment
from ..balanced import (
    BalancedFrame,
    horizontal_projection,
    vertical_projection,
)
from ..network import balanced_point, end_to_end, end_to_end_differential
from ._backend import boundary, differentiable
from ._derivatives import (
    horizontal_lift_vjp,
    projection_vjp,
    submersion_vjp,
    tangent_submersion_vjp,
)
from .end_to_end import matrix_to_vector, vector_to_matrix
from .induced import InducedSubmanifold, stacked_over_points

__all__ = ["BalancedBundle", "OrbitAligner", "align_orbit", "orthogonal_group_action"]


@boundary
def orthogonal_group_action(rotations, point) -> np.ndarray:
    r"""Action of :math:`O(d)^{N-1}`: layer p becomes :math:`R_p W_p R_{p-1}^T` ([R] eq. 1.5).

    Its orbits in :math:`\mathcal{M}` are the fibers of :class:`BalancedBundle`.

    For general widths (``BalancedManifold(widths=...)``: the group
    :math:`O(d_1) \times \dots \times O(d_{N-1})`) ``point`` is one network as a list of
    layers (``BalancedManifold.to_layers`` of a flat point) and ``rotations`` a list of
    N - 1 orthogonal matrices (d_k, d_k); the result is a list of layers.

    Parameters
    ----------
    rotations : array_like, shape (..., N-1, d, d), or list of N-1 arrays
        Orthogonal matrices :math:`R_1, \dots, R_{N-1}` (:math:`R_0 = R_N = I`).
    point : array_like, shape (..., N, d, d), or list of N layers

    Returns
    -------
    ndarray, shape (..., N, d, d), or list of N layers
    """
    if isinstance(point, (list, tuple)):
        return orbit_action(rotations, point)
    point = as_array(point, "point", batch=True, real=True)
    if point.ndim < 3 or point.shape[-1] != point.shape[-2]:
        raise ValueError(f"point must have shape (..., N, d, d), got shape {point.shape}")
    return orbit_action(rotations, point)


def _norm3(V: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(V * V, axis=(-3, -2, -1)))


def _norm1(V: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(V * V, axis=-1))


@boundary
def align_orbit(point, base_point, max_sweeps: int = 500, tol: float = 1e-13) -> np.ndarray:
    r"""The point of the :math:`O(d)^{N-1}` orbit of ``point`` nearest ``base_point`` (Frobenius).

    geomstats-style names for :func:`dln_manifolds.orbit_alignment` (block coordinate
    ascent of orthogonal Procrustes steps, vectorized over batches).

    Parameters
    ----------
    point, base_point : array_like, shape (..., N, d, d)
        Batch axes broadcast.
    max_sweeps : int, default 500
    tol : float, default 1e-13

    Returns
    -------
    ndarray, shape (..., N, d, d)
        :math:`R\cdot W'`: same end-to-end matrix and same balance as ``point``.
    """
    point = as_array(point, "point", batch=True, real=True)
    if point.ndim < 3 or point.shape[-1] != point.shape[-2]:
        raise ValueError(f"point must have shape (..., N, d, d), got shape {point.shape}")
    base_point = as_array(base_point, "base_point", point.shape[-3:], batch=True, real=True)
    return orbit_alignment(point, base_point, max_sweeps=max_sweeps, tol=tol)


class OrbitAligner(AlignerAlgorithm):
    r"""geomstats aligner along the :math:`O(d)^{N-1}` orbits.

    ``align(point, base_point)`` returns the point of the orbit of ``point``
    nearest ``base_point`` in the geodesic distance of the total space, as geomstats'
    ``FiberBundle.align`` and ``QuotientMetric`` require (the log at ``base_point``
    of the aligned point is horizontal): :func:`dln_manifolds.geodesic_orbit_alignment`
    (the horizontal geodesic over the :math:`g^N` geodesic, [G] Thm 13). The
    Frobenius-nearest point (:func:`align_orbit`) is only a critical point of the
    chordal distance, and its log has a vertical part (1e-2 relative measured at
    d, N = (2, 3), (3, 2)). For batches (..., N, d, d) (broadcast). Used by
    :class:`BalancedBundle` (``bundle.aligner``).

    Parameters
    ----------
    total_space : BalancedManifold
    max_sweeps : int, default 500
        Sweeps of block coordinate ascent per start (the final Frobenius step).
    tol : float, default 1e-13
        Stop when no rotation moves by more than ``tol`` in a sweep.
    """

    def __init__(self, total_space, max_sweeps: int = 500, tol: float = 1e-13):
        super().__init__(total_space=total_space)
        self.max_sweeps = check_count(max_sweeps, "max_sweeps")
        self.tol = check_positive(tol, "tol")

    @boundary
    def align(self, point, base_point):
        """Align ``point`` to ``base_point`` (geodesic distance); shape (..., N, d, d)."""
        space = self._total_space
        point, base_point = space._arrays(point=point, base_point=base_point)
        if getattr(space, "widths", None) is not None:  # the whole batch in one call
            return space.layout.stacked(
                lambda P, B: geodesic_orbit_alignment(
                    P, B, max_sweeps=self.max_sweeps, tol=self.tol
                ),
                point,
                base_point,
            )
        return geodesic_orbit_alignment(point, base_point, max_sweeps=self.max_sweeps, tol=self.tol)


class BalancedBundle(FiberBundle):
    r"""The end-to-end map :math:`\mathcal{M} \to (\mathfrak{M}_d, g^N)` as a fiber bundle.

    Parameters
    ----------
    total_space : BalancedManifold
        Upstairs space (points of shape (N, d, d)), acted on by
        :func:`orthogonal_group_action`.

    Notes
    -----
    - ``riemannian_submersion``: :math:`W \mapsto \phi(W) = W_N\cdots W_1` as a vector (d*d,).
    - ``tangent_riemannian_submersion``: :math:`d\phi_W(V)` as a vector (d*d,).
    - ``lift``: the balanced point over X of [G] eq. 5.16 with
      :math:`Q_1 = \dots = Q_{N-1} = I` (the center of [R]).
    - ``vertical_projection``, ``horizontal_projection``, ``horizontal_lift``:
      :mod:`dln_manifolds.balanced` (SVD frames, O(N d^3)).
    - ``align``: geomstats' ``FiberBundle.align`` through ``self.aligner``,
      an :class:`OrbitAligner` (:func:`dln_manifolds.geodesic_orbit_alignment`: nearest in
      the geodesic distance of the total space, along the :math:`O(d)^{N-1}` orbit).

    With ``total_space.equip_with_quotient()``, geomstats' ``QuotientMetric``
    (:class:`~dln_manifolds.geomstats.balanced.BalancedQuotientMetric`) computes
    :math:`g^N` inner products through horizontal lifts ([G] Thm 13), ``exp`` through
    the horizontal geodesic upstairs, and ``log``, ``dist`` and parallel transport
    through the horizontal lifts of those of :math:`g^N`
    (:func:`dln_manifolds.horizontal_log`, :func:`dln_manifolds.orbit_distance`,
    :func:`dln_manifolds.horizontal_parallel_transport`).
    """

    def __init__(self, total_space):
        # the bundle is the quotient by orthogonal_group_action: checked without importing
        # BalancedManifold (geomstats/balanced.py imports this module)
        if not (
            isinstance(total_space, InducedSubmanifold)
            and getattr(total_space, "group_action", None) is orthogonal_group_action
        ):
            raise TypeError(
                f"total_space must be a BalancedManifold, got {type(total_space).__name__}"
            )
        super().__init__(total_space=total_space, aligner=OrbitAligner(total_space))
        self.d = total_space.d
        self.depth = total_space.depth
        #: :math:`(d_0, \dots, d_N)` for a total space of general widths, else None.
        self.widths = getattr(total_space, "widths", None)
        if self.widths is not None:
            self.layout = total_space.layout
            self.matrix_shape = (self.widths[-1], self.widths[0])
        else:
            self.matrix_shape = (self.d, self.d)

    def _flat(self, **arrays) -> tuple[np.ndarray, ...]:
        """Validate real points and vectors downstairs, shape (..., m*n) (m = n = d square)."""
        m, n = self.matrix_shape
        return as_arrays((m * n,), batch=True, **arrays)

    # -- general widths: flat points (..., D) upstairs, (..., d_N * d_0) downstairs ----
    # numpy only (no derivatives under the autograd and pytorch backends: ``boundary``)

    def _to_matrix(self, z: np.ndarray) -> np.ndarray:
        return z.reshape(z.shape[:-1] + self.matrix_shape)

    def _to_vector(self, X: np.ndarray) -> np.ndarray:
        m, n = self.matrix_shape
        return X.reshape(X.shape[:-2] + (m * n,))

    def _pair(self, **arrays) -> list[np.ndarray]:
        """Validated flat upstairs arrays, broadcast against each other."""
        checked = self._total_space._arrays(**arrays)
        batch = np.broadcast_shapes(*(a.shape[:-1] for a in checked))
        return [np.broadcast_to(a, batch + a.shape[-1:]) for a in checked]

    @boundary
    def _widths_submersion(self, point):
        (point,) = self._total_space._arrays(point=point)
        return self._to_vector(chain_product(self.layout.split(point)))

    @boundary
    def _widths_tangent_submersion(self, tangent_vec, base_point):
        V, W = self._pair(tangent_vec=tangent_vec, base_point=base_point)
        A, B = chain_partial_products(self.layout.split(W))
        Vl = self.layout.split(V)
        return self._to_vector(sum(A[p + 1] @ Vl[p] @ B[p] for p in range(len(Vl))))

    @boundary
    def _widths_lift(self, point):
        (point,) = self._flat(point=point)
        X = self._to_matrix(point)
        flat = X.reshape((-1,) + self.matrix_shape)
        out = [self.layout.join(balanced_point(M, self.depth, widths=self.widths)) for M in flat]
        return (
            np.stack(out).reshape(X.shape[:-2] + (self.layout.size,))
            if out
            else np.empty(X.shape[:-2] + (self.layout.size,))
        )

    @boundary
    def _widths_projection(self, which: str, tangent_vec, base_point):
        V, W = self._pair(tangent_vec=tangent_vec, base_point=base_point)
        project = horizontal_projection if which == "horizontal" else vertical_projection
        return self.layout.over(lambda v, w: project(w, v), V, W)

    @boundary
    def _widths_horizontal_lift(self, tangent_vec, base_point, fiber_point):
        (tangent_vec,) = self._flat(tangent_vec=tangent_vec)
        if fiber_point is None:
            if base_point is None:
                raise TypeError("either base_point or fiber_point must be given")
            (base_point,) = self._flat(base_point=base_point)
            fiber_point = self._widths_lift(base_point)
        (fiber_point,) = self._total_space._arrays(fiber_point=fiber_point)
        batch = np.broadcast_shapes(tangent_vec.shape[:-1], fiber_point.shape[:-1])
        Z = np.broadcast_to(tangent_vec, batch + tangent_vec.shape[-1:]).reshape(
            (-1, tangent_vec.shape[-1])
        )
        F = np.broadcast_to(fiber_point, batch + fiber_point.shape[-1:]).reshape(
            (-1, self.layout.size)
        )
        out = np.empty((F.shape[0], self.layout.size))
        for i in range(F.shape[0]):
            frame = BalancedFrame(self.layout.split(F[i]), tol=1e-6)  # rank and balance
            out[i] = self.layout.join(frame.horizontal_lift(self._to_matrix(Z[i])))
        return out.reshape(batch + (self.layout.size,))

    def riemannian_submersion(self, point):
        """End-to-end matrix, as a vector of shape (..., d*d) (general widths: d_N * d_0)."""
        if self.widths is not None:
            return self._widths_submersion(point)
        return self._square_submersion(point)

    def tangent_riemannian_submersion(self, tangent_vec, base_point):
        r""":math:`d\phi_W(V)` as a vector of shape (..., d*d) (general widths: d_N * d_0)."""
        if self.widths is not None:
            return self._widths_tangent_submersion(tangent_vec, base_point)
        return self._square_tangent_submersion(tangent_vec, base_point)

    def lift(self, point):
        """Balanced point over X (the center of [R]); shape (..., N, d, d) (general widths:
        flat (..., D), :func:`~dln_manifolds.balanced_point` with ``widths``)."""
        if self.widths is not None:
            return self._widths_lift(point)
        return self._square_lift(point)

    def vertical_projection(self, tangent_vec, base_point):
        r"""Projection onto :math:`\ker d\phi \cap T_W\mathcal{M}` (tangent to the orbit)."""
        if self.widths is not None:
            return self._widths_projection("vertical", tangent_vec, base_point)
        return self._square_vertical_projection(tangent_vec, base_point)

    def horizontal_projection(self, tangent_vec, base_point):
        r"""Projection onto the horizontal space :math:`(\ker d\phi)^\perp` (range of dphi^*)."""
        if self.widths is not None:
            return self._widths_projection("horizontal", tangent_vec, base_point)
        return self._square_horizontal_projection(tangent_vec, base_point)

    def horizontal_lift(self, tangent_vec, base_point=None, fiber_point=None):
        r"""The horizontal H at ``fiber_point`` with :math:`d\phi(H) = Z` ([G] eq. 8.20-8.24).

        Parameters
        ----------
        tangent_vec : array_like, shape (..., d*d)
            Tangent vector downstairs ((..., d_N * d_0) for general widths).
        base_point : array_like, shape (..., d*d), optional
            Used (through :meth:`lift`) only if ``fiber_point`` is None.
        fiber_point : array_like, shape (..., N, d, d), optional
            ((..., D) for general widths.)
        """
        if self.widths is not None:
            return self._widths_horizontal_lift(tangent_vec, base_point, fiber_point)
        return self._square_horizontal_lift(tangent_vec, base_point, fiber_point)

    @differentiable(submersion_vjp, wrt=("point",))
    def _square_submersion(self, point):
        """End-to-end matrix, as a vector of shape (..., d*d)."""
        (point,) = self._total_space._arrays(point=point)
        return matrix_to_vector(stacked_over_points(end_to_end, point))

    @differentiable(tangent_submersion_vjp, wrt=("tangent_vec",))
    def _square_tangent_submersion(self, tangent_vec, base_point):
        r""":math:`d\phi_W(V)` as a vector of shape (..., d*d)."""
        tangent_vec, base_point = self._total_space._arrays(
            tangent_vec=tangent_vec, base_point=base_point
        )
        return matrix_to_vector(
            stacked_over_points(lambda V, W: end_to_end_differential(W, V), tangent_vec, base_point)
        )

    @boundary
    def _square_lift(self, point):
        """Balanced point over X (the center of [R]); shape (..., N, d, d)."""
        (point,) = self._flat(point=point)
        X = vector_to_matrix(point, self.d)
        return stacked_over_points(lambda M: balanced_point(M, self.depth), X, point_ndim=2)

    @differentiable(projection_vjp("vertical_projection", "tangent_vec"), wrt=("tangent_vec",))
    def _square_vertical_projection(self, tangent_vec, base_point):
        r"""Projection onto :math:`\ker d\phi \cap T_W\mathcal{M}` (tangent to the orbit)."""
        tangent_vec, base_point = self._total_space._arrays(
            tangent_vec=tangent_vec, base_point=base_point
        )
        return stacked_over_points(lambda V, W: vertical_projection(W, V), tangent_vec, base_point)

    @differentiable(projection_vjp("horizontal_projection", "tangent_vec"), wrt=("tangent_vec",))
    def _square_horizontal_projection(self, tangent_vec, base_point):
        r"""Projection onto the horizontal space :math:`(\ker d\phi)^\perp` (range of dphi^*)."""
        tangent_vec, base_point = self._total_space._arrays(
            tangent_vec=tangent_vec, base_point=base_point
        )
        return stacked_over_points(
            lambda V, W: horizontal_projection(W, V), tangent_vec, base_point
        )

    @differentiable(horizontal_lift_vjp, wrt=("tangent_vec",))
    def _square_horizontal_lift(self, tangent_vec, base_point=None, fiber_point=None):
        r"""The horizontal H at ``fiber_point`` with :math:`d\phi(H) = Z` ([G] eq. 8.20-8.24).

        Parameters
        ----------
        tangent_vec : array_like, shape (..., d*d)
            Tangent vector downstairs.
        base_point : array_like, shape (..., d*d), optional
            Used (through :meth:`lift`) only if ``fiber_point`` is None.
        fiber_point : array_like, shape (..., N, d, d), optional
        """
        (tangent_vec,) = self._flat(tangent_vec=tangent_vec)
        if fiber_point is None:
            if base_point is None:
                raise TypeError("either base_point or fiber_point must be given")
            (base_point,) = self._flat(base_point=base_point)
            fiber_point = self._square_lift(base_point)
        (fiber_point,) = self._total_space._arrays(fiber_point=fiber_point)
        Z = vector_to_matrix(tangent_vec, self.d)
        batch = np.broadcast_shapes(Z.shape[:-2], fiber_point.shape[:-3])
        Z = np.broadcast_to(Z, batch + Z.shape[-2:]).reshape((-1,) + Z.shape[-2:])
        F = np.broadcast_to(fiber_point, batch + fiber_point.shape[-3:])
        F = F.reshape((-1,) + fiber_point.shape[-3:])
        if F.shape[0] == 0:
            return np.empty(batch + fiber_point.shape[-3:])
        out = BalancedFrame.from_valid(F).horizontal_lift(Z)  # rank and balance checked
        return out.reshape(batch + fiber_point.shape[-3:])

    @boundary
    def is_horizontal(self, tangent_vec, base_point, atol: float = 1e-9):
        """True where the vector equals its horizontal projection (to ``atol``, relative)."""
        V = np.asarray(tangent_vec, dtype=float)
        H = np.asarray(self.horizontal_projection(V, base_point))
        norm = _norm3 if self.widths is None else _norm1
        scale = np.maximum(1.0, norm(V))
        return norm(V - H) <= atol * scale

    @boundary
    def is_vertical(self, tangent_vec, base_point, atol: float = 1e-9):
        """True where the submersion kills the vector (to ``atol``, relative)."""
        V = np.asarray(tangent_vec, dtype=float)
        dX = self.tangent_riemannian_submersion(V, base_point)
        scale = np.maximum(1.0, (_norm3 if self.widths is None else _norm1)(V))
        return np.linalg.norm(dX, axis=-1) <= atol * scale
