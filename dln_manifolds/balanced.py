r"""The balanced manifold :math:`\mathcal{M} = \{W_{p+1}^T W_{p+1} = W_p W_p^T\}` ([G] eq. 4.5).

Full-rank balanced weights, shape (N, d, d), input layer first, with the
metric induced by the Frobenius inner product of :math:`(\mathbb{R}^{d\times d})^N`.
:math:`\dim\mathcal{M} = d^2 + (N-1)d(d-1)/2` ([G] eq. 4.6).

SVD frames
----------
Every point of :math:`\mathcal{M}` factors as :math:`W_p = Q_p\Lambda Q_{p-1}^T`
([G] eq. 5.16) with orthogonal :math:`Q_0, \dots, Q_N` and one positive diagonal
:math:`\Lambda` shared by all layers. In these frames (hats denote
:math:`\hat Z_p = Q_p^T Z_p Q_{p-1}`) the derivative of the moment map
:math:`G_k = W_kW_k^T - W_{k+1}^TW_{k+1}` reads

.. math::

    Q_k^T\, dG_k(Z)\, Q_k = \hat Z_k\Lambda + \Lambda\hat Z_k^T
        - \hat Z_{k+1}^T\Lambda - \Lambda\hat Z_{k+1},

and the normal space is :math:`\{w_S : S_k = S_k^T\}`,
:math:`(w_S)_p = S_pW_p - W_pS_{p-1}` (:math:`S_0 = S_N = 0`; :ref:`math-balanced`). With
:math:`\hat S_k = Q_k^T S_k Q_k`, :math:`dG(w_S)` acts entrywise in (k, l) and
as a tridiagonal Toeplitz matrix along depth,

.. math::

    Q_k^T dG_k(w_S) Q_k = 2(\Lambda^2\hat S_k + \hat S_k\Lambda^2)
        - 2\Lambda(\hat S_{k-1} + \hat S_{k+1})\Lambda,

whose eigenvectors along depth are the sine vectors
:math:`\sin(k m\pi/N)` (the Chebyshev structure behind [G] Thm 14) and whose
eigenvalues are
:math:`2\big((\lambda_k-\lambda_l)^2 + 4\lambda_k\lambda_l\sin^2\tfrac{m\pi}{2N}\big) > 0`,
m = 1..N-1. They stay positive at repeated singular values: there the
constraint says that the symmetric part of the (k, l) block is constant
along depth, a well-posed condition. So the tangent projection is one
symmetric positive definite tridiagonal solve along depth per entry
(a dense sine transform for N <= 65, vectorized Thomas elimination, O(N d^2),
beyond) on top of the O(N d^3) change of frames; nothing divides by :math:`\lambda_k - \lambda_l`.

Submersion
----------
:math:`\phi(W) = W_N\cdots W_1` is a Riemannian submersion of
:math:`\mathcal{M}` onto :math:`(\mathfrak{M}_d, g^N)` ([G] Thm 13). In the
frames, :math:`Q_N^T d\phi(V)Q_0 = \sum_p \Lambda^{N-p}\hat V_p\Lambda^{p-1}`, the
horizontal space is the range of :math:`d\phi^*` ([G] Thm 1) and the vertical
space :math:`\ker d\phi\cap T_W\mathcal{M}` is the tangent space of the orbit
:math:`O_X` of :math:`O(d)^{N-1}`.

Batches
-------
:func:`balanced_restore`, :func:`balanced_retraction`, :func:`balance_error`,
:func:`balanced_frames`, :func:`balanced_tangent_projection`,
:func:`balanced_normal_multipliers`, :func:`horizontal_projection` and
:func:`vertical_projection` also take stacks of points (..., N, d, d), vectorized
with numpy over the leading axes (the samplers of :mod:`dln_manifolds.langevin` use
them on whole ensembles); the point-by-point results are the same to rounding.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ._checks import (
    as_matrix,
    as_stack,
    check_count,
    check_finite_depth,
    check_full_rank,
    check_full_rank_batch,
    check_positive,
)
from ._linalg import conj_transpose as _h
from ._linalg import haar_orthogonal, polar_factor
from .depth_metric import depth_q_and_scale, log_multiplier_from_alpha

__all__ = [
    "BalancedFrames",
    "balanced_restore",
    "balanced_retraction",
    "balance_error",
    "check_balanced",
    "random_balanced_point",
    "balanced_frames",
    "balanced_tangent_projection",
    "balanced_normal_multipliers",
    "balanced_weingarten",
    "balanced_riemannian_hessian",
    "horizontal_projection",
    "vertical_projection",
    "horizontal_lift",
    "balanced_orthonormal_basis",
]

_CLUSTER_GAP = 1e-3  # relative gap below which singular values share a frame block


def _stack(
    W,
    name: str = "W",
    depth: int | None = None,
    d: int | None = None,
    *,
    real: bool = True,
    batch: bool = False,
) -> np.ndarray:
    """Validate layers (N, d, d), or with ``batch`` a stack of them (..., N, d, d)."""
    shape = np.shape(W) if batch else ()
    if batch and len(shape) > 3:
        flat = as_stack(np.reshape(W, (-1,) + shape[-2:]), name, d=d)
        if depth is not None and shape[-3] != depth:
            raise ValueError(f"{name} must have {depth} layers, got {shape[-3]}")
        W = flat.reshape(shape)
    else:
        W = as_stack(W, name, depth=depth, d=d)
    if real and np.iscomplexobj(W):
        raise TypeError(f"{name} must be real; the balanced-manifold geometry is real only")
    return W


def _like(W: np.ndarray, Z, name: str, real: bool = True) -> np.ndarray:
    """Validate a vector field Z with the layers of W (and W's leading batch axes)."""
    Z = _stack(Z, name, depth=W.shape[-3], d=W.shape[-1], real=real, batch=True)
    if Z.shape != W.shape:
        raise ValueError(f"{name} must have shape {W.shape}, got {Z.shape}")
    return Z


# ---------------------------------------------------------------------------
# Points: restore map, retraction, checks, random points, frames
# ---------------------------------------------------------------------------


def balanced_restore(Y) -> np.ndarray:
    r"""Map weights near :math:`\mathcal{M}` onto :math:`\mathcal{M}` (identity on it).

    Keeps layer 1 and, for p >= 2, sets layer p to
    :math:`O_p\,(W_{p-1}W_{p-1}^*)^{1/2}` where :math:`O_p` is the orthogonal
    (unitary) polar factor of :math:`Y_p`. The result is exactly balanced,
    needs no distinct singular values, and equals Y when Y is balanced
    (:ref:`math-balanced`). Cost O(N d^3).

    Parameters
    ----------
    Y : array_like, shape (N, d, d) or (..., N, d, d)
        Full-rank layers (or a stack of such points, treated independently,
        vectorized over the leading axes).

    Returns
    -------
    ndarray, same shape as Y

    Notes
    -----
    The square root :math:`(W_{p-1}W_{p-1}^*)^{1/2} = U\Sigma U^*` is taken
    from the SVD of :math:`W_{p-1}` rather than from an eigendecomposition of
    the Gram matrix, so that small singular values keep full relative
    accuracy.
    """
    Y = _stack(Y, "Y", real=False, batch=True)
    out = np.empty_like(Y)
    out[..., 0, :, :] = Y[..., 0, :, :]
    for p in range(1, Y.shape[-3]):
        u, _, vh = np.linalg.svd(Y[..., p, :, :])
        uu, s, _ = np.linalg.svd(out[..., p - 1, :, :])
        out[..., p, :, :] = (u @ vh) @ ((uu * s[..., None, :]) @ _h(uu))
    return out


def balanced_retraction(W, V, order: int = 1) -> np.ndarray:
    r"""Retraction on :math:`\mathcal{M}`: :math:`R_W(V) = \mathrm{restore}(W + V)`.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d)
        Point of :math:`\mathcal{M}` (or a stack of points, vectorized).
    V : array_like, same shape as W
        Tangent vector at W.
    order : {1, 2}
        1: the polar restore map of :func:`balanced_restore` (first order:
        R(W, 0) = W, dR = identity on tangent vectors). 2: one extra
        tangential correction, :math:`W' = \mathrm{restore}(W+V)`,
        :math:`R_W(V) = \mathrm{restore}(W' + P_{W'}(W + V - W'))`, which removes
        the tangential part of the :math:`O(|V|^2)` error, so that
        :math:`R_W(tV) = W + tV + t^2 n + O(t^3)` with n normal: a
        second-order retraction (Hessian slope tests, trust regions). Costs
        about three times as much.

    Returns
    -------
    ndarray, same shape as W
        Balanced to rounding error, for any singular values (repeated ones
        included).
    """
    W = _stack(W, real=False, batch=True)
    V = _like(W, V, "V", real=False)
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if order == 2 and (np.iscomplexobj(W) or np.iscomplexobj(V)):
        raise TypeError("W must be real for order=2; the balanced-manifold geometry is real only")
    return retract_unchecked(W, V, order)


def retract_unchecked(W: np.ndarray, V: np.ndarray, order: int, check: bool = True) -> np.ndarray:
    """:func:`balanced_retraction` on validated stacks (internal, for the samplers).

    ``check=False`` as in :func:`frames_unchecked`.
    """
    Y = W + V
    W1 = balanced_restore(Y)
    if order == 1 or W.shape[-3] == 1:
        return W1
    Q, lam = frames_unchecked(W1, check=check)
    Th, _ = project_in_frame(to_frame(Q, Y - W1), lam)
    return balanced_restore(W1 + from_frame(Q, Th))


def balance_error(W) -> float:
    r"""Largest relative moment :math:`\max_k |G_k|_F / (|W_k|_F^2 + |W_{k+1}|_F^2)`.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d)
        Layers, or a stack of networks (then the largest value over the stack).

    Returns
    -------
    float
        0 for N = 1 and for exactly balanced weights.
    """
    W = _stack(W, real=False, batch=True)
    if W.shape[-3] == 1:
        return 0.0
    G = W[..., :-1, :, :] @ _h(W[..., :-1, :, :]) - _h(W[..., 1:, :, :]) @ W[..., 1:, :, :]
    sq = np.sum(np.abs(W) ** 2, axis=(-2, -1))
    scale = sq[..., :-1] + sq[..., 1:]
    scale = np.where(scale > 0, scale, 1.0)
    return float(np.max(np.linalg.norm(G, axis=(-2, -1)) / scale))


def check_balanced(W, tol: float = 1e-8, name: str = "W") -> np.ndarray:
    """Validate a point of :math:`\\mathcal{M}` and return it as a float64 array.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
    tol : float
        Largest accepted :func:`balance_error`.
    name : str
        Name used in error messages.

    Raises
    ------
    TypeError
        If W is not a real numeric array.
    ValueError
        If W has the wrong shape, is not balanced to ``tol`` (the message
        gives the relative moment) or is rank deficient.
    """
    W = _stack(W, name)
    tol = check_positive(tol, "tol")
    err = balance_error(W)
    if err > tol:
        raise ValueError(
            f"{name} is not on the balanced manifold: relative moment "
            f"max_k |G_k| / (|W_k|^2 + |W_k+1|^2) = {err:.3g} > tol = {tol:.3g}"
        )
    check_full_rank(np.linalg.svd(W[0], compute_uv=False), f"{name} (layer 1)")
    return W


def random_balanced_point(
    d: int, depth: int, seed=None, spread: float = 4.0, singular_values=None
) -> np.ndarray:
    r"""A random full-rank balanced point :math:`W_p = Q_p\Lambda Q_{p-1}^T` ([G] eq. 5.16).

    Parameters
    ----------
    d, depth : int
        Layer size and number of layers N.
    seed : int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Randomness, as everywhere in the package (``numpy.random.default_rng(seed)``;
        the global ``numpy.random.seed`` has no effect).
    spread : float, default 4
        Condition number bound of each layer: the singular values
        :math:`\lambda_k` are log-uniform in
        :math:`[\mathrm{spread}^{-1/2}, \mathrm{spread}^{1/2}]` (so in [1/2, 2]
        by default, and the end-to-end matrix has condition number at most
        :math:`\mathrm{spread}^N`). ``spread = 1`` gives :math:`\Lambda = I`.
    singular_values : array_like, shape (d,), optional
        Layer singular values to use instead (repeated values allowed).

    Returns
    -------
    W : ndarray, shape (N, d, d)
        The frames :math:`Q_0, \dots, Q_N` are independent and Haar distributed.
    """
    d = check_count(d, "d")
    N = check_finite_depth(depth)
    rng = np.random.default_rng(seed)
    if singular_values is None:
        spread = float(spread)
        if not np.isfinite(spread) or spread < 1:
            raise ValueError(f"spread must be a finite number >= 1, got {spread}")
        half = 0.5 * np.log(spread)
        lam = np.exp(rng.uniform(-half, half, size=d))
    else:
        lam = np.asarray(singular_values, dtype=np.float64)
        if lam.shape != (d,) or np.any(~np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(f"singular_values must be {d} positive finite numbers, got {lam!r}")
    Q = haar_orthogonal(rng, int(d), (N + 1,))
    return (Q[1:] * lam) @ _h(Q[:-1])


class BalancedFrames(NamedTuple):
    r"""SVD frames of a balanced point: :math:`W_p = Q_p\,\mathrm{diag}(\lambda)\,Q_{p-1}^T`.

    Attributes
    ----------
    Q : ndarray, shape (N + 1, d, d)
        Orthogonal frames; ``Q[p]`` is the paper's :math:`Q_p` (p = 0..N).
    lam : ndarray, shape (d,)
        Layer singular values :math:`\lambda_1 \ge \dots \ge \lambda_d > 0`.
    """

    Q: np.ndarray
    lam: np.ndarray


def balanced_frames(W, *, tol: float = 1e-6) -> BalancedFrames:
    r"""SVD frames :math:`W_p = Q_p\Lambda Q_{p-1}^T` of a balanced point ([G] eq. 5.16).

    Each layer has its own SVD :math:`W_p = U_pS_pV_p^T`; the frames are
    :math:`Q_0 = V_1`, :math:`Q_1 = U_1`, :math:`\Lambda = S_1` and, for p >= 2,
    :math:`Q_p = U_pD_p` with :math:`D_p` the orthogonal polar factor of the
    cluster-block-diagonal part of :math:`S_p(V_p^TQ_{p-1})\Lambda^{-1}`
    (since :math:`W_pQ_{p-1} = Q_p\Lambda`). Clusters are runs of singular
    values with relative gaps below ``1e-3``: inside a cluster (repeated or
    close values, where singular vectors are not determined) the frame is
    propagated from the previous layer, which is stable because the
    propagation amplifies errors by at most
    :math:`(\lambda_k/\lambda_l + \lambda_l/\lambda_k)/2 \approx 1`; between
    clusters each layer's own singular vectors are used (accurate to
    :math:`\epsilon/\text{gap} \le 10^3\epsilon`). Plain propagation
    :math:`Q_p = W_pQ_{p-1}\Lambda^{-1}` would amplify rounding errors
    geometrically along depth.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d)
        Full-rank balanced point (or a stack of points, vectorized over the
        leading axes).
    tol : float, default 1e-6
        Largest accepted relative disagreement between the singular values
        of different layers (a cheap balance check; use
        :func:`check_balanced` for the full one).

    Returns
    -------
    BalancedFrames
        ``(Q, lam)`` with Q of shape (..., N + 1, d, d) and lam of shape (..., d).

    Raises
    ------
    ValueError
        If W is rank deficient, or its layers have different singular values
        (so W is not balanced).

    Notes
    -----
    Cost: one batched SVD of the N layers and N matrix products, O(N d^3).
    """
    return frames_unchecked(_stack(W, batch=True), tol)


def frames_unchecked(W: np.ndarray, tol: float = 1e-6, check: bool = True) -> BalancedFrames:
    """:func:`balanced_frames` of validated real layers (..., N, d, d).

    ``check=False`` skips the rank and balance checks (for the samplers, whose
    proposals may be singular: they are rejected afterwards, not raised on).
    """
    N, d = W.shape[-3], W.shape[-1]
    U, S, Vh = np.linalg.svd(W)
    lam = S[..., 0, :]
    if check:
        check_full_rank_batch(lam, "W (layer 1)")
        spread = np.max(np.abs(S - lam[..., None, :]), axis=(-2, -1)) / lam[..., 0]
        if np.max(spread) > tol:
            raise ValueError(
                f"W is not balanced: the layers' singular values differ by {np.max(spread):.3g} "
                f"(relative) > tol = {tol:.3g}"
            )
    Q = np.empty(W.shape[:-3] + (N + 1, d, d))
    Q[..., 0, :, :] = _h(Vh[..., 0, :, :])
    Q[..., 1:, :, :] = U
    # distinct values: Q_p = U_p diag(s_p) with s_p = s_{p-1} sign(diag(V_p^T U_{p-1}))
    overlap = np.einsum("...pij,...pji->...pi", Vh[..., 1:, :, :], U[..., :-1, :, :])
    signs = np.cumprod(np.where(overlap < 0, -1.0, 1.0), axis=-2)
    Q[..., 2:, :, :] *= signs[..., None, :]
    # clusters (relative gaps <= _CLUSTER_GAP, repeated values included): propagate
    # Q_p = U_p D_p, D_p the polar factor of the cluster-block-diagonal part of B_p
    with np.errstate(invalid="ignore"):
        cut = lam[..., :-1] - lam[..., 1:] > _CLUSTER_GAP * lam[..., :-1]
    idx = np.flatnonzero(~cut.all(axis=-1).reshape(-1))
    if idx.size == 0 or N == 1:
        return BalancedFrames(Q, lam)
    Qc, Uc, Vhc = (a.reshape((-1,) + a.shape[-3:])[idx] for a in (Q, U, Vh))
    Sc, lc = S.reshape(-1, N, d)[idx], lam.reshape(-1, d)[idx]
    label = np.cumsum(np.pad(cut.reshape(-1, d - 1)[idx], ((0, 0), (1, 0))), axis=-1)
    block = label[:, :, None] == label[:, None, :]  # same cluster
    for p in range(2, N + 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            B = (Sc[:, p - 1, :, None] * (Vhc[:, p - 1] @ Qc[:, p - 1])) / lc[:, None, :]
        B = np.where(block & np.isfinite(B), B, 0.0)
        Qc[:, p] = Uc[:, p - 1] @ polar_factor(B)
    Q = Q.reshape((-1, N + 1, d, d))
    Q[idx] = Qc
    return BalancedFrames(Q.reshape(W.shape[:-3] + (N + 1, d, d)), lam)


def _frames_for(W, frames) -> BalancedFrames:
    if frames is None:
        return frames_unchecked(W)
    Q, lam = frames
    N, d = W.shape[-3], W.shape[-1]
    batch = W.shape[:-3]
    if np.shape(Q) != batch + (N + 1, d, d) or np.shape(lam) != batch + (d,):
        raise ValueError(
            f"frames must be (Q, lam) with shapes {batch + (N + 1, d, d)} and {batch + (d,)} "
            "for this W"
        )
    return BalancedFrames(np.asarray(Q, dtype=np.float64), np.asarray(lam, dtype=np.float64))


def to_frame(Q: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """:math:`\\hat Z_p = Q_p^T Z_p Q_{p-1}` (leading batch axes allowed)."""
    return _h(Q[..., 1:, :, :]) @ Z @ Q[..., :-1, :, :]


def from_frame(Q: np.ndarray, Zh: np.ndarray) -> np.ndarray:
    return Q[..., 1:, :, :] @ Zh @ _h(Q[..., :-1, :, :])


# ---------------------------------------------------------------------------
# Tangent and normal spaces
# ---------------------------------------------------------------------------


def _moment_derivative_hat(Zh: np.ndarray, lam: np.ndarray) -> np.ndarray:
    r""":math:`Q_k^T dG_k(Z) Q_k` from the frame components, shape (..., N-1, d, d)."""
    ZL = Zh * lam[..., None, None, :]  # Zh_p Lambda
    LZ = lam[..., None, :, None] * Zh  # Lambda Zh_p
    return ZL[..., :-1, :, :] + _h(ZL[..., :-1, :, :]) - _h(LZ[..., 1:, :, :]) - LZ[..., 1:, :, :]


_DST_MAX = 64  # largest N - 1 solved by a dense sine transform (else Thomas elimination)


@functools.lru_cache(maxsize=64)
def _sine_basis(N: int) -> tuple[np.ndarray, np.ndarray]:
    """Orthogonal DST-I matrix sqrt(2/N) sin(jm pi/N) and sin^2(m pi/2N), j, m = 1..N-1."""
    m = np.arange(1, N)
    phi = np.sqrt(2.0 / N) * np.sin(np.outer(m, m) * (np.pi / N))
    sin2 = np.sin(m * (np.pi / (2 * N))) ** 2
    phi.flags.writeable = False
    sin2.flags.writeable = False
    return phi, sin2


def _solve_multipliers(R: np.ndarray, lam: np.ndarray) -> np.ndarray:
    r"""Solve the depth-tridiagonal normal system for the frame multipliers :math:`\hat S`.

    Entrywise in (k, l): :math:`a S_j + b(S_{j-1} + S_{j+1}) = R_j`, j = 1..N-1, with
    :math:`a = 2(\lambda_k^2 + \lambda_l^2)`, :math:`b = -2\lambda_k\lambda_l`.
    For N - 1 <= 64 the system is diagonalized by the orthogonal sine matrix
    :math:`\Phi_{jm} = \sqrt{2/N}\sin(jm\pi/N)` with eigenvalues
    :math:`2((\lambda_k-\lambda_l)^2 + 4\lambda_k\lambda_l\sin^2(m\pi/2N))`, written
    without cancellation (two (N-1) x (N-1) by (N-1) x d^2 products). For deeper
    networks, vectorized LDL^T (Thomas) elimination, O(N d^2): the matrix is
    symmetric positive definite with :math:`a \ge 2|b|` (diagonally dominant),
    so elimination without pivoting is stable, also at
    :math:`\lambda_k = \lambda_l` (pivots :math:`\ge a/2`).
    """
    n = R.shape[-3]
    N = n + 1
    lk, ll = lam[..., :, None], lam[..., None, :]
    if n <= _DST_MAX:
        phi, sin2 = _sine_basis(N)
        eig = 2.0 * (
            ((lk - ll) ** 2)[..., None, :, :]
            + 4.0 * (lk * ll)[..., None, :, :] * sin2[:, None, None]
        )
        flat = R.shape[:-2] + (-1,)  # (..., n, d * d): the sine matrix acts along depth
        Rt = (phi @ R.reshape(flat)).reshape(R.shape)
        return (phi @ (Rt / eig).reshape(flat)).reshape(R.shape)
    a = 2.0 * (lk**2 + ll**2)
    b = -2.0 * lk * ll
    c = np.empty_like(R)  # c[j] = b / pivot_j
    y = np.empty_like(R)
    pivot = a
    y[..., 0, :, :] = R[..., 0, :, :] / pivot
    c[..., 0, :, :] = b / pivot
    for j in range(1, n):
        pivot = a - b * c[..., j - 1, :, :]
        c[..., j, :, :] = b / pivot
        y[..., j, :, :] = (R[..., j, :, :] - b * y[..., j - 1, :, :]) / pivot
    for j in range(n - 2, -1, -1):
        y[..., j, :, :] -= c[..., j, :, :] * y[..., j + 1, :, :]
    return y


def _normal_from_multipliers(Sh: np.ndarray, lam: np.ndarray) -> np.ndarray:
    r"""Frame components of :math:`w_S`: :math:`\hat S_p\Lambda - \Lambda\hat S_{p-1}`."""
    pad = [(0, 0)] * (Sh.ndim - 3) + [(1, 1), (0, 0), (0, 0)]
    Sp = np.pad(Sh, pad)  # S_0 = S_N = 0
    return (
        Sp[..., 1:, :, :] * lam[..., None, None, :] - lam[..., None, :, None] * Sp[..., :-1, :, :]
    )


def _in_frames(W, Z, frames) -> tuple[BalancedFrames, np.ndarray]:
    """Validate a point (or stack) W and an ambient vector Z; return W's frames and Z-hat."""
    W = _stack(W, batch=True)
    Z = _like(W, Z, "Z")
    Q, lam = _frames_for(W, frames)
    return BalancedFrames(Q, lam), to_frame(Q, Z)


def project_in_frame(Zh: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tangent part and multipliers of frame components Zh (..., N, d, d)."""
    if Zh.shape[-3] == 1:
        return Zh.copy(), np.zeros(Zh.shape[:-3] + (0,) + Zh.shape[-2:])
    Sh = _solve_multipliers(_moment_derivative_hat(Zh, lam), lam)
    return Zh - _normal_from_multipliers(Sh, lam), Sh


def balanced_tangent_projection(W, Z, *, frames: BalancedFrames | None = None) -> np.ndarray:
    r"""Orthogonal projection of an ambient vector onto :math:`T_W\mathcal{M}`.

    :math:`P_W(Z) = Z - w_S` where the symmetric multipliers :math:`S_k` solve
    :math:`dG(w_S) = dG(Z)`, decoupled in the SVD frames into one
    tridiagonal Toeplitz system along depth per entry (k, l) (module
    docstring; :ref:`math-balanced`), solved by a sine transform along depth (N <= 65) or
    vectorized Thomas elimination.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d)
        Full-rank balanced point (or a stack of points, vectorized).
    Z : array_like, same shape as W
        Ambient vector.
    frames : BalancedFrames, optional
        Precomputed :func:`balanced_frames` of W (saves N SVDs and N products).

    Returns
    -------
    ndarray, same shape as W

    Notes
    -----
    Time O(N d^3) (4N matrix products plus the frames), memory O(N d^2).
    Exact at repeated or close singular values: the depth eigenvalues
    :math:`2((\lambda_k-\lambda_l)^2 + 4\lambda_k\lambda_l\sin^2(m\pi/2N))` are at
    least :math:`8\lambda_k\lambda_l\sin^2(\pi/2N) \approx 2\pi^2\lambda_k\lambda_l/N^2`,
    so the per-entry systems have condition number O(N^2) at worst.
    """
    (Q, lam), Zh = _in_frames(W, Z, frames)
    return from_frame(Q, project_in_frame(Zh, lam)[0])


def balanced_normal_multipliers(W, Z, *, frames: BalancedFrames | None = None) -> np.ndarray:
    r"""Symmetric multipliers S of the normal part: :math:`Z - P_W(Z) = w_S`.

    :math:`(w_S)_p = S_pW_p - W_pS_{p-1}` with :math:`S_0 = S_N = 0`.

    Parameters
    ----------
    W, Z : array_like, shape (N, d, d) or (..., N, d, d)
    frames : BalancedFrames, optional

    Returns
    -------
    S : ndarray, shape (..., N - 1, d, d)
        Symmetric matrices :math:`S_1, \dots, S_{N-1}`.
    """
    (Q, lam), Zh = _in_frames(W, Z, frames)
    Sh = project_in_frame(Zh, lam)[1]
    return Q[..., 1:-1, :, :] @ Sh @ _h(Q[..., 1:-1, :, :])


def _weingarten_hat(Vh: np.ndarray, Sh: np.ndarray, lam: np.ndarray) -> np.ndarray:
    N, d = Vh.shape[0], lam.size
    Sp = np.zeros((N + 1, d, d))
    Sp[1:N] = Sh
    wS = Sp[1:] @ Vh - Vh @ Sp[:-1]  # frame components of w_S(V)
    return -project_in_frame(wS, lam)[0]


def balanced_weingarten(W, V, normal, *, frames: BalancedFrames | None = None) -> np.ndarray:
    r"""Weingarten map :math:`\mathfrak{W}_V(n) = -P_W(D_V \tilde n)` of :math:`\mathcal{M}`.

    A normal vector is :math:`n = w_S` with symmetric :math:`S_k`; extending it
    by the same S to nearby points gives :math:`D_V\tilde n = w_S(V)`, layer p
    :math:`S_pV_p - V_pS_{p-1}`, so :math:`\mathfrak{W}_V(n) = -P_W(w_S(V))`.
    The Riemannian Hessian of a function with Euclidean gradient g and
    Hessian H is :math:`P_W(H[V]) + \mathfrak{W}_V(g - P_W g)`.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Balanced point.
    V : array_like, shape (N, d, d)
        Tangent vector.
    normal : array_like, shape (N, d, d)
        Normal vector (its tangent part, if any, is ignored).
    frames : BalancedFrames, optional

    Returns
    -------
    ndarray, shape (N, d, d)
        Tangent vector.
    """
    W = _stack(W)
    V = _stack(V, "V", depth=W.shape[0], d=W.shape[1])
    normal = _stack(normal, "normal", depth=W.shape[0], d=W.shape[1])
    Q, lam = _frames_for(W, frames)
    if W.shape[0] == 1:
        return np.zeros_like(W)
    _, Sh = project_in_frame(to_frame(Q, normal), lam)
    return from_frame(Q, _weingarten_hat(to_frame(Q, V), Sh, lam))


def balanced_riemannian_hessian(
    W, egrad, ehess, V, *, frames: BalancedFrames | None = None
) -> np.ndarray:
    r"""Riemannian Hessian on :math:`\mathcal{M}`: :math:`P_W(H[V]) - P_W(w_S(V))`.

    S are the normal multipliers of the Euclidean gradient
    (:func:`balanced_normal_multipliers`); see :func:`balanced_weingarten`.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
    egrad : array_like, shape (N, d, d)
        Euclidean gradient at W.
    ehess : array_like, shape (N, d, d)
        Euclidean Hessian applied to V.
    V : array_like, shape (N, d, d)
        Tangent vector.

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W = _stack(W)
    shape = dict(depth=W.shape[0], d=W.shape[1])
    egrad = _stack(egrad, "egrad", **shape)
    ehess = _stack(ehess, "ehess", **shape)
    V = _stack(V, "V", **shape)
    Q, lam = _frames_for(W, frames)
    Hh, _ = project_in_frame(to_frame(Q, ehess), lam)
    if W.shape[0] > 1:
        _, Sh = project_in_frame(to_frame(Q, egrad), lam)
        Hh = Hh + _weingarten_hat(to_frame(Q, V), Sh, lam)
    return from_frame(Q, Hh)


# ---------------------------------------------------------------------------
# The Riemannian submersion phi : M -> (M_d, g^N)
# ---------------------------------------------------------------------------


def _lift_coefficients(lam: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Normalized lift coefficients and :math:`\log m`.

    ``c[p-1, k, l]`` :math:`= \lambda_k^{N-p}\lambda_l^{p-1} / \sqrt{m_{kl}}` with
    :math:`m_{kl} = \sum_p \lambda_k^{2(N-p)}\lambda_l^{2(p-1)}` (the multiplier
    of :math:`\mathcal{A}_{N,X}`, [G] eq. 7.13-7.14), so that
    :math:`\sum_p c_p^2 = 1`. Computed in logs: no overflow for large N.
    """
    ll = np.log(lam)
    lk, lj = ll[..., :, None], ll[..., None, :]
    q, scale = depth_q_and_scale(N)  # m_kl in the end-to-end log singular values 2N log(lam)
    log_m = log_multiplier_from_alpha(2 * N * lk, 2 * N * lj, q, scale)
    p = np.arange(1, N + 1)[:, None, None]
    c = np.exp(
        (N - p) * lk[..., None, :, :] + (p - 1) * lj[..., None, :, :] - 0.5 * log_m[..., None, :, :]
    )
    return c, log_m


def horizontal_in_frame(Zh: np.ndarray, lam: np.ndarray) -> np.ndarray:
    r"""Frame components of the horizontal part: :math:`c_p \circ \sum_q c_q \circ \hat Z_q`."""
    c, _ = _lift_coefficients(lam, Zh.shape[-3])
    return c * np.sum(c * Zh, axis=-3, keepdims=True)


def horizontal_projection(W, Z, *, frames: BalancedFrames | None = None) -> np.ndarray:
    r"""Orthogonal projection onto the horizontal space :math:`(\ker d\phi)^\perp`.

    The horizontal space is the range of :math:`d\phi^*` (which lies in
    :math:`T_W\mathcal{M}`, [G] Thm 1), so the projection is
    :math:`d\phi^*\mathcal{A}_{N,X}^{-1}d\phi(Z)`; in the frames,
    :math:`\hat h_p = c_p\circ\sum_q c_q\circ\hat Z_q` entrywise with the
    normalized coefficients :math:`c_p = \lambda_k^{N-p}\lambda_l^{p-1}/\sqrt{m_{kl}}`.
    Accepts any ambient Z.

    Parameters
    ----------
    W, Z : array_like, shape (N, d, d) or (..., N, d, d)
    frames : BalancedFrames, optional

    Returns
    -------
    ndarray, same shape as W
    """
    (Q, lam), Zh = _in_frames(W, Z, frames)
    return from_frame(Q, horizontal_in_frame(Zh, lam))


def vertical_projection(W, Z, *, frames: BalancedFrames | None = None) -> np.ndarray:
    r"""Orthogonal projection onto the vertical space :math:`\ker d\phi \cap T_W\mathcal{M}`.

    The vertical space is the tangent space of the orbit :math:`O_X` of
    :math:`O(d)^{N-1}`. :math:`P^{\mathrm{ver}} = P_W - P^{\mathrm{hor}}` (the horizontal space lies
    in :math:`T_W\mathcal{M}`). Accepts any ambient Z.

    Parameters
    ----------
    W, Z : array_like, shape (N, d, d) or (..., N, d, d)
    frames : BalancedFrames, optional

    Returns
    -------
    ndarray, same shape as W
    """
    (Q, lam), Zh = _in_frames(W, Z, frames)
    return from_frame(Q, project_in_frame(Zh, lam)[0] - horizontal_in_frame(Zh, lam))


def horizontal_lift(W, Z, *, frames: BalancedFrames | None = None) -> np.ndarray:
    r"""Horizontal lift: the horizontal H with :math:`d\phi_W(H) = Z \in T_X\mathfrak{M}_d`.

    :math:`H = d\phi^*\mathcal{A}_{N,X}^{-1}(Z)`; in the frames
    :math:`\hat H_p = c_p \circ \hat Z / \sqrt{m}` with :math:`\hat Z = Q_N^TZQ_0`
    ([G] eq. 8.20, 8.23-8.24). An isometry from :math:`(T_X\mathfrak{M}_d, g^N)`
    onto the horizontal space ([G] Thm 13).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Balanced point over X = phi(W).
    Z : array_like, shape (d, d)
        Tangent vector at X.
    frames : BalancedFrames, optional

    Returns
    -------
    ndarray, shape (N, d, d)

    Notes
    -----
    Cost: 2N + 2 matrix products given the frames, O(N d^3).
    """
    W = _stack(W)
    Z = as_matrix(Z, "Z", real=True, d=W.shape[1])
    Q, lam = _frames_for(W, frames)
    c, log_m = _lift_coefficients(lam, W.shape[0])
    Zh = Q[-1].T @ Z @ Q[0]
    return from_frame(Q, c * (Zh * np.exp(-0.5 * log_m)))


def balanced_orthonormal_basis(
    W, *, frames: BalancedFrames | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Orthonormal basis of :math:`T_W\mathcal{M}`, [G] Thm 14 with the sign of eq. 8.21 fixed.

    Horizontal part (:math:`d^2` vectors, [G] eq. 8.20, 8.23, 8.24): vector
    ``k * d + l`` is the horizontal lift of :math:`\sqrt{m_{kl}}\,q_{N,k}q_{0,l}^T`,
    with layers :math:`c_s^{kl}\,q_{s,k}q_{s-1,l}^T`,
    :math:`c_s^{kl} = \lambda_k^{N-s}\lambda_l^{s-1}/\sqrt{m_{kl}}` (the diagonal
    k = l gives :math:`l^k_s = q_{s,k}q_{s-1,k}^T/\sqrt N`). :math:`d\phi` maps them
    to the :math:`g^N`-orthonormal basis :math:`\sqrt{m_{kl}}\,q_{N,k}q_{0,l}^T` of
    :math:`T_X\mathfrak{M}_d`.

    Vertical part (:math:`(N-1)d(d-1)/2` vectors, p = 1..N-1, k < l;
    :ref:`math-corrections` of eq. 8.21, minus instead of plus):

    .. math::

        u_s^{k,l,p} = a^{k,l,p,s}q_{s,k}q_{s-1,l}^T - a^{l,k,p,s}q_{s,l}q_{s-1,k}^T,\quad
        a^{k,l,p,s} = \frac{\lambda_k\sin\frac{(s-1)p\pi}{N} - \lambda_l\sin\frac{sp\pi}{N}}
        {\sqrt{N(\lambda_k^2+\lambda_l^2-2\lambda_k\lambda_l\cos\frac{p\pi}{N})}}
        \quad([G]\ \text{eq. } 8.22).

    They span :math:`\ker d\phi\cap T_W\mathcal{M}`; ordered pair-major
    (pairs as in ``numpy.triu_indices(d, 1)``), then p.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Full-rank balanced point.
    frames : BalancedFrames, optional

    Returns
    -------
    horizontal : ndarray, shape (d^2, N, d, d)
    vertical : ndarray, shape ((N-1) d (d-1) / 2, N, d, d)
    """
    W = _stack(W)
    N, d, _ = W.shape
    Q, lam = _frames_for(W, frames)
    c, _ = _lift_coefficients(lam, N)  # (N, d, d)
    # horizontal[k*d + l, s-1] = c_s^{kl} q_{s,k} q_{s-1,l}^T
    hor = np.einsum("skl,sak,sbl->klsab", c, Q[1:], Q[:-1]).reshape(d * d, N, d, d)
    k, l = np.triu_indices(d, 1)
    if N == 1 or k.size == 0:
        return hor, np.zeros((0, N, d, d))
    p = np.arange(1, N)[None, :, None]  # (1, N-1, 1)
    s = np.arange(1, N + 1)[None, None, :]  # (1, 1, N)
    lk, ll = lam[k][:, None, None], lam[l][:, None, None]
    denom = np.sqrt(N * ((lk - ll) ** 2 + 4 * lk * ll * np.sin(p * np.pi / (2 * N)) ** 2))
    a_kl = (lk * np.sin((s - 1) * p * np.pi / N) - ll * np.sin(s * p * np.pi / N)) / denom
    a_lk = (ll * np.sin((s - 1) * p * np.pi / N) - lk * np.sin(s * p * np.pi / N)) / denom
    Qs, Qs1 = Q[1:], Q[:-1]  # (N, d, d)
    qk_s = Qs[:, :, k].transpose(2, 0, 1)  # (pairs, N, d): q_{s,k}
    ql_s = Qs[:, :, l].transpose(2, 0, 1)
    qk_s1 = Qs1[:, :, k].transpose(2, 0, 1)
    ql_s1 = Qs1[:, :, l].transpose(2, 0, 1)
    A = np.einsum("cps,csa,csb->cpsab", a_kl, qk_s, ql_s1)
    A -= np.einsum("cps,csa,csb->cpsab", a_lk, ql_s, qk_s1)
    return hor, A.reshape(-1, N, d, d)


#: Old name of :func:`balanced_orthonormal_basis`, not exported; kept only while the
#: geomstats adapter still imports it.
