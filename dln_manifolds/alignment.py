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

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_array, check_count, check_positive
from ._linalg import polar_factor
from .balanced import BalancedFrame, check_balanced, horizontal_lift
from .geodesics import depth_log
from .submanifold_geodesics import DEFAULT_GEODESIC_STEPS, balanced_exp

__all__ = ["geodesic_orbit_alignment", "orbit_action", "orbit_alignment"]

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
    rotations : array_like, shape (..., N-1, d, d)
        Orthogonal :math:`R_1, \dots, R_{N-1}` (:math:`R_0 = R_N = I`); not read when N = 1.
    W : array_like, shape (..., N, d, d)
        Real network(s); the batch axes broadcast against those of ``rotations``.

    Returns
    -------
    ndarray, shape (..., N, d, d)

    Raises
    ------
    ValueError
        If the shapes disagree, an entry is not finite, or a rotation is not orthogonal
        (to 1e-8 in max-norm).
    """
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
    W : array_like, shape (N, d, d) or (..., N, d, d)
        Real network(s) to move along their orbits (usually balanced).
    W_target : array_like, shape (N, d, d) or (..., N, d, d)
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
    batch, Wp, Wt, max_sweeps, tol = _alignment_stacks(W, W_target, max_sweeps, tol)
    if not isinstance(return_rotations, bool | np.bool_):
        raise TypeError(f"return_rotations must be a bool, got {type(return_rotations).__name__}")
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
    W : array_like, shape (N, d, d) or (..., N, d, d)
        Full-rank balanced network(s) to move along their orbits.
    W_target : array_like, shape (N, d, d) or (..., N, d, d)
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
