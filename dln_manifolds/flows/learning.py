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

:func:`end_to_end_flow` can also evaluate its velocity through the balanced lift
(``evaluation="factors"`` or ``"auto"``): the lifted gradient in 3N - 1 matrix products
(:func:`factor_velocity`, [G] eq. 3.6), whose end-to-end image is
:math:`-\mathcal{A}_{N,X}(E'(X))` at balanced points ([G] Thm 2), is cheaper than the SVD
for small N (docs/performance.rst, "Flow solvers").

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

General widths
--------------
Networks of general widths (layers given as a list, end-to-end matrix of shape
(d_N, d_0)) follow the same flows: :func:`learning_flow` integrates the plain gradient flow
from any start, :func:`end_to_end_flow` the rectangular :math:`\mathcal{A}_{N,X}`, and the two
agree from a balanced start ([G] Thm 2, [ACH] Thm 1; tests/test_dynamics_widths.py, and the
closed forms of [SMG] in tests/test_saxe.py). The full-rank (m, n) matrices with m != n form
one connected set: :func:`end_to_end_flow` raises :class:`RuntimeError` when a step makes X
rank-deficient to rounding. The upstairs flow of a list of layers is not projected and not
guarded.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [ACH] S. Arora, N. Cohen and E. Hazan, *On the optimization of deep networks: implicit
  acceleration by overparameterization*, ICML 2018.
- [SMG] A. M. Saxe, J. L. McClelland and S. Ganguli, *Exact solutions to the nonlinear
  dynamics of learning in deep linear neural networks*, arXiv:1312.6120 (2013).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._checks import (
    as_array,
    as_layer_sequence,
    as_matrix,
    as_stack,
    check_depth,
    check_full_rank,
    check_positive,
)
from .._linalg import chain_product, pack_layers, unpack_layers
from ..balanced import balance_error, balanced_restore, check_balanced
from ..depth_metric import depth_operator
from ..entropy import check_energy_like, free_energy_velocity, orbit_entropy_at
from ..network import balanced_point, end_to_end, lifted_gradient
from .integrators import FlowResult, integrate_flow, integrate_with_defaults

__all__ = [
    "learning_velocity",
    "learning_flow",
    "LayersFlowResult",
    "end_to_end_flow",
    "factor_velocity",
    "FACTOR_DEPTH_MAX",
    "free_energy_flow",
]

Monitor = Callable[[float, np.ndarray], object]


def _real(X, name: str, *, rectangular: bool = False) -> np.ndarray:
    if rectangular and np.ndim(X) == 2 and np.shape(X)[0] != np.shape(X)[1]:
        X = as_array(X, name, real=False, batch=True)  # any (m, n), m, n >= 1
    else:
        X = as_matrix(X, name)
    if np.iscomplexobj(X):
        raise TypeError(f"{name} must be real")
    return X


def _energy_for(energy, X: np.ndarray, name: str):
    """:func:`check_energy_like` for an end-to-end matrix X of shape (d, d) or (m, n)."""
    shape = getattr(energy, "shape", None)
    if shape is not None and tuple(shape) != X.shape:
        raise ValueError(
            f"energy acts on {shape[0]} x {shape[1]} matrices but the end-to-end matrix of "
            f"{name} has shape {X.shape}"
        )
    m, n = X.shape
    return check_energy_like(energy, m if m == n else (m, n), X=X)


def _layers(W, name: str, widths) -> list[np.ndarray]:
    """A real network of general widths, given as a sequence of layers (no batch axes)."""
    return as_layer_sequence(W, name, widths=widths, real=True, batch=False)


def _layers_velocity(layers: list[np.ndarray], gradient) -> list[np.ndarray]:
    r""":math:`-\nabla_W E(\phi(W))` for a validated sequence of layers: forward products
    :math:`B_p = W_p\cdots W_1`, then one backward sweep :math:`G \leftarrow W_p^T G` from
    :math:`G = E'(X)` ([G] eq. 3.6); 3N - 2 matrix products."""
    B = [layers[0]]
    for layer in layers[1:]:
        B.append(layer @ B[-1])
    G = np.asarray(gradient(B[-1]))
    out = [None] * len(layers)
    for p in range(len(layers) - 1, 0, -1):
        out[p] = -(G @ B[p - 1].T)
        G = layers[p].T @ G
    out[0] = -G
    return out


