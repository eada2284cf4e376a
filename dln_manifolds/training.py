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
    as_generator,
    as_matrix,
    as_stack,
    check_count,
    check_depth,
    check_finite_depth,
    check_positive,
)
from ._linalg import haar_orthogonal
from .depth_metric import depth_operator
from .energies import RegressionEnergy, energy_functions
from .flows.integrators import FlowResult
from .network import balanced_point, end_to_end, moments

__all__ = [
    "TrainingResult",
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


def _check_weights(W0, name: str = "W0") -> np.ndarray:
    """A real stack (N, d, d); a sequence of layers is accepted if they are all d x d."""
    if isinstance(W0, Sequence) and not isinstance(W0, (str, bytes)):
        shapes = [np.shape(w) for w in W0]
        if any(len(s) != 2 for s in shapes):
            raise ValueError(f"{name} must be a sequence of 2-D layers, got shapes {shapes}")
        if len(set(shapes)) > 1 or any(s[0] != s[1] for s in shapes):
            raise ValueError(
                f"{name} has layers of shapes {shapes}: only square layers of one size d x d "
                "are supported for now (general widths are not implemented yet)"
            )
        W0 = np.stack([np.asarray(w) for w in W0]) if shapes else np.zeros((0, 0, 0))
    elif np.ndim(W0) == 3 and np.shape(W0)[1] != np.shape(W0)[2]:
        raise ValueError(
            f"{name} has non-square layers of shape {np.shape(W0)[1:]}: only square layers "
            "(N, d, d) are supported for now (general widths are not implemented yet)"
        )
    return as_stack(W0, name, real=True)


def _check_energy_size(energy, d: int, what: str):
    gradient, value = energy_functions(energy)
    ed = getattr(energy, "d", None)
    if ed is not None and ed != d:
        raise ValueError(f"energy acts on {ed} x {ed} matrices but {what} has d = {d}")
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
) -> TrainingResult:
    """Iterate ``y <- step(y)``; save and monitor every ``save_every`` steps (and the last)."""
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
        return TrainingResult(
            times=np.asarray(times, dtype=np.float64),
            states=np.stack(states),
            monitors={k: np.stack(v) for k, v in records.items()},
            n_steps=n,
            lr=lr,
            stopped=stopped,
        )

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


