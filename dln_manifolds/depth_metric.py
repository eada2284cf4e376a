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
"""

from __future__ import annotations

import numbers

import numpy as np

from ._checks import as_matrix, as_matrix_batch, check_depth, check_full_rank

__all__ = [
    "svd_frame",
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


def _h(A: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(A, -1, -2)) if np.iscomplexobj(A) else np.swapaxes(A, -1, -2)


def svd_frame(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular value decomposition ``X = U @ diag(s) @ Vh`` after validating X.

    Returns
    -------
    U : ndarray, shape (d, d)
    s : ndarray, shape (d,)
        Singular values in decreasing order.
    Vh : ndarray, shape (d, d)
    """
    X = as_matrix(X)
    return np.linalg.svd(X)


def _q_and_scale(depth) -> tuple[float, float]:
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


def _ratio_derivative(delta: np.ndarray, q: float) -> np.ndarray:
    r"""R'(delta) for delta <= 0, with a Taylor series near 0.

    Near 0, :math:`\log R(\delta) = \log R(0) + (1-q)\delta/2 + (1-q^2)\delta^2/24 + O(\delta^4)`,
    so :math:`R'/R = (1-q)/2 + (1-q^2)\delta/12 + O(\delta^3)`.
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
    series = _ratio(delta, q) * ((1.0 - q) / 2.0 + (1.0 - q * q) * delta / 12.0)
    return np.where(small, series, direct)


def _log_sq(s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 2.0 * np.log(s)


def _multiplier_from_alpha(a: np.ndarray, c: np.ndarray, q: float, scale: float) -> np.ndarray:
    """Symmetric multiplier f(a, c) for log-squared singular values a, c (broadcasting)."""
    hi = np.maximum(a, c)
    lo = np.minimum(a, c)
    with np.errstate(invalid="ignore"):
        delta = lo - hi
    m = scale * np.exp((1.0 - q) * hi) * _ratio(np.where(np.isneginf(hi), 0.0, delta), q)
    return np.where(np.isneginf(hi), 0.0, m)


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
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"s must be a vector of singular values, got shape {s.shape}")
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("s must contain finite non-negative singular values")
    if depth == 1:
        return np.ones((s.size, s.size))
    q, scale = _q_and_scale(depth)
    alpha = _log_sq(s)
    return _multiplier_from_alpha(alpha[:, None], alpha[None, :], q, scale)


def _apply_in_frame(X, Z, depth, exponent: float, name: str = "Z"):
    X = as_matrix(X)
    depth = check_depth(depth)
    Z = as_matrix_batch(Z, X.shape[0], name)
    U, s, Vh = np.linalg.svd(X)
    if exponent < 0:
        check_full_rank(s, "X")
    if depth == 1:
        return Z.copy()
    M = depth_multipliers(s, depth)
    if exponent != 1.0:
        M = M**exponent
    return U @ (M * (_h(U) @ Z @ _h(Vh))) @ Vh


def depth_operator(X, depth, Z) -> np.ndarray:
    r"""Apply :math:`\mathcal{A}_{N,X}` ([G] eq. 4.14), or :math:`\mathcal{A}_{\infty,X}` (N = inf).

    Parameters
    ----------
    X : array_like, shape (d, d)
        Base point (any rank).
    depth : int or numpy.inf
        N >= 1; ``numpy.inf`` gives the rescaled limit (1/N) A_N ([G] eq. 14.7).
    Z : array_like, shape (..., d, d)
        One matrix or a batch.

    Returns
    -------
    ndarray, shape (..., d, d)

    Notes
    -----
    Cost O(d^3) for the SVD plus O(d^3) per matrix in the batch, independent
    of N. Depth 1 is the identity.
    """
    return _apply_in_frame(X, Z, depth, 1.0)


def inverse_depth_operator(X, depth, Z) -> np.ndarray:
    r"""Apply :math:`\mathcal{A}_{N,X}^{-1}` (the metric tensor of :math:`g^N`, [G] eq. 4.16).

    In the singular frame of X it divides by the multipliers of
    :func:`depth_multipliers`; cost O(d^3) whatever the depth.

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank base point.
    depth : int or numpy.inf
    Z : array_like, shape (..., d, d)

    Returns
    -------
    ndarray, shape (..., d, d)

    Raises
    ------
    ValueError
        If X is rank-deficient (condition number above 1/(d eps)).
    """
    return _apply_in_frame(X, Z, depth, -1.0)


def depth_operator_power(X, depth, Z, power: float) -> np.ndarray:
    r"""Apply :math:`\mathcal{A}_{N,X}^{p}` for a real power p.

    For instance p = 1/2 gives the noise amplitude of [G] eq. 12.10 and p = -1
    the inverse. Shapes as in :func:`depth_operator`; negative powers need a
    full-rank X.
    """
    if isinstance(power, bool) or not isinstance(power, numbers.Real):
        raise TypeError(f"power must be a real number, got {type(power).__name__}")
    if not np.isfinite(power):
        raise ValueError(f"power must be finite, got {power}")
    return _apply_in_frame(X, Z, depth, float(power))


def depth_inner_product(X, depth, Z1, Z2) -> float:
    r"""The depth metric ([G] eq. 4.17).

    :math:`g^N_X(Z_1, Z_2) = \mathrm{Re\,tr}(Z_1^* \mathcal{A}_{N,X}^{-1} Z_2)`.

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank base point.
    depth : int or numpy.inf
    Z1, Z2 : array_like, shape (d, d)

    Returns
    -------
    float
    """
    X = as_matrix(X)
    Z1 = as_matrix_batch(Z1, X.shape[0], "Z1")
    return float(np.real(np.vdot(Z1, inverse_depth_operator(X, depth, Z2))))


# ---------------------------------------------------------------------------
# Derivatives of the operator (for the Levi-Civita connection of g^N)
# ---------------------------------------------------------------------------


def _multiplier_d_alpha(a: np.ndarray, c: np.ndarray, q: float, scale: float) -> np.ndarray:
    """Partial derivative of f(a, c) in its first log-variable a, evaluated stably."""
    a, c = np.broadcast_arrays(a, c)
    out = np.empty(a.shape)
    le = a <= c
    # a <= c: f = scale e^{(1-q) c} R(a - c)  ->  df/da = scale e^{(1-q)c} R'(a - c)
    out[le] = scale * np.exp((1.0 - q) * c[le]) * _ratio_derivative(a[le] - c[le], q)
    # a > c: f = scale e^{(1-q) a} R(c - a) -> df/da = scale e^{(1-q)a}((1-q)R - R')
    gt = ~le
    dl = c[gt] - a[gt]
    out[gt] = (
        scale * np.exp((1.0 - q) * a[gt]) * ((1.0 - q) * _ratio(dl, q) - _ratio_derivative(dl, q))
    )
    return out


def _first_divided_differences(s: np.ndarray, depth) -> np.ndarray:
    r"""T[i, m, j] = (f(l_i, l_j) - f(l_m, l_j)) / (l_i - l_m), l = s^2, f the multiplier symbol.

    The divided difference of the symbol in its first (eigenvalue of XX^T)
    argument; at (nearly) equal l_i, l_m it is the partial derivative.
    """
    q, scale = _q_and_scale(depth)
    alpha = _log_sq(s)
    lam = s**2
    ai, am, aj = alpha[:, None, None], alpha[None, :, None], alpha[None, None, :]
    fi = _multiplier_from_alpha(ai, aj, q, scale)
    fm = _multiplier_from_alpha(am, aj, q, scale)
    gap = np.abs(ai - am)
    close = gap < _DIVDIFF_CUTOFF
    with np.errstate(invalid="ignore", divide="ignore"):
        quotient = (fi - fm) / (lam[:, None, None] - lam[None, :, None])
    shape = (s.size,) * 3
    mid = np.broadcast_to(0.5 * (ai + am), shape)
    deriv = _multiplier_d_alpha(mid, np.broadcast_to(aj, shape), q, scale) * np.exp(-mid)
    return np.where(close, deriv, quotient)


def _as_single(Z, d: int, name: str) -> np.ndarray:
    """A single (d, d) matrix (the derivative functions take no batches)."""
    Z = as_matrix_batch(Z, d, name)
    if Z.ndim != 2:
        raise ValueError(f"{name} must have shape ({d}, {d}), got shape {Z.shape}")
    return Z


def _frame_data(X, depth):
    X = as_matrix(X)
    depth = check_depth(depth)
    U, s, Vh = np.linalg.svd(X)
    check_full_rank(s, "X")
    return X, depth, U, s, Vh


def _derivative_in_frame(T, s, Vh_hat, Z_hat):
    """(DA[V] Z)^ in the singular frame, given V^ = U^* V V_r and Z^."""
    S = s[None, :]
    dP = Vh_hat * S + s[:, None] * _h(Vh_hat)  # U^*(V X^* + X V^*)U
    dQ = _h(Vh_hat) * S + s[:, None] * Vh_hat  # V^*(V^* X + X^* V)V
    term_p = np.einsum("imj,im,mj->ij", T, dP, Z_hat)
    term_q = np.einsum("mji,im,mj->ij", T, Z_hat, dQ)
    return term_p + term_q


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
    independent of N.

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank base point.
    depth : int or numpy.inf
    V, Z : array_like, shape (d, d)

    Returns
    -------
    ndarray, shape (d, d)
    """
    X, depth, U, s, Vh = _frame_data(X, depth)
    d = X.shape[0]
    V = _as_single(V, d, "V")
    Z = _as_single(Z, d, "Z")
    if depth == 1:
        return np.zeros_like(Z)
    T = _first_divided_differences(s, depth)
    Vr = _h(Vh)
    out = _derivative_in_frame(T, s, _h(U) @ V @ Vr, _h(U) @ Z @ Vr)
    return U @ out @ Vh


