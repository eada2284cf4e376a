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
:class:`BalancedFrame`, :func:`balanced_tangent_projection`,
:func:`balanced_normal_multipliers`, :func:`horizontal_projection` and
:func:`vertical_projection` also take stacks of points (..., N, d, d), vectorized
with numpy over the leading axes (the samplers of :mod:`dln_manifolds.langevin` use
them on whole ensembles); the point-by-point results are the same to rounding.

One frame per point
-------------------
:class:`BalancedFrame` computes the frames :math:`Q_0, \dots, Q_N` and :math:`\Lambda` of a
point once (one SVD per layer) and evaluates every quantity of this module there as a
method, on frame coordinates :math:`\hat Z_p = Q_p^T Z_p Q_{p-1}`, as
:class:`~dln_manifolds.DepthFrame` does for :math:`\mathcal{A}_{N,X}`. The module
functions are checked doors: they validate their arguments and build a frame (or take
one through ``frame=``), and the frame's per-stage math validates nothing.

General widths
--------------
For widths :math:`(d_0, \dots, d_N)` with every hidden width at least
:math:`r = \min(d_0, d_N)`, weights are a list of N layers, ``W[k-1]`` of shape
:math:`(d_k, d_{k-1})`, and :math:`\mathcal{M}` is the set of balanced networks with an
end-to-end matrix of full rank r. Every layer then has rank r and one shared set of
singular values: :math:`W_k = Q_k\Lambda Q_{k-1}^T` with :math:`Q_k` in the Stiefel
manifold :math:`\mathrm{St}(d_k, r)` (:math:`Q_0 = V`, :math:`Q_N = U` for
:math:`X = U\Lambda^N V^T`), so the fiber over X is
:math:`\prod_{k=1}^{N-1}\mathrm{St}(d_k, r)` and

.. math::

    \dim\mathcal{M} = d_0d_N + \sum_{k=1}^{N-1}\big(d_k r - r(r+1)/2\big)