def learning_velocity(
    W, energy, *, widths: Sequence[int] | None = None
) -> np.ndarray | list[np.ndarray]:
    r"""Upstairs learning velocity :math:`-\nabla_W E(\phi(W))` ([G] eq. 3.4, 3.6).

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Layers (tangent to :math:`\mathcal{M}` when W is balanced, [G] Thm 1). A list or
        tuple holds layers of general widths, ``W[k-1]`` of shape (d_k, d_{k-1}).
    energy : Energy or callable
        Object with ``gradient(X)`` (Euclidean E'(X)), or a plain callable ``X -> E'(X)``;
        it acts on matrices of the shape (d_N, d_0) of the end-to-end matrix.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like the layers
        Layer p is :math:`-A_{p+1}^T E'(X) B_{p-1}^T`.
    """
    if isinstance(W, (list, tuple)):
        layers = _layers(W, "W", widths)
        energy = _energy_for(energy, chain_product(layers), "W")
        return _layers_velocity(layers, energy.gradient)
    W = as_stack(W, "W", real=True)
    X = end_to_end(W, widths=widths)
    energy = check_energy_like(energy, X.shape[0], X=X)
    return -lifted_gradient(W, energy.gradient(X))


@dataclass
class LayersFlowResult(FlowResult):
    r""":class:`~dln_manifolds.flows.FlowResult` of a network of general widths.

    What :func:`learning_flow` returns for layers given as a sequence. The layers of a
    saved state are raveled and concatenated, input layer first, so that the states stack
    into one array (and :meth:`save` / :meth:`load` work as for any result);
    :meth:`layers` unpacks them.

    Attributes
    ----------
    states : ndarray, shape (n_saved, P)
        P = :math:`\sum_k d_k d_{k-1}` parameters per state.
    widths : ndarray of int, shape (N + 1,)
        :math:`(d_0, \dots, d_N)`.
    """

    widths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def layers(self, index: int = -1) -> list[np.ndarray]:
        """The layers of saved state ``index`` (default: the last), ``W[k-1]`` (d_k, d_{k-1})."""
        return unpack_layers(self.states[index], tuple(int(w) for w in self.widths))

    @property
    def final(self) -> list[np.ndarray]:
        """The layers at ``t_final`` (or at the stopping time)."""
        return self.layers(-1)


def _learning_monitors(energy, phi, imbalance) -> dict:
    """Default monitors of :func:`learning_flow`: end-to-end matrix, E (if it has a value)
    and the balance error, from the end-to-end map ``phi`` and ``imbalance`` of the layers."""
    defaults = {
        "end_to_end": lambda t, W: phi(W),
        "energy": lambda t, W: float(energy.value(phi(W))),
        "balance_error": lambda t, W: imbalance(W),
    }
    if energy.value is None:  # a plain gradient callable: no E(X) to monitor
        del defaults["energy"]
    return defaults


def _learning_flow_layers(W0, energy, t_final, widths, monitors, stop_when, **options):
    """:func:`learning_flow` for a sequence of layers: the plain gradient flow, any start."""
    layers = _layers(W0, "W0", widths)
    widths = (layers[0].shape[1], *(layer.shape[0] for layer in layers))
    energy = _energy_for(energy, chain_product(layers), "W0")
    defaults = _learning_monitors(energy, chain_product, balance_error)  # lists of layers
    defaults.update(monitors or {})

    def on_layers(f):
        return lambda t, y: f(t, unpack_layers(y, widths))

    def velocity(t, y):
        return pack_layers(_layers_velocity(unpack_layers(y, widths), energy.gradient))

    result = integrate_flow(
        velocity,
        pack_layers(layers),
        t_final,
        monitors={name: on_layers(f) for name, f in defaults.items()},
        stop_when=None if stop_when is None else on_layers(stop_when),
        desc=f"learning flow, widths {widths}",
        **options,
    )
    return LayersFlowResult(**vars(result), widths=np.array(widths, dtype=np.int64))


