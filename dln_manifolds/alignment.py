r"""Alignment along the :math:`O(d)^{N-1}` orbits of balanced networks.

[G] Thm 13: the end-to-end map restricted to the balanced manifold
:math:`\mathcal{M}` is a Riemannian submersion onto :math:`(\mathfrak{M}_d, g^N)`
whose fibers are the orbits of :math:`O(d)^{N-1}` acting by
:math:`W_p \mapsto R_p W_p R_{p-1}^T` (:math:`R_0 = R_N = I`, [R] eq. 1.5). The
alignment of W to a target :math:`\bar W` is the point of the orbit of W nearest
:math:`\bar W` in the Frobenius norm,

.. math::

    \min_{R \in O(d)^{N-1}} \sum_{p=1}^N |R_p W_p R_{p-1}^T - \bar W_p|_F^2
    \iff \max_R \sum_{p=1}^N \mathrm{tr}(\bar W_p^T R_p W_p R_{p-1}^T),

the ``align`` step of a fiber bundle (geomstats' ``AlignerAlgorithm``,
:class:`dln_manifolds.geomstats.OrbitAligner`). With the other rotations fixed the
objective is linear in :math:`R_k`, so the best :math:`R_k` is the orthogonal polar
factor of :math:`\bar W_k R_{k-1} W_k^T + \bar W_{k+1}^T R_{k+1} W_{k+1}` (orthogonal
Procrustes); :func:`orbit_alignment` sweeps k = 1..N-1 (block coordinate ascent, the
objective never decreases) on a whole stack of points at once.

The fiber-bundle ``align`` of geomstats asks for more: the point of the orbit
nearest :math:`\bar W` in the *geodesic* distance of :math:`\mathcal{M}` (its
``QuotientMetric`` takes the total-space log from the aligned point), i.e. the one
whose log at :math:`\bar W` is horizontal. The Frobenius optimum is only a critical
point of the chordal distance: the chord is horizontal at both ends, the log is not
(its vertical part measured at 1e-2 to 9e-2 of its norm for random pairs at
d, N = (2, 3), (3, 2)). Since the end-to-end map is a Riemannian submersion onto
:math:`(\mathfrak{M}_d, g^N)` whose fibers are the orbits ([G] Thm 13), the
geodesic optimum is the end of the horizontal geodesic over the minimizing geodesic
downstairs: :func:`geodesic_orbit_alignment` computes
:math:`C = \exp_{\bar W}(\mathrm{lift}_{\bar W}\log^{g^N}_{\bar X}(X))` and
returns the Frobenius alignment of W to C (C lies on the orbit up to the
integration error, so this only puts the result exactly on the orbit of W).

The same submersion gives the quotient's log, distance and parallel transport on the
total space without shooting upstairs ([ON]: horizontal geodesics project to
geodesics, and the shortest curves between two orbits are horizontal lifts of the
shortest curves downstairs): :func:`horizontal_log` (the horizontal lift of
:math:`\log^{g^N}`), :func:`orbit_distance` (its Frobenius norm, the distance
between orbits) and :func:`horizontal_parallel_transport` (the lift at the end of the
horizontal geodesic of the :math:`g^N` transport). geomstats' ``QuotientMetric`` of
the bundle (:class:`dln_manifolds.geomstats.BalancedManifold`, ``equip_with_quotient``)
is built on them.

General widths
--------------
Every function here also takes networks of widths :math:`(d_0, \dots, d_N)` (hidden
widths at least :math:`r = \min(d_0, d_N)`) as a list of N layers ``W[k-1]`` of shape
:math:`(d_k, d_{k-1})`, with rotations :math:`R_k \in O(d_k)` as a list, and returns lists.
The base is then the set of rank-r matrices of shape :math:`(d_N, d_0)` with :math:`g^N`,
and the same submersion route applies: :func:`horizontal_log`, :func:`orbit_distance`,
:func:`horizontal_parallel_transport` and :func:`geodesic_orbit_alignment` call the
rectangular :func:`~dln_manifolds.depth_log`, :func:`~dln_manifolds.depth_exp` and
:func:`~dln_manifolds.depth_parallel_transport` and lift horizontally. Their layers may
carry leading batch axes (the same on every layer, one network per index; the batch axes
of W and T broadcast): the :math:`g^N` solvers then run once on the whole batch, the lifts
network by network. The Frobenius alignment (:func:`orbit_alignment`, one network) sweeps
the same Procrustes steps with :math:`d_k \times d_k` rotations. A list of square layers
takes this path too (its results agree with the stack's to the RK4 error of the end
point, docs/mathematics.rst, :ref:`math-submersion`).

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [ON] B. O'Neill, *The fundamental equations of a submersion*, Michigan Math. J. 13
  (1966).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import numpy as np

from ._checks import (
    as_array,
    as_hidden_matrices,
    as_layer_sequence,
    check_count,
    check_hidden_widths,
    check_positive,
    widths_of_layers,
)
from ._linalg import chain_product, pack_layers, polar_factor
from .balanced import BalancedFrame, check_balanced, horizontal_lift, restore_layers
from .flows.integrators import integrate_flow
from .geodesics import (
    DifferentComponentsError,
    depth_exp,
    depth_log,
    depth_parallel_transport,
)
from .network import balanced_point, end_to_end_differential
from .submanifold_geodesics import DEFAULT_GEODESIC_STEPS, balanced_exp

__all__ = [
    "geodesic_orbit_alignment",
    "horizontal_log",
    "horizontal_parallel_transport",
    "orbit_action",
    "orbit_alignment",
    "orbit_distance",
]

#: relative spread of the layers' singular values below which a point counts as
#: balanced for the frame start (the default ``tol`` of :class:`BalancedFrame`)
_BALANCE_TOL = 1e-6


def _swap(A: np.ndarray) -> np.ndarray:
    return np.swapaxes(A, -1, -2)


def _orbit_action(R: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Layers R_p W_p R_{p-1}^T for padded rotations (..., N+1, d, d) and W (..., N, d, d)."""
    return R[..., 1:, :, :] @ W @ _swap(R[..., :-1, :, :])


def _pad(R: np.ndarray) -> np.ndarray:
    """(..., N-1, d, d) -> (..., N+1, d, d) with R_0 = R_N = I."""
    eye = np.broadcast_to(np.eye(R.shape[-1]), R.shape[:-3] + (1,) + R.shape[-2:])
    return np.concatenate([eye, R, eye], axis=-3)


