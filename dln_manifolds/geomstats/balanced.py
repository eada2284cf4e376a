r"""The balanced manifold as a geomstats manifold.

:math:`\mathcal{M} = \{W_{p+1}^T W_{p+1} = W_p W_p^T\}` ([G] eq. 4.5-4.6);
thin layer over :mod:`dln_manifolds.balanced`.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [ON] B. O'Neill, *The fundamental equations of a submersion*, Michigan Math. J. 13
  (1966).
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import geomstats.backend as gs
import numpy as np
from geomstats.geometry.quotient_metric import QuotientMetric

from .._checks import (
    as_layer_sequence,
    as_stack,
    check_count,
    check_positive,
    check_square_or_widths,
)
from ..alignment import horizontal_log, horizontal_parallel_transport, orbit_distance
from ..balanced import (
    BalancedFrame,
    balance_error,
    balanced_dimension,
    balanced_orthonormal_basis,
    balanced_restore,
    balanced_retraction,
    balanced_tangent_projection,
    layer_balance_errors,
    random_balanced_point,
    restore_layers,
    retract_unchecked,
)
from ..submanifold_geodesics import (
    balanced_dist,
    balanced_exp,
    balanced_exp_mesh,
    balanced_geodesic_acceleration,
    balanced_log,
    balanced_parallel_transport,
)
from ._backend import boundary, plain
from ._layout import FlatLayers, LayersConversion, flat_inner_product, lists_for_lists
from .bundle import BalancedBundle, orthogonal_group_action
from .end_to_end import EndToEndMatrices
from .induced import InducedFrobeniusMetric, InducedSubmanifold

__all__ = [
    "BalancedManifold",
    "BalancedMetric",
    "BalancedQuotientMetric",
    "second_fundamental_form",
]


@boundary
def second_fundamental_form(W, V) -> np.ndarray:
    r"""Second fundamental form :math:`\mathrm{II}_W(V, V)` of :math:`\mathcal{M}` (embedded).

    :math:`\mathcal{M}` sits in :math:`\mathbb{R}^{Nd^2}` with the Frobenius product.
    Every curve on :math:`\mathcal{M}` keeps the moments :math:`G(W) = 0`; G
    is quadratic, so differentiating twice gives
    :math:`dG_W(\ddot W) = -2\,Q(\dot W)` with
    :math:`Q(V)_k = V_kV_k^T - V_{k+1}^TV_{k+1}`, and
    :math:`\mathrm{II}_W(V, V)` is the normal vector with that image: thin
    wrapper of :func:`~dln_manifolds.submanifold_geodesics.balanced_geodesic_acceleration`
    (one sine-transform solve along depth in the SVD frames, O(N d^3)).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Full-rank balanced point.
    V : array_like, shape (N, d, d)
        Tangent vector at W.

    Returns
    -------
    ndarray, shape (N, d, d)
        Normal vector; the geodesic equation of :math:`\mathcal{M}` is
        :math:`\ddot W = \mathrm{II}_W(\dot W, \dot W)`.
    """
    W = as_stack(W, "W", real=True)
    V = as_stack(V, "V", depth=W.shape[0], d=W.shape[1], real=True)
    return balanced_geodesic_acceleration(W, V)


class BalancedMetric(InducedFrobeniusMetric):
    r"""Induced Frobenius metric of :math:`\mathcal{M}` with its geodesics.

    ``exp`` integrates the geodesic equation of the embedded manifold,
    :math:`\ddot W = \mathrm{II}_W(\dot W, \dot W)` (:func:`second_fundamental_form`),
    by RK4 with ``n_steps`` steps in the ambient space; the vector field is
    evaluated at the restored point (:func:`~dln_manifolds.balanced.balanced_restore`)
    with the projected velocity, and each step ends with restore and
    projection (standard projection method, order 4 kept). ``log`` inverts it
    by shooting and ``dist`` is the norm of ``log``
    (:func:`~dln_manifolds.submanifold_geodesics.balanced_exp`,
    :func:`~dln_manifolds.submanifold_geodesics.balanced_log`). Through
    geomstats' ``QuotientMetric`` (``BalancedManifold.equip_with_quotient``),
    horizontal geodesics give geodesics of :math:`(\mathfrak{M}_d, g^N)`
    (O'Neill): an independent check of :class:`~dln_manifolds.geomstats.DepthMetric`.

    For a space of general widths (``BalancedManifold(widths=...)``) points and tangent
    vectors are lists of layers or flat vectors (..., D) (:meth:`BalancedManifold.to_layers`),
    and ``exp``, ``log``, ``dist``, ``squared_dist`` and ``parallel_transport`` are the
    general-widths geodesics of :mod:`~dln_manifolds.submanifold_geodesics` (``exp`` and
    ``parallel_transport`` on the whole batch in one call, each network with its own step
    control; ``log``, ``dist`` and ``squared_dist`` one network at a time; results of the
    kind of the first argument: flat vectors for flat input, as geomstats' estimators such
    as ``FrechetMean`` need). Their ``exp`` is
    step-controlled (``n_steps`` base steps refined where the local error asks for it, to
    :data:`~dln_manifolds.submanifold_geodesics.DEFAULT_GEODESIC_RTOL`; module docstring
    of :mod:`~dln_manifolds.submanifold_geodesics`), and so are ``log`` (which inverts
    it) and ``parallel_transport``; derivatives hold the mesh chosen at the point. Under the
    autograd and pytorch backends they are differentiable as for square layers: ``exp``
    in ``tangent_vec``, ``log`` in ``point``, ``dist`` and ``squared_dist`` in both
    points, ``parallel_transport`` in ``tangent_vec``
    (:class:`~dln_manifolds.geomstats.induced.InducedFrobeniusMetric`); the other
    arguments raise :class:`~dln_manifolds.geomstats.NotDifferentiableError`.

    Parameters
    ----------
    space : BalancedManifold
    n_steps : int, default 20
    tol : float, default 1e-10
        Relative shooting residual of ``log``.
    max_iter : int, default 30
    """

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        """Frobenius inner product summed over layers; flat vectors (..., D) (or lists of
        layers) for general widths. Backend operations: differentiable."""
        space = self._space
        if getattr(space, "widths", None) is None:
            return super().inner_product(tangent_vec_a, tangent_vec_b, base_point)
        return flat_inner_product(space.layout, tangent_vec_a, tangent_vec_b, base_point)

    def _general(self) -> bool:
        return getattr(self._space, "widths", None) is not None

    def _on_flat(self, method, names, *args, points: bool = True):
        """General widths: lists of layers joined into flat vectors (gradient tape kept),
        ``method`` (the flat, differentiable one of the parent) called, and the result
        returned as layers when the first argument was a list (``points``)."""
        space = self._space
        flat = []
        for value, name in zip(args, names, strict=True):
            if isinstance(value, (list, tuple)):
                as_layer_sequence(plain(value), name, widths=space.widths, batch=True)
                value = space.layout.join(list(value))
            flat.append(value)
        out = method(*flat)
        if points and isinstance(args[0], (list, tuple)):
            return space.layout.split(out)
        return out

    def exp(self, tangent_vec, base_point):
        """Riemannian exponential (RK4 on the geodesic equation)."""
        if not self._general():
            return super().exp(tangent_vec, base_point)
        names = ("tangent_vec", "base_point")
        return self._on_flat(super().exp, names, tangent_vec, base_point)

    def log(self, point, base_point):
        """Riemannian logarithm (shooting); ValueError if not found."""
        if not self._general():
            return super().log(point, base_point)
        return self._on_flat(super().log, ("point", "base_point"), point, base_point)

    def dist(self, point_a, point_b):
        """Geodesic distance, the norm of ``log(point_b, point_a)`` (inf across components)."""
        if not self._general():
            return super().dist(point_a, point_b)
        names = ("point_a", "point_b")
        return self._on_flat(super().dist, names, point_a, point_b, points=False)

    def parallel_transport(self, tangent_vec, base_point, direction=None, end_point=None):
        """Parallel transport along the geodesic in ``direction`` (or to ``end_point``)."""
        if not self._general():
            return super().parallel_transport(tangent_vec, base_point, direction, end_point)
        if (direction is None) == (end_point is None):
            raise ValueError("give exactly one of direction and end_point")
        if direction is None:
            direction = self.log(end_point, base_point)
        names = ("tangent_vec", "base_point", "direction")
        return self._on_flat(self._transport, names, tangent_vec, base_point, direction)


class BalancedQuotientMetric(QuotientMetric):
    r"""The quotient metric of :math:`\mathcal{M} \to (\mathfrak{M}_d, g^N)` (geomstats' class).

    Points and tangent vectors are those of the quotient, vectors (..., d*d) of
    :class:`~dln_manifolds.geomstats.EndToEndMatrices`, as in geomstats: every method
    lifts the points to the total space (``BalancedBundle.lift``), works there with
    horizontal vectors and pushes the result down with ``tangent_riemannian_submersion``
    or ``riemannian_submersion`` ([G] Thm 13, [ON]).

    - ``inner_product``: geomstats' (Frobenius product of the horizontal lifts);
      ``metric_matrix``: their Gram matrix on the coordinate vectors (hence geomstats'
      ``cometric_matrix`` and ``inner_coproduct``).
    - ``exp``, ``geodesic`` from a tangent vector: geomstats' (the horizontal geodesic
      of :class:`BalancedMetric` upstairs, RK4 with its ``n_steps``, projected).
    - ``log``: :math:`d\phi_W` of :func:`dln_manifolds.horizontal_log` at the lifts (the
      horizontal lift of :math:`\log^{g^N}`: geomstats' total-space log of the aligned
      lift, without shooting upstairs).
    - ``squared_dist``, ``dist``: :func:`dln_manifolds.orbit_distance`, the Frobenius
      norm of that horizontal log (the distance between the orbits); ``inf`` between the
      components of GL(d), as :class:`~dln_manifolds.geomstats.DepthMetric`.
    - ``geodesic`` to an end point: the geodesic from ``log``.
    - ``parallel_transport``: :func:`dln_manifolds.horizontal_parallel_transport` of the
      horizontal lifts (the :math:`g^N` transport lifted at the end of the horizontal
      geodesic), pushed down; with ``end_point``, along the geodesic of ``log``.

    ``log`` inverts ``exp`` to the RK4 error of the horizontal geodesic (measured up to
    1e-6 for random pairs at d, N = (2, 2), (2, 3), (3, 2) with 20 steps); ``log``,
    ``dist`` and ``parallel_transport`` agree with DepthMetric's to rounding.

    General widths (``BalancedManifold(widths=...).equip_with_quotient()``): points are
    the rank-r matrices (d_N, d_0) as vectors (..., d_N * d_0), with the same methods:
    ``log``, ``dist`` and ``parallel_transport`` lift the rectangular :math:`g^N`
    geodesics (:func:`~dln_manifolds.depth_log`, :func:`~dln_manifolds.depth_parallel_transport`,
    one batched call for the whole batch; the horizontal lifts network by network).
    """

    def _lifts(self, **points) -> tuple[np.ndarray, ...]:
        """Validated quotient points (..., d*d), lifted to balanced stacks (..., N, d, d)."""
        bundle = self._fiber_bundle
        return tuple(bundle.lift(p) for p in bundle._flat(**points))

    @boundary
    def metric_matrix(self, base_point=None):
        r"""Gram matrix of the horizontal lifts of the coordinate vectors; (..., d*d, d*d).

        :math:`G_{ij} = \langle \mathrm{lift}_W e_i, \mathrm{lift}_W e_j\rangle_F` at the lift
        W of ``base_point``: the matrix of :math:`g^N` in the coordinates of the vectors
        (d*d,) ([G] Thm 13), from the total space.
        """
        bundle = self._fiber_bundle
        (W,) = self._lifts(base_point=base_point)
        m, n = bundle.matrix_shape
        if bundle.widths is not None:
            H = np.asarray(bundle.horizontal_lift(np.eye(m * n), fiber_point=W[..., None, :]))
            return np.einsum("...ia,...ja->...ij", H, H)
        H = bundle.horizontal_lift(np.eye(m * n), fiber_point=W[..., None, :, :, :])
        return np.einsum("...iabc,...jabc->...ij", H, H)

    @boundary
    def log(self, point, base_point):
        r"""Riemannian log: :math:`d\phi_W(\mathrm{lift}_W \log^{g^N}_X Y)` at the lift W of X.

        Parameters
        ----------
        point, base_point : array_like, shape (..., d*d)
            Broadcast against each other.

        Returns
        -------
        ndarray, shape (..., d*d)

        Raises
        ------
        DifferentComponentsError
            Points in different components of GL(d) (``dist`` is inf there).
        LogConvergenceError
            The log of :math:`g^N` does not converge (never a wrong vector).
        """
        W, T = self._lifts(base_point=base_point, point=point)
        bundle = self._fiber_bundle
        if bundle.widths is not None:  # lists of layers with batch axes: one call
            W, T = np.broadcast_arrays(W, T)
            H = bundle.layout.stacked(
                lambda w, t: horizontal_log(w, t, names=("base_point", "point")), W, T
            )
            return bundle.tangent_riemannian_submersion(H, W)
        H = horizontal_log(W, T, names=("base_point", "point"))
        return self._fiber_bundle.tangent_riemannian_submersion(H, W)

    @boundary
    def dist(self, point_a, point_b):
        """Geodesic distance: the distance between the orbits over the points (inf across
        the components of GL(d)); shape (...)."""
        A, B = self._lifts(point_a=point_a, point_b=point_b)
        bundle = self._fiber_bundle
        if bundle.widths is not None:  # lists of layers with batch axes: one call
            A, B = np.broadcast_arrays(A, B)
            if 0 in A.shape[:-1]:
                return np.empty(A.shape[:-1])
            split = bundle.layout.split
            out = orbit_distance(split(A), split(B), names=("point_a", "point_b"))
            return np.asarray(out)[()] if np.ndim(out) == 0 else out
        out = orbit_distance(A, B, names=("point_a", "point_b"))
        return np.asarray(out)[()] if np.ndim(out) == 0 else out

    def squared_dist(self, point_a, point_b):
        """Squared geodesic distance; ``inf`` across the components of GL(d)."""
        return self.dist(point_a, point_b) ** 2

    def geodesic(self, initial_point, end_point=None, initial_tangent_vec=None):
        """geomstats' geodesic; to an ``end_point`` along the initial velocity :meth:`log`."""
        if end_point is not None and initial_tangent_vec is None:
            initial_tangent_vec, end_point = self.log(end_point, initial_point), None
        return super().geodesic(
            initial_point, end_point=end_point, initial_tangent_vec=initial_tangent_vec
        )

    @boundary
    def parallel_transport(self, tangent_vec, base_point, direction=None, end_point=None):
        r"""Parallel transport of ``tangent_vec`` along the geodesic in ``direction``.

        Lifts ``tangent_vec`` and ``direction`` horizontally at the lift W of
        ``base_point``, transports with
        :func:`~dln_manifolds.horizontal_parallel_transport` (the :math:`g^N` transport,
        lifted at the end of the horizontal geodesic, ``n_steps`` of the total space's
        metric) and pushes the result down there. With ``end_point`` instead of
        ``direction``, the geodesic to ``end_point`` is :meth:`log`.

        Parameters
        ----------
        tangent_vec, base_point : array_like, shape (..., d*d)
        direction : array_like, shape (..., d*d), optional
        end_point : array_like, shape (..., d*d), optional
            Exactly one of ``direction`` and ``end_point``.

        Returns
        -------
        ndarray, shape (..., d*d)
            Tangent vectors at :math:`\exp_X(\text{direction})`.
        """
        if (direction is None) == (end_point is None):
            raise ValueError("give exactly one of direction and end_point")
        if direction is None:
            direction = self.log(end_point, base_point)
        bundle = self._fiber_bundle
        tangent_vec, direction = bundle._flat(tangent_vec=tangent_vec, direction=direction)
        (W,) = self._lifts(base_point=base_point)
        H = bundle.horizontal_lift(direction, fiber_point=W)
        U = bundle.horizontal_lift(tangent_vec, fiber_point=W)
        if bundle.widths is not None:  # lists of layers with batch axes: one call
            W, H, U = np.broadcast_arrays(W, H, U)
            if 0 in W.shape[:-1]:
                return np.empty(W.shape[:-1] + tangent_vec.shape[-1:])
            split, join = bundle.layout.split, bundle.layout.join
            U1, W1 = horizontal_parallel_transport(
                split(W),
                split(H),
                split(U),
                n_steps=self._total_space.metric.n_steps,
                return_end_point=True,
            )
            return bundle.tangent_riemannian_submersion(join(U1), join(W1))
        U1, W1 = horizontal_parallel_transport(
            W, H, U, n_steps=self._total_space.metric.n_steps, return_end_point=True
        )
        return bundle.tangent_riemannian_submersion(U1, W1)


class BalancedManifold(LayersConversion, InducedSubmanifold):
    r"""Full-rank balanced weights :math:`\mathcal{M}` with the induced Frobenius metric.

    :math:`\dim\mathcal{M} = d^2 + (N-1)d(d-1)/2` ([G] eq. 4.6). Points and
    tangent vectors have shape (N, d, d), input layer first. The end-to-end
    map is a Riemannian submersion onto :math:`(\mathfrak{M}_d, g^N)` ([G]
    Thm 13): see :class:`~dln_manifolds.geomstats.BalancedBundle` and
    :meth:`equip_with_quotient`.

    Parameters
    ----------
    d : int
    depth : int
        Number of layers N >= 1.
    equip : bool, default True
    spread : float, default 4
        Layer condition-number bound of :meth:`random_point`, as the
        constructor option of :class:`dln_manifolds.pymanopt.BalancedManifold`
        (:func:`~dln_manifolds.balanced.random_balanced_point`); ``random_point``'s
        ``bound`` scales the points, in geomstats' convention.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)` for layers of general widths, every hidden width at
        least min(d_0, d_N) (then leave d out). Points and tangent vectors are flat
        vectors of shape (..., D), :math:`D = \sum_k d_kd_{k-1}`, as for
        :class:`~dln_manifolds.geomstats.Fiber` (geomstats needs one array shape per
        space): the layers ``W[k-1]`` of shape (d_k, d_{k-1}), input layer first, each
        row-major, concatenated; :meth:`to_layers` and :meth:`from_layers` convert.
        ``dim`` is :func:`~dln_manifolds.balanced_dimension`. Lists of N layers (the
        package's layout for general widths, the same leading batch axes on every
        layer) are accepted too, and methods given lists return lists.
        :meth:`equip_with_quotient` gives the bundle onto the rank-r matrices
        (d_N, d_0) (flat (..., d_N * d_0)), :math:`r = \min(d_0, d_N)`.

    Notes
    -----
    - ``to_tangent``: orthogonal projection onto :math:`T_W\mathcal{M}`
      (:func:`~dln_manifolds.balanced.balanced_tangent_projection`, O(N d^3)).
    - ``projection``: the polar restore map
      :func:`~dln_manifolds.balanced.balanced_restore` (exactly balanced,
      fixes :math:`\mathcal{M}`; *not* the nearest point).
    - ``retraction``: second-order polar retraction (cheap, not a geodesic).
    - metric: :class:`BalancedMetric`, whose ``exp`` integrates the geodesic
      equation numerically, ``log`` shoots and ``dist`` is the norm of ``log``.
    - ``group_action``: :func:`orthogonal_group_action` of :math:`O(d)^{N-1}`,
      whose orbits are the fibers of the submersion.
    """

    def __init__(
        self,
        d: int | None = None,
        depth: int | None = None,
        equip: bool = True,
        spread: float = 4.0,
        *,
        widths=None,
    ):
        spread = float(spread)
        if not np.isfinite(spread) or spread < 1:
            raise ValueError(f"spread must be a finite number >= 1, got {spread}")
        self.spread = spread
        d, depth, widths = check_square_or_widths(d, depth, widths)
        if widths is not None:
            self.widths = widths
            self.depth = len(widths) - 1
            self.d = None
            self.layout = FlatLayers(widths)
            super().__init__(
                dim=balanced_dimension(widths),
                shape=(self.layout.size,),
                intrinsic=False,
                equip=equip,
            )
            # orthogonal_group_action takes one network as a list of layers here
            self.group_action = orthogonal_group_action
            return
        self.widths, self.d, self.depth = None, d, depth
        N = self.depth
        super().__init__(
            dim=self.d**2 + (N - 1) * self.d * (self.d - 1) // 2,
            shape=(N, self.d, self.d),
            intrinsic=False,
            equip=equip,
        )
        self.group_action = orthogonal_group_action

    # -- general widths: flat points (..., D); lists of layers in, lists out -----------

    def _arrays(self, **arrays) -> tuple[np.ndarray, ...]:
        if self.widths is None:
            return super()._arrays(**arrays)
        return tuple(self.layout.check(v, name) for name, v in arrays.items())

    def _over(self, fun, *arrays):
        """The core on the batch in one call (``core_takes_stacks``); with ``widths`` on the
        layers (..., d_k, d_{k-1}) of the flat points (the core's general-widths frames,
        restore and retraction are vectorized over networks)."""
        if self.widths is None:
            return super()._over(fun, *arrays)
        return self.layout.stacked(fun, *arrays)

    @lists_for_lists(points=False)
    def belongs(self, point, atol: float = 1e-9):
        """True where the point is balanced (relative moments <= ``atol``) with full rank."""
        if self.widths is None:
            return super().belongs(point, atol)
        return self._belongs_widths(point, atol)

    @boundary
    def _belongs_widths(self, point, atol):
        """:meth:`belongs` for general widths, vectorized over the batch (as ``_belongs_one``)."""
        point = np.asarray(point, dtype=float)
        if point.shape[-1:] != self.shape:
            return np.zeros(point.shape[:-1], dtype=bool)
        W = self.layout.split(point)
        r = min(self.widths[0], self.widths[-1])
        s = np.linalg.svd(W[0], compute_uv=False)
        full_rank = s[..., r - 1] > s[..., 0] * max(W[0].shape[-2:]) * np.finfo(float).eps
        return (layer_balance_errors(W) <= atol) & full_rank

    @lists_for_lists(points=False)
    def is_tangent(self, vector, base_point=None, atol: float = 1e-9):
        r"""True where :math:`|V - P_W V| \le` ``atol`` :math:`\max(1, |V|)`."""
        return super().is_tangent(vector, base_point, atol)

    @lists_for_lists()
    def to_tangent(self, vector, base_point=None):
        r"""Orthogonal projection :math:`P_W V` onto the tangent space at ``base_point``."""
        return super().to_tangent(vector, base_point)

    @lists_for_lists()
    def projection(self, point):
        """Map nearby points onto the manifold by the restore map (not the nearest point)."""
        return super().projection(point)

    @lists_for_lists()
    def retraction(self, tangent_vec, base_point):
        """Second-order polar retraction (not the exponential map)."""
        return super().retraction(tangent_vec, base_point)

    @lists_for_lists()
    def random_tangent_vec(self, base_point=None, n_samples: int = 1):
        """Projected standard Gaussian vectors at ``base_point``."""
        if self.widths is not None:
            n_samples = check_count(n_samples, "n_samples")
            if base_point is None:
                raise TypeError("base_point is required: the tangent space depends on it")
        return super().random_tangent_vec(base_point, n_samples)

    # balanced_tangent_projection, balanced_restore and balanced_retraction take stacks
    core_takes_stacks = True

    @staticmethod
    def default_metric():
        """Metric to equip the space with if equip is True."""
        return BalancedMetric

    def _belongs_one(self, W, atol):
        """True if ``balance_error(W)`` (relative moments) <= ``atol`` and W_1 is invertible."""
        s = np.linalg.svd(W[0], compute_uv=False)
        return balance_error(W) <= atol and s[-1] > s[0] * self.d * np.finfo(float).eps

    # General widths: lists of layers with batch axes, validated at the adapter's door
    # (shapes, finite, real; the frame still checks rank and balance), to the core's
    # vectorized internals (its checked doors take one network of general widths).

    @staticmethod
    def _tangent_projection(W, V):
        if isinstance(W, list):
            return BalancedFrame.from_valid(W).tangent_projection_unchecked(V)
        return balanced_tangent_projection(W, V)

    @staticmethod
    def _restore(W):
        # polar restore map onto M (exactly balanced; identity on M)
        if isinstance(W, list):
            return restore_layers(W)
        return balanced_restore(W)

    @staticmethod
    def _retract(W, V):
        # second-order polar retraction
        if isinstance(W, list):
            return retract_unchecked(W, V, order=2)
        return balanced_retraction(W, V, order=2)

    # The general-widths exp, its meshes and the transport of the core take a batch of
    # networks (layers with leading batch axes, each network with its own step control):
    # the flat points' layers in one call. The log and dist take one network: a loop.
    def _geodesic_exp(self, W, V, n_steps, meshes=None):
        """``meshes`` (general widths): one mesh of the step-controlled exp per flat point
        of the broadcast batch, held (:meth:`_geodesic_meshes`; derivatives)."""
        if self.widths is None:
            return balanced_exp(W, V, n_steps)
        if meshes is None:
            return self.layout.stacked(lambda W1, V1: balanced_exp(W1, V1, n_steps), W, V)
        W, V = np.broadcast_arrays(W, V)
        meshes = np.asarray(meshes).reshape(W.shape[:-1] + (n_steps,))
        return self.layout.stacked(lambda W1, V1: balanced_exp(W1, V1, n_steps, mesh=meshes), W, V)

    def _geodesic_meshes(self, W, V, n_steps):
        """The meshes (..., n_steps) of the step-controlled exp at the flat points of (W, V)
        (general widths; one call for the batch), else None (uniform steps)."""
        if self.widths is None:
            return None
        W, V = np.broadcast_arrays(W, V)
        if 0 in W.shape[:-1]:
            return np.zeros(W.shape[:-1] + (n_steps,), dtype=int)
        lay = self.layout
        meshes = balanced_exp_mesh(lay.split(W), lay.split(V), n_steps)
        return np.asarray(meshes).reshape(W.shape[:-1] + (n_steps,))

    def _geodesic_log(self, W, T, n_steps, tol, max_iter):
        if self.widths is not None:
            return self.layout.over(
                lambda T1, W1: balanced_log(W1, T1, n_steps, tol=tol, max_iter=max_iter), T, W
            )
        return balanced_log(W, T, n_steps, tol=tol, max_iter=max_iter)

    def _geodesic_dist(self, W, T, n_steps, tol, max_iter):
        if self.widths is not None:
            return self.layout.over(
                lambda W1, T1: float(balanced_dist(W1, T1, n_steps, tol=tol, max_iter=max_iter)),
                W,
                T,
            )
        return balanced_dist(W, T, n_steps, tol=tol, max_iter=max_iter)

    def _geodesic_transport(self, W, V, U, n_steps):
        if self.widths is not None:
            return self.layout.stacked(
                lambda U1, V1, W1: balanced_parallel_transport(W1, V1, U1, n_steps=n_steps),
                U,
                V,
                W,
            )
        return balanced_parallel_transport(W, V, U, n_steps=n_steps)

    @boundary
    def random_point(self, n_samples: int = 1, bound: float = 1.0):
        r"""Random balanced points :math:`W_p = Q_p\Lambda Q_{p-1}^T` with Haar frames.

        Layer singular values are log-uniform in ``bound`` times
        [spread^-1/2, spread^1/2] ([bound/2, 2 bound] with the default spread 4):
        the law of :class:`dln_manifolds.pymanopt.BalancedManifold` with the same
        ``spread``, scaled by ``bound``.

        Returns
        -------
        ndarray, shape (N, d, d) or (n_samples, N, d, d); (D,) or (n_samples, D) for
        general widths
        """
        n_samples = check_count(n_samples, "n_samples")
        check_positive(bound, "bound")
        # seeds from geomstats' generator, so that gs.random.seed makes this reproducible
        u = np.asarray(plain(gs.random.rand(n_samples)))
        seeds = (u * (2**31 - 1)).astype(np.int64).reshape(-1)
        if self.widths is not None:
            pts = np.stack(
                [
                    bound
                    * self.layout.join(
                        random_balanced_point(widths=self.widths, seed=int(s), spread=self.spread)
                    )
                    for s in seeds
                ]
            )
            return pts[0] if n_samples == 1 else pts
        pts = np.stack(
            [
                bound * random_balanced_point(self.d, self.depth, seed=int(s), spread=self.spread)
                for s in seeds
            ]
        )
        return pts[0] if n_samples == 1 else pts

    @boundary
    def orthonormal_basis(self, base_point):
        """[G] Thm 14 basis (sign of eq. 8.21 fixed): (horizontal (d^2, N, d, d), vertical).

        For general widths (horizontal (d_0 d_N, D), vertical) flat, or lists of layers
        (k, d_k, d_{k-1}) for a base point given as a list.
        """
        if self.widths is not None:
            (W,) = self._arrays(base_point=base_point)
            if W.ndim != 1:
                raise ValueError(
                    f"base_point must be one point of shape {self.shape}, got {W.shape}"
                )
            bases = balanced_orthonormal_basis(self.layout.split(W))
            if isinstance(base_point, (list, tuple)):
                return bases
            return tuple(self.layout.join(b) for b in bases)
        (base_point,) = self._arrays(base_point=base_point)
        return balanced_orthonormal_basis(base_point)

    def equip_with_quotient(self):
        r"""Build the fiber bundle and the quotient :math:`(\mathfrak{M}_d, g^N)`.

        Sets ``self.fiber_bundle`` to a :class:`~dln_manifolds.geomstats.BalancedBundle`
        and ``self.quotient`` to an :class:`~dln_manifolds.geomstats.EndToEndMatrices`
        equipped with :class:`BalancedQuotientMetric`, geomstats' ``QuotientMetric``
        (inner products through horizontal lifts; [G] Thm 13 says it equals
        :math:`g^N`; exp through the horizontal geodesic upstairs; log, dist and
        parallel transport through the horizontal lifts of those of :math:`g^N`).

        General widths: the quotient is the space of rank-r matrices (d_N, d_0),
        :math:`r = \min(d_0, d_N)`, as :class:`EndToEndMatrices` ((d_N, d_0), N) (flat
        vectors (..., d_N * d_0)), with the depth metric :math:`g^N` of rectangular
        matrices, computed upstairs: the group :math:`O(d_1) \times \dots \times
        O(d_{N-1})` acts by the same formula, and log, dist and parallel transport
        are those of horizontal geodesics of :math:`\mathcal{M}` (shooting in the
        horizontal lifts, :func:`dln_manifolds.horizontal_log`), one network at a time
        (numpy; not differentiable under the autograd and pytorch backends).

        Returns
        -------
        EndToEndMatrices
            The quotient space.
        """
        self.fiber_bundle = BalancedBundle(self)
        shape = self.d if self.widths is None else (self.widths[-1], self.widths[0])
        self.quotient = EndToEndMatrices(shape, self.depth, equip=False)
        self.quotient.equip_with_metric(BalancedQuotientMetric, total_space=self)
        return self.quotient
