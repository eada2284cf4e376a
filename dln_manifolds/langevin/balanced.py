r"""The upstairs Riemannian Langevin equation on the balanced manifold ([G] eq. 12.1-12.3, 12.11).

.. math::

    d\mathbf W = -\nabla_{\mathbf W}E(\phi(\mathbf W))\,dt + d\mathbf M^{\beta,\kappa},

where :math:`\mathbf M^{\beta,\kappa}` is the anisotropic Brownian motion on
:math:`(\mathcal M, \iota)` with generator
:math:`\beta^{-1}(\Delta_{\mathcal O} + \kappa\Delta_{\mathcal O^\perp})` ([G] eq. 12.2):
noise of weight 1 tangent to the orbit :math:`\mathcal O_X` (vertical) and of
weight :math:`\sqrt\kappa` in the horizontal directions. Its end-to-end
matrix :math:`\phi(\mathbf W_t)` has the law of the downstairs RLE [G] eq. 12.12
(:func:`dln_manifolds.langevin.end_to_end_langevin`): for a function f on
:math:`\mathfrak M_d`, the vertical Laplacian of :math:`f\circ\phi` is
:math:`\langle\mathrm{grad}\,S, \mathrm{grad} f\rangle_{g^N}` (the mean curvature of the
orbits, [G] section 12.1 (2)) and the horizontal one is :math:`\Delta_{g^N}f`
(Riemannian submersion, [G] Thm 13).

Scheme (geodesic-random-walk type, weak order 1)
------------------------------------------------
With :math:`\xi` a standard Gaussian in :math:`(\mathbb R^{d\times d})^N`,

.. math::

    v = -h\,\nabla_{\mathbf W}E(\phi(\mathbf W))
        + \sqrt{2h/\beta}\,\big(P^{\mathrm{ver}}_{\mathbf W}\xi
        + \sqrt\kappa\,P^{\mathrm{hor}}_{\mathbf W}\xi\big),
    \qquad \mathbf W \leftarrow R_{\mathbf W}(v),

where R is a *second-order* retraction of :math:`\mathcal M`:
:math:`R_{\mathbf W}(v) = \mathbf W + v + \tfrac12 \mathrm{II}(v, v) + O(|v|^3)`
(II the second fundamental form of :math:`\mathcal M`). Then
:math:`E f(R_{\mathbf W}(v)) = f + h\,\beta^{-1}\mathrm{tr}[(P^{\mathrm{ver}}
+ \kappa P^{\mathrm{hor}})\mathrm{Hess}_{\mathcal M} f]
- h\langle\nabla E, \mathrm{grad} f\rangle + O(h^2)`: the Ito
correction (the curvature drift that keeps the path on :math:`\mathcal M`, and the
orbit mean curvature that becomes the entropic force downstairs) is carried
exactly by the retraction, with no explicit curvature term. A first-order
retraction would add the spurious drift :math:`\tfrac12 E[P_T\,\ddot R(v,v)]`.
The retraction is the polar restore map of
:func:`dln_manifolds.balanced.balanced_restore` followed by one tangential
correction (as :func:`dln_manifolds.balanced.balanced_retraction` with
``order=2``), so every iterate is balanced to rounding error. The Euclidean
gradient of a lifted loss is tangent and horizontal at balanced points
([G] Thm 1), so it needs no projection.

Everything is vectorized over the ensemble: the projections use the SVD frames
:math:`W_p = Q_p\Lambda Q_{p-1}^T` and the type-I sine transform along depth of
:mod:`dln_manifolds.balanced`, batched over paths.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from ._batch import (
    _t,
    as_real_stacks,
    check_real,
    ensemble,
    lifted_gradient_batch,
)
from ._batch import end_to_end_batch as _e2e
from ._stepping import SampleResult, rank_preserving, run_sampler
from .end_to_end import _check_energy, _energy_gradient

__all__ = ["balanced_langevin", "balanced_noise"]


# --------------------------------------------------------------------------
# Batched geometry of M (shapes (..., N, d, d)); see dln_manifolds.balanced
# --------------------------------------------------------------------------


def _polar(M: np.ndarray) -> np.ndarray:
    u, _, vh = np.linalg.svd(M)
    return u @ vh


def restore_batch(Y: np.ndarray) -> np.ndarray:
    """Batched :func:`dln_manifolds.balanced.balanced_restore`."""
    out = np.empty_like(Y)
    out[..., 0, :, :] = Y[..., 0, :, :]
    for p in range(1, Y.shape[-3]):
        uu, s, _ = np.linalg.svd(out[..., p - 1, :, :])
        out[..., p, :, :] = _polar(Y[..., p, :, :]) @ ((uu * s[..., None, :]) @ _t(uu))
    return out


def frames_batch(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames Q (..., N+1, d, d) and lam (..., d) with W_p = Q_p diag(lam) Q_{p-1}^T."""
    N = W.shape[-3]
    u, lam, vh = np.linalg.svd(W[..., 0, :, :])
    Q = np.empty(W.shape[:-3] + (N + 1,) + W.shape[-2:])
    Q[..., 0, :, :] = _t(vh)
    Q[..., 1, :, :] = u
    for p in range(2, N + 1):
        Q[..., p, :, :] = _polar(W[..., p - 1, :, :] @ Q[..., p - 1, :, :])
    return Q, lam


