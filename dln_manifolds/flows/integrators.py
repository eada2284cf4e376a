r"""Time integration of flows on manifolds embedded in Euclidean space.

The scheme is the *standard projection method* (Hairer, Lubich, Wanner,
Geometric Numerical Integration, section IV.4): one step of an explicit
Runge-Kutta method in the ambient space, followed by a smooth map ``restore``
that sends nearby points back onto the manifold and fixes its points. Because
the restore map fixes the manifold and is smooth, a method of order p stays of
order p, and the iterates lie on the manifold to rounding after any number of
steps (for instance: recompute the last layer so that the end-to-end matrix is
exactly X on the fiber, or the polar construction on the balanced manifold).

The velocity field must be defined (and smooth) in a neighbourhood of the
manifold, which holds for every flow in this package: the fiber projection,
the lifted gradient and the depth operator are all defined off the manifold.

References
----------
- [HLW] E. Hairer, C. Lubich and G. Wanner, *Geometric Numerical Integration*, Springer
  (2006).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .._checks import as_array, check_count, check_positive

__all__ = ["FlowResult", "integrate_flow", "TABLEAUS"]


@dataclass(frozen=True)
class _Tableau:
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    b_low: tuple[float, ...] | None = None  # embedded lower-order weights


TABLEAUS: dict[str, _Tableau] = {
    "euler": _Tableau(a=((),), b=(1.0,), c=(0.0,), order=1),
    "heun": _Tableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2),
    "rk4": _Tableau(
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        c=(0.0, 0.5, 0.5, 1.0),
        order=4,
    ),
    # Dormand-Prince 5(4), used for adaptive steps (FSAL not exploited).
    "dopri5": _Tableau(
        a=(
            (),
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
        c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        order=5,
        b_low=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    ),
}


@dataclass
class FlowResult:
    """Output of :func:`integrate_flow`.

    Attributes
    ----------
    times : ndarray, shape (n,)
        Saved times, starting at 0 and ending at ``t_final``.
    states : ndarray, shape (n, ...)
        Saved states (copies).
    monitors : dict of str to ndarray
        Each monitored quantity at the saved times, stacked along axis 0.
    n_steps : int
        Accepted steps.
    n_rejected : int
        Rejected steps (adaptive mode only).
    """

    times: np.ndarray
    states: np.ndarray
    monitors: dict[str, np.ndarray] = field(default_factory=dict)
    n_steps: int = 0
    n_rejected: int = 0

    @property
    def final(self) -> np.ndarray:
        """The state at ``t_final``."""
        return self.states[-1]

    def save(self, path) -> None:
        """Write the result to an ``.npz`` file (no pickle: it loads with ``allow_pickle=False``).

        Every array field and monitor is stored bit for bit; scalar fields
        (int, float, bool, str, None) go into a JSON header. Subclasses with
        more fields (e.g. :class:`dln_manifolds.training.TrainingResult`) are
        saved the same way.

        Parameters
        ----------
        path : str or os.PathLike
            File name, used as given (no ``.npz`` suffix is added).

        Raises
        ------
        TypeError
            If a field or monitor holds something other than a numeric array or
            a plain scalar (e.g. objects that would need pickle).
        """
        save_result(self, path)

    @classmethod
    def load(cls, path) -> FlowResult:
        """Read a result written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        FlowResult
            An instance of the class that saved it (``cls`` or a subclass of it).

        Raises
        ------
        ValueError
            If the file was not written by :meth:`save`, or by a class that is
            not ``cls`` or one of its (imported) subclasses.
        """
        return load_result(cls, path)


def _rk_step(velocity, t, y, h, tab: _Tableau):
    ks = []
    for i, ci in enumerate(tab.c):
        yi = y
        for aij, kj in zip(tab.a[i], ks, strict=False):
            if aij != 0.0:
                yi = yi + (h * aij) * kj
        ks.append(np.asarray(velocity(t + ci * h, yi)))
    incr = sum((h * bi) * k for bi, k in zip(tab.b, ks, strict=True) if bi != 0.0)
    err = None
    if tab.b_low is not None:
        err = sum(
            (h * (bi - bl)) * k for bi, bl, k in zip(tab.b, tab.b_low, ks, strict=True) if bi != bl
        )
    return y + incr, err


def integrate_flow(
    velocity: Callable[[float, np.ndarray], np.ndarray],
    y0,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    restore: Callable[[np.ndarray], np.ndarray] | None = None,
    adaptive: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 1_000_000,
    save_every: int = 1,
    monitors: Mapping[str, Callable[[float, np.ndarray], object]] | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> FlowResult:
    r"""Integrate :math:`\dot y = v(t, y)` from 0 to ``t_final`` by a projected Runge-Kutta method.

    Parameters
    ----------
    velocity : callable ``(t, y) -> ndarray``
        Velocity field, defined in a neighbourhood of the manifold.
    y0 : array_like
        Initial state (any shape); never modified.
    t_final : float
        Final time, > 0.
    dt : float, optional
        Step size (fixed mode) or initial step size (adaptive mode). Default
        ``t_final / 100``. In fixed mode the last step is shortened to land on
        ``t_final``.
    method : {"euler", "heun", "rk4", "dopri5"}
        Runge-Kutta tableau. Adaptive mode requires ``"dopri5"`` (the default
        switches to it when ``adaptive=True``).
    restore : callable ``y -> y``, optional
        Smooth map onto the manifold that fixes its points, applied after each
        step (standard projection method). ``None`` for flows in flat space.
    adaptive : bool
        Error-controlled step size with the embedded 4th-order solution
        (mixed tolerance ``atol + rtol |y|`` in the max norm).
    rtol, atol : float
        Tolerances of the adaptive mode.
    max_steps : int
        Safety bound on the number of attempted steps.
    save_every : int
        Save every k-th accepted step (the final state is always saved).
    monitors : mapping of name to callable ``(t, y) -> array_like``, optional
        Quantities recorded at every saved state.
    progress : bool
        Show a tqdm progress bar over simulated time.
    desc : str, optional
        Progress bar label.

    Returns
    -------
    FlowResult
    """
    t_final = check_positive(t_final, "t_final")
    dt = None if dt is None else check_positive(dt, "dt")
    save_every = check_count(save_every, "save_every")
    y0 = as_array(y0, "y0", batch=True, real=False)
    if adaptive and method == "rk4":
        method = "dopri5"
    if method not in TABLEAUS:
        raise ValueError(f"method must be one of {sorted(TABLEAUS)}, got {method!r}")
    tab = TABLEAUS[method]
    if adaptive and tab.b_low is None:
        raise ValueError(
            f"adaptive stepping needs an embedded method such as 'dopri5', not {method!r}"
        )
    h = t_final / 100 if dt is None else float(dt)
    if not np.isfinite(h) or h <= 0:
        raise ValueError(f"dt must be positive and finite, got {dt}")
    if int(save_every) < 1:
        raise ValueError(f"save_every must be >= 1, got {save_every}")
    monitors = dict(monitors or {})

    y = np.array(y0, copy=True)
    if not np.all(np.isfinite(y)):
        raise ValueError("y0 contains NaN or Inf entries")
    times, states = [0.0], [y.copy()]
    records = {name: [np.asarray(f(0.0, y))] for name, f in monitors.items()}

    t, n_steps, n_rejected, attempts = 0.0, 0, 0, 0
    bar = tqdm(
        total=t_final,
        desc=desc or method,
        disable=not progress,
        leave=False,
        bar_format="{l_bar}{bar}| t={n:.3g}/{total:.3g} [{elapsed}<{remaining}]",
    )
    try:
        while t < t_final * (1 - 1e-14):
            attempts += 1
            if attempts > max_steps:
                raise RuntimeError(f"integrate_flow exceeded max_steps={max_steps} at t={t:.6g}")
            step = min(h, t_final - t)
            y_new, err = _rk_step(velocity, t, y, step, tab)
            if adaptive:
                scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
                err_norm = float(np.max(np.abs(err) / scale))
                if not np.isfinite(err_norm) or err_norm > 1.0:
                    n_rejected += 1
                    h = step * max(0.2, 0.9 * (err_norm if np.isfinite(err_norm) else 1e6) ** -0.2)
                    continue
                h = step * min(5.0, 0.9 * max(err_norm, 1e-10) ** -0.2)
            if restore is not None:
                y_new = restore(y_new)
            if not np.all(np.isfinite(y_new)):
                raise FloatingPointError(f"the flow produced NaN/Inf at t={t + step:.6g}")
            t += step
            y = y_new
            n_steps += 1
            bar.update(step)
            last = t >= t_final * (1 - 1e-14)
            if n_steps % int(save_every) == 0 or last:
                times.append(t)
                states.append(y.copy())
                for name, f in monitors.items():
                    records[name].append(np.asarray(f(t, y)))
    finally:
        bar.close()
    return FlowResult(
        times=np.asarray(times),
        states=np.stack(states),
        monitors={k: np.stack(v) for k, v in records.items()},
        n_steps=n_steps,
        n_rejected=n_rejected,
    )


def integrate_with_defaults(
    velocity: Callable[[float, np.ndarray], np.ndarray],
    y0,
    t_final: float,
    *,
    defaults: Mapping[str, Callable[[float, np.ndarray], object]],
    monitors: Mapping[str, Callable[[float, np.ndarray], object]] | None = None,
    **options,
) -> FlowResult:
    """:func:`integrate_flow` with default monitors that the caller's ``monitors`` extend.

    The shared driver of the flows in :mod:`dln_manifolds.flows`: the monitors
    are ``defaults`` (in their order) updated by ``monitors`` (a user entry with
    the same name replaces the default); ``options`` are passed on to
    :func:`integrate_flow` (``dt``, ``method``, ``restore``, ``adaptive``,
    ``save_every``, ``progress``, ``desc``, ...).
    """
    merged = dict(defaults)
    merged.update(monitors or {})
    return integrate_flow(velocity, y0, t_final, monitors=merged, **options)


# --- FlowResult.save / FlowResult.load (npz without pickle) ---
_RESULT_FORMAT = "dln_manifolds.FlowResult"


def save_result(result: FlowResult, path) -> None:
    """Write a :class:`FlowResult` (or subclass) to ``path`` as npz; see :meth:`FlowResult.save`."""
    import dataclasses
    import json
    import numbers

    cls = type(result)
    meta = {
        "format": _RESULT_FORMAT,
        "version": 1,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "scalars": {},
        "arrays": [],
        "dicts": {},
    }
    arrays = {}

    def put(key, value, what):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"cannot save {what}: it is not a numeric array (dtype object)")
        arrays[key] = arr

    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray):
            put(f"a_{f.name}", value, f"field {f.name!r}")
            meta["arrays"].append(f.name)
        elif isinstance(value, Mapping):
            keys = []
            for i, (k, v) in enumerate(value.items()):
                put(f"d_{f.name}_{i}", v, f"{f.name}[{k!r}]")
                keys.append(str(k))
            meta["dicts"][f.name] = keys
        elif value is None or isinstance(value, (bool, str)):
            meta["scalars"][f.name] = value
        elif isinstance(value, numbers.Integral):
            meta["scalars"][f.name] = int(value)
        elif isinstance(value, numbers.Real):
            meta["scalars"][f.name] = float(value)
        else:
            raise TypeError(f"cannot save field {f.name!r} of type {type(value).__name__}")
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_result(cls: type, path) -> FlowResult:
    """Read a result written by :func:`save_result`; see :meth:`FlowResult.load`."""
    import json

    data = np.load(path, allow_pickle=False)
    if not hasattr(data, "files"):  # a plain .npy array
        raise ValueError(f"{path!s} was not written by FlowResult.save (not an npz archive)")
    with data:
        if "__meta__" not in data.files:
            raise ValueError(f"{path!s} was not written by FlowResult.save (no header)")
        meta = json.loads(str(data["__meta__"]))
        if meta.get("format") != _RESULT_FORMAT:
            raise ValueError(f"{path!s} was not written by FlowResult.save")
        if meta.get("version") != 1:
            raise ValueError(f"{path!s}: unsupported FlowResult file version {meta.get('version')}")
        target = None
        todo = [cls]
        while todo:
            c = todo.pop()
            if f"{c.__module__}:{c.__qualname__}" == meta["class"]:
                target = c
                break
            todo.extend(c.__subclasses__())
        if target is None:
            raise ValueError(
                f"{path!s} holds a {meta['class']}, which is not {cls.__qualname__} or one of "
                "its subclasses (import the module that defines it first)"
            )
        kwargs = {name: data[f"a_{name}"] for name in meta["arrays"]}
        for name, keys in meta["dicts"].items():
            kwargs[name] = {k: data[f"d_{name}_{i}"] for i, k in enumerate(keys)}
        kwargs.update(meta["scalars"])
    return target(**kwargs)
