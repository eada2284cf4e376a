r"""Brownian motion on :math:`(\mathfrak{M}_{m\times n}, g^N)` ([G] Thm 18, eq. 12.9-12.10).

Brownian motion at inverse temperature :math:`\beta` on a Riemannian manifold
is the diffusion with generator :math:`\beta^{-1}\Delta_{g}` ([G] section 10.3,
eq. 10.4). On full-rank m x n matrices with the depth metric
:math:`g^N_X(Z_1,Z_2) = \mathrm{tr}(Z_1^T\mathcal{A}_{N,X}^{-1}Z_2)` it is the Ito SDE

.. math::

    dX = \frac{1}{\beta}\, U\,\Sigma''\, V^T\,dt
         + \sqrt{\frac{2}{\beta}}\;\mathcal{A}_{N,X}^{1/2}(dB), \qquad
    \Sigma''_{kk} = (N-1)\lambda_k^{N-2},\quad \lambda_k = \sigma_k^{1/N},

where :math:`X = U\Sigma V^T` (the thin SVD for m != n) and B is a standard Brownian
motion in :math:`\mathbb{R}^{m\times n}`. :math:`\mathcal{A}^{1/2}` acts entrywise in the
singular frame with the square roots of the multipliers of [G] eq. 7.13-7.14 (and of the
complement multipliers :math:`c_k = \sigma_k^{2(N-1)/N}` for m != n), which is the matrix of
noise coefficients written in [G] eq. 12.10. The drift is exactly :math:`\beta^{-1}` times
the Laplace-Beltrami drift :math:`|g|^{-1/2}\partial_j(|g|^{1/2}g^{jk}) = -g^{ij}\Gamma^k_{ij}`
(checked by finite differences of the dense metric in the tests).

Non-square X
------------
The drift has the same form for m != n: the complement block contributes nothing.
Derivation (docs/mathematics.rst, :ref:`math-widths-brownian`): :math:`X \mapsto PXQ^T`
(P, Q orthogonal) is an isometry, so the drift is equivariant; the stabilizer of
:math:`\Sigma` (signs, and :math:`O(|m-n|)` on the complement) forces it to be
:math:`U\,\mathrm{diag}(b_k)\,V^T`. Then :math:`b_k` follows from the radial part of the
Laplacian, :math:`\Delta\sigma_k = \rho^{-1}\partial_k(\rho\, m_{kk})` with :math:`\rho` the
volume density in singular-value coordinates, and Ito's formula for :math:`\sigma_k`:
the complement adds :math:`|m-n|\,\sigma_k^{1/N}` to the density per k (a term
:math:`|m-n|\,m_{kk}/(N\sigma_k)` in :math:`\Delta\sigma_k`) and :math:`|m-n|\,c_k/\sigma_k`
to the Ito correction of :math:`\sigma_k`; both equal :math:`|m-n|\,\sigma_k^{1-2/N}` and
cancel. So the singular values follow

.. math::

    d\sigma_k = \frac1\beta\Big((N - 1 + |m-n|)\,\sigma_k^{1-2/N}
    + \sum_{l\ne k}\frac{2\sigma_k}{\sigma_k^{2/N} - \sigma_l^{2/N}}\Big)dt
    + \sqrt{\frac{2N}{\beta}}\,\sigma_k^{1-1/N}\,dW_k,

the square case's SDE plus the term :math:`|m-n|\,\sigma_k^{1-2/N}/\beta`.

For ``depth = numpy.inf`` (the rescaled metric :math:`\mathcal{A}_\infty = \lim
\mathcal{A}_N/N`, [G] eq. 14.7) the drift is the limit of
:math:`\Sigma''/N`, i.e. :math:`\beta^{-1}X`; square X only (for m != n,
:math:`\mathcal{A}_\infty` vanishes on the complement block and :math:`g^\infty` is not a
metric: ValueError).

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_count, check_depth, check_full_rank_batch
from ..depth_metric import DepthFrame
from ._batch import check_real, ensemble
from ._common import as_real_matrices, check_rectangular_depth, run_options
from ._stepping import DEFAULT_CHUNK_SIZE, SampleResult, rank_preserving, run_sampler

__all__ = ["brownian_drift", "brownian_increment", "brownian_motion"]


def _drift_diagonal(s: np.ndarray, depth) -> np.ndarray:
    """(N-1) lambda^{N-2} = (N-1) s^{1-2/N}; s for depth = inf; 0 for depth 1."""
    if depth == 1:
        return np.zeros_like(s)
    if np.isinf(depth):
        return s.copy()
    return (depth - 1) * np.exp((1.0 - 2.0 / depth) * np.log(s))


def full_rank_frame(X: np.ndarray, depth, name: str = "X") -> DepthFrame:
    """Singular frame and multipliers of validated full-rank matrices (..., m, n).

    ``depth = inf`` with m != n raises ValueError (see :func:`check_rectangular_depth`).
    """
    check_rectangular_depth(X.shape, depth, name)
    frame = DepthFrame(X, depth, check=False)
    check_full_rank_batch(frame.s, name)
    return frame


def diagonal_in_frame(frame: DepthFrame, diagonal: np.ndarray) -> np.ndarray:
    r""":math:`U\,\mathrm{diag}(\cdot)\,V^T` for diagonal entries (..., r) (thin SVD if m != n)."""
    return (frame.U * diagonal[..., None, :]) @ frame.Vh


def brownian_drift_in_frame(frame: DepthFrame, beta: float) -> np.ndarray:
    return diagonal_in_frame(frame, _drift_diagonal(frame.s, frame.depth) / beta)


_SPLIT_FRACTION = 0.25  # see matrix_sampler and the docstring of ._stepping


def matrix_sampler(
    X0, n_paths, depth, drift, noise_scale: float, t_final, dt, max_log_change, **options
) -> SampleResult:
    """Euler-Maruyama in the singular frame for the samplers on full-rank matrices.

    One step is ``x + h drift(x, frame) + noise_scale A^{1/2}(dW)`` with ``frame`` the
    :class:`~dln_manifolds.depth_metric.DepthFrame` of x (the noise term is left out when
    ``noise_scale == 0``), with the rank-preserving reject-and-halve control of
    :mod:`dln_manifolds.langevin._stepping`, and steps halved in advance where the
    noise of a log singular value over the step would exceed ``max_log_change / 4``
    in standard deviation (the time scale of these processes is 1/N: see the
    docstring of ``_stepping``). ``options`` go to :func:`run_sampler`.
    """
    max_log_change = check_real(max_log_change, "max_log_change", positive=True)
    x0 = ensemble(as_real_matrices(X0, "X0"), n_paths, 2, "X0")
    check_rectangular_depth(x0.shape, depth, "X0")
    chunk = options.get("chunk_size")
    chunk = DEFAULT_CHUNK_SIZE if chunk is None else check_count(chunk, "chunk_size", integral=True)
    s0 = np.empty(
        x0.shape[:-2] + (min(x0.shape[-2:]),)
    )  # singular values only, chunk by chunk (bounded memory)
    for lo in range(0, x0.shape[0], chunk):
        s0[lo : lo + chunk] = np.linalg.svd(x0[lo : lo + chunk], compute_uv=False)
    check_full_rank_batch(s0, "X0")

    # Largest step from the current state (decided before the noise is drawn): the noise
    # of each log singular value has sd noise_scale * sqrt(h N s^{-2/N}) (A's diagonal
    # multiplier N s^{2-2/N} over s^2; 1 for N = inf); keep it <= max_log_change / 4.
    limit = (_SPLIT_FRACTION * max_log_change) ** 2 / noise_scale**2 if noise_scale > 0 else None

    def step(x, dW, h):
        frame = DepthFrame(x, depth, check=False)
        y = x + h * drift(x, frame)
        if limit is None:
            return y
        y = y + noise_scale * frame.power(dW, 0.5)
        if np.isinf(depth):
            return y, np.full(x.shape[0], limit)
        with np.errstate(divide="ignore", over="ignore"):
            rate = depth * np.exp((-2.0 / depth) * np.log(frame.s[..., -1]))
            return y, limit / rate

    return run_sampler(
        x0,
        step,
        x0.shape[1:],
        t_final,
        dt,
        accept=rank_preserving(max_log_change),
        copy=False,  # x0 is our own copy (``ensemble``): no second ensemble in memory
        **options,
    )


def brownian_drift(X, depth, beta: float = 1.0) -> np.ndarray:
    r"""Ito drift of Brownian motion at inverse temperature beta on :math:`(\mathfrak{M}, g^N)`.

    [G] Thm 18, eq. 12.9: :math:`\beta^{-1} U \,\mathrm{diag}((N-1)\lambda_k^{N-2})\, V^T`
    with :math:`X = U\Sigma V^T` (thin SVD for m != n), :math:`\lambda_k = \sigma_k^{1/N}`;
    this is :math:`\beta^{-1}` times the Laplace-Beltrami drift
    :math:`|g|^{-1/2}\partial_j(|g|^{1/2} g^{jk})` of :math:`g^N`, for square and non-square X
    alike (module section *Non-square X*). Cost O(m n min(m, n)), one thin SVD.

    Parameters
    ----------
    X : array_like, shape (..., m, n)
        Full-rank real matrices (one or a stack; rank min(m, n)).
    depth : int or numpy.inf
        N >= 1 (depth 1 is the flat metric: zero drift); ``inf`` gives the
        rescaled limit metric, with drift :math:`\beta^{-1} X` (square X only).
    beta : float, default 1
        Inverse temperature (> 0).

    Returns
    -------
    ndarray, shape (..., m, n)

    Raises
    ------
    ValueError
        If some X is rank-deficient, beta is not positive, or ``depth = inf`` with m != n.
    """
    X = as_real_matrices(X)
    depth = check_depth(depth)
    beta = check_real(beta, "beta", positive=True)
    return brownian_drift_in_frame(full_rank_frame(X, depth), beta)


def brownian_increment(X, depth, beta: float, dt: float, noise) -> np.ndarray:
    r"""One Euler-Maruyama increment of Brownian motion on :math:`(\mathfrak{M}_{m\times n}, g^N)`.

    [G] eq. 12.10:

    .. math::

        \Delta X = b(X)\,\Delta t + \sqrt{2\Delta t/\beta}\;\mathcal{A}_{N,X}^{1/2}(\xi),

    with b the drift of :func:`brownian_drift` and :math:`\mathcal{A}^{1/2}`
    applied in the singular frame: :math:`U(\sqrt{M}\circ(U^T\xi V))V^T`, M the
    multipliers of [G] eq. 7.13-7.14 (and :math:`\sqrt{c_k}` on the complement block for
    m != n). Its covariance is :math:`(2\Delta t/\beta)\mathcal{A}_{N,X}`, the inverse metric.

    Parameters
    ----------
    X : array_like, shape (..., m, n)
        Full-rank real matrices.
    depth : int or numpy.inf
        Finite for m != n.
    beta : float
        Inverse temperature (> 0).
    dt : float
        Time step (> 0).
    noise : array_like, shape (..., m, n)
        Standard Gaussian samples (mean 0, variance 1 per entry), broadcastable
        against X.

    Returns
    -------
    ndarray, shape (..., m, n)
        The increment (add it to X for the next point).
    """
    X = as_real_matrices(X)
    depth = check_depth(depth)
    beta = check_real(beta, "beta", positive=True)
    dt = check_real(dt, "dt", positive=True)
    noise = as_real_matrices(noise, "noise")
    if noise.shape[-2:] != X.shape[-2:]:
        m, n = X.shape[-2:]
        raise ValueError(f"noise must have shape (..., {m}, {n}) (that of X), got {noise.shape}")
    frame = full_rank_frame(X, depth)
    drift = brownian_drift_in_frame(frame, beta)
    return drift * dt + np.sqrt(2.0 / beta) * frame.power(np.sqrt(dt) * noise, 0.5)


def brownian_motion(
    X0,
    depth,
    beta: float = 1.0,
    *,
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
    r"""Sample B paths of Brownian motion on :math:`(\mathfrak{M}_{m\times n}, g^N)` ([G] Thm 18).

    Euler-Maruyama for [G] eq. 12.10 with Brownian-bridge reject-and-halve
    (see :mod:`dln_manifolds.langevin._stepping`): no path crosses the singular set.

    Parameters
    ----------
    X0 : array_like, shape (m, n) or (B, m, n)
        One full-rank starting point (copied to ``n_paths`` paths) or one per path.
    depth : int or numpy.inf
        Finite for m != n.
    beta : float, default 1
        Inverse temperature.
    t_final, dt : float
        Final time and nominal step.
    n_paths : int, optional
        Number of paths B (default 1, or ``len(X0)``).
    seed : None, int, SeedSequence or Generator
    save_every : int, optional
        Save every ``save_every`` steps; None keeps the start and the end only.
    max_log_change : float, default 0.5
        Largest accepted change of a log singular value in one step.
    max_halvings : int, default 30
    on_boundary : {"stop", "raise"}, default "stop"
        A path still rejected after ``max_halvings`` halvings has reached the
        singular set: stop it there (``SampleResult.exit_times``) or raise.
    progress : bool, default False
    chunk_size : int, optional
        Advance at most this many paths at once (default 16384): the temporaries of a
        step (about twenty arrays of the chunk's size) are bounded by the chunk, not by
        B. Results are bit-identical whatever the chunk size, for the same seed.
    out : str or os.PathLike, optional
        Stream the saved states to this ``.npy`` file instead of holding them in
        memory; ``states`` is then a read-only memory map of it.
    on_save : callable, optional
        ``on_save(t, states)`` is called at every saved time with a read-only view of
        the ensemble (B, m, n), e.g. for running statistics; without ``out`` only the
        first and last states are then kept in the result.

    Returns
    -------
    SampleResult
        ``states`` has shape (n_saved, B, m, n); ``.final`` is (B, m, n).
    """
    options = run_options(locals())
    depth = check_depth(depth)
    beta = check_real(beta, "beta", positive=True)
    return matrix_sampler(
        X0,
        n_paths,
        depth,
        lambda x, frame: brownian_drift_in_frame(frame, beta),
        np.sqrt(2.0 / beta),
        t_final,
        dt,
        max_log_change,
        desc="brownian",
        **options,
    )
