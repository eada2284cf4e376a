r"""A second-order retraction on :math:`(\mathfrak{M}_{m\times n}, g^N)` that keeps full rank.

Square X ([G] eq. 4.16-4.17 for the metric): with :math:`K_1 = X^{-1} Z` and
:math:`K_2 = -\tfrac12 X^{-1}\big(\Gamma_X(Z, Z) + Z X^{-1} Z\big)`,

.. math::

    R_X(Z) = X \exp\big(\sigma_c(K)\big), \qquad
    K = K_1 + \frac{K_2}{1 + |K_2|_F^2}, \qquad
    \sigma_c(K) = \frac{K}{(1 + (|K|_F / c)^4)^{1/4}},

so that :math:`R_X(Z) = X + Z - \tfrac12\Gamma_X(Z,Z) + O(|Z|^3)` agrees with the
Riemannian exponential to second order (:math:`\Gamma_X` the Christoffel term of
:class:`~dln_manifolds.DepthFrame`). The damping of the quadratic correction and the
saturation only change terms of order :math:`|Z|^5`; the damping keeps long steps
monotone (without it a long step along :math:`Z = tX` folds back towards 0, since
:math:`t - t^2/(2N)` turns negative).

Condition-number guarantee: :math:`X\exp(K)` is invertible for every K, but its
condition number can reach :math:`\kappa(X) e^{2|K|_2}`. With the budget
:math:`c = \tfrac12 \log(\kappa_{\max} / \kappa_2(X))` and
:math:`\kappa_{\max} = 10^{-2} / (d\,\epsilon)` (:func:`retraction_condition_limit`),

.. math::

    \kappa_2(R_X(Z)) \le \kappa_2(X)\, e^{2|\sigma_c(K)|_2} \le \kappa_2(X)\, e^{2c}
    = \kappa_{\max}

(where rounding could break the bound, the saturated step is halved until the
computed result satisfies it), so every result is finite, of full rank, and
:math:`\det R_X(Z) = \det X\, e^{\mathrm{tr}\,\sigma_c(K)}` has the sign of
:math:`\det X`: the retraction stays in the component of X in GL(d).

Non-square X (m != n, full rank r = min(m, n), finite depth):
:math:`R_X(Z) = X + Z + \theta Q` with :math:`Q = -\tfrac12 \Gamma_X(Z, Z)` and
:math:`\theta = 1 / (1 + (|Q|_F/|X|_F)^2)`, which agrees with the exponential to second
order; where the result has condition number above :math:`\kappa_{\max}` the step is
halved (Z by 2, Q by 4) until it is below.

Used by :class:`dln_manifolds.pymanopt.EndToEndMatrices` (``retraction``) and
:class:`dln_manifolds.geomstats.DepthMetric` (``retraction``). See docs/mathematics.rst.

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

import numpy as np
import scipy.linalg

from ._checks import as_array, broadcast_batch, check_count, check_depth, check_positive
from .depth_metric import DepthFrame

__all__ = ["depth_retraction", "retraction_condition_limit"]

_HUGE = 1e100  # |K_1| above which the quadratic term is O(1/|K_1|) relative: dropped
_FAR = 1e50  # |K| / c above which the saturation is its limit c K / |K|


def retraction_condition_limit(d: int) -> float:
    r"""Largest condition number of a retraction result: :math:`10^{-2} / (d\epsilon)`.

    A hundred times below the full-rank tolerance :math:`1 / (d\epsilon)` of
    :class:`~dln_manifolds.DepthFrame`. For X of shape (m, n) pass d = max(m, n).
    """
    return 1e-2 / (check_count(d, "d") * np.finfo(np.float64).eps)


def _condition(s: np.ndarray) -> np.ndarray:
    """Condition numbers s_max / s_min of decreasing singular values (..., r); inf if singular."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s[..., -1] > 0, s[..., 0] / s[..., -1], np.inf)


def _fro(A: np.ndarray) -> np.ndarray:
    """Frobenius norms over the last two axes (as numpy.linalg.norm of each matrix)."""
    return np.linalg.norm(A, axis=(-2, -1))