def learning_flow(
    W0,
    energy,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    adaptive: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    stop_when: Callable[[float, np.ndarray], bool] | None = None,
    save_every: int = 1,
    monitors: Mapping[str, Monitor] | None = None,
    tol: float = 1e-8,
    progress: bool = False,
    widths: Sequence[int] | None = None,
) -> FlowResult:
    r"""Gradient flow of :math:`E(\phi(W))` on the balanced manifold ([G] eq. 3.4, Thm 1).

    Integrates :math:`\dot W = -\nabla_W E(\phi(W))` (:func:`learning_velocity`) with a
    projected Runge-Kutta method, projecting each step back onto
    :math:`\mathcal{M}` with :func:`~dln_manifolds.balanced.balanced_restore` (the
    velocity is tangent to :math:`\mathcal{M}`, so the projection only removes
    the discretization drift and the method keeps its order).

    **General widths.** For ``W0`` given as a list or tuple of layers (``W0[k-1]`` of
    shape (d_k, d_{k-1})) this is the plain gradient flow of :math:`E(\phi(W))` from
    *any* start, balanced or not, with no projection: the exact flow conserves the
    moments :math:`W_kW_k^T - W_{k+1}^TW_{k+1}` ([G] eq. 4.2-4.3; the
    ``"balance_error"`` monitor shows them), and from a balanced start the end-to-end
    matrix follows :func:`end_to_end_flow` for the rectangular :math:`\mathcal{A}_{N,X}`
    ([G] Thm 2, whose proof uses only balancedness; [ACH] Thm 1). The energy acts on
    (d_N, d_0) matrices (e.g. a :class:`~dln_manifolds.QuadraticEnergy` with a rectangular
    target). The result is a :class:`LayersFlowResult`.

    Parameters
    ----------
    W0 : array_like, shape (N, d, d), or sequence of N arrays
        Balanced full-rank start (e.g. :func:`dln_manifolds.balanced_point`); as a
        sequence of layers of general widths, any start.
    energy : Energy or callable
        Loss of the end-to-end matrix, with ``value`` and ``gradient``, or a plain
        callable ``X -> E'(X)`` (as the Langevin samplers accept; then there is no
        ``"energy"`` monitor).
    t_final : float
        Final time, > 0.
    dt : float, optional
        Step size (default ``t_final / 100``); initial step if ``adaptive``.
    method : {"rk4", "euler", "heun", "dopri5", "rkc"}
        See :func:`~dln_manifolds.flows.integrate_flow`.
    adaptive : bool
        Error-controlled steps (dopri5, or rkc with ``method="rkc"``).
    rtol, atol : float
        Tolerances of the adaptive mode.
    stop_when : callable ``(t, W) -> bool``, optional
        Stop after the first accepted step where it returns True (e.g. when the loss is
        reached); ``result.times[-1]`` is then the stopping time.
    save_every : int
        Save every k-th step.
    monitors : mapping, optional
        Extra monitors ``name -> f(t, W)``, added to the defaults
        ``"end_to_end"`` (shape (d, d)), ``"energy"`` and ``"balance_error"``
        (:func:`~dln_manifolds.balanced.balance_error`).
    tol : float
        Largest accepted balance error of ``W0`` (stacked layers only).
    progress : bool
        tqdm progress bar.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    FlowResult
        ``states`` has shape (n_saved, N, d, d); for a sequence of layers a
        :class:`LayersFlowResult` (``states`` (n_saved, P) packed, ``final`` and
        ``layers(i)`` the lists of layers, monitor ``"end_to_end"`` of shape
        (n_saved, d_N, d_0)).

    Raises
    ------
    ValueError
        If ``W0`` is not balanced to ``tol`` or rank-deficient (stacked layers), or the
        energy has the wrong size.
    """
    if isinstance(W0, (list, tuple)):
        tol = check_positive(tol, "tol")
        return _learning_flow_layers(
            W0,
            energy,
            t_final,
            widths,
            monitors,
            stop_when,
            dt=dt,
            method=method,
            adaptive=adaptive,
            rtol=rtol,
            atol=atol,
            save_every=save_every,
            progress=progress,
        )
    W0 = check_balanced(W0, tol=tol, name="W0")
    if widths is not None:
        end_to_end(W0, widths=widths)  # a stack: widths must be (d, ..., d)
    energy = check_energy_like(energy, W0.shape[1], X=end_to_end(W0))
    defaults = _learning_monitors(energy, end_to_end, balance_error)
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
        rtol=rtol,
        atol=atol,
        stop_when=stop_when,
        save_every=save_every,
        progress=progress,
        desc="learning flow on M",
    )