(:func:`balanced_dimension`; :math:`d^2 + (N-1)d(d-1)/2` for square layers). When two
adjacent widths exceed r, :math:`\mathcal{M}` is not a regular level set of the moments:
the Jacobian of :math:`G` has rank :math:`\sum_{k=1}^{N-1}(r d_k - r(r-1)/2)` and its
kernel exceeds :math:`T_W\mathcal{M}` by the blocks
:math:`(Q_k^\perp)^T Z_k Q_{k-1}^\perp` (which raise a layer's rank), in dimension
:math:`\sum_k (d_k - r)(d_{k-1} - r)`. :math:`\mathcal{M}` is the level set of G inside
the product of the rank-r manifolds of the layers, and there G is a submersion. In the
completed frames :math:`[Q_k, Q_k^\perp]`, a tangent vector has the square
structure on the r x r blocks, the blocks :math:`C_k = (Q_k^\perp)^TZ_kQ_{k-1}` and
:math:`B_{k+1} = Q_k^TZ_{k+1}Q_k^\perp` tied by :math:`C_k = B_{k+1}^T` (k hidden),
:math:`B_1` and :math:`C_N` free, and zero :math:`\perp\perp` blocks; the end-to-end
map sees the r x r blocks, :math:`B_1` and :math:`C_N` (horizontal), and the pairs
:math:`(C_k, B_{k+1})` are vertical. The second fundamental form
(:meth:`BalancedFrame.geodesic_acceleration`) adds to the square one the curvature of the
rank-r layers in the :math:`\perp\perp` blocks, so the geodesics of
:mod:`~dln_manifolds.submanifold_geodesics` take general widths too. See
:ref:`math-balanced`.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ._checks import (
    as_array,
    as_layer_sequence,
    as_matrix,
    as_matrix_batch,
    as_stack,
    check_full_rank,
    check_full_rank_batch,
    check_hidden_widths,
    check_positive,
    check_square_or_widths,
    check_stack_widths,
    check_widths,
    widths_of_layers,
)
from ._linalg import conj_transpose as _h
from ._linalg import haar_orthogonal, polar_factor
from .depth_metric import depth_q_and_scale, log_multiplier_from_alpha

__all__ = [
    "BalancedFrame",
    "balanced_dimension",
    "balanced_restore",
    "balanced_retraction",
    "balance_error",
    "check_balanced",
    "random_balanced_point",
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

#: Weights: a stacked ndarray (..., N, d, d) or a sequence of N layers (general widths).
Layers = np.ndarray | list[np.ndarray]


def _is_layers(W) -> bool:
    """True for a network given as a sequence of layers (general widths)."""
    return isinstance(W, (list, tuple))


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


def _layers(W, name: str = "W", widths=None, *, real: bool = True) -> list[np.ndarray]:
    """Validate one network of general widths (no batch axes), real by default."""
    layers = as_layer_sequence(W, name, widths=widths, real=real, batch=False)
    check_hidden_widths(widths_of_layers(layers), f"widths of {name}")
    return layers


def _layers_like(Z, name: str, widths: tuple[int, ...]) -> list[np.ndarray]:
    """A vector for a network of general widths: a list of layers, or (square layers) a
    stacked (N, d, d) array, as :func:`~dln_manifolds.end_to_end_differential` accepts."""
    if not _is_layers(Z) and not isinstance(Z, (str, bytes)) and Z is not None:
        Z = list(_stack(Z, name))
    return as_layer_sequence(Z, name, widths=widths, real=True, batch=False)


def _check_no_widths(W: np.ndarray, widths, name: str = "W") -> None:
    """``widths`` given with a stacked W (..., N, d, d) must be (d, ..., d)."""
    if widths is not None:
        check_stack_widths(W, widths, name)


def balanced_dimension(widths: Sequence[int]) -> int:
    r"""Dimension of the balanced manifold of widths :math:`(d_0, \dots, d_N)`.

    :math:`d_0d_N + \sum_{k=1}^{N-1}(d_k r - r(r+1)/2)` with :math:`r = \min(d_0, d_N)`
    (module section *General widths*): :math:`d^2 + (N-1)d(d-1)/2` for square layers
    ([G] eq. 4.6).

    Parameters
    ----------
    widths : sequence of int
        :math:`(d_0, \dots, d_N)`, every hidden width at least :math:`\min(d_0, d_N)`.

    Returns
    -------
    int
    """
    widths = check_widths(widths)
    r = check_hidden_widths(widths)
    return widths[0] * widths[-1] + sum(w * r - r * (r + 1) // 2 for w in widths[1:-1])


# ---------------------------------------------------------------------------
# Points: restore map, retraction, checks, random points
# ---------------------------------------------------------------------------


def balanced_restore(Y, *, widths: Sequence[int] | None = None) -> Layers:
    r"""Map weights near :math:`\mathcal{M}` onto :math:`\mathcal{M}` (identity on it).

    Keeps layer 1 and, for p >= 2, sets layer p to
    :math:`O_p\,(W_{p-1}W_{p-1}^*)^{1/2}` where :math:`O_p` is the orthogonal
    (unitary) polar factor of :math:`Y_p`. The result is exactly balanced,
    needs no distinct singular values, and equals Y when Y is balanced
    (:ref:`math-balanced`). Cost O(N d^3).

    For general widths (a list of layers) layer 1 is first truncated to its r largest
    singular values, :math:`W_1 = U_1\Sigma V_1^T` (r = min(d_0, d_N)), and layer p
    becomes :math:`O_p\Sigma U_{p-1}^T` with :math:`O_p` the polar factor (orthonormal
    columns) of :math:`Y_pU_{p-1}`, the next :math:`U_p`. Then
    :math:`W_p^TW_p = U_{p-1}\Sigma^2U_{p-1}^T = W_{p-1}W_{p-1}^T` and every layer has rank r.

    Parameters
    ----------
    Y : array_like, shape (N, d, d) or (..., N, d, d), or sequence of N arrays
        Full-rank layers (or a stack of such points, treated independently,
        vectorized over the leading axes); a list of real layers ``Y[k-1]`` of shape
        (d_k, d_{k-1}) for general widths.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, same shape as Y, or list of N arrays

    Notes
    -----
    The square root :math:`(W_{p-1}W_{p-1}^*)^{1/2} = U\Sigma U^*` is taken
    from the SVD of :math:`W_{p-1}` rather than from an eigendecomposition of
    the Gram matrix, so that small singular values keep full relative
    accuracy.
    """
    if _is_layers(Y):
        return restore_layers(_layers(Y, "Y", widths))
    Y = _stack(Y, "Y", real=False, batch=True)
    _check_no_widths(Y, widths, "Y")
    return _restore_stack(Y)


def _restore_stack(Y: np.ndarray) -> np.ndarray:
    out = np.empty_like(Y)
    out[..., 0, :, :] = Y[..., 0, :, :]
    for p in range(1, Y.shape[-3]):
        u, _, vh = np.linalg.svd(Y[..., p, :, :])
        uu, s, _ = np.linalg.svd(out[..., p - 1, :, :])
        out[..., p, :, :] = (u @ vh) @ ((uu * s[..., None, :]) @ _h(uu))
    return out


def restore_layers(Y: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`balanced_restore` of validated real layers of general widths (internal).

    Vectorized over leading batch axes shared by every layer (..., d_k, d_{k-1}).
    """
    r = min(Y[0].shape[-1], Y[-1].shape[-2])
    u, s, vh = np.linalg.svd(Y[0], full_matrices=False)
    u, s = u[..., :r], s[..., None, :r]
    out = [(u * s) @ vh[..., :r, :]]
    for p in range(1, len(Y)):
        o = polar_factor(Y[p] @ u)
        out.append((o * s) @ _h(u))
        u = o
    return out


def balanced_retraction(W, V, order: int = 1, *, widths: Sequence[int] | None = None) -> Layers:
    r"""Retraction on :math:`\mathcal{M}`: :math:`R_W(V) = \mathrm{restore}(W + V)`.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or sequence of N arrays
        Point of :math:`\mathcal{M}` (or a stack of points, vectorized); a list of
        layers for general widths.
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
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, same shape as W, or list of N arrays
        Balanced to rounding error, for any singular values (repeated ones
        included).
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if _is_layers(W):
        layers = _layers(W, "W", widths)
        V = _layers_like(V, "V", widths_of_layers(layers))
        return retract_unchecked(layers, V, order)
    W = _stack(W, real=False, batch=True)
    _check_no_widths(W, widths)
    V = _like(W, V, "V", real=False)
    if order == 2 and (np.iscomplexobj(W) or np.iscomplexobj(V)):
        raise TypeError("W must be real for order=2; the balanced-manifold geometry is real only")
    return retract_unchecked(W, V, order)


def retract_unchecked(W: Layers, V: Layers, order: int, check: bool = True) -> Layers:
    """:func:`balanced_retraction` on validated stacks or lists (internal, for the samplers).

    ``check=False`` builds the frame of the order-2 correction without the rank and
    balance checks (for the samplers, whose proposals may be singular: they are
    rejected afterwards, not raised on).
    """
    if isinstance(W, list):
        Y = [w + v for w, v in zip(W, V, strict=True)]
        W1 = restore_layers(Y)
        if order == 1 or len(W) == 1:
            return W1
        frame = BalancedFrame.from_valid(W1, verify=check)
        T = frame.tangent_projection_unchecked([y - w for y, w in zip(Y, W1, strict=True)])
        return restore_layers([w + t for w, t in zip(W1, T, strict=True)])
    Y = W + V
    W1 = _restore_stack(Y)
    if order == 1 or W.shape[-3] == 1:
        return W1
    frame = BalancedFrame.from_valid(W1, verify=check)
    return _restore_stack(W1 + frame.tangent_projection_unchecked(Y - W1))


def balance_error(W, *, widths: Sequence[int] | None = None) -> float:
    r"""Largest relative moment :math:`\max_k |G_k|_F / (|W_k|_F^2 + |W_{k+1}|_F^2)`.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or sequence of N arrays
        Layers, or a stack of networks (then the largest value over the stack); a
        list of layers ``W[k-1]`` of shape (d_k, d_{k-1}) for general widths.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    float
        0 for N = 1 and for exactly balanced weights.
    """
    if _is_layers(W):
        layers = as_layer_sequence(W, "W", widths=widths, batch=False)
        return float(layer_balance_errors(layers))
    W = _stack(W, real=False, batch=True)
    _check_no_widths(W, widths)
    if W.shape[-3] == 1:
        return 0.0
    G = W[..., :-1, :, :] @ _h(W[..., :-1, :, :]) - _h(W[..., 1:, :, :]) @ W[..., 1:, :, :]
    sq = np.sum(np.abs(W) ** 2, axis=(-2, -1))
    scale = sq[..., :-1] + sq[..., 1:]
    scale = np.where(scale > 0, scale, 1.0)
    return float(np.max(np.linalg.norm(G, axis=(-2, -1)) / scale))


def layer_balance_errors(layers: list[np.ndarray]) -> np.ndarray:
    """:func:`balance_error` of each network of validated layers (..., d_k, d_{k-1}) with
    leading batch axes (internal: the geomstats adapter's vectorized ``belongs``)."""
    err = np.zeros(layers[0].shape[:-2])
    for lower, upper in zip(layers[:-1], layers[1:], strict=True):
        G = lower @ _h(lower) - _h(upper) @ upper
        scale = np.sum(np.abs(lower) ** 2, axis=(-2, -1)) + np.sum(
            np.abs(upper) ** 2, axis=(-2, -1)
        )
        err = np.maximum(err, np.linalg.norm(G, axis=(-2, -1)) / np.where(scale > 0, scale, 1.0))
    return err


def check_balanced(
    W, tol: float = 1e-8, name: str = "W", *, widths: Sequence[int] | None = None
) -> Layers:
    """Validate a point of :math:`\\mathcal{M}` and return it as float64 (array or list).

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        A list of layers ``W[k-1]`` of shape (d_k, d_{k-1}) for general widths.
    tol : float
        Largest accepted :func:`balance_error`.
    name : str
        Name used in error messages.
    widths : sequence of int, optional
        :math:`(d_0, \\dots, d_N)`, checked against the layers' shapes.

    Raises
    ------
    TypeError
        If W is not real numeric.
    ValueError
        If W has the wrong shape, is not balanced to ``tol`` (the message
        gives the relative moment), its end-to-end matrix is rank deficient
        (rank below r = min(d_0, d_N)), or a hidden width is below r.
    """
    tol = check_positive(tol, "tol")
    if _is_layers(W):
        W = _layers(W, name, widths)
        first = W[0]
        r = min(W[0].shape[1], W[-1].shape[0])
    else:
        W = _stack(W, name)
        _check_no_widths(W, widths, name)
        first, r = W[0], W.shape[-1]
    err = balance_error(W)
    if err > tol:
        raise ValueError(
            f"{name} is not on the balanced manifold: relative moment "
            f"max_k |G_k| / (|W_k|^2 + |W_k+1|^2) = {err:.3g} > tol = {tol:.3g}"
        )
    check_full_rank(np.linalg.svd(first, compute_uv=False)[:r], f"{name} (layer 1)")
    return W


def random_balanced_point(
    d: int | None = None,
    depth: int | None = None,
    seed=None,
    spread: float = 4.0,
    singular_values=None,
    *,
    widths: Sequence[int] | None = None,
) -> Layers:
    r"""A random full-rank balanced point :math:`W_p = Q_p\Lambda Q_{p-1}^T` ([G] eq. 5.16).

    Parameters
    ----------
    d, depth : int
        Layer size and number of layers N (with ``widths``: leave d out; depth, if
        given, must be len(widths) - 1).
    seed : int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Randomness, as everywhere in the package (``numpy.random.default_rng(seed)``;
        the global ``numpy.random.seed`` has no effect).
    spread : float, default 4
        Condition number bound of each layer: the singular values
        :math:`\lambda_k` are log-uniform in
        :math:`[\mathrm{spread}^{-1/2}, \mathrm{spread}^{1/2}]` (so in [1/2, 2]
        by default, and the end-to-end matrix has condition number at most
        :math:`\mathrm{spread}^N`). ``spread = 1`` gives :math:`\Lambda = I`.
    singular_values : array_like, shape (d,) or (r,), optional
        Layer singular values to use instead (repeated values allowed).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, every hidden width at least r = min(d_0, d_N): a
        network of general widths, :math:`Q_k` Haar distributed on the Stiefel
        manifold :math:`\mathrm{St}(d_k, r)`, returned as a list.

    Returns
    -------
    W : ndarray, shape (N, d, d), or list of N arrays (d_k, d_{k-1}) with ``widths``
        The frames :math:`Q_0, \dots, Q_N` are independent and Haar distributed.
    """
    d, N, widths = check_square_or_widths(d, depth, widths)
    r = d if widths is None else check_hidden_widths(widths)
    rng = np.random.default_rng(seed)
    if singular_values is None:
        spread = float(spread)
        if not np.isfinite(spread) or spread < 1:
            raise ValueError(f"spread must be a finite number >= 1, got {spread}")
        half = 0.5 * np.log(spread)
        lam = np.exp(rng.uniform(-half, half, size=r))
    else:
        lam = np.asarray(singular_values, dtype=np.float64)
        if lam.shape != (r,) or np.any(~np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(f"singular_values must be {r} positive finite numbers, got {lam!r}")
    if widths is not None:
        Q = [haar_orthogonal(rng, w)[:, :r] for w in widths]
        return [(Q[k] * lam) @ Q[k - 1].T for k in range(1, len(widths))]
    Q = haar_orthogonal(rng, int(d), (N + 1,))
    return (Q[1:] * lam) @ _h(Q[:-1])


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


def _stack_frames(W: np.ndarray, tol: float, check: bool) -> tuple[np.ndarray, np.ndarray]:
    """Frames (Q, lam) of validated real layers (..., N, d, d)."""
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
        return Q, lam
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
    return Q.reshape(W.shape[:-3] + (N + 1, d, d)), lam


def _layer_frames(W: list[np.ndarray], tol: float, check: bool) -> tuple[list, np.ndarray]:
    """Completed frames [Q_k, Q_k^perp] (..., d_k, d_k) and lam (..., r) of validated layers
    (..., d_k, d_{k-1}) (leading batch axes shared by every layer)."""
    r = min(W[0].shape[-1], W[-1].shape[-2])
    svds = [np.linalg.svd(layer) for layer in W]
    lam = svds[0][1][..., :r].copy()
    if check:
        check_full_rank_batch(lam, "W (layer 1)")
        spread = np.zeros(lam.shape[:-1])
        for _, S, _ in svds:
            spread = np.maximum(spread, np.max(np.abs(S[..., :r] - lam), axis=-1))
            spread = np.maximum(spread, np.max(S[..., r:], axis=-1, initial=0))
        spread = float(np.max(spread / lam[..., 0]))
        if spread > tol:
            raise ValueError(
                f"W is not balanced: the layers' singular values differ by {spread:.3g} "
                f"(relative; layers of rank r = {r}) > tol = {tol:.3g}"
            )
    F = [_h(svds[0][2]), svds[0][0].copy()]
    with np.errstate(invalid="ignore"):
        cut = lam[..., :-1] - lam[..., 1:] > _CLUSTER_GAP * lam[..., :-1]
    label = np.cumsum(np.concatenate([np.zeros(cut.shape[:-1] + (1,), bool), cut], -1), -1)
    block = label[..., :, None] == label[..., None, :]
    for p in range(1, len(W)):
        U, S, Vh = svds[p]
        with np.errstate(divide="ignore", invalid="ignore"):
            B = (S[..., :r, None] * (Vh[..., :r, :] @ F[p][..., :r])) / lam[..., None, :]
        B = np.where(block & np.isfinite(B), B, 0.0)
        Fp = U.copy()
        Fp[..., :r] = U[..., :r] @ polar_factor(B)
        F.append(Fp)
    return F, lam


# ---------------------------------------------------------------------------
# Square-layer math in frame coordinates (..., N, d, d)
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


def _project_hat(Zh: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tangent part and multipliers of frame components Zh (..., N, d, d)."""
    if Zh.shape[-3] == 1:
        return Zh.copy(), np.zeros(Zh.shape[:-3] + (0,) + Zh.shape[-2:])
    Sh = _solve_multipliers(_moment_derivative_hat(Zh, lam), lam)
    return Zh - _normal_from_multipliers(Sh, lam), Sh


def _lift_coefficients(lam: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Normalized lift coefficients and :math:`\log m`.

    ``c[p-1, k, l]`` :math:`= \lambda_k^{N-p}\lambda_l^{p-1} / \sqrt{m_{kl}}` with
    :math:`m_{kl} = \sum_p \lambda_k^{2(N-p)}\lambda_l^{2(p-1)}` (the multiplier
    of :math:`\mathcal{A}_{N,X}`, [G] eq. 7.13-7.14, from
    :mod:`~dln_manifolds.depth_metric`), so that :math:`\sum_p c_p^2 = 1`. Computed in
    logs: no overflow for large N.
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


def _horizontal_hat(Zh: np.ndarray, lam: np.ndarray) -> np.ndarray:
    r"""Frame components of the horizontal part: :math:`c_p \circ \sum_q c_q \circ \hat Z_q`."""
    c, _ = _lift_coefficients(lam, Zh.shape[-3])
    return c * np.sum(c * Zh, axis=-3, keepdims=True)


def _weingarten_hat(Vh: np.ndarray, Sh: np.ndarray, lam: np.ndarray) -> np.ndarray:
    N, d = Vh.shape[0], lam.size
    Sp = np.zeros((N + 1, d, d))
    Sp[1:N] = Sh
    wS = Sp[1:] @ Vh - Vh @ Sp[:-1]  # frame components of w_S(V)
    return -_project_hat(wS, lam)[0]


def _vertical_coefficients(lam: np.ndarray, N: int):
    r"""Pairs k < l and the coefficients :math:`a^{k,l,p,s}`, :math:`a^{l,k,p,s}` of [G] eq. 8.22.

    Returns ``k, l`` (pairs as ``numpy.triu_indices(d, 1)``) and ``a_kl, a_lk`` of shape
    (pairs, N - 1, N) (index p - 1, s - 1), sign of eq. 8.21 corrected.
    """
    k, l = np.triu_indices(lam.size, 1)
    p = np.arange(1, N)[None, :, None]  # (1, N-1, 1)
    s = np.arange(1, N + 1)[None, None, :]  # (1, 1, N)
    lk, ll = lam[k][:, None, None], lam[l][:, None, None]
    denom = np.sqrt(N * ((lk - ll) ** 2 + 4 * lk * ll * np.sin(p * np.pi / (2 * N)) ** 2))
    a_kl = (lk * np.sin((s - 1) * p * np.pi / N) - ll * np.sin(s * p * np.pi / N)) / denom
    a_lk = (ll * np.sin((s - 1) * p * np.pi / N) - lk * np.sin(s * p * np.pi / N)) / denom
    return k, l, a_kl, a_lk


# ---------------------------------------------------------------------------
# The frame of a point
# ---------------------------------------------------------------------------


class BalancedFrame:
    r"""Frames :math:`W_p = Q_p\Lambda Q_{p-1}^T` of a balanced point, and every quantity there.

    Built once from a point W of :math:`\mathcal{M}` (one SVD per layer), a frame
    evaluates the tangent projection, the normal multipliers, the Weingarten map, the
    Riemannian Hessian, the horizontal and vertical projections, the horizontal lift and
    the orthonormal basis at W, on ambient vectors or on frame coordinates
    :math:`\hat Z_p = Q_p^T Z_p Q_{p-1}` (:meth:`to_frame`, :meth:`from_frame`), as
    :class:`~dln_manifolds.DepthFrame` does for :math:`\mathcal{A}_{N,X}`. The module
    functions (:func:`balanced_tangent_projection`, ...) are checked doors that build a
    frame per call, or take one through ``frame=``.

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
    W : array_like, shape (N, d, d) or (..., N, d, d), or sequence of N arrays
        Full-rank balanced point (or a stack of points, vectorized over the
        leading axes); for general widths a list of layers ``W[k-1]`` of shape
        (d_k, d_{k-1}), every hidden width at least r = min(d_0, d_N) (one network,
        no batch axes).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.
    tol : float, default 1e-6
        Largest accepted relative disagreement between the singular values
        of different layers (a cheap balance check; use
        :func:`check_balanced` for the full one).
    check : bool, default True
        Validate W and the arguments of the methods. ``False`` skips every check
        (for callers that validated at their own door, and for the samplers, whose
        proposals may be singular).

    Attributes
    ----------
    Q : ndarray, shape (..., N + 1, d, d), or list of N + 1 arrays
        Orthogonal frames; ``Q[p]`` is the paper's :math:`Q_p` (p = 0..N). For general
        widths ``Q[k]`` is the d_k x d_k orthogonal matrix :math:`[Q_k, Q_k^\perp]`
        whose first r columns are :math:`Q_k \in \mathrm{St}(d_k, r)`.
    lam : ndarray, shape (..., d) or (r,)
        Layer singular values :math:`\lambda_1 \ge \dots \ge \lambda_r > 0`.
    depth : int
        N.
    widths : tuple of int
        :math:`(d_0, \dots, d_N)`.
    r : int
        :math:`\min(d_0, d_N)`, the rank of every layer.
    dim : int
        :math:`\dim\mathcal{M}` (:func:`balanced_dimension`).

    Raises
    ------
    ValueError
        If W is rank deficient, or its layers have different singular values
        (so W is not balanced), or a hidden width is below r.

    Notes
    -----
    Cost: one SVD per layer and N matrix products, O(N d^3); every method then costs
    O(N d^3) (frame changes) plus O(N d^2) in the frame.

    Examples
    --------
    >>> import numpy as np
    >>> from dln_manifolds import BalancedFrame, random_balanced_point
    >>> W = random_balanced_point(3, 4, seed=0)
    >>> frame = BalancedFrame(W)
    >>> Z = np.ones_like(W)
    >>> P = frame.tangent_projection(Z)
    >>> bool(np.allclose(frame.tangent_projection(P), P))
    True
    """

    def __init__(
        self,
        W,
        *,
        widths: Sequence[int] | None = None,
        tol: float = 1e-6,
        check: bool = True,
    ):
        if check:
            tol = check_positive(tol, "tol")
            if _is_layers(W):
                W = _layers(W, "W", widths)
            else:
                W = _stack(W, batch=True)
                _check_no_widths(W, widths)
        elif _is_layers(W):
            W = list(W)
        self._init(W, tol, check)

    @classmethod
    def from_valid(cls, W: Layers, *, verify: bool = True, tol: float = 1e-6) -> BalancedFrame:
        """The frame of validated layers (a real stack or a list of float64 layers).

        Internal door for callers that validated W themselves: ``verify`` keeps the
        rank and balance checks, the input checks are skipped. For general widths the
        layers may carry leading batch axes (the same on every layer); such a frame serves
        the tangent projection only (the other methods take one network).
        """
        frame = cls.__new__(cls)
        frame._init(W, tol, verify)
        frame._check = False
        return frame

    def _init(self, W: Layers, tol: float, check: bool) -> None:
        self._check = check
        self._general = isinstance(W, list)
        if self._general:
            self.widths = widths_of_layers(W)
            self.depth = len(W)
            self.r = min(self.widths[0], self.widths[-1])
            self.Q, self.lam = _layer_frames(W, tol, check)
            self._batch = W[0].shape[:-2]
        else:
            self.depth, d = W.shape[-3], W.shape[-1]
            self.widths = (d,) * (self.depth + 1)
            self.r = d
            self._batch = W.shape[:-3]
            self._shape = W.shape
            self.Q, self.lam = _stack_frames(W, tol, check)
        self._coefficients = None

    # -- bookkeeping ------------------------------------------------------------
    @property
    def dim(self) -> int:
        r""":math:`\dim\mathcal{M}` (:func:`balanced_dimension`)."""
        return balanced_dimension(self.widths)

    def _vector(self, Z, name: str) -> Layers:
        """Validate an ambient (or frame) vector with the layout of the point."""
        if not self._check:
            return Z if self._general else np.asarray(Z)
        if self._general:
            return _layers_like(Z, name, self.widths)
        Z = _stack(Z, name, depth=self.depth, d=self.r, batch=True)
        if Z.shape != self._shape:
            raise ValueError(
                f"{name} must have shape {self._shape} (the shape of W), got {Z.shape}"
            )
        return Z

    def _single(self, what: str) -> None:
        if self._batch:
            raise ValueError(
                f"{what} takes one point W of shape (N, d, d), not a stack; got a frame of "
                f"batch shape {self._batch}"
            )

    def _coeff(self) -> tuple[np.ndarray, np.ndarray]:
        if self._coefficients is None:
            self._coefficients = _lift_coefficients(self.lam, self.depth)
        return self._coefficients

    def matches(self, W: Layers) -> bool:
        """True if this frame has the layout of the validated point W (shapes only)."""
        if isinstance(W, list):
            return self._general and widths_of_layers(W) == self.widths
        return not self._general and W.shape == self._shape

    # -- frame coordinates --------------------------------------------------------
    def to_frame(self, Z) -> Layers:
        r"""Frame coordinates :math:`\hat Z_p = Q_p^T Z_p Q_{p-1}` of an ambient vector."""
        return self._to(self._vector(Z, "Z"))

    def from_frame(self, Zh) -> Layers:
        r"""Inverse of :meth:`to_frame`: :math:`Q_p\hat Z_pQ_{p-1}^T`."""
        return self._from(self._vector(Zh, "Zh"))

    def _to(self, Z: Layers) -> Layers:
        Q = self.Q
        if self._general:
            return [_h(Q[k + 1]) @ Z[k] @ Q[k] for k in range(self.depth)]
        return _h(Q[..., 1:, :, :]) @ Z @ Q[..., :-1, :, :]

    def _from(self, Zh: Layers) -> Layers:
        Q = self.Q
        if self._general:
            return [Q[k + 1] @ Zh[k] @ _h(Q[k]) for k in range(self.depth)]
        return Q[..., 1:, :, :] @ Zh @ _h(Q[..., :-1, :, :])

    # -- tangent and normal spaces, in frame coordinates -----------------------------
    def tangent_hat(self, Zh: Layers) -> Layers:
        """Frame coordinates of the tangent part of frame coordinates Zh (unchecked)."""
        if self._general:
            return self._layers_project_hat(Zh)[0]
        return _project_hat(Zh, self.lam)[0]

    def horizontal_hat(self, Zh: Layers) -> Layers:
        """Frame coordinates of the horizontal part of frame coordinates Zh (unchecked)."""
        if not self._general:
            return _horizontal_hat(Zh, self.lam)
        self._single("horizontal_hat (general widths)")
        r = self.r
        c, _ = self._coeff()
        A = np.stack([z[:r, :r] for z in Zh])
        H = c * np.sum(c * A, axis=0, keepdims=True)
        out = [np.zeros_like(z) for z in Zh]
        for k in range(self.depth):
            out[k][:r, :r] = H[k]
        out[0][:r, r:] = Zh[0][:r, r:]  # B_1 (wide X)
        out[-1][r:, :r] = Zh[-1][r:, :r]  # C_N (tall X)
        return out

    def _layers_project_hat(self, Zh: list[np.ndarray]):
        """Tangent part, square multipliers s (..., N-1, r, r) and tails t^T of the pairs
        (vectorized over the frame's batch axes)."""
        r, lam = self.r, self.lam
        At, Sa = _project_hat(np.stack([z[..., :r, :r] for z in Zh], axis=-3), lam)
        T = [np.zeros_like(z) for z in Zh]
        for k in range(self.depth):
            T[k][..., :r, :r] = At[..., k, :, :]
        T[0][..., :r, r:] = Zh[0][..., :r, r:]  # B_1: free
        T[-1][..., r:, :r] = Zh[-1][..., r:, :r]  # C_N: free
        tails = []
        for k in range(1, self.depth):  # hidden width d_k: C_k (layer k) and B_{k+1}
            C, B = Zh[k - 1][..., r:, :r], Zh[k][..., :r, r:]
            mid = 0.5 * (C + _h(B))
            T[k - 1][..., r:, :r] = mid
            T[k][..., :r, r:] = _h(mid)
            tails.append(0.5 * (C - _h(B)) / lam[..., None, :])  # t_k^T
        return T, Sa, tails

    def _multiplier_hats(self, Zh: Layers) -> list[np.ndarray]:
        """Frame coordinates of S_0, ..., S_N (S_0 = S_N = 0) of the normal part of Zh."""
        self._single("the normal multipliers (general widths)")
        _, Sa, tails = self._layers_project_hat(Zh)
        r, w = self.r, self.widths
        S = [np.zeros((w[0], w[0]))]
        for k in range(1, self.depth):
            Sk = np.zeros((w[k], w[k]))
            Sk[:r, :r] = Sa[k - 1]
            Sk[r:, :r] = tails[k - 1]
            Sk[:r, r:] = tails[k - 1].T
            S.append(Sk)
        S.append(np.zeros((w[-1], w[-1])))
        return S

    def _weingarten_layers_hat(self, Vh: list[np.ndarray], Nh: list[np.ndarray]):
        r"""Frame coordinates of :math:`\mathfrak{W}_V(n)` for general widths.

        The normal part of n is :math:`w_S + E` (E: the :math:`\perp\perp` blocks, normal
        to the rank-r layers); extended by :math:`w_S(W')` and
        :math:`P^\perp_{W'_k}E_kR^\perp_{W'_k}`, :math:`D_V\tilde n = w_S(V) -
        (W_k^+)^TV_k^TE_k - E_kV_k^T(W_k^+)^T`, and :math:`\mathfrak{W}_V(n) = -P(D_V\tilde n)`.
        """
        r, lam = self.r, self.lam
        S = self._multiplier_hats(Nh)
        out = []
        for k in range(self.depth):
            v = Vh[k]
            term = v @ S[k] - S[k + 1] @ v  # -w_S(V)
            E = Nh[k][r:, r:]
            term[:r, r:] += (v[r:, :r].T @ E) / lam[:, None]
            term[r:, :r] += (E @ v[:r, r:].T) / lam[None, :]
            out.append(term)
        return self.tangent_hat(out)

    # -- public methods on ambient vectors -------------------------------------------
    def tangent_projection_unchecked(self, Z: Layers) -> Layers:
        """:meth:`tangent_projection` without input checks (internal)."""
        return self._from(self.tangent_hat(self._to(Z)))

    def tangent_projection(self, Z) -> Layers:
        r"""Orthogonal projection of an ambient vector onto :math:`T_W\mathcal{M}`.

        See :func:`balanced_tangent_projection`.
        """
        return self.tangent_projection_unchecked(self._vector(Z, "Z"))

    def normal_multipliers(self, Z) -> Layers:
        r"""Symmetric multipliers :math:`S_1, \dots, S_{N-1}` of the normal part of Z.

        See :func:`balanced_normal_multipliers`; for general widths a list of N - 1
        arrays (d_k, d_k), and the normal part is :math:`w_S` plus the
        :math:`\perp\perp` blocks (normal to the rank-r layers), which S does not see.
        """
        Zh = self._to(self._vector(Z, "Z"))
        if self._general:
            S = self._multiplier_hats(Zh)[1:-1]
            return [self.Q[k] @ S[k - 1] @ self.Q[k].T for k in range(1, self.depth)]
        Sh = _project_hat(Zh, self.lam)[1]
        Q = self.Q[..., 1:-1, :, :]
        return Q @ Sh @ _h(Q)

    def weingarten(self, V, normal) -> Layers:
        r"""Weingarten map :math:`-P_W(D_V\tilde n)`; see :func:`balanced_weingarten`."""
        V, normal = self._vector(V, "V"), self._vector(normal, "normal")
        if self._general:
            return self._from(self._weingarten_layers_hat(self._to(V), self._to(normal)))
        self._single("weingarten")
        if self.depth == 1:
            return np.zeros_like(V)
        _, Sh = _project_hat(self._to(normal), self.lam)
        return self._from(_weingarten_hat(self._to(V), Sh, self.lam))

    def riemannian_hessian(self, egrad, ehess, V) -> Layers:
        r"""Riemannian Hessian :math:`P_W(H[V]) + \mathfrak{W}_V(P^\perp_W g)`.

        See :func:`balanced_riemannian_hessian`.
        """
        egrad, ehess = self._vector(egrad, "egrad"), self._vector(ehess, "ehess")
        V = self._vector(V, "V")
        if self._general:
            Vh, Gh = self._to(V), self._to(egrad)
            Hh = self.tangent_hat(self._to(ehess))
            Wh = self._weingarten_layers_hat(Vh, Gh)
            return self._from([h + w for h, w in zip(Hh, Wh, strict=True)])
        self._single("riemannian_hessian")
        Hh, _ = _project_hat(self._to(ehess), self.lam)
        if self.depth > 1:
            _, Sh = _project_hat(self._to(egrad), self.lam)
            Hh = Hh + _weingarten_hat(self._to(V), Sh, self.lam)
        return self._from(Hh)

    def geodesic_acceleration(self, V) -> Layers:
        r"""Second fundamental form :math:`\mathrm{II}_W(V, V)` for a tangent vector V.

        Square layers: the normal :math:`w_S` with :math:`dG_W(w_S) = -2Q(V)`,
        :math:`Q(V)_k = V_kV_k^T - V_{k+1}^TV_{k+1}`. The geodesics of
        :math:`\mathcal{M}` solve :math:`\ddot W = \mathrm{II}_W(\dot W, \dot W)`
        (:mod:`~dln_manifolds.submanifold_geodesics`).

        General widths (module section *General widths*): the normal space is
        :math:`\{w_S + E\}` (E in the :math:`\perp\perp` blocks), and a curve of
        :math:`\mathcal{M}` keeps both the moments and the rank r of every layer. The
        rank gives the :math:`\perp\perp` block of layer k,
        :math:`E_k = 2C_k\Lambda^{-1}B_k` (:math:`C_k`, :math:`B_k` the
        :math:`\perp r` and :math:`r\perp` blocks of :math:`\hat V_k`: the second
        fundamental form of the rank-r matrices), on which dG vanishes; the moments
        give :math:`dG(w_S) = -2Q(V)`, which in the frames is the square tridiagonal
        system on the r x r blocks of S and, for the tails
        :math:`t_k = (\hat S_k)_{\perp r}`, the diagonal equation
        :math:`2t_k\Lambda^2 = -2Q(V)_{k,\perp r}`. Cost O(N d^3).
        """
        V = self._vector(V, "V")
        if self._general:
            return self._from(self._layers_acceleration_hat(self._to(V)))
        if self.depth == 1:
            return np.zeros_like(V)
        Vh = self._to(V)
        VhT = _h(Vh)
        R = -2.0 * (
            Vh[..., :-1, :, :] @ VhT[..., :-1, :, :] - VhT[..., 1:, :, :] @ Vh[..., 1:, :, :]
        )
        Sh = _solve_multipliers(R, self.lam)
        return self._from(_normal_from_multipliers(Sh, self.lam))

    def _layers_acceleration_hat(self, Vh: list[np.ndarray]) -> list[np.ndarray]:
        r"""Frame coordinates of :math:`\mathrm{II}(V, V)` for general widths (unchecked);
        vectorized over leading batch axes of the frame and of V."""
        r, lam, N = self.r, self.lam, self.depth
        row, col = lam[..., None, :], lam[..., :, None]
        out = [np.zeros_like(v) for v in Vh]
        for k in range(N):  # rank-r layers: E_k = 2 C_k Lambda^{-1} B_k
            out[k][..., r:, r:] = 2.0 * (Vh[k][..., r:, :r] / row) @ Vh[k][..., :r, r:]
        if N == 1:
            return out
        # R_k = -2 Q(V)_k, k = 1..N-1 (hidden widths d_k)
        R = [-2.0 * (Vh[k - 1] @ _h(Vh[k - 1]) - _h(Vh[k]) @ Vh[k]) for k in range(1, N)]
        Sa = _solve_multipliers(np.stack([Rk[..., :r, :r] for Rk in R], axis=-3), lam)
        wS = _normal_from_multipliers(Sa, lam)  # the r x r blocks of w_S
        for k in range(N):
            out[k][..., :r, :r] = wS[..., k, :, :]
        for k in range(1, N):  # tails t_k = R_{k, perp r} Lambda^{-2} / 2
            t = 0.5 * R[k - 1][..., r:, :r] / row**2
            out[k - 1][..., r:, :r] += t * row  # (w_S)_k: S_k W_k, the C_k block
            out[k][..., :r, r:] -= col * _h(t)  # (w_S)_{k+1}: -W_{k+1} S_k, the B_{k+1} block
        return out

    def horizontal_projection(self, Z) -> Layers:
        r"""Projection onto :math:`(\ker d\phi)^\perp`; see :func:`horizontal_projection`."""
        return self._from(self.horizontal_hat(self._to(self._vector(Z, "Z"))))

    def vertical_projection(self, Z) -> Layers:
        r"""Projection onto :math:`\ker d\phi\cap T_W`; see :func:`vertical_projection`."""
        Zh = self._to(self._vector(Z, "Z"))
        T, H = self.tangent_hat(Zh), self.horizontal_hat(Zh)
        if self._general:
            return self._from([t - h for t, h in zip(T, H, strict=True)])
        return self._from(T - H)

    def horizontal_lift(self, Z) -> Layers:
        r"""Horizontal H with :math:`d\phi_W(H) = Z`; see :func:`horizontal_lift`."""
        d_out, d_in = self.widths[-1], self.widths[0]
        if self._check:
            Z = _end_to_end_vector(Z, d_out, d_in, self._batch)
        c, log_m = self._coeff()
        if not self._general:  # vectorized over the batch axes of a stack of points
            Zh = _h(self.Q[..., -1, :, :]) @ Z @ self.Q[..., 0, :, :]
            return self._from(c * (Zh * np.exp(-0.5 * log_m))[..., None, :, :])
        r, N = self.r, self.depth
        Zh = self.Q[-1].T @ Z @ self.Q[0]
        A = c * (Zh[:r, :r] * np.exp(-0.5 * log_m))
        out = [np.zeros((self.widths[k + 1], self.widths[k])) for k in range(N)]
        for k in range(N):
            out[k][:r, :r] = A[k]
        inv = np.exp(-(N - 1) * np.log(self.lam))  # Lambda^{-(N-1)}
        out[0][:r, r:] = Zh[:r, r:] * inv[:, None]  # wide X: B_1
        out[-1][r:, :r] = Zh[r:, :r] * inv[None, :]  # tall X: C_N
        return self._from(out)

    def orthonormal_basis(self) -> tuple[Layers, Layers]:
        r"""Orthonormal basis of :math:`T_W\mathcal{M}`; see :func:`balanced_orthonormal_basis`."""
        if not self._general:
            self._single("orthonormal_basis")
            return _square_basis(self.Q, self.lam, self._coeff()[0])
        self._single("orthonormal_basis")
        return self._layers_basis()

    def _layers_basis(self):
        r, N, w = self.r, self.depth, self.widths
        c, _ = self._coeff()
        k, l, a_kl, a_lk = _vertical_coefficients(self.lam, N)
        hor = [np.zeros((w[0] * w[-1], w[s + 1], w[s])) for s in range(N)]
        i = np.arange(r * r)
        for s in range(N):  # vector k * r + l: c_s^{kl} in entry (k, l) of layer s
            hor[s][i, i // r, i % r] = c[s].reshape(-1)
        row = r * r
        if w[-1] > r:  # tall: unit vectors of C_N
            j, m = np.divmod(np.arange((w[-1] - r) * r), r)
            hor[-1][row + j * r + m, r + j, m] = 1.0
        if w[0] > r:  # wide: unit vectors of B_1
            m, j = np.divmod(np.arange(r * (w[0] - r)), w[0] - r)
            hor[0][row + m * (w[0] - r) + j, m, r + j] = 1.0
        n_sq = k.size * (N - 1)
        n_pair = sum(r * (w[h] - r) for h in range(1, N))
        ver = [np.zeros((n_sq + n_pair, w[s + 1], w[s])) for s in range(N)]
        if n_sq:
            idx = np.arange(n_sq).reshape(k.size, N - 1)
            for s in range(N):
                ver[s][idx, k[:, None], l[:, None]] = a_kl[:, :, s]
                ver[s][idx, l[:, None], k[:, None]] = -a_lk[:, :, s]
        start = n_sq
        for h in range(1, N):  # pair (C_h, B_{h+1}) with C_h = B_{h+1}^T
            j, m = np.divmod(np.arange((w[h] - r) * r), r)
            idx = start + np.arange(j.size)
            ver[h - 1][idx, r + j, m] = np.sqrt(0.5)
            ver[h][idx, m, r + j] = np.sqrt(0.5)
            start += j.size
        Q = self.Q
        hor = [Q[s + 1] @ hor[s] @ Q[s].T for s in range(N)]
        ver = [Q[s + 1] @ ver[s] @ Q[s].T for s in range(N)]
        return hor, ver


def _end_to_end_vector(Z, d_out: int, d_in: int, batch: tuple[int, ...] = ()) -> np.ndarray:
    """Validate a tangent vector Z of shape (d_N, d_0) at X (square: as_matrix's messages).

    A square stack of frames (batch shape ``batch``) takes Z of shape ``batch + (d, d)``.
    """
    if batch:
        Z = as_matrix_batch(Z, d_in, "Z", real=True)
        if Z.shape != batch + (d_in, d_in):
            raise ValueError(
                f"Z must have shape {batch + (d_in, d_in)} (one tangent vector per point of "
                f"W), got shape {Z.shape}"
            )
        return Z
    if d_out == d_in:
        return as_matrix(Z, "Z", real=True, d=d_in)
    return as_array(Z, "Z", (d_out, d_in), real=True)


def _square_basis(Q: np.ndarray, lam: np.ndarray, c: np.ndarray):
    N, d = Q.shape[0] - 1, lam.size
    # horizontal[k*d + l, s-1] = c_s^{kl} q_{s,k} q_{s-1,l}^T
    hor = np.einsum("skl,sak,sbl->klsab", c, Q[1:], Q[:-1]).reshape(d * d, N, d, d)
    if N == 1 or d == 1:
        return hor, np.zeros((0, N, d, d))
    k, l, a_kl, a_lk = _vertical_coefficients(lam, N)
    Qs, Qs1 = Q[1:], Q[:-1]  # (N, d, d)
    qk_s = Qs[:, :, k].transpose(2, 0, 1)  # (pairs, N, d): q_{s,k}
    ql_s = Qs[:, :, l].transpose(2, 0, 1)
    qk_s1 = Qs1[:, :, k].transpose(2, 0, 1)
    ql_s1 = Qs1[:, :, l].transpose(2, 0, 1)
    A = np.einsum("cps,csa,csb->cpsab", a_kl, qk_s, ql_s1)
    A -= np.einsum("cps,csa,csb->cpsab", a_lk, ql_s, qk_s1)
    return hor, A.reshape(-1, N, d, d)


# ---------------------------------------------------------------------------
# Checked doors
# ---------------------------------------------------------------------------


def _frame_at(W, frame: BalancedFrame | None, widths=None) -> tuple[Layers, BalancedFrame]:
    """Validate a point (or stack) W; return it with its frame (built, or checked)."""
    if _is_layers(W):
        W = _layers(W, "W", widths)
    else:
        W = _stack(W, batch=True)
        _check_no_widths(W, widths)
    if frame is None:
        return W, BalancedFrame.from_valid(W)
    if not isinstance(frame, BalancedFrame):
        raise TypeError(f"frame must be a BalancedFrame, got {type(frame).__name__}")
    if not frame.matches(W):
        raise ValueError(
            f"frame must be the BalancedFrame of W: it has widths {frame.widths} and batch "
            f"shape {frame._batch}, W does not match"
        )
    return W, frame


def _arg(frame: BalancedFrame, Z, name: str) -> Layers:
    """Validate a vector with the layout of the frame's point (the public door)."""
    if frame._general:
        return _layers_like(Z, name, frame.widths)
    Z = _stack(Z, name, depth=frame.depth, d=frame.r, batch=True)
    if Z.shape != frame._shape:
        raise ValueError(f"{name} must have shape {frame._shape}, got {Z.shape}")
    return Z


def balanced_tangent_projection(
    W, Z, *, frame: BalancedFrame | None = None, widths: Sequence[int] | None = None
) -> Layers:
    r"""Orthogonal projection of an ambient vector onto :math:`T_W\mathcal{M}`.

    :math:`P_W(Z) = Z - w_S` where the symmetric multipliers :math:`S_k` solve
    :math:`dG(w_S) = dG(Z)`, decoupled in the SVD frames into one
    tridiagonal Toeplitz system along depth per entry (k, l) (module
    docstring; :ref:`math-balanced`), solved by a sine transform along depth (N <= 65) or
    vectorized Thomas elimination. For general widths the r x r blocks are projected
    so, the pairs :math:`(C_k, B_{k+1})` onto :math:`C_k = B_{k+1}^T` and the
    :math:`\perp\perp` blocks dropped (module section *General widths*).

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or sequence of N arrays
        Full-rank balanced point (or a stack of points, vectorized); a list of layers
        for general widths.
    Z : array_like, same shape as W
        Ambient vector.
    frame : BalancedFrame, optional
        The :class:`BalancedFrame` of W (saves N SVDs and N products).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, same shape as W, or list of N arrays

    Notes
    -----
    Time O(N d^3) (4N matrix products plus the frames), memory O(N d^2).
    Exact at repeated or close singular values: the depth eigenvalues
    :math:`2((\lambda_k-\lambda_l)^2 + 4\lambda_k\lambda_l\sin^2(m\pi/2N))` are at
    least :math:`8\lambda_k\lambda_l\sin^2(\pi/2N) \approx 2\pi^2\lambda_k\lambda_l/N^2`,
    so the per-entry systems have condition number O(N^2) at worst.
    """
    W, frame = _frame_at(W, frame, widths)
    return frame.tangent_projection_unchecked(_arg(frame, Z, "Z"))


def balanced_normal_multipliers(
    W, Z, *, frame: BalancedFrame | None = None, widths: Sequence[int] | None = None
) -> Layers:
    r"""Symmetric multipliers S of the normal part: :math:`Z - P_W(Z) = w_S`.

    :math:`(w_S)_p = S_pW_p - W_pS_{p-1}` with :math:`S_0 = S_N = 0`. For general
    widths :math:`Z - P_W(Z) = w_S + E` with E the :math:`\perp\perp` blocks (normal to
    the rank-r layers); the blocks :math:`(Q_k^\perp)^TS_kQ_k^\perp` are set to 0.

    Parameters
    ----------
    W, Z : array_like, shape (N, d, d) or (..., N, d, d), or sequences of N arrays
    frame : BalancedFrame, optional
    widths : sequence of int, optional

    Returns
    -------
    S : ndarray, shape (..., N - 1, d, d), or list of N - 1 arrays (d_k, d_k)
        Symmetric matrices :math:`S_1, \dots, S_{N-1}`.
    """
    W, frame = _frame_at(W, frame, widths)
    return BalancedFrame.normal_multipliers(_unchecked(frame), _arg(frame, Z, "Z"))


def _unchecked(frame: BalancedFrame) -> BalancedFrame:
    """The frame with its argument checks off (the door has checked them)."""
    if not frame._check:
        return frame
    view = BalancedFrame.__new__(BalancedFrame)
    view.__dict__.update(frame.__dict__)
    view._check = False
    return view


def balanced_weingarten(
    W, V, normal, *, frame: BalancedFrame | None = None, widths: Sequence[int] | None = None
) -> Layers:
    r"""Weingarten map :math:`\mathfrak{W}_V(n) = -P_W(D_V \tilde n)` of :math:`\mathcal{M}`.

    A normal vector is :math:`n = w_S` with symmetric :math:`S_k`; extending it
    by the same S to nearby points gives :math:`D_V\tilde n = w_S(V)`, layer p
    :math:`S_pV_p - V_pS_{p-1}`, so :math:`\mathfrak{W}_V(n) = -P_W(w_S(V))`.
    The Riemannian Hessian of a function with Euclidean gradient g and
    Hessian H is :math:`P_W(H[V]) + \mathfrak{W}_V(g - P_W g)`. For general widths the
    normal part also has the :math:`\perp\perp` blocks :math:`E_k`, extended by
    :math:`P^\perp E_kR^\perp` at the rank-r layers, which adds
    :math:`P_W((W_k^+)^TV_k^TE_k + E_kV_k^T(W_k^+)^T)`.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Balanced point.
    V : array_like, shape of W
        Tangent vector.
    normal : array_like, shape of W
        Normal vector (its tangent part, if any, is ignored).
    frame : BalancedFrame, optional
    widths : sequence of int, optional

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays
        Tangent vector.
    """
    W, frame = _frame_at(W, frame, widths)
    if not frame._general:
        frame._single("balanced_weingarten")
    V, normal = _arg(frame, V, "V"), _arg(frame, normal, "normal")
    return _unchecked(frame).weingarten(V, normal)


def balanced_riemannian_hessian(
    W,
    egrad,
    ehess,
    V,
    *,
    frame: BalancedFrame | None = None,
    widths: Sequence[int] | None = None,
) -> Layers:
    r"""Riemannian Hessian on :math:`\mathcal{M}`: :math:`P_W(H[V]) + \mathfrak{W}_V(P^\perp_W g)`.

    For square layers :math:`P_W(H[V]) - P_W(w_S(V))` with S the normal multipliers of
    the Euclidean gradient (:func:`balanced_normal_multipliers`); see
    :func:`balanced_weingarten`.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
    egrad : array_like, shape of W
        Euclidean gradient at W.
    ehess : array_like, shape of W
        Euclidean Hessian applied to V.
    V : array_like, shape of W
        Tangent vector.
    frame : BalancedFrame, optional
    widths : sequence of int, optional

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays
    """
    W, frame = _frame_at(W, frame, widths)
    if not frame._general:
        frame._single("balanced_riemannian_hessian")
    egrad, ehess = _arg(frame, egrad, "egrad"), _arg(frame, ehess, "ehess")
    V = _arg(frame, V, "V")
    return _unchecked(frame).riemannian_hessian(egrad, ehess, V)


# ---------------------------------------------------------------------------
# The Riemannian submersion phi : M -> (M_{d_N x d_0}, g^N)
# ---------------------------------------------------------------------------


def horizontal_projection(
    W, Z, *, frame: BalancedFrame | None = None, widths: Sequence[int] | None = None
) -> Layers:
    r"""Orthogonal projection onto the horizontal space :math:`(\ker d\phi)^\perp`.

    The horizontal space is the range of :math:`d\phi^*` (which lies in
    :math:`T_W\mathcal{M}`, [G] Thm 1), so the projection is
    :math:`d\phi^*\mathcal{A}_{N,X}^{-1}d\phi(Z)`; in the frames,
    :math:`\hat h_p = c_p\circ\sum_q c_q\circ\hat Z_q` entrywise with the
    normalized coefficients :math:`c_p = \lambda_k^{N-p}\lambda_l^{p-1}/\sqrt{m_{kl}}`.
    For general widths also the blocks :math:`B_1` (wide X) or :math:`C_N` (tall X),
    which :math:`d\phi` maps to the complement block of X. Accepts any ambient Z.

    Parameters
    ----------
    W, Z : array_like, shape (N, d, d) or (..., N, d, d), or sequences of N arrays
    frame : BalancedFrame, optional
    widths : sequence of int, optional

    Returns
    -------
    ndarray, same shape as W, or list of N arrays
    """
    W, frame = _frame_at(W, frame, widths)
    return frame._from(frame.horizontal_hat(frame._to(_arg(frame, Z, "Z"))))


def vertical_projection(
    W, Z, *, frame: BalancedFrame | None = None, widths: Sequence[int] | None = None
) -> Layers:
    r"""Orthogonal projection onto the vertical space :math:`\ker d\phi \cap T_W\mathcal{M}`.

    The vertical space is the tangent space of the orbit :math:`O_X` of
    :math:`O(d)^{N-1}` (for general widths: of the fiber
    :math:`\prod_k \mathrm{St}(d_k, r)`). :math:`P^{\mathrm{ver}} = P_W - P^{\mathrm{hor}}`
    (the horizontal space lies in :math:`T_W\mathcal{M}`). Accepts any ambient Z.

    Parameters
    ----------
    W, Z : array_like, shape (N, d, d) or (..., N, d, d), or sequences of N arrays
    frame : BalancedFrame, optional
    widths : sequence of int, optional

    Returns
    -------
    ndarray, same shape as W, or list of N arrays
    """
    W, frame = _frame_at(W, frame, widths)
    return _unchecked(frame).vertical_projection(_arg(frame, Z, "Z"))


def horizontal_lift(
    W, Z, *, frame: BalancedFrame | None = None, widths: Sequence[int] | None = None
) -> Layers:
    r"""Horizontal lift: the horizontal H with :math:`d\phi_W(H) = Z \in T_X\mathfrak{M}`.

    :math:`H = d\phi^*\mathcal{A}_{N,X}^{-1}(Z)`; in the frames
    :math:`\hat H_p = c_p \circ \hat Z / \sqrt{m}` with :math:`\hat Z = Q_N^TZQ_0`
    ([G] eq. 8.20, 8.23-8.24). An isometry from :math:`(T_X\mathfrak{M}, g^N)`
    onto the horizontal space ([G] Thm 13). For general widths X is
    :math:`d_N\times d_0` of rank r; the complement block of :math:`\hat Z` (rows
    :math:`Q_N^\perp` of a tall X, columns :math:`Q_0^\perp` of a wide X) goes to
    :math:`C_N = \hat Z_{\perp r}\Lambda^{1-N}` or :math:`B_1 = \Lambda^{1-N}\hat Z_{r\perp}`,
    and :math:`|H|^2 = g^N_X(Z, Z)` with the rectangular depth operator of
    :class:`~dln_manifolds.DepthFrame`.

    Parameters
    ----------
    W : array_like, shape (N, d, d) or (..., N, d, d), or sequence of N arrays
        Balanced point over X = phi(W), or a stack of them (vectorized).
    Z : array_like, shape (d, d), (..., d, d) or (d_N, d_0)
        Tangent vector at X (one per point of a stack: batch shape of W).
    frame : BalancedFrame, optional
    widths : sequence of int, optional

    Returns
    -------
    ndarray, shape (..., N, d, d), or list of N arrays

    Notes
    -----
    Cost: 2N + 2 matrix products given the frames, O(N d^3).
    """
    W, frame = _frame_at(W, frame, widths)
    d_out, d_in = frame.widths[-1], frame.widths[0]
    Z = _end_to_end_vector(Z, d_out, d_in, frame._batch)
    return _unchecked(frame).horizontal_lift(Z)


def balanced_orthonormal_basis(
    W, *, frame: BalancedFrame | None = None, widths: Sequence[int] | None = None
) -> tuple[Layers, Layers]:
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

    For general widths (r = min(d_0, d_N)): horizontal, the :math:`r^2` vectors above
    then the unit vectors of the free block :math:`C_N` (tall X, row-major) or
    :math:`B_1` (wide X), :math:`d_0d_N` in all; vertical, the vectors above on the
    r x r blocks then, for each hidden k, the pairs
    :math:`C_k = B_{k+1}^T = e_je_m^T/\sqrt2`, :math:`r(d_k - r)` of them.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Full-rank balanced point.
    frame : BalancedFrame, optional
    widths : sequence of int, optional

    Returns
    -------
    horizontal : ndarray, shape (d^2, N, d, d), or list of N arrays (d_0 d_N, d_k, d_{k-1})
    vertical : ndarray, shape ((N-1) d (d-1) / 2, N, d, d), or list of N arrays
        For general widths layer k of every basis vector, stacked along the first axis.
    """
    W, frame = _frame_at(W, frame, widths)
    return frame.orthonormal_basis()