def _gd_monitors(value, G0: np.ndarray) -> dict[str, Monitor]:
    def energy(t, W):
        return _energy_or_inf(value, end_to_end(W))

    out: dict[str, Monitor] = {"end_to_end": lambda t, W: end_to_end(W)}
    if value is not None:
        out["energy"] = energy
    out["moments"] = lambda t, W: moments(W)
    out["moment_drift"] = lambda t, W: np.linalg.norm(moments(W) - G0, axis=(-2, -1))
    return out


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
) -> TrainingResult:
    r"""Plain gradient descent on the layers: :math:`W \leftarrow W - \eta\nabla_W E(\phi(W))`.

    Starts anywhere (balanced or not); nothing is projected. The gradient is
    [G] eq. 3.6, computed by backpropagation (3(N - 1) matrix products per
    step; the end-to-end matrix is the last forward partial product).

    Parameters
    ----------
    W0 : array_like, shape (N, d, d), or a sequence of N arrays (d, d)
        Start (real). Layers of different sizes are not supported yet.
    energy : Energy or callable
        An :class:`~dln_manifolds.Energy` (``gradient(X)``, and ``value(X)`` for
        the ``"energy"`` monitor) or a callable ``X -> E'(X)``.
    lr : float
        Learning rate :math:`\eta > 0`.
    max_steps : int
        Number of steps (>= 1) unless ``stop_when`` stops earlier.
    stop_when : callable ``(t, W) -> bool``, optional
        Called at the start and after every step with ``t = steps * lr``; True
        stops (the state is saved). Exceptions propagate, with a note naming
        the step.
    save_every : int, optional
        Save (and monitor) every k-th step; the last step is always saved.
        Default ``max(1, max_steps // 100)``.
    monitors : mapping of name to ``f(t, W)``, optional
        Extra monitors, added to (or replacing) the defaults
        ``"end_to_end"`` (d, d), ``"energy"`` (if the energy has ``value``),
        ``"moments"`` (N - 1, d, d) (:func:`~dln_manifolds.moments`) and
        ``"moment_drift"`` (N - 1,), the Frobenius norms
        :math:`|G_k(t) - G_k(0)|`, which are :math:`O(\eta\, t)`.
    progress : bool, optional
        tqdm bar over the steps; default: only when stderr is a terminal.

    Returns
    -------
    TrainingResult
        ``states`` has shape (n_saved, N, d, d); ``times = steps * lr``.

    Raises
    ------
    ValueError
        ``lr`` not positive and finite, ``max_steps`` or ``save_every`` < 1, ``W0``
        not a finite stack of square layers, ``energy`` of the wrong size.
    TrainingDivergedError
        When the weights or the loss become NaN/inf (a ValueError; it names the
        step and holds the trajectory so far in ``.result``).
    """
    W0 = _check_weights(W0, "W0")
    gradient, value = _check_energy_size(energy, W0.shape[1], "W0")
    lr, max_steps, save_every, extra, progress = _check_run(
        lr, max_steps, stop_when, save_every, monitors, progress
    )
    merged = _gd_monitors(value, moments(W0))
    merged.update(extra)
    return _run(
        W0,
        lambda W: _gd_step(W, gradient, lr),
        lr,
        max_steps,
        stop_when,
        save_every,
        merged,
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

    Parameters
    ----------
    X0 : array_like, shape (d, d)
        Real start (any rank).
    energy : Energy or callable
        As in :func:`gradient_descent`.
    depth : int or numpy.inf
        N >= 1 (``inf``: the rescaled limit :math:`\mathcal{A}_\infty`).
    lr, max_steps, stop_when, save_every, progress
        As in :func:`gradient_descent` (``stop_when(t, X)``).
    monitors : mapping, optional
        Extra monitors ``f(t, X)``, added to the defaults ``"energy"`` (if
        available) and ``"singular_values"`` (d,).

    Returns
    -------
    TrainingResult
        ``states`` has shape (n_saved, d, d).

    Raises
    ------
    ValueError, TypeError
        Bad arguments (named).
    TrainingDivergedError
        As in :func:`gradient_descent`.
    """
    X0 = as_matrix(X0, "X0", real=True)
    depth = check_depth(depth)
    gradient, value = _check_energy_size(energy, X0.shape[0], "X0")
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
    W0 : array_like, shape (N, d, d)
    inputs, outputs : array_like, shape (d, n)
        Samples as columns (see :class:`RegressionEnergy`).
    lr, max_steps, stop_when, save_every, monitors, progress
        As in :func:`gradient_descent`; the ``"energy"`` monitor is the loss on
        all data.
    batch_size : int
        1 <= b <= n.
    seed : None, int, SeedSequence or numpy.random.Generator
        Source of the batches; the same seed gives the same trajectory.

    Returns
    -------
    TrainingResult

    Raises
    ------
    ValueError
        Also when the data's d differs from the network's (naming ``inputs``),
        or ``batch_size`` is out of range.
    TrainingDivergedError
        As in :func:`gradient_descent`.
    """
    W0 = _check_weights(W0, "W0")
    energy = RegressionEnergy(inputs, outputs)
    d = W0.shape[1]
    if energy.d != d:
        raise ValueError(
            f"inputs and outputs have d = {energy.d} rows but the layers of W0 are {d} x {d}"
        )
    lr, max_steps, save_every, extra, progress = _check_run(
        lr, max_steps, stop_when, save_every, monitors, progress
    )
    n = energy.n_samples
    batch_size = check_count(batch_size, "batch_size", integral=True)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the number of samples {n}, got {batch_size}")
    rng = as_generator(seed)
    merged = _gd_monitors(energy.value, moments(W0))
    merged.update(extra)

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

    return _run(
        W0,
        lambda W: _gd_step(W, gradient, lr),
        lr,
        max_steps,
        stop_when,
        save_every,
        merged,
        progress,
        f"SGD (batch {batch_size})",
    )


def init_weights(
    d: int,
    depth: int,
    method: str = "gaussian",
    *,
    scale: float = 1.0,
    seed=None,
) -> np.ndarray:
    r"""Random initial layers, shape (N, d, d).

    Parameters
    ----------
    d : int
        Layer size.
    depth : int
        Number of layers N >= 1.
    method : {"gaussian", "orthogonal", "balanced"}
        * ``"gaussian"``: i.i.d. entries :math:`\mathcal{N}(0, \mathrm{scale}^2/d)`,
          i.e. standard deviation ``scale / sqrt(d)`` (fan-in scaling, so that
          :math:`E|W_px|^2 = \mathrm{scale}^2|x|^2`). A small ``scale`` gives the
          near-zero starts of Saxe et al. (2014) and Arora et al.; to use a
          per-entry standard deviation s instead, pass ``scale = s * sqrt(d)``.
        * ``"orthogonal"``: ``scale`` times independent Haar-orthogonal matrices
          (balanced when all layers are scaled alike: :math:`G_k = 0`).
        * ``"balanced"``: the balanced initialization of Arora, Cohen, Golowich
          and Hu (2019): draw :math:`A` with entries
          :math:`\mathcal{N}(0, \mathrm{scale}^2/d)`, :math:`A = U\Sigma V^T`, and set
          :math:`W_N = U\Sigma^{1/N}`, :math:`W_p = \Sigma^{1/N}`,
          :math:`W_1 = \Sigma^{1/N}V^T` (:func:`~dln_manifolds.balanced_point`),
          so :math:`\phi(W) = A` and all moments vanish.
    scale : float
        Positive scale (see above).
    seed : None, int, SeedSequence or numpy.random.Generator
        Same seed, same weights.

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    d = check_count(d, "d")
    d = int(d)
    N = check_finite_depth(depth)
    scale = check_positive(scale, "scale")
    methods = ("gaussian", "orthogonal", "balanced")
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, got {method!r}")
    rng = as_generator(seed)
    std = scale / math.sqrt(d)
    if method == "gaussian":
        return std * rng.standard_normal((N, d, d))
    if method == "balanced":
        return balanced_point(std * rng.standard_normal((d, d)), N)
    return scale * haar_orthogonal(rng, d, (N,))
