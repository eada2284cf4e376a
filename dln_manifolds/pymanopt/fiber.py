r"""The fiber :math:`\mathcal{F}_X` with the induced Euclidean metric, as a pymanopt manifold.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [KN] G. Kempf and L. Ness, *The length of vectors in representation spaces*, Lecture
  Notes in Math. 732 (1979).
- [pymanopt] J. Townsend, N. Koep and S. Weichwald, *Pymanopt: a Python toolbox for
  optimization on manifolds using automatic differentiation*, JMLR 17 (2016).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .._checks import (
    as_array,
    as_matrix,
    as_stack,
    check_full_rank,
)
from .._linalg import haar_orthogonal, haar_unitary
from ..fiber import (
    FiberNormalSolver,
    check_fiber_depth,
    check_fiber_widths,
    fiber_restore,
    fiber_retraction,
    fiber_weingarten,
    generator_to_tangent,
    group_action,
    ness_gradient,
    tangent_to_generator,
)
from ..network import balanced_point, moments
from ..submanifold_geodesics import DEFAULT_GEODESIC_STEPS, fiber_dist, fiber_exp, fiber_log
from ._submanifold import InducedSubmanifold, LayerList

__all__ = ["Fiber"]

#: Default largest accepted condition number of X (see :class:`Fiber`).
DEFAULT_MAX_CONDITION = 1e6


class Fiber(InducedSubmanifold):
    r"""The fiber :math:`\mathcal{F}_X = \{W : W_N \cdots W_1 = X\}`, X full-rank ([R] section 2).

    Points and tangent vectors are arrays of shape (N, d, d), input layer
    first. The metric is induced by :math:`\langle V, Z\rangle = \mathrm{Re\,tr}(V^*Z)`
    summed over layers (the metric :math:`\iota` of [R]). Real X gives the
    real fiber of dimension (N-1)d^2; complex X the complex fiber of [R],
    of real dimension 2(N-1)d^2.

    **General widths.** With ``widths`` :math:`(d_0, \dots, d_N)` (every hidden width at
    least :math:`r = \min(d_0, d_N)`) and X of shape :math:`(d_N, d_0)` and rank r, points
    and tangent vectors are lists of N arrays, ``W[k]`` of shape :math:`(d_{k+1}, d_k)`
    (pymanopt ``point_layout = N``: a cost function takes the N layers as N arguments,
    ``cost(*W)``, and a Euclidean gradient returns a tuple of N arrays). The dimension
    is :math:`\sum_k d_k d_{k+1} - d_0 d_N` (twice that for complex X); :math:`d\phi_W`
    is onto at every point of the fiber. The group is
    :math:`GL(d_1) \times \dots \times GL(d_{N-1})`. Geodesics (``exp``, ``log``,
    ``dist``, ``pair_mean``) take and return lists of layers (the general-widths paths
    of :mod:`~dln_manifolds.submanifold_geodesics`); :meth:`tangent_to_generator` returns
    the minimal-norm generator, and raises ValueError where the tangent vector is not
    generated (the fiber is a union of orbits, :func:`dln_manifolds.tangent_to_generator`).

    Parameters
    ----------
    X : array_like, shape (d, d), or (d_N, d_0) with ``widths``
        Full-rank end-to-end matrix, real or complex.
    depth : int
        Number of layers N >= 2 (for N = 1 the fiber is the single point X).
    seed : int or numpy.random.Generator, optional
        Randomness for :meth:`random_point` and :meth:`random_tangent_vector`.
    max_condition : float
        Largest accepted condition number of X (default 1e6). At the center
        the normal operator K equals the depth operator :math:`\mathcal{A}_{N,X}`,
        whose condition number is :math:`\mathrm{cond}(X)^{2-2/N}`. The
        projection is backward stable (error :math:`O(\epsilon\,
        \mathrm{cond}(d\phi_W))`, like an SVD of the dense Jacobian, see
        :func:`~dln_manifolds.fiber.fiber_tangent_projection`) up to the
        rank limit cond(X) <= 1/(d eps); the default bound keeps the
        projection error below ~1e-9 at the center, and may be raised.
    method : {"auto", "cholesky", "qr", "cg"}
        Solver of the d^2 normal system (see
        :class:`~dln_manifolds.fiber.FiberNormalSolver`): Cholesky (switching
        to QR when K is ill-conditioned) for d <= 32, preconditioned CG beyond.
    tol : float
        CG relative tolerance.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`: a fiber of general widths, with list points.

    Raises
    ------
    ValueError
        If X is rank-deficient or too ill-conditioned, if a hidden width is below rank X,
        or if ``widths`` disagrees with the shape of X or the depth (each naming the
        argument and the numbers).

    Notes
    -----
    - Projection :math:`P(Z) = Z - d\phi^* K^{-1} d\phi(Z)` (:ref:`math-fiber`); the
      solver at the last few points is cached, so repeated projections at one
      point cost O(N d^3 + d^4) each.
    - Retraction: the second-order retraction
      :func:`~dln_manifolds.fiber.fiber_retraction` with ``X``: layers
      1..N-1 take the step (plus half the normal acceleration), the output
      layer is solved from X, so :math:`|W_N\cdots W_1 - X| \le c\,\epsilon\,
      |W_N|\,|W_{N-1}\cdots W_1|` after every step, without accumulation
      (at balanced points this is :math:`c\,\epsilon |X|`). A step that makes
      a layer (numerically) singular raises a ValueError naming the tangent
      vector.
    - Hessian: :math:`P(\nabla^2 f[V]) + \mathfrak{W}(V, \nabla f)` with the
      Weingarten map :func:`~dln_manifolds.fiber.fiber_weingarten`.
    - Transport: projection onto the new tangent space.
    - ``exp``: RK4 on the geodesic equation of the induced metric with
      ``geodesic_steps`` steps, restored onto X after every step
      (:func:`~dln_manifolds.submanifold_geodesics.fiber_exp`); ``log``:
      shooting to relative residual ``geodesic_tol``, ValueError when it does
      not converge (:func:`~dln_manifolds.submanifold_geodesics.fiber_log`);
      ``dist``: norm of log (exact repeats of a pair come from a cache of 256 logs);
      ``pair_mean``: geodesic midpoint. These make the
      derivative-free solvers (NelderMead, ParticleSwarm) run; each log costs
      tens of exps, so they are slow beyond small d.
    """

    _space_name = "fiber"
    #: RK4 steps of :meth:`exp` (and of the exp inverted by :meth:`log`).
    geodesic_steps: int = DEFAULT_GEODESIC_STEPS
    #: Relative shooting residual of :meth:`log`.
    geodesic_tol: float = 1e-10

    def __init__(
        self,
        X: ArrayLike,
        depth: int,
        seed: int | np.random.Generator | None = None,
        *,
        max_condition: float = DEFAULT_MAX_CONDITION,
        method: str = "auto",
        tol: float = 1e-13,
        widths: Sequence[int] | None = None,
    ):
        N = check_fiber_depth(depth)
        if widths is None:
            X = as_matrix(X)
            s = np.linalg.svd(X, compute_uv=False)
            check_full_rank(s, "X", max_condition=float(max_condition))
        else:
            X = as_array(X, "X", (), real=False, batch=True)
            if X.ndim != 2:
                raise ValueError(f"X must be a matrix of shape (d_N, d_0), got shape {X.shape}")
            widths = check_fiber_widths(X, N, widths, max_condition)
        self._widths = widths
        if method not in ("auto", "cholesky", "qr", "cg"):
            raise ValueError(f"method must be 'auto', 'cholesky', 'qr' or 'cg', got {method!r}")
        self._X = X.copy()
        self._depth = N
        self._d = X.shape[0]
        self._complex = bool(np.iscomplexobj(X))
        self._dtype = X.dtype
        self._rng = np.random.default_rng(seed)
        self._method = method
        self._tol = float(tol)
        if not self._tol > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        self._solvers: OrderedDict[bytes, FiberNormalSolver] = OrderedDict()
        field = "complex" if self._complex else "real"
        if widths is None:
            self._center = balanced_point(X, N)
            dim = (N - 1) * self._d**2 * (2 if self._complex else 1)
            name = f"Fiber over a {field} {self._d}x{self._d} matrix, depth {N}"
            super().__init__(name, dim)
            return
        self._d = None
        self._center = LayerList(balanced_point(X, N, widths=widths))
        dim = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True)) - X.size
        dim *= 2 if self._complex else 1
        name = f"Fiber over a {field} {X.shape[0]}x{X.shape[1]} matrix, widths {widths}"
        super().__init__(name, dim, point_layout=N)

    # -- properties -----------------------------------------------------------
    @property
    def X(self) -> np.ndarray:
        """The end-to-end matrix (a copy)."""
        return self._X.copy()

    @property
    def is_complex(self) -> bool:
        return self._complex

    @property
    def widths(self) -> tuple[int, ...] | None:
        """The widths :math:`(d_0, \\dots, d_N)` (None for a square fiber without ``widths``)."""
        return self._widths

    @property
    def typical_dist(self) -> float:
        """Norm of the center, :math:`\\sqrt{N\\,\\mathrm{tr}\\,\\Sigma^{2/N}}`."""
        return float(np.sqrt(_norm_sq(self._center)))

    # -- helpers --------------------------------------------------------------
    def _point(self, point):
        return self._vector(point, "point")

    def _vector(self, vector, name="tangent_vector"):
        if self._widths is not None:
            return self._arrays(**{name: vector})[0]
        return as_stack(vector, name, depth=self._depth, d=self._d, real=not self._complex)

    def solver(self, point) -> FiberNormalSolver:
        """The (cached) normal-system solver at ``point``."""
        point = self._point(point)
        key = b"".join(layer.tobytes() for layer in point) if self._widths else point.tobytes()
        solver = self._solvers.get(key)
        if solver is None:
            solver = FiberNormalSolver(point, method=self._method, tol=self._tol)
            self._solvers[key] = solver
            if len(self._solvers) > 4:
                self._solvers.popitem(last=False)
        else:
            self._solvers.move_to_end(key)
        return solver

    # -- pymanopt interface ---------------------------------------------------
    def projection(self, point, vector):
        """Orthogonal projection onto :math:`T_W\\mathcal{F}_X = \\ker d\\phi_W`."""
        return self._out(self.solver(point).project(self._vector(vector, "vector")))

    def weingarten(self, point, tangent_vector, normal_vector):
        point, tangent_vector, normal_vector = self._arrays(
            point=point, tangent_vector=tangent_vector, normal_vector=normal_vector
        )
        return self._out(
            fiber_weingarten(point, tangent_vector, normal_vector, solver=self.solver(point))
        )

    def _riemannian_hessian(self, point, euclidean_gradient, euclidean_hessian, tangent_vector):
        solver = self.solver(point)
        return self._out(solver.project(self._vector(euclidean_hessian, "euclidean_hessian"))) + (
            self._out(fiber_weingarten(point, tangent_vector, euclidean_gradient, solver=solver))
        )

    def retraction(self, point, tangent_vector):
        """Second-order retraction keeping the end-to-end matrix X (``fiber_retraction``)."""
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        return self._out(
            fiber_retraction(
                point, tangent_vector, second_order=True, X=self._X, solver=self.solver(point)
            )
        )

    def random_point(self):
        r"""The center acted on by a random group element ([R] Lemma 1).

        Each :math:`A_k = U \,\mathrm{diag}(s)\, V^*` with Haar (orthogonal or
        unitary) U, V and s log-uniform in [1/2, 2], so cond(A_k) <= 4. For
        real X, :math:`\det A_k > 0`: the points lie in the connected
        component of the center (every layer keeps its determinant sign), so
        that :meth:`log` joins any two of them (NelderMead, ParticleSwarm).

        With ``widths`` the fiber is a union of orbits (a hidden layer wider than
        min(d_0, d_N) can change rank along it): the point of the center's orbit is
        then moved by the retraction along a random tangent vector of norm
        ``typical_dist / 4``, which leaves the orbit.
        """
        if self._widths is not None:
            return self._random_point_widths()
        d = self._d
        a = np.empty((self._depth - 1, d, d), dtype=self._X.dtype)
        for k in range(self._depth - 1):
            s = np.exp(self._rng.uniform(np.log(0.5), np.log(2.0), size=d))
            haar = haar_unitary if self._complex else haar_orthogonal
            U, Vh = haar(self._rng, d), haar(self._rng, d)
            if not self._complex and np.linalg.det(U) * np.linalg.det(Vh) < 0:
                U[:, 0] = -U[:, 0]  # stay in the component of the center (det A_k > 0)
            a[k] = (U * s) @ Vh
        return fiber_restore(group_action(a, self._center), self._X)

    def _random_group_element(self, d: int) -> np.ndarray:
        """U diag(s) V^* with Haar U, V, s log-uniform in [1/2, 2] and (real) det > 0."""
        s = np.exp(self._rng.uniform(np.log(0.5), np.log(2.0), size=d))
        haar = haar_unitary if self._complex else haar_orthogonal
        U, Vh = haar(self._rng, d), haar(self._rng, d)
        if not self._complex and np.linalg.det(U) * np.linalg.det(Vh) < 0:
            U[:, 0] = -U[:, 0]  # keep the r x r segment products' signs (connected component)
        return (U * s) @ Vh

    def _random_point_widths(self):
        a = [self._random_group_element(dk) for dk in self._widths[1:-1]]
        W = self._out(fiber_restore(group_action(a, list(self._center)), self._X))
        V = self.random_tangent_vector(W)
        return self.retraction(W, (0.25 * self.typical_dist) * V)

    def _gaussian(self, shape) -> np.ndarray:
        Z = self._rng.standard_normal(shape)
        if self._complex:
            Z = Z + 1j * self._rng.standard_normal(shape)
        return Z

    def random_tangent_vector(self, point):
        """A Gaussian vector projected onto the tangent space, unit norm."""
        if self._widths is not None:
            (point,) = self._arrays(point=point)
            V = self.projection(point, [self._gaussian(layer.shape) for layer in point])
            return V / np.sqrt(_norm_sq(V))
        Z = self._gaussian((self._depth, self._d, self._d))
        V = self.projection(point, Z)
        return V / np.linalg.norm(V)

    # -- geodesics of the induced metric ----------------------------------------
    def exp(self, point, tangent_vector):
        """Riemannian exponential (RK4 on the geodesic equation, ``geodesic_steps`` steps)."""
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        return self._out(fiber_exp(point, tangent_vector, self._X, self.geodesic_steps))

    def _solve_log(self, point_a, point_b):
        return fiber_log(
            point_a, point_b, self._X, self.geodesic_steps, tol=self.geodesic_tol, max_iter=30
        )

    def _solve_dist(self, point_a, point_b) -> float:
        return float(
            fiber_dist(point_a, point_b, self._X, self.geodesic_steps, tol=self.geodesic_tol)
        )

    def pair_mean(self, point_a, point_b):
        """Geodesic midpoint :math:`\\exp_a(\\log_a(b)/2)`."""
        return self.exp(point_a, 0.5 * self.log(point_a, point_b))

    # -- fiber-specific methods -----------------------------------------------
    @property
    def center(self):
        r"""The center :math:`C` of [R] section 1.2, the minimizer of :math:`|W|^2` (a copy).

        A property, as in :class:`dln_manifolds.geomstats.Fiber`. With ``widths``: the
        balanced point ``balanced_point(X, N, widths=widths)``, a list of layers.
        """
        if self._widths is not None:
            return LayerList(layer.copy() for layer in self._center)
        return self._center.copy()

    def moments(self, point):
        """Moments :math:`G_k = W_kW_k^* - W_{k+1}^*W_{k+1}`, shape (N-1, d, d) ([R] eq. 1.10).

        With ``widths``: a list, ``G[k-1]`` of shape (d_k, d_k).
        """
        return moments(self._point(point))

    def _generators(self, a):
        if self._widths is not None:
            return a  # validated by the core (list of (d_k, d_k))
        return as_stack(a, "a", depth=self._depth - 1, d=self._d, real=not self._complex)

    def act(self, a, point):
        """Group action :math:`\\mathbf{A}\\cdot W` of [R] eq. 1.5."""
        point = self._point(point)
        return self._out(group_action(self._generators(a), point))

    def generator_to_tangent(self, point, a):
        """:math:`w_a` of [R] eq. 2.3."""
        point = self._point(point)
        return self._out(generator_to_tangent(point, self._generators(a)))

    def tangent_to_generator(self, point, tangent_vector):
        """The generator a with :math:`w_a` = ``tangent_vector``.

        With ``widths``: the minimal-norm generator, a list ``a[k-1]`` of shape (d_k, d_k);
        ValueError if ``tangent_vector`` is not generated (the fiber is a union of orbits),
        see :func:`dln_manifolds.tangent_to_generator`.
        """
        point, tangent_vector = self._arrays(point=point, tangent_vector=tangent_vector)
        return tangent_to_generator(point, tangent_vector)

    def regularizer_gradient(self, point):
        """Riemannian gradient of :math:`|W|^2`, :math:`P(2W)` ([R] Lemma 5)."""
        point = self._point(point)
        return self._out(self.solver(point).project(2.0 * point))

    def ness_gradient(self, point):
        """Riemannian gradient of :math:`|G|^2`: :math:`4 w_G` ([R] Thm 10: 2 w_G; see docs)."""
        return self._out(ness_gradient(self._point(point)))

    def minimum_norm_sq(self) -> float:
        r"""Kempf-Ness minimum of :math:`|W|^2` on F_X ([R] Thm 1).

        :math:`N\,\mathrm{tr}\,\Sigma^{2/N}`, attained exactly on the orbit of the center;
        with ``widths``, the sum over the r = min(d_0, d_N) singular values of X, attained
        exactly at the balanced points of the fiber.
        """
        s = np.linalg.svd(self._X, compute_uv=False)
        return float(self._depth * np.sum(s ** (2.0 / self._depth)))


def _norm_sq(layers) -> float:
    """Squared Frobenius norm of a stack or of a list of layers."""
    return float(sum(np.sum(np.abs(layer) ** 2) for layer in layers))