def depth_retraction(
    X,
    V,
    depth,
    *,
    max_length: float | None = None,
    names: tuple[str, str] = ("X", "V"),
) -> np.ndarray:
    r"""Second-order retraction :math:`R_X(V)` on :math:`(\mathfrak{M}_{m\times n}, g^N)`.

    See the module docstring for the formula and the guarantees: the result agrees
    with the Riemannian exponential :math:`\exp_X(V)` to second order, has
    condition number at most :func:`retraction_condition_limit` and (square X) the
    sign of det X. Vectorized over leading batch axes.

    Parameters
    ----------
    X : array_like, shape (..., m, n)
        Real full-rank base point(s), condition number at most
        ``retraction_condition_limit(max(m, n))``.
    V : array_like, shape (..., m, n)
        Real finite tangent vector(s); batch axes broadcast against those of X.
    depth : int or numpy.inf
        N >= 1 (finite for m != n).
    max_length : float, optional
        Bound :math:`\rho` on the :math:`g^N`-length of a step: V is first scaled to
        :math:`V / (1 + (|V|_{g^N_X} / \rho)^4)^{1/4}`, which changes only terms of
        order :math:`|V|^5` (the map stays a second-order retraction) and keeps line
        searches that try very long steps away from the singular set (the pymanopt
        adapter passes ``typical_dist``). Default: no bound.
    names : (str, str), default ("X", "V")
        Names of the two arguments in error messages (for adapters).

    Returns
    -------
    ndarray, shape (broadcast batch, m, n)

    Raises
    ------
    ValueError
        If X is rank deficient or too ill-conditioned for a step that is
        guaranteed to stay of full rank, if V has the wrong shape or non-finite
        entries, or if depth is inf for non-square X.
    TypeError
        For complex or non-numeric input.

    Examples
    --------
    >>> import numpy as np
    >>> from dln_manifolds import depth_retraction
    >>> X = np.array([[2.0, 1.0], [0.0, 1.0]]); V = 1e-3 * np.eye(2)
    >>> bool(np.allclose(depth_retraction(X, V, 3), X + V, atol=1e-5))
    True
    """
    x_name, v_name = names
    X = as_array(X, x_name, (), real=True, batch=True)
    if X.ndim < 2 or min(X.shape[-2:]) < 1:
        raise ValueError(f"{x_name} must have shape (..., m, n), got shape {X.shape}")
    V = as_array(V, v_name, (), real=True, batch=True)
    if V.shape[-2:] != X.shape[-2:]:
        raise ValueError(
            f"{v_name} must have the shape (..., m, n) of {x_name} {X.shape[-2:]}, got shape "
            f"{V.shape}"
        )
    depth = check_depth(depth)
    if max_length is not None:
        max_length = check_positive(max_length, "max_length")
    m, n = X.shape[-2:]
    if m != n and np.isinf(depth):
        raise ValueError(
            f"depth must be finite for a non-square {x_name} (shape ({m}, {n})): g^inf is "
            "not defined there"
        )
    batch = broadcast_batch(**{x_name: X.shape[:-2], v_name: V.shape[:-2]})
    kappa = _condition(np.linalg.svd(X, compute_uv=False))
    limit = retraction_condition_limit(max(m, n))
    if not np.all(kappa <= limit):
        worst = float(np.max(kappa))
        raise ValueError(
            f"{x_name} is rank deficient or too close to it for a step that stays of full "
            f"rank (condition number {worst:.3g} > {limit:.3g})"
        )
    X = np.broadcast_to(X, batch + (m, n))
    V = np.broadcast_to(V, batch + (m, n))
    return depth_retraction_unchecked(X, V, depth, name=x_name, max_length=max_length)


def depth_retraction_unchecked(
    X: np.ndarray,
    V: np.ndarray,
    depth,
    *,
    name: str = "X",
    max_length: float | None = None,
) -> np.ndarray:
    """:func:`depth_retraction` on validated real X, V of the same shape (..., m, n).

    V may hold NaN or Inf: those results are NaN (pymanopt's convention). Raises
    ValueError (naming ``name``) where a nonzero step is asked at a point of condition
    number above :func:`retraction_condition_limit`.
    """
    shape = X.shape
    m, n = shape[-2:]
    Xf, Vf = X.reshape((-1, m, n)), V.reshape((-1, m, n))
    out = np.array(Xf, dtype=np.float64)
    finite = np.all(np.isfinite(Vf), axis=(-2, -1))
    out[~finite] = np.nan
    active = np.flatnonzero(finite & np.any(Vf != 0, axis=(-2, -1)))
    if active.size:
        Xa, Za = Xf[active], Vf[active]
        frame = DepthFrame(Xa, depth, check=False)
        kappa = _condition(frame.s)
        limit = 1e-2 / (max(m, n) * np.finfo(np.float64).eps)
        if not np.all(kappa <= limit):
            worst = float(np.max(np.where(np.isnan(kappa), np.inf, kappa)))
            raise ValueError(
                f"{name} is too close to the rank-deficient boundary of GL(d) for a step "
                f"that stays in GL(d) (condition number {worst:.3g} > {limit:.3g})"
            )
        if max_length is not None:
            Za = Za * _length_factor(frame, Za, max_length)[:, None, None]
        step = _rect_steps if m != n else _square_steps
        out[active] = step(frame, Xa, Za, kappa, limit)
    return out.reshape(shape)


