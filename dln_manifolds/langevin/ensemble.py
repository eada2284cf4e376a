r"""Sweeps over parameters and seeds, with resumable one-file-per-task results.

:func:`run_ensemble` maps a picklable task function over a list of parameter
dicts (e.g. :func:`sweep_grid` over d, N, beta, kappa, seed) with any
:class:`concurrent.futures.Executor` (serial when None; a thread or process
pool; a ``dask.distributed`` client, whose :meth:`get_executor` is used, for
many cores or machines: install the extra ``dln-manifolds[distributed]``).

Every finished task is written by the calling process to its own ``.npz``
file in ``directory``: first to a temporary name in the same directory, then
renamed with :func:`os.replace` (atomic on POSIX and Windows), so a file
either holds complete results or does not exist. Rerunning the same sweep
after an interruption skips every task whose file exists and runs only the
others. Results depend only on the parameters (each task seeds its own
Generator), so serial, pooled and distributed runs give identical files.

Example
-------
>>> from concurrent.futures import ProcessPoolExecutor
>>> tasks = sweep_grid(d=[2], depth=[2, 3], beta=[1.0], kappa=[0.5], seed=[0, 1])
>>> with ProcessPoolExecutor(2) as pool:                       # doctest: +SKIP
...     results = run_ensemble(langevin_task, tasks, "runs/", executor=pool)
>>> # with dask: client = dask.distributed.Client(); run_ensemble(..., executor=client)
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

__all__ = ["run_ensemble", "sweep_grid", "task_name", "langevin_task"]


def sweep_grid(**axes: Iterable) -> list[dict]:
    """Cartesian product of parameter values: ``sweep_grid(d=[2, 3], seed=range(4))``.

    Returns
    -------
    list of dict
        One dict per combination, in row-major order of the keyword arguments.
    """
    names = list(axes)
    values = [list(v) for v in axes.values()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def task_name(params: Mapping) -> str:
    """File stem for one task: readable ``key=value`` pairs plus a short hash of all of them."""
    items = sorted((str(k), _jsonable(v)) for k, v in params.items())
    text = json.dumps(items, default=repr)
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    readable = "_".join(f"{k}={v}" for k, v in items if isinstance(v, (int, float, str)))
    readable = re.sub(r"[^A-Za-z0-9=._+-]", "-", readable)[:80]
    return f"{readable}_{digest}" if readable else digest


def _write_atomic(path: Path, params: Mapping, result) -> None:
    if isinstance(result, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in result.items()}
    else:
        arrays = {"result": np.asarray(result)}
    if "params" in arrays:
        raise ValueError("a task result may not use the key 'params' (reserved)")
    arrays["params"] = np.array(
        json.dumps({str(k): _jsonable(v) for k, v in params.items()}, default=repr)
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files if k != "params"}
        out["params"] = json.loads(str(data["params"]))
    return out


def run_ensemble(
    task: Callable[..., object],
    params: Iterable[Mapping],
    directory,
    *,
    executor=None,
    progress: bool = False,
) -> dict[str, dict]:
    """Run ``task(**p)`` for every parameter dict p, one result file per task, resumably.

    Parameters
    ----------
    task : callable
        Module-level (picklable) function returning an array or a dict of
        arrays. It should seed its randomness from its parameters (e.g. a
        ``seed`` entry) so that results do not depend on where it runs.
    params : iterable of dict
        Keyword arguments of each task (see :func:`sweep_grid`). Names of the
        result files come from :func:`task_name`; duplicates run once.
    directory : str or path
        Results directory (created if needed). A task whose file exists is
        skipped: rerunning an interrupted sweep finishes it.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        None runs serially in this process. A dask client is used through
        ``client.get_executor()``.
    progress : bool, default False
        tqdm bar over the tasks still to run.

    Returns
    -------
    dict
        File stem -> loaded results (the task's arrays plus ``params``), for
        all tasks of the sweep.
    """
    if not callable(task):
        raise TypeError(f"task must be callable, got {type(task).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    todo: dict[str, Mapping] = {}
    names = []
    for p in params:
        if not isinstance(p, Mapping):
            raise TypeError(f"params must be an iterable of dicts, got an item {p!r}")
        name = task_name(p)
        names.append(name)
        if not (directory / f"{name}.npz").exists():
            todo.setdefault(name, dict(p))
    if executor is not None and not isinstance(executor, cf.Executor):
        get = getattr(executor, "get_executor", None)
        if not callable(get):
            raise TypeError(
                "executor must be a concurrent.futures.Executor or a dask.distributed.Client"
            )
        executor = get()
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress)
    try:
        if executor is None:
            for name, p in todo.items():
                _write_atomic(directory / f"{name}.npz", p, task(**p))
                bar.update()
        else:
            futures = {executor.submit(task, **p): name for name, p in todo.items()}
            for fut in cf.as_completed(futures):
                name = futures[fut]
                _write_atomic(directory / f"{name}.npz", todo[name], fut.result())
                bar.update()
    finally:
        bar.close()
    return {name: _load(directory / f"{name}.npz") for name in dict.fromkeys(names)}


def langevin_task(
    d: int,
    depth: int,
    beta: float,
    kappa: float,
    seed: int,
    *,
    sampler: str = "end_to_end",
    t_final: float = 1.0,
    dt: float = 0.01,
    n_paths: int = 100,
    scale: float = 1.0,
) -> dict:
    r"""A ready-made sweep task: sample from a random start, return end-point statistics.

    The start is ``scale`` times a Haar orthogonal d x d matrix drawn from the
    task's seed; E = 0.

    Parameters
    ----------
    d, depth : int
    beta, kappa : float
    seed : int
        Seeds both the start and the noise (``SeedSequence(seed)``).
    sampler : {"end_to_end", "balanced", "brownian"}
        :func:`end_to_end_langevin` ([G] eq. 12.12), :func:`balanced_langevin`
        (eq. 12.11, from the center of the fiber) or :func:`brownian_motion`
        (at inverse temperature beta / kappa).
    t_final, dt : float
    n_paths : int
    scale : float

    Returns
    -------
    dict
        ``singular_values`` (n_paths, d) of the end-to-end matrices at
        ``t_final`` and ``exit_times`` (n_paths,).
    """
    from .._checks import check_count
    from ..network import balanced_point
    from .balanced import balanced_langevin
    from .brownian import brownian_motion
    from .end_to_end import end_to_end_langevin

    d = check_count(d, "d")
    start_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    q, r = np.linalg.qr(np.random.default_rng(start_seed).standard_normal((d, d)))
    X0 = scale * q * np.sign(np.diag(r))
    common = dict(t_final=t_final, dt=dt, n_paths=n_paths, seed=noise_seed)
    if sampler == "end_to_end":
        res = end_to_end_langevin(X0, depth, beta, kappa, **common)
        X = res.final
    elif sampler == "balanced":
        res = balanced_langevin(balanced_point(X0, depth), beta, kappa, **common)
        X = res.final[:, -1]
        for p in range(depth - 2, -1, -1):
            X = X @ res.final[:, p]
    elif sampler == "brownian":
        if kappa <= 0:
            raise ValueError(
                "the brownian sampler needs kappa > 0 (inverse temperature beta/kappa)"
            )
        res = brownian_motion(X0, depth, beta / kappa, **common)
        X = res.final
    else:
        raise ValueError(f"sampler must be 'end_to_end', 'balanced' or 'brownian', got {sampler!r}")
    return {
        "singular_values": np.linalg.svd(X, compute_uv=False),
        "exit_times": res.exit_times,
    }