def depth_operator_derivative_adjoint(X, depth, Z, Y) -> np.ndarray:
    r"""Adjoint of :math:`V \mapsto D\mathcal{A}_{N,X}[V](Z)` applied to Y.

    Returns the matrix :math:`K` with
    :math:`\langle K, V\rangle = \langle Y, D\mathcal{A}[V](Z)\rangle`
    for all V (Frobenius product). Cost O(d^3).

    Parameters
    ----------
    X : array_like, shape (d, d)
    depth : int or numpy.inf
    Z, Y : array_like, shape (d, d)

    Returns
    -------
    ndarray, shape (d, d)
    """
    X, depth, U, s, Vh = _frame_data(X, depth)
    d = X.shape[0]
    Z = _as_single(Z, d, "Z")
    Y = _as_single(Y, d, "Y")
    if depth == 1:
        return np.zeros_like(Z)
    T = _first_divided_differences(s, depth)
    Vr = _h(Vh)
    Zh, Yh = _h(U) @ Z @ Vr, _h(U) @ Y @ Vr
    C1 = np.einsum("ij,imj,mj->im", Yh, T, Zh)  # coefficient of dP_im
    C2 = np.einsum("ij,mji,im->mj", Yh, T, Zh)  # coefficient of dQ_mj
    S = s[None, :]
    grad_hat = (C1 + C1.T) * S + s[:, None] * (C2 + C2.T)
    return U @ grad_hat @ Vh


