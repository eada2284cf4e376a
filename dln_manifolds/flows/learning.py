r"""Learning dynamics: gradient flows upstairs on M and downstairs on :math:`(\mathfrak{M}_d, g^N)`.

Upstairs, training is the Euclidean gradient flow of the lifted loss
:math:`E(\phi(W))` ([G] eq. 3.4, 3.6),

.. math::

    \dot W_p = -A_{p+1}^T E'(X) B_{p-1}^T,\qquad X = \phi(W) = W_N\cdots W_1,

whose velocity is tangent to the balanced manifold :math:`\mathcal{M}` at balanced
points ([G] Thm 1), so the flow started on :math:`\mathcal{M}` stays there.
Downstairs, the end-to-end matrix follows the Riemannian gradient flow of E for
the depth metric ([G] Thm 2-3, eq. 4.18-4.19),

.. math::

    \dot X = -\mathcal{A}_{N,X}(E'(X)),

and with entropy the free energy flow :math:`\dot X = -\mathrm{grad}_{g^N} F_\beta(X)`
([G] eq. 6.7, 12.13). With the same E and a balanced start, the end-to-end matrix
of the upstairs flow *is* the downstairs flow; the downstairs step costs one SVD
(O(d^3), independent of N) against O(N d^3) upstairs.

All three drivers call :func:`~dln_manifolds.flows.integrators.integrate_flow`;
the upstairs one uses :func:`~dln_manifolds.balanced.balanced_restore` as the
projection step, so the iterates are balanced to rounding and the Runge-Kutta
order is kept.

Rank drop
---------
For N >= 2 (and N = inf) the exact downstairs flow never reaches a singular
matrix in finite time: :math:`\dot\sigma_k = -m_{kk}\langle E'(X), u_kv_k^T\rangle` with
:math:`m_{kk} = N\sigma_k^{2-2/N}` (:math:`\sigma_k^2` at N = inf), so
:math:`|d\log\sigma_k/dt| \le N\sigma_k^{1-2/N}|E'(X)|` stays bounded as
:math:`\sigma_k \to 0`. The flow can *approach* rank drop as :math:`t \to \infty` when
the minimizer of E over the component of GL(d) is rank-deficient (then
:math:`\sigma_k \to 0` exponentially for N = 2, like :math:`t^{-N/(N-2)}` for N >= 3):
slow, not stiff. GL(d) has two components (the sign of det X) and the flow
preserves them, so a step whose ``det X`` changes sign (or vanishes) has left
GL(d) through discretization error: :func:`end_to_end_flow` and
:func:`free_energy_flow` then raise :class:`RuntimeError` (reduce ``dt`` or use
``adaptive=True``). Depth 1 is the Euclidean gradient flow on all matrices and is
not guarded. Upstairs the same holds layer by layer (balanced layers share their
singular values :math:`\sigma^{1/N}`).

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .._checks import as_matrix, as_stack, check_depth, check_full_rank, check_positive
from ..balanced import balance_error, balanced_restore, check_balanced
from ..depth_metric import depth_operator
from ..entropy import check_energy_like as _check_energy
from ..entropy import free_energy_gradient, orbit_entropy
from ..network import end_to_end, lifted_gradient
from .integrators import FlowResult, integrate_with_defaults

__all__ = [
    "learning_velocity",
    "learning_flow",
    "end_to_end_flow",
    "free_energy_flow",
]

Monitor = Callable[[float, np.ndarray], object]


def _real(X, name: str) -> np.ndarray:
    X = as_matrix(X, name)
    if np.iscomplexobj(X):
        raise TypeError(f"{name} must be real")
    return X


def learning_velocity(W, energy) -> np.ndarray:
    r"""Upstairs learning velocity :math:`-\nabla_W E(\phi(W))` ([G] eq. 3.4, 3.6).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Layers (tangent to :math:`\mathcal{M}` when W is balanced, [G] Thm 1).
    energy : Energy
        Object with ``value(X)`` and ``gradient(X)`` (Euclidean E'(X)).

    Returns
    -------
    ndarray, shape (N, d, d)
        Layer p is :math:`-A_{p+1}^T E'(X) B_{p-1}^T`.
    """
    W = as_stack(W, "W", real=True)
    X = end_to_end(W)
    energy = _check_energy(energy, X.shape[0])
    return -lifted_gradient(W, energy.gradient(X))


def learning_flow(
    W0,
    energy,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    adaptive: bool = False,
    save_every: int = 1,
    monitors: Mapping[str, Monitor] | None = None,
    tol: float = 1e-8,
    progress: bool = False,
) -> FlowResult:
    r"""Gradient flow of :math:`E(\phi(W))` on the balanced manifold ([G] eq. 3.4, Thm 1).

    Integrates :math:`\dot W = -\nabla_W E(\phi(W))` (:func:`learning_velocity`) with a
    projected Runge-Kutta method, projecting each step back onto
    :math:`\mathcal{M}` with :func:`~dln_manifolds.balanced.balanced_restore` (the
    velocity is tangent to :math:`\mathcal{M}`, so the projection only removes
    the discretization drift and the method keeps its order).

    Parameters
    ----------
    W0 : array_like, shape (N, d, d)
        Balanced full-rank start (e.g. :func:`dln_manifolds.balanced_point`).
    energy : Energy
        Loss of the end-to-end matrix, with ``value`` and ``gradient``.
    t_final : float
        Final time, > 0.
    dt : float, optional
        Step size (default ``t_final / 100``); initial step if ``adaptive``.
    method : {"rk4", "euler", "heun", "dopri5"}
    adaptive : bool
        Error-controlled steps (dopri5).
    save_every : int
        Save every k-th step.
    monitors : mapping, optional
        Extra monitors ``name -> f(t, W)``, added to the defaults
        ``"end_to_end"`` (shape (d, d)), ``"energy"`` and ``"balance_error"``
        (:func:`~dln_manifolds.balanced.balance_error`).
    tol : float
        Largest accepted balance error of ``W0``.
    progress : bool
        tqdm progress bar.

    Returns
    -------
    FlowResult
        ``states`` has shape (n_saved, N, d, d).

    Raises
    ------
    ValueError
        If ``W0`` is not balanced to ``tol`` or rank-deficient, or the energy
        has the wrong size.
    """
    W0 = check_balanced(W0, tol=tol, name="W0")
    energy = _check_energy(energy, W0.shape[1])
    defaults = {
        "end_to_end": lambda t, W: end_to_end(W),
        "energy": lambda t, W: float(energy.value(end_to_end(W))),
        "balance_error": lambda t, W: balance_error(W),
    }
    return integrate_with_defaults(
        lambda t, W: learning_velocity(W, energy),
        W0,
        t_final,
        defaults=defaults,
        monitors=monitors,
        dt=dt,
        method=method,
        restore=balanced_restore,
        adaptive=adaptive,
        save_every=save_every,
        progress=progress,
        desc="learning flow on M",
    )


class _StayInGL:
    """Restore hook that raises when a step changes the sign of det X (leaves GL(d))."""

    def __init__(self, X0: np.ndarray):
        self.sign = np.linalg.slogdet(X0)[0]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        sign = np.linalg.slogdet(X)[0]
        if sign != self.sign:
            raise RuntimeError(
                "the step left GL(d): det X changed sign or vanished, which the exact flow "
                "never does (see dln_manifolds.flows.learning, 'Rank drop'); reduce dt or "
                "use adaptive=True"
            )
        return X


def _downstairs_start(X0, depth, energy):
    X0 = _real(X0, "X0")
    depth = check_depth(depth)
    energy = _check_energy(energy, X0.shape[0])
    if depth != 1:
        check_full_rank(np.linalg.svd(X0, compute_uv=False), "X0")
    return X0, depth, energy


def _downstairs_flow(
    velocity: Callable[[float, np.ndarray], np.ndarray],
    X0: np.ndarray,
    depth,
    energy,
    t_final: float,
    extra_monitors: dict,
    desc: str,
    **options,
) -> FlowResult:
    """Integrate a flow on GL(d) (guarded by :class:`_StayInGL` for depth >= 2) with the
    default monitors ``"energy"``, ``extra_monitors`` and ``"singular_values"``;
    ``options`` are dt, method, adaptive, save_every, monitors (user extras), progress."""
    defaults = {
        "energy": lambda t, X: float(energy.value(X)),
        **extra_monitors,
        "singular_values": lambda t, X: np.linalg.svd(X, compute_uv=False),
    }
    restore = None if depth == 1 else _StayInGL(X0)
    return integrate_with_defaults(
        velocity, X0, t_final, defaults=defaults, restore=restore, desc=desc, **options
    )


def end_to_end_flow(
    X0,
    energy,
    depth,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    adaptive: bool = False,
    save_every: int = 1,
    monitors: Mapping[str, Monitor] | None = None,
    progress: bool = False,
) -> FlowResult:
    r"""Gradient flow :math:`\dot X = -\mathcal{A}_{N,X}(E'(X))` on :math:`(\mathfrak{M}_d, g^N)`.

    The Riemannian gradient flow of E for the depth metric ([G] Thm 2-3, eq. 4.19).

    With the same energy, it is the end-to-end trajectory of
    :func:`learning_flow` started at any balanced lift of ``X0``. One step costs
    one SVD per stage, independent of N.

    Parameters
    ----------
    X0 : array_like, shape (d, d)
        Start; full rank unless ``depth == 1``.
    energy : Energy
    depth : int or numpy.inf
        ``inf`` uses :math:`\mathcal{A}_\infty = \lim \mathcal{A}_N/N` (time rescaled by N).
    t_final : float
    dt, method, adaptive, save_every, progress
        As in :func:`learning_flow`.
    monitors : mapping, optional
        Extra monitors ``name -> f(t, X)``, added to the defaults ``"energy"`` and
        ``"singular_values"`` (shape (d,)).

    Returns
    -------
    FlowResult
        ``states`` has shape (n_saved, d, d).

    Raises
    ------
    RuntimeError
        If a step leaves GL(d) (module docstring, 'Rank drop'); depth >= 2 only.
    """
    X0, depth, energy = _downstairs_start(X0, depth, energy)
    return _downstairs_flow(
        lambda t, X: -depth_operator(X, depth, energy.gradient(X)),
        X0,
        depth,
        energy,
        t_final,
        {},
        f"end-to-end flow (N={depth})",
        dt=dt,
        method=method,
        adaptive=adaptive,
        save_every=save_every,
        monitors=monitors,
        progress=progress,
    )


def free_energy_flow(
    X0,
    energy,
    depth,
    beta: float,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    adaptive: bool = False,
    save_every: int = 1,
    monitors: Mapping[str, Monitor] | None = None,
    progress: bool = False,
) -> FlowResult:
    r"""Free energy flow :math:`\dot X = -\mathrm{grad}_{g^N}F_\beta(X)` ([G] eq. 6.7, 12.13).

    The velocity is :math:`-\mathcal{A}_{N,X}(E'(X)) + \beta^{-1}U\Sigma'V^T`
    (:func:`dln_manifolds.free_energy_gradient`); the entropy term repels
    singular values from each other ([G] section 12.2).

    Parameters
    ----------
    X0 : array_like, shape (d, d)
        Full-rank start.
    energy : Energy
    depth : int or numpy.inf
    beta : float
        Inverse temperature, > 0.
    t_final : float
    dt, method, adaptive, save_every, progress
        As in :func:`learning_flow`.
    monitors : mapping, optional
        Extra monitors, added to the defaults ``"energy"``, ``"entropy"``,
        ``"free_energy"`` and ``"singular_values"``.

    Returns
    -------
    FlowResult

    Raises
    ------
    RuntimeError
        If a step leaves GL(d) (depth >= 2).
    """
    beta = check_positive(beta, "beta")
    X0, depth, energy = _downstairs_start(X0, depth, energy)
    check_full_rank(np.linalg.svd(X0, compute_uv=False), "X0")
    extra = {
        "entropy": lambda t, X: orbit_entropy(X, depth),
        "free_energy": lambda t, X: float(energy.value(X)) - orbit_entropy(X, depth) / beta,
    }
    return _downstairs_flow(
        lambda t, X: -free_energy_gradient(X, depth, beta, energy),
        X0,
        depth,
        energy,
        t_final,
        extra,
        f"free energy flow (N={depth}, beta={beta:g})",
        dt=dt,
        method=method,
        adaptive=adaptive,
        save_every=save_every,
        monitors=monitors,
        progress=progress,
    )
