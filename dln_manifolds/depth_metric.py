r"""The depth operator :math:`\mathcal{A}_{N,X}` and the metric :math:`g^N` on full-rank matrices.

[G] eq. 4.14 defines, for a d x d matrix X,

.. math::

    \mathcal{A}_{N,X}(Z) = \sum_{k=1}^{N} (XX^T)^{(N-k)/N}\, Z\, (X^TX)^{(k-1)/N},

and the depth metric :math:`g^N_X(Z_1, Z_2) = \mathrm{tr}(Z_1^T \mathcal{A}_{N,X}^{-1} Z_2)`
([G] eq. 4.16-4.17). With :math:`X = U \Sigma V^T` and :math:`\hat Z = U^T Z V`
the operator acts entrywise ([G] eq. 7.13-7.14): the multiplier of
:math:`\hat Z_{kl}` is

.. math::

    m_{kl} = \frac{s_k^2 - s_l^2}{s_k^{2/N} - s_l^{2/N}}\ (k \ne l), \qquad
    m_{kk} = N s_k^{2 - 2/N}.

``depth = numpy.inf`` means the rescaled limit
:math:`\mathcal{A}_{\infty,X} = \lim_N \mathcal{A}_{N,X} / N` ([G] eq. 14.7-14.9),
with multipliers :math:`(s_k^2 - s_l^2) / (2\log(s_k/s_l))` and :math:`s_k^2`.

Numerics
--------
All multipliers are evaluated in log variables :math:`\alpha_k = 2 \log s_k`:

.. math::

    m_{kl} = c_N\, e^{(1-q)\alpha_{\max}}\, R(\alpha_{\min} - \alpha_{\max}),\quad
    R(\delta) = \frac{q\,\mathrm{expm1}(\delta)}{\mathrm{expm1}(q\delta)},

with :math:`q = 1/N`, :math:`c_N = N` (and :math:`q = 0`,
:math:`R(\delta) = \mathrm{expm1}(\delta)/\delta`, :math:`c_N = 1` for
N = inf). :math:`R` takes values in (0, 1] for :math:`\delta \le 0`, has no
cancellation at equal or nearly equal singular values and does not overflow
for large N, so the cost is O(d^3) (one SVD) whatever the depth.

Non-square X
------------
For X of shape (m, n) and full rank r = min(m, n), :math:`\mathcal{A}_{N,X}` is eq. 4.14
with :math:`(\cdot)^0 = I` on :math:`\mathbb{R}^{m\times n}`. With the thin SVD
:math:`X = U \Sigma V^T` it is block diagonal: on :math:`U^T Z V` the multipliers above;
on the complement block (:math:`U_\perp^T Z V` for tall X, :math:`U^T Z V_\perp` for wide X)
only the term k = N (tall) or k = 1 (wide) survives, a multiplication by
:math:`c_j = s_j^{2(N-1)/N}` (the symbol with one argument 0). The complement is never
formed: its block is :math:`(I - UU^T) Z V`, so the cost is O(m n r) whatever N. A wide X is
handled through :math:`\mathcal{A}_{N,X}(Z) = \mathcal{A}_{N,X^T}(Z^T)^T`. The derivatives
add the divided differences of the symbol through the eigenvalue 0 of :math:`XX^T`, in log
variables as above. For ``depth = inf`` the complement multiplier :math:`c_j / N \to 0`: the
operator and its derivative exist, but it is not invertible, so the inverse, the metric and
the Christoffel term raise ValueError. See docs/mathematics.rst, :ref:`math-widths`.

One implementation
------------------
:class:`DepthFrame` holds the SVD, the multipliers and (lazily) the divided
differences of one point X, or of a batch of points, and evaluates every
quantity of this module on batches of matrices. The module functions are
one-line wrappers that build a frame per call. The divided differences reuse the
exponentials evaluated for the multipliers (the frame keeps them), and the geodesic
acceleration is one pass over the frame coordinates: the evaluation of the geodesic
equation costs one SVD and O(d^3) contractions (docs/performance.rst, *Downstairs log*).

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [DK] Ju. L. Daleckii and S. G. Krein, *Integration and differentiation of functions of
  Hermitian operators and applications to the theory of perturbations*, AMS Transl. (2)
  47 (1965).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._checks import (
    as_array,
    as_matrix,
    as_matrix_batch,
    check_depth,
    check_full_rank_batch,
)
from ._linalg import conj_transpose

__all__ = [
    "DepthFrame",
    "depth_multipliers",
    "depth_operator",
    "inverse_depth_operator",
    "depth_operator_power",
    "depth_inner_product",
    "depth_operator_derivative",
    "depth_operator_derivative_adjoint",
    "depth_christoffel",
]

_SERIES_CUTOFF = 1e-4  # |delta| below which R'(delta) uses its Taylor series
_DIVDIFF_CUTOFF = 1e-6  # relative gap below which a divided difference is a derivative


def svd_frame(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular value decomposition ``X = U @ diag(s) @ Vh`` after validating X.

    Returns
    -------
    U : ndarray, shape (d, d)
    s : ndarray, shape (d,)
        Singular values in decreasing order.
    Vh : ndarray, shape (d, d)
        For X of shape (m, n) with m != n, the thin SVD: U (m, r), s (r,), Vh (r, n),
        r = min(m, n).
    """
    X = _as_point(X)
    if X.shape[0] != X.shape[1]:
        return np.linalg.svd(X, full_matrices=False)
    return np.linalg.svd(X)


def depth_q_and_scale(depth) -> tuple[float, float]:
    """Return q = 1/N and the factor c_N (N for finite depth, 1 for inf)."""
    if np.isinf(depth):
        return 0.0, 1.0
    return 1.0 / depth, float(depth)


def _ratio(delta: np.ndarray, q: float) -> np.ndarray:
    r"""R(delta) = q expm1(delta) / expm1(q delta), delta <= 0; expm1(delta)/delta if q = 0."""
    delta = np.asarray(delta, dtype=np.float64)
    tiny = np.abs(delta) < 1e-290
    safe = np.where(tiny, -1.0, delta)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if q == 0.0:
            r = np.expm1(safe) / safe
            r = np.where(np.isneginf(safe), 0.0, r)
        else:
            r = q * np.expm1(safe) / np.expm1(q * safe)
    return np.where(tiny, 1.0, r)


