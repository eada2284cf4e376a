r"""Dyson Brownian motion and its lift to Hermitian matrices ([G] section 11.1).

Eigenvalue SDE ([G] eq. 11.1), for :math:`x_1 < \dots < x_d`,

.. math::

    dx_i = \sum_{j\ne i}\frac{dt}{x_i - x_j} + \sqrt{2/\beta}\,dW_i,

which stays in the Weyl chamber for :math:`\beta \ge 1`. Its lift ([G] eq. 11.4,
Huang-Inauen-Menon, [G] Thm 15) is the Ito SDE on :math:`\mathrm{Her}_d`

.. math::

    dM = P_M\,dH + \sqrt{2/\beta}\,P_M^\perp\,dH,

with H the standard Wiener process of :math:`(\mathrm{Her}_d, \mathrm{tr}(M^*M))`
(diagonal entries N(0, t), off-diagonal real and imaginary parts N(0, t/2))
and :math:`P_M`, :math:`P_M^\perp` the orthogonal projections onto the tangent
space of the isospectral orbit (off-diagonal part in the eigenbasis of M) and
onto its normal space (diagonal part). The eigenvalues of :math:`M_t` have the
law of :math:`x_t`: the tangential noise, through the second-order eigenvalue
perturbation :math:`\sum_{j\ne i}|\hat H_{ij}|^2/(x_i-x_j)`, produces exactly the
Coulomb drift (motion by minus one half mean curvature of the orbits, Thm 15(b)).

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [HIM] C.-P. Huang, D. Inauen and G. Menon, *Motion by mean curvature and Dyson
  Brownian motion*, Electron. Commun. Probab. 28 (2023).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from .._checks import as_array
from .._linalg import conj_transpose
from ._batch import check_real, ensemble, real_vector_ensemble
from ._common import run_options
from ._stepping import SampleResult, order_preserving, run_sampler

__all__ = ["dyson_brownian_motion", "dyson_lift", "dyson_drift", "hermitian_noise"]


def dyson_drift(x) -> np.ndarray:
    r"""Coulomb drift :math:`\sum_{j\ne i} 1/(x_i - x_j)` of [G] eq. 11.1.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Distinct points.

    Returns
    -------
    ndarray, shape (..., d)
    """
    x = as_array(x, "x", batch=True, real=True)
    if x.ndim < 1:
        raise ValueError("x must have shape (..., d)")
    diff = x[..., :, None] - x[..., None, :]
    d = x.shape[-1]
    eye = np.eye(d, dtype=bool)
    if np.any((diff == 0) & ~eye):
        raise ValueError("x must have distinct entries")
    with np.errstate(divide="ignore"):
        inv = np.where(eye, 0.0, 1.0 / np.where(eye, 1.0, diff))
    return inv.sum(axis=-1)


def hermitian_noise(xi) -> np.ndarray:
    r"""Standard Gaussian on :math:`(\mathrm{Her}_d, \mathrm{tr}(M^*M))` from real samples.

    Parameters
    ----------
    xi : array_like, shape (..., 2, d, d)
        Independent real Gaussians of variance v.

    Returns
    -------
    ndarray, shape (..., d, d)
        :math:`(A + A^T)/2 + i(B - B^T)/2`: diagonal N(0, v), off-diagonal real and
        imaginary parts N(0, v/2), i.e. variance v along each unit vector of an
        orthonormal basis of :math:`\mathrm{Her}_d`.
    """
    xi = as_array(xi, "xi", batch=True, real=True)
    if xi.ndim < 3 or xi.shape[-3] != 2 or xi.shape[-1] != xi.shape[-2]:
        raise ValueError(f"xi must have shape (..., 2, d, d), got shape {xi.shape}")
    A, B = xi[..., 0, :, :], xi[..., 1, :, :]
    return 0.5 * (A + np.swapaxes(A, -1, -2)) + 0.5j * (B - np.swapaxes(B, -1, -2))


def _chamber_parameters(beta, min_gap_ratio):
    r"""Validate beta and min_gap_ratio; return the noise amplitude :math:`\sqrt{2/\beta}` of
    [G] eq. 11.1 and the acceptance test that keeps the spectrum in the Weyl chamber."""
    beta = check_real(beta, "beta", positive=True)
    min_gap_ratio = check_real(min_gap_ratio, "min_gap_ratio", positive=True, allow_zero=True)
    return np.sqrt(2.0 / beta), order_preserving(min_gap_ratio)


def _check_x0(x0, n_paths):
    x0 = real_vector_ensemble(x0, n_paths, "x0")
    if not np.all(np.isfinite(x0)) or np.any(np.diff(x0, axis=-1) <= 0):
        raise ValueError("x0 must be finite and strictly increasing (the Weyl chamber)")
    return x0


def dyson_brownian_motion(
    x0,
    beta: float,
    *,
    t_final: float,
    dt: float,
    n_paths: int | None = None,
    seed=None,
    save_every: int | None = None,
    min_gap_ratio: float = 0.5,
    max_halvings: int = 30,
    on_boundary: str = "stop",
    progress: bool = False,
) -> SampleResult:
    r"""Sample the eigenvalue SDE [G] eq. 11.1 (Euler-Maruyama, B paths at once).

    A step is refined by Brownian-bridge halving when it would reorder the
    points or shrink a gap below ``min_gap_ratio`` times its value
    (:mod:`dln_manifolds.langevin._stepping`).

    Parameters
    ----------
    x0 : array_like, shape (d,) or (B, d)
        Strictly increasing starting point(s).
    beta : float
        Inverse temperature (> 0; the solution stays in the chamber for beta >= 1).
    t_final, dt : float
        Final time and nominal step.
    n_paths : int, optional
        Number of paths B (default 1, or ``len(x0)``).
    seed : None, int, SeedSequence or Generator
    save_every : int, optional
        Save every ``save_every`` steps; None keeps the start and the end only.
    min_gap_ratio : float, default 0.5
        Smallest accepted ratio of a gap after a step to the gap before it.
    max_halvings : int, default 30
    on_boundary : {"stop", "raise"}, default "stop"
        A path still rejected after ``max_halvings`` halvings is stopped there
        (``SampleResult.exit_times``), or the sampler raises.
    progress : bool, default False

    Returns
    -------
    SampleResult
        ``states`` of shape (n_saved, B, d).
    """
    options = run_options(locals())
    scale, gaps_ok = _chamber_parameters(beta, min_gap_ratio)
    x0 = _check_x0(x0, n_paths)

    def step(x, dW, h):
        return x + h * dyson_drift(x) + scale * dW

    return run_sampler(x0, step, x0.shape[1:], t_final, dt, accept=gaps_ok, desc="dyson", **options)


def dyson_lift(
    M0,
    beta: float,
    *,
    t_final: float,
    dt: float,
    n_paths: int | None = None,
    seed=None,
    save_every: int | None = None,
    min_gap_ratio: float = 0.5,
    max_halvings: int = 30,
    on_boundary: str = "stop",
    progress: bool = False,
) -> SampleResult:
    r"""Sample the lift [G] eq. 11.4 on Hermitian matrices.

    :math:`dM = P_M\,dH + \sqrt{2/\beta}\,P_M^\perp\,dH`.

    Euler-Maruyama in the eigenframe: with :math:`M = U\,\mathrm{diag}(x)U^*` and
    :math:`\hat H = U^*\Delta H U`, the step is
    :math:`U(\mathrm{offdiag}(\hat H) + \sqrt{2/\beta}\,\mathrm{diag}(\hat H))U^*`. A step that
    shrinks an eigenvalue gap below ``min_gap_ratio`` times its value is refined
    by Brownian-bridge halving.

    Parameters
    ----------
    M0 : array_like, shape (d, d) or (B, d, d)
        Hermitian starting point(s) with distinct eigenvalues (real symmetric
        input is promoted to complex).
    beta : float
        Inverse temperature (> 0).
    t_final, dt, n_paths, seed, save_every, min_gap_ratio, max_halvings, on_boundary, progress
        As in :func:`dyson_brownian_motion` (the gap test is on the eigenvalues of M).

    Returns
    -------
    SampleResult
        ``states`` of shape (n_saved, B, d, d), complex; their eigenvalues
        (``numpy.linalg.eigvalsh``) follow [G] eq. 11.1 in law ([G] Thm 15(a)).
    """
    options = run_options(locals())
    normal, gaps_ok = _chamber_parameters(beta, min_gap_ratio)
    M0 = as_array(M0, "M0", batch=True, real=False)
    if M0.ndim not in (2, 3) or M0.shape[-1] != M0.shape[-2]:
        raise ValueError(f"M0 must have shape (d, d) or (B, d, d), got {M0.shape}")
    M0 = M0.astype(np.complex128)
    hermitian = np.allclose(M0, conj_transpose(M0), atol=1e-12, rtol=1e-12)
    if not np.all(np.isfinite(M0)) or not hermitian:
        raise ValueError("M0 must be finite and Hermitian")
    M0 = ensemble(0.5 * (M0 + conj_transpose(M0)), n_paths, 2, "M0").astype(np.complex128)
    if np.any(np.diff(np.linalg.eigvalsh(M0), axis=-1) <= 0):
        raise ValueError("M0 must have distinct eigenvalues")
    d = M0.shape[-1]
    eye = np.eye(d, dtype=bool)

    def step(M, xi, h):
        _, U = np.linalg.eigh(M)
        Hh = conj_transpose(U) @ hermitian_noise(xi) @ U
        dM = np.where(eye, normal * Hh, Hh)
        return M + U @ dM @ conj_transpose(U)

    def accept(M, Mn):
        ok = np.isfinite(Mn).all(axis=(-2, -1))
        Mn = np.where(ok[:, None, None], Mn, 0.0)
        return ok & gaps_ok(np.linalg.eigvalsh(M), np.linalg.eigvalsh(Mn))

    return run_sampler(
        M0, step, (2, d, d), t_final, dt, accept=accept, desc="dyson lift", **options
    )
