r"""Geodesics of the induced Frobenius metric on the balanced manifold and on the fibers.

Both :math:`\mathcal{M}` (balanced weights, [G] eq. 4.5-4.6) and
:math:`\mathcal{F}_X = \{W_N\cdots W_1 = X\}` ([R] section 2) are submanifolds
of :math:`(\mathbb{R}^{d\times d})^N` cut out by equations :math:`c(W) = 0`,
with the metric induced by :math:`\langle V, Z\rangle = \sum_p \mathrm{tr}(V_p^TZ_p)`.
A curve :math:`\gamma` on such a submanifold is a geodesic iff its
acceleration is normal, and every curve keeps :math:`c(\gamma) = 0`, so
differentiating twice,

.. math::

    \ddot\gamma = dc_\gamma^*(y), \qquad
    dc_\gamma\, dc_\gamma^*(y) = -D^2c_\gamma[\dot\gamma, \dot\gamma]
    \qquad (\text{G})

(the normal space is the range of :math:`dc^*`): one linear solve in the
normal coordinates per evaluation.

- Fiber, :math:`c(W) = \phi(W) - X`: :math:`dc^* = d\phi_W^*`,
  :math:`dc\,dc^* = K` (the d^2 x d^2 normal operator of
  :class:`~dln_manifolds.fiber.FiberNormalSolver`) and
  :math:`D^2\phi[V, V] = \ddot B_N` from the recursion
  :math:`B_k = W_kB_{k-1}`, :math:`\dot B_k = V_kB_{k-1} + W_k\dot B_{k-1}`,
  :math:`\ddot B_k = 2V_k\dot B_{k-1} + W_k\ddot B_{k-1}`, O(N d^3). The flow
  of (G) keeps :math:`\phi(\gamma(t)) = X` exactly, even from a point slightly
  off the fiber (:math:`\ddot\phi = 0`), so no restore is needed inside a step.
- Balanced manifold, :math:`c(W)_k = G_k = W_kW_k^T - W_{k+1}^TW_{k+1}`
  (quadratic): :math:`D^2G[V, V] = 2\,Q(V)`,
  :math:`Q(V)_k = V_kV_k^T - V_{k+1}^TV_{k+1}`, :math:`dG^*(S) = 2 w_S`
  with :math:`(w_S)_p = S_pW_p - W_pS_{p-1}` (:math:`S_0 = S_N = 0`). In the
  SVD frames :math:`W_p = Q_p\Lambda Q_{p-1}^T` (:class:`~dln_manifolds.BalancedFrame`)
  the equation :math:`dG(w_S) = -2Q(V)` decouples into one symmetric
  tridiagonal Toeplitz system along depth per entry (i, j),
  :math:`2(\lambda_i^2 + \lambda_j^2)s_k - 2\lambda_i\lambda_j(s_{k-1} + s_{k+1}) = r_k`,
  diagonalized by the sine transform: eigenvalues
  :math:`2(\lambda_i - \lambda_j)^2 + 8\lambda_i\lambda_j\sin^2(m\pi/2N) > 0`
  (m = 1..N-1), so the solve is well conditioned (O(N^2) at worst) for any
  singular values, repeated ones included. Vectorized over batches of points.

``exp`` integrates (G) with classical RK4 (``n_steps`` steps of size 1/n on
:math:`t \in [0, 1]`) in the ambient space; each step ends with the restore
map of the manifold and the projection of the velocity onto the new tangent
space (standard projection method, order 4 kept, exactly on the manifold and
tangent after every step). The speed :math:`|\dot\gamma|` is conserved to the
integration error.

Step control (balanced manifold, networks given as lists of layers): near the
rank-deficient layers the curvature of :math:`\mathcal{M}` grows like
:math:`1/\lambda_{\min}^2`, and a fixed step is accurate only by luck (measured on a
far pair of widths (3, 5, 4, 2) whose geodesic passes :math:`\lambda_{\min} = 0.09`:
20 steps miss the end point by 6e-3, and 96% of the local error comes from the 5 of
the 20 steps with :math:`\lambda_{\min} < 0.2`; on far pairs with
:math:`\lambda_{\min} \ge 0.4` the error is 1e-5 to 2e-4, spread along the curve). So
``n_steps`` gives the base step :math:`H = 1/n`, and base step i is cut into
:math:`2^{k_i}` equal RK4 substeps, :math:`k_i` the smallest level whose local error,
estimated by step doubling,

.. math::

    e_i(k) = \tfrac{16}{15}\,\big|y^{(k)}_{i+1} - y^{(k+1)}_{i+1}\big|
    \le \mathrm{rtol}\,\max(1, |W|, |V|)\,H
    \qquad (\text{C})

(:math:`y^{(k)}_{i+1}`: the position and velocity after base step i taken as
:math:`2^k` substeps from the accepted :math:`y_i`; the search starts one level below
:math:`k_{i-1}`, at most 6 halvings). The accepted :math:`y^{(k_i)}` continues, so the
result is exactly the RK4 on the mesh :math:`(k_i)`, and the local errors summed over
[0, 1] are at most ``rtol`` :math:`\max(1, |W|, |V|)` (measured against 640 uniform
steps on the pair above, position and velocity: 1.3e-4 with the default ``rtol`` =
1e-4, 0.4 times the bound, 39 substeps, levels up to 3 at :math:`\lambda_{\min}`;
1.1e-5 with 1e-5, 71 substeps, levels up to 4). Where every base step meets (C) at
level 0 the result is the plain RK4 of ``n_steps`` steps. A level-0 trial is first
screened by the embedded third-order estimate :math:`\tfrac{H}{6}|k_4 - f(y_{i+1})|`
(the error of the lower order, :math:`O(H^4)`; measured 1 to 20 times the step-doubling
estimate): where it meets the bound, level 0 is kept at the cost of one more
evaluation of (G), which is the next step's first stage anyway; else step doubling
decides (two more steps at :math:`H/2`). The default keeps the error of benign far
pairs (the plain 20 steps: 1e-5 to 2e-4) and refines where it concentrates (measured
on two far pairs of the generic tests, |log| 4.0 and 5.0, :math:`\lambda_{\min}` 0.48
and 0.37: meshes of 21 and 27 substeps, ``exp`` 2.2 and 3.5 times and ``log`` 1.6 and
1.9 times slower than with the 20 fixed steps; geodesics that meet the screen
everywhere cost one more evaluation). The map
:math:`V \mapsto \exp_W(V)` is smooth for a fixed mesh; the mesh is piecewise
constant in V. Parallel transport takes the mesh chosen on the geodesic alone (linear
in U, the same end point as ``exp``). ``log`` inverts the controlled exp: Newton's
Jacobian columns and iterates share the mesh chosen at the start of a solve, and the
refined solution is solved again on the mesh chosen at it until the two agree, so
``exp(log(T)) = T`` to ``tol`` for the controlled exp. Square stacks and the fiber keep
the uniform ``n_steps``.

Parallel transport (``*_parallel_transport``) along :math:`t \mapsto \exp_W(tV)`:
a tangent field U along :math:`\gamma` is parallel iff :math:`\dot U` is normal;
differentiating :math:`dc_\gamma(U) = 0` gives

.. math::

    \dot U = \mathrm{II}_\gamma(\dot\gamma, U) = dc_\gamma^*(y), \qquad
    dc_\gamma\, dc_\gamma^*(y) = -D^2c_\gamma[\dot\gamma, U]
    \qquad (\text{P})

(equivalently :math:`\dot U = (\tfrac{d}{dt}P_{\gamma})U`), the symmetric bilinear
form whose quadratic form is (G), evaluated exactly by polarization with U scaled
to :math:`|\dot\gamma|`. (P) is integrated together with (G) by the same RK4
steps as ``exp``, U projected onto the tangent space after every step; transport
is an isometry and maps V to :math:`\dot\gamma(1)` to the RK4 error
(measured: inner products kept to ~1e-11 relative with 40 steps, order 4 in
``n_steps``, d, N = (2, 3), (3, 2), :math:`|V| = 0.4|W|`).

``log`` solves :math:`\exp_W(V) = T` for V in the tangent space by shooting:
Newton's method on the coordinates of V in an orthonormal basis of :math:`T_W`, with
backtracking. Each iterate integrates V and its ``dim`` forward-difference
perturbations :math:`V + hb_i` together, as one stack in one RK4 run (the fields are
vectorized over points), which gives the residual and a fresh Jacobian for about 1.4
times the cost of one ``exp`` (d, N = 3, 2; 13 geodesics). Newton starts from the
log of a coarse exponential (a quarter of the steps, at least 5: the same geodesic
to the RK4 error, 4 times cheaper), itself solved from V = 0 (where the Jacobian is
the identity); if Newton fails, by adaptive continuation in the target along the
restore of a path of invertible layers (a geodesic of the orthogonal group times a
segment of positive definite matrices between the polar factors; the restored chord
:math:`\mathrm{restore}((1-s)W + sT)` may cross the singular layers): the step in s
doubles after a success and halves after a failure (to 1/64), each target starting
from the last solution and its Jacobian (an Euler predictor). ``log`` returns the V
whose *computed* ``exp`` (with the same ``n_steps``) hits T to ``tol`` relative to
:math:`\max(1, |W|, |T|)`, or raises ValueError; it never returns an unconverged
vector. The continuation finds the geodesic continued from that path, which is the
minimizing one for points closer than the injectivity radius (not checked). Far
apart points may be joined by several geodesics of similar length, and shooting from
W and from T can end on different ones (measured: 2 random pairs in 100 at d, N = 2,
2 and 3, 2, lengths 4.051 and 4.061, 6.078 and 6.057). So ``log`` solves the coarse
problem from both points; if the two are one geodesic (the reversed final velocity
of one is the other's initial velocity, to 5e-2) it is refined from the point that
comes first in the lexicographic order of the coordinates, else both are refined and
the shorter kept: the same choice for ``log(W, T)`` and ``log(T, W)``. When the
geodesic kept was solved from T, the log at W is Newton's solution from
:math:`-\dot\gamma(1)` of that geodesic. So ``log(T, W)`` follows the geodesic of
``log(W, T)`` back, to the RK4 error, and ``dist`` is symmetric to that error
(measured on 120 far random pairs: 4e-5 relative at most). Real points whose layers
have determinants of different signs lie in different connected components: ``log``
raises ValueError for them at once and ``dist`` is ``inf``. ``dist`` is the norm of
``log``; the geodesic midpoint is :math:`\exp_W(\log_W(T)/2)`.

Near pairs (:math:`|T - W| \le 0.25\max(1, |W|, |T|)`) are first tried without the
finite-difference Jacobians: Broyden's quasi-Newton method from V = 0, whose first
Jacobian is the tangent basis (:math:`d\exp_W(0)` is the identity on tangent vectors)
and whose rank-one updates need only the exp of each iterate. Every step must halve the
residual and the geodesic be at most 1.5 times the chord, else the two-sided shooting
above runs. It meets the same tolerance with the same exp, from W: the same log to
``tol`` (measured: 3 to 4 exps per log for pairs within |T|/5 of random points of widths
(3, 4, 5, 2) on the fiber and (2, 4, 3, 3) on :math:`\mathcal{M}`, 10 and 3.6 times
faster, results within 6e-10 relative of shooting's at ``tol`` 1e-10).

General widths: every function also takes one network of widths
:math:`(d_0, \dots, d_N)` given as a list of N layers ``W[k]`` of shape
:math:`(d_{k+1}, d_k)`, every hidden width at least :math:`r = \min(d_0, d_N)`
(vectors and results are lists of the same shapes; a list of square layers
gives the stack's results to rounding where the step control below keeps the base
steps). ``balanced_exp``, ``balanced_exp_mesh`` and ``balanced_parallel_transport`` also
take a batch of networks, layers (..., d_{k+1}, d_k) with common leading batch axes (the
vectors broadcast against them, as for square stacks (..., N, d, d)): every network gets
its own step control and mesh, and at each base step the networks at the same level
share one batched RK4 run (the results are those of the networks one by one).
``fiber_exp`` and ``fiber_parallel_transport`` take such batches too (X one for all or one
per network): their uniform RK4 is one run for the batch, the restore and the projections
batched (the results are those of the networks one by one to rounding). The state
is packed into one vector (the layers raveled and concatenated) for the same RK4 and
shooting: ``log`` is the two-sided batched Newton above, the Jacobian columns
integrated as one stack (the fields vectorized over the networks).
The continuation path on :math:`\mathcal{F}_X` is the polar path of each layer (for a
layer of rank r below its smaller size, the orthogonal geodesics between its singular
vectors around the polar path of its r x r core, so every layer keeps its rank) mapped
onto the fiber by its restore; on
:math:`\mathcal{M}` it moves the frames :math:`W_p = Q_p\Lambda Q_{p-1}^T` instead
(each :math:`Q_p` along a geodesic of the orthogonal group, :math:`\Lambda`
geometrically), balanced at every point: where a hidden width exceeds r, the restored
layer-wise path jumps (measured: in 6 of 16 random pairs of widths (3, 5, 4, 2) and
(2, 4, 3, 5), a step 50 to 120 times the median one), and the continuation cannot cross
the jump. Continuation along that path can still stop at a fold (a conjugate point of the
continued geodesic) for far random pairs, so on :math:`\mathcal{M}` of general widths
the coarse solve starts from the initial velocity of a discrete geodesic (16 balanced
points relaxed by damped Jacobi sweeps on the discrete energy, coarse to fine; no
integration, about 0.5 s) and continues along that polygon if Newton fails (measured on
6 far random pairs of the generic tests, |log| 3.8 to 5.6: 3 to 6 s per log, where
continuation along the frames path alone raised for 1 of them after 100 s). On
:math:`\mathcal{M}` the second fundamental form is that of
:meth:`~dln_manifolds.BalancedFrame.geodesic_acceleration`: besides
:math:`w_S` (the moments) it has the curvature
:math:`E_k = 2C_k\Lambda^{-1}B_k` of the rank-r layers in the
:math:`\perp\perp` blocks of the frames (:ref:`math-balanced`); on
:math:`\mathcal{F}_X`, (G) holds as above with the
:math:`(d_Nd_0) \times (d_Nd_0)` normal operator K. Points of different
connected components are detected by the determinant signs of the r x r
products of the layers between consecutive widths equal to r (the layers
themselves for square layers).

Accuracy: the map is RK4's, with global error :math:`O(n^{-4})`; with the
default 20 steps and :math:`|V| = 0.4|W|` at d, N = (2, 3), (3, 2) the endpoint
agrees with a tight adaptive integration of the dense constrained equation
to ~1e-8 :math:`|V|`, and ``dist(W, T)`` and ``dist(T, W)`` agree to that
error (1e-10 to 2e-7 relative measured up to :math:`|V| = 0.8|W|`).

Cost: one ``exp`` is 4 ``n_steps`` evaluations of (G), O(N d^3) each
(fiber: plus a dense d^2 x d^2 LU solve of K, O(N d^4 + d^6); the velocity
projection after each step uses one refined dense solve of K, so ``exp``
assumes a moderately conditioned K, as along geodesics near balanced
points). One Newton iterate of ``log`` integrates ``dim + 1`` geodesics in one
batch, dim = :math:`(N-1)d^2` (fiber) or :math:`d^2 + (N-1)d(d-1)/2` (balanced);
one ``log`` takes two coarse solves (5 to 25 iterates each on far pairs, a quarter of
the cost) and 2 to 6 full iterates: meant for small d (measured CPU time per ``log``
of a far random pair, |log| 1 to 2 times |W|: 0.8 s on M at d, N = 3, 2 and 0.2 s on
:math:`F_X` at d, N = 2, 3, against 1.9 s and 0.5 s for the Broyden shooting with
one exp per Jacobian column used before).

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [AMT] P.-A. Absil, R. Mahony and J. Trumpf, *An extrinsic look at the Riemannian
  Hessian*, GSI (2013).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

from ._checks import (
    as_array,
    as_layer_sequence,
    as_matrix,
    as_stack,
    check_count,
    check_full_rank,
    check_hidden_widths,
    check_positive,
    full_rank_mask,
    widths_of_layers,
)
from ._linalg import (
    chain_partial_products,
    chain_product,
    chain_second_derivative,
    chain_segment_cuts,
    chain_segment_signs,
    components_differ,
    conj_transpose,
    pack_layers,
    solve_right,
    unpack_layers,
)
from .balanced import (
    BalancedFrame,
    balanced_restore,
    balanced_tangent_projection,
    check_balanced,
    layer_balance_errors,
    restore_layers,
)
from .fiber import (
    FiberNormalSolver,
    as_fiber_layers,
    fiber_restore,
    project_layers,
    restore_chain_layers,
)
from .flows.integrators import integrate_flow
from .network import end_to_end

__all__ = [
    "DEFAULT_GEODESIC_STEPS",
    "DEFAULT_GEODESIC_RTOL",
    "balanced_exp_mesh",
    "balanced_geodesic_acceleration",
    "balanced_exp",
    "balanced_log",
    "balanced_dist",
    "balanced_geodesic_midpoint",
    "fiber_geodesic_acceleration",
    "fiber_exp",
    "fiber_log",
    "fiber_dist",
    "fiber_geodesic_midpoint",
    "balanced_parallel_transport",
    "fiber_parallel_transport",
]

#: Default number of RK4 steps of ``exp`` on [0, 1].
DEFAULT_GEODESIC_STEPS = 20

_Field = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _checked_steps(n_steps) -> int:
    return check_count(n_steps, "n_steps")


def _checked_rtol(rtol, W) -> float:
    """``rtol`` of the step control: :data:`DEFAULT_GEODESIC_RTOL` if None; general widths
    only (a given ``rtol`` with a square stack raises)."""
    if rtol is None:
        return DEFAULT_GEODESIC_RTOL
    rtol = check_positive(rtol, "rtol")
    if not _is_list(W):
        raise ValueError(
            "rtol: the step control of exp is implemented for networks given as lists of "
            "layers; a square stack (N, d, d) takes n_steps uniform RK4 steps (pass "
            "list(W) for the controlled exp)"
        )
    return rtol


# ---------------------------------------------------------------------------
# The geodesic equation (G)
# ---------------------------------------------------------------------------


def _balanced_acceleration(V: np.ndarray, frame: BalancedFrame) -> np.ndarray:
    """(G) on M for a validated real (..., N, d, d) tangent vector and the frame of W."""
    return BalancedFrame.geodesic_acceleration(frame, V)


def balanced_geodesic_acceleration(
    W: ArrayLike, V: ArrayLike, *, frame: BalancedFrame | None = None
) -> np.ndarray:
    r"""Acceleration of the geodesic of :math:`\mathcal{M}` through W with velocity V.

    The normal vector :math:`w_S` with :math:`dG_W(w_S) = -2Q(V)` (module
    docstring, eq. (G)): the second fundamental form
    :math:`\mathrm{II}_W(V, V)`, so that geodesics solve
    :math:`\ddot W = \mathrm{II}_W(\dot W, \dot W)`. Cost O(N d^3 + N^2 d^2).
    For a list of layers of general widths, plus the curvature
    :math:`E_k = 2C_k\Lambda^{-1}B_k` of the rank-r layers
    (:meth:`~dln_manifolds.BalancedFrame.geodesic_acceleration`).

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Full-rank balanced point (or a stack of points, vectorized).
    V : array_like, same shape as W
        Tangent vector at W.
    frame : BalancedFrame, optional
        The :class:`~dln_manifolds.BalancedFrame` of W.

    Returns
    -------
    ndarray, same shape as W
        A normal vector.
    """
    if _is_list(W):
        if frame is None:
            W, frame = _balanced_layers_point(W, "W")
        else:
            W = check_balanced(W, tol=1e-6, name="W")
            if not isinstance(frame, BalancedFrame) or not frame.matches(W):
                raise ValueError("frame must be the BalancedFrame of W")
        return frame.geodesic_acceleration(_layer_vector(V, "V", frame.widths, real=True))
    W = as_array(W, "W", batch=True)
    if W.ndim < 3 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"W must have shape (..., N, d, d), got shape {W.shape}")
    V = as_array(V, "V", W.shape[-3:], batch=True)
    if V.shape != W.shape:
        raise ValueError(f"V must have the shape of W, {W.shape}, got {V.shape}")
    if frame is None:
        frame = BalancedFrame.from_valid(W)
    elif not isinstance(frame, BalancedFrame) or not frame.matches(W):
        raise ValueError("frame must be the BalancedFrame of W")
    return _balanced_acceleration(V, frame)


def fiber_geodesic_acceleration(
    W: ArrayLike, V: ArrayLike, *, solver: FiberNormalSolver | None = None
) -> np.ndarray:
    r"""Acceleration of the geodesic of :math:`\mathcal{F}_X` through W with velocity V.

    :math:`d\phi_W^*(y)` with :math:`Ky = -D^2\phi_W[V, V]` (module docstring,
    eq. (G)); the fiber is the one through W. Real or complex. Cost: one
    normal solve and O(N d^3).

    Parameters
    ----------
    W : array_like, shape (N, d, d), or list of N layers
        Layers with a full-rank product.
    V : array_like, shape (N, d, d)
        Tangent vector at W.
    solver : FiberNormalSolver, optional
        A solver built at W.

    Returns
    -------
    ndarray, shape (N, d, d)
        A normal vector.
    """
    if _is_list(W):
        W = as_fiber_layers(W)
        V = _layer_vector(V, "V", widths_of_layers(W), real=False)
    else:
        W = as_stack(W)
        V = as_stack(V, "V", depth=W.shape[0], d=W.shape[1])
    if solver is None:
        solver = FiberNormalSolver(W)
    return solver.adjoint(solver.solve(-chain_second_derivative(W, V)))


# ---------------------------------------------------------------------------
# exp: RK4 with restore
# ---------------------------------------------------------------------------


def _rk4(
    W: np.ndarray,
    V: np.ndarray,
    field: _Field,
    settle: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    n_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """RK4 on (W, V)' = (V, field(W, V)) over [0, 1]; ``settle`` restores W and projects V
    after a step. The classical RK4 of :func:`~dln_manifolds.flows.integrate_flow` on the
    state (W, V) stacked along a new first axis."""

    y = _rk4_state(
        np.stack([W, V]),
        lambda y: np.stack([y[1], field(y[0], y[1])]),
        lambda y: np.stack(settle(y[0], y[1])),
        n_steps,
    )
    return y[0], y[1]


def _rk4_state(
    y0: np.ndarray,
    rate: Callable[[np.ndarray], np.ndarray],
    settle: Callable[[np.ndarray], np.ndarray],
    n_steps: int,
) -> np.ndarray:
    """Classical RK4 of :func:`~dln_manifolds.flows.integrate_flow` on a stacked state
    y = (W, V, ...) over [0, 1]; ``settle`` restores the state after each step."""

    def restore(y: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(y)):
            raise ValueError("the geodesic overflows: the tangent vector is too large")
        return settle(y)

    return integrate_flow(
        lambda t, y: rate(y), y0, 1.0, dt=1.0 / n_steps, method="rk4", restore=restore
    ).final


#: Default relative tolerance ``rtol`` of the step control of ``exp`` (balanced manifold,
#: general widths; module docstring).
DEFAULT_GEODESIC_RTOL = 1e-4
#: Most halvings of one base step by the step control (2**6 = 64 substeps).
_MAX_LEVEL = 6


def _rk4_step(y: np.ndarray, rate, settle, h: float, k1) -> tuple[np.ndarray, np.ndarray]:
    """One classical RK4 step of size h from y (``k1`` = rate(y)), then ``settle``; also
    the last stage k4."""
    k2 = rate(y + (0.5 * h) * k1)
    k3 = rate(y + (0.5 * h) * k2)
    k4 = rate(y + h * k3)
    y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    if not np.all(np.isfinite(y)):
        raise ValueError("the geodesic overflows: the tangent vector is too large")
    return settle(y), k4


def _rk4_substeps(y: np.ndarray, rate, settle, h: float, count: int, k1=None) -> np.ndarray:
    """``count`` classical RK4 steps of size h from y, ``settle`` after each step (``k1``:
    rate(y), if known)."""
    for i in range(count):
        y = _rk4_step(y, rate, settle, h, rate(y) if i or k1 is None else k1)[0]
    return y


def _rk4_mesh(y: np.ndarray, rate, settle, levels) -> np.ndarray:
    """RK4 over [0, 1] on the mesh ``levels``: base step i (of size 1/n) cut into
    2**levels[i] equal substeps. ``levels``: one mesh (n,) for the whole state y, or one
    mesh per network (B, n) of states y (k, B, P); at each base step the networks are
    grouped by their level, one batched RK4 run per group."""
    meshes = np.atleast_2d(np.asarray(levels))
    H = 1.0 / meshes.shape[1]
    for i in range(meshes.shape[1]):
        for k in np.unique(meshes[:, i]):
            at = meshes[:, i] == k
            if at.all():
                y = _rk4_substeps(y, rate, settle, H / 2**k, 2**k)
            else:
                y = y.copy()  # never write into the caller's state
                y[:, at] = _rk4_substeps(y[:, at], rate, settle, H / 2**k, 2**k)
    return y


def _network_norms(z: np.ndarray) -> np.ndarray:
    """Frobenius norms (B,) of the rows of states z (k, B, P), network by network."""
    return np.sqrt(np.sum(np.abs(z) ** 2, axis=(0, -1)))


def _controlled_levels(
    y0: np.ndarray, rate, settle, n_steps: int, rtol: float, rows: int = 2, batch=None
) -> tuple[np.ndarray, np.ndarray]:
    r"""The meshes of the step-controlled RK4 (module docstring) of the B networks of the
    states y0 (k, B, P), and the states at t = 1 on them: levels (B, n), states (k, B, P).

    Base step i (size H = 1/n) from the state y_i of a network: its result with
    :math:`2^k` substeps, :math:`y^{(k)}`, has the local error
    :math:`\frac{16}{15}|y^{(k)} - y^{(k+1)}|` (step doubling, RK4 of order 4; a level-0
    trial that meets the bound by the embedded third-order estimate is kept at once) on
    the first ``rows`` rows (position and velocity); the smallest k (from one below the
    previous step's) with error at most ``rtol`` :math:`\max(1, |W_0|, |V_0|)\,H` is kept,
    and :math:`y^{(k)}` continues, so the result is exactly :func:`_rk4_mesh` on the mesh.
    Norms and bounds are those of each network; at each base step the networks are
    grouped by the level of their trial, one batched RK4 run per group (``rate`` and
    ``settle`` map states (k, b, P) of any b networks). ValueError past
    :data:`_MAX_LEVEL` halvings (naming the network's index in ``batch``, the batch
    shape, where there are several networks).
    """
    B = y0.shape[1]
    scale = np.maximum(1.0, np.max([_network_norms(y0[r : r + 1]) for r in range(rows)], axis=0))
    H = 1.0 / n_steps
    bound = rtol * scale * H
    levels = np.zeros((B, n_steps), dtype=int)
    y, k = y0, np.zeros(B, dtype=int)
    k1, known = np.empty_like(y0), np.zeros(B, dtype=bool)  # rate(y), where known
    for i in range(n_steps):
        k = np.maximum(k - 1, 0)
        if not known.all():  # the first stage of every trial from y
            k1[:, ~known] = rate(y[:, ~known])
        # the trials y^(k) of every network, and the rate at them where known (level 0)
        coarse, next_k1 = np.empty_like(y), np.empty_like(y)
        known, active = np.zeros(B, dtype=bool), np.ones(B, dtype=bool)
        for level in np.unique(k):
            at = k == level
            if level == 0:
                trial, k4 = _rk4_step(y[:, at], rate, settle, H, k1[:, at])
                coarse[:, at], next_k1[:, at] = trial, rate(trial)
                known[at] = True
                # screen: the embedded third-order estimate (H/6)|k4 - rate(y_{i+1})| (the
                # O(H^4) error of the lower order; measured 1 to 20 times the step-doubling
                # estimate): below the bound, level 0 is kept without the doubling
                screen = (H / 6.0) * _network_norms(k4[:rows] - next_k1[:rows, at])
                active[np.flatnonzero(at)[screen <= bound[at]]] = False
            else:
                coarse[:, at] = _rk4_substeps(
                    y[:, at], rate, settle, H / 2**level, 2**level, k1[:, at]
                )
        # step doubling, the networks grouped by level (a rejected one joins the next group)
        for level in range(_MAX_LEVEL + 1):
            at = active & (k == level)
            if not at.any():
                continue
            fine = _rk4_substeps(
                y[:, at], rate, settle, H / 2 ** (level + 1), 2 ** (level + 1), k1[:, at]
            )
            err = (16.0 / 15.0) * _network_norms(coarse[:rows, at] - fine[:rows])
            ok = err <= bound[at]
            idx = np.flatnonzero(at)
            active[idx[ok]] = False
            if level == _MAX_LEVEL and not ok.all():
                j = int(np.flatnonzero(~ok)[0])
                index = tuple(int(a) for a in np.unravel_index(idx[j], batch or (B,)))
                where = "" if B == 1 else f" of network {index} of the batch"
                raise ValueError(
                    f"the geodesic{where} needs more than {2**_MAX_LEVEL} x {n_steps} RK4 steps "
                    f"for rtol {rtol:.1e} (local error {err[j]:.1e}): it comes too close to the "
                    "singular layers"
                )
            bad = idx[~ok]
            coarse[:, bad], known[bad], k[bad] = fine[:, ~ok], False, level + 1
        levels[:, i] = k
        y, k1 = coarse, next_k1
    return levels, y


def _balanced_field(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    Wr = balanced_restore(W)
    fr = BalancedFrame.from_valid(Wr)
    return _balanced_acceleration(fr.tangent_projection_unchecked(V), fr)


def _balanced_settle(W: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    W = balanced_restore(W)
    return W, balanced_tangent_projection(W, V)


def _balanced_pair(W, V, name_W: str, name_V: str) -> tuple[np.ndarray, np.ndarray]:
    W = as_array(W, name_W, batch=True)
    if W.ndim < 3 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"{name_W} must have shape (..., N, d, d), got shape {W.shape}")
    V = as_array(V, name_V, W.shape[-3:], batch=True)
    shape = np.broadcast_shapes(W.shape, V.shape)
    return np.broadcast_to(W, shape).copy(), np.broadcast_to(V, shape).copy()


def balanced_exp(
    W: ArrayLike,
    V: ArrayLike,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    *,
    velocity: bool = False,
    rtol: float | None = None,
    mesh: tuple[int, ...] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Riemannian exponential of :math:`\mathcal{M}` with the induced metric (RK4).

    Integrates :math:`\ddot\gamma = \mathrm{II}_\gamma(\dot\gamma, \dot\gamma)`
    (:func:`balanced_geodesic_acceleration`) over [0, 1] from
    :math:`(W, P_WV)`; the field is evaluated at the restored stage point
    with the projected velocity, and every step ends with
    :func:`~dln_manifolds.balanced_restore` and the tangent projection.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Full-rank balanced point(s). A list of layers ``W[k]`` of shape
        (d_{k+1}, d_k) is one network of general widths; layers (..., d_{k+1}, d_k)
        with the same leading batch axes are a batch of networks, each checked and
        integrated with its own step control (one batched RK4 run per level at each base
        step: the results are those of the networks one by one).
    V : array_like, broadcastable with W
        Tangent vector(s) (their normal part is removed first); for lists, a list of N
        layers whose batch axes broadcast with W's.
    n_steps : int
        RK4 steps (square stacks); for a list of layers, the base steps of size 1/n of
        the step-controlled RK4, each cut into :math:`2^k` substeps as the local error
        requires (module docstring).
    velocity : bool
        Also return the final velocity :math:`\dot\gamma(1)`.
    rtol : float, optional
        Lists of layers: relative tolerance of the step control, the local errors summed
        over [0, 1] at most ``rtol`` :math:`\max(1, |W|, |V|)`; default
        :data:`DEFAULT_GEODESIC_RTOL`. Square stacks: not accepted (uniform steps).
    mesh : tuple of int, or ndarray of int of shape (..., n_steps), optional
        Lists of layers: the levels :math:`(k_0, \dots, k_{n-1})` of the base steps
        (:func:`balanced_exp_mesh`), held instead of chosen (``rtol`` unused): the RK4
        on that mesh, a smooth map of V (derivatives of the controlled exp by finite
        differences hold the mesh of the point where they are taken). For a batch, one
        tuple for every network or one mesh per network (an integer array whose batch
        axes broadcast to the networks', as :func:`balanced_exp_mesh` returns).

    Returns
    -------
    ndarray, shape of the broadcast of W and V, or list of N layers
        :math:`\gamma(1)`, exactly balanced; with ``velocity``, the pair
        :math:`(\gamma(1), \dot\gamma(1))`. For lists, layers (..., d_{k+1}, d_k) with
        the broadcast batch axes of W and V.

    Raises
    ------
    ValueError
        If a point is not balanced or full rank (for a batch of networks, the message
        names the first such network's batch index), or a geodesic leaves the
        full-rank balanced weights (overflow, singular layers; with the step control, a
        base step needing more than 64 substeps).

    References
    ----------
    - [G] G. Menon, *The geometry of the deep linear network* (the balanced manifold,
      eq. 4.5-4.6).
    """
    n_steps, rtol = _checked_steps(n_steps), _checked_rtol(rtol, W)
    if _is_list(W):
        mesh = _checked_mesh(mesh, n_steps)
        return _balanced_exp_layers(W, V, n_steps, velocity, rtol, mesh)
    W, V = _balanced_pair(W, V, "W", "V")
    if mesh is not None:
        raise ValueError("mesh: only for networks given as lists of layers")
    V = balanced_tangent_projection(W, V)
    W1, V1 = _rk4(W, V, _balanced_field, _balanced_settle, n_steps)
    return (W1, V1) if velocity else W1


def _fiber_factors(W: np.ndarray):
    """Partial products A_{p+1}, B_{p-1}, their adjoints and the dense K of the fiber at W."""
    N, d, _ = W.shape
    A = [np.eye(d, dtype=W.dtype)]  # A[j] = W_N ... W_{N-j+1}
    for k in range(N - 1, 0, -1):
        A.append(A[-1] @ W[k])
    Aa = np.stack(A[::-1])  # layer p: A_{p+1}
    Bl = [np.eye(d, dtype=W.dtype)]
    for k in range(N - 1):
        Bl.append(W[k] @ Bl[-1])
    Bb = np.stack(Bl)  # layer p: B_{p-1}
    Ah, Bh = conj_transpose(Aa), conj_transpose(Bb)
    K = np.einsum("pac,peb->abce", Aa @ Ah, Bh @ Bb).reshape(d * d, d * d)
    return Aa, Bb, Ah, Bh, K


def _fiber_field(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """(G) on the fiber through W, with a dense LU solve of K (RK4 stages)."""
    d = W.shape[-1]
    _, _, Ah, Bh, K = _fiber_factors(W)
    r = -chain_second_derivative(W, V)
    y = np.linalg.solve(K, r.reshape(-1)).reshape(d, d)
    return Ah @ y @ Bh


def _fiber_settler(X: np.ndarray):
    def settle(W: np.ndarray, *vectors: np.ndarray) -> tuple[np.ndarray, ...]:
        # restore onto X, then project each vector with one refined dense solve
        # (semi-normal equations corrected once, as in FiberNormalSolver's Cholesky path)
        W = fiber_restore(W, X)
        d = W.shape[-1]
        Aa, Bb, Ah, Bh, K = _fiber_factors(W)
        out = []
        for V in vectors:
            for _ in range(2):
                y = np.linalg.solve(K, np.sum(Aa @ V @ Bb, axis=0).reshape(-1)).reshape(d, d)
                V = V - Ah @ y @ Bh
            out.append(V)
        return (W, *out)

    return settle


def _fiber_target(W: np.ndarray, X) -> np.ndarray:
    if X is None:
        return end_to_end(W)
    X = as_matrix(X)
    if X.shape[0] != W.shape[1]:
        raise ValueError(f"X must have shape {W.shape[1:]}, got {X.shape}")
    return X


def fiber_exp(
    W: ArrayLike,
    V: ArrayLike,
    X: ArrayLike | None = None,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    *,
    velocity: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Riemannian exponential of :math:`\mathcal{F}_X` with the induced metric (RK4).

    Integrates eq. (G) of the module docstring over [0, 1] from
    :math:`(W, P_WV)`; every step ends with
    :func:`~dln_manifolds.fiber_restore` (onto X) and the tangent projection.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or list of N layers
        Point of the fiber (layers with a full-rank product; real or complex). A list of
        layers ``W[k]`` of shape (d_{k+1}, d_k) is one network of general widths; layers
        (..., d_{k+1}, d_k) with the same leading batch axes are a batch of networks, each
        checked and on its own fiber, all integrated in one batched RK4 run (the results
        are those of the networks one by one, to rounding).
    V : array_like, shape (N, d, d), or list of N layers
        Tangent vector at W (its normal part is removed first); for lists, layers whose
        batch axes broadcast with W's.
    X : array_like, shape (d, d) (or (d_N, d_0) for lists), optional
        The end-to-end matrix to keep (default: the product of W, network by network);
        for a batch of networks, one X for all or one per network (..., d_N, d_0), its
        batch axes broadcast with W's.
    n_steps : int
        RK4 steps.
    velocity : bool
        Also return the final velocity.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N layers
        :math:`\gamma(1)` (or the pair :math:`(\gamma(1), \dot\gamma(1))`). For lists,
        layers (..., d_{k+1}, d_k) with the broadcast batch axes of W, V (and X).

    Raises
    ------
    ValueError
        On bad shapes, or if the end-to-end matrix of a network is rank-deficient (for a
        batch, the message names the first such network's batch index), or if the
        geodesic makes a layer singular or overflows (the tangent vector is too large).

    References
    ----------
    - [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
      network* (the fiber, section 2).
    - [G] G. Menon, *The geometry of the deep linear network*.
    """
    n_steps = _checked_steps(n_steps)
    if _is_list(W):
        return _fiber_exp_layers(W, V, X, n_steps, velocity)
    W = as_stack(W)
    V = as_stack(V, "V", depth=W.shape[0], d=W.shape[1])
    X = _fiber_target(W, X)
    V = FiberNormalSolver(W).project(V)
    W1, V1 = _rk4(W, V, _fiber_field, _fiber_settler(X), n_steps)
    return (W1, V1) if velocity else W1


# ---------------------------------------------------------------------------
# parallel transport: dU/dt = II(gamma', U), RK4 with restore
# ---------------------------------------------------------------------------


def _polarized(q: Callable[[np.ndarray], np.ndarray], V: np.ndarray, U: np.ndarray):
    r""":math:`\mathrm{II}(V, U)` from the quadratic map :math:`q(Z) = \mathrm{II}(Z, Z)`.

    Polarization :math:`(q(V + cU) - q(V - cU)) / 4c`, exact for the symmetric
    bilinear II, with :math:`c = |V| / |U|` per point so that both terms are of
    the same size (no cancellation beyond rounding of :math:`|V|^2`).
    """
    axes = (-3, -2, -1)
    nv = np.sqrt(np.sum(np.abs(V) ** 2, axis=axes))
    nu = np.sqrt(np.sum(np.abs(U) ** 2, axis=axes))
    ok = (nv > 0) & (nu > 0)
    c = np.where(ok, nv / np.where(ok, nu, 1.0), 1.0)[..., None, None, None]
    Us = c * U
    return (q(V + Us) - q(V - Us)) / (4.0 * c)


def _balanced_transport_rate(y: np.ndarray) -> np.ndarray:
    """(W, V, U)' = (V, II(V, V), II(V, U)) on M, at the restored point, projected vectors."""
    W, V, U = y
    frame = BalancedFrame.from_valid(balanced_restore(W))
    Vp = frame.tangent_projection_unchecked(V)
    Up = frame.tangent_projection_unchecked(U)

    def q(Z):
        return _balanced_acceleration(Z, frame)

    return np.stack([V, q(Vp), _polarized(q, Vp, Up)])


def _balanced_transport_settle(y: np.ndarray) -> np.ndarray:
    W = balanced_restore(y[0])
    frame = BalancedFrame.from_valid(W)
    return np.stack([W, *(frame.tangent_projection_unchecked(Z) for Z in y[1:])])


def balanced_parallel_transport(
    W: ArrayLike,
    V: ArrayLike,
    U: ArrayLike,
    *,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    rtol: float | None = None,
) -> np.ndarray:
    r"""Parallel transport on :math:`\mathcal{M}` (induced metric) along :math:`\exp_W(tV)`.

    A tangent field U(t) along a curve :math:`\gamma` of a submanifold is
    parallel iff its ambient derivative is normal; differentiating
    :math:`dG_\gamma(U) = 0` gives :math:`\dot U = \mathrm{II}_\gamma(\dot\gamma, U)`,
    the symmetric bilinear form whose quadratic form is the geodesic
    acceleration (module docstring, eq. (G); here by polarization, exact).
    RK4 on :math:`(\gamma, \dot\gamma, U)` with the ``n_steps`` steps of
    :func:`balanced_exp` (same stages, same end point); each step ends with
    :func:`~dln_manifolds.balanced_restore` and the tangent projection of the
    velocity and of U. Transport is an isometry and maps V to
    :math:`\dot\gamma(1)`, both to the RK4 error :math:`O(n^{-4})`.
    Vectorized over batches of points.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Full-rank balanced point(s); a list of layers with leading batch axes
        (..., d_{k+1}, d_k) is a batch of networks of general widths
        (:func:`balanced_exp`).
    V : array_like, broadcastable with W
        Initial velocity of the geodesic (its normal part is removed first); for lists,
        layers whose batch axes broadcast with W's.
    U : array_like, broadcastable with W
        Tangent vector(s) at W to transport (normal part removed first); as V.
    n_steps : int
        RK4 steps on [0, 1] (for a list of layers, base steps as in :func:`balanced_exp`).
    rtol : float, optional
        As in :func:`balanced_exp`: the mesh is the one of ``balanced_exp(W, V)``, chosen
        on the geodesic alone (the transport is linear in U), U integrated on it (for a
        batch, network by network).

    Returns
    -------
    ndarray, shape of the broadcast of W, V and U, or list of N layers
        Tangent vectors at :math:`\exp_W(V)` (``balanced_exp(W, V, n_steps, rtol=rtol)``);
        for lists, layers with the broadcast batch axes of W, V and U.

    Raises
    ------
    ValueError
        As :func:`balanced_exp`.

    References
    ----------
    - [G] G. Menon, *The geometry of the deep linear network* (the balanced manifold,
      eq. 4.5-4.6).
    """
    n_steps, rtol = _checked_steps(n_steps), _checked_rtol(rtol, W)
    if _is_list(W):
        return _balanced_transport_layers(W, V, U, n_steps, rtol)
    W, V = _balanced_pair(W, V, "W", "V")
    U = as_array(U, "U", W.shape[-3:], batch=True)
    shape = np.broadcast_shapes(W.shape, U.shape)
    W, V, U = (np.broadcast_to(A, shape) for A in (W, V, U))
    V, U = balanced_tangent_projection(W, V), balanced_tangent_projection(W, U)
    y0 = np.stack([W, V, U])
    return _rk4_state(y0, _balanced_transport_rate, _balanced_transport_settle, n_steps)[2]


def _fiber_transport_rate(y: np.ndarray) -> np.ndarray:
    """(W, V, U)' = (V, II(V, V), II(V, U)) on the fiber through W: one LU of K."""
    W, V, U = y
    d = W.shape[-1]
    _, _, Ah, Bh, K = _fiber_factors(W)
    lu = scipy.linalg.lu_factor(K)

    def q(Z):
        r = -chain_second_derivative(W, Z)
        return Ah @ scipy.linalg.lu_solve(lu, r.reshape(-1)).reshape(d, d) @ Bh

    return np.stack([V, q(V), _polarized(q, V, U)])


def fiber_parallel_transport(
    W: ArrayLike,
    V: ArrayLike,
    U: ArrayLike,
    *,
    X: ArrayLike | None = None,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
) -> np.ndarray:
    r"""Parallel transport on :math:`\mathcal{F}_X` (induced metric) along :math:`\exp_W(tV)`.

    :math:`\dot U = \mathrm{II}_\gamma(\dot\gamma, U) = d\phi_\gamma^*(y)`,
    :math:`Ky = -D^2\phi_\gamma[\dot\gamma, U]` (differentiate
    :math:`d\phi_\gamma(U) = 0`; the bilinear :math:`D^2\phi` by polarization
    of :func:`~dln_manifolds._linalg`'s quadratic recursion, module docstring),
    integrated with the geodesic by the RK4 of :func:`fiber_exp` (same steps);
    each step ends with :func:`~dln_manifolds.fiber_restore` (onto X) and the
    tangent projection of the velocity and of U. An isometry mapping V to
    :math:`\dot\gamma(1)`, to the RK4 error :math:`O(n^{-4})`. Real or complex.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or list of N layers
        Point of the fiber (layers with a full-rank product); a list of layers with
        leading batch axes (..., d_{k+1}, d_k) is a batch of networks of general widths
        (:func:`fiber_exp`).
    V : array_like, shape (N, d, d), or list of N layers
        Initial velocity of the geodesic (its normal part is removed first); for lists,
        layers whose batch axes broadcast with W's.
    U : array_like, shape (N, d, d), or list of N layers
        Tangent vector at W to transport (normal part removed first); as V.
    X : array_like, shape (d, d) (or (d_N, d_0) for lists), optional
        The end-to-end matrix to keep (default: the product of W); for a batch, as in
        :func:`fiber_exp`.
    n_steps : int
        RK4 steps on [0, 1].

    Returns
    -------
    ndarray, shape (N, d, d), or list of N layers
        A tangent vector at :math:`\exp_W(V)` (``fiber_exp(W, V, X, n_steps)``); for
        lists, layers with the broadcast batch axes of W, V, U (and X).

    Raises
    ------
    ValueError
        As :func:`fiber_exp`.

    References
    ----------
    - [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
      network* (the fiber, section 2).
    - [G] G. Menon, *The geometry of the deep linear network*.
    """
    n_steps = _checked_steps(n_steps)
    if _is_list(W):
        return _fiber_transport_layers(W, V, U, X, n_steps)
    W = as_stack(W)
    V = as_stack(V, "V", depth=W.shape[0], d=W.shape[1])
    U = as_stack(U, "U", depth=W.shape[0], d=W.shape[1])
    X = _fiber_target(W, X)
    solver = FiberNormalSolver(W)
    V, U = solver.project(V), solver.project(U)
    settle = _fiber_settler(X)
    y0 = np.stack(np.broadcast_arrays(W, V, U))
    return _rk4_state(y0, _fiber_transport_rate, lambda y: np.stack(settle(*y)), n_steps)[2]


# ---------------------------------------------------------------------------
# log: shooting
# ---------------------------------------------------------------------------


def _to_real(Z: np.ndarray) -> np.ndarray:
    Z = np.asarray(Z)
    if np.iscomplexobj(Z):
        return np.concatenate([Z.real.ravel(), Z.imag.ravel()])
    return Z.ravel()


def _from_real(z: np.ndarray, shape: tuple[int, ...], complex_: bool) -> np.ndarray:
    if complex_:
        m = z.size // 2
        return (z[:m] + 1j * z[m:]).reshape(shape)
    return z.reshape(shape)


def _to_real_rows(Z: np.ndarray) -> np.ndarray:
    """:func:`_to_real` of each point of a stack (B, ...): an array (B, m)."""
    Z = np.asarray(Z).reshape(Z.shape[0], -1)
    if np.iscomplexobj(Z):
        return np.concatenate([Z.real, Z.imag], axis=1)
    return Z


def _from_real_rows(z: np.ndarray, shape: tuple[int, ...], complex_: bool) -> np.ndarray:
    """:func:`_from_real` of each row of z (B, m): a stack (B, *shape)."""
    if complex_:
        m = z.shape[1] // 2
        return (z[:, :m] + 1j * z[:, m:]).reshape((z.shape[0],) + shape)
    return z.reshape((z.shape[0],) + shape)


def _tangent_basis(project_all: Callable[[np.ndarray], np.ndarray], m: int, dim: int):
    """Orthonormal basis (m, dim) of the range of the projector given on the unit vectors."""
    P = project_all(np.eye(m))  # rows: P e_i
    P = 0.5 * (P + P.T)
    w, U = np.linalg.eigh(P)
    keep = w > 0.5
    if int(np.count_nonzero(keep)) != dim:
        raise ValueError(
            f"the tangent projection at the base point has rank {int(np.count_nonzero(keep))}, "
            f"expected {dim}: the base point is degenerate"
        )
    return U[:, keep]


#: Relative tolerance of the intermediate targets of the continuation (the last target, T,
#: is solved to ``tol``): a predictor for the next target needs no more.
_CONTINUATION_TOL = 1e-6
#: Smallest continuation step (fraction of the path) before ``log`` gives up.
_MIN_STEP = 1.0 / 64
#: Most targets one continuation solves for (successes and failures) before giving up.
_MAX_SOLVES = 24
#: Newton iterations for a continuation target other than the last one.
_QUICK_ITER = 8


class _Newton:
    r"""Newton's method on :math:`F(c) = \exp(\sum_i c_i b_i) - \text{target}` in a tangent basis.

    Every iterate costs one call of the batched exponential on ``dim + 1`` vectors: c and
    its forward-difference perturbations :math:`c + h e_i`, integrated together (one RK4
    on a stack), which gives the residual and a fresh finite-difference Jacobian at once.
    A step that does not decrease :math:`|F|` is halved (residual-only calls). The last
    exponential value and Jacobian are kept, so that the next target of a continuation
    starts from them with no new integration (its first step is the Euler predictor).
    """

    def __init__(self, exp_batch, basis: np.ndarray, shape: tuple[int, ...], complex_: bool):
        self.exp_batch = exp_batch
        self.basis = basis
        self.shape = shape
        self.complex_ = complex_
        self.c = np.zeros(basis.shape[1])
        self.e = None  # real exp value at c
        self.J = None  # Jacobian of exp at c

    def vectors(self, C: np.ndarray) -> np.ndarray:
        return _from_real_rows(C @ self.basis.T, self.shape, self.complex_)

    def evaluate(self, c: np.ndarray, jacobian: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """exp at c (real vector) and, with ``jacobian``, its forward-difference Jacobian."""
        if jacobian:
            h = 1e-7 * max(1.0, float(np.linalg.norm(c)))
            C = np.vstack([c, c + h * np.eye(c.size)])
        else:
            C = c[None]
        with np.errstate(all="ignore"):
            E = _to_real_rows(self.exp_batch(self.vectors(C)))
        if not np.all(np.isfinite(E)):
            raise ValueError("the geodesic overflows")
        J = ((E[1:] - E[0]) / h).T if jacobian else None
        return E[0], J

    def start(self, c: np.ndarray) -> bool:
        try:
            self.e, self.J = self.evaluate(c, True)
        except ValueError:
            return False
        self.c = c
        return True

    def solve(self, target: np.ndarray, atol: float, max_iter: int) -> bool:
        """Move (c, e, J) to a solution of exp(c) = target within ``atol``; False if none."""
        c, e, J = self.c, self.e, self.J
        r = e - target
        nr = float(np.linalg.norm(r))
        for _ in range(max_iter):
            if nr <= atol:
                self.c, self.e, self.J = c, e, J
                return True
            dc = np.linalg.lstsq(J, -r, rcond=None)[0]
            t = 1.0
            for _ in range(6):
                c_new = c + t * dc
                try:
                    e_new, J_new = self.evaluate(c_new, t == 1.0)
                except ValueError:
                    e_new = None
                if e_new is not None:
                    nr_new = float(np.linalg.norm(e_new - target))
                    if nr_new < (1.0 - 1e-4 * t) * nr:
                        break
                e_new = None
                t *= 0.5
            if e_new is None:
                return False
            if J_new is None:  # a shortened step: the Jacobian at the accepted point
                try:
                    e_new, J_new = self.evaluate(c_new, True)
                except ValueError:
                    return False
            c, e, J = c_new, e_new, J_new
            r = e - target
            nr = float(np.linalg.norm(r))
        if nr <= atol:
            self.c, self.e, self.J = c, e, J
            return True
        return False


def _shoot(
    W: np.ndarray,
    T: np.ndarray,
    exp_fn: Callable[[np.ndarray], np.ndarray],
    basis: np.ndarray,
    path: Callable[[float], np.ndarray],
    tol: float,
    max_iter: int,
    *,
    exp_batch: Callable[[np.ndarray], np.ndarray],
    guess: np.ndarray | None = None,
) -> np.ndarray:
    """Tangent vector V (spanned by ``basis``) with exp_fn(V) = T; ValueError if not found.

    ``exp_batch`` (exp_fn on a stack of vectors, one batched integration): Newton with
    batched finite-difference Jacobians (:class:`_Newton`), from ``guess`` if given, then
    adaptive continuation along ``path`` (s in [0, 1], path(1) = T): the step in s
    doubles after a success and halves after a failure, down to :data:`_MIN_STEP`.
    The result is checked with ``exp_fn`` itself.
    """
    complex_ = bool(np.iscomplexobj(W) or np.iscomplexobj(T))
    shape = W.shape
    scale = max(1.0, float(np.linalg.norm(W)), float(np.linalg.norm(T)))
    atol = tol * scale
    t_real = _to_real(T)

    def vector(c):
        return _from_real(basis @ c, shape, complex_)

    def verified(c) -> np.ndarray | None:
        if c is None:
            return None
        V = vector(c)
        try:
            ok = float(np.linalg.norm(_to_real(exp_fn(V)) - t_real)) <= atol
        except ValueError:
            return None
        return V if ok else None

    V = _continuation(
        W, T, exp_batch, basis, path, atol, max_iter, guess, verified, complex_, scale
    )
    if V is not None:
        return V
    raise ValueError(
        "log did not converge: no geodesic from the base point to the target point was found "
        f"by shooting (Newton with continuation, tol {tol:.1e}); the points may be "
        "too far apart or separated by a singular layer"
    )


def _continuation(W, T, exp_batch, basis, path, atol, max_iter, guess, verified, complex_, scale):
    newton = _Newton(exp_batch, basis, W.shape, complex_)
    t_real = _to_real(T)
    if guess is not None:
        c = basis.T @ _to_real(guess)
        if newton.start(c) and newton.solve(t_real, 0.5 * atol, max_iter):
            V = verified(newton.c)
            if V is not None:
                return V
        newton = _Newton(exp_batch, basis, W.shape, complex_)
    # at c = 0: exp = W, and its differential is the identity on tangent vectors (the
    # restore maps fix the manifold), so the Jacobian is the basis itself
    newton.c, newton.e, newton.J = np.zeros(basis.shape[1]), _to_real(W), basis.copy()
    mid_tol = _CONTINUATION_TOL * scale
    s, h = 0.0, 1.0
    for _ in range(_MAX_SOLVES):
        s_new = min(1.0, s + h)
        last = s_new == 1.0
        try:
            target = t_real if last else _to_real(path(s_new))
        except ValueError:  # the path leaves the full-rank points
            target = None
        saved = (newton.c, newton.e, newton.J)
        # the whole way at once and the last target get ``max_iter`` iterations, the
        # intermediate targets a few (a failure halves the step instead)
        iters = max_iter if last else min(max_iter, _QUICK_ITER)
        ok = target is not None and newton.solve(target, 0.5 * atol if last else mid_tol, iters)
        if ok and last:
            V = verified(newton.c)
            if V is not None:
                return V
            ok = False
        if ok:
            s, h = s_new, min(2.0 * h, 1.0 - s_new)
            continue
        newton.c, newton.e, newton.J = saved
        h *= 0.5
        if h < _MIN_STEP:
            return None
    return None


def _check_same_component(W: np.ndarray, T: np.ndarray) -> None:
    """ValueError unless every layer of W and T has the same determinant sign (real points).

    Along any curve of full-rank layers (both manifolds) no determinant can
    change sign, so points with different signs lie in different connected
    components and are joined by no geodesic.
    """
    if np.iscomplexobj(W) or np.iscomplexobj(T):
        return
    sw, st = np.linalg.slogdet(W)[0], np.linalg.slogdet(T)[0]
    bad = np.flatnonzero(sw != st)
    if bad.size:
        raise ValueError(
            f"the two points lie in different connected components (layer {bad[0] + 1} "
            "has determinants of opposite signs): no geodesic joins them"
        )


def _check_log_options(n_steps, tol, max_iter) -> tuple[int, float, int]:
    return _checked_steps(n_steps), check_positive(tol, "tol"), check_count(max_iter, "max_iter")


def _first(W: np.ndarray, T: np.ndarray) -> bool:
    """True if W precedes T in the lexicographic order of their real coordinates: the
    order in which :func:`_symmetric_log` solves a pair, the same for log(W, T) and
    log(T, W)."""
    a, b = _to_real(W), _to_real(T)
    diff = np.flatnonzero(a != b)
    return diff.size == 0 or bool(a[diff[0]] < b[diff[0]])


#: Most solves of the refined ``log`` on a held mesh of the controlled exp
#: (:meth:`_LogProblem.refine`): the mesh at the solution changes at most once or twice.
_MESH_ROUNDS = 4
#: Levels by which :meth:`_LogProblem.refine` refines a held mesh on which no solution was
#: found (widths (2, 2, 1), a geodesic passing the rank-1 networks at lambda 0.07: the
#: mesh chosen at the coarse guess (rtol 1e-4, levels up to 4) has none; refined by 2 it
#: has, and the mesh chosen there leads to the closed-form length to 6e-8).
_MESH_REFINE = 2

#: Near pairs (:meth:`_LogProblem.near`): T within this fraction of
#: :math:`\max(1, |W|, |T|)` of W, each Broyden step shrinking the residual by
#: ``_NEAR_RATE``, at most ``_NEAR_ITER`` steps, the geodesic at most ``_NEAR_LENGTH``
#: times the chord.
_NEAR = 0.25
_NEAR_RATE = 0.5
_NEAR_ITER = 20
_NEAR_LENGTH = 1.5

#: RK4 steps of the coarse exponential whose log is the initial guess of ``log``
#: (a quarter of ``n_steps``, at least this many).
_COARSE_STEPS = 5


def _polar_path(W: np.ndarray, T: np.ndarray) -> Callable[[float], np.ndarray]:
    r"""A path of invertible layers from W to T (layers with determinants of equal signs).

    Layer by layer (:func:`_layer_polar_path`), with the polar decompositions
    :math:`W_p = U_pP_p`, :math:`T_p = U'_pP'_p`:
    :math:`U_p\exp(s\log(U_p^*U'_p))\,((1-s)P_p + sP'_p)`, a geodesic of the orthogonal
    (unitary) group times a segment of positive definite matrices, invertible for every s
    (the chord :math:`(1-s)W_p + sT_p` may cross the singular matrices: two rotations by
    opposite right angles average to 0). The continuation path of ``log`` is this path
    mapped onto the manifold by its restore.
    """
    paths = _layers_polar_path(W, T)
    return lambda s: np.stack(paths(s))


def _layers_polar_path(W, T) -> Callable[[float], list[np.ndarray]]:
    """:func:`_layer_polar_path` of each layer of two networks (stacks or lists of layers)."""
    paths = [_layer_polar_path(a, b) for a, b in zip(W, T, strict=True)]
    return lambda s: [p(s) for p in paths]


def _layer_polar_path(A: np.ndarray, B: np.ndarray) -> Callable[[float], np.ndarray]:
    r"""Polar path of one layer (m, n) from A to B, keeping the rank of A and B.

    Full rank (m >= n; the transpose otherwise): :math:`U(s)((1-s)P_A + sP_B)` with the
    polar factors :math:`A = U_AP_A` (:math:`U_A` with orthonormal columns), :math:`U(s)`
    the first n columns of the geodesic :math:`Q_A\exp(s\log(Q_A^*Q_B))` of the
    orthogonal (unitary) group between completions :math:`Q = [U, U_\perp]`
    (:func:`_orthogonal_path`). A real square layer whose determinant changes sign
    (possible only where a hidden width exceeds min(d_0, d_N)) takes the chord instead.
    Rank r < n (the layers of :math:`\mathcal{M}` when a hidden width exceeds r):
    :func:`_low_rank_path`.
    """
    if A.shape[0] < A.shape[1]:
        path = _layer_polar_path(A.T, B.T)
        return lambda s: path(s).T
    m, n = A.shape
    real = not (np.iscomplexobj(A) or np.iscomplexobj(B))
    ua, sa, vha = np.linalg.svd(A)
    ub, sb, vhb = np.linalg.svd(B)
    rank = min(_rank(sa, A.shape), _rank(sb, B.shape))
    if rank < n:
        return _low_rank_path(A, B, (ua, sa, vha), (ub, sb, vhb), rank)
    Qa = np.concatenate([ua[:, :n] @ vha, ua[:, n:]], axis=1)
    Qb = np.concatenate([ub[:, :n] @ vhb, ub[:, n:]], axis=1)
    Pa = (conj_transpose(vha) * sa[None, :]) @ vha
    Pb = (conj_transpose(vhb) * sb[None, :]) @ vhb
    Qb[:, n:] = _aligned(Qa[:, n:], Qb[:, n:], 0)  # U_B kept, its complement rotated
    if real and np.linalg.det(Qa.T @ Qb) < 0:
        if m == n:
            return lambda s: (1.0 - s) * A + s * B
        Qb[:, -1] *= -1.0
    rotate = _orthogonal_path(Qa, Qb, real)
    return lambda s: rotate(s)[:, :n] @ ((1.0 - s) * Pa + s * Pb)


def _rank(sv: np.ndarray, shape: tuple[int, ...]) -> int:
    return int(np.count_nonzero(sv > max(shape) * np.finfo(np.float64).eps * 1e3 * sv[0]))


def _aligned(Qa: np.ndarray, Qb: np.ndarray, r: int) -> np.ndarray:
    """Qb with its first r columns and the others each rotated (within their span) closest
    to those of Qa (orthogonal Procrustes)."""
    out = Qb.copy()
    for cols in (slice(0, r), slice(r, None)):
        if out[:, cols].shape[1]:
            u, _, vh = np.linalg.svd(conj_transpose(Qb[:, cols]) @ Qa[:, cols])
            out[:, cols] = Qb[:, cols] @ (u @ vh)
    return out


def _orthogonal_path(Qa: np.ndarray, Qb: np.ndarray, real: bool) -> Callable[[float], np.ndarray]:
    """Geodesic s -> Qa exp(s log(Qa^* Qb)) of the orthogonal (unitary) group."""
    R = scipy.linalg.logm(conj_transpose(Qa) @ Qb)
    if real:
        R = R.real
    R = 0.5 * (R - conj_transpose(R))  # skew(-Hermitian): the rounding of logm removed
    return lambda s: Qa @ scipy.linalg.expm(s * R)


def _low_rank_path(A, B, svd_a, svd_b, r: int) -> Callable[[float], np.ndarray]:
    r"""A path of rank-r matrices from A to B (m >= n > r): :math:`L(s)_r C(s) R(s)_r^*`,
    L and R geodesics of the orthogonal (unitary) group between the singular vectors of
    A and those of B (each block rotated closest to A's, determinant signs matched by
    flipping complement columns), C the polar path (:func:`_layer_polar_path`) of the
    r x r cores :math:`C_A = \Sigma_A`, :math:`C_B = L_{B,r}^* B R_{B,r}` (its
    determinant made positive by flipping a column of :math:`L_{B,r}` with one of its
    complement)."""
    real = not (np.iscomplexobj(A) or np.iscomplexobj(B))
    (ua, sa, vha), (ub, _, vhb) = svd_a, svd_b
    La, Lb = ua, _aligned(ua, ub, r)
    Ra, Rb = conj_transpose(vha), _aligned(conj_transpose(vha), conj_transpose(vhb), r)
    if real:
        for Qa, Qb in ((La, Lb), (Ra, Rb)):
            if np.linalg.det(Qa.T @ Qb) < 0:
                Qb[:, -1] *= -1.0
        if np.linalg.det(Lb[:, :r].T @ B @ Rb[:, :r]) < 0:
            Lb[:, 0] *= -1.0
            Lb[:, -1] *= -1.0
    Cb = conj_transpose(Lb[:, :r]) @ B @ Rb[:, :r]
    left, right = _orthogonal_path(La, Lb, real), _orthogonal_path(Ra, Rb, real)
    core = _layer_polar_path(np.diag(sa[:r]).astype(Cb.dtype), Cb)
    return lambda s: left(s)[:, :r] @ core(s) @ conj_transpose(right(s)[:, :r])


def _balanced_frames_path(W: list[np.ndarray], T: list[np.ndarray]):
    r"""A path of balanced networks of general widths from W to T (one component).

    With the frames :math:`W_p = Q_p\Lambda Q_{p-1}^T` (:class:`~dln_manifolds.BalancedFrame`,
    :math:`Q_p` the first r columns of an orthogonal :math:`d_p \times d_p` matrix):
    :math:`W_p(s) = Q_p(s)\Lambda(s)Q_{p-1}(s)^T`, each :math:`Q_p(s)` on the geodesic of
    the orthogonal group between the completed frames of W and T
    (:func:`_orthogonal_path`), :math:`\Lambda(s) = \Lambda_W^{1-s}\Lambda_T^s`: balanced
    and of rank r for every s. The frames of T are chosen up to the signs of their r
    columns (the same point) closest to those of W, their complements rotated closest to
    those of W, and the determinants of :math:`Q_{W,p}^TQ_{T,p}` made positive (a
    complement column flipped where :math:`d_p > r`, a frame column where
    :math:`d_p = r`: the same sign at every such p in one component). The layer-wise
    polar path restored onto the manifold is not continuous here: where a hidden width
    exceeds r, its layers' frames drift apart, and the restore (polar factors of
    :math:`Y_pQ_{p-1}`) jumps where those products lose rank.
    """
    fa, fb = BalancedFrame.from_valid(W), BalancedFrame.from_valid(T)
    r = fa.r
    Qa = [np.asarray(q) for q in fa.Q]
    Qb = [np.array(q, dtype=float) for q in fb.Q]
    score = sum(np.sum(qa[:, :r] * qb[:, :r], axis=0) for qa, qb in zip(Qa, Qb, strict=True))
    flip = np.where(score < 0, -1.0, 1.0)
    square = [k for k, q in enumerate(Qa) if q.shape[0] == r]
    if square and np.linalg.det(Qa[square[0]].T @ Qb[square[0]]) * np.prod(flip) < 0:
        flip[int(np.argmin(np.abs(score)))] *= -1.0
    for qa, qb in zip(Qa, Qb, strict=True):
        qb[:, :r] *= flip
        if qb.shape[0] > r:
            qb[:, r:] = _aligned(qa[:, r:], qb[:, r:], 0)
            if np.linalg.det(qa.T @ qb) < 0:
                qb[:, -1] *= -1.0
    rotate = [_orthogonal_path(qa, qb, True) for qa, qb in zip(Qa, Qb, strict=True)]
    log_a, log_b = np.log(fa.lam), np.log(fb.lam)

    def path(s: float) -> list[np.ndarray]:
        Q = [f(s)[:, :r] for f in rotate]
        lam = np.exp((1.0 - s) * log_a + s * log_b)
        return [(Q[p + 1] * lam) @ Q[p].T for p in range(len(W))]

    return path


#: Refinement levels of :func:`_discrete_geodesic` (2**levels segments) and relaxation
#: sweeps per level.
_STRAIGHTEN_LEVELS = 4
_STRAIGHTEN_SWEEPS = 30
#: Damping of the Jacobi sweeps (1/2: every mode of the discrete Laplacian decays).
_RELAX = 0.5


def _discrete_geodesic(W, T, midpoint, relax, levels: int, sweeps: int) -> np.ndarray:
    r"""Points :math:`P_0 = W, \dots, P_K = T` (K = 2**levels) of a discrete geodesic: each
    interior point relaxed to the restore of :math:`P_k - P_{P_k}(P_k - (P_{k-1} +
    P_{k+1})/2)` (the tangential part of its discrete acceleration removed: a Jacobi sweep
    on the discrete energy :math:`\sum_k |P_{k+1} - P_k|^2`, whose critical points are the
    polygons with normal second differences), coarse to fine: the new points of a level are
    the midpoints (``midpoint(A, B)``, a point of the manifold) of the last level's
    segments. Cheap (no geodesic integration): ``relax`` acts on all points at once."""
    P = np.stack([W, T])
    for _ in range(levels):
        mids = np.stack([midpoint(a, b) for a, b in zip(P[:-1], P[1:], strict=True)])
        Q = np.empty((2 * P.shape[0] - 1,) + P.shape[1:], dtype=P.dtype)
        Q[0::2], Q[1::2] = P, mids
        P = Q
        for _ in range(sweeps):
            P[1:-1] = relax(P)
    return P


def _polygon_path(P: np.ndarray, between) -> Callable[[float], np.ndarray]:
    """s -> the point at s of the polygon P (K + 1 points at s = k/K), each segment
    followed by ``between(A, B)`` (a path s -> point of the manifold)."""
    K = P.shape[0] - 1

    def path(s: float) -> np.ndarray:
        k = min(int(np.floor(s * K)), K - 1)
        return between(P[k], P[k + 1])(s * K - k)

    return path


def _value_errors(fn: Callable) -> Callable:
    """``fn`` raising ValueError where the integration produced NaN/Inf (FloatingPointError
    of :func:`~dln_manifolds.flows.integrate_flow`): a geodesic that leaves the manifold."""

    def wrapped(*args):
        try:
            return fn(*args)
        except FloatingPointError as exc:
            raise ValueError(f"the geodesic leaves the manifold ({exc})") from exc

    return wrapped


class _LogProblem:
    r"""Shooting data at one base point: tangent basis, exp (single and batched), path.

    ``exp_velocity(V, n)`` gives :math:`(\gamma(1), \dot\gamma(1))` with n RK4 steps,
    ``exp_batch(V, n)`` the end points of a stack of vectors, ``path(T)`` the map s -> point s
    of the continuation path from W to T. n is a number of uniform steps or a mesh of
    levels (:func:`_rk4_mesh`); ``select(V)`` (optional) is the mesh of the step-controlled
    exp at V (:func:`_controlled_levels`): then the refined log is solved on a mesh held
    fixed and re-solved until the mesh chosen at the solution is the one it was solved on,
    so that the controlled exp of the result hits T.
    """

    def __init__(
        self,
        W,
        basis,
        exp_velocity,
        exp_batch,
        path,
        n_steps: int,
        straighten=None,
        select=None,
    ):
        self.W = W
        self.basis = basis
        self.exp_velocity = _value_errors(exp_velocity)
        self.exp_batch = _value_errors(exp_batch)
        self.path = path
        self.n_steps = n_steps
        self.straighten = straighten
        self.select = select

    def steps_at(self, V) -> int | tuple[int, ...]:
        """The steps of the exp at V: its controlled mesh, or ``n_steps`` uniform ones."""
        return self.n_steps if self.select is None else self.select(V)

    def end_velocity(self, V) -> np.ndarray:
        r""":math:`\dot\gamma(1)` of the exp (controlled if :attr:`select`) at V."""
        return self.exp_velocity(V, self.steps_at(V))[1]

    def _shoot(self, T, tol, max_iter, n, guess, path):
        return _shoot(
            self.W,
            T,
            lambda V: self.exp_velocity(V, n)[0],
            self.basis,
            path,
            tol,
            max_iter,
            exp_batch=lambda V: self.exp_batch(V, n),
            guess=guess,
        )

    @property
    def n_coarse(self) -> int:
        """Steps of the coarse exp: a quarter of ``n_steps``, at least :data:`_COARSE_STEPS`
        (at most ``n_steps``)."""
        return min(self.n_steps, max(_COARSE_STEPS, self.n_steps // 4))

    def coarse(self, T, tol, max_iter) -> np.ndarray | None:
        """The log for the coarse exp (4 times cheaper, the same geodesic to the RK4 error),
        or None if none is found. With ``straighten`` (T -> (guess, path): the initial
        velocity and the path of a discrete geodesic to T), Newton from that guess, then
        continuation along that path, then along :attr:`path`."""
        tol = max(tol, 1e-6)
        if self.straighten is not None:
            try:
                guess, path = self.straighten(T)
                return self._shoot(T, tol, max_iter, self.n_coarse, guess, path)
            except ValueError:
                pass
        try:
            return self._shoot(T, tol, max_iter, self.n_coarse, None, self.path(T))
        except ValueError:
            return None

    def refine(self, T, tol, max_iter, guess) -> np.ndarray:
        """log by Newton from ``guess`` (if not None), else by continuation. Controlled
        (:attr:`select`): on the mesh chosen at ``guess`` (uniform without one), then
        again from the solution on the mesh chosen there, until the two agree (at most
        :data:`_MESH_ROUNDS` solves; ValueError if the mesh keeps changing). A held mesh
        with no solution is refined by :data:`_MESH_REFINE` levels for the next solve
        (the shooting's ValueError if the rounds run out that way)."""
        if self.select is None:
            return self._shoot(T, tol, max_iter, self.n_steps, guess, self.path(T))
        mesh = (0,) * self.n_steps
        if guess is not None:
            try:
                mesh = self.select(guess)
            except ValueError:
                pass
        failure = None
        for _ in range(_MESH_ROUNDS):
            try:
                V = self._shoot(T, tol, max_iter, mesh, guess, self.path(T))
            except ValueError as exc:
                # a mesh chosen at a poor guess may be too coarse for the geodesic near T
                # (it passes closer to the singular layers): again on a mesh refined by
                # _MESH_REFINE levels, whose solution gives the mesh to solve on next
                if min(mesh) >= _MAX_LEVEL:
                    raise
                failure = exc
                mesh = tuple(min(level + _MESH_REFINE, _MAX_LEVEL) for level in mesh)
                continue
            failure = None
            chosen = self.select(V)
            if chosen == mesh:
                return V
            mesh, guess = chosen, V
        if failure is not None:
            raise failure
        raise ValueError(
            "log did not converge: the step mesh of the controlled exp changed at each of "
            f"{_MESH_ROUNDS} solutions"
        )

    def near(self, T, tol) -> np.ndarray | None:
        r"""log of a near pair by Broyden's method from V = 0, or None (then :meth:`shoot`).

        For T within :data:`_NEAR` :math:`\max(1, |W|, |T|)` of W: the quasi-Newton
        iteration on the coordinates c of V whose first Jacobian is the tangent basis
        (:math:`d\exp_W(0)` is the identity on tangent vectors) and which updates it by
        Broyden's rank-one formula, one ``exp`` per step (no finite-difference columns).
        Every step must shrink the residual by :data:`_NEAR_RATE`, at most
        :data:`_NEAR_ITER` steps, and the geodesic found be at most
        :data:`_NEAR_LENGTH` times the chord :math:`|T - W|`; else None. The result hits
        T to ``tol`` like :meth:`shoot`'s, with the exp of :meth:`steps_at` (controlled:
        solved on a held mesh, uniform first, then on the mesh chosen at the solution,
        None if that one changes again).
        """
        W = self.W
        chord = float(np.linalg.norm(T - W))
        scale = max(1.0, float(np.linalg.norm(W)), float(np.linalg.norm(T)))
        if chord > _NEAR * scale:
            return None
        complex_ = bool(np.iscomplexobj(W) or np.iscomplexobj(T))
        atol = 0.5 * tol * scale
        t_real = _to_real(T)
        c, e, J = np.zeros(self.basis.shape[1]), _to_real(W), self.basis.copy()
        mesh = self.n_steps if self.select is None else (0,) * self.n_steps
        for _ in range(2):
            nr = float(np.linalg.norm(e - t_real))
            for _ in range(_NEAR_ITER):
                if nr <= atol:
                    break
                dc = np.linalg.lstsq(J, t_real - e, rcond=None)[0]
                try:
                    V = _from_real(self.basis @ (c + dc), W.shape, complex_)
                    e_new = _to_real(self.exp_velocity(V, mesh)[0])
                except ValueError:
                    return None
                nr_new = float(np.linalg.norm(e_new - t_real))
                if not nr_new <= _NEAR_RATE * nr:
                    return None
                J += np.outer((e_new - e) - J @ dc, dc) / float(dc @ dc)
                c, e, nr = c + dc, e_new, nr_new
            if nr > atol:
                return None
            V = _from_real(self.basis @ c, W.shape, complex_)
            if float(np.linalg.norm(V)) > _NEAR_LENGTH * chord:
                return None
            if self.select is None:
                return V
            try:
                chosen = self.select(V)
            except ValueError:
                return None
            if chosen == mesh:
                return V
            mesh = chosen
            try:
                e = _to_real(self.exp_velocity(V, mesh)[0])
            except ValueError:
                return None
        return None

    def shoot(self, T, tol, max_iter) -> np.ndarray:
        """log by Newton from :meth:`coarse`, else by continuation (one-sided)."""
        return self.refine(T, tol, max_iter, self.coarse(T, tol, max_iter))


def _symmetric_log(W, T, problem: Callable, tol: float, max_iter: int) -> np.ndarray:
    r"""log_W(T): the shorter of the geodesics found from W and from T, the same both ways.

    Shooting from W to T and from T to W (each with its own continuation) may end on
    different geodesics when the points are far apart. Both are solved for the coarse
    exponential (:meth:`_LogProblem.coarse`), in the order of :func:`_first`. If they are
    one geodesic (:func:`_same_geodesic`) it is refined from the first point; else both
    are refined and the shorter kept (ties to the first point), a choice that
    ``log(T, W)`` makes identically. If it is the one found from T, with
    :math:`V_T = \log_T(W)`, Newton at W starts from :math:`-\dot\gamma(1)` of
    :math:`\gamma = \exp_T(tV_T)`: the same geodesic reversed, off by the RK4 error only.
    """
    if np.array_equal(W, T):
        return np.zeros_like(W)
    at_W = problem(W)
    V = at_W.near(T, tol)
    if V is not None:
        return V
    order = (W, T) if _first(W, T) else (T, W)
    problems = {id(W): at_W, id(T): problem(T)}
    guesses = [problems[id(A)].coarse(B, tol, max_iter) for A, B in (order, order[::-1])]
    if all(g is not None for g in guesses) and _same_geodesic(problems[id(order[1])], *guesses):
        guesses[1] = None  # one geodesic: refine it from the first point only
    found, err = [], None
    for (A, B), guess in zip((order, order[::-1]), guesses, strict=True):
        if guess is None and found:
            continue
        try:
            found.append((A, problems[id(A)].refine(B, tol, max_iter, guess)))
        except ValueError as exc:
            err = exc
    if not found:
        raise err
    A, V = min(found, key=lambda f: float(np.linalg.norm(f[1])))  # stable: ties to the first
    if A is W:
        return V
    pT = problems[id(T)]
    vel = pT.end_velocity(V)
    # Newton from the reversed geodesic (then, as a fallback, continuation from W)
    return problems[id(W)].refine(T, tol, max_iter, -vel)


def _same_geodesic(second: _LogProblem, V_first: np.ndarray, V_second: np.ndarray) -> bool:
    """True if the coarse logs from the two points describe one geodesic: the final velocity
    of the second one reversed is the first to 5e-2 relative (measured on far random pairs
    at d, N = 2, 2; 3, 2; 2, 3: up to 7e-3 for one geodesic, the coarse RK4 error; 0.2 and
    more between distinct ones). A false "distinct" costs one more refinement only."""
    try:
        _, vel = second.exp_velocity(V_second, second.n_coarse)
    except ValueError:
        return False
    return float(np.linalg.norm(vel + V_first)) <= 5e-2 * float(np.linalg.norm(V_first))


def _balanced_problem(n_steps: int) -> Callable[[np.ndarray], _LogProblem]:
    def make(Wb: np.ndarray) -> _LogProblem:
        N, d = Wb.shape[-3], Wb.shape[-1]
        m, dim = N * d * d, d * d + (N - 1) * d * (d - 1) // 2
        frame = BalancedFrame.from_valid(Wb)

        def project_all(E):
            Z = E.reshape((-1, N, d, d))
            return frame.tangent_projection_unchecked(Z).reshape(Z.shape[0], -1)

        def exp_velocity(V, n):
            V = balanced_tangent_projection(Wb, V)
            return _rk4(Wb, V, _balanced_field, _balanced_settle, n)

        def exp_batch(V, n):
            Ws = np.broadcast_to(Wb, V.shape)
            V = balanced_tangent_projection(Ws, V)
            return _rk4(Ws.copy(), V, _balanced_field, _balanced_settle, n)[0]

        def path(T):
            polar = _polar_path(Wb, T)
            return lambda s: balanced_restore(polar(s))

        basis = _tangent_basis(project_all, m, dim)
        return _LogProblem(Wb, basis, exp_velocity, exp_batch, path, n_steps)

    return make


def balanced_log(
    W: ArrayLike,
    T: ArrayLike,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    *,
    tol: float = 1e-10,
    max_iter: int = 30,
    rtol: float | None = None,
) -> np.ndarray:
    r"""Riemannian logarithm of :math:`\mathcal{M}`: V tangent at W with ``balanced_exp(W, V) = T``.

    Shooting (module docstring); the result satisfies
    :math:`|\exp_W(V) - T| \le` ``tol`` :math:`\max(1, |W|, |T|)` with the same
    ``n_steps``. ``balanced_log(T, W)`` follows the same geodesic back, to the RK4
    error.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Base point(s), full-rank balanced.
    T : array_like, broadcastable with W
        Target point(s) on :math:`\mathcal{M}`.
    n_steps : int
        RK4 steps of the exponential being inverted.
    tol : float
        Relative tolerance of the shooting residual.
    max_iter : int
        Newton iterations per attempt.
    rtol : float, optional
        Step control of the exponential being inverted (:func:`balanced_exp`; lists of
        layers only): ``balanced_exp(W, V, n_steps, rtol=rtol)`` hits T to ``tol``.

    Returns
    -------
    ndarray, shape of the broadcast of W and T

    Raises
    ------
    ValueError
        If a point is not balanced, the points lie in different connected components,
        or no geodesic is found (never an unconverged vector).
    """
    n_steps, tol, max_iter = _check_log_options(n_steps, tol, max_iter)
    rtol = _checked_rtol(rtol, W)
    if _is_list(W):
        return _balanced_log_layers(W, T, n_steps, tol, max_iter, rtol)
    W, T = _balanced_pair(W, T, "W", "T")
    batch = W.shape[:-3]
    N, d = W.shape[-3], W.shape[-1]
    Wf, Tf = W.reshape((-1, N, d, d)), T.reshape((-1, N, d, d))
    out = np.empty_like(Wf)
    problem = _balanced_problem(n_steps)
    for b, (Wb, Tb) in enumerate(zip(Wf, Tf, strict=True)):
        Wb = check_balanced(Wb, tol=1e-6, name="W")
        Tb = check_balanced(Tb, tol=1e-6, name="T")
        _check_same_component(Wb, Tb)
        out[b] = _symmetric_log(Wb, Tb, problem, tol, max_iter)
    return out.reshape(batch + (N, d, d))


def _fiber_factors_batch(W: np.ndarray):
    """:func:`_fiber_factors` for a stack of points (B, N, d, d): K of shape (B, d^2, d^2)."""
    B, N, d, _ = W.shape
    eye = np.broadcast_to(np.eye(d, dtype=W.dtype), (B, d, d))
    A = [eye]
    for k in range(N - 1, 0, -1):
        A.append(A[-1] @ W[:, k])
    Aa = np.stack(A[::-1], axis=1)
    Bl = [eye]
    for k in range(N - 1):
        Bl.append(W[:, k] @ Bl[-1])
    Bb = np.stack(Bl, axis=1)
    Ah, Bh = conj_transpose(Aa), conj_transpose(Bb)
    K = np.einsum("zpac,zpeb->zabce", Aa @ Ah, Bh @ Bb).reshape(B, d * d, d * d)
    return Aa, Bb, Ah, Bh, K


def _fiber_field_batch(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """:func:`_fiber_field` for stacks (B, N, d, d) (the batched exponential of the log)."""
    B, _, d, _ = W.shape
    _, _, Ah, Bh, K = _fiber_factors_batch(W)
    r = -chain_second_derivative(np.moveaxis(W, 1, 0), np.moveaxis(V, 1, 0))
    y = np.linalg.solve(K, r.reshape(B, d * d, 1)).reshape(B, 1, d, d)
    return Ah @ y @ Bh


def _fiber_settler_batch(X: np.ndarray):
    """:func:`_fiber_settler` for stacks (B, N, d, d): restore onto X, project twice."""
    limit = 1.0 / (X.shape[-1] * np.finfo(np.float64).eps)

    def settle(W: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B, N, d, _ = W.shape
        W = W.astype(np.result_type(W, X), copy=True)
        if N > 1:
            s = np.linalg.svd(W[:, :-1], compute_uv=False)
            prod = W[:, 0]
            for k in range(1, N - 1):
                prod = W[:, k] @ prod
            sp = np.linalg.svd(prod, compute_uv=False)
            if not (
                np.all(s[..., 0] <= limit * s[..., -1]) and np.all(sp[:, 0] <= limit * sp[:, -1])
            ):
                raise ValueError("W cannot be restored onto the fiber: a layer is singular")
            W[:, -1] = solve_right(np.broadcast_to(X, prod.shape), prod)
        else:
            W[:, 0] = X
        Aa, Bb, Ah, Bh, K = _fiber_factors_batch(W)
        for _ in range(2):
            r = np.sum(Aa @ V @ Bb, axis=1).reshape(B, d * d, 1)
            V = V - Ah @ np.linalg.solve(K, r).reshape(B, 1, d, d) @ Bh
        return W, V

    return settle


def _fiber_problem(X: np.ndarray, n_steps: int) -> Callable[[np.ndarray], _LogProblem]:
    settle, settle_batch = _fiber_settler(X), _fiber_settler_batch(X)

    def make(Wb: np.ndarray) -> _LogProblem:
        N, d = Wb.shape[0], Wb.shape[1]
        complex_ = bool(np.iscomplexobj(Wb) or np.iscomplexobj(X))
        solver = FiberNormalSolver(Wb)
        m = N * d * d * (2 if complex_ else 1)
        dim = (N - 1) * d * d * (2 if complex_ else 1)

        def project_all(E):
            return np.stack(
                [_to_real(solver.project(_from_real(e, Wb.shape, complex_))) for e in E]
            )

        def exp_velocity(V, n):
            return _rk4(Wb, solver.project(V), _fiber_field, settle, n)

        def exp_batch(V, n):
            # the vectors come from the tangent basis: no projection needed
            Ws = np.broadcast_to(Wb, V.shape).astype(V.dtype)
            return _rk4(Ws, V, _fiber_field_batch, settle_batch, n)[0]

        def path(T):
            polar = _polar_path(Wb, T)
            return lambda s: fiber_restore(polar(s), X)

        basis = _tangent_basis(project_all, m, dim)
        return _LogProblem(Wb, basis, exp_velocity, exp_batch, path, n_steps)

    return make


def fiber_log(
    W: ArrayLike,
    T: ArrayLike,
    X: ArrayLike | None = None,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    *,
    tol: float = 1e-10,
    max_iter: int = 30,
) -> np.ndarray:
    r"""Riemannian logarithm of :math:`\mathcal{F}_X`: V tangent at W with ``fiber_exp(W, V) = T``.

    Shooting (module docstring); the result satisfies
    :math:`|\exp_W(V) - T| \le` ``tol`` :math:`\max(1, |W|, |T|)` with the same
    ``n_steps``. ``fiber_log(T, W)`` follows the same geodesic back, to the RK4 error.
    Real or complex.

    Parameters
    ----------
    W, T : array_like, shape (N, d, d), or lists of N layers
        Base and target points of the same fiber.
    X : array_like, shape (d, d) (or (d_N, d_0) for lists), optional
        The end-to-end matrix (default: the product of W).
    n_steps : int
        RK4 steps of the exponential being inverted.
    tol : float
        Relative tolerance of the shooting residual.
    max_iter : int
        Newton iterations per attempt.

    Returns
    -------
    ndarray, shape (N, d, d)

    Raises
    ------
    ValueError
        If T is not on the fiber of W, the points lie in different connected
        components, or no geodesic is found.
    """
    n_steps, tol, max_iter = _check_log_options(n_steps, tol, max_iter)
    if _is_list(W):
        return _fiber_log_layers(W, T, X, n_steps, tol, max_iter)
    W = as_stack(W)
    N, d = W.shape[0], W.shape[1]
    T = as_stack(T, "T", depth=N, d=d)
    X = _fiber_target(W, X)
    scale = max(1.0, float(np.linalg.norm(X)))
    if np.linalg.norm(end_to_end(T) - X) > 1e-6 * scale:
        raise ValueError("T is not on the fiber of W (its end-to-end product differs from X)")
    _check_same_component(W, T)
    complex_ = bool(np.iscomplexobj(W) or np.iscomplexobj(T) or np.iscomplexobj(X))
    if complex_:
        dtype = np.result_type(W, T, X, np.complex128)
        W, T = W.astype(dtype), T.astype(dtype)
    return _symmetric_log(W, T, _fiber_problem(X, n_steps), tol, max_iter)


def balanced_dist(
    W: ArrayLike, T: ArrayLike, n_steps: int = DEFAULT_GEODESIC_STEPS, **kw
) -> np.ndarray:
    """Geodesic distance on :math:`\\mathcal{M}`: the norm of :func:`balanced_log`, shape (...).

    ``inf`` between points of different connected components (a layer's
    determinant has opposite signs), which no curve in :math:`\\mathcal{M}` joins.
    Keywords ``tol`` and ``max_iter`` go to :func:`balanced_log`.
    """
    if _is_list(W):
        W = check_balanced(W, tol=1e-6, name="W")
        if _is_list(T) and components_differ(W, check_balanced(T, 1e-6, "T")):
            return np.array(np.inf)
        return np.array(_norm(balanced_log(W, T, n_steps, **kw)))
    W, T = _balanced_pair(W, T, "W", "T")
    N, d = W.shape[-3], W.shape[-1]
    Wf, Tf = W.reshape((-1, N, d, d)), T.reshape((-1, N, d, d))
    out = np.empty(Wf.shape[0])
    for b, (Wb, Tb) in enumerate(zip(Wf, Tf, strict=True)):
        if components_differ(Wb, Tb):
            out[b] = np.inf
        else:
            out[b] = np.linalg.norm(balanced_log(Wb, Tb, n_steps, **kw))
    return out.reshape(W.shape[:-3])


def fiber_dist(
    W: ArrayLike, T: ArrayLike, X: ArrayLike | None = None, n_steps=DEFAULT_GEODESIC_STEPS, **kw
) -> float:
    """Geodesic distance on :math:`\\mathcal{F}_X`: the norm of :func:`fiber_log`.

    ``inf`` between points of different connected components (for real
    points: a layer's determinant has opposite signs).
    """
    if _is_list(W):
        W = as_fiber_layers(W)
        if _is_list(T):
            T = as_layer_sequence(T, "T", widths=widths_of_layers(W), batch=False)
            if components_differ(W, T):
                return float("inf")
        return _norm(fiber_log(W, T, X, n_steps, **kw))
    W = as_stack(W)
    T = as_stack(T, "T", depth=W.shape[0], d=W.shape[1])
    if components_differ(W, T):
        return float("inf")
    return float(np.linalg.norm(fiber_log(W, T, X, n_steps, **kw)))


def balanced_geodesic_midpoint(
    W: ArrayLike, T: ArrayLike, n_steps: int = DEFAULT_GEODESIC_STEPS, **kw
) -> np.ndarray:
    """Geodesic midpoint :math:`\\exp_W(\\log_W(T)/2)` on :math:`\\mathcal{M}`."""
    rtol = kw.get("rtol")
    return balanced_exp(W, _half(balanced_log(W, T, n_steps, **kw)), n_steps, rtol=rtol)


def fiber_geodesic_midpoint(
    W: ArrayLike, T: ArrayLike, X: ArrayLike | None = None, n_steps=DEFAULT_GEODESIC_STEPS, **kw
) -> np.ndarray:
    """Geodesic midpoint :math:`\\exp_W(\\log_W(T)/2)` on :math:`\\mathcal{F}_X`."""
    return fiber_exp(W, _half(fiber_log(W, T, X, n_steps, **kw)), X, n_steps)


def _half(V):
    """V / 2 for an array or a list of layers."""
    return [0.5 * z for z in V] if _is_list(V) else 0.5 * V


# ---------------------------------------------------------------------------
# General widths: a network given as a list of layers, packed into one vector
# ---------------------------------------------------------------------------
#
# The square machinery above works on arrays: the RK4 of ``_rk4_state`` on a stacked
# state and the shooting of ``_shoot`` on one array. For a list of layers of widths
# (d_0, ..., d_N) the state is packed (``pack_layers``: the layers raveled and
# concatenated, one real or complex vector of P = sum_k d_k d_{k+1} entries) and every
# rate, restore and projection unpacks it into the layers. The math is that of the
# module docstring: (G) and (P) with the second fundamental form of
# :meth:`~dln_manifolds.BalancedFrame.geodesic_acceleration` (balanced; with the
# curvature of the rank-r layers when a hidden width exceeds r) or with the
# (d_N d_0) x (d_N d_0) normal operator K of the fiber.


def _is_list(W) -> bool:
    """True for a network given as a list or tuple of layers (the general-widths layout)."""
    return isinstance(W, (list, tuple))


def _layer_vector(
    V, name: str, widths: tuple[int, ...], real: bool, batch: bool = False
) -> list[np.ndarray]:
    """A vector at a network of general widths: a list of layers (or, for square layers,
    one stacked (N, d, d) array), validated against ``widths``; with ``batch``, layers
    with leading batch axes (..., d_{k+1}, d_k) too."""
    if not _is_list(V) and not isinstance(V, (str, bytes)) and np.ndim(V) == 3:
        V = list(np.asarray(V))
    return as_layer_sequence(V, name, widths=widths, real=real, batch=batch)


def _norm(layers) -> float:
    return float(np.sqrt(sum(np.sum(np.abs(z) ** 2) for z in layers)))


def _network_norm(layers) -> np.ndarray:
    """Frobenius norms of networks of layers (..., d_{k+1}, d_k), shape (...)."""
    return np.sqrt(sum(np.sum(np.abs(z) ** 2, axis=(-2, -1)) for z in layers))


def _pack_state(state: list[list[np.ndarray]]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Lists of layers (W, V, ...) packed into one (k, P) array, and their widths."""
    dtype = np.result_type(*(z for layers in state for z in layers))
    y0 = np.stack([pack_layers(z) for z in state]).astype(dtype, copy=False)
    return y0, widths_of_layers(state[0])


def _unpack_state(y: np.ndarray, widths: tuple[int, ...]) -> list[list[np.ndarray]]:
    """Inverse of :func:`_pack_state` (copies)."""
    return [[z.copy() for z in unpack_layers(row, widths)] for row in y]


def _packed_rk4(
    state: list[list[np.ndarray]],
    rate: Callable[..., tuple],
    settle: Callable[..., tuple],
    steps: int | tuple[int, ...],
) -> list[list[np.ndarray]]:
    """:func:`_rk4_state` on lists of layers (W, V, ...), packed into one (k, P) array:
    ``steps`` uniform steps, or a held mesh of levels (:func:`_rk4_mesh`)."""
    y0, widths = _pack_state(state)
    return _unpack_state(_packed_flow(y0, widths, rate, settle, steps), widths)


def _unpack_rows(y: np.ndarray, widths: tuple[int, ...]) -> list[np.ndarray]:
    """The layers (..., d_{k+1}, d_k) of packed networks y (..., P) (views)."""
    cuts = np.cumsum([0] + [a * b for a, b in zip(widths[1:], widths[:-1], strict=True)])
    return [
        y[..., i:j].reshape(y.shape[:-1] + (a, b))
        for i, j, a, b in zip(cuts[:-1], cuts[1:], widths[1:], widths[:-1], strict=True)
    ]


def _pack_rows(layers: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`_unpack_rows`."""
    return np.concatenate([z.reshape(z.shape[:-2] + (-1,)) for z in layers], axis=-1)


def _packed_fields(widths: tuple[int, ...], rate, settle, batched: bool = False):
    """``rate`` and ``settle`` of the unpacked layers as maps of packed states (k, ..., P):
    with ``batched``, on layers carrying the batch axes (..., d_{k+1}, d_k), all networks at
    once (one network alone: as without); else on one network at a time."""

    def unpack(y):
        return _unpack_rows(y, widths)

    pack = _pack_rows

    def each(fn):
        def apply(y):
            if batched and y[0, ..., 0].size > 1:
                return np.stack([pack(z) for z in fn(*(unpack(row) for row in y))])
            out = np.empty_like(y)
            for idx in np.ndindex(y.shape[1:-1]):
                at = (slice(None), *idx)
                out[at] = np.stack([pack(z) for z in fn(*(unpack(row) for row in y[at]))])
            return out

        return apply

    return each(rate), each(settle)


def _packed_flow(
    y0: np.ndarray,
    widths: tuple[int, ...],
    rate: Callable[..., list],
    settle: Callable[..., list],
    steps: int | tuple[int, ...],
    *,
    batched: bool = False,
) -> np.ndarray:
    """:func:`_rk4_state` on packed states y0 of shape (k, ..., P): (W, V, ...) of each
    network along the middle (batch) axes, one RK4 run for the whole stack. ``rate`` and
    ``settle`` act on the unpacked layers (:func:`_packed_fields`). ``steps``: n uniform
    steps, or a mesh of levels (:func:`_rk4_mesh`: a tuple, or one mesh per network (B, n)
    of states (k, B, P))."""
    rate_p, settle_p = _packed_fields(widths, rate, settle, batched)
    if isinstance(steps, (tuple, np.ndarray)):
        return _rk4_mesh(y0, rate_p, settle_p, steps)
    return _rk4_state(y0, rate_p, settle_p, steps)


def _packed_levels(y0: np.ndarray, widths, rate, settle, n_steps: int, rtol: float, batch=()):
    """:func:`_controlled_levels` of packed networks y0 = (W, V, ...): one network (k, P),
    its mesh as a tuple and its state at t = 1; or B networks (k, B, P) of the batch shape
    ``batch``, their meshes (B, n) and states (the fields batched over the networks)."""
    rate_p, settle_p = _packed_fields(widths, rate, settle, batched=True)
    if y0.ndim == 2:
        levels, y = _controlled_levels(y0[:, None], rate_p, settle_p, n_steps, rtol)
        return tuple(int(k) for k in levels[0]), y[:, 0]
    return _controlled_levels(y0, rate_p, settle_p, n_steps, rtol, batch=batch)


def _packed_problem(
    Wp: np.ndarray,
    widths: tuple[int, ...],
    basis: np.ndarray,
    project: Callable[[list[np.ndarray]], list[np.ndarray]],
    fields: tuple[Callable[..., list], Callable[..., list], bool],
    restore: Callable[[list[np.ndarray]], list[np.ndarray]],
    n_steps: int,
    layers_path: Callable = _layers_polar_path,
    straighten: Callable | None = None,
    rtol: float | None = None,
) -> _LogProblem:
    """The :class:`_LogProblem` at a packed network Wp of general widths: RK4 of the
    unpacked ``fields`` (rate, settle, whether they take batch axes), batched over the
    Jacobian columns by :func:`_packed_flow`; continuation along the polar path of the layers
    (:func:`_layers_polar_path`, rank kept) mapped onto the manifold by ``restore``. With
    ``rtol``, the exp is step-controlled (:func:`_controlled_levels`, the mesh chosen on
    the geodesic itself); a mesh passed as ``n`` is held fixed (Jacobian columns)."""
    rate, settle, batched = fields
    W = [z.copy() for z in unpack_layers(Wp, widths)]

    def exp_velocity(v, n):
        v = pack_layers(project(unpack_layers(v, widths))).astype(Wp.dtype)
        y = _packed_flow(np.stack([Wp, v]), widths, rate, settle, n)
        return y[0], y[1]

    def exp_batch(V, n):
        # the vectors come from the tangent basis: no projection needed
        dtype = np.result_type(Wp, V)
        y0 = np.stack([np.broadcast_to(Wp, V.shape), V]).astype(dtype)
        return _packed_flow(y0, widths, rate, settle, n, batched=batched)[0]

    def path(Tp):
        polar = layers_path(W, unpack_layers(Tp, widths))
        return lambda s: pack_layers(restore(polar(s)))

    def select(v):
        v = pack_layers(project(unpack_layers(v, widths))).astype(Wp.dtype)
        return _packed_levels(np.stack([Wp, v]), widths, rate, settle, n_steps, rtol)[0]

    return _LogProblem(
        Wp,
        basis,
        exp_velocity,
        exp_batch,
        path,
        n_steps,
        straighten and straighten(Wp),
        None if rtol is None else _value_errors(select),
    )


def _polarized_layers(q, V: list[np.ndarray], U: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`_polarized` for lists of layers (..., d_{k+1}, d_k): II(V, U) from
    q(Z) = II(Z, Z), c = |V| / |U| network by network."""
    nv, nu = _network_norm(V), _network_norm(U)
    ok = (nv > 0) & (nu > 0)
    c = np.where(ok, nv / np.where(ok, nu, 1.0), 1.0)[..., None, None]
    plus = q([v + c * u for v, u in zip(V, U, strict=True)])
    minus = q([v - c * u for v, u in zip(V, U, strict=True)])
    return [(p - m) / (4.0 * c) for p, m in zip(plus, minus, strict=True)]


def _check_same_component_layers(W: list[np.ndarray], T: list[np.ndarray]) -> None:
    """ValueError naming the first r x r product whose determinant signs differ, where W
    and T lie in different components (:func:`components_differ`)."""
    if not components_differ(W, T):
        return
    bad = np.flatnonzero(chain_segment_signs(W) != chain_segment_signs(T))
    cuts = chain_segment_cuts(widths_of_layers(W))
    i, j = cuts[bad[0]], cuts[bad[0] + 1]
    raise ValueError(
        f"the two points lie in different connected components (the r x r product of "
        f"layers {i + 1}..{j} has determinants of opposite signs): no geodesic joins them"
    )


# -- balanced manifold, general widths ----------------------------------------


def _balanced_layers_point(W, name: str) -> tuple[list[np.ndarray], BalancedFrame]:
    """Validate a balanced network of general widths (one network) and build its frame."""
    layers = check_balanced(W, tol=1e-6, name=name)
    return layers, BalancedFrame.from_valid(layers)


def _balanced_layers_rate(W, V, *U):
    """(W, V, U)' = (V, II(V, V), II(V, U)) at the restored point, projected vectors."""
    frame = BalancedFrame.from_valid(restore_layers(W))
    Vp = frame.tangent_projection_unchecked(V)

    def q(Z):
        return frame.geodesic_acceleration(Z)

    out = [V, q(Vp)]
    if U:
        out.append(_polarized_layers(q, Vp, frame.tangent_projection_unchecked(U[0])))
    return out


def _balanced_layers_settle(W, *vectors):
    W = restore_layers(W)
    frame = BalancedFrame.from_valid(W)
    return [W, *(frame.tangent_projection_unchecked(Z) for Z in vectors)]


def _balanced_networks(W, name: str) -> tuple[list[np.ndarray], BalancedFrame]:
    """Validate balanced networks of general widths, one (layers (d_{k+1}, d_k)) or a batch
    (layers (..., d_{k+1}, d_k)), each as :func:`~dln_manifolds.check_balanced` (the first
    failing network named by its batch index), and build their frame."""
    layers = as_layer_sequence(W, name, real=True, batch=True)
    batch = layers[0].shape[:-2]
    if not batch:
        return _balanced_layers_point(layers, name)
    r = check_hidden_widths(widths_of_layers(layers), f"widths of {name}")
    full_rank = full_rank_mask(np.linalg.svd(layers[0], compute_uv=False)[..., :r])
    for index in np.argwhere(~(layer_balance_errors(layers) <= 1e-6) | ~full_rank):
        index = tuple(int(a) for a in index)
        network = [z[index] for z in layers]
        check_balanced(network, tol=1e-6, name=f"{name} (network {index} of the batch)")
    return layers, BalancedFrame.from_valid(layers)


def _broadcast_batch(batch: tuple[int, ...], layers: list[np.ndarray], name: str, before: str):
    """The broadcast of the batch shape (that of the arguments ``before``) with the batch
    axes of ``layers`` (argument ``name``)."""
    try:
        return np.broadcast_shapes(batch, layers[0].shape[:-2])
    except ValueError:
        raise ValueError(
            f"{name} has batch axes {layers[0].shape[:-2]}, which do not broadcast with "
            f"{batch}, those of {before}"
        ) from None


def _broadcast_vectors(batch: tuple[int, ...], vectors: dict, before: str) -> tuple[int, ...]:
    """The batch shape of ``before`` (W, and X if given) broadcast with the vectors' batch
    axes, in order; an error names the vector and the arguments before it."""
    names = [before]
    for name, V in vectors.items():
        batch = _broadcast_batch(batch, V, name, " and ".join(names))
        names.append(name)
    return batch


def _balanced_state(W, **vectors) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """Balanced networks W of general widths, one or a batch, and vectors at them (names
    and values; each projected onto the tangent space), validated, broadcast and packed
    into states (1 + len(vectors), B, P); their widths and batch shape."""
    W, frame = _balanced_networks(W, "W")
    widths, batch = frame.widths, W[0].shape[:-2]
    given = {
        name: _layer_vector(V, name, widths, real=True, batch=True) for name, V in vectors.items()
    }
    shape = _broadcast_vectors(batch, given, "W")
    if shape != batch:
        W = [np.broadcast_to(z, shape + z.shape[-2:]) for z in W]
        frame = BalancedFrame.from_valid(W, verify=False)
    rows = [W] + [
        frame.tangent_projection_unchecked([np.broadcast_to(z, shape + z.shape[-2:]) for z in V])
        for V in given.values()
    ]
    B = int(np.prod(shape, dtype=int))
    y0 = np.stack([_pack_rows([z.reshape((B,) + z.shape[-2:]) for z in row]) for row in rows])
    return y0, widths, shape


def _unpacked(y: np.ndarray, widths: tuple[int, ...], batch: tuple[int, ...]) -> list[np.ndarray]:
    """The layers (*batch, d_{k+1}, d_k) of packed networks y (B, P) (copies)."""
    return [np.array(z.reshape(batch + z.shape[-2:])) for z in _unpack_rows(y, widths)]


_BALANCED_LAYERS_FIELDS = (_balanced_layers_rate, _balanced_layers_settle)


def _balanced_exp_layers(W, V, n_steps: int, velocity: bool, rtol: float, mesh=None):
    y0, widths, batch = _balanced_state(W, V=V)
    if mesh is not None:
        levels = _batch_meshes(mesh, batch)
        y = _packed_flow(y0, widths, *_BALANCED_LAYERS_FIELDS, levels, batched=True)
    else:
        y = _packed_levels(y0, widths, *_BALANCED_LAYERS_FIELDS, n_steps, rtol, batch)[1]
    W1, V1 = (_unpacked(row, widths, batch) for row in y)
    return (W1, V1) if velocity else W1


def balanced_exp_mesh(
    W: list[np.ndarray],
    V: list[np.ndarray],
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    *,
    rtol: float | None = None,
) -> tuple[int, ...] | np.ndarray:
    r"""The mesh that the step-controlled :func:`balanced_exp` chooses at (W, V).

    The levels :math:`k_i` (base step i of size 1/``n_steps`` cut into :math:`2^{k_i}`
    RK4 substeps) of the step control (module docstring, (C)); ``balanced_exp(W, V,
    n_steps, mesh=balanced_exp_mesh(W, V, n_steps, rtol=rtol))`` is
    ``balanced_exp(W, V, n_steps, rtol=rtol)``. Cost: one controlled ``exp``. A batch
    of networks (layers with leading batch axes) gets one mesh per network, chosen as
    for that network alone.

    Parameters
    ----------
    W : list of N layers, shapes (d_{k+1}, d_k) or (..., d_{k+1}, d_k)
        Full-rank balanced network of general widths, or a batch of them (the same
        leading batch axes on every layer).
    V : list of N layers, batch axes broadcastable with W's
        Tangent vector(s) at W (their normal part is removed first).
    n_steps : int
        Base steps on [0, 1].
    rtol : float, optional
        As in :func:`balanced_exp`.

    Returns
    -------
    tuple of int, or ndarray of int, shape (..., n_steps)
        One network: ``n_steps`` levels, each in 0..6. A batch: an integer array whose
        row ``[i, ...]`` is the mesh of network ``i`` (the broadcast batch shape of W
        and V, then the levels), accepted as is by ``balanced_exp(mesh=...)``.

    Raises
    ------
    ValueError
        As :func:`balanced_exp`; TypeError if W is not a list of layers.

    References
    ----------
    - [G] G. Menon, *The geometry of the deep linear network* (the balanced manifold,
      eq. 4.5-4.6).
    """
    if not _is_list(W):
        raise TypeError(f"W must be a list of layers (general widths), got {type(W).__name__}")
    n_steps, rtol = _checked_steps(n_steps), _checked_rtol(rtol, W)
    y0, widths, batch = _balanced_state(W, V=V)
    levels = _packed_levels(y0, widths, *_BALANCED_LAYERS_FIELDS, n_steps, rtol, batch)[0]
    if not batch:
        return tuple(int(k) for k in levels[0])
    return levels.reshape(batch + (n_steps,))


def _checked_mesh(mesh, n_steps: int) -> tuple[int, ...] | np.ndarray | None:
    """A held mesh: a tuple of ``n_steps`` levels, or an integer array (..., n_steps)
    of one mesh per network (:func:`balanced_exp_mesh` of a batch), levels in 0..6."""
    if mesh is None:
        return None
    if isinstance(mesh, np.ndarray):
        if mesh.dtype.kind not in "iu" or mesh.ndim == 0:
            raise TypeError(
                f"mesh must be a tuple of int levels or an integer array (..., n_steps), got "
                f"an array of dtype {mesh.dtype} and shape {mesh.shape}"
            )
        levels = mesh
    elif isinstance(mesh, (tuple, list)) and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in mesh
    ):
        levels = np.array(mesh, dtype=int)
    else:
        raise TypeError(f"mesh must be a tuple of int levels, got {mesh!r}")
    if levels.shape[-1:] != (n_steps,) or not np.all((levels >= 0) & (levels <= _MAX_LEVEL)):
        shown = tuple(mesh) if levels.ndim == 1 else f"an array of shape {levels.shape}"
        raise ValueError(
            f"mesh must hold n_steps = {n_steps} levels in 0..{_MAX_LEVEL}, got {shown}"
        )
    return tuple(int(k) for k in levels) if levels.ndim == 1 else levels.astype(int)


def _batch_meshes(mesh: tuple[int, ...] | np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """One mesh per network (B, n) of the batch shape ``batch``: a tuple for all, or
    meshes (..., n) broadcast to the batch."""
    levels = np.asarray(mesh)
    try:
        levels = np.broadcast_to(levels, batch + levels.shape[-1:])
    except ValueError:
        raise ValueError(
            f"mesh has batch axes {levels.shape[:-1]}, which do not broadcast to the batch "
            f"of networks {batch}"
        ) from None
    return levels.reshape(-1, levels.shape[-1])


def _balanced_transport_layers(W, V, U, n_steps: int, rtol: float) -> list[np.ndarray]:
    y0, widths, batch = _balanced_state(W, V=V, U=U)
    levels = _packed_levels(y0[:2], widths, *_BALANCED_LAYERS_FIELDS, n_steps, rtol, batch)[0]
    y = _packed_flow(y0, widths, *_BALANCED_LAYERS_FIELDS, levels, batched=True)
    return _unpacked(y[2], widths, batch)


def _balanced_log_layers(
    W, T, n_steps: int, tol: float, max_iter: int, rtol: float
) -> list[np.ndarray]:
    W, frame = _balanced_layers_point(W, "W")
    if not _is_list(T):
        raise TypeError(
            f"T must be a list of layers like W (general widths), got {type(T).__name__}"
        )
    T = check_balanced(T, tol=1e-6, name="T")
    widths = frame.widths
    if widths_of_layers(T) != widths:
        raise ValueError(f"T must have the widths of W, {widths}, got {widths_of_layers(T)}")
    _check_same_component_layers(W, T)

    fields = (_balanced_layers_rate, _balanced_layers_settle, True)

    def problem(Wp: np.ndarray) -> _LogProblem:
        fr = BalancedFrame.from_valid(unpack_layers(Wp, widths))

        def project_all(E):
            return np.stack(
                [pack_layers(fr.tangent_projection_unchecked(unpack_layers(e, widths))) for e in E]
            )

        basis = _tangent_basis(project_all, Wp.size, fr.dim)
        project = fr.tangent_projection_unchecked
        return _packed_problem(
            Wp,
            widths,
            basis,
            project,
            fields,
            restore_layers,
            n_steps,
            _balanced_frames_path,
            lambda Ap: _balanced_straightener(Ap, widths),
            rtol,
        )

    v = _symmetric_log(pack_layers(W), pack_layers(T), problem, tol, max_iter)
    return [z.copy() for z in unpack_layers(v, widths)]


def _balanced_straightener(Wp: np.ndarray, widths: tuple[int, ...]):
    """T -> (guess, path) for the log at the packed balanced network Wp: the initial
    velocity of the discrete geodesic from Wp to T (:func:`_discrete_geodesic`; one-sided
    second-order difference, projected onto the tangent space) and the polygon path along
    it (segments on :func:`_balanced_frames_path`). Far random pairs of widths (3, 5, 4, 2)
    on which continuation along the frames path stops at a fold (a conjugate point of the
    continued geodesic) converge from this guess."""

    def between(A, B):
        path = _balanced_frames_path(unpack_layers(A, widths), unpack_layers(B, widths))
        return lambda s: pack_layers(path(s))

    def relax(P):
        inner = _unpack_rows(P[1:-1], widths)
        frame = BalancedFrame.from_valid(inner, verify=False)
        step = frame.tangent_projection_unchecked(
            _unpack_rows(_RELAX * (P[1:-1] - 0.5 * (P[:-2] + P[2:])), widths)
        )
        return _pack_rows(restore_layers([a - b for a, b in zip(inner, step, strict=True)]))

    def straighten(Tp):
        P = _discrete_geodesic(
            Wp, Tp, lambda a, b: between(a, b)(0.5), relax, _STRAIGHTEN_LEVELS, _STRAIGHTEN_SWEEPS
        )
        K = P.shape[0] - 1
        frame = BalancedFrame.from_valid(unpack_layers(Wp, widths))
        d = 0.5 * K * (-3.0 * P[0] + 4.0 * P[1] - P[2])
        guess = pack_layers(frame.tangent_projection_unchecked(unpack_layers(d, widths)))
        return guess, _polygon_path(P, between)

    return straighten


# -- fiber, general widths ---------------------------------------------------


def _chain_fiber_factors(W: list[np.ndarray]):
    """Adjoint factors A_{p+1}^*, B_{p-1}^* and the dense (m n) x (m n) K of the fiber at W
    (layers with leading batch axes: K of shape (..., m n, m n))."""
    A, B = chain_partial_products(W)
    A, B = A[1:], B[:-1]  # layer p: A_{p+1} (m, d_p), B_{p-1} (d_{p-1}, n)
    Ah, Bh = [conj_transpose(a) for a in A], [conj_transpose(b) for b in B]
    L = np.stack([a @ ah for a, ah in zip(A, Ah, strict=True)], axis=-3)
    R = np.stack([bh @ b for bh, b in zip(Bh, B, strict=True)], axis=-3)
    m, n = L.shape[-1], R.shape[-1]
    K = np.einsum("...pac,...peb->...abce", L, R).reshape(L.shape[:-3] + (m * n, m * n))
    return A, B, Ah, Bh, K


def _chain_adjoint(Ah, Bh, y: np.ndarray) -> list[np.ndarray]:
    return [ah @ y @ bh for ah, bh in zip(Ah, Bh, strict=True)]


def _fiber_layers_rate(W, V, *U):
    """(W, V, U)' = (V, II(V, V), II(V, U)) on the fiber through W: one solve with K.
    Vectorized over leading batch axes of the layers."""
    _, _, Ah, Bh, K = _chain_fiber_factors(W)
    shape = (Ah[0].shape[-1], Bh[0].shape[-2])
    batch = K.shape[:-2]

    def q(Z):
        r = -chain_second_derivative(W, Z).reshape(batch + (-1, 1))
        return _chain_adjoint(Ah, Bh, np.linalg.solve(K, r).reshape(batch + shape))

    out = [V, q(V)]
    if U:
        out.append(_polarized_layers(q, V, U[0]))
    return out


def _fiber_layers_settler(X: np.ndarray):
    """Restore onto X, then project each vector with one refined dense solve. Layers with
    batch axes (B, d_{k+1}, d_k) (X (d_N, d_0), or one per network (B, d_N, d_0)): all
    networks at once (the batched restore, solves with the stack of K)."""

    def settle(W, *vectors):
        batched = W[0].ndim > 2
        W = restore_chain_layers(W, X) if batched else fiber_restore(W, X)
        A, B, Ah, Bh, K = _chain_fiber_factors(W)
        out = []
        for V in vectors:
            for _ in range(2):
                r = sum(a @ v @ b for a, v, b in zip(A, V, B, strict=True))
                rhs = r.reshape(r.shape[:-2] + (-1, 1)) if batched else r.reshape(-1)
                y = np.linalg.solve(K, rhs).reshape(r.shape)
                V = [v - n for v, n in zip(V, _chain_adjoint(Ah, Bh, y), strict=True)]
            out.append(V)
        return [W, *out]

    return settle


def _fiber_layers_point(W, X) -> tuple[list[np.ndarray], np.ndarray]:
    """Validate a network of general widths and the end-to-end matrix of its fiber."""
    W = as_fiber_layers(W)
    shape = (W[-1].shape[0], W[0].shape[1])
    X = chain_product(W).copy() if X is None else as_array(X, "X", shape, real=False)
    return W, X


def _fiber_networks(W, X) -> tuple[list[np.ndarray], np.ndarray, tuple[int, ...]]:
    """Validate a batch of networks of general widths (layers (..., d_{k+1}, d_k)), each
    with a full-rank end-to-end matrix (the first failing network named by its batch
    index), and the end-to-end matrices of their fibers: X (d_N, d_0) for all, or one per
    network (..., d_N, d_0) (default: the products of W); the broadcast batch shape."""
    W = as_layer_sequence(W, "W", real=False, batch=True)
    batch, shape = W[0].shape[:-2], (W[-1].shape[-2], W[0].shape[-1])
    P = chain_product(W)
    s = np.linalg.svd(P, compute_uv=False)
    for index in np.argwhere(~full_rank_mask(s))[:1]:
        index = tuple(int(a) for a in index)
        check_full_rank(s[index], f"end-to-end matrix of W (network {index} of the batch)")
    if X is None:
        return W, P.copy(), batch
    X = as_array(X, "X", shape, real=False, batch=True)
    try:
        batch = np.broadcast_shapes(batch, X.shape[:-2])
    except ValueError:
        raise ValueError(
            f"X has batch axes {X.shape[:-2]}, which do not broadcast with {batch}, those of W"
        ) from None
    return W, X, batch


def _fiber_state(W, X, **vectors):
    """Networks W of general widths on their fibers, one or a batch, and vectors at them
    (each projected onto the tangent space), validated and broadcast: one network as the
    list of layers [W, *vectors] and X; a batch as packed states (1 + len(vectors), B, P),
    X (d_N, d_0) or (B, d_N, d_0), the widths and the batch shape."""
    if not any(_is_list(Z) and any(np.ndim(z) > 2 for z in Z) for Z in (W, *vectors.values())):
        W, X = _fiber_layers_point(W, X)
        solver, widths = FiberNormalSolver(W), widths_of_layers(W)
        given = [_layer_vector(V, name, widths, real=False) for name, V in vectors.items()]
        return [W, *(solver.project(V) for V in given)], X, widths, None
    before = "W" if X is None or np.ndim(X) < 3 else "W and X"
    W, X, shape = _fiber_networks(W, X)
    widths = (W[0].shape[-1], *(z.shape[-2] for z in W))
    given = {n: _layer_vector(V, n, widths, real=False, batch=True) for n, V in vectors.items()}
    shape = _broadcast_vectors(shape, given, before)
    W = [np.broadcast_to(z, shape + z.shape[-2:]) for z in W]
    rows = [W] + [
        project_layers(W, [np.broadcast_to(z, shape + z.shape[-2:]) for z in V])
        for V in given.values()
    ]
    B = int(np.prod(shape, dtype=int))
    dtype = np.result_type(X, *(z for row in rows for z in row))
    y0 = np.stack([_pack_rows([z.reshape((B,) + z.shape[-2:]) for z in row]) for row in rows])
    if X.ndim > 2:
        X = np.broadcast_to(X, shape + X.shape[-2:]).reshape((B,) + X.shape[-2:])
        X = X[0] if B == 1 else X  # one network alone: the single-network fields
    return y0.astype(dtype, copy=False), X, widths, shape


def _fiber_flow(W, X, n_steps: int, **vectors):
    """The states at t = 1 of the fiber geodesic from (W, V) (and the transported U):
    lists of layers, of one network or with the broadcast batch axes."""
    state, X, widths, batch = _fiber_state(W, X, **vectors)
    fields = (_fiber_layers_rate, _fiber_layers_settler(X))
    if batch is None:
        return _packed_rk4(state, *fields, n_steps)
    y = _packed_flow(state, widths, *fields, n_steps, batched=True)
    return [_unpacked(row, widths, batch) for row in y]


def _fiber_exp_layers(W, V, X, n_steps: int, velocity: bool):
    W1, V1 = _fiber_flow(W, X, n_steps, V=V)
    return (W1, V1) if velocity else W1


def _fiber_transport_layers(W, V, U, X, n_steps: int) -> list[np.ndarray]:
    return _fiber_flow(W, X, n_steps, V=V, U=U)[2]


def _fiber_log_layers(W, T, X, n_steps: int, tol: float, max_iter: int) -> list[np.ndarray]:
    W, X = _fiber_layers_point(W, X)
    widths = widths_of_layers(W)
    if not _is_list(T):
        raise TypeError(
            f"T must be a list of layers like W (general widths), got {type(T).__name__}"
        )
    T = as_layer_sequence(T, "T", widths=widths, batch=False)
    scale = max(1.0, float(np.linalg.norm(X)))
    if np.linalg.norm(chain_product(T) - X) > 1e-6 * scale:
        raise ValueError("T is not on the fiber of W (its end-to-end product differs from X)")
    _check_same_component_layers(W, T)
    complex_ = any(np.iscomplexobj(z) for z in (*W, *T, X))
    dtype = np.complex128 if complex_ else np.float64
    factor = 2 if complex_ else 1
    Wp, Tp = pack_layers(W).astype(dtype), pack_layers(T).astype(dtype)
    m, dim = factor * Wp.size, factor * (Wp.size - X.size)
    fields = (_fiber_layers_rate, _fiber_layers_settler(X), True)

    def problem(Pp: np.ndarray) -> _LogProblem:
        solver = FiberNormalSolver(unpack_layers(Pp, widths))

        def project_all(E):
            rows = [
                solver.project(unpack_layers(_from_real(e, Pp.shape, complex_), widths)) for e in E
            ]
            return np.stack([_to_real(pack_layers(z).astype(dtype)) for z in rows])

        basis = _tangent_basis(project_all, m, dim)

        def restore(layers):
            return fiber_restore(layers, X)

        return _packed_problem(Pp, widths, basis, solver.project, fields, restore, n_steps)

    v = _symmetric_log(Wp, Tp, problem, tol, max_iter)
    return [z.copy() for z in unpack_layers(v, widths)]
