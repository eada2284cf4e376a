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
:math:`W_p = Q_p\Lambda Q_{p-1}^T` and the sine transform along depth of
:mod:`dln_manifolds.balanced`, whose functions take a leading batch axis.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ..balanced import BalancedFrame, balance_error, retract_unchecked
from ._batch import as_real_stacks, check_real, ensemble
from ._common import check_energy, lifted_energy_gradient
from ._stepping import SampleResult, rank_preserving, run_sampler

__all__ = ["balanced_langevin", "balanced_noise"]


def _anisotropic_noise(W: np.ndarray, xi: np.ndarray, root_kappa: float) -> np.ndarray:
    """P^ver xi + sqrt(kappa) P^hor xi for stacks (..., N, d, d), in the frames of W."""
    frame = BalancedFrame(W, check=False)
    Zh = frame.to_frame(xi)
    hor = frame.horizontal_hat(Zh)
    return frame.from_frame((frame.tangent_hat(Zh) - hor) + root_kappa * hor)


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
    return _anisotropic_noise(W, xi, np.sqrt(kappa))


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
        Largest relative moment ``|G_k| / (|W_k|^2 + |W_{k+1}|^2)`` accepted for W0.
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
    energy = check_energy(energy)
    W0 = as_real_stacks(W0, "W0")
    w0 = ensemble(W0, n_paths, 3, "W0")
    if balance_error(w0) > balance_tol:
        raise ValueError("W0 is not on the balanced manifold (relative moment above balance_tol)")
    s0 = np.linalg.svd(w0[..., 0, :, :], compute_uv=False)
    if np.any(s0.min(axis=-1) <= s0.max(axis=-1) * 1e-12):
        raise ValueError("W0 is rank-deficient")
    noise_scale = np.sqrt(2.0 / beta)
    root_kappa = np.sqrt(kappa)

    def step(W, dW, h):
        v = noise_scale * _anisotropic_noise(W, dW, root_kappa)
        grad = lifted_energy_gradient(energy, W)
        if grad is not None:
            v = v - h * grad
        return retract_unchecked(W, v, 2, check=False)

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