def _to_frame(Q, Z):
    return _t(Q[..., 1:, :, :]) @ Z @ Q[..., :-1, :, :]


def _from_frame(Q, Zh):
    return Q[..., 1:, :, :] @ Zh @ _t(Q[..., :-1, :, :])


def _tangent_hat(Zh: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Tangent part of frame components (batched ``balanced._project_hat``)."""
    N = Zh.shape[-3]
    if N == 1:
        return Zh.copy()
    lr = lam[..., None, None, :]  # multiplies columns: Z Lambda
    ll = lam[..., None, :, None]  # multiplies rows: Lambda Z
    ZL, LZ = Zh * lr, ll * Zh
    R = ZL[..., :-1, :, :] + _t(ZL[..., :-1, :, :]) - _t(LZ[..., 1:, :, :]) - LZ[..., 1:, :, :]
    m = np.arange(1, N)
    sin2 = (np.sin(m * np.pi / (2 * N)) ** 2)[:, None, None]
    lk, lj = lam[..., None, :, None], lam[..., None, None, :]
    eig = 2.0 * ((lk - lj) ** 2 + 4.0 * lk * lj * sin2)
    Sh = scipy.fft.idst(
        scipy.fft.dst(R, type=1, axis=-3, norm="ortho") / eig, type=1, axis=-3, norm="ortho"
    )
    pad = [(0, 0)] * (Sh.ndim - 3) + [(1, 1), (0, 0), (0, 0)]
    Sp = np.pad(Sh, pad)
    return Zh - (Sp[..., 1:, :, :] * lr - ll * Sp[..., :-1, :, :])


def _lift_coefficients(lam: np.ndarray, N: int) -> np.ndarray:
    """c[..., p-1, k, l] = lam_k^{N-p} lam_l^{p-1} / sqrt(m_kl), computed in logs."""
    ll = np.log(lam)
    lk, lj = ll[..., :, None], ll[..., None, :]
    hi = np.maximum(lk, lj)
    delta = 2.0 * (np.minimum(lk, lj) - hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.expm1(N * delta) / np.expm1(delta)
    log_m = 2 * (N - 1) * hi + np.log(np.where(delta == 0, float(N), ratio))
    p = np.arange(1, N + 1)[:, None, None]
    return np.exp(
        (N - p) * lk[..., None, :, :] + (p - 1) * lj[..., None, :, :] - 0.5 * log_m[..., None, :, :]
    )


def _split_hat(Zh: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertical, horizontal) frame components of an ambient vector."""
    c = _lift_coefficients(lam, Zh.shape[-3])
    hor = c * np.sum(c * Zh, axis=-3, keepdims=True)
    return _tangent_hat(Zh, lam) - hor, hor


def tangent_projection_batch(W: np.ndarray, Z: np.ndarray, frames=None) -> np.ndarray:
    """Batched :func:`dln_manifolds.balanced.balanced_tangent_projection`."""
    Q, lam = frames_batch(W) if frames is None else frames
    return _from_frame(Q, _tangent_hat(_to_frame(Q, Z), lam))


def retraction2_batch(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Batched second-order retraction (``balanced_retraction(W, V, order=2)``)."""
    Y = W + V
    W1 = restore_batch(Y)
    if W.shape[-3] == 1:
        return W1
    return restore_batch(W1 + tangent_projection_batch(W1, Y - W1))


def balanced_noise(W, xi, kappa: float = 1.0) -> np.ndarray:
    r"""Anisotropic tangent noise :math:`P^{\mathrm{ver}}_W\xi + \sqrt\kappa P^{\mathrm{hor}}_W\xi`.

    The splitting of [G] eq. 12.1: weight 1 along the orbit, :math:`\sqrt\kappa` across.

    Parameters
    ----------
    W : array_like, shape (..., N, d, d)
        Balanced full-rank points (one or a stack).
    xi : array_like, shape (..., N, d, d)
        Ambient vectors (e.g. standard Gaussian samples).
    kappa : float, default 1
        Weight of the horizontal part (>= 0); kappa = 1 gives the tangent projection.

    Returns
    -------
    ndarray, shape (..., N, d, d)
    """
    W = as_real_stacks(W)
    xi = as_real_stacks(xi, "xi")
    if xi.shape[-3:] != W.shape[-3:]:
        raise ValueError(f"xi must have layers of shape {W.shape[-3:]}, got {xi.shape}")
    kappa = check_real(kappa, "kappa", positive=True, allow_zero=True)
    Q, lam = frames_batch(W)
    ver, hor = _split_hat(_to_frame(Q, xi), lam)
    return _from_frame(Q, ver + np.sqrt(kappa) * hor)


def balanced_langevin(
    W0,
    beta: float,
    kappa: float = 1.0,
    energy=None,
    *,
    t_final: float,
    dt: float,
    n_paths: int | None = None,
    seed=None,
    save_every: int | None = None,
    max_log_change: float = 0.5,
    max_halvings: int = 30,
    on_boundary: str = "stop",
    balance_tol: float = 1e-8,
    progress: bool = False,
) -> SampleResult:
    r"""Sample the upstairs RLE [G] eq. 12.11 on the balanced manifold for B paths.

    See the module docstring for the scheme (anisotropic projected noise and a
    second-order retraction; weak order 1) and
    :mod:`dln_manifolds.langevin._stepping` for the reject-and-halve control.

    Parameters
    ----------
    W0 : array_like, shape (N, d, d) or (B, N, d, d)
        Balanced full-rank starting point(s), e.g.
        :func:`dln_manifolds.balanced_point`.
    beta : float
        Inverse temperature (> 0).
    kappa : float, default 1
        Weight of the horizontal (observable) noise (>= 0). kappa = 0: pure
        noise in the gauge, the end-to-end matrix follows the free-energy flow.
    energy : Energy or callable, optional
        Loss E of the end-to-end matrix (``gradient(X)``), lifted to
        :math:`E(\phi(\mathbf W))`; None means E = 0.
    t_final, dt : float
    n_paths : int, optional
    seed : None, int, SeedSequence or Generator
    save_every : int, optional
    max_log_change : float, default 0.5
        Largest accepted change of a log singular value of a layer in one step.
    max_halvings : int, default 30
    on_boundary : {"stop", "raise"}, default "stop"
        A path still rejected after ``max_halvings`` halvings has reached the
        singular set: stop it there (``SampleResult.exit_times``) or raise.
    balance_tol : float, default 1e-8
        Largest relative moment |G_k| / (|W_k|^2 + |W_{k+1}|^2) accepted for W0.
    progress : bool, default False

    Returns
    -------
    SampleResult
        ``states`` of shape (n_saved, B, N, d, d).
    """
    beta = check_real(beta, "beta", positive=True)
    kappa = check_real(kappa, "kappa", positive=True, allow_zero=True)
    max_log_change = check_real(max_log_change, "max_log_change", positive=True)
    balance_tol = check_real(balance_tol, "balance_tol", positive=True)
    energy = _check_energy(energy)
    W0 = as_real_stacks(W0, "W0")
    w0 = ensemble(W0, n_paths, 3, "W0")
    G = w0[..., :-1, :, :] @ _t(w0[..., :-1, :, :]) - _t(w0[..., 1:, :, :]) @ w0[..., 1:, :, :]
    scale = (w0[..., :-1, :, :] ** 2).sum(axis=(-2, -1)) + (w0[..., 1:, :, :] ** 2).sum(
        axis=(-2, -1)
    )
    if G.size and np.max(np.linalg.norm(G, axis=(-2, -1)) / scale) > balance_tol:
        raise ValueError("W0 is not on the balanced manifold (relative moment above balance_tol)")
    s0 = np.linalg.svd(w0[..., 0, :, :], compute_uv=False)
    if np.any(s0.min(axis=-1) <= s0.max(axis=-1) * 1e-12):
        raise ValueError("W0 is rank-deficient")
    noise_scale = np.sqrt(2.0 / beta)
    root_kappa = np.sqrt(kappa)

    def step(W, dW, h):
        Q, lam = frames_batch(W)
        ver, hor = _split_hat(_to_frame(Q, dW), lam)
        v = noise_scale * _from_frame(Q, ver + root_kappa * hor)
        dE = _energy_gradient(energy, _e2e(W))
        if dE is not None:
            v = v - h * lifted_gradient_batch(W, dE)
        return retraction2_batch(W, v)

    return run_sampler(
        w0,
        step,
        w0.shape[1:],
        t_final,
        dt,
        accept=rank_preserving(max_log_change),
        seed=seed,
        save_every=save_every,
        max_halvings=max_halvings,
        on_boundary=on_boundary,
        progress=progress,
        desc="balanced",
    )
