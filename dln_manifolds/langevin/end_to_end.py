r"""The downstairs Riemannian Langevin equation on :math:`(\mathfrak{M}, g^N)` ([G] eq. 12.12).

.. math::

    dX = -\mathrm{grad}_{g^N} F_\beta(X)\,dt + dX^{\beta/\kappa},\qquad
    F_\beta = E - \beta^{-1} S,

where :math:`\mathrm{grad}_{g^N}F_\beta = \mathcal{A}_{N,X}(E'(X)) - \beta^{-1}U\Sigma'V^T`
([G] eq. 12.13, :math:`\Sigma'` of eq. 12.8) and :math:`X^{\beta/\kappa}` is Brownian
motion at inverse temperature :math:`\beta/\kappa` (:mod:`.brownian`, [G] Thm 18):
drift :math:`(\kappa/\beta)U\Sigma''V^T`, noise :math:`\sqrt{2\kappa/\beta}\,\mathcal{A}^{1/2}dB`.
With :math:`\kappa = 0` the equation is the deterministic gradient flow of the
free energy ([G] eq. 6.7, 12.7).

For a network of general widths :math:`(d_0, \dots, d_N)` (X of shape :math:`(d_N, d_0)`,
``widths=``) the entropy is that of :func:`dln_manifolds.orbit_entropy` with ``widths``,
whose :math:`g^N` gradient adds :math:`D\,U\Sigma^{1-2/N}V^T` to :math:`U\Sigma'V^T`, with
:math:`D = \sum_{k=1}^{N-1}(d_k - r)`; the Brownian part is that of :mod:`.brownian` on
:math:`\mathfrak{M}_{d_N\times d_0}`.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_depth
from ..entropy import free_energy_gradient_in_frame, width_excess
from ._batch import check_real
from ._common import as_real_matrices, check_energy, energy_gradient, run_options
from ._stepping import SampleResult
from .brownian import brownian_drift_in_frame, full_rank_frame, matrix_sampler

__all__ = ["end_to_end_langevin", "free_energy_drift"]


def _drift(X, frame, beta, kappa, energy, excess):
    # -grad F_beta ([G] eq. 12.13), plus the Brownian drift at beta / kappa
    drift = -free_energy_gradient_in_frame(frame, energy_gradient(energy, X), beta, excess=excess)
    if kappa > 0:
        drift = drift + brownian_drift_in_frame(frame, beta / kappa)
    return drift


def free_energy_drift(
    X, depth, beta: float, kappa: float = 1.0, energy=None, *, widths=None
) -> np.ndarray:
    r"""Ito drift of the downstairs RLE [G] eq. 12.12.

    .. math::

        -\mathcal{A}_{N,X}(E'(X)) + \beta^{-1}U\Sigma'V^T + \kappa\beta^{-1}U\Sigma''V^T,

    i.e. :math:`-\mathrm{grad}_{g^N}F_\beta` ([G] eq. 12.13) plus the drift of
    Brownian motion at inverse temperature :math:`\beta/\kappa` ([G] eq. 12.9).

    Parameters
    ----------
    X : array_like, shape (..., d, d), or (..., d_N, d_0) with ``widths``
        Full-rank real matrices.
    depth : int
        Finite N >= 1.
    beta : float
        Inverse temperature (> 0).
    kappa : float, default 1
        Weight of the noise in the observable (>= 0).
    energy : Energy or callable, optional
        Loss E with ``gradient(X)`` (batch friendly), or a callable returning
        E'(X); None means E = 0.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, keyword-only; required for a non-square X (the entropy
        depends on the hidden widths, each at least min(d_0, d_N)).

    Returns
    -------
    ndarray, shape of X

    Raises
    ------
    FloatingPointError
        If the energy gradient is NaN or Inf at some X.
    """
    X = as_real_matrices(X)
    depth = check_depth(depth, allow_inf=False)
    beta = check_real(beta, "beta", positive=True)
    kappa = check_real(kappa, "kappa", positive=True, allow_zero=True)
    excess = width_excess(X.shape, depth, widths)
    return _drift(X, full_rank_frame(X, depth), beta, kappa, check_energy(energy), excess)


def end_to_end_langevin(
    X0,
    depth: int,
    beta: float,
    kappa: float = 1.0,
    energy=None,
    *,
    widths=None,
    t_final: float,
    dt: float,
    n_paths: int | None = None,
    seed=None,
    save_every: int | None = None,
    max_log_change: float = 0.5,
    max_halvings: int = 30,
    on_boundary: str = "stop",
    progress: bool = False,
    chunk_size: int | None = None,
    out=None,
    on_save=None,
) -> SampleResult:
    r"""Sample the downstairs RLE [G] eq. 12.12 for an ensemble of B paths.

    Euler-Maruyama,
    :math:`X \leftarrow X + b(X)h + \sqrt{2\kappa h/\beta}\,\mathcal{A}_{N,X}^{1/2}(\xi)`
    with the drift b of :func:`free_energy_drift`, vectorized over paths, with
    Brownian-bridge reject-and-halve so that no path crosses the singular set
    (:mod:`dln_manifolds.langevin._stepping`). With ``kappa = 0`` it is the
    explicit Euler method for the free-energy gradient flow [G] eq. 6.7 and
    every path is the same.

    Parameters
    ----------
    X0 : array_like, shape (d, d) or (B, d, d); (d_N, d_0) or (B, d_N, d_0) with ``widths``
    depth : int
        Finite N >= 1.
    beta : float
        Inverse temperature (> 0).
    kappa : float, default 1
        Noise weight in the observable (>= 0).
    energy : Energy or callable, optional
        None means E = 0.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, keyword-only; required for a non-square X0 (see
        :func:`free_energy_drift`).
    t_final, dt : float
        Final time and nominal step.
    n_paths : int, optional
        Number of paths B (default 1, or ``len(X0)``).
    seed, save_every, max_log_change, max_halvings, on_boundary, progress, chunk_size, out, on_save
        Run options, keyword-only, exactly as in :func:`brownian_motion` (the same
        sampler: Euler-Maruyama in the singular frame with reject-and-halve).

    Returns
    -------
    SampleResult
        ``states`` of shape (n_saved, B, m, n).

    Raises
    ------
    FloatingPointError
        If the energy gradient returns NaN/Inf at a state of some path (the message
        gives the nominal step), or a proposal is still NaN/Inf after ``max_halvings``
        halvings; such paths are never reported as boundary exits.
    """
    options = run_options(locals())
    depth = check_depth(depth, allow_inf=False)
    beta = check_real(beta, "beta", positive=True)
    kappa = check_real(kappa, "kappa", positive=True, allow_zero=True)
    energy = check_energy(energy)
    X0 = as_real_matrices(X0, "X0")
    excess = width_excess(X0.shape, depth, widths, "X0")
    return matrix_sampler(
        X0,
        n_paths,
        depth,
        lambda x, frame: _drift(x, frame, beta, kappa, energy, excess),
        np.sqrt(2.0 * kappa / beta),
        t_final,
        dt,
        max_log_change,
        desc="langevin",
        **options,
    )