class _StayInGL:
    """Restore hook that raises when a step changes the sign of det X (leaves GL(d)).

    For a non-square X (m, n) the full-rank matrices are connected: it raises when the
    step makes X rank-deficient to rounding (smallest singular value below
    max(m, n) eps times the largest)."""

    def __init__(self, X0: np.ndarray):
        self.square = X0.shape[0] == X0.shape[1]
        self.sign = np.linalg.slogdet(X0)[0] if self.square else 1.0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.square:
            sign = np.linalg.slogdet(X)[0]
        else:
            s = np.linalg.svd(X, compute_uv=False)
            sign = float(s[-1] > max(X.shape) * np.finfo(np.float64).eps * s[0])
        if sign != self.sign:
            what = (
                "left GL(d): det X changed sign or vanished"
                if self.square
                else "made X rank-deficient (to rounding)"
            )
            raise RuntimeError(
                f"the step {what}, which the exact flow never does (see "
                "dln_manifolds.flows.learning, 'Rank drop'); reduce dt or use adaptive=True"
            )
        return X


def _downstairs_start(X0, depth, energy, *, rectangular: bool = False):
    X0 = _real(X0, "X0", rectangular=rectangular)
    depth = check_depth(depth)
    energy = _energy_for(energy, X0, "X0")
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
    ``options`` are dt, method, adaptive, rtol, atol, stop_when, save_every, monitors (user
    extras), progress."""
    defaults = {
        "energy": lambda t, X: float(energy.value(X)),
        **extra_monitors,
        "singular_values": lambda t, X: np.linalg.svd(X, compute_uv=False),
    }
    if energy.value is None:  # a plain gradient callable: no E(X) to monitor
        del defaults["energy"]
    restore = None if depth == 1 else _StayInGL(X0)
    return integrate_with_defaults(
        velocity, X0, t_final, defaults=defaults, restore=restore, desc=desc, **options
    )


#: ``evaluation="auto"`` of :func:`end_to_end_flow` integrates the balanced factors up to this
#: depth: their velocity costs 3N - 1 products of d x d matrices, against one SVD for
#: :math:`\mathcal{A}_{N,X}`; measured at d = 100 the two break even near N = 13, and the
#: integrator's state grows with N (docs/performance.rst, "Flow solvers").
FACTOR_DEPTH_MAX = 10


def factor_velocity(W: np.ndarray, gradient: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    r"""Upstairs learning velocity :math:`-\nabla_W E(\phi(W))` in 3N - 1 matrix products.

    Forward products :math:`B_p = W_p\cdots W_1` (N - 1 products), then one backward sweep
    :math:`G \leftarrow W_p^T G` from :math:`G = E'(X)`: layer p receives
    :math:`-G_p B_{p-1}^T` with :math:`G_p = W_N^T\cdots W_{p+1}^T E'(X)` ([G] eq. 3.6).
    At a balanced W its end-to-end image is :math:`-\mathcal{A}_{N,X}(E'(X))` ([G] Thm 2),
    with no SVD. No input checks (internal to the flows).

    Parameters
    ----------
    W : ndarray, shape (N, d, d)
    gradient : callable ``X -> E'(X)``

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    N = W.shape[0]
    B = [W[0]]
    for p in range(1, N):
        B.append(W[p] @ B[-1])
    G = -np.asarray(gradient(B[-1]))  # the sign once, on one d x d matrix
    out = np.empty(W.shape, dtype=np.result_type(W, G))
    for p in range(N - 1, 0, -1):
        np.matmul(G, B[p - 1].T, out=out[p])
        G = W[p].T @ G
    out[0] = G
    return out


class _LayersStayInGL:
    """Restore hook of the factor path: raises when a layer's det changes sign (rank drop)."""

    def __init__(self, W0: np.ndarray):
        self.signs = np.linalg.slogdet(W0)[0]

    def __call__(self, W: np.ndarray) -> np.ndarray:
        if np.any(np.linalg.slogdet(W)[0] != self.signs):
            raise RuntimeError(
                "the step left GL(d): a layer's determinant changed sign or vanished, which "
                "the exact flow never does (see dln_manifolds.flows.learning, 'Rank drop'); "
                "reduce dt, rtol or atol"
            )
        return W


class _EndToEndCache:
    """``W -> end_to_end(W)``, computed once per state object (monitors, stop_when, saving)."""

    def __init__(self):
        self._W = None
        self._X = None

    def __call__(self, W: np.ndarray) -> np.ndarray:
        if W is not self._W:
            self._W, self._X = W, end_to_end(W)
        return self._X


def _on_end_to_end(f, cache: _EndToEndCache):
    return None if f is None else (lambda t, W: f(t, cache(W)))