def depth_christoffel(X, depth, U_vec, V_vec) -> np.ndarray:
    r"""Christoffel term :math:`\Gamma_X(U, V)` of the Levi-Civita connection of :math:`g^N`.

    For constant fields, :math:`\nabla_U V = \Gamma_X(U, V)` with (Koszul formula,
    :math:`B = \mathcal{A}^{-1}`)

    .. math::

        B\,\Gamma(U, V) = \tfrac12\big(DB[U]V + DB[V]U - K(U, V)\big),\quad
        \langle K(U,V), W\rangle = \langle U, DB[W]V\rangle,

    and :math:`DB[U] = -B\, D\mathcal{A}[U]\, B`. The geodesic equation is
    :math:`\ddot X + \Gamma_X(\dot X, \dot X) = 0`.

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank base point.
    depth : int or numpy.inf
    U_vec, V_vec : array_like, shape (d, d)

    Returns
    -------
    ndarray, shape (d, d)
    """
    X = as_matrix(X)
    U_vec = _as_single(U_vec, X.shape[0], "U_vec")
    V_vec = _as_single(V_vec, X.shape[0], "V_vec")
    BU = inverse_depth_operator(X, depth, U_vec)
    BV = inverse_depth_operator(X, depth, V_vec)
    t1 = depth_operator_derivative(X, depth, U_vec, BV)
    t2 = depth_operator_derivative(X, depth, V_vec, BU)
    # <U, DB[W] V> = -<BU, DA[W] BV>  =>  K = -adjoint(BV)(BU)
    k = depth_operator_derivative_adjoint(X, depth, BV, BU)
    return -0.5 * (t1 + t2) + 0.5 * depth_operator(X, depth, k)
