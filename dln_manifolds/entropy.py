r"""Orbit volume, entropy and free energy on :math:`(\mathfrak{M}_d, g^N)` ([G] section 6, 12).

The preimage of a full-rank X in the balanced manifold is an orbit
:math:`\mathcal{O}_X` of :math:`O(d)^{N-1}` ([G] eq. 6.1). With the metric
induced by the Frobenius norm upstairs, [G] Thm 10 gives

.. math::

    \mathrm{vol}(\mathcal{O}_X) = c_d^{N-1} \prod_{i<j}
    \sqrt{\frac{\sigma_i^2 - \sigma_j^2}{\sigma_i^{2/N} - \sigma_j^{2/N}}}
    = c_d^{N-1} \prod_{i<j} \sqrt{m_{ij}},

where :math:`m_{ij}` are the off-diagonal multipliers of :math:`\mathcal{A}_{N,X}` in
the singular frame ([G] eq. 7.13) and :math:`c_d` is the volume of O(d) with the
metric induced by the Frobenius norm (:func:`orthogonal_group_volume`). The
Boltzmann entropy is :math:`S(X) = \log \mathrm{vol}(\mathcal{O}_X)` ([G] eq. 6.5)
and the free energy :math:`F_\beta = E - S/\beta` ([G] eq. 6.6).

Numerics
--------
Everything is computed in log space from the stable multipliers of
:func:`dln_manifolds.depth_multipliers` (geometric-sum form): no cancellation at
equal or close singular values (where :math:`m_{ij}` has the finite limit
:math:`N\sigma^{2-2/N}`), no overflow for N up to 1e4 and beyond (the term
:math:`(N-1)\log c_d` is added in log space; only :func:`orbit_volume`, which
exponentiates, can overflow to ``inf``).

Rank-deficient X
----------------
All functions raise :class:`ValueError` when X is rank-deficient (condition
number above 1/(d eps)). We do not return ``-inf``: the orbit volume is *not*
zero in general at rank drop. For finite N and one vanishing singular value the
product in Thm 10 has a finite positive limit (:math:`m_{ij} \to \sigma_i^{2-2/N}`)
and the orbit keeps its dimension (O(1) is discrete), while for two or more zero
singular values the orbit loses dimension and the volume tends to 0. Neither case
lies in :math:`\mathfrak{M}_d` (full rank), where the theory of [G] section 6 lives.

Depth infinity
--------------
``depth = numpy.inf`` uses the rescaled operator :math:`\mathcal{A}_{\infty} =
\lim_N \mathcal{A}_N / N` ([G] eq. 14.7) and the renormalized entropy

.. math::

    S_\infty(X) = \lim_{N\to\infty}\Big(S_N(X) - (N-1)\log c_d - \tfrac{d(d-1)}{4}\log N\Big)
    = \tfrac12 \sum_{k<l} \log\frac{\sigma_k^2 - \sigma_l^2}{2\log(\sigma_k/\sigma_l)}.

This is the additive-constant choice: we subtract exactly the divergent part, so
:math:`S_N - S_\infty - (N-1)\log c_d - \tfrac{d(d-1)}{4}\log N = O(1/N)`. Note the factor
1/2: [G] eq. 14.11 omits it (it drops the square root of Thm 10), so [G] eq. 14.11
equals :math:`2 S_\infty` here; with ours, the free energy flow at depth inf is
the limit of the finite-depth flows with the same beta.

General widths
--------------
For a network of widths :math:`(d_0, \dots, d_N)` and X of shape :math:`(d_N, d_0)` with full
rank :math:`r = \min(d_0, d_N) \le d_k` (every k), the balanced networks over X are
:math:`W_k = Q_k \Sigma^{1/N} Q_{k-1}^T` with :math:`Q_0 = V`, :math:`Q_N = U` (thin SVD) and
:math:`Q_k \in \mathrm{St}(d_k, r)` free: the orbit is :math:`\prod_{k=1}^{N-1}\mathrm{St}(d_k, r)`.
Writing :math:`dQ_k = Q_k\Omega_k + Q_k^\perp C_k`, the Frobenius norm of :math:`dW` splits
into the square part in the :math:`\Omega_k` (the r x r computation of [G] Thm 10) and
:math:`2\sum_k |C_k\Sigma^{1/N}|^2`, so

.. math::

    \mathrm{vol}(\mathcal{O}_X) = \prod_{k=1}^{N-1} v(d_k, r)\,
    \big(2^{r/2}\det\Sigma^{1/N}\big)^{d_k - r}\; \prod_{i<j\le r}\sqrt{m_{ij}},

with :math:`v(n, r)` the volume of the Stiefel manifold :math:`\mathrm{St}(n, r)` in the metric
induced by the Frobenius norm (:math:`v(d, d) = c_d`). The volume density of :math:`g^N` on
:math:`\mathfrak{M}_{m\times n}` gains the factor :math:`\prod_k\sigma_k^{|m-n|/N}`. Both are
checked by Gram determinants in ``tests/test_entropy_widths.py``; see docs/mathematics.rst,
:ref:`math-widths-entropy`.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import (
    as_array,
    as_matrix,
    as_matrix_batch,
    check_count,
    check_depth,
    check_full_rank_batch,
    check_hidden_widths,
    check_positive,
    check_widths,
)
from .depth_metric import (
    DepthFrame,
    depth_multipliers,
    depth_q_and_scale,
    log_multiplier_from_alpha,
    multiplier_d_alpha,
    multiplier_from_alpha,
)
from .energies import energy_functions

__all__ = [
    "orthogonal_group_volume",
    "log_orthogonal_group_volume",
    "orbit_volume",
    "orbit_entropy",
    "entropy_gradient",
    "free_energy",
    "free_energy_gradient",
    "volume_density",
    "log_volume_density",
]


# ---------------------------------------------------------------------------
# Volume of O(d)
# ---------------------------------------------------------------------------


def log_orthogonal_group_volume(d: int) -> float:
    r"""Logarithm of :func:`orthogonal_group_volume` (no overflow for large d)."""
    d = check_count(d, "d", integral=True)
    # log vol(S^k) = log 2 + (k+1)/2 log pi - lgamma((k+1)/2)
    log_spheres = sum(
        math.log(2.0) + 0.5 * (k + 1) * math.log(math.pi) - math.lgamma(0.5 * (k + 1))
        for k in range(1, d)
    )
    return math.log(2.0) + 0.25 * d * (d - 1) * math.log(2.0) + log_spheres


def log_stiefel_volume(n: int, r: int) -> float:
    r"""Log-volume of :math:`\mathrm{St}(n, r)` (orthonormal r-frames in :math:`\mathbb{R}^n`).

    Internal (public name, not exported). The metric is the one induced by the Frobenius norm,
    :math:`|dQ|^2 = |\Omega|^2 + |C|^2` for :math:`dQ = Q\Omega + Q^\perp C`. The Gaussian
    integral over :math:`X = QR` (n x r, :math:`dX = \prod_i r_{ii}^{n-i}\,dR\,(Q^TdQ)`) gives

    .. math::

        v(n, r) = 2^{r(r-1)/4}\,\frac{(2\pi)^{nr/2 - r(r-1)/4}}
        {\prod_{i=1}^{r} 2^{(n-i-1)/2}\,\Gamma(\tfrac{n-i+1}{2})},

    where :math:`2^{r(r-1)/4}` converts :math:`(Q^TdQ)` (the metric :math:`|\Omega|^2/2 + |C|^2`)
    to the Frobenius metric. :math:`v(d, d) = c_d` (:func:`orthogonal_group_volume`) and
    :math:`v(n, 1) = \mathrm{vol}(S^{n-1})`; the tests compare it with the fibration
    :math:`O(n-r) \to O(n) \to \mathrm{St}(n, r)`: :math:`v(n, r) = c_n / (c_{n-r} 2^{r(n-r)/2})`.
    """
    log_2pi = math.log(2.0 * math.pi)
    out = 0.25 * r * (r - 1) * math.log(2.0) + (0.5 * n * r - 0.25 * r * (r - 1)) * log_2pi
    for i in range(1, r + 1):
        out -= 0.5 * (n - i - 1) * math.log(2.0) + math.lgamma(0.5 * (n - i + 1))
    return out


def orthogonal_group_volume(d: int) -> float:
    r"""Volume :math:`c_d` of O(d) with the metric induced by the Frobenius norm.

    .. math::

        c_d = 2 \cdot 2^{d(d-1)/4} \prod_{k=1}^{d-1} \mathrm{vol}(S^k),\qquad
        \mathrm{vol}(S^k) = \frac{2\pi^{(k+1)/2}}{\Gamma((k+1)/2)}.

    This is the constant of [G] Thm 10 (the paper says "standard Haar measure";
    the Gram-determinant check of :ref:`math-entropy` fixes the normalization to the
    Frobenius metric :math:`\langle A, B\rangle = \mathrm{tr}(A^TB)` on the tangent
    spaces). :math:`c_1 = 2` (two points), :math:`c_2 = 4\pi\sqrt2`, :math:`c_3 = 32\sqrt2\,\pi^2`.

    Parameters
    ----------
    d : int
        Matrix size, >= 1.

    Returns
    -------
    float

    Notes
    -----
    How the formula was checked (three independent routes):

    1. Fibration: with the metric :math:`\tfrac12\mathrm{tr}(A^TB)` (for which the
       :math:`E_{kl} - E_{lk}` are orthonormal) :math:`SO(k+1) \to S^k` is a
       Riemannian submersion with fiber SO(k), so :math:`\mathrm{vol}(SO(d)) =
       \prod_{k=1}^{d-1}\mathrm{vol}(S^k)`. The Frobenius metric is twice that one
       on each of the d(d-1)/2 dimensions (factor :math:`2^{d(d-1)/4}`), and O(d)
       has two components (factor 2).
    2. Gaussian integral over the QR decomposition :math:`X = QR` (Lebesgue
       :math:`dX = \prod_i r_{ii}^{d-i}\, dR\, (Q^TdQ)`, the last factor the volume of the
       :math:`\tfrac12\mathrm{tr}` metric) gives :math:`\mathrm{vol}(O(d)) =
       2^d\pi^{d(d+1)/4}/\prod_{k=1}^d\Gamma(k/2)` for that metric; it agrees with (1)
       for every d (tested for d <= 8).
    3. Direct numerical integration: d = 2 by the arc length of the orbit curve
       (tests/test_entropy.py), d = 3 by integrating the Frobenius Gram
       determinant of the exponential chart of SO(3) (differentiated with
       ``scipy.linalg.expm_frechet``) over the ball of radius pi, which gives
       :math:`16\sqrt2\,\pi^2 = c_3/2`.
    """
    return math.exp(log_orthogonal_group_volume(d))


# ---------------------------------------------------------------------------
# Singular values and log multipliers
# ---------------------------------------------------------------------------


def _real_matrix(X, batch: bool = False) -> np.ndarray:
    """Validate a real (d, d) matrix ``X``, or with ``batch`` a stack (..., d, d)."""
    if batch and np.ndim(X) > 2:
        return as_matrix_batch(X, np.shape(X)[-1], "X", real=True)
    return as_matrix(X, "X", real=True)


def _full_rank_frame(X: np.ndarray, depth) -> DepthFrame:
    """The one factorization of a validated real X: a :class:`DepthFrame`, full rank checked.

    ``X`` (a real (..., d, d) array) and ``depth`` were validated at the caller's door: the
    frame re-validates neither them nor the arguments of its methods (``check=False``);
    only the rank of X, which can change along a flow, is tested (condition number
    <= 1/(d eps), ValueError naming ``X``).
    """
    frame = DepthFrame(X, depth, check=False)
    check_full_rank_batch(frame.s, "X")
    return frame


def _full_rank_svd(X, batch: bool = False):
    X = _real_matrix(X, batch=batch)
    U, s, Vh = np.linalg.svd(X)
    check_full_rank_batch(s, "X")
    return X, U, s, Vh


def _real_rect(X, batch: bool = False) -> np.ndarray:
    """Validate a real matrix of any shape (m, n), or with ``batch`` a stack (..., m, n)."""
    if not batch or np.ndim(X) <= 2:
        X = as_array(X, "X", (), real=True, batch=True)
        if X.ndim != 2:
            raise ValueError(f"X must be a matrix of shape (m, n), got shape {X.shape}")
        return X
    return as_array(X, "X", (), real=True, batch=True)


def width_excess(shape: tuple[int, ...], depth, widths, name: str = "X") -> int:
    """Validate ``widths`` against points of shape (..., m, n); return D = sum_k (d_k - r).

    Internal (public name, not exported), shared with the samplers of
    :mod:`dln_manifolds.langevin`. ``widths`` None is allowed for square points only
    (D = 0); otherwise ``widths`` must have N + 1 entries (finite N), d_0 = n, d_N = m, and
    every hidden width at least r = min(m, n) (no bottleneck).
    """
    m, n = shape[-2:]
    if widths is None:
        if m != n:
            raise ValueError(
                f"{name} must be square without widths, got shape {tuple(shape)}: the orbit "
                f"entropy of a non-square {name} depends on the hidden widths; pass "
                f"widths=(d_0, ..., d_N) with d_0 = {n}, d_N = {m}"
            )
        return 0
    if np.isinf(depth):
        raise ValueError(
            "depth must be finite with widths (there are N + 1 widths; the renormalized "
            "depth-inf entropy is defined for square networks without widths only)"
        )
    widths = check_widths(widths, depth=depth)
    if (m, n) != (widths[-1], widths[0]):
        raise ValueError(
            f"{name} must have shape (d_N, d_0) = ({widths[-1]}, {widths[0]}) for widths "
            f"{widths}, got shape {tuple(shape)}"
        )
    r = check_hidden_widths(widths)
    return sum(widths[1:-1]) - (depth - 1) * r


def _orbit_frame(X, depth, widths, *, batch: bool = False):
    """Validate (X, depth, widths); return ``(depth, U, s, Vh, D)`` (thin SVD of X)."""
    depth = check_depth(depth)
    if widths is None:
        if np.ndim(X) >= 2 and np.size(X):
            width_excess(np.shape(X), depth, None)  # square, or a ValueError naming widths
        _, U, s, Vh = _full_rank_svd(X, batch=batch)
        return depth, U, s, Vh, 0
    X = _real_rect(X, batch=batch)
    excess = width_excess(X.shape, depth, widths)
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    check_full_rank_batch(s, "X")
    return depth, U, s, Vh, excess


def entropy_from_singular_values(s: np.ndarray, depth, widths=None) -> float:
    r"""Orbit entropy from the singular values (r,) of a full-rank X: no input checks.

    Internal (public name, not exported): the core of :func:`orbit_entropy`, for callers
    that validated ``depth`` (and ``widths``) at their own door (the monitors of
    :func:`dln_manifolds.flows.free_energy_flow`). The pair terms are the logarithms of
    the multipliers of [G] eq. 7.13, :func:`~dln_manifolds.depth_metric.log_multiplier_from_alpha`.
    """
    d = s.size
    q, scale = depth_q_and_scale(depth)
    alpha = 2.0 * np.log(s)
    iu = np.triu_indices(d, k=1)
    S = 0.5 * float(np.sum(log_multiplier_from_alpha(alpha[iu[0]], alpha[iu[1]], q, scale)))
    if widths is not None:  # general widths: the Stiefel factors (module section)
        excess = sum(widths[1:-1]) - (depth - 1) * d
        S += sum(log_stiefel_volume(n, d) for n in widths[1:-1])
        return S + excess * (0.5 * d * math.log(2.0) + float(np.sum(np.log(s))) / depth)
    if not np.isinf(depth):
        S += (depth - 1) * log_orthogonal_group_volume(d)
    return S


def orbit_entropy_at(X: np.ndarray, depth) -> float:
    """:func:`orbit_entropy` of a validated real (d, d) X and depth: only the rank is tested.

    Internal (public name, not exported), for callers that validated at their own door.
    """
    s = np.linalg.svd(X, compute_uv=False)
    check_full_rank_batch(s, "X")
    return entropy_from_singular_values(s, depth)


def _entropy_alpha_gradient(s: np.ndarray, depth) -> np.ndarray:
    r"""dS/d alpha_k with alpha_k = 2 log s_k: (1/2) sum_{l != k} d_a log m(alpha_k, alpha_l).

    ``s`` has shape (..., d) (any leading batch axes).
    """
    d = s.shape[-1]
    if depth == 1 or d == 1:
        return np.zeros(s.shape)
    q, scale = depth_q_and_scale(depth)
    alpha = 2.0 * np.log(s)
    a, c = alpha[..., :, None], alpha[..., None, :]
    hi = np.maximum(a, c)  # the log-derivative is shift-invariant: centre each pair at 0
    ratio = multiplier_d_alpha(a - hi, c - hi, q, scale) / multiplier_from_alpha(
        a - hi, c - hi, q, scale
    )
    ratio[..., np.arange(d), np.arange(d)] = 0.0
    return 0.5 * ratio.sum(axis=-1)


def entropy_sigma_gradient(
    s: np.ndarray, depth, metric: str = "depth", excess: int = 0
) -> np.ndarray:
    r"""Diagonal of the entropy gradient in the singular frame, shape (..., d).

    ``"euclidean"``: :math:`\partial S/\partial\sigma_k
    = (2/\sigma_k)\,\partial S/\partial\alpha_k`; ``"depth"``:
    :math:`\Sigma'_{kk} = m_{kk}\,\partial S/\partial\sigma_k` ([G] eq. 12.8), with
    :math:`m_{kk}` the diagonal multipliers of :math:`\mathcal{A}_{N,X}`. Shared by
    :func:`entropy_gradient` and the samplers of :mod:`dln_manifolds.langevin`.

    ``excess`` :math:`= D = \sum_{k=1}^{N-1}(d_k - r)` for general widths (finite N) adds the
    gradient of :math:`(D/N)\sum_k\log\sigma_k`: :math:`D/(N\sigma_k)`, or
    :math:`D\sigma_k^{1-2/N}` in the depth metric.
    """
    grad = 2.0 * _entropy_alpha_gradient(s, depth) / s
    if excess:
        grad = grad + excess / (depth * s)
    if metric == "depth" and depth != 1:
        q, scale = depth_q_and_scale(depth)
        alpha = 2.0 * np.log(s)
        grad = grad * multiplier_from_alpha(alpha, alpha, q, scale)  # diag of depth_multipliers
    return grad


# ---------------------------------------------------------------------------
# Entropy
# ---------------------------------------------------------------------------


def orbit_entropy(X, depth, *, widths=None) -> float:
    r"""Boltzmann entropy :math:`S(X) = \log\mathrm{vol}(\mathcal{O}_X)` ([G] Thm 10, eq. 6.5).

    .. math::

        S(X) = (N-1)\log c_d + \tfrac12\sum_{i<j}\log m_{ij},\qquad
        m_{ij} = \frac{\sigma_i^2-\sigma_j^2}{\sigma_i^{2/N}-\sigma_j^{2/N}},

    including the constant :math:`c_d^{N-1}` (:func:`orthogonal_group_volume`). With
    ``widths`` :math:`(d_0, \dots, d_N)` the orbit is a product of Stiefel manifolds and

    .. math::

        S(X) = \sum_{k=1}^{N-1}\Big(\log v(d_k, r) + (d_k - r)\big(\tfrac r2\log 2
        + \tfrac1N\sum_{i\le r}\log\sigma_i\big)\Big) + \tfrac12\sum_{i<j\le r}\log m_{ij},

    :math:`v(n, r)` the Frobenius volume of :math:`\mathrm{St}(n, r)` (module section
    *General widths*, docs/mathematics.rst :ref:`math-widths-entropy`).

    Parameters
    ----------
    X : array_like, shape (d, d), or (d_N, d_0) with ``widths``
        Full-rank real matrix (rank :math:`r = \min(d_0, d_N)`).
    depth : int or numpy.inf
        N >= 1. ``numpy.inf`` gives the renormalized limit
        :math:`S_\infty = \tfrac12\sum_{i<j}
        \log\frac{\sigma_i^2-\sigma_j^2}{2\log(\sigma_i/\sigma_j)}` (module docstring:
        [G] eq. 14.11 up to the additive constant and a factor 2); square networks only.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, keyword-only, every hidden width at least r. Needed for a
        non-square X (the entropy depends on the hidden widths); all equal to d gives the
        square formula.

    Returns
    -------
    float
        Finite for every full-rank X, including repeated singular values
        (:math:`m_{ii} \to N\sigma_i^{2-2/N}`) and N up to 1e4 and beyond.

    Raises
    ------
    ValueError
        If X is rank-deficient (see the module docstring for why not ``-inf``), non-square
        without ``widths``, of a shape other than (d_N, d_0), or a hidden width is below r.
    """
    depth, _, s, _, _ = _orbit_frame(X, depth, widths)
    return entropy_from_singular_values(s, depth, None if widths is None else check_widths(widths))


def orbit_volume(X, depth, *, widths=None) -> float:
    r"""Volume of the orbit :math:`\mathcal{O}_X` ([G] Thm 10): ``exp(orbit_entropy(X, depth))``.

    Overflows to ``inf`` for large depth (:math:`c_d^{N-1}` grows geometrically);
    use :func:`orbit_entropy` there. With ``depth = inf`` this is
    :math:`\exp(S_\infty)`, a renormalized volume.

    Parameters
    ----------
    X : array_like, shape (d, d), or (d_N, d_0) with ``widths``
        Full-rank real matrix.
    depth : int or numpy.inf
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, keyword-only (see :func:`orbit_entropy`).

    Returns
    -------
    float
    """
    S = orbit_entropy(X, depth, widths=widths)
    with np.errstate(over="ignore"):
        return float(np.exp(S))


def _check_metric(metric: str) -> str:
    if metric not in ("depth", "euclidean"):
        raise ValueError(f"metric must be 'depth' or 'euclidean', got {metric!r}")
    return metric


def entropy_gradient(X, depth, metric: str = "depth", *, widths=None) -> np.ndarray:
    r"""Gradient of the orbit entropy, :math:`U\,\Sigma'\,V^T` ([G] eq. 12.8).

    With :math:`X = U\Sigma V^T` and :math:`\lambda = \sigma^{1/N}`,

    .. math::

        \Sigma'_{kk} = \lambda_k^{N-1}\sum_{l\ne k}\Big(\frac{N\lambda_k^{2N-1}}
        {\lambda_k^{2N}-\lambda_l^{2N}} - \frac{\lambda_k}{\lambda_k^2-\lambda_l^2}\Big)
        = m_{kk}\,\frac{\partial S}{\partial\sigma_k},

    the :math:`g^N` gradient :math:`\mathcal{A}_{N,X}(\nabla S)`. It is evaluated as
    :math:`m_{kk}\,(2/\sigma_k)\,\partial S/\partial\alpha_k` with
    :math:`\alpha_k = 2\log\sigma_k` and the stable log-derivatives of the
    multipliers, so it is finite and continuous at repeated singular values
    (where the Euclidean gradient is still :math:`U\,\mathrm{diag}\,V^T`, independent
    of the choice of frame).

    Parameters
    ----------
    X : array_like, shape (d, d) or (..., d, d)
        Full-rank real matrix (or a stack of them, vectorized over the leading axes).
    depth : int or numpy.inf
        ``inf`` differentiates :math:`S_\infty` and uses :math:`g^\infty`
        (:math:`\mathcal{A}_\infty`), so the result is the limit of the depth-N
        gradient divided by N.
    metric : {"depth", "euclidean"}
        ``"depth"``: the :math:`g^N` gradient (eq. 12.8); ``"euclidean"``: the
        Frobenius gradient :math:`U\,\mathrm{diag}(\partial S/\partial\sigma_k)\,V^T`.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, keyword-only: the entropy of :func:`orbit_entropy` with
        ``widths`` (X of shape (d_N, d_0); thin SVD). It adds
        :math:`D\,U\Sigma^{1-2/N}V^T` (depth metric) with :math:`D = \sum_{k=1}^{N-1}(d_k - r)`.

    Returns
    -------
    ndarray, same shape as X
    """
    metric = _check_metric(metric)
    depth, U, s, Vh, excess = _orbit_frame(X, depth, widths, batch=True)
    return _entropy_gradient_in_frame(U, s, Vh, depth, metric, excess)


def _entropy_gradient_in_frame(U, s, Vh, depth, metric: str, excess: int = 0) -> np.ndarray:
    r""":math:`U\,\Sigma'\,V^T` (eq. 12.8) from the singular frame of a full-rank X."""
    return (U * entropy_sigma_gradient(s, depth, metric, excess)[..., None, :]) @ Vh


# ---------------------------------------------------------------------------
# Free energy
# ---------------------------------------------------------------------------


class GradientOnlyEnergy:
    """A plain gradient callable ``X -> E'(X)`` seen as an energy without a value.

    Internal (public name, not exported): what :func:`check_energy_like` returns for a
    callable, so that callers use ``energy.gradient`` either way; ``value`` is None.
    """

    value = None

    def __init__(self, gradient, d: int | None = None):
        self.gradient = gradient
        if d is not None:
            self.d = d


def check_energy_like(energy, d: int | None = None, *, X=None, need_value: bool = False):
    """Validate an energy argument: an Energy-like object or a gradient callable X -> E'(X).

    Parameters
    ----------
    energy : Energy or callable
        An object with ``gradient(X)`` (and ``value(X)``; required with ``need_value``),
        or a plain callable returning E'(X), as the Langevin samplers accept
        (:func:`dln_manifolds.energy_functions`).
    d : int, optional
        Size of the matrices; checked against ``energy.d`` when the energy has one.
    X : ndarray, shape (d, d), optional
        A validated point: a plain callable is evaluated there once, and must return a
        finite array of the shape of X (checked before any work).
    need_value : bool
        The caller needs E(X) itself (a free energy, not its gradient).

    Returns
    -------
    Energy-like
        ``energy`` itself, or a :class:`GradientOnlyEnergy` (``value`` None) wrapping a
        callable.

    Raises
    ------
    TypeError
        If ``energy`` is neither, or has no ``value`` where one is needed.
    ValueError
        If its size is not d, or the callable returns the wrong shape or a non-finite
        gradient at X.
    """
    gradient, value = energy_functions(energy)  # TypeError naming the problem
    if need_value and value is None:
        raise TypeError(
            "energy must have a value(X) method here (E(X) itself is needed, not only "
            f"its gradient), got {type(energy).__name__}"
        )
    if getattr(energy, "gradient", None) is None:
        energy = GradientOnlyEnergy(gradient, d)
        if X is not None:
            dE = np.asarray(gradient(X))
            if dE.shape != X.shape:
                raise ValueError(
                    f"energy must return E'(X) of shape {X.shape}, got shape {dE.shape}"
                )
            if not np.all(np.isfinite(dE)):
                raise ValueError("energy returned a non-finite gradient E'(X) at the start")
        return energy
    ed = getattr(energy, "d", d)
    if d is not None and ed != d:
        raise ValueError(f"energy acts on {ed} x {ed} matrices but the point has d = {d}")
    return energy


def free_energy(X, energy, *, depth, beta) -> float:
    r"""Free energy :math:`F_\beta(X) = E(X) - S(X)/\beta` ([G] eq. 6.6).

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank real matrix.
    energy : Energy
        Any object with ``value(X)`` and ``gradient(X)`` (e.g.
        :class:`dln_manifolds.QuadraticEnergy`); a plain gradient callable is not
        enough here (TypeError).
    depth : int or numpy.inf
        Keyword-only.
    beta : float
        Inverse temperature, > 0; keyword-only.

    Returns
    -------
    float
    """
    beta = check_positive(beta, "beta")
    X = _real_matrix(X)
    energy = check_energy_like(energy, X.shape[0], need_value=True)
    depth = check_depth(depth)
    return float(energy.value(X)) - orbit_entropy_at(X, depth) / beta


def free_energy_gradient(X, energy, *, depth, beta, metric: str = "depth") -> np.ndarray:
    r"""Gradient of the free energy, :math:`\mathcal{A}_{N,X}(E'(X)) - \beta^{-1}U\Sigma'V^T`.

    [G] eq. 12.13 (with :func:`entropy_gradient` for :math:`U\Sigma'V^T`).

    Parameters
    ----------
    X : array_like, shape (d, d)
        Full-rank real matrix.
    energy : Energy or callable
        Object with ``gradient(X)`` returning the Euclidean gradient E'(X), or a
        plain callable ``X -> E'(X)``.
    depth : int or numpy.inf
        Keyword-only.
    beta : float
        Inverse temperature, > 0; keyword-only.
    metric : {"depth", "euclidean"}
        ``"depth"`` (default) gives the :math:`g^N` gradient; ``"euclidean"``
        gives :math:`E'(X) - \beta^{-1}\nabla S`.

    Returns
    -------
    ndarray, shape (d, d)
    """
    beta = check_positive(beta, "beta")
    depth = check_depth(depth)
    metric = _check_metric(metric)
    X = _real_matrix(X)
    energy = check_energy_like(energy, X.shape[0])
    frame = _full_rank_frame(X, depth)
    dE = np.asarray(energy.gradient(X), dtype=np.float64)
    if dE.shape != X.shape:
        raise ValueError(f"energy must return E'(X) of shape {X.shape}, got shape {dE.shape}")
    if not np.all(np.isfinite(dE)):
        raise ValueError("energy returned a non-finite gradient E'(X)")
    return free_energy_gradient_in_frame(frame, dE, beta, metric)


def free_energy_gradient_in_frame(
    frame: DepthFrame,
    dE: np.ndarray | None,
    beta: float,
    metric: str = "depth",
    *,
    excess: int = 0,
) -> np.ndarray:
    r"""The core of :func:`free_energy_gradient`: one frame serves both terms, no input checks.

    Internal (public name, not exported). ``frame`` is the :class:`DepthFrame` of a
    full-rank X (or of a batch of them), ``dE`` = E'(X) of the shape of X (None: E = 0),
    ``beta`` and ``metric`` validated: the energy term :math:`\mathcal{A}_{N,X}(E'(X))` and
    the entropy term :math:`U\Sigma'V^T` ([G] eq. 12.8, 12.13) both use the frame's one SVD.
    ``excess``: the width excess D of general widths (:func:`entropy_sigma_gradient`).
    """
    grad_S = _entropy_gradient_in_frame(frame.U, frame.s, frame.Vh, frame.depth, metric, excess)
    if dE is None:
        return -grad_S / beta
    if metric == "depth":
        dE = frame.operator(dE)
    return dE - grad_S / beta


def free_energy_velocity(energy, depth, beta: float):
    r"""Right-hand side ``X -> -grad F_beta(X)`` of :func:`dln_manifolds.flows.free_energy_flow`.

    Internal (public name, not exported). ``energy`` (as returned by
    :func:`check_energy_like`), ``depth`` and ``beta`` were validated at the flow's door;
    each call builds one :class:`DepthFrame` (one SVD) for both terms and tests only the
    rank of X (it can change along a flow).
    """

    def velocity(X: np.ndarray) -> np.ndarray:
        frame = _full_rank_frame(X, depth)
        return -free_energy_gradient_in_frame(frame, energy.gradient(X), beta)

    return velocity


# ---------------------------------------------------------------------------
# Volume density of g^N
# ---------------------------------------------------------------------------


def log_volume_density(X, depth) -> float:
    r"""Logarithm of :func:`volume_density` (``-inf`` at repeated singular values)."""
    depth = check_depth(depth)
    X = _real_rect(X)
    s = np.linalg.svd(X, compute_uv=False)
    check_full_rank_batch(s, "X")
    d = s.size
    extra = abs(X.shape[0] - X.shape[1])  # complement block: sigma_k / sqrt(c_k) per entry
    if extra and np.isinf(depth):
        raise ValueError(
            f"depth must be finite for a non-square X (shape {X.shape}): g^inf is not "
            "defined on the complement block (docs/mathematics.rst, section on general widths)"
        )
    q, _ = depth_q_and_scale(depth)
    log_diag = np.log(np.diag(depth_multipliers(s, depth)))
    alpha = 2.0 * np.log(s)
    iu = np.triu_indices(d, k=1)
    hi = np.maximum(alpha[:, None], alpha[None, :])[iu]
    delta = -np.abs(alpha[:, None] - alpha[None, :])[iu]  # <= 0
    with np.errstate(divide="ignore"):
        if q == 0.0:  # |sigma_k^2 - sigma_l^2| / m_kl = 2 |log(sigma_k / sigma_l)|
            pair = np.log(-delta)
        else:  # |sigma_k^2 - sigma_l^2| / m_kl = |sigma_k^{2/N} - sigma_l^{2/N}|
            pair = q * hi + np.log(-np.expm1(q * delta))
    log_rho = -0.5 * np.sum(log_diag) + np.sum(pair) - 0.5 * d * (d - 1) * math.log(2.0)
    return float(log_rho + extra * q * np.sum(np.log(s)))


def volume_density(X, depth) -> float:
    r"""Riemannian volume density of :math:`g^N` in SVD coordinates ([G] Thm 11, corrected).

    In the chart :math:`X = U\,\mathrm{diag}(\sigma)\,V^T`, with coordinates
    :math:`\sigma_1..\sigma_d` and Frobenius-normal coordinates on each O(d)
    factor (the metric of :func:`orthogonal_group_volume`),

    .. math::

        \sqrt{\det g^N}\,dX = \rho(\sigma)\,d\sigma\,dU\,dV,\qquad
        \rho = 2^{-d(d-1)/2}\prod_k m_{kk}^{-1/2}\prod_{k<l}\frac{|\sigma_k^2-\sigma_l^2|}{m_{kl}}
        = \frac{2^{-d(d-1)/2}}{N^{d/2}}\,\det(\Sigma^2)^{-\frac{N-1}{2N}}\,
        |\mathrm{van}(\Sigma^{2/N})|.

    Derivation: :math:`U^TdXV = d\Sigma + \Omega_U\Sigma - \Sigma\Omega_V`; the diagonal
    entries are :math:`d\sigma_k` (weight :math:`1/m_{kk}` in :math:`g^N`), and each pair
    (k, l), (l, k) of off-diagonal entries is a 2 x 2 map of the two rotation
    coordinates with determinant :math:`(\sigma_l^2 - \sigma_k^2)/2`, both with weight
    :math:`1/m_{kl}`.

    [G] eq. 6.4 writes :math:`\det(\Sigma^2)^{+\frac{N-1}{2N}}`: the exponent has the
    wrong sign (for d = 1, :math:`g^N = dx^2/(N x^{2-2/N})` has density
    :math:`N^{-1/2}x^{-(N-1)/N}`), and it leaves out the constants that depend on
    the normalization of dQ. For ``depth = inf`` (:math:`g^\infty`, [G] eq. 14.10):
    :math:`\rho = 2^{-d(d-1)/2}\prod_k\sigma_k^{-1}\prod_{k<l}2|\log(\sigma_k/\sigma_l)|`.

    For X of shape (m, n) and full rank :math:`r = \min(m, n)` (thin SVD, the frame of the
    longer side in :math:`\mathrm{St}(\max(m, n), r)` with its Frobenius metric) the
    complement block :math:`U_\perp^T\,dU\,\Sigma` (tall X) adds
    :math:`|m-n|` entries per column k with weight :math:`1/c_k = \sigma_k^{-2(N-1)/N}`,
    so :math:`\rho_{m\times n} = \rho\,\prod_k\sigma_k^{|m-n|/N}`, with :math:`\rho` the
    formula above for the r singular values (finite N only).

    Parameters
    ----------
    X : array_like, shape (d, d) or (m, n)
        Full-rank real matrix.
    depth : int or numpy.inf
        Finite for a non-square X.

    Returns
    -------
    float
        :math:`\rho`; 0 at repeated singular values (where the SVD chart is
        singular).

    Notes
    -----
    The chart is :math:`2^d`-to-one on :math:`\{\sigma_1 > \dots > \sigma_d > 0\}\times
    O(d)\times O(d)` (the signs of paired singular vectors), so integrating
    :math:`\rho` over that set gives :math:`2^d` times the :math:`g^N` volume.
    """
    return float(np.exp(log_volume_density(X, depth)))
