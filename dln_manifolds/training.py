r"""Training as it is run: gradient descent with a learning rate, SGD, initializers.

The flows of :mod:`dln_manifolds.flows.learning` are the continuous-time limits
of the iterations below. With learning rate :math:`\eta`, time :math:`t = k\eta`
after k steps, and the lifted loss :math:`E(\phi(W))` ([G] eq. 3.4, 3.6):

* :func:`gradient_descent`, plain GD on the weights from any start,

  .. math:: W_p \leftarrow W_p - \eta\, A_{p+1}^T E'(X) B_{p-1}^T,

  with no projection onto the balanced manifold, so it is *not*
  :func:`~dln_manifolds.flows.learning_flow` with Euler steps. The moments
  :math:`G_k = W_kW_k^T - W_{k+1}^TW_{k+1}` ([R] eq. 1.10) are conserved by the
  flow; one GD step changes them by exactly
  :math:`\eta^2(g_kg_k^T - g_{k+1}^Tg_{k+1})` (:math:`g_p` the gradient of layer p),
  so they drift by :math:`O(\eta^2)` per step and :math:`O(\eta t)` over a time t.
* :func:`end_to_end_gradient_descent`, the discrete end-to-end update of Arora,
  Cohen and Hazan (2018), :math:`X \leftarrow X - \eta\,\mathcal{A}_{N,X}(E'(X))`
  ([G] eq. 4.14, 4.19). From a balanced start one step of it agrees with the
  end-to-end matrix of one step of :func:`gradient_descent` up to :math:`O(\eta^2)`.
* :func:`sgd`, minibatch gradient descent on :class:`~dln_manifolds.RegressionEnergy`
  data, batches drawn from a seeded generator.

All three return a :class:`TrainingResult` (a
:class:`~dln_manifolds.flows.FlowResult` with ``lr`` and the stopping reason),
which saves to and loads from npz. Monitors are evaluated only at saved steps,
and memory is proportional to the number of saved states, not to ``max_steps``.

Divergence (weights or loss not finite) raises :class:`TrainingDivergedError`,
which names the step and keeps the trajectory so far in ``.result``.

General widths
--------------
A network of widths :math:`(d_0, \dots, d_N)` is given as a list (or tuple) of N layers,
``W[k-1]`` of shape :math:`(d_k, d_{k-1})` (``widths=`` checks them), and trains on an energy
of :math:`(d_N, d_0)` matrices; a stacked array (N, d, d) stays the fast path for square
networks. The result is then a :class:`LayersTrainingResult`, which stores each saved network
packed (the layers raveled and concatenated) like
:class:`~dln_manifolds.flows.LayersFlowResult`, and whose ``final`` and ``layers(i)`` return
lists. The moments :math:`G_k` have the sizes :math:`d_k \times d_k`; their drift is
monitored as one Frobenius norm :math:`|G_k(t) - G_k(0)|` per moment, shape (N - 1,) per
saved step, as for square networks. :func:`end_to_end_gradient_descent` takes a rectangular
X0 with the rectangular :math:`\mathcal{A}_{N,X}` (docs/mathematics.rst, :ref:`math-widths`),
which a balanced network follows to :math:`O(\eta^2)` per step ([ACH] Thm 1).

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [ACH] S. Arora, N. Cohen and E. Hazan, *On the optimization of deep networks: implicit
  acceleration by overparameterization*, ICML 2018.
- [SMG] A. M. Saxe, J. L. McClelland and S. Ganguli, *Exact solutions to the nonlinear
  dynamics of learning in deep linear neural networks*, arXiv:1312.6120 (2013).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ._checks import (
    as_array,
    as_generator,
    as_layer_sequence,
    as_stack,
    check_count,
    check_depth,
    check_finite_depth,
    check_positive,
    check_widths,
)
from ._linalg import (
    chain_product,
    haar_from_gaussian,
    haar_orthogonal,
    pack_layers,
    unpack_layers,
)
from .depth_metric import depth_operator
from .energies import RegressionEnergy, energy_functions
from .flows.integrators import FlowResult
from .flows.learning import LayersFlowResult
from .network import balanced_point, end_to_end, moments

__all__ = [
    "TrainingResult",
    "LayersTrainingResult",
    "TrainingDivergedError",
    "init_weights",
    "gradient_descent",
    "end_to_end_gradient_descent",
    "sgd",
]

Monitor = Callable[[float, np.ndarray], object]
StopWhen = Callable[[float, np.ndarray], bool]


@dataclass
class TrainingResult(FlowResult):
    """Output of :func:`gradient_descent`, :func:`end_to_end_gradient_descent` and :func:`sgd`.

    A :class:`~dln_manifolds.flows.FlowResult` (``times``, ``states``,
    ``monitors``, ``n_steps``, ``final``, ``save``/``load``) whose times are
    ``step * lr``.

    Attributes
    ----------
    lr : float
        Learning rate.
    stopped : str
        ``"max_steps"``, ``"stop_when"`` or ``"diverged"``.
    """

    lr: float = float("nan")
    stopped: str = "max_steps"

    @property
    def steps(self) -> np.ndarray:
        """Step numbers of the saved states (``times / lr`` rounded)."""
        return np.rint(self.times / self.lr).astype(np.int64)


@dataclass
class LayersTrainingResult(TrainingResult, LayersFlowResult):
    r""":class:`TrainingResult` of a network of general widths (layers given as a list).

    The states are packed as in :class:`~dln_manifolds.flows.LayersFlowResult`: the
    layers of a saved network raveled and concatenated, input layer first, so that
    ``states`` has shape (n_saved, P), :math:`P = \sum_k d_k d_{k-1}`; ``final`` and
    ``layers(i)`` return lists of layers ``W[k-1]`` of shape (d_k, d_{k-1}), ``widths``
    holds :math:`(d_0, \dots, d_N)`, and ``lr``, ``stopped``, ``steps``, ``save`` and
    ``load`` are those of :class:`TrainingResult`.
    """


class TrainingDivergedError(ValueError):
    """The loss or the weights became NaN or infinite.

    Attributes
    ----------
    step : int
        The first step whose result is not finite.
    result : TrainingResult
        The trajectory up to the last finite state (saved states plus that
        state), with ``stopped == "diverged"``.
    """

    def __init__(self, message: str, step: int, result: TrainingResult):
        super().__init__(message)
        self.step = step
        self.result = result


# --------------------------------------------------------------------------- checks


def _check_run(lr, max_steps, stop_when, save_every, monitors, progress):
    """The options every driver shares: ``(lr, max_steps, save_every, monitors, progress)``."""
    lr = check_positive(lr, "lr")
    max_steps = check_count(max_steps, "max_steps", integral=True)
    save_every, extra, progress = _check_options(
        stop_when, save_every, max_steps, monitors, progress
    )
    return lr, max_steps, save_every, extra, progress


def _check_network(W0, widths, name: str = "W0") -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Validate a start: ``(W0, None)`` for a real stack (N, d, d), the fast path, or
    ``(y, widths)`` for a list or tuple of layers of general widths, ``y`` the packed layers
    (:func:`~dln_manifolds._linalg.pack_layers`). ``widths`` is checked against the layers."""
    if isinstance(W0, (list, tuple)):
        layers = as_layer_sequence(W0, name, widths=widths, real=True, batch=False)
        return pack_layers(layers), (layers[0].shape[1], *(layer.shape[0] for layer in layers))
    if np.ndim(W0) == 3 and np.shape(W0)[1] != np.shape(W0)[2]:
        raise ValueError(
            f"{name} has non-square layers of shape {np.shape(W0)[1:]}: a stacked array "
            "(N, d, d) holds square layers; pass a network of general widths as a list of "
            "layers, W0[k] of shape (d_{k+1}, d_k)"
        )
    W0 = as_stack(W0, name, real=True)
    if widths is not None:
        end_to_end(W0, widths=widths)  # a stack: widths must be (d, ..., d)
    return W0, None