def _length_factor(frame: DepthFrame, Z: np.ndarray, rho: float) -> np.ndarray:
    """(1 + (|Z|_g / rho)^4)^(-1/4) for a stack of nonzero finite Z, without overflow."""
    zmax = np.max(np.abs(Z), axis=(-2, -1))
    Zh = Z / zmax[:, None, None]
    unit = Zh if frame.depth == 1 else frame.inverse(Zh)
    r = zmax * np.sqrt(np.maximum(np.sum(unit * Zh, axis=(-2, -1)), 0.0)) / rho
    with np.errstate(over="ignore", divide="ignore"):
        return np.where(r <= 1.0, (1.0 + r**4) ** -0.25, (1.0 / r) * (1.0 + r**-4.0) ** -0.25)


def _square_steps(frame: DepthFrame, X, Z, kappa, limit) -> np.ndarray:
    """Saturated second-order steps X exp(sigma_c(K)) for a stack of nonzero finite Z."""
    budget = 0.5 * np.log(limit / kappa)
    # Work with the unit direction Zh = Z / zeta: K = zeta K1h + coef K2h, where
    # coef = zeta^2 / (1 + zeta^4 |K2h|^2) is written so that it cannot overflow.
    zmax = np.max(np.abs(Z), axis=(-2, -1))
    Zh = Z / zmax[:, None, None]
    zeta = zmax * _fro(Zh)  # no overflow in the sum of squares
    Zh = Zh / _fro(Zh)[:, None, None]
    s = frame.s
    Xinv = (np.swapaxes(frame.Vh, -1, -2) / s[:, None, :]) @ np.swapaxes(frame.U, -1, -2)
    K1h = Xinv @ Zh
    n1 = zeta * _fro(K1h)
    huge = n1 > _HUGE
    gamma = frame.christoffel(Zh, Zh)
    K2h = -0.5 * Xinv @ (gamma + Zh @ K1h)
    n2 = _fro(K2h)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        z2 = zeta**2  # IEEE over/underflow, as the formula for coef expects
        coef = np.where(n2 > 0, 1.0 / (1.0 / z2 + z2 * n2 * n2), z2)
        K = np.where(
            huge[:, None, None], K1h, zeta[:, None, None] * K1h + coef[:, None, None] * K2h
        )
    nK = _fro(K)
    moving = budget != 0.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        r = nK / budget
        scale = np.where(huge | (r > _FAR), budget / nK, 1.0 / (1.0 + r**4) ** 0.25)
    scale = np.where(moving, scale, 0.0)
    K = scale[:, None, None] * K
    out = X @ scipy.linalg.expm(K)
    out[~moving] = X[~moving]
    with np.errstate(over="ignore"):
        near = moving & (kappa * np.exp(2.0 * scale * nK) > 0.5 * limit)
    for i in np.flatnonzero(near):
        # Near the limit, rounding in expm and the product could push the computed
        # condition number past it: halve the step until it is below.
        out[i] = _halve_square(X[i], K[i], out[i], limit)
    return out


def _halve_square(X: np.ndarray, K: np.ndarray, out: np.ndarray, limit: float) -> np.ndarray:
    for _ in range(64):
        if _condition(np.linalg.svd(out, compute_uv=False)) <= limit:
            return out
        K = 0.5 * K
        out = X @ scipy.linalg.expm(K)
    return X.copy()  # K has underflowed below rounding: the step is 0


def _rect_steps(frame: DepthFrame, X, Z, kappa, limit) -> np.ndarray:
    """Damped steps X + Z + theta Q, Q = -Gamma(Z, Z) / 2, for non-square X (full rank)."""
    # Overflow (a huge Z) gives a non-finite Q: the loop below treats it as a failed step.
    with np.errstate(over="ignore", invalid="ignore"):
        Q = -0.5 * frame.christoffel(Z, Z)
        theta = 1.0 / (1.0 + (_fro(Q) / _fro(X)) ** 2)
        out = X + Z + theta[:, None, None] * Q
    ok = np.all(np.isfinite(out), axis=(-2, -1))
    ok[ok] = _condition(np.linalg.svd(out[ok], compute_uv=False)) <= limit
    for i in np.flatnonzero(~ok):
        Zi, Qi = 0.5 * Z[i], 0.25 * Q[i]
        out[i] = X[i]  # if the step underflows below rounding: it is 0
        for _ in range(63):
            with np.errstate(invalid="ignore"):
                step = X[i] + Zi + theta[i] * Qi
            if np.all(np.isfinite(step)) and (
                _condition(np.linalg.svd(step, compute_uv=False)) <= limit
            ):
                out[i] = step
                break
            Zi, Qi = 0.5 * Zi, 0.25 * Qi
    return out
