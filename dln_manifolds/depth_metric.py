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

One implementation
------------------
:class:`DepthFrame` holds the SVD, the multipliers and (lazily) the divided
differences of one point X, or of a batch of points, and evaluates every
quantity of this module on batches of matrices. The module functions are
one-line wrappers that build a frame per call.

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

from ._checks import as_array, as_matrix, as_matrix_batch, check_depth, check_full_rank

__all__ = [
    "DepthFrame",
    "depth_frame",
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


def _multiplier_from_alpha(a: np.ndarray, c: np.ndarray, q: float, scale: float) -> np.ndarray:
    """Symmetric multiplier f(a, c) for log-squared singular values a, c (broadcasting)."""
    hi = np.maximum(a, c)
    lo = np.minimum(a, c)
    with np.errstate(invalid="ignore"):
        delta = lo - hi
    m = scale * np.exp((1.0 - q) * hi) * _ratio(np.where(np.isneginf(hi), 0.0, delta), q)
    return np.where(np.isneginf(hi), 0.0, m)


def _multiplier_d_alpha(a: np.ndarray, c: np.ndarray, q: float, scale: float) -> np.ndarray:
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
    if depth == 1:
        return np.ones(s.shape + s.shape[-1:])
    q, scale = _q_and_scale(depth)
    alpha = _log_sq(s)
    return _multiplier_from_alpha(alpha[..., :, None], alpha[..., None, :], q, scale)


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


def _divided_differences(s: np.ndarray, M: np.ndarray, depth) -> np.ndarray:
    r"""First divided differences of the multiplier symbol in its first argument.

    ``T[..., i, m, j] = (f(l_i, l_j) - f(l_m, l_j)) / (l_i - l_m)`` with
    :math:`l = s^2` and ``M[..., i, j] = f(l_i, l_j)``; where
    :math:`|\log l_i - \log l_m| <` ``_DIVDIFF_CUTOFF`` (always for i = m) it is
    the partial derivative :math:`\partial_1 f` at the midpoint of the log
    variables, evaluated stably by :func:`_multiplier_d_alpha`. Batched over
    leading axes of ``s`` (shape (..., d)); O(d^3) memory and time.
    """
    q, scale = _q_and_scale(depth)
    alpha = _log_sq(s)
    lam = s**2
    d = s.shape[-1]
    eye = np.eye(d, dtype=bool)
    den = np.where(eye, 1.0, lam[..., :, None] - lam[..., None, :])
    with np.errstate(divide="ignore", invalid="ignore"):  # (near) ties are replaced below
        T = (M[..., :, None, :] - M[..., None, :, :]) / den[..., :, :, None]
    # Diagonal i = m: the derivative at a_i itself (O(d^2) evaluations).
    a, c = np.broadcast_arrays(alpha[..., :, None], alpha[..., None, :])
    idx = np.arange(d)
    T[..., idx, idx, :] = _multiplier_d_alpha(a, c, q, scale) * np.exp(-a)
    # Off-diagonal near-ties: the derivative at the midpoint of the log variables.
    close = (np.abs(alpha[..., :, None] - alpha[..., None, :]) < _DIVDIFF_CUTOFF) & ~eye
    if np.any(close):
        where = np.nonzero(close)  # (batch indices..., i, m)
        batch, i, m = where[:-2], where[-2], where[-1]
        mid = 0.5 * (alpha[batch + (i,)] + alpha[batch + (m,)])
        mid, aj = np.broadcast_arrays(mid[:, None], alpha[batch] if batch else alpha)
        T[where] = _multiplier_d_alpha(mid, aj, q, scale) * np.exp(-mid)
    return T


def _as_points(X) -> np.ndarray:
    """Validate a point or a batch of points of shape (..., d, d)."""
    if isinstance(X, (str, bytes)) or X is None or np.ndim(X) <= 2:
        return as_matrix(X)
    shape = np.shape(X)
    if shape[-1] != shape[-2] or shape[-1] == 0:
        raise ValueError(f"X must have shape (..., d, d) with d >= 1, got shape {shape}")
    return as_matrix_batch(X, shape[-1], "X")


def _as_single(Z, d: int, name: str) -> np.ndarray:
    """A single (d, d) matrix (the derivative functions take no batches)."""
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
    X : array_like, shape (..., d, d)
        Base point(s), real or complex. Matrix arguments of the methods have
        shape (..., d, d) and broadcast against the batch shape of X.
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
        ``X = U @ (s[..., None] * Vh)``.
    M : ndarray, shape (..., d, d)
        Multipliers: :math:`\widehat{\mathcal{A}(Z)} = M \odot \hat Z`.
    depth : int or float
    d : int

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
        self.d = X.shape[-1]
        self._check = check
        self.U, self.s, self.Vh = np.linalg.svd(X)
        self.M = _multipliers(self.s, depth)
        self._T = None
        self._full_rank_checked = False
        if full_rank:
            self._require_full_rank()

    # -- bookkeeping -------------------------------------------------------------
    def _require_full_rank(self) -> None:
        if self._full_rank_checked:
            return
        s = self.s.reshape(-1, self.d)
        smin = s[:, -1]
        if self._check:
            limit = 1.0 / (self.d * np.finfo(np.float64).eps)
            with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 at X = 0 is bad too
                bad = ~(s[:, 0] / smin <= limit)
        else:
            bad = ~(smin > 0)
        if np.any(bad):
            check_full_rank(s[np.argmax(bad)], "X", None if self._check else np.inf)
        self._full_rank_checked = True

    def _arg(self, Z, name: str) -> np.ndarray:
        return as_matrix_batch(Z, self.d, name) if self._check else np.asarray(Z)

    @property
    def divided_differences(self) -> np.ndarray:
        r"""First divided differences ``T[..., i, m, j]`` of the symbol, shape (..., d, d, d).

        :math:`T_{imj} = (f(l_i, l_j) - f(l_m, l_j)) / (l_i - l_m)` with
        :math:`l = s^2` (the derivative at near-ties). Computed on first access.
        """
        if self._T is None:
            self._require_full_rank()
            self._T = _divided_differences(self.s, self.M, self.depth)
        return self._T

    def to_frame(self, Z) -> np.ndarray:
        r"""Frame coordinates :math:`\hat Z = U^* Z V`, shape (..., d, d)."""
        return self._to(self._arg(Z, "Z"))

    def from_frame(self, Zh) -> np.ndarray:
        r"""Inverse of :meth:`to_frame`: :math:`U \hat Z V^*`."""
        return self._from(self._arg(Zh, "Zh"))

    # unchecked versions for the methods below, which validate their own arguments once
    def _to(self, Z: np.ndarray) -> np.ndarray:
        return _h(self.U) @ Z @ _h(self.Vh)

    def _from(self, Zh: np.ndarray) -> np.ndarray:
        return self.U @ Zh @ self.Vh

    # -- the operator and the metric ------------------------------------------
    def operator(self, Z) -> np.ndarray:
        r""":math:`\mathcal{A}_{N,X}(Z)` ([G] eq. 4.14), shape (..., d, d). Any rank."""
        Z = self._arg(Z, "Z")
        if self.depth == 1:
            return Z.copy()
        return self._from(self.M * self._to(Z))

    def inverse(self, Z) -> np.ndarray:
        r""":math:`\mathcal{A}_{N,X}^{-1}(Z)`, the metric tensor of :math:`g^N` ([G] eq. 4.16)."""
        Z = self._arg(Z, "Z")
        self._require_full_rank()
        if self.depth == 1:
            return Z.copy()
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
        if self.depth == 1:
            return Z.copy()
        M = self.M if p == 1 else self.M ** float(p)
        return self._from(M * self._to(Z))

    def inner(self, Z1, Z2) -> np.ndarray:
        r""":math:`g^N_X(Z_1, Z_2) = \mathrm{Re\,tr}(Z_1^* \mathcal{A}^{-1} Z_2)` ([G] eq. 4.17).

        Returns an array of the broadcast batch shape (...,) (0-d for single matrices).
        """
        Z1, Z2 = self._arg(Z1, "Z1"), self._arg(Z2, "Z2")
        self._require_full_rank()
        prod = np.conj(self._to(Z1)) * self._to(Z2) / self.M
        return np.real(np.sum(prod, axis=(-2, -1)))

    # -- derivatives, in frame coordinates --------------------------------------
    def _dA_hat(self, Vh: np.ndarray, Zh: np.ndarray) -> np.ndarray:
        """(DA[V] Z)^ from V^ and Z^ (Daleckii-Krein, see depth_operator_derivative)."""
        row, col = self.s[..., None, :], self.s[..., :, None]
        dP = Vh * row + col * _h(Vh)  # U^*(V X^* + X V^*)U
        dQ = _h(Vh) * row + col * Vh  # V^*(V^* X + X^* V)V
        T = self.divided_differences
        return np.einsum("...imj,...im,...mj->...ij", T, dP, Zh) + np.einsum(
            "...mji,...im,...mj->...ij", T, Zh, dQ
        )

    def _dA_adjoint_hat(self, Zh: np.ndarray, Yh: np.ndarray) -> np.ndarray:
        """Frame coordinates of K with <K, V> = <Y, DA[V] Z>."""
        T = self.divided_differences
        C1 = np.einsum("...ij,...imj,...mj->...im", Yh, T, Zh)  # coefficient of dP_im
        C2 = np.einsum("...ij,...mji,...im->...mj", Yh, T, Zh)  # coefficient of dQ_mj
        sw = np.swapaxes
        return (C1 + sw(C1, -1, -2)) * self.s[..., None, :] + self.s[..., :, None] * (
            C2 + sw(C2, -1, -2)
        )

    def _zeros(self, *arrays) -> np.ndarray:
        shape = np.broadcast_shapes(self.U.shape, *(np.shape(a) for a in arrays))
        return np.zeros(shape, dtype=np.result_type(*arrays, np.float64))

    def derivative(self, V, Z) -> np.ndarray:
        r""":math:`D\mathcal{A}_{N,X}[V](Z)` (:func:`depth_operator_derivative`)."""
        V, Z = self._arg(V, "V"), self._arg(Z, "Z")
        self._require_full_rank()
        if self.depth == 1:
            return self._zeros(V, Z)
        return self._from(self._dA_hat(self._to(V), self._to(Z)))

    def derivative_adjoint(self, Z, Y) -> np.ndarray:
        r"""K with :math:`\langle K, V\rangle = \langle Y, D\mathcal{A}[V](Z)\rangle` for all V."""
        Z, Y = self._arg(Z, "Z"), self._arg(Y, "Y")
        self._require_full_rank()
        if self.depth == 1:
            return self._zeros(Z, Y)
        return self._from(self._dA_adjoint_hat(self._to(Z), self._to(Y)))

    def christoffel_hat(self, Uh, Vh) -> np.ndarray:
        r"""Frame coordinates of :math:`\Gamma_X(U, V)` from those of U and V, (..., d, d)."""
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
        Vh = self._to(V)
        BV = Vh / self.M
        acc = self._dA_hat(Vh, BV) - 0.5 * self.M * self._dA_adjoint_hat(BV, BV)
        return self._from(acc)


def depth_frame(X, depth) -> DepthFrame:
    """The :class:`DepthFrame` of a point X (shape (..., d, d)) for depth N (int or numpy.inf)."""
    return DepthFrame(X, depth)


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
    of N. Depth 1 is the identity. Same as ``DepthFrame(X, depth).operator(Z)``.
    """
    return DepthFrame(as_matrix(X), depth).operator(Z)


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
    return DepthFrame(as_matrix(X), depth).inverse(Z)


def depth_operator_power(X, depth, Z, power: float) -> np.ndarray:
    r"""Apply :math:`\mathcal{A}_{N,X}^{p}` for a real power p.

    For instance p = 1/2 gives the noise amplitude of [G] eq. 12.10 and p = -1
    the inverse. Shapes as in :func:`depth_operator`; negative powers need a
    full-rank X.
    """
    return DepthFrame(as_matrix(X), depth).power(Z, power)


def depth_inner_product(X, depth, Z1, Z2) -> float | np.ndarray:
    r"""The depth metric ([G] eq. 4.17).

    :math:`g^N_X(Z_1, Z_2) = \mathrm{Re\,tr}(Z_1^* \mathcal{A}_{N,X}^{-1} Z_2)`.

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank base point.
    depth : int or numpy.inf
    Z1, Z2 : array_like, shape (..., d, d)
        Tangent vectors or batches of them (broadcast against each other).

    Returns
    -------
    float or ndarray, shape (...)
        A float for single matrices, one value per pair for batches.
    """
    values = DepthFrame(as_matrix(X), depth).inner(Z1, Z2)
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
    f = DepthFrame(as_matrix(X), depth)
    return f.derivative(_as_single(V, f.d, "V"), _as_single(Z, f.d, "Z"))


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
    f = DepthFrame(as_matrix(X), depth)
    return f.derivative_adjoint(_as_single(Z, f.d, "Z"), _as_single(Y, f.d, "Y"))


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
    X : array_like, shape (d, d)
        Full-rank base point.
    depth : int or numpy.inf
    U_vec, V_vec : array_like, shape (d, d)

    Returns
    -------
    ndarray, shape (d, d)
    """
    f = DepthFrame(as_matrix(X), depth)
    return f.christoffel(_as_single(U_vec, f.d, "U_vec"), _as_single(V_vec, f.d, "V_vec"))
