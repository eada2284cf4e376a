r"""The balanced manifold M with the Frobenius-induced metric, as a pymanopt manifold.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [pymanopt] J. Townsend, N. Koep and S. Weichwald, *Pymanopt: a Python toolbox for
  optimization on manifolds using automatic differentiation*, JMLR 17 (2016).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from .. import balanced as _bal
from .._checks import as_array, as_matrix, check_square_or_widths
from .._linalg import chain_segment_cuts, chain_segment_signs
from ..network import end_to_end, end_to_end_differential
from ..submanifold_geodesics import (
    DEFAULT_GEODESIC_STEPS,
    balanced_dist,
    balanced_exp,
    balanced_log,
)
from ._submanifold import InducedSubmanifold, LayerList

__all__ = ["BalancedManifold"]


class BalancedManifold(InducedSubmanifold):
    r"""Full-rank balanced weights :math:`\{G_k = W_kW_k^T - W_{k+1}^TW_{k+1} = 0\}` ([G] eq. 4.5).

    Points and tangent vectors are arrays of shape (N, d, d), input layer
    first; the metric is the Frobenius inner product restricted to
    :math:`T_W\mathcal{M}`. :math:`\dim = d^2 + (N-1)d(d-1)/2` ([G] eq. 4.6).
    The end-to-end map :math:`\phi(W) = W_N\cdots W_1` is a Riemannian
    submersion onto :class:`~dln_manifolds.pymanopt.EndToEndMatrices` with the
    same depth ([G] Thm 13).

    Parameters
    ----------
    d : int
        Layer size.
    depth : int
        Number of layers N >= 1.
    seed : int or numpy.random.Generator, optional
        Source of randomness for :meth:`random_point` and :meth:`random_tangent_vector`.
    spread : float, default 4
        Layer condition-number bound of :meth:`random_point` (singular values
        log-uniform in [spread^-1/2, spread^1/2]).
    second_order : bool, default True
        Use the second-order retraction (:func:`~dln_manifolds.balanced_retraction`
        with ``order=2``), so that Hessian slope tests and trust regions see
        the exact second-order model; False uses the cheaper polar restore map.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)` for layers of general widths, every hidden width at
        least r = min(d_0, d_N) (then leave d out; depth, if given, must be
        len(widths) - 1). Points and tangent vectors are then
        ``LayerList`` s (lists of N arrays
        ``W[k-1]`` of shape (d_k, d_{k-1}) with the vector-space operations), the
        dimension is :func:`~dln_manifolds.balanced_dimension`; ``exp``, ``log``,
        ``dist`` and ``pair_mean`` take and return ``LayerList`` s (the geodesics of
        :mod:`~dln_manifolds.submanifold_geodesics` for general widths).

    Notes
    -----
    - projection: SVD frames and one tridiagonal solve along depth per entry,
      O(N d^3) (:func:`~dln_manifolds.balanced_tangent_projection`); the frames
      of the last point seen are cached.
    - Riemannian gradient: projection of the Euclidean gradient (for lifted
      losses :math:`E(\phi(W))` it is already tangent, [G] Thm 1).
    - Riemannian Hessian: :math:`P(H[V]) + \mathfrak{W}_V(P^\perp g)` through the
      Weingarten map :func:`~dln_manifolds.balanced_weingarten`.
    - transport: projection onto the new tangent space.
    - exp: RK4 on the geodesic equation of the induced metric with
      ``geodesic_steps`` steps (:func:`~dln_manifolds.submanifold_geodesics.balanced_exp`);
      log: shooting to relative residual ``geodesic_tol``, ValueError when it
      does not converge (:func:`~dln_manifolds.submanifold_geodesics.balanced_log`);
      dist: norm of log (exact repeats of a pair come from a cache of 256 logs); pair_mean:
      geodesic midpoint. These make the
      derivative-free solvers (NelderMead, ParticleSwarm) run; each log costs
      tens of exps, so they are slow beyond small d.
    """

    _space_name = "balanced manifold"
    #: RK4 steps of :meth:`exp` (and of the exp inverted by :meth:`log`).
    geodesic_steps: int = DEFAULT_GEODESIC_STEPS
    #: Relative shooting residual of :meth:`log`.
    geodesic_tol: float = 1e-10

    def __init__(
        self,
        d: int | None = None,
        depth: int | None = None,
        seed=None,
        spread: float = 4.0,
        second_order=True,
        *,
        widths=None,
    ):
        d, depth, widths = check_square_or_widths(d, depth, widths)
        if widths is not None:
            dim = _bal.balanced_dimension(widths)
            self._widths = widths
            self._depth = len(widths) - 1
            self._d = min(widths[0], widths[-1])
            name = f"Balanced manifold of {self._depth} layers of widths {widths}"
        else:
            self._d, self._depth, self._widths = d, depth, None
            dim = self._d**2 + (self._depth - 1) * self._d * (self._d - 1) // 2
            name = f"Balanced manifold of {self._depth} layers of size {d}x{d}"
        self._rng = np.random.default_rng(seed)
        self._spread = float(spread)
        self._order = 2 if second_order else 1
        self._cache_point = None
        self._cache_frame = None
        super().__init__(name, dim)

    @property
    def widths(self) -> tuple[int, ...]:
        """Widths (d_0, ..., d_N) of the layers."""
        return self._widths or (self._d,) * (self._depth + 1)

    @property
    def typical_dist(self) -> float:
        return float(np.sqrt(self.dim))

    # -- internal -------------------------------------------------------------

    def _frames(self, point):
        """The BalancedFrame of the (validated) point, cached for the last point seen."""
        if self._widths is not None:
            key = [np.array(w, copy=True) for w in point]
            same = self._cache_point is not None and all(
                np.array_equal(a, b) for a, b in zip(point, self._cache_point, strict=True)
            )
            if not same:
                self._cache_frame = _bal.BalancedFrame(list(point))
                self._cache_point = key
            return self._cache_frame
        point = np.asarray(point)
        if self._cache_point is None or not np.array_equal(point, self._cache_point):
            self._cache_frame = _bal.BalancedFrame(point)
            self._cache_point = np.array(point, dtype=np.float64, copy=True)
        return self._cache_frame

    # -- points ---------------------------------------------------------------

    def check_point(self, point, tol: float = 1e-8) -> np.ndarray:
        """Raise ValueError (naming the problem) unless ``point`` is a full-rank balanced point."""
        if self._widths is not None:
            return LayerList(_bal.check_balanced(point, tol=tol, name="point", widths=self._widths))
        point = _bal.check_balanced(
            np.asarray(point) if _is_list(point) else point, tol=tol, name="point"
        )
        if point.shape != (self._depth, self._d, self._d):
            raise ValueError(
                f"point must have shape {(self._depth, self._d, self._d)}, got {point.shape}"
            )
        return point

    def random_point(self):
        r"""Haar frames, layer singular values log-uniform in [spread^-1/2, spread^1/2].

        Every layer is then given a positive determinant by reflections
        :math:`W_p \mapsto D_pW_pD_{p-1}` (:math:`D = \mathrm{diag}(\pm 1, 1, \dots)`,
        which keep the point balanced), so that random points lie in one
        connected component and :meth:`log` joins any two of them
        (NelderMead, ParticleSwarm). For general widths the invariants are the signs of
        the r x r products between consecutive widths equal to r (a layer for square
        layers), made positive the same way.
        """
        if self._widths is not None:
            W = _bal.random_balanced_point(widths=self._widths, seed=self._rng, spread=self._spread)
            signs = np.ones(len(chain_segment_cuts(self._widths)) - 1)
            return LayerList(_with_segment_signs(W, signs, self._widths))
        W = _bal.random_balanced_point(self._d, self._depth, seed=self._rng, spread=self._spread)
        return _with_determinant_signs(W, np.ones(self._depth))

    def random_tangent_vector(self, point):
        """Projected Gaussian vector of unit norm."""
        (point,) = self._arrays(point=point)
        if self._widths is not None:
            Z = self.projection(point, [self._rng.standard_normal(w.shape) for w in point])
            return Z / self.norm(point, Z)
        Z = self.projection(point, self._rng.standard_normal(np.shape(point)))
        return Z / np.linalg.norm(Z)

    # -- metric and projections -----------------------------------------------

    def projection(self, point, vector):
        point, vector = self._arrays(point=point, vector=vector)
        return self._out(_bal.balanced_tangent_projection(point, vector, frame=self._frames(point)))

    def weingarten(self, point, tangent_vector, normal_vector):
        point, tangent_vector, normal_vector = self._arrays(
            point=point, tangent_vector=tangent_vector, normal_vector=normal_vector
        )
        return self._out(
            _bal.balanced_weingarten(
                point, tangent_vector, normal_vector, frame=self._frames(point)
            )
        )

    def _riemannian_hessian(self, point, euclidean_gradient, euclidean_hessian, tangent_vector):
        return self._out(
            _bal.balanced_riemannian_hessian(
                point,
                euclidean_gradient,
                euclidean_hessian,
                tangent_vector,
                frame=self._frames(point),
            )
        )

    def retraction(self, point, tangent_vector):
        """Polar retraction, kept in the connected component of ``point``.

        :func:`~dln_manifolds.balanced_retraction`; a step so large that a
        layer's determinant changes sign (a jump to another component, which
        a small step never makes) is followed by the reflections of
        :meth:`random_point` restoring the signs of ``point``, so that
        :meth:`log` and :meth:`dist` stay defined along an optimizer's iterates.
        """
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        out = _bal.balanced_retraction(point, tangent_vector, order=self._order)
        if self._widths is not None:
            return LayerList(_with_segment_signs(out, chain_segment_signs(point), self._widths))
        return _with_determinant_signs(out, np.linalg.slogdet(point)[0])

    # -- geodesics of the induced metric ----------------------------------------

    def exp(self, point, tangent_vector):
        """Riemannian exponential (RK4 on the geodesic equation, ``geodesic_steps`` steps)."""
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        return self._out(balanced_exp(point, tangent_vector, self.geodesic_steps))

    def _solve_log(self, point_a, point_b):
        return balanced_log(
            point_a, point_b, self.geodesic_steps, tol=self.geodesic_tol, max_iter=30
        )

    def _solve_dist(self, point_a, point_b) -> float:
        return float(balanced_dist(point_a, point_b, self.geodesic_steps, tol=self.geodesic_tol))

    def pair_mean(self, point_a, point_b):
        """Geodesic midpoint :math:`\\exp_a(\\log_a(b)/2)`."""
        return self.exp(point_a, 0.5 * self.log(point_a, point_b))

    # -- the submersion phi onto (M_d, g^N) -------------------------------------

    def end_to_end(self, point):
        """:math:`\\phi(W) = W_N \\cdots W_1`, shape (d, d)."""
        (point,) = self._arrays(point=point)
        return end_to_end(point)

    def end_to_end_differential(self, point, tangent_vector):
        """:math:`d\\phi_W(V)`, shape (d, d)."""
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        return end_to_end_differential(point, tangent_vector)

    def vertical_projection(self, point, vector):
        """Projection onto the tangent space of the orbit :math:`O_X` (ker dphi)."""
        point, vector = self._arrays(point=point, vector=vector)
        return self._out(_bal.vertical_projection(point, vector, frame=self._frames(point)))

    def horizontal_projection(self, point, vector):
        """Projection onto the horizontal space :math:`(\\ker d\\phi)^\\perp`."""
        point, vector = self._arrays(point=point, vector=vector)
        return self._out(_bal.horizontal_projection(point, vector, frame=self._frames(point)))

    def horizontal_lift(self, point, end_to_end_vector):
        """Horizontal H with :math:`d\\phi(H) = Z` (isometric from g^N)."""
        (point,) = self._arrays(point=point)
        if self._widths is None:
            Z = as_matrix(end_to_end_vector, "end_to_end_vector", real=True, d=self._d)
        else:
            shape = (self._widths[-1], self._widths[0])
            Z = as_array(end_to_end_vector, "end_to_end_vector", shape, real=True)
        return self._out(_bal.horizontal_lift(point, Z, frame=self._frames(point)))

    def orthonormal_basis(self, point):
        """([G] Thm 14, corrected) horizontal (d^2, N, d, d) and vertical parts."""
        (point,) = self._arrays(point=point)
        return _bal.balanced_orthonormal_basis(point, frame=self._frames(point))


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple))


def _with_determinant_signs(W: np.ndarray, signs: np.ndarray) -> np.ndarray:
    r"""Give layer p of a balanced W the determinant sign ``signs[p]`` by reflections.

    :math:`W_p \mapsto D_pW_pD_{p-1}` with :math:`D_p = \mathrm{diag}(\pm1, 1, \dots)`
    keeps W balanced; layer p is fixed by :math:`D_p`, which also flips layer p+1,
    processed next. Returns W itself when no sign differs.
    """
    current = np.linalg.slogdet(W)[0]
    if np.array_equal(current, signs):
        return W
    W = W.copy()
    for p in range(W.shape[0]):
        if np.linalg.det(W[p]) * signs[p] < 0:
            W[p, 0, :] = -W[p, 0, :]  # D_p on the left of layer p
            if p + 1 < W.shape[0]:
                W[p + 1, :, 0] = -W[p + 1, :, 0]  # and on the right of layer p + 1
    return W


def _with_segment_signs(W: list, signs: np.ndarray, widths: tuple[int, ...]) -> list:
    r"""Give the r x r segment products of a balanced network of general widths the
    determinant signs ``signs`` (:func:`~dln_manifolds._linalg.chain_segment_signs`).

    A segment ending at a width :math:`d_j = r` is flipped by :math:`D_j` on the left
    of layer j and on the right of layer j + 1 (:math:`D_j = \mathrm{diag}(-1, 1, \dots)`,
    which keeps W balanced), as :func:`_with_determinant_signs` does for square layers.
    Returns W itself when no sign differs.
    """
    if np.array_equal(chain_segment_signs(W), signs):
        return W
    W = [w.copy() for w in W]
    cuts = chain_segment_cuts(widths)
    for s, j in enumerate(cuts[1:]):
        if chain_segment_signs(W)[s] * signs[s] < 0:
            W[j - 1][0, :] = -W[j - 1][0, :]
            if j < len(W):
                W[j][:, 0] = -W[j][:, 0]
    return W