def _end_to_end_shape(W0: np.ndarray, widths) -> tuple[int, int]:
    """Shape (d_N, d_0) of the end-to-end matrix of a validated start (see _check_network)."""
    return (W0.shape[1], W0.shape[1]) if widths is None else (widths[-1], widths[0])


def _check_energy_shape(energy, shape: tuple[int, int], what: str):
    """``(gradient, value)`` of ``energy``, whose matrices must have ``shape``, that of ``what``."""
    gradient, value = energy_functions(energy)
    eshape = getattr(energy, "shape", None)
    if eshape is None and getattr(energy, "d", None) is not None:
        eshape = energy.d if isinstance(energy.d, tuple) else (energy.d, energy.d)
    if eshape is not None and tuple(eshape) != tuple(shape):
        raise ValueError(
            f"energy acts on {eshape[0]} x {eshape[1]} matrices but the end-to-end matrix of "
            f"{what} is {shape[0]} x {shape[1]}"
        )
    return gradient, value


def _check_options(stop_when, save_every, max_steps, monitors, progress):
    if stop_when is not None and not callable(stop_when):
        raise TypeError(f"stop_when must be callable or None, got {type(stop_when).__name__}")
    if save_every is None:
        save_every = max(1, max_steps // 100)
    else:
        save_every = check_count(save_every, "save_every", integral=True)
    if monitors is not None:
        if not isinstance(monitors, Mapping):
            raise TypeError(f"monitors must be a mapping name -> f(t, state), got {monitors!r}")
        for name, f in monitors.items():
            if not callable(f):
                raise TypeError(f"monitors[{name!r}] must be callable f(t, state)")
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return save_every, dict(monitors or {}), bool(progress)


# --------------------------------------------------------------------------- driver


def _run(
    y0: np.ndarray,
    step: Callable[[np.ndarray], np.ndarray],
    lr: float,
    max_steps: int,
    stop_when: StopWhen | None,
    save_every: int,
    monitors: dict[str, Monitor],
    progress: bool,
    desc: str,
    widths: tuple[int, ...] | None = None,
) -> TrainingResult:
    """Iterate ``y <- step(y)``; save and monitor every ``save_every`` steps (and the last).

    With ``widths``, ``y`` is a packed network of general widths and the result a
    :class:`LayersTrainingResult`."""
    y = y0.copy()
    y.flags.writeable = False
    times: list[float] = []
    states: list[np.ndarray] = []
    records: dict[str, list] = {name: [] for name in monitors}
    saved_steps: list[int] = []
    energy_monitor = monitors.get("energy")

    def save(k: int, y: np.ndarray) -> bool:
        """Record state k; False if its energy monitor is not finite."""
        t = k * lr
        values = {name: np.asarray(f(t, y)) for name, f in monitors.items()}
        times.append(t)
        states.append(y)
        for name, v in values.items():
            records[name].append(v)
        saved_steps.append(k)
        if energy_monitor is not None and not np.all(np.isfinite(values["energy"])):
            return False
        return True

    def unsave():
        times.pop()
        states.pop()
        saved_steps.pop()
        for v in records.values():
            v.pop()

    def result(n: int, stopped: str) -> TrainingResult:
        fields = dict(
            times=np.asarray(times, dtype=np.float64),
            states=np.stack(states),
            monitors={k: np.stack(v) for k, v in records.items()},
            n_steps=n,
            lr=lr,
            stopped=stopped,
        )
        if widths is None:
            return TrainingResult(**fields)
        return LayersTrainingResult(**fields, widths=np.array(widths, dtype=np.int64))

    def diverged(k: int, candidates) -> TrainingDivergedError:
        """Step k is not finite; keep the latest of ``candidates`` [(step, state), ...]
        (newest first) whose loss is finite. A state with finite weights can have an
        infinite loss: then it is where training diverged."""
        for k_good, good in candidates:
            if good is None:
                continue
            if saved_steps[-1] == k_good:
                if energy_monitor is None or np.all(np.isfinite(records["energy"][-1])):
                    break
                unsave()
            elif save(k_good, good):
                break
            else:
                unsave()
            k = k_good
        return TrainingDivergedError(
            f"training diverged at step {k} (t = {k * lr:.6g}): the loss or the weights became "
            f"NaN or infinite; try a smaller learning rate than lr = {lr:g}",
            k,
            result(saved_steps[-1], "diverged"),
        )

    def ask(k: int, y: np.ndarray) -> bool:
        try:
            return bool(stop_when(k * lr, y))
        except Exception as exc:
            exc.add_note(f"raised by stop_when(t, state) at step {k} (t = {k * lr:.6g})")
            raise

    if not save(0, y):
        raise ValueError("the energy at the start (W0 or X0) is NaN or infinite")
    if stop_when is not None and ask(0, y):
        return result(0, "stop_when")
    bar = tqdm(total=max_steps, desc=desc, leave=False) if progress else None
    k = 0
    # overflow on the way to divergence is detected and reported as an error, not warned about
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            prev = None
            for k in range(1, max_steps + 1):
                y_new = step(y)
                if not math.isfinite(y_new.sum()):
                    raise diverged(k, [(k - 1, y), (k - 2, prev)])
                y_new.flags.writeable = False
                prev, y = y, y_new
                if bar is not None:
                    bar.update(1)
                if (k % save_every == 0 or k == max_steps) and not save(k, y):
                    unsave()
                    raise diverged(k, [(k - 1, prev), (k - 2, None)])
                if stop_when is not None and ask(k, y):
                    if saved_steps[-1] != k:
                        save(k, y)
                    return result(k, "stop_when")
        finally:
            if bar is not None:
                bar.close()
    return result(k, "max_steps")


def _is_finite(X: np.ndarray) -> bool:
    """Whether every entry is finite, in one pass (the sum is NaN or inf otherwise)."""
    return math.isfinite(float(np.sum(X)))


def _energy_or_inf(value: Callable, X: np.ndarray) -> float:
    """E(X), or inf where X has overflowed (the energy's door check refuses such X)."""
    return float(value(X)) if _is_finite(X) else np.inf


def _gd_step(W: np.ndarray, gradient: Callable, lr: float) -> np.ndarray:
    """One GD step on the layers by backpropagation: 3(N - 1) products of d x d matrices.

    The forward pass keeps the partial products :math:`B_p = W_p\\cdots W_1`
    (:math:`X = B_N`); the backward pass accumulates
    :math:`A_{p+1}^T E'(X) = W_{p+1}^T\\cdots W_N^T E'(X)`.
    """
    N = W.shape[0]
    B = [W[0]]
    for p in range(1, N):
        B.append(W[p] @ B[-1])
    if not _is_finite(B[-1]):
        return np.full_like(W, np.nan)  # diverged: the energy's door check would refuse X
    G = np.asarray(gradient(B[-1]))
    out = np.empty_like(W)
    for p in range(N - 1, 0, -1):
        np.matmul(G, B[p - 1].T, out=out[p])
        G = W[p].T @ G
    out[0] = G
    out *= lr
    return np.subtract(W, out, out=out)


def _gd_step_layers(y: np.ndarray, widths: tuple[int, ...], gradient: Callable, lr: float):
    """:func:`_gd_step` for a packed network of general widths (the layers of ``y``, raveled
    and concatenated): the same backpropagation, layer by layer, into a packed result."""
    layers = unpack_layers(y, widths)
    forward = [layers[0]]
    for layer in layers[1:]:
        forward.append(layer @ forward[-1])
    if not _is_finite(forward[-1]):
        return np.full_like(y, np.nan)  # diverged: the energy's door check would refuse X
    G = np.asarray(gradient(forward[-1]))
    out = np.empty_like(y)
    grads = unpack_layers(out, widths)  # views of out
    for p in range(len(layers) - 1, 0, -1):
        np.matmul(G, forward[p - 1].T, out=grads[p])
        G = layers[p].T @ G
    grads[0][...] = G
    out *= lr
    return np.subtract(y, out, out=out)


def _gd_monitors(value, G0: np.ndarray) -> dict[str, Monitor]:
    def energy(t, W):
        return _energy_or_inf(value, end_to_end(W))

    out: dict[str, Monitor] = {"end_to_end": lambda t, W: end_to_end(W)}
    if value is not None:
        out["energy"] = energy
    out["moments"] = lambda t, W: moments(W)
    out["moment_drift"] = lambda t, W: np.linalg.norm(moments(W) - G0, axis=(-2, -1))
    return out


def _layers_monitors(value, G0: list[np.ndarray]) -> dict[str, Monitor]:
    """Default monitors of a network of general widths, functions of its list of layers."""

    def drift(t, W):
        return np.array([np.linalg.norm(g - g0) for g, g0 in zip(moments(W), G0, strict=True)])

    out: dict[str, Monitor] = {"end_to_end": lambda t, W: chain_product(W)}
    if value is not None:
        out["energy"] = lambda t, W: _energy_or_inf(value, chain_product(W))
    out["moment_drift"] = drift
    return out


def _descend(
    W0: np.ndarray,
    widths: tuple[int, ...] | None,
    gradient: Callable,
    value: Callable | None,
    lr: float,
    max_steps: int,
    stop_when: StopWhen | None,
    save_every: int,
    extra: dict[str, Monitor],
    progress: bool,
    desc: str,
) -> TrainingResult:
    """GD steps ``W <- W - lr * grad`` from a start validated by :func:`_check_network`: a
    stack (the fast path, :func:`_gd_step`) or packed layers of ``widths``, whose monitors
    and ``stop_when`` receive the list of layers."""
    if widths is None:
        monitors = _gd_monitors(value, moments(W0))
        monitors.update(extra)
        step = lambda W: _gd_step(W, gradient, lr)  # noqa: E731
        return _run(W0, step, lr, max_steps, stop_when, save_every, monitors, progress, desc)
    monitors = _layers_monitors(value, moments(unpack_layers(W0, widths)))
    monitors.update(extra)

    def on_layers(f):
        return lambda t, y: f(t, unpack_layers(y, widths))

    return _run(
        W0,
        lambda y: _gd_step_layers(y, widths, gradient, lr),
        lr,
        max_steps,
        None if stop_when is None else on_layers(stop_when),
        save_every,
        {name: on_layers(f) for name, f in monitors.items()},
        progress,
        f"{desc}, widths {widths}",
        widths,
    )


# --------------------------------------------------------------------------- public API


def gradient_descent(
    W0,
    energy,
    lr: float,
    max_steps: int,
    *,
    stop_when: StopWhen | None = None,
    save_every: int | None = None,
    monitors: Mapping[str, Monitor] | None = None,
    progress: bool | None = None,
    widths: Sequence[int] | None = None,
) -> TrainingResult:
    r"""Plain gradient descent on the layers: :math:`W \leftarrow W - \eta\nabla_W E(\phi(W))`.

    Starts anywhere (balanced or not); nothing is projected. The gradient is
    [G] eq. 3.6, computed by backpropagation (3(N - 1) matrix products per
    step; the end-to-end matrix is the last forward partial product).

    **General widths.** For ``W0`` given as a list or tuple of layers, ``W0[k-1]`` of
    shape :math:`(d_k, d_{k-1})` (widths :math:`(d_0, \dots, d_N)`), the same steps run on
    the layers, the energy acts on :math:`(d_N, d_0)` matrices (e.g. a
    :class:`~dln_manifolds.QuadraticEnergy` with a rectangular target, or a
    :class:`~dln_manifolds.RegressionEnergy` with inputs (d_0, n) and outputs (d_N, n)),
    and the result is a :class:`LayersTrainingResult` (states packed, ``final`` and
    ``layers(i)`` lists of layers). A list is always read as layers, also when they are
    square; a stacked ndarray (N, d, d) is the fast path for square networks.

    Parameters
    ----------
    W0 : array_like, shape (N, d, d), or a sequence of N arrays (d_k, d_{k-1})
        Start (real).
    energy : Energy or callable
        An :class:`~dln_manifolds.Energy` (``gradient(X)``, and ``value(X)`` for
        the ``"energy"`` monitor) or a callable ``X -> E'(X)``, acting on matrices of the
        shape (d_N, d_0) of the end-to-end matrix.
    lr : float
        Learning rate :math:`\eta > 0`.
    max_steps : int
        Number of steps (>= 1) unless ``stop_when`` stops earlier.
    stop_when : callable ``(t, W) -> bool``, optional
        Called at the start and after every step with ``t = steps * lr``; True
        stops (the state is saved). Exceptions propagate, with a note naming
        the step. ``W`` is a list of layers for a network given as a list.
    save_every : int, optional
        Save (and monitor) every k-th step; the last step is always saved.
        Default ``max(1, max_steps // 100)``.
    monitors : mapping of name to ``f(t, W)``, optional
        Extra monitors, added to (or replacing) the defaults
        ``"end_to_end"`` (d_N, d_0), ``"energy"`` (if the energy has ``value``) and
        ``"moment_drift"`` (N - 1,), the Frobenius norms :math:`|G_k(t) - G_k(0)|` of
        the drift of each moment :math:`G_k` (:func:`~dln_manifolds.moments`, of size
        :math:`d_k \times d_k`): conserved by the flow, they change by
        :math:`O(\eta^2)` per step and :math:`O(\eta\, t)` over a time t. For a stack
        also ``"moments"`` (N - 1, d, d); for a list of layers, whose moments have
        different sizes, compute them from the saved states,
        ``moments(result.layers(i))``.
    progress : bool, optional
        tqdm bar over the steps; default: only when stderr is a terminal.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    TrainingResult
        ``states`` has shape (n_saved, N, d, d); ``times = steps * lr``. For a list of
        layers a :class:`LayersTrainingResult`, ``states`` of shape (n_saved, P).

    Raises
    ------
    ValueError
        ``lr`` not positive and finite, ``max_steps`` or ``save_every`` < 1, ``W0``
        not a finite stack of square layers or sequence of chained layers, ``widths``
        disagreeing with ``W0``, ``energy`` of the wrong shape.
    TrainingDivergedError
        When the weights or the loss become NaN/inf (a ValueError; it names the
        step and holds the trajectory so far in ``.result``).
    """
    W0, widths = _check_network(W0, widths)
    gradient, value = _check_energy_shape(energy, _end_to_end_shape(W0, widths), "W0")
    lr, max_steps, save_every, extra, progress = _check_run(
        lr, max_steps, stop_when, save_every, monitors, progress
    )
    return _descend(
        W0,
        widths,
        gradient,
        value,
        lr,
        max_steps,
        stop_when,
        save_every,
        extra,
        progress,
        "gradient descent",
    )


def end_to_end_gradient_descent(
    X0,
    energy,
    depth,
    lr: float,
    max_steps: int,
    *,
    stop_when: StopWhen | None = None,
    save_every: int | None = None,
    monitors: Mapping[str, Monitor] | None = None,
    progress: bool | None = None,
) -> TrainingResult:
    r"""Discrete end-to-end update :math:`X \leftarrow X - \eta\,\mathcal{A}_{N,X}(E'(X))`.

    The update of Arora, Cohen and Hazan (2018), the explicit Euler scheme of
    the downstairs flow :func:`~dln_manifolds.flows.end_to_end_flow` ([G] eq.
    4.14, 4.19); one SVD per step (:func:`~dln_manifolds.depth_operator`),
    whatever the depth. From a balanced start its step agrees with the
    end-to-end matrix of a :func:`gradient_descent` step to :math:`O(\eta^2)`.

    For X0 of shape (m, n) = (d_N, d_0) (a network of general widths whose hidden widths
    are at least min(m, n)) the operator is the rectangular
    :math:`\mathcal{A}_{N,X}(Z) = \sum_{k=1}^N (XX^T)^{(N-k)/N} Z (X^TX)^{(k-1)/N}`
    (:class:`~dln_manifolds.DepthFrame`, docs/mathematics.rst, :ref:`math-widths`), and
    the step tracks :func:`gradient_descent` from a balanced lift
    ``balanced_point(X0, N, widths=...)`` ([ACH] Thm 1).

    Parameters
    ----------
    X0 : array_like, shape (d, d) or (m, n)
        Real start (any rank).
    energy : Energy or callable
        As in :func:`gradient_descent`, acting on matrices of the shape of ``X0``.
    depth : int or numpy.inf
        N >= 1 (``inf``: the rescaled limit :math:`\mathcal{A}_\infty`).
    lr, max_steps, stop_when, save_every, progress
        As in :func:`gradient_descent` (``stop_when(t, X)``).
    monitors : mapping, optional
        Extra monitors ``f(t, X)``, added to the defaults ``"energy"`` (if
        available) and ``"singular_values"`` (min(m, n),).

    Returns
    -------
    TrainingResult
        ``states`` has shape (n_saved, m, n).

    Raises
    ------
    ValueError, TypeError
        Bad arguments (named).
    TrainingDivergedError
        As in :func:`gradient_descent`.
    """
    X0 = as_array(X0, "X0", real=True, batch=True)
    if X0.ndim != 2:
        raise ValueError(f"X0 must be a matrix of shape (d_N, d_0), got shape {X0.shape}")
    depth = check_depth(depth)
    gradient, value = _check_energy_shape(energy, X0.shape, "X0")
    lr, max_steps, save_every, extra, progress = _check_run(
        lr, max_steps, stop_when, save_every, monitors, progress
    )
    merged: dict[str, Monitor] = {}
    if value is not None:
        merged["energy"] = lambda t, X: _energy_or_inf(value, X)
    merged["singular_values"] = lambda t, X: np.linalg.svd(X, compute_uv=False)
    merged.update(extra)

    def step(X):
        G = gradient(X)
        if not _is_finite(G):
            return np.full_like(X, np.nan)  # diverged: depth_operator would refuse G
        return X - lr * depth_operator(X, depth, G)

    return _run(
        X0,
        step,
        lr,
        max_steps,
        stop_when,
        save_every,
        merged,
        progress,
        f"end-to-end gradient descent (N={depth})",
    )


def sgd(
    W0,
    inputs,
    outputs,
    lr: float,
    max_steps: int,
    *,
    batch_size: int,
    seed=None,
    stop_when: StopWhen | None = None,
    save_every: int | None = None,
    monitors: Mapping[str, Monitor] | None = None,
    progress: bool | None = None,
    widths: Sequence[int] | None = None,
) -> TrainingResult:
    r"""Minibatch SGD on the regression loss :math:`\tfrac{1}{2n}|XA - B|^2`.

    The loss is :class:`~dln_manifolds.RegressionEnergy`. Each step uses the
    gradient of :math:`\tfrac{1}{2b}|XA_S - B_S|^2` over a batch S of
    ``batch_size`` samples. Batches are drawn without replacement within an
    epoch: every epoch draws a fresh permutation of the samples from the
    generator given by ``seed`` and cuts it into consecutive batches (an
    incomplete last batch is skipped, so every batch has ``batch_size``
    samples). With ``batch_size = n`` every step is the full gradient and the
    result is :func:`gradient_descent` on ``RegressionEnergy(inputs, outputs)``
    (no random numbers are drawn).

    Parameters
    ----------
    W0 : array_like, shape (N, d, d), or a sequence of N arrays (d_k, d_{k-1})
        As in :func:`gradient_descent` (general widths: a list of layers).
    inputs : array_like, shape (d_0, n)
        Input samples as columns (see :class:`RegressionEnergy`).
    outputs : array_like, shape (d_N, n)
        Target samples as columns.
    lr, max_steps, stop_when, save_every, monitors, progress, widths
        As in :func:`gradient_descent`; the ``"energy"`` monitor is the loss on
        all data.
    batch_size : int
        1 <= b <= n.
    seed : None, int, SeedSequence or numpy.random.Generator
        Source of the batches; the same seed gives the same trajectory.

    Returns
    -------
    TrainingResult
        A :class:`LayersTrainingResult` for a list of layers.

    Raises
    ------
    ValueError
        Also when the rows of ``inputs`` differ from the input width d_0 of the network
        or those of ``outputs`` from its output width d_N (naming the argument), or
        ``batch_size`` is out of range.
    TrainingDivergedError
        As in :func:`gradient_descent`.
    """
    W0, widths = _check_network(W0, widths)
    energy = RegressionEnergy(inputs, outputs)
    d_out, d_in = _end_to_end_shape(W0, widths)
    for name, rows, width in (
        ("inputs", energy.shape[1], d_in),
        ("outputs", energy.shape[0], d_out),
    ):
        if rows != width:
            what = "input width d_0" if name == "inputs" else "output width d_N"
            raise ValueError(
                f"{name} has {rows} rows but the {what} of W0 is {width} (the end-to-end "
                f"matrix of W0 is {d_out} x {d_in})"
            )
    lr, max_steps, save_every, extra, progress = _check_run(
        lr, max_steps, stop_when, save_every, monitors, progress
    )
    n = energy.n_samples
    batch_size = check_count(batch_size, "batch_size", integral=True)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the number of samples {n}, got {batch_size}")
    rng = as_generator(seed)

    if batch_size == n:
        gradient = energy.gradient
    else:
        per_epoch = n // batch_size
        state = {"order": None, "next": per_epoch}

        def gradient(X):
            if state["next"] == per_epoch:
                state["order"] = rng.permutation(n)
                state["next"] = 0
            i = state["next"]
            state["next"] = i + 1
            return energy.batch_gradient(X, state["order"][i * batch_size : (i + 1) * batch_size])

    return _descend(
        W0,
        widths,
        gradient,
        energy.value,
        lr,
        max_steps,
        stop_when,
        save_every,
        extra,
        progress,
        f"SGD (batch {batch_size})",
    )


def init_weights(
    d: int | None = None,
    depth: int | None = None,
    method: str = "gaussian",
    *,
    scale: float = 1.0,
    seed=None,
    widths: Sequence[int] | None = None,
) -> np.ndarray | list[np.ndarray]:
    r"""Random initial layers: a stack (N, d, d), or a list of layers of general widths.

    Parameters
    ----------
    d : int
        Layer size of a square network (omit it when giving ``widths``).
    depth : int
        Number of layers N >= 1 (optional with ``widths``; checked against it if given).
    method : {"gaussian", "orthogonal", "balanced"}
        * ``"gaussian"``: i.i.d. entries with fan-in scaling: layer k (shape
          :math:`(d_k, d_{k-1})`) has entries :math:`\mathcal{N}(0, \mathrm{scale}^2/d_{k-1})`,
          standard deviation ``scale / sqrt(d_{k-1})`` (``scale / sqrt(d)`` for square
          layers), so that :math:`E|W_kx|^2 = \mathrm{scale}^2 (d_k/d_{k-1})|x|^2`: every
          output coordinate has variance :math:`\mathrm{scale}^2|x|^2/d_{k-1}` (LeCun's
          convention; for square layers :math:`E|W_kx|^2 = \mathrm{scale}^2|x|^2`). A
          small ``scale`` gives the near-zero starts of Saxe et al. (2014) and Arora et
          al.; to use a per-entry standard deviation s instead, pass
          ``scale = s * sqrt(d)`` (square layers).
        * ``"orthogonal"``: ``scale`` times independent Haar-distributed orthogonal
          matrices; a rectangular layer :math:`(d_k, d_{k-1})` is semi-orthogonal, with
          orthonormal columns if :math:`d_k \ge d_{k-1}` and orthonormal rows otherwise
          (Haar on the Stiefel manifold: the Q factor of a Gaussian matrix with the signs
          of R's diagonal moved into Q). Balanced (:math:`G_k = 0`) when all widths are
          equal; with unequal widths the moments are
          :math:`\mathrm{scale}^2(P_k - P'_k)`, differences of orthogonal projections,
          in general not zero.
        * ``"balanced"``: the balanced initialization of Arora, Cohen, Golowich
          and Hu (2019): draw :math:`A` of shape :math:`(d_N, d_0)` with entries
          :math:`\mathcal{N}(0, \mathrm{scale}^2/d_0)`, :math:`A = U\Sigma V^T`, and set
          :math:`W_N = U\Sigma^{1/N}`, :math:`W_p = \Sigma^{1/N}`,
          :math:`W_1 = \Sigma^{1/N}V^T` (:func:`~dln_manifolds.balanced_point`, with
          ``widths`` for general widths), so :math:`\phi(W) = A` and all moments vanish.
          With ``widths``, every hidden width must be at least
          :math:`\min(d_0, d_N)` (the rank of A).
    scale : float
        Positive scale (see above).
    seed : None, int, SeedSequence or numpy.random.Generator
        Same seed, same weights. With ``widths = (d,) * (N + 1)`` the layers are those of
        the stack ``init_weights(d, N, method, seed=seed)`` (the same draws).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`: return a list of N layers, ``W[k-1]`` of shape
        :math:`(d_k, d_{k-1})`.

    Returns
    -------
    ndarray, shape (N, d, d), or, with ``widths``, list of N arrays

    Raises
    ------
    ValueError, TypeError
        Bad ``d``, ``depth``, ``scale``, ``method`` or ``widths`` (named, with the numbers),
        ``d`` given together with ``widths``, or a balanced start with a hidden width
        below :math:`\min(d_0, d_N)`.
    """
    scale = check_positive(scale, "scale")
    methods = ("gaussian", "orthogonal", "balanced")
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, got {method!r}")
    if widths is not None:
        return _init_layers(d, depth, method, scale, seed, widths)
    d = check_count(d, "d")
    d = int(d)
    N = check_finite_depth(depth)
    rng = as_generator(seed)
    std = scale / math.sqrt(d)
    if method == "gaussian":
        return std * rng.standard_normal((N, d, d))
    if method == "balanced":
        return balanced_point(std * rng.standard_normal((d, d)), N)
    return scale * haar_orthogonal(rng, d, (N,))


def _init_layers(d, depth, method: str, scale: float, seed, widths) -> list[np.ndarray]:
    """:func:`init_weights` with ``widths`` (validates ``d``, ``depth``, ``widths``)."""
    if d is not None:
        raise TypeError(
            f"give either d (square layers) or widths, not both: got d = {d!r} and "
            f"widths = {widths!r}"
        )
    widths = check_widths(widths, depth=None if depth is None else check_finite_depth(depth))
    N = len(widths) - 1
    rng = as_generator(seed)
    pairs = [(widths[k + 1], widths[k]) for k in range(N)]  # (d_out, d_in) of each layer
    if method == "gaussian":
        return [(scale / math.sqrt(n)) * rng.standard_normal((m, n)) for m, n in pairs]
    if method == "orthogonal":
        return [
            scale * haar_from_gaussian(rng.standard_normal((m, n)))
            if m >= n
            else scale * haar_from_gaussian(rng.standard_normal((n, m))).T
            for m, n in pairs
        ]
    r = min(widths[0], widths[-1])  # the rank of A (almost surely)
    narrow = [k for k in range(1, N) if widths[k] < r]
    if narrow:
        raise ValueError(
            f"a balanced start needs every hidden width at least min(d_0, d_N) = {r} (the "
            f"rank of its end-to-end matrix), but widths {widths} has widths[{narrow[0]}] = "
            f"d_{narrow[0]} = {widths[narrow[0]]}"
        )
    A = (scale / math.sqrt(widths[0])) * rng.standard_normal((widths[-1], widths[0]))
    return balanced_point(A, N, widths=widths)