def _ratio_derivative(delta: np.ndarray, q: float, ratio: np.ndarray | None = None) -> np.ndarray:
    r"""R'(delta) for delta <= 0, with a Taylor series near 0.

    Near 0, :math:`\log R(\delta) = \log R(0) + (1-q)\delta/2 + (1-q^2)\delta^2/24 + O(\delta^4)`,
    so :math:`R'/R = (1-q)/2 + (1-q^2)\delta/12 + O(\delta^3)`. ``ratio``: R(delta) if known.
    """
    delta = np.asarray(delta, dtype=np.float64)
    small = np.abs(delta) < _SERIES_CUTOFF
    safe = np.where(small, -1.0, delta)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if q == 0.0:
            direct = (safe * np.exp(safe) - np.expm1(safe)) / safe**2
        else:
            em = np.expm1(q * safe)
            direct = q * (np.exp(safe) * em - q * np.expm1(safe) * np.exp(q * safe)) / em**2
    if ratio is None:
        ratio = _ratio(delta, q)
    series = ratio * ((1.0 - q) / 2.0 + (1.0 - q * q) * delta / 12.0)
    return np.where(small, series, direct)


def _log_sq(s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 2.0 * np.log(s)


def _max_and_ratio(a: np.ndarray, c: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The factors of [G] eq. 7.13-7.14: :math:`f(a, c) = c_N e^{(1-q)\max(a, c)} R(\min - \max)`.

    Returns ``max(a, c)`` and :math:`R(\min(a, c) - \max(a, c))` (R = 1 where both are -inf).
    """
    hi = np.maximum(a, c)
    with np.errstate(invalid="ignore"):
        delta = np.minimum(a, c) - hi
    return hi, _ratio(np.where(np.isneginf(hi), 0.0, delta), q)


def multiplier_from_alpha(a: np.ndarray, c: np.ndarray, q: float, scale: float) -> np.ndarray:
    """Symmetric multiplier f(a, c) for log-squared singular values a, c (broadcasting)."""
    hi, ratio = _max_and_ratio(a, c, q)
    m = scale * np.exp((1.0 - q) * hi) * ratio
    return np.where(np.isneginf(hi), 0.0, m)


def log_multiplier_from_alpha(a: np.ndarray, c: np.ndarray, q: float, scale: float) -> np.ndarray:
    r""":math:`\log f(a, c)` of :func:`multiplier_from_alpha`, without overflow for any depth.

    Internal (not exported), for log-singular values a, c > -inf (full rank):
    :math:`\log f = \log c_N + (1-q)\max(a, c) + \log R(\min - \max)`, [G] eq. 7.13-7.14.
    Used where :math:`e^{(1-q)a}` itself would overflow (the balanced manifold's lift
    coefficients at large depth).
    """
    hi, ratio = _max_and_ratio(a, c, q)
    return np.log(scale) + (1.0 - q) * hi + np.log(ratio)


def multiplier_d_alpha(a: np.ndarray, c: np.ndarray, q: float, scale: float) -> np.ndarray:
    """Partial derivative of f(a, c) in its first log-variable a, evaluated stably."""
    # With delta = -|a - c| (= a - c if a <= c, c - a otherwise, exactly) and hi = max(a, c):
    # a <= c: f = scale e^{(1-q) c} R(a - c)  ->  df/da = scale e^{(1-q)c} R'(a - c)
    # a > c: f = scale e^{(1-q) a} R(c - a) -> df/da = scale e^{(1-q)a}((1-q)R - R')
    a, c = np.broadcast_arrays(a, c)
    delta = -np.abs(a - c)
    ratio = _ratio(delta, q)
    d_ratio = _ratio_derivative(delta, q, ratio)
    factor = scale * np.exp((1.0 - q) * np.maximum(a, c))
    return factor * np.where(a <= c, d_ratio, (1.0 - q) * ratio - d_ratio)


def _multipliers(s: np.ndarray, depth) -> np.ndarray:
    """Multipliers ``M[..., k, l] = f(s_k, s_l)`` for validated singular values (..., d)."""
    return _symbol(s, depth)[0]


def _symbol(s: np.ndarray, depth) -> tuple[np.ndarray, tuple | None]:
    r"""The multipliers of :func:`_multipliers` and the pieces of their evaluation.

    For s > 0 the pieces ``(alpha, hi, delta, safe, e1, eq, ratio, factor)`` (log
    variables :math:`\alpha`, :math:`\max(\alpha_k, \alpha_l)`,
    :math:`\delta = \min - \max`, :math:`\delta` with the exact ties replaced by -1,
    :math:`\mathrm{expm1}(\delta)`, :math:`\mathrm{expm1}(q\delta)` (:math:`\delta` for
    q = 0), :math:`R(\delta)` and :math:`c_N e^{(1-q)\max}`) are kept for the divided
    differences (:func:`_divided_differences`, :func:`_complement_divided_differences`),
    which reuse them instead of evaluating the same exponentials again; the values are
    those of :func:`multiplier_from_alpha` and :func:`_ratio`, operation for operation.
    ``None`` at depth 1 or where a singular value is 0 (or not finite).
    """
    if depth == 1:
        return np.ones(s.shape + s.shape[-1:]), None
    q, scale = depth_q_and_scale(depth)
    alpha = _log_sq(s)
    a, c = alpha[..., :, None], alpha[..., None, :]
    if not np.all(np.isfinite(alpha)):
        return multiplier_from_alpha(a, c, q, scale), None
    hi = np.maximum(a, c)
    delta = np.minimum(a, c) - hi  # = -|a - c|, exactly
    tiny = np.abs(delta) < 1e-290
    safe = np.where(tiny, -1.0, delta)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        e1 = np.expm1(safe)
        if q == 0.0:
            eq = safe
            r = e1 / safe
        else:
            eq = np.expm1(q * safe)
            r = q * e1 / eq
        ratio = np.where(tiny, 1.0, r)
        factor = scale * np.exp((1.0 - q) * hi)
    return factor * ratio, (alpha, hi, delta, safe, e1, eq, ratio, factor)


def depth_multipliers(s, depth) -> np.ndarray:
    r"""Entrywise multipliers of :math:`\mathcal{A}_{N,X}` in the singular frame.

    [G] eq. 7.13-7.14 (and 14.8-14.9 for ``depth = inf``).

    Parameters
    ----------
    s : array_like, shape (d,)
        Singular values of X (non-negative, any order).
    depth : int or numpy.inf

    Returns
    -------
    M : ndarray, shape (d, d)
        ``M[k, l]`` multiplies the coefficient of :math:`u_k v_l^T`. Symmetric,
        positive where both singular values are (and for depth 1, identically 1).
    """
    depth = check_depth(depth)
    s = as_array(s, "s", batch=True, real=True)
    if s.ndim != 1:
        raise ValueError(f"s must be a vector of singular values, got shape {s.shape}")
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("s must contain finite non-negative singular values")
    return _multipliers(s, depth)


def _divided_differences(s: np.ndarray, M: np.ndarray, depth, pieces=None) -> np.ndarray:
    r"""First divided differences of the multiplier symbol in its first argument.

    ``T[..., i, m, j] = (f(l_i, l_j) - f(l_m, l_j)) / (l_i - l_m)`` with
    :math:`l = s^2` and ``M[..., i, j] = f(l_i, l_j)``; where
    :math:`|\log l_i - \log l_m| <` ``_DIVDIFF_CUTOFF`` (always for i = m) it is
    the partial derivative :math:`\partial_1 f` at the midpoint of the log
    variables, evaluated stably by :func:`multiplier_d_alpha`. Batched over
    leading axes of ``s`` (shape (..., d)); O(d^3) memory and time. ``pieces``: those of
    :func:`_symbol` (M's evaluation), reused by the diagonal.
    """
    q, scale = depth_q_and_scale(depth)
    alpha = _log_sq(s) if pieces is None else pieces[0]
    lam = s**2
    d = s.shape[-1]
    eye = np.eye(d, dtype=bool)
    den = np.where(eye, 1.0, lam[..., :, None] - lam[..., None, :])
    T = np.empty(M.shape[:-1] + M.shape[-2:])
    with np.errstate(divide="ignore", invalid="ignore"):  # (near) ties are replaced below
        np.subtract(M[..., :, None, :], M[..., None, :, :], out=T)
        T /= den[..., :, :, None]
    # Diagonal i = m: the derivative at a_i itself (O(d^2) evaluations).
    idx = np.arange(d)
    if pieces is None:
        a, c = np.broadcast_arrays(alpha[..., :, None], alpha[..., None, :])
        T[..., idx, idx, :] = multiplier_d_alpha(a, c, q, scale) * np.exp(-a)
    else:
        T[..., idx, idx, :] = _diagonal_derivative(pieces, q) * np.exp(-alpha)[..., :, None]
    # Off-diagonal near-ties: the derivative at the midpoint of the log variables.
    if pieces is None:
        close = (np.abs(alpha[..., :, None] - alpha[..., None, :]) < _DIVDIFF_CUTOFF) & ~eye
    else:  # delta = -|alpha_i - alpha_m|
        close = (pieces[2] > -_DIVDIFF_CUTOFF) & ~eye
    if np.any(close):
        where = np.nonzero(close)  # (batch indices..., i, m)
        batch, i, m = where[:-2], where[-2], where[-1]
        mid = 0.5 * (alpha[batch + (i,)] + alpha[batch + (m,)])
        mid, aj = np.broadcast_arrays(mid[:, None], alpha[batch] if batch else alpha)
        T[where] = multiplier_d_alpha(mid, aj, q, scale) * np.exp(-mid)
    return T


def _diagonal_derivative(pieces: tuple, q: float) -> np.ndarray:
    """:func:`multiplier_d_alpha` at (alpha_i, alpha_j) from the pieces of :func:`_symbol`.

    The same operations as :func:`multiplier_d_alpha` and :func:`_ratio_derivative`
    (hence the same values), with R, expm1 and the exponential factor reused.
    """
    alpha, _, delta, safe, e1, eq, ratio, factor = pieces
    small = delta > -_SERIES_CUTOFF  # |delta| < cutoff (delta <= 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # equal to _ratio_derivative's direct form where it is used (|delta| >= cutoff)
        if q == 0.0:
            direct = (safe * np.exp(safe) - e1) / safe**2
        else:
            direct = q * (np.exp(safe) * eq - q * e1 * np.exp(q * safe)) / eq**2
    series = ratio * ((1.0 - q) / 2.0 + (1.0 - q * q) * delta / 12.0)
    d_ratio = np.where(small, series, direct)
    below = alpha[..., :, None] <= alpha[..., None, :]
    return factor * np.where(below, d_ratio, (1.0 - q) * ratio - d_ratio)


def _complement_multipliers(s: np.ndarray, depth) -> np.ndarray:
    r"""Complement multipliers :math:`c_j = s_j^{2(N-1)/N}` (0 for N = inf, 1 for N = 1).

    :math:`c_j = f(0, s_j^2)`: the symbol of :math:`\mathcal{A}_{N,X}` with one argument 0,
    i.e. only the term k = N (tall X) or k = 1 (wide X) of eq. 4.14 survives.
    """
    if depth == 1:
        return np.ones_like(s)
    if np.isinf(depth):
        return np.zeros_like(s)
    q = 1.0 / depth
    with np.errstate(divide="ignore"):
        return np.exp((1.0 - q) * _log_sq(s))


def _expm1_ratio(delta: np.ndarray, a: float, b: float) -> np.ndarray:
    """expm1(a delta) / expm1(b delta) for delta <= 0 (a, b > 0), a / b at delta = 0."""
    tiny = np.abs(delta) < 1e-290
    safe = np.where(tiny, -1.0, delta)
    return np.where(tiny, a / b, np.expm1(a * safe) / np.expm1(b * safe))


def _complement_divided_differences(
    s: np.ndarray, M: np.ndarray, depth, pieces=None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Divided differences of the symbol that involve the eigenvalue 0 of the complement.

    With :math:`l = s^2`, :math:`f` the symbol (``M[..., i, j] = f(l_i, l_j)``) and
    :math:`c(l) = f(0, l) = l^{1-q}`:

    - ``E[..., i, j] = (f(l_i, l_j) - c(l_j)) / l_i``, evaluated as
      :math:`l_i^{q-1} e^{(1-2q)\max(\alpha_i, \alpha_j)}\,
      \mathrm{expm1}((1-q)\delta)/\mathrm{expm1}(q\delta)` in the log variables
      :math:`\alpha = \log l`, :math:`\delta = -|\alpha_i - \alpha_j|` (no cancellation);
      :math:`f(l_i, l_j)/l_i` for N = inf (where c = 0);
    - ``G[..., m, j] = (c(l_m) - c(l_j)) / (l_m - l_j)``, evaluated as
      :math:`e^{-q\max}\,\mathrm{expm1}((1-q)\delta)/\mathrm{expm1}(\delta)`
      (:math:`c'(l_j)` at ties); 0 for N = inf.

    Full rank (s > 0) is assumed; O(r^2) for s of shape (..., r). ``pieces``: those of
    :func:`_symbol`, whose expm1 of :math:`\delta` and :math:`q\delta` are reused.
    """
    q, _ = depth_q_and_scale(depth)
    if q == 0.0:
        return M / (s * s)[..., :, None], np.zeros_like(M)
    if pieces is not None:
        alpha, hi, delta, safe, e1, eq = pieces[:6]
        tiny = safe != delta  # the exact ties (safe = -1 there)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            e1q = np.expm1((1.0 - q) * safe)
            E = np.exp((q - 1.0) * alpha[..., :, None] + (1.0 - 2.0 * q) * hi) * np.where(
                tiny, (1.0 - q) / q, e1q / eq
            )
            G = np.exp(-q * hi) * np.where(tiny, (1.0 - q) / 1.0, e1q / e1)
        return E, G
    alpha = _log_sq(s)
    ai, aj = alpha[..., :, None], alpha[..., None, :]
    hi = np.maximum(ai, aj)
    delta = -np.abs(ai - aj)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        E = np.exp((q - 1.0) * ai + (1.0 - 2.0 * q) * hi) * _expm1_ratio(delta, 1.0 - q, q)
        G = np.exp(-q * hi) * _expm1_ratio(delta, 1.0 - q, 1.0)
    return E, G


def _as_points(X) -> np.ndarray:
    """Validate a point or a batch of points of shape (..., m, n) (square: (..., d, d))."""
    if isinstance(X, (str, bytes)) or X is None:
        return as_matrix(X)
    shape = np.shape(X)
    if len(shape) < 2 or (len(shape) == 2 and shape[0] == shape[1]):
        return as_matrix(X)
    if shape[-1] != shape[-2]:
        if min(shape[-2:]) == 0:
            raise ValueError(f"X must have shape (..., m, n) with m, n >= 1, got shape {shape}")
        return as_array(X, "X", shape[-2:], real=False, batch=True)
    if shape[-1] == 0:
        raise ValueError(f"X must have shape (..., d, d) with d >= 1, got shape {shape}")
    return as_matrix_batch(X, shape[-1], "X")


def _as_point(X) -> np.ndarray:
    """Validate a single point, of shape (d, d) or (m, n) (the module functions)."""
    return _as_points(X) if np.ndim(X) == 2 else as_matrix(X)


def _as_rect_batch(Z, shape: tuple[int, int], name: str) -> np.ndarray:
    """A matrix or a batch of matrices of the (non-square) shape of X."""
    m, n = shape
    message = f"{name} must have shape (..., {m}, {n}) (the shape of X), got shape"
    if not isinstance(Z, (str, bytes)) and Z is not None and np.size(Z) == 0:
        raise ValueError(f"{message} {np.shape(Z)}")
    Z = as_array(Z, name, real=False, batch=True)
    if Z.ndim < 2 or Z.shape[-2:] != (m, n):
        raise ValueError(f"{message} {Z.shape}")
    return Z


def _as_single(Z, d: int | tuple[int, int], name: str) -> np.ndarray:
    """A single matrix of the shape of X (the derivative functions take no batches)."""
    if isinstance(d, tuple):
        Z = _as_rect_batch(Z, d, name)
        if Z.ndim != 2:
            raise ValueError(f"{name} must have shape {d}, got shape {Z.shape}")
        return Z
    Z = as_matrix_batch(Z, d, name)
    if Z.ndim != 2:
        raise ValueError(f"{name} must have shape ({d}, {d}), got shape {Z.shape}")
    return Z


class DepthFrame:
    r"""The depth operator :math:`\mathcal{A}_{N,X}` and its derivatives in the singular frame of X.

    Computes once the SVD :math:`X = U \operatorname{diag}(s) V^*`, the
    multipliers :math:`m_{kl}` ([G] eq. 7.13-7.14, 14.8-14.9 for N = inf) and,
    lazily on first use, the first divided differences :math:`T_{imj}` of the
    symbol (O(d^3) memory, needed only by the derivatives and the Christoffel
    term). Every method then acts on frame coordinates
    :math:`\hat Z = U^* Z V` entrywise or by O(d^3) contractions, whatever N.
    The module functions (:func:`depth_operator`, ..., :func:`depth_christoffel`)
    are one-line wrappers that build a frame per call: build one frame yourself
    to evaluate several quantities at the same X.

    Parameters
    ----------
    X : array_like, shape (..., d, d) or (..., m, n)
        Base point(s), real or complex. Matrix arguments of the methods have
        the shape of X, with leading axes that broadcast against its batch
        shape. For m != n see the module section *Non-square X* (full rank
        means rank min(m, n); ``depth = inf`` has no inverse there).
    depth : int or numpy.inf
        N >= 1; ``numpy.inf`` is the rescaled limit (1/N) A_N ([G] eq. 14.7).
    check : bool, default True
        Validate X, depth and the matrix arguments (finite, shapes), and test
        full rank by condition number (<= 1/(d eps)). ``False`` skips all
        validation (for ODE right-hand sides) and only rejects exact zero
        singular values where full rank is needed.
    full_rank : bool, default False
        Test full rank at construction. Otherwise it is tested on the first
        call that needs it (:meth:`inverse`, negative :meth:`power`,
        :meth:`inner`, derivatives, Christoffel terms); :meth:`operator`
        works at any rank.

    Attributes
    ----------
    U : ndarray, shape (..., d, d)
    s : ndarray, shape (..., d)
        Singular values, decreasing.
    Vh : ndarray, shape (..., d, d)
        ``X = U @ (s[..., None] * Vh)``. For m != n the thin SVD: U (..., m, r),
        s (..., r), Vh (..., r, n) with r = min(m, n).
    M : ndarray, shape (..., d, d)
        Multipliers: :math:`\widehat{\mathcal{A}(Z)} = M \odot \hat Z` (the block
        :math:`U^* Z V` for m != n).
    c : ndarray, shape (..., r)
        Only for m != n: multipliers :math:`s_j^{2(N-1)/N}` of the complement block
        (1 for N = 1, 0 for N = inf).
    depth : int or float
    d : int
        The size d, or r = min(m, n) (the number of singular values).
    shape : tuple of int
        (d, d) or (m, n).

    Examples
    --------
    >>> import numpy as np
    >>> from dln_manifolds import DepthFrame, depth_operator
    >>> X = np.array([[2.0, 1.0], [0.0, 1.0]]); Z = np.eye(2)
    >>> frame = DepthFrame(X, 3)
    >>> bool(np.allclose(frame.operator(Z), depth_operator(X, 3, Z)))
    True
    >>> bool(np.allclose(frame.inverse(frame.operator(Z)), Z))
    True
    """

    def __init__(self, X, depth, *, check: bool = True, full_rank: bool = False):
        if check:
            X = _as_points(X)
            depth = check_depth(depth)
        else:
            X = np.asarray(X)
        self.depth = depth
        self.shape = X.shape[-2:]
        self._check = check
        self._rect = self.shape[0] != self.shape[1]
        if self._rect:
            self._init_rectangular(X)
        else:
            self.d = X.shape[-1]
            self.U, self.s, self.Vh = np.linalg.svd(X)
            self.M, self._pieces = _symbol(self.s, depth)
        self._T = None
        self._full_rank_checked = False
        if full_rank:
            self._require_full_rank()

    def _init_rectangular(self, X: np.ndarray) -> None:
        # Thin SVD; internally X is handled "tall": a wide X through X^* (flip), since
        # A_{N,X}(Z) = A_{N,X^*}(Z^*)^*. Tall: X = L diag(s) R^* with L (..., p, r) of
        # orthonormal columns, R (..., r, r) unitary, r = min(m, n), p = max(m, n).
        self.U, self.s, self.Vh = np.linalg.svd(X, full_matrices=False)
        self.d = self.s.shape[-1]
        self._flip = self.shape[0] < self.shape[1]
        V = conj_transpose(self.Vh)
        self._L, self._R = (V, self.U) if self._flip else (self.U, V)
        self.M, self._pieces = _symbol(self.s, self.depth)
        self.c = _complement_multipliers(self.s, self.depth)
        self._EG = None
        self._Lfull = None

    # -- bookkeeping -------------------------------------------------------------
    def _require_full_rank(self) -> None:
        if self._full_rank_checked:
            return
        if not self._check and self._pieces is not None:  # s > 0 (finite log variables)
            self._full_rank_checked = True
            return
        limit = 1.0 / (max(self.shape) * np.finfo(np.float64).eps) if self._check else np.inf
        check_full_rank_batch(self.s, "X", limit)
        self._full_rank_checked = True

    def _arg(self, Z, name: str) -> np.ndarray:
        if not self._check:
            return np.asarray(Z)
        if self._rect:
            return _as_rect_batch(Z, self.shape, name)
        return as_matrix_batch(Z, self.d, name)

    @property
    def divided_differences(self) -> np.ndarray:
        r"""First divided differences ``T[..., i, m, j]`` of the symbol, shape (..., d, d, d).

        :math:`T_{imj} = (f(l_i, l_j) - f(l_m, l_j)) / (l_i - l_m)` with
        :math:`l = s^2` (the derivative at near-ties). Computed on first access.
        """
        if self._T is None:
            self._require_full_rank()
            self._T = _divided_differences(self.s, self.M, self.depth, self._pieces)
        return self._T

    def to_frame(self, Z) -> np.ndarray:
        r"""Frame coordinates :math:`\hat Z = U^* Z V`, shape (..., d, d).

        For a non-square X, shape (..., m, n) in the full singular frame
        :math:`[U, U_\perp]` and :math:`[V, V_\perp]` (the complement computed once,
        by a complete QR); the top-left r x r block is :math:`U^* Z V`.
        """
        if self._rect:
            return self._rect_to(self._arg(Z, "Z"))
        return self._to(self._arg(Z, "Z"))

    def from_frame(self, Zh) -> np.ndarray:
        r"""Inverse of :meth:`to_frame`: :math:`U \hat Z V^*`."""
        if self._rect:
            return self._rect_from(self._arg(Zh, "Zh"))
        return self._from(self._arg(Zh, "Zh"))

    # unchecked versions for the methods below, which validate their own arguments once
    def _to(self, Z: np.ndarray) -> np.ndarray:
        return conj_transpose(self.U) @ Z @ conj_transpose(self.Vh)

    def _from(self, Zh: np.ndarray) -> np.ndarray:
        return self.U @ Zh @ self.Vh

    # -- the operator and the metric ------------------------------------------
    def operator(self, Z) -> np.ndarray:
        r""":math:`\mathcal{A}_{N,X}(Z)` ([G] eq. 4.14), shape (..., d, d). Any rank."""
        Z = self._arg(Z, "Z")
        if self.depth == 1:
            return Z.copy()
        if self._rect:
            return self._rect_scale(Z, self.M, self.c)
        return self._from(self.M * self._to(Z))

    def inverse(self, Z) -> np.ndarray:
        r""":math:`\mathcal{A}_{N,X}^{-1}(Z)`, the metric tensor of :math:`g^N` ([G] eq. 4.16)."""
        Z = self._arg(Z, "Z")
        self._require_full_rank()
        if self.depth == 1:
            return Z.copy()
        if self._rect:
            self._require_finite_depth()
            return self._rect_scale(Z, 1.0 / self.M, 1.0 / self.c)
        return self._from(self._to(Z) / self.M)

    def power(self, Z, p: float) -> np.ndarray:
        r""":math:`\mathcal{A}_{N,X}^{p}(Z)` for a real power p (p < 0 needs full rank)."""
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"power must be a real number, got {type(p).__name__}")
        if not np.isfinite(p):
            raise ValueError(f"power must be finite, got {p}")
        Z = self._arg(Z, "Z")
        if p < 0:
            self._require_full_rank()
            if self._rect:
                self._require_finite_depth()
        if self.depth == 1:
            return Z.copy()
        M = self.M if p == 1 else self.M ** float(p)
        if self._rect:
            return self._rect_scale(Z, M, self.c if p == 1 else self.c ** float(p))
        return self._from(M * self._to(Z))

    def inner(self, Z1, Z2) -> np.ndarray:
        r""":math:`g^N_X(Z_1, Z_2) = \mathrm{Re\,tr}(Z_1^* \mathcal{A}^{-1} Z_2)` ([G] eq. 4.17).

        Returns an array of the broadcast batch shape (...,) (0-d for single matrices).
        """
        Z1, Z2 = self._arg(Z1, "Z1"), self._arg(Z2, "Z2")
        self._require_full_rank()
        if self._rect:
            self._require_finite_depth()
            (h1, c1), (h2, c2) = self._split(Z1), self._split(Z2)
            prod = np.conj(h1) * h2 / self.M
            comp = np.conj(c1) * c2 / self.c[..., None, :]
            return np.real(np.sum(prod, axis=(-2, -1)) + np.sum(comp, axis=(-2, -1)))
        prod = np.conj(self._to(Z1)) * self._to(Z2) / self.M
        return np.real(np.sum(prod, axis=(-2, -1)))

    # -- derivatives, in frame coordinates --------------------------------------
    def _dA_hat(self, Vh: np.ndarray, Zh: np.ndarray) -> np.ndarray:
        """(DA[V] Z)^ from V^ and Z^ (Daleckii-Krein, see depth_operator_derivative)."""
        row, col = self.s[..., None, :], self.s[..., :, None]
        dP = Vh * row + col * conj_transpose(Vh)  # U^*(V X^* + X V^*)U
        dQ = conj_transpose(Vh) * row + col * Vh  # V^*(V^* X + X^* V)V
        T = self.divided_differences
        return np.einsum("...imj,...im,...mj->...ij", T, dP, Zh) + np.einsum(
            "...mji,...im,...mj->...ij", T, Zh, dQ
        )

    def _dA_adjoint_hat(self, Zh: np.ndarray, Yh: np.ndarray) -> np.ndarray:
        """Frame coordinates of K with <K, V> = <Y, DA[V] Z> (Re tr(K^* V), complex X too).

        T and s are real, so K^ = (C1 + C1^*) diag(s) + diag(s) (C2 + C2^*) with
        C1, C2 the coefficients of dP, dQ contracted against conj(Z^) (for real X
        the conjugates drop out).
        """
        T = self.divided_differences
        Zc = np.conj(Zh)
        C1 = np.einsum("...ij,...imj,...mj->...im", Yh, T, Zc)  # coefficient of dP_im
        C2 = np.einsum("...ij,...mji,...im->...mj", Yh, T, Zc)  # coefficient of dQ_mj
        return (C1 + conj_transpose(C1)) * self.s[..., None, :] + self.s[..., :, None] * (
            C2 + conj_transpose(C2)
        )

    def _zeros(self, *arrays) -> np.ndarray:
        own = self.s.shape[:-1] + tuple(self.shape) if self._rect else self.U.shape
        shape = np.broadcast_shapes(own, *(np.shape(a) for a in arrays))
        return np.zeros(shape, dtype=np.result_type(*arrays, np.float64))

    def _bilinear(self, A, B, names: tuple[str, str], square, rect) -> np.ndarray:
        """Validate A, B and apply a bilinear map given in frame coordinates (``square``,
        on the hats) and in split coordinates (``rect``, non-square X); 0 at depth 1."""
        A, B = self._arg(A, names[0]), self._arg(B, names[1])
        self._require_full_rank()
        if self.depth == 1:
            return self._zeros(A, B)
        if self._rect:
            return self._join(*rect(*self._split(A), *self._split(B)))
        return self._from(square(self._to(A), self._to(B)))

    def derivative(self, V, Z) -> np.ndarray:
        r""":math:`D\mathcal{A}_{N,X}[V](Z)` (:func:`depth_operator_derivative`)."""
        return self._bilinear(V, Z, ("V", "Z"), self._dA_hat, self._rect_dA)

    def derivative_adjoint(self, Z, Y) -> np.ndarray:
        r"""K with :math:`\langle K, V\rangle = \langle Y, D\mathcal{A}[V](Z)\rangle` for all V."""
        return self._bilinear(Z, Y, ("Z", "Y"), self._dA_adjoint_hat, self._rect_dA_adjoint)

    def christoffel_hat(self, Uh, Vh) -> np.ndarray:
        r"""Frame coordinates of :math:`\Gamma_X(U, V)` from those of U and V, (..., d, d)."""
        if self._rect:
            Uh, Vh = self._arg(Uh, "Uh"), self._arg(Vh, "Vh")
            gamma = self._rect_christoffel(self._rect_from(Uh), self._rect_from(Vh))
            return self._rect_to(gamma)
        return self._christoffel_hat(self._arg(Uh, "Uh"), self._arg(Vh, "Vh"))

    def _christoffel_hat(self, Uh: np.ndarray, Vh: np.ndarray) -> np.ndarray:
        self._require_full_rank()
        Uh, Vh = np.broadcast_arrays(Uh, Vh)
        if self.depth == 1:
            return self._zeros(Uh)
        BU, BV = Uh / self.M, Vh / self.M
        t = self._dA_hat(Uh, BV) + self._dA_hat(Vh, BU)
        # <U, DB[W] V> = -<BU, DA[W] BV>  =>  K = -adjoint(BV)(BU)
        return -0.5 * t + 0.5 * self.M * self._dA_adjoint_hat(BV, BU)

    def christoffel(self, U_vec, V_vec) -> np.ndarray:
        r""":math:`\Gamma_X(U, V)`, shape (..., d, d); see :func:`depth_christoffel`."""
        U_vec, V_vec = self._arg(U_vec, "U_vec"), self._arg(V_vec, "V_vec")
        if self._rect:
            return self._rect_christoffel(U_vec, V_vec)
        return self._from(self._christoffel_hat(self._to(U_vec), self._to(V_vec)))

    def geodesic_acceleration(self, V) -> np.ndarray:
        r""":math:`-\Gamma_X(V, V)`: the acceleration of the geodesic through X with velocity V.

        One Christoffel term with the symmetric terms merged (two contractions
        instead of three).
        """
        V = self._arg(V, "V")
        self._require_full_rank()
        if self.depth == 1:
            return self._zeros(V)
        if self._rect:
            return self._rect_acceleration(V)
        return self._from(self._acceleration_hat(self._to(V)))

    def _acceleration_hat(self, Vh: np.ndarray) -> np.ndarray:
        r"""Frame coordinates of :math:`-\Gamma_X(V, V)` from :math:`\hat V` (square X).

        :meth:`_dA_hat` (V, BV) minus half M times :meth:`_dA_adjoint_hat` (BV, BV),
        BV = V^ / M, inlined (one transpose of V^, T fetched once): the same operations.
        """
        M, T = self.M, self.divided_differences
        row, col = self.s[..., None, :], self.s[..., :, None]
        complex_ = np.iscomplexobj(Vh)
        Vt = np.swapaxes(Vh, -1, -2)
        if complex_:
            Vt = np.conj(Vt)
        BV = Vh / M
        dP = Vh * row + col * Vt
        dQ = Vt * row + col * Vh
        dA = np.einsum("...imj,...im,...mj->...ij", T, dP, BV) + np.einsum(
            "...mji,...im,...mj->...ij", T, BV, dQ
        )
        Bc = np.conj(BV) if complex_ else BV
        C1 = np.einsum("...ij,...imj,...mj->...im", BV, T, Bc)
        C2 = np.einsum("...ij,...mji,...im->...mj", BV, T, Bc)
        C1t, C2t = np.swapaxes(C1, -1, -2), np.swapaxes(C2, -1, -2)
        if complex_:
            C1t, C2t = np.conj(C1t), np.conj(C2t)
        return dA - 0.5 * M * ((C1 + C1t) * row + col * (C2 + C2t))

    # -- non-square X, in the tall orientation of _init_rectangular -----------------
    def _require_finite_depth(self) -> None:
        if self._rect and np.isinf(self.depth):
            m, n = self.shape
            raise ValueError(
                f"depth must be finite for a non-square X (shape ({m}, {n})): the rescaled "
                "limit A_inf = lim A_N / N vanishes on the complement block, so it has no "
                "inverse and g^inf is not defined there"
            )

    def _tall(self, Z: np.ndarray) -> np.ndarray:
        return conj_transpose(Z) if self._flip else Z

    def _split(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""``(Zh, Zc)``: :math:`\hat Z = L^* Z' R` and :math:`Z_c = (I - LL^*) Z' R`, Z' tall."""
        ZR = self._tall(Z) @ self._R
        Zh = conj_transpose(self._L) @ ZR
        return Zh, ZR - self._L @ Zh

    def _join(self, Zh: np.ndarray, Zc: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_split` (``Zc`` in the range of the complement)."""
        return self._tall((self._L @ Zh + Zc) @ conj_transpose(self._R))

    def _rect_scale(self, Z: np.ndarray, M: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Multiply the block L^*Z'R by M and the complement block by c (column-wise)."""
        ZR = self._tall(Z) @ self._R
        Zh = conj_transpose(self._L) @ ZR
        c = c[..., None, :]
        return self._tall((self._L @ (M * Zh - Zh * c) + ZR * c) @ conj_transpose(self._R))

    @property
    def _complement_dd(self) -> tuple[np.ndarray, np.ndarray]:
        if self._EG is None:
            self._require_full_rank()
            self._EG = _complement_divided_differences(self.s, self.M, self.depth, self._pieces)
        return self._EG

    def _rect_dA(self, Wh, Wc, Zh, Zc) -> tuple[np.ndarray, np.ndarray]:
        """Split coordinates of DA[W](Z) (Daleckii-Krein with the eigenvalue 0 of XX^*)."""
        E, G = self._complement_dd
        row, col = self.s[..., None, :], self.s[..., :, None]
        Dh = self._dA_hat(Wh, Zh) + E * col * (conj_transpose(Wc) @ Zc)
        dQ = conj_transpose(Wh) * row + col * Wh
        Dc = Wc @ (col * E * Zh) + Zc @ (G * dQ)
        return Dh, Dc

    def _rect_dA_adjoint(self, Zh, Zc, Yh, Yc) -> tuple[np.ndarray, np.ndarray]:
        """Split coordinates of K with <K, W> = <Y, DA[W](Z)>."""
        E, G = self._complement_dd
        row, col = self.s[..., None, :], self.s[..., :, None]
        C2 = G * (conj_transpose(Zc) @ Yc)
        Kh = self._dA_adjoint_hat(Zh, Yh) + col * (C2 + conj_transpose(C2))
        Kc = (Zc @ conj_transpose(Yh * E)) * row + Yc @ conj_transpose(col * E * Zh)
        return Kh, Kc

    def _rect_christoffel(self, U_vec: np.ndarray, V_vec: np.ndarray) -> np.ndarray:
        self._require_full_rank()
        self._require_finite_depth()
        U_vec, V_vec = np.broadcast_arrays(U_vec, V_vec)
        if self.depth == 1:
            return self._zeros(U_vec)
        (Uh, Uc), (Vh, Vc) = self._split(U_vec), self._split(V_vec)
        M, c = self.M, self.c[..., None, :]
        BUh, BUc, BVh, BVc = Uh / M, Uc / c, Vh / M, Vc / c
        t1h, t1c = self._rect_dA(Uh, Uc, BVh, BVc)
        t2h, t2c = self._rect_dA(Vh, Vc, BUh, BUc)
        Kh, Kc = self._rect_dA_adjoint(BVh, BVc, BUh, BUc)
        return self._join(-0.5 * (t1h + t2h) + 0.5 * M * Kh, -0.5 * (t1c + t2c) + 0.5 * c * Kc)

    def _rect_acceleration(self, V_vec: np.ndarray) -> np.ndarray:
        r""":math:`-\Gamma_X(V, V)` for non-square X: :meth:`_rect_christoffel` with the two
        equal derivative terms merged (two contractions instead of three)."""
        self._require_full_rank()
        self._require_finite_depth()
        Vh, Vc = self._split(V_vec)
        M, c = self.M, self.c[..., None, :]
        BVh, BVc = Vh / M, Vc / c
        # _rect_dA(Vh, Vc, BVh, BVc) and _rect_dA_adjoint(BVh, BVc, BVh, BVc) inlined, with
        # T, E, G fetched once and the transposes and products they share made once:
        # the same operations
        E, G = self._complement_dd
        T = self.divided_differences
        row, col = self.s[..., None, :], self.s[..., :, None]
        ct = conj_transpose if np.iscomplexobj(Vh) or np.iscomplexobj(self.U) else _transpose
        Vht = ct(Vh)
        dP = Vh * row + col * Vht
        dQ = Vht * row + col * Vh
        dA = np.einsum("...imj,...im,...mj->...ij", T, dP, BVh) + np.einsum(
            "...mji,...im,...mj->...ij", T, BVh, dQ
        )
        th = dA + E * col * (ct(Vc) @ BVc)
        ceB = col * E * BVh
        tc = Vc @ ceB + BVc @ (G * dQ)
        Bc = np.conj(BVh) if ct is conj_transpose else BVh
        C1 = np.einsum("...ij,...imj,...mj->...im", BVh, T, Bc)
        C2 = np.einsum("...ij,...mji,...im->...mj", BVh, T, Bc)
        C3 = G * (ct(BVc) @ BVc)
        Kh = (C1 + ct(C1)) * row + col * (C2 + ct(C2)) + col * (C3 + ct(C3))
        Kc = (BVc @ ct(BVh * E)) * row + BVc @ ct(ceB)
        return self._join(th - 0.5 * M * Kh, tc - 0.5 * c * Kc)

    def _full_left(self) -> np.ndarray:
        """``[L, L_perp]`` (..., p, p): L completed to a unitary matrix (complete QR, once)."""
        if self._Lfull is None:
            Q = np.linalg.qr(self._L, mode="complete")[0]
            self._Lfull = np.concatenate([self._L, Q[..., :, self.d :]], axis=-1)
        return self._Lfull

    def _rect_to(self, Z: np.ndarray) -> np.ndarray:
        return self._tall(conj_transpose(self._full_left()) @ self._tall(Z) @ self._R)

    def _rect_from(self, Zh: np.ndarray) -> np.ndarray:
        return self._tall(self._full_left() @ self._tall(Zh) @ conj_transpose(self._R))


def _transpose(A: np.ndarray) -> np.ndarray:
    """:func:`conj_transpose` of a real array (no type test)."""
    return np.swapaxes(A, -1, -2)


def _at_frame(method, X, depth, A, B, names: tuple[str, str]) -> np.ndarray:
    """``method(DepthFrame(X, depth), A, B)`` for single matrices A, B of the shape of X
    (named ``names`` in errors): one SVD, the functional API's door."""
    f = DepthFrame(_as_point(X), depth)
    return method(f, _as_single(A, _size(f), names[0]), _as_single(B, _size(f), names[1]))


def _size(frame: DepthFrame) -> int | tuple[int, int]:
    """What :func:`_as_single` checks against: d (square X) or the shape (m, n)."""
    return frame.shape if frame._rect else frame.d


def depth_operator(X, depth, Z) -> np.ndarray:
    r"""Apply :math:`\mathcal{A}_{N,X}` ([G] eq. 4.14), or :math:`\mathcal{A}_{\infty,X}` (N = inf).

    Parameters
    ----------
    X : array_like, shape (d, d) or (m, n)
        Base point (any rank).
    depth : int or numpy.inf
        N >= 1; ``numpy.inf`` gives the rescaled limit (1/N) A_N ([G] eq. 14.7).
    Z : array_like, shape (..., d, d) or (..., m, n)
        One matrix or a batch, of the shape of X.

    Returns
    -------
    ndarray, shape of Z

    Notes
    -----
    Cost O(d^3) for the SVD plus O(d^3) per matrix in the batch (O(m n min(m, n))
    for X of shape (m, n)), independent of N. Depth 1 is the identity. Same as
    ``DepthFrame(X, depth).operator(Z)``.
    """
    return DepthFrame(_as_point(X), depth).operator(Z)


def inverse_depth_operator(X, depth, Z) -> np.ndarray:
    r"""Apply :math:`\mathcal{A}_{N,X}^{-1}` (the metric tensor of :math:`g^N`, [G] eq. 4.16).

    In the singular frame of X it divides by the multipliers of
    :func:`depth_multipliers`; cost O(d^3) whatever the depth.

    Parameters
    ----------
    X : array_like, shape (d, d) or (m, n)
        Full-rank base point.
    depth : int or numpy.inf
        Finite for a non-square X.
    Z : array_like, shape (..., d, d) or (..., m, n)

    Returns
    -------
    ndarray, shape of Z

    Raises
    ------
    ValueError
        If X is rank-deficient (condition number above 1/(max(m, n) eps)), or
        ``depth = inf`` with a non-square X.
    """
    return DepthFrame(_as_point(X), depth).inverse(Z)


def depth_operator_power(X, depth, Z, power: float) -> np.ndarray:
    r"""Apply :math:`\mathcal{A}_{N,X}^{p}` for a real power p.

    For instance p = 1/2 gives the noise amplitude of [G] eq. 12.10 and p = -1
    the inverse. Shapes as in :func:`depth_operator`; negative powers need a
    full-rank X.
    """
    return DepthFrame(_as_point(X), depth).power(Z, power)


def depth_inner_product(X, depth, Z1, Z2) -> float | np.ndarray:
    r"""The depth metric ([G] eq. 4.17).

    :math:`g^N_X(Z_1, Z_2) = \mathrm{Re\,tr}(Z_1^* \mathcal{A}_{N,X}^{-1} Z_2)`.

    Parameters
    ----------
    X : array_like, shape (d, d) or (m, n)
        Full-rank base point.
    depth : int or numpy.inf
        Finite for a non-square X.
    Z1, Z2 : array_like, shape (..., d, d) or (..., m, n)
        Tangent vectors or batches of them (broadcast against each other).

    Returns
    -------
    float or ndarray, shape (...)
        A float for single matrices, one value per pair for batches.
    """
    values = DepthFrame(_as_point(X), depth).inner(Z1, Z2)
    return float(values) if np.ndim(values) == 0 else values


def depth_operator_derivative(X, depth, V, Z) -> np.ndarray:
    r"""Directional derivative :math:`D\mathcal{A}_{N,X}[V](Z)` of the depth operator.

    Writing :math:`\mathcal{A}_{N,X}(Z) = \varphi(XX^T, X^TX)[Z]` as a double
    operator function with symbol :math:`\varphi(a, c) = (a - c)/(a^{1/N} - c^{1/N})`,
    the Daleckii-Krein formula gives, in the singular frame,

    .. math::

        \widehat{D\mathcal{A}[V]Z}_{ij} = \sum_m T_{imj}\, \widehat{dP}_{im} \hat Z_{mj}
        + \sum_m T_{mji}\, \hat Z_{im} \widehat{dQ}_{mj},

    with :math:`dP = VX^T + XV^T`, :math:`dQ = V^TX + X^TV` and :math:`T` the first
    divided differences of :math:`\varphi` in its first argument. Cost O(d^3),
    independent of N. For X of shape (m, n) the frame includes the eigenvalue 0 of
    :math:`XX^T` (tall) or :math:`X^TX` (wide), whose divided differences are
    evaluated in closed form (module section *Non-square X*); cost O(m n min(m, n)).

    Parameters
    ----------
    X : array_like, shape (d, d) or (m, n)
        Full-rank base point.
    depth : int or numpy.inf
    V, Z : array_like, shape of X

    Returns
    -------
    ndarray, shape of X
    """
    return _at_frame(DepthFrame.derivative, X, depth, V, Z, ("V", "Z"))


def depth_operator_derivative_adjoint(X, depth, Z, Y) -> np.ndarray:
    r"""Adjoint of :math:`V \mapsto D\mathcal{A}_{N,X}[V](Z)` applied to Y.

    Returns the matrix :math:`K` with
    :math:`\langle K, V\rangle = \langle Y, D\mathcal{A}[V](Z)\rangle`
    for all V (Frobenius product). Cost O(d^3).

    Parameters
    ----------
    X : array_like, shape (d, d) or (m, n)
    depth : int or numpy.inf
    Z, Y : array_like, shape of X

    Returns
    -------
    ndarray, shape of X
    """
    return _at_frame(DepthFrame.derivative_adjoint, X, depth, Z, Y, ("Z", "Y"))


def depth_christoffel(X, depth, U_vec, V_vec) -> np.ndarray:
    r"""Christoffel term :math:`\Gamma_X(U, V)` of the Levi-Civita connection of :math:`g^N`.

    For constant fields, :math:`\nabla_U V = \Gamma_X(U, V)` with (Koszul formula,
    :math:`B = \mathcal{A}^{-1}`)

    .. math::

        B\,\Gamma(U, V) = \tfrac12\big(DB[U]V + DB[V]U - K(U, V)\big),\quad
        \langle K(U,V), W\rangle = \langle U, DB[W]V\rangle,

    and :math:`DB[U] = -B\, D\mathcal{A}[U]\, B`. The geodesic equation is
    :math:`\ddot X + \Gamma_X(\dot X, \dot X) = 0`. One SVD per call (see
    :class:`DepthFrame` to share it between calls).

    Parameters
    ----------
    X : array_like, shape (d, d) or (m, n)
        Full-rank base point.
    depth : int or numpy.inf
        Finite for a non-square X.
    U_vec, V_vec : array_like, shape of X

    Returns
    -------
    ndarray, shape of X
    """
    return _at_frame(DepthFrame.christoffel, X, depth, U_vec, V_vec, ("U_vec", "V_vec"))