def orbit_action(rotations, W) -> np.ndarray:
    r"""The :math:`O(d)^{N-1}` action: layer p becomes :math:`R_p W_p R_{p-1}^T` ([R] eq. 1.5).

    :func:`~dln_manifolds.group_action` restricted to orthogonal matrices (where
    :math:`R^{-1} = R^T`), vectorized over leading batch axes; its orbits in the
    balanced manifold are the fibers of the end-to-end map ([G] Thm 13).

    Parameters
    ----------
    rotations : array_like, shape (..., N-1, d, d), or list of N-1 arrays (d_k, d_k)
        Orthogonal :math:`R_1, \dots, R_{N-1}` (:math:`R_0 = R_N = I`); not read when N = 1.
    W : array_like, shape (..., N, d, d), or list of N layers (general widths)
        Real network(s); the batch axes broadcast against those of ``rotations``.

    Returns
    -------
    ndarray, shape (..., N, d, d), or list of N layers

    Raises
    ------
    ValueError
        If the shapes disagree, an entry is not finite, or a rotation is not orthogonal
        (to 1e-8 in max-norm).
    """
    if _is_layers(W):
        layers = _network(W, "W")
        if len(layers) == 1:  # the group is trivial
            return [layers[0].copy()]
        return _layers_action(_rotations_list(rotations, layers), layers)
    W = as_array(W, "W", batch=True, real=True)
    if W.ndim < 3 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"W must have shape (..., N, d, d), got shape {W.shape}")
    N, d = W.shape[-3], W.shape[-1]
    if N == 1:  # the group is trivial
        return W.copy()
    R = as_array(rotations, "rotations", (N - 1, d, d), batch=True, real=True)
    defect = np.max(np.abs(R @ _swap(R) - np.eye(d)))
    if not defect <= 1e-8:
        raise ValueError(f"rotations must be orthogonal, got |R R^T - I| = {defect:.3g}")
    try:
        np.broadcast_shapes(R.shape[:-3], W.shape[:-3])
    except ValueError:
        raise ValueError(
            f"the batch shapes of rotations {R.shape[:-3]} and W {W.shape[:-3]} do not broadcast"
        ) from None
    return _orbit_action(_pad(R), W)


def _balanced_mask(W: np.ndarray) -> np.ndarray:
    """Points of a stack (B, N, d, d) that are full rank and balanced (to ``_BALANCE_TOL``)."""
    S = np.linalg.svd(W, compute_uv=False)  # (B, N, d), descending
    lam = S[:, 0, :]
    d = W.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        rank = (lam[:, -1] > 0) & (lam[:, 0] / lam[:, -1] <= 1.0 / (d * np.finfo(float).eps))
        spread = np.max(np.abs(S - lam[:, None, :]), axis=(-2, -1)) / lam[:, 0]
    return rank & (spread <= _BALANCE_TOL)