def end_to_end_flow(
    X0,
    energy,
    depth,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    adaptive: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    stop_when: Callable[[float, np.ndarray], bool] | None = None,
    error_scale: str = "entrywise",
    evaluation: str = "svd",
    save_every: int = 1,
    monitors: Mapping[str, Monitor] | None = None,
    progress: bool = False,
) -> FlowResult:
    r"""Gradient flow :math:`\dot X = -\mathcal{A}_{N,X}(E'(X))` on :math:`(\mathfrak{M}_d, g^N)`.

    The Riemannian gradient flow of E for the depth metric ([G] Thm 2-3, eq. 4.19).

    With the same energy, it is the end-to-end trajectory of
    :func:`learning_flow` started at any balanced lift of ``X0``. Two evaluations of the
    velocity, both exact: ``"svd"`` applies :math:`\mathcal{A}_{N,X}` through one SVD per
    stage (cost independent of N); ``"factors"`` integrates the balanced lift
    :math:`W_0` = :func:`~dln_manifolds.balanced_point` ``(X0, N)`` upstairs with
    :func:`factor_velocity` (3N - 1 matrix products per stage, no SVD) and returns its
    end-to-end matrices, which is the same flow by [G] Thm 2. The lift is not projected
    back onto :math:`\mathcal{M}` after each step: its balancedness is conserved by the
    exact flow and drifts only at the level of the local error, like the path itself.

    For X0 of shape (m, n) (a network of widths :math:`(n, d_1, \dots, d_{N-1}, m)`,
    every hidden width at least min(m, n)) the flow lives on the full-rank (m, n)
    matrices with the rectangular :math:`\mathcal{A}_{N,X}`
    (:class:`~dln_manifolds.DepthFrame`, docs/mathematics.rst, :ref:`math-widths`), and
    it is the end-to-end trajectory of :func:`learning_flow` from any balanced lift
    ``balanced_point(X0, N, widths=...)`` given as a list of layers. The velocity is
    then evaluated by ``"svd"`` (also for ``evaluation="auto"``).

    Parameters
    ----------
    X0 : array_like, shape (d, d) or (m, n)
        Start; full rank unless ``depth == 1``.
    energy : Energy or callable
        An Energy, or a plain callable ``X -> E'(X)`` (then no ``"energy"`` monitor),
        acting on matrices of the shape of ``X0``.
    depth : int or numpy.inf
        ``inf`` uses :math:`\mathcal{A}_\infty = \lim \mathcal{A}_N/N` (time rescaled by N).
    t_final : float
    dt, method, adaptive, rtol, atol, save_every, progress
        As in :func:`learning_flow` (``method`` also ``"erkc"``, ``"dopri5-erkc"`` and
        ``"dopri5-rkc"``, :func:`~dln_manifolds.flows.integrate_flow`). For fast training
        to a loss use ``method="dopri5-erkc", adaptive=True, rtol=1e-3, atol=1e-8,
        evaluation="factors"`` and ``stop_when`` (docs/performance.rst, "Flow solvers");
        keep ``error_scale="entrywise"`` there (``"norm"`` misses the path, same page).
    stop_when : callable ``(t, X) -> bool``, optional
        Stop after the first accepted step where it returns True, e.g.
        ``lambda t, X: energy.value(X) < target``.
    error_scale : {"entrywise", "norm"}
        How the adaptive mode weighs the error (:func:`~dln_manifolds.flows.integrate_flow`);
        ``"norm"`` makes ``rtol`` relative to the size of the state (X, or the layers): an
        absolute tolerance for its small components, so it does not resolve the small
        singular values whose escape times set the path from a small start such as
        ``1e-3 * I`` (measured in docs/performance.rst, "Flow solvers").
    evaluation : {"svd", "auto", "factors"}
        How the velocity is evaluated; ``"auto"``: ``"factors"`` for finite
        ``depth <= FACTOR_DEPTH_MAX`` (10) and a square ``X0``, else ``"svd"`` (the fastest,
        docs/performance.rst).
        The default ``"svd"`` keeps this flow independent of the upstairs code, so that
        comparisons with :func:`learning_flow` ([G] Thm 2) test something. ``"factors"``
        needs a finite depth and a square ``X0``.
    monitors : mapping, optional
        Extra monitors ``name -> f(t, X)``, added to the defaults ``"energy"`` and
        ``"singular_values"`` (shape (min(m, n),)).

    Returns
    -------
    FlowResult
        ``states`` has shape (n_saved, d, d), or (n_saved, m, n) (end-to-end matrices in
        both evaluations).

    Raises
    ------
    RuntimeError
        If a step leaves GL(d) (module docstring, 'Rank drop'), or makes a non-square X
        rank-deficient; depth >= 2 only.
    """
    if evaluation not in ("auto", "svd", "factors"):
        raise ValueError(f"evaluation must be 'auto', 'svd' or 'factors', got {evaluation!r}")
    X0, depth, energy = _downstairs_start(X0, depth, energy, rectangular=True)
    if evaluation == "factors" and np.isinf(depth):
        raise ValueError("evaluation='factors' needs a finite depth")
    square = X0.shape[0] == X0.shape[1]
    if evaluation == "factors" and not square:
        raise ValueError(
            f"evaluation='factors' needs a square X0, got shape {X0.shape}; use 'svd' or 'auto'"
        )
    if evaluation == "auto":
        evaluation = "factors" if square and depth <= FACTOR_DEPTH_MAX else "svd"
    options = dict(
        dt=dt,
        method=method,
        adaptive=adaptive,
        rtol=rtol,
        atol=atol,
        error_scale=error_scale,
        save_every=save_every,
        progress=progress,
    )
    if evaluation == "svd":
        return _downstairs_flow(
            lambda t, X: -depth_operator(X, depth, energy.gradient(X)),
            X0,
            depth,
            energy,
            t_final,
            {},
            f"end-to-end flow (N={depth})",
            stop_when=stop_when,
            monitors=monitors,
            **options,
        )
    N = int(depth)
    W0 = balanced_point(X0, N)
    cache = _EndToEndCache()
    defaults = {
        "energy": lambda t, X: float(energy.value(X)),
        "singular_values": lambda t, X: np.linalg.svd(X, compute_uv=False),
    }
    if energy.value is None:  # a plain gradient callable: no E(X) to monitor
        del defaults["energy"]
    defaults.update(monitors or {})
    return integrate_flow(
        lambda t, W: factor_velocity(W, energy.gradient),
        W0,
        t_final,
        restore=None if N == 1 else _LayersStayInGL(W0),
        stop_when=_on_end_to_end(stop_when, cache),
        monitors={name: _on_end_to_end(f, cache) for name, f in defaults.items()},
        save_as=cache,
        desc=f"end-to-end flow (N={depth}, balanced factors)",
        **options,
    )