def _frame_start(Wp: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Rotations (B, N-1, d, d) carrying the SVD frames of balanced ``Wp`` to those of ``W``.

    Exact when Wp is in the orbit of W (frames are unique up to one sign per singular
    value, shared by all layers, fixed by the outer frames Q_0 and Q_N).
    """
    Q = BalancedFrame.from_valid(W, verify=False).Q
    Qp = BalancedFrame.from_valid(Wp, verify=False).Q
    S = np.sign(np.sum(Q[:, -1] * Qp[:, -1], axis=-2) + np.sum(Q[:, 0] * Qp[:, 0], axis=-2))
    S[S == 0] = 1.0
    return (Q[:, 1:-1] * S[:, None, None, :]) @ _swap(Qp[:, 1:-1])


def _objective(Wp: np.ndarray, W: np.ndarray, R: np.ndarray) -> np.ndarray:
    r""":math:`\sum_p \langle W_p, R_p W'_p R_{p-1}^T\rangle`; padded rotations (B, N+1, d, d)."""
    return np.sum(W * _orbit_action(R, Wp), axis=(-3, -2, -1))


def _sweeps(
    Wp: np.ndarray, W: np.ndarray, R0: np.ndarray, max_sweeps: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Block coordinate ascent from R0 (B, N-1, d, d), on the whole stack at once.

    Each point stops when no rotation moves by more than ``tol`` (max-norm) in a sweep;
    the converged points are frozen (so a point's result does not depend on its batch).
    Returns the padded rotations (B, N+1, d, d) and the objective (B,).
    """
    B, N, d, _ = W.shape
    R = np.empty((B, N + 1, d, d))
    R[:, 0] = R[:, N] = np.eye(d)
    R[:, 1:N] = R0
    active = np.arange(B)
    for _ in range(max_sweeps):
        if active.size == 0:
            break
        change = np.zeros(active.size)
        Wa, Wpa = W[active], Wp[active]
        Ra = R[active]
        for k in range(1, N):
            # terms with R_k: <R_k, W_k R_{k-1} W'_k^T + W_{k+1}^T R_{k+1} W'_{k+1}>
            C = (
                Wa[:, k - 1] @ Ra[:, k - 1] @ _swap(Wpa[:, k - 1])
                + _swap(Wa[:, k]) @ Ra[:, k + 1] @ Wpa[:, k]
            )
            new = polar_factor(C)
            change = np.maximum(change, np.max(np.abs(new - Ra[:, k]), axis=(-2, -1)))
            Ra[:, k] = new
        R[active] = Ra
        active = active[change > tol]
    return R, _objective(Wp, W, R)


def _orbit_alignment(
    Wp: np.ndarray, W: np.ndarray, max_sweeps: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Unchecked core of :func:`orbit_alignment` on validated stacks (B, N, d, d), N >= 2."""
    B, N, d, _ = W.shape
    R0 = np.broadcast_to(np.eye(d), (B, N - 1, d, d)).copy()
    ok = np.flatnonzero(_balanced_mask(W) & _balanced_mask(Wp))
    # both starts in one stack: the frames (where both points are balanced), the identity
    starts = np.concatenate([R0[ok], R0]) if ok.size else R0
    if ok.size:
        starts[: ok.size] = _frame_start(Wp[ok], W[ok])
    rows = np.concatenate([ok, np.arange(B)])
    R, value = _sweeps(Wp[rows], W[rows], starts, max_sweeps, tol)
    best, best_value = R[ok.size :], value[ok.size :]
    if ok.size:
        # the frame start wins unless the identity start is better by more than rounding
        frame_R, frame_value = R[: ok.size], value[: ok.size]
        keep = ~(best_value[ok] > frame_value + 1e-12 * np.maximum(1.0, np.abs(frame_value)))
        best[ok[keep]] = frame_R[keep]
    return _orbit_action(best, Wp), best[:, 1:-1]


def _alignment_stacks(W, W_target, max_sweeps, tol):
    """Checked inputs of the alignments: (batch, W and W_target as (B, N, d, d), options)."""
    W = as_array(W, "W", batch=True, real=True)
    if W.ndim < 3 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"W must have shape (..., N, d, d), got shape {W.shape}")
    W_target = as_array(W_target, "W_target", W.shape[-3:], batch=True, real=True)
    max_sweeps = check_count(max_sweeps, "max_sweeps")
    tol = check_positive(tol, "tol")
    try:
        batch = np.broadcast_shapes(W.shape[:-3], W_target.shape[:-3])
    except ValueError:
        raise ValueError(
            f"the batch shapes of W {W.shape[:-3]} and W_target {W_target.shape[:-3]} "
            "do not broadcast"
        ) from None
    core = W.shape[-3:]
    Wp = np.broadcast_to(W, batch + core).reshape((-1,) + core)
    Wt = np.broadcast_to(W_target, batch + core).reshape((-1,) + core)
    return batch, Wp, Wt, max_sweeps, tol


def orbit_alignment(
    W,
    W_target,
    *,
    max_sweeps: int = 500,
    tol: float = 1e-13,
    return_rotations: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""The point of the :math:`O(d)^{N-1}` orbit of W nearest ``W_target`` (Frobenius).

    Maximizes :math:`\sum_p \mathrm{tr}(\bar W_p^T R_p W_p R_{p-1}^T)` over
    :math:`R \in O(d)^{N-1}` by block coordinate ascent (orthogonal Procrustes for one
    :math:`R_k` at a time, module docstring) until no rotation moves by more than
    ``tol`` in a sweep. Two starts: the SVD frames of both points when both are
    balanced (then the result is exact when W is in the orbit of ``W_target``), and the
    identity; the identity start replaces the first only if it is better by more than
    rounding. Block coordinate ascent finds a stationary point, in general the global
    maximum from these starts, but that is not guaranteed for points far apart.
    Vectorized: every point of a stack sweeps at once ([G] Thm 13 for the orbits).

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Real network(s) to move along their orbits (usually balanced); a list is one
        network of general widths.
    W_target : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Real target network(s); the batch axes broadcast against those of W.
    max_sweeps : int, default 500
        Sweeps per start.
    tol : float, default 1e-13
        Stop a point's sweeps when no rotation moves by more than ``tol`` (max-norm).
    return_rotations : bool, default False
        Also return the rotations :math:`R_1, \dots, R_{N-1}`.

    Returns
    -------
    aligned : ndarray, shape (..., N, d, d)
        :math:`R\cdot W` with layers :math:`R_p W_p R_{p-1}^T`: same end-to-end matrix and
        the same balance as W.
    rotations : ndarray, shape (..., N-1, d, d)
        Only with ``return_rotations``: orthogonal :math:`R_1, \dots, R_{N-1}`.

    Raises
    ------
    ValueError
        If W or ``W_target`` is not a finite real stack (..., N, d, d), their (N, d) or
        batch shapes disagree, or ``max_sweeps``/``tol`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from dln_manifolds import group_action, orbit_alignment, random_balanced_point
    >>> W = random_balanced_point(2, 3, seed=0)
    >>> R = np.stack([np.array([[0.0, -1.0], [1.0, 0.0]]), np.eye(2)])
    >>> bool(np.allclose(orbit_alignment(group_action(R, W), W), W))
    True
    """
    if not isinstance(return_rotations, bool | np.bool_):
        raise TypeError(f"return_rotations must be a bool, got {type(return_rotations).__name__}")
    if _is_layers(W):
        Wp = _network(W, "W")
        Wt = _network_like(W_target, "W_target", Wp)
        max_sweeps, tol = check_count(max_sweeps, "max_sweeps"), check_positive(tol, "tol")
        if len(Wp) == 1:
            aligned, R = [Wp[0].copy()], []
        else:
            aligned, R = _layers_alignment(Wp, Wt, max_sweeps, tol)
        return (aligned, R) if return_rotations else aligned
    batch, Wp, Wt, max_sweeps, tol = _alignment_stacks(W, W_target, max_sweeps, tol)
    N, d = Wp.shape[-3], Wp.shape[-1]
    core = (N, d, d)
    if N == 1:  # the group is trivial
        aligned, R = Wp.copy(), np.zeros((Wp.shape[0], 0, d, d))
    else:
        aligned, R = _orbit_alignment(Wp, Wt, max_sweeps, tol)
    aligned = aligned.reshape(batch + core)
    if return_rotations:
        return aligned, R.reshape(batch + (N - 1, d, d))
    return aligned


def _end_to_end_stack(W: np.ndarray) -> np.ndarray:
    """W_N ... W_1 for a stack (B, N, d, d)."""
    X = W[:, 0]
    for k in range(1, W.shape[1]):
        X = W[:, k] @ X
    return X


def geodesic_orbit_alignment(
    W,
    W_target,
    *,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    max_sweeps: int = 500,
    tol: float = 1e-13,
) -> np.ndarray:
    r"""The point of the :math:`O(d)^{N-1}` orbit of W nearest ``W_target`` on :math:`\mathcal{M}`.

    Nearest in the geodesic distance of the balanced manifold with the induced
    Frobenius metric (geomstats' ``align``: the log at ``W_target`` of the result is
    horizontal). With :math:`X = \phi(W)`, :math:`\bar X = \phi(\bar W)` ([G] Thm 13,
    module docstring): :math:`U = \log^{g^N}_{\bar X}(X)`
    (:func:`~dln_manifolds.depth_log`), its horizontal lift H at :math:`\bar W`
    (:func:`~dln_manifolds.horizontal_lift`), :math:`C = \exp_{\bar W}(H)`
    (:func:`~dln_manifolds.balanced_exp`, ``n_steps`` RK4 steps, so C is on the orbit
    of W up to the RK4 error), and the result is :func:`orbit_alignment` of W to C:
    exactly on the orbit of W. The optimum is global whenever ``depth_log`` returns
    the minimizing geodesic of :math:`g^N`. Where X and :math:`\bar X` lie in
    different components of GL(d), no curve of :math:`\mathcal{M}` joins the orbit to
    :math:`\bar W` (every point is at distance inf) and the Frobenius alignment is
    returned. Vectorized over stacks (``depth_log`` and the RK4 run on the whole stack).

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Full-rank balanced network(s) to move along their orbits; a list is a network of
        general widths (its layers may carry batch axes, module section *General widths*).
    W_target : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Full-rank balanced target(s); the batch axes broadcast against those of W.
    n_steps : int, default DEFAULT_GEODESIC_STEPS
        RK4 steps of the horizontal geodesic (the default of ``balanced_exp``/``log``).
    max_sweeps, tol
        Of the final :func:`orbit_alignment`.

    Returns
    -------
    ndarray, shape (..., N, d, d)
        :math:`R\cdot W`: same end-to-end matrix and the same balance as W.

    Raises
    ------
    ValueError
        If W or ``W_target`` is not a finite real stack (..., N, d, d), their shapes
        disagree, ``W_target`` is not balanced and full rank, or an option is invalid.
    dln_manifolds.LogConvergenceError
        If the logarithm of :math:`g^N` does not converge.

    Examples
    --------
    >>> import numpy as np
    >>> from dln_manifolds import geodesic_orbit_alignment, random_balanced_point
    >>> from dln_manifolds import vertical_projection
    >>> from dln_manifolds.submanifold_geodesics import balanced_log
    >>> W, T = random_balanced_point(2, 3, seed=6), random_balanced_point(2, 3, seed=1006)
    >>> A = geodesic_orbit_alignment(W, T)
    >>> V = balanced_log(T, A)
    >>> bool(np.linalg.norm(vertical_projection(T, V)) < 1e-6 * np.linalg.norm(V))
    True
    """
    if _is_layers(W):
        return _layers_geodesic_alignment(W, W_target, n_steps, max_sweeps, tol)
    batch, Wp, Wt, max_sweeps, tol = _alignment_stacks(W, W_target, max_sweeps, tol)
    n_steps = check_count(n_steps, "n_steps")
    N, d = Wp.shape[-3], Wp.shape[-1]
    core = (N, d, d)
    if N == 1:  # the group is trivial
        return Wp.copy().reshape(batch + core)
    for target in Wt:
        check_balanced(target, tol=1e-6, name="W_target")
    X, Y = _end_to_end_stack(Wp), _end_to_end_stack(Wt)
    same = np.flatnonzero(np.linalg.slogdet(X)[0] == np.linalg.slogdet(Y)[0])
    C = Wt.copy()  # rows in different components keep the Frobenius alignment
    if same.size:
        U = depth_log(Y[same], X[same], N, names=("the target's end-to-end", "W's end-to-end"))
        H = horizontal_lift(Wt[same], U)
        C[same] = balanced_exp(Wt[same], H, n_steps)
    aligned, _ = _orbit_alignment(Wp, C, max_sweeps, tol)
    return aligned.reshape(batch + core)


# ---------------------------------------------------------------------------
# Horizontal geodesics: log, distance and transport of the quotient, lifted
# ---------------------------------------------------------------------------


def _balanced_stacks(W, T) -> tuple[tuple, np.ndarray, np.ndarray]:
    """Validated full-rank balanced stacks W, T broadcast to (B, N, d, d), with the batch."""
    a, b = "W", "T"
    W = as_array(W, a, batch=True, real=True)
    if W.ndim < 3 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"{a} must have shape (..., N, d, d), got shape {W.shape}")
    T = as_array(T, b, W.shape[-3:], batch=True, real=True)
    try:
        batch = np.broadcast_shapes(W.shape[:-3], T.shape[:-3])
    except ValueError:
        raise ValueError(
            f"the batch shapes of {a} {W.shape[:-3]} and {b} {T.shape[:-3]} do not broadcast"
        ) from None
    core = W.shape[-3:]
    Wf = np.broadcast_to(W, batch + core).reshape((-1,) + core)
    Tf = np.broadcast_to(T, batch + core).reshape((-1,) + core)
    for name, A in ((a, Wf), (b, Tf)):
        if not np.all(_balanced_mask(A)):
            raise ValueError(
                f"{name} must be full-rank balanced point(s): the layers' singular values must "
                f"agree to {_BALANCE_TOL:g} (relative) and be nonzero"
            )
    return batch, Wf, Tf


def horizontal_log(
    W, T, *, names: tuple[str, str] = ("phi(W)", "phi(T)"), **log_options
) -> np.ndarray:
    r"""Initial velocity at W of the horizontal geodesic from W to the orbit of T.

    The end-to-end map :math:`\phi: \mathcal{M} \to (\mathfrak{M}_d, g^N)` is a
    Riemannian submersion whose fibers are the :math:`O(d)^{N-1}` orbits ([G] Thm 13),
    so horizontal geodesics of :math:`\mathcal{M}` project to geodesics of :math:`g^N`
    and the shortest curves from W to the orbit :math:`O_T` are the horizontal lifts of
    the shortest curves from :math:`X = \phi(W)` to :math:`Y = \phi(T)` ([ON] Lemma 1,
    Cor. 2). The velocity is therefore

    .. math::

        H = \mathrm{lift}_W\big(\log^{g^N}_X Y\big), \qquad
        d\phi_W(H) = \log^{g^N}_X Y, \qquad |H|_F = d_{g^N}(X, Y),

    with :func:`~dln_manifolds.depth_log` and :func:`~dln_manifolds.horizontal_lift`:
    the log at W of :math:`\mathcal{M}` to the point of :math:`O_T` nearest W
    (:func:`geodesic_orbit_alignment`), without shooting upstairs. This is the total-space
    side of geomstats' ``QuotientMetric.log``, which returns :math:`d\phi_W(H)`.
    Vectorized over stacks.

    Parameters
    ----------
    W, T : array_like, shape (N, d, d) or (..., N, d, d), or lists of N layers
        Full-rank balanced points (batch axes broadcast). Only :math:`\phi(T)` enters.
        Lists: networks of general widths (layers with optional leading batch axes).
    names : (str, str)
        Names of :math:`\phi(W)` and :math:`\phi(T)` in the errors of the log downstairs
        (adapters pass their own argument names).
    **log_options
        Passed to :func:`~dln_manifolds.depth_log` (``tol``, ``rtol``, ``atol``,
        ``n_steps``, ``max_iter``, ``max_steps``, ``singular_tol``), for lists of layers
        too (rectangular :math:`\phi(W)` when :math:`d_0 \ne d_N`).

    Returns
    -------
    ndarray, shape (..., N, d, d)
        Horizontal tangent vector(s) at W.

    Raises
    ------
    dln_manifolds.DifferentComponentsError
        If :math:`\det\phi(W)` and :math:`\det\phi(T)` have different signs (no curve of
        :math:`\mathcal{M}` joins the orbits).
    dln_manifolds.LogConvergenceError
        If the logarithm of :math:`g^N` does not converge.
    ValueError
        If W or T is not a finite real full-rank balanced stack, or the shapes disagree.

    Examples
    --------
    >>> import numpy as np
    >>> from dln_manifolds import end_to_end, horizontal_log, random_balanced_point
    >>> from dln_manifolds.submanifold_geodesics import balanced_exp
    >>> W, T = random_balanced_point(2, 3, seed=6), random_balanced_point(2, 3, seed=1006)
    >>> H = horizontal_log(W, T)
    >>> end = balanced_exp(W, H, 80)  # on the orbit of T, to the RK4 error
    >>> bool(np.allclose(end_to_end(end), end_to_end(T), atol=1e-7))
    True
    """
    if _is_layers(W):
        return _layers_horizontal_log(W, T, names, log_options)
    batch, Wf, Tf = _balanced_stacks(W, T)
    N, d = Wf.shape[-3], Wf.shape[-1]
    X, Y = (_end_to_end_stack(A).reshape(batch + (d, d)) for A in (Wf, Tf))
    U = depth_log(X, Y, N, names=tuple(names), **log_options)  # errors index the batch
    return horizontal_lift(Wf, U.reshape(-1, d, d)).reshape(batch + Wf.shape[-3:])


def orbit_distance(
    W, T, *, names: tuple[str, str] = ("phi(W)", "phi(T)"), **log_options
) -> float | np.ndarray:
    r"""Distance in :math:`\mathcal{M}` between the orbits of W and T: :math:`|H|_F`.

    H is :func:`horizontal_log` (W, T); by [G] Thm 13 and [ON] this is the distance of
    :math:`(\mathfrak{M}_d, g^N)` between :math:`\phi(W)` and :math:`\phi(T)`, here
    computed as the Frobenius norm of the horizontal lift (not with
    :math:`g^N`): the squared distance of geomstats' ``QuotientMetric`` (the total-space
    distance from W to the aligned T). ``inf`` where the end-to-end matrices lie in
    different components of GL(d), as :func:`~dln_manifolds.depth_distance`.

    Parameters
    ----------
    W, T : array_like, shape (N, d, d) or (..., N, d, d), or lists of N layers
        Full-rank balanced points (batch axes broadcast); lists: networks of general
        widths (inf when d_0 = d_N and the determinants of the end-to-end matrices have
        opposite signs).
    names : (str, str)
        Names of :math:`\phi(W)` and :math:`\phi(T)` in the errors of the log downstairs.
    **log_options
        Passed to :func:`~dln_manifolds.depth_log`.

    Returns
    -------
    float or ndarray, shape (...)

    Raises
    ------
    dln_manifolds.LogConvergenceError
        If the logarithm of :math:`g^N` does not converge for a pair in one component.
    ValueError
        As :func:`horizontal_log`.
    """
    if _is_layers(W):
        return _layers_orbit_distance(W, T, names, log_options)
    batch, Wf, Tf = _balanced_stacks(W, T)
    X, Y = _end_to_end_stack(Wf), _end_to_end_stack(Tf)
    same = np.flatnonzero(np.linalg.slogdet(X)[0] == np.linalg.slogdet(Y)[0])
    out = np.full(Wf.shape[0], np.inf)
    if same.size:
        U = depth_log(X[same], Y[same], Wf.shape[-3], names=tuple(names), **log_options)
        H = horizontal_lift(Wf[same], U)
        out[same] = np.sqrt(np.sum(H * H, axis=(-3, -2, -1)))
    out = out.reshape(batch)
    return float(out) if out.ndim == 0 else out


def horizontal_parallel_transport(
    W,
    V,
    U,
    *,
    n_steps: int = DEFAULT_GEODESIC_STEPS,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    return_end_point: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Parallel transport of the quotient :math:`(\mathfrak{M}_d, g^N)` in horizontal lifts.

    For horizontal V and U at W, with :math:`X = \phi(W)`: the horizontal geodesic
    :math:`\gamma(t) = \exp_W(tV)` of :math:`\mathcal{M}` lies over the
    :math:`g^N` geodesic :math:`\exp_X(t\,d\phi_W V)` ([G] Thm 13, [ON]), and the
    result is the horizontal lift at :math:`\gamma(1)` of the :math:`g^N` parallel
    transport of :math:`d\phi_W U` along it
    (:func:`~dln_manifolds.depth_parallel_transport`):

    .. math::

        U_1 = \mathrm{lift}_{\gamma(1)}\big(P^{g^N}_{X \to X_1}\, d\phi_W U\big), \qquad
        d\phi_{\gamma(1)} U_1 = P^{g^N}\, d\phi_W U .

    U_1 is horizontal, :math:`|U_1|_F = |U|_F` (transport and lift are isometries) and
    V goes to the velocity :math:`\dot\gamma(1)`. It is *not* the Levi-Civita transport
    of :math:`\mathcal{M}`
    (:func:`~dln_manifolds.submanifold_geodesics.balanced_parallel_transport`): the
    horizontal lift U(t) of a parallel field of :math:`g^N` has
    :math:`\nabla_{\dot\gamma} U = \mathcal{A}_{\dot\gamma} U`, vertical (O'Neill's
    tensor A, [ON] Lemma 2), and the transport of :math:`\mathcal{M}` leaves the
    horizontal space in general. This is the transport of the quotient in horizontal
    lifts, which geomstats' ``QuotientMetric`` pushes down.

    The end point is the RK4 end of the horizontal geodesic
    (:func:`~dln_manifolds.submanifold_geodesics.balanced_exp` (W, V, ``n_steps``))
    moved to the nearest point (:func:`orbit_alignment`) of the fiber over
    :math:`X_1 = \exp^{g^N}_X(d\phi_W V)` (:func:`~dln_manifolds.depth_exp`, adaptive to
    ``rtol``): exactly over :math:`X_1`, within the RK4 error of :math:`\gamma(1)`, so
    U_1 is horizontal there and isometric to the tolerance of the transport downstairs.
    Vectorized over stacks.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or list of N layers
        Full-rank balanced point(s); a list is a network of general widths (layers with
        optional leading batch axes; V and U lists of the same layout).
    V : array_like, broadcastable with W
        Horizontal initial velocity of the geodesic.
    U : array_like, broadcastable with W
        Horizontal vector(s) at W to transport.
    n_steps : int, default DEFAULT_GEODESIC_STEPS
        RK4 steps of the horizontal geodesic.
    rtol, atol : float
        Tolerances of :func:`~dln_manifolds.depth_parallel_transport`.
    return_end_point : bool, default False
        Also return :math:`\gamma(1)`.

    Returns
    -------
    transported : ndarray, shape of the broadcast of W, V and U
        Horizontal vectors at :math:`\gamma(1)`.
    end_point : ndarray, same shape
        Only with ``return_end_point``: :math:`\gamma(1)`.

    Raises
    ------
    ValueError
        If W is not a full-rank balanced stack, V or U is not horizontal at W (relative
        residual above 1e-8), the shapes disagree or an option is invalid.
    dln_manifolds.SingularGeodesicError
        If the geodesic reaches the singular set :math:`\det X = 0` before t = 1.
    """
    n_steps = check_count(n_steps, "n_steps")
    rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
    if not isinstance(return_end_point, bool | np.bool_):
        raise TypeError(f"return_end_point must be a bool, got {type(return_end_point).__name__}")
    if _is_layers(W):
        return _layers_transport(W, V, U, n_steps, rtol, atol, return_end_point)
    W = as_array(W, "W", batch=True, real=True)
    if W.ndim < 3 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"W must have shape (..., N, d, d), got shape {W.shape}")
    core = W.shape[-3:]
    V = as_array(V, "V", core, batch=True, real=True)
    U = as_array(U, "U", core, batch=True, real=True)
    try:
        batch = np.broadcast_shapes(W.shape[:-3], V.shape[:-3], U.shape[:-3])
    except ValueError:
        raise ValueError(
            f"the batch shapes of W {W.shape[:-3]}, V {V.shape[:-3]} and U {U.shape[:-3]} "
            "do not broadcast"
        ) from None
    Wf, Vf, Uf = (np.broadcast_to(A, batch + core).reshape((-1,) + core) for A in (W, V, U))
    if not np.all(_balanced_mask(Wf)):
        raise ValueError("W must be full-rank balanced point(s)")
    frame = BalancedFrame.from_valid(Wf)
    for name, A in (("V", Vf), ("U", Uf)):
        residual = np.sqrt(np.sum((A - frame.horizontal_projection(A)) ** 2, axis=(-3, -2, -1)))
        scale = np.sqrt(np.sum(A * A, axis=(-3, -2, -1)))
        if not np.all(residual <= 1e-8 * scale):
            raise ValueError(
                f"{name} must be horizontal at W (in (ker dphi)^perp): relative residual "
                f"{np.max(residual / np.maximum(scale, np.finfo(float).tiny)):.3g} > 1e-8"
            )
    N = core[0]
    X, Zv = _end_to_end_stack(Wf), end_to_end_differential(Wf, Vf)
    options = {"rtol": rtol, "atol": atol}
    names = ("phi(W)", "V", "U")
    Z1 = depth_parallel_transport(X, Zv, end_to_end_differential(Wf, Uf), N, names=names, **options)
    # the end of the horizontal geodesic (RK4), moved onto the exact fiber over X_1
    X1 = depth_exp(X, Zv, N, names=names[:2], **options)
    W1 = balanced_point(X1, N)
    if N > 1:
        W1, _ = _orbit_alignment(W1, balanced_exp(Wf, Vf, n_steps), 500, 1e-13)
    U1 = horizontal_lift(W1, Z1).reshape(batch + core)
    return (U1, W1.reshape(batch + core)) if return_end_point else U1


# ---------------------------------------------------------------------------
# General widths: networks given as lists of layers
# ---------------------------------------------------------------------------
#
# The group is O(d_1) x ... x O(d_{N-1}) with the same action; the fibers of the
# end-to-end map on M are its orbits, and phi: M -> (rank-r d_N x d_0 matrices, g^N) is a
# Riemannian submersion ([G] Thm 13 with the horizontal lift of BalancedFrame).


def _is_layers(W) -> bool:
    return isinstance(W, (list, tuple))


def _network(W, name: str, batch: bool = False) -> list[np.ndarray]:
    """One real network of general widths (no batch axes unless ``batch``: layers
    (..., d_k, d_{k-1})), hidden widths >= r."""
    layers = as_layer_sequence(W, name, real=True, batch=batch)
    check_hidden_widths(widths_of_layers(layers), f"widths of {name}")
    return layers


def _as_list(Z):
    """A stacked (N, d, d) array as its list of layers (square layers given beside a list)."""
    if not _is_layers(Z) and not isinstance(Z, (str, bytes)) and np.ndim(Z) == 3:
        return list(np.asarray(Z))
    return Z


def _network_like(Z, name: str, layers: list[np.ndarray]) -> list[np.ndarray]:
    return as_layer_sequence(
        _as_list(Z), name, widths=widths_of_layers(layers), real=True, batch=False
    )


def _rotations_list(R, layers: list[np.ndarray], name: str = "rotations") -> list[np.ndarray]:
    """Orthogonal R_1..R_{N-1}, R[k-1] of shape (d_k, d_k), for a network of general widths."""
    out = as_hidden_matrices(R, layers, name, "orthogonal matrices", real=True)
    for k, Rk in enumerate(out):
        defect = float(np.max(np.abs(Rk @ Rk.T - np.eye(Rk.shape[0]))))
        if not defect <= 1e-8:
            raise ValueError(f"{name}[{k}] must be orthogonal, got |R R^T - I| = {defect:.3g}")
    return out


def _layers_action(R: list[np.ndarray], W: list[np.ndarray]) -> list[np.ndarray]:
    """Layer p becomes R_p W_p R_{p-1}^T (R_0 = R_N = I), for N - 1 rotations R."""
    N = len(W)
    out = []
    for p, layer in enumerate(W):
        M = R[p] @ layer if p < N - 1 else layer.copy()
        if p > 0:
            M = M @ R[p - 1].T
        out.append(M)
    return out


def _layers_objective(Wp, Wt, R) -> float:
    return float(sum(np.sum(t * a) for t, a in zip(Wt, _layers_action(R, Wp), strict=True)))


def _layers_frame_start(Wp: list[np.ndarray], Wt: list[np.ndarray]) -> list[np.ndarray]:
    """Rotations carrying the completed SVD frames of balanced Wp to those of Wt (exact
    when Wp is in the orbit of Wt, up to the signs fixed by the outer frames)."""
    Q = BalancedFrame.from_valid(Wt, verify=False).Q
    Qp = BalancedFrame.from_valid(Wp, verify=False).Q
    widths = widths_of_layers(Wt)
    r = min(widths[0], widths[-1])
    S = np.sign(
        np.sum(Q[-1][:, :r] * Qp[-1][:, :r], axis=0) + np.sum(Q[0][:, :r] * Qp[0][:, :r], axis=0)
    )
    S[S == 0] = 1.0
    return [
        (Q[k][:, :r] * S) @ Qp[k][:, :r].T + Q[k][:, r:] @ Qp[k][:, r:].T for k in range(1, len(Wt))
    ]


def _layers_sweeps(Wp, Wt, R0, max_sweeps: int, tol: float) -> list[np.ndarray]:
    """Block coordinate ascent from R0 for one network of general widths.

    Stops when no rotation moves by more than ``tol`` (max-norm) on the spaces the layers
    see (the columns of W_k and the rows of W_{k+1}): a hidden layer wider than r leaves
    part of R_k free, where the polar factor of a rank-deficient matrix is arbitrary.
    """
    N = len(Wp)
    w = widths_of_layers(Wp)
    R = [np.eye(w[0]), *(Rk.copy() for Rk in R0), np.eye(w[-1])]
    scale = max(1.0, max(float(np.max(np.abs(layer))) for layer in Wp))
    for _ in range(max_sweeps):
        change = 0.0
        for k in range(1, N):
            C = Wt[k - 1] @ R[k - 1] @ Wp[k - 1].T + Wt[k].T @ R[k + 1] @ Wp[k]
            new = polar_factor(C)
            D = new - R[k]
            seen = max(float(np.max(np.abs(D @ Wp[k - 1]))), float(np.max(np.abs(D @ Wp[k].T))))
            change = max(change, seen / scale)
            R[k] = new
        if change <= tol:
            break
    return R[1:-1]


def _layers_alignment(Wp, Wt, max_sweeps: int, tol: float):
    """Frobenius alignment of Wp to Wt (lists, N >= 2): (aligned, rotations)."""
    w = widths_of_layers(Wp)
    R_id = _layers_sweeps(Wp, Wt, [np.eye(h) for h in w[1:-1]], max_sweeps, tol)
    best, value = R_id, _layers_objective(Wp, Wt, R_id)
    try:
        BalancedFrame.from_valid(Wp)
        BalancedFrame.from_valid(Wt)
        both = True
    except ValueError:
        both = False
    if both:
        R_fr = _layers_sweeps(Wp, Wt, _layers_frame_start(Wp, Wt), max_sweeps, tol)
        v_fr = _layers_objective(Wp, Wt, R_fr)
        # the frame start wins unless the identity start is better by more than rounding
        if not value > v_fr + 1e-12 * max(1.0, abs(v_fr)):
            best = R_fr
    return _layers_action(best, Wp), best


# -- the quotient's log, distance and transport for general widths --------------------
#
# As for stacks: the g^N geodesics downstairs (depth_log, depth_exp and
# depth_parallel_transport take the full-rank d_N x d_0 matrices, batched), lifted
# horizontally network by network (the frames of general widths take one network).
# Layers may carry leading batch axes (the same on every layer): one network per index.


def _pack_batch(layers: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([z.reshape(z.shape[:-2] + (-1,)) for z in layers], axis=-1)


def _unpack_batch(y: np.ndarray, widths: tuple[int, ...]) -> list[np.ndarray]:
    out, start = [], 0
    for k in range(len(widths) - 1):
        stop = start + widths[k + 1] * widths[k]
        out.append(y[..., start:stop].reshape(y.shape[:-1] + (widths[k + 1], widths[k])))
        start = stop
    return out


def _networks(W, name: str) -> list[np.ndarray]:
    """Real networks of general widths, layers (..., d_k, d_{k-1}), hidden widths >= r."""
    return _network(_as_list(W), name, batch=True)


def _split_networks(layers: list[np.ndarray], batch: tuple) -> list[list[np.ndarray]]:
    """The single networks of layers broadcast to the batch shape, in C order."""
    flat = [np.broadcast_to(z, batch + z.shape[-2:]).reshape((-1,) + z.shape[-2:]) for z in layers]
    return [[z[i] for z in flat] for i in range(flat[0].shape[0])]


def _join_networks(nets: list[list[np.ndarray]], batch: tuple, widths) -> list[np.ndarray]:
    N = len(widths) - 1
    if not nets:
        return [np.empty(batch + (widths[k + 1], widths[k])) for k in range(N)]
    return [np.stack([net[k] for net in nets]).reshape(batch + nets[0][k].shape) for k in range(N)]


def _balanced_networks(name: str, W, *others) -> tuple[tuple, list[list[np.ndarray]], list]:
    """Full-rank balanced networks W (and more named networks, each ``(name, value)``) of
    one set of widths, broadcast over their batch axes: (batch, networks of W, networks of
    the others). Each network is checked for balance (ValueError naming it)."""
    Wl = _networks(W, name)
    widths = widths_of_layers(Wl)
    rest = []
    for other_name, value in others:
        layers = _networks(value, other_name)
        got = widths_of_layers(layers)
        if got != widths:
            raise ValueError(f"{other_name} must have the widths of {name}, {widths}, got {got}")
        rest.append((other_name, layers))
    shapes = [Wl[0].shape[:-2]] + [layers[0].shape[:-2] for _, layers in rest]
    try:
        batch = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(
            f"the batch shapes of {name} and {', '.join(n for n, _ in rest)} {tuple(shapes)} "
            "do not broadcast"
        ) from None
    nets = _split_networks(Wl, batch)
    for net in nets:
        check_balanced(net, tol=_BALANCE_TOL, name=name)
    return batch, nets, [(n, _split_networks(layers, batch)) for n, layers in rest]


def _lift_networks(nets: list[list[np.ndarray]], Z: np.ndarray) -> list[list[np.ndarray]]:
    """Horizontal lifts of Z[i] (d_N, d_0) at the balanced networks nets[i]."""
    return [
        BalancedFrame.from_valid(net).horizontal_lift(z) for net, z in zip(nets, Z, strict=True)
    ]


def _log_options(options: dict, what: str) -> dict:
    """The options of :func:`~dln_manifolds.depth_log` for lists of layers (checked)."""
    allowed = {"tol", "rtol", "atol", "n_steps", "max_iter", "max_steps", "singular_tol"}
    extra = set(options) - allowed
    if extra:
        raise TypeError(
            f"{what} of networks given as lists of layers takes the options of depth_log "
            f"{sorted(allowed)}, got {sorted(extra)}"
        )
    out = dict(options)
    if out.get("n_steps") is not None:  # None: adaptive steps
        out["n_steps"] = check_count(out["n_steps"], "n_steps")
    for key in ("max_iter", "max_steps"):
        if key in out:
            out[key] = check_count(out[key], key)
    for key in ("tol", "rtol", "atol", "singular_tol"):
        if key in out:
            out[key] = check_positive(out[key], key)
    return out


def _layers_log(W, T, names, options, what: str):
    """(batch, networks of W, Z = log^{g^N}, mask of the pairs joined by a curve) for lists
    of layers; Z is zero where the pair lies in different components."""
    opts = _log_options(options, what)
    batch, nets, [(_, tnets)] = _balanced_networks("W", W, ("T", T))
    for net in tnets:
        check_balanced(net, tol=_BALANCE_TOL, name="T")
    widths = widths_of_layers(_networks(W, "W"))
    N, m, n = len(widths) - 1, widths[-1], widths[0]
    if not nets:
        return batch, nets, np.empty((0, m, n)), np.ones(0, dtype=bool)
    X = np.stack([chain_product(net) for net in nets])
    Y = np.stack([chain_product(net) for net in tnets])
    same = np.ones(X.shape[0], dtype=bool)
    if m == n:
        same = np.linalg.slogdet(X)[0] == np.linalg.slogdet(Y)[0]
    Z = np.zeros_like(X)
    if np.any(same):
        Z[same] = depth_log(X[same], Y[same], N, names=tuple(names), **opts)
    return batch, nets, Z, same


def _layers_horizontal_log(W, T, names, options, what="horizontal_log"):
    batch, nets, Z, same = _layers_log(W, T, names, options, what)
    if not np.all(same):
        i = int(np.argmin(same))
        where = f" (batch index {np.unravel_index(i, batch)})" if batch else ""
        raise DifferentComponentsError(
            f"{names[0]} and {names[1]} lie in different components of GL({Z.shape[-1]}) "
            f"(determinants of opposite signs){where}: no curve of the balanced manifold "
            "joins their fibers"
        )
    widths = widths_of_layers(_networks(W, "W"))
    return _join_networks(_lift_networks(nets, Z), batch, widths)


def _layers_orbit_distance(W, T, names, options):
    batch, nets, Z, same = _layers_log(W, T, names, options, "orbit_distance")
    out = np.full(len(nets), np.inf)
    for i in np.flatnonzero(same):
        H = BalancedFrame.from_valid(nets[i]).horizontal_lift(Z[i])
        out[i] = np.sqrt(sum(float(np.sum(h * h)) for h in H))
    out = out.reshape(batch)
    return float(out) if out.ndim == 0 else out


def _geodesic_flow(W: np.ndarray, H: np.ndarray, widths, n_steps: int) -> np.ndarray:
    """Ends of the geodesics of M from the packed networks W (B, P) (general widths) with
    the packed velocities H (B, P): the RK4 of
    :func:`~dln_manifolds.submanifold_geodesics.balanced_exp` (field at the restored stage
    point with the projected velocity, restore and projection after each step), for the
    whole batch at once. Returns the packed ends (B, P)."""

    def rate(y):
        frame = BalancedFrame.from_valid(restore_layers(_unpack_batch(y[0], widths)))
        V = _unpack_batch(y[1], widths)
        acc = frame.geodesic_acceleration(frame.tangent_projection_unchecked(V))
        return np.stack([y[1], _pack_batch(acc)])

    def settle(y):
        if not np.all(np.isfinite(y)):
            raise ValueError("the geodesic overflows: the tangent vector is too large")
        Wr = restore_layers(_unpack_batch(y[0], widths))
        frame = BalancedFrame.from_valid(Wr)
        V = frame.tangent_projection_unchecked(_unpack_batch(y[1], widths))
        return np.stack([_pack_batch(Wr), _pack_batch(V)])

    y0 = np.stack(np.broadcast_arrays(W, H)).astype(float)
    y = integrate_flow(
        lambda t, y: rate(y), y0, 1.0, dt=1.0 / n_steps, method="rk4", restore=settle
    ).final
    return y[0]


def _layers_transport(W, V, U, n_steps, rtol, atol, return_end_point):
    """:func:`horizontal_parallel_transport` for lists of layers (see there)."""
    batch, nets, [(_, vnets), (_, unets)] = _balanced_networks("W", W, ("V", V), ("U", U))
    widths = widths_of_layers(nets[0]) if nets else widths_of_layers(_networks(W, "W"))
    N = len(widths) - 1
    for name, vecs in (("V", vnets), ("U", unets)):
        for net, vec in zip(nets, vecs, strict=True):
            frame = BalancedFrame.from_valid(net)
            a = pack_layers(vec)
            residual = float(np.linalg.norm(a - pack_layers(frame.horizontal_projection(vec))))
            if not residual <= 1e-8 * float(np.linalg.norm(a)):
                raise ValueError(
                    f"{name} must be horizontal at W (in (ker dphi)^perp): relative residual "
                    f"{residual / max(float(np.linalg.norm(a)), np.finfo(float).tiny):.3g} > 1e-8"
                )
    if not nets:
        empty = _join_networks([], batch, widths)
        return (empty, _join_networks([], batch, widths)) if return_end_point else empty
    X = np.stack([chain_product(net) for net in nets])
    Zv = np.stack([end_to_end_differential(w, v) for w, v in zip(nets, vnets, strict=True)])
    Zu = np.stack([end_to_end_differential(w, u) for w, u in zip(nets, unets, strict=True)])
    options = {"rtol": rtol, "atol": atol}
    names = ("phi(W)", "V", "U")
    Z1 = depth_parallel_transport(X, Zv, Zu, N, names=names, **options)
    # the end of the horizontal geodesic (RK4), moved onto the exact fiber over X_1
    X1 = depth_exp(X, Zv, N, names=names[:2], **options)
    ends = _geodesic_flow(
        np.stack([pack_layers(w) for w in nets]),
        np.stack([pack_layers(v) for v in vnets]),
        widths,
        n_steps,
    )
    moved, points = [], []
    for i in range(len(nets)):
        W1 = balanced_point(X1[i], N, widths=widths)
        if N > 1:
            W1, _ = _layers_alignment(W1, _unpack_batch(ends[i], widths), 500, 1e-13)
        points.append(W1)
        moved.append(BalancedFrame.from_valid(W1).horizontal_lift(Z1[i]))
    U1 = _join_networks(moved, batch, widths)
    return (U1, _join_networks(points, batch, widths)) if return_end_point else U1


def _layers_geodesic_alignment(W, W_target, n_steps, max_sweeps, tol) -> list[np.ndarray]:
    """:func:`geodesic_orbit_alignment` for lists of layers (general widths)."""
    Wp = _networks(W, "W")
    n_steps = check_count(n_steps, "n_steps")
    max_sweeps, tol = check_count(max_sweeps, "max_sweeps"), check_positive(tol, "tol")
    batch, tnets, [(_, wnets)] = _balanced_networks("W_target", W_target, ("W", Wp))
    widths = widths_of_layers(Wp)
    N = len(widths) - 1
    if N == 1:  # the group is trivial
        return _join_networks([[net[0].copy()] for net in wnets], batch, widths)
    if not tnets:
        return _join_networks([], batch, widths)
    Xt = np.stack([chain_product(net) for net in tnets])
    Xw = np.stack([chain_product(net) for net in wnets])
    same = np.ones(Xt.shape[0], dtype=bool)
    if Xt.shape[-1] == Xt.shape[-2]:
        same = np.linalg.slogdet(Xt)[0] == np.linalg.slogdet(Xw)[0]
    centers = list(tnets)  # pairs in different components: Frobenius alignment
    idx = np.flatnonzero(same)
    if idx.size:
        Z = depth_log(Xt[idx], Xw[idx], N, names=("the target's end-to-end", "W's end-to-end"))
        H = [pack_layers(h) for h in _lift_networks([tnets[i] for i in idx], Z)]
        ends = _geodesic_flow(
            np.stack([pack_layers(tnets[i]) for i in idx]), np.stack(H), widths, n_steps
        )
        for j, i in enumerate(idx):
            centers[i] = _unpack_batch(ends[j], widths)
    out = [
        _layers_alignment(net, c, max_sweeps, tol)[0] for net, c in zip(wnets, centers, strict=True)
    ]
    return _join_networks(out, batch, widths)