class _EntropyOfState:
    """``X -> S(X)`` for the monitors of :func:`free_energy_flow`: once per state object."""

    def __init__(self, depth):
        self.depth = depth
        self._X = None
        self._S = 0.0

    def __call__(self, X: np.ndarray) -> float:
        if X is not self._X:
            self._X, self._S = X, orbit_entropy_at(X, self.depth)
        return self._S


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
    rtol: float = 1e-8,
    atol: float = 1e-10,
    stop_when: Callable[[float, np.ndarray], bool] | None = None,
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
    energy : Energy or callable
        An Energy, or a plain callable ``X -> E'(X)`` (then no ``"energy"`` and
        ``"free_energy"`` monitors).
    depth : int or numpy.inf
    beta : float
        Inverse temperature, > 0.
    t_final : float
    dt, method, adaptive, rtol, atol, stop_when, save_every, progress
        As in :func:`learning_flow` (``stop_when`` receives ``(t, X)``).
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
    # validated here, once: the stages and monitors below use the unchecked cores
    beta = check_positive(beta, "beta")
    X0, depth, energy = _downstairs_start(X0, depth, energy)
    if depth == 1:  # _downstairs_start tests full rank for depth >= 2 only
        check_full_rank(np.linalg.svd(X0, compute_uv=False), "X0")
    entropy = _EntropyOfState(depth)
    extra = {
        "entropy": lambda t, X: entropy(X),
        "free_energy": lambda t, X: float(energy.value(X)) - entropy(X) / beta,
    }
    if energy.value is None:  # a plain gradient callable: no E(X), no F(X)
        del extra["free_energy"]
    velocity = free_energy_velocity(energy, depth, beta)  # one DepthFrame (one SVD) a stage
    return _downstairs_flow(
        lambda t, X: velocity(X),
        X0,
        depth,
        energy,
        t_final,
        extra,
        f"free energy flow (N={depth}, beta={beta:g})",
        dt=dt,
        method=method,
        adaptive=adaptive,
        rtol=rtol,
        atol=atol,
        stop_when=stop_when,
        save_every=save_every,
        monitors=monitors,
        progress=progress,
    )
