r"""Sweeps over parameters and seeds, with resumable one-file-per-task results.

:func:`run_ensemble` maps a picklable task function over a list of parameter
dicts (e.g. :func:`sweep_grid` over d, N, beta, kappa, seed) with any
:class:`concurrent.futures.Executor` (serial when None; a thread or process
pool; a ``dask.distributed`` client, whose :meth:`get_executor` is used, for
many cores or machines: install the extra ``dln-manifolds[distributed]``).

Every finished task is written by the calling process to its own
``<task_name>.npz`` file in ``directory``: first to a temporary name in the
same directory, then renamed with :func:`os.replace` (atomic on POSIX and
Windows), so a file either holds complete results or does not exist.
Rerunning the same sweep after an interruption (even a SIGKILL) reuses every
valid result file and runs only the other tasks. Results depend only on the
parameters (each task seeds its own Generator), so serial, pooled and
distributed runs give identical files.

A result file is reused only after checks (its parameters and the CRC of its
arrays), and several sweeps may write into one directory at the same time,
sharing the work: the Notes of :func:`run_ensemble` state the contract.

Example
-------
>>> from concurrent.futures import ProcessPoolExecutor
>>> tasks = sweep_grid(d=[2], depth=[2, 3], beta=[1.0], kappa=[0.5], seed=[0, 1])
>>> with ProcessPoolExecutor(2) as pool:                       # doctest: +SKIP
...     results = run_ensemble(langevin_task, tasks, "runs/", executor=pool)
>>> # with dask: client = dask.distributed.Client(); run_ensemble(..., executor=client)

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import hashlib
import itertools
import json
import os
import re
import secrets
import socket
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

__all__ = [
    "run_ensemble",
    "sweep_grid",
    "task_name",
    "langevin_task",
    "ResultDirectoryError",
    "ResultFileWarning",
]


class ResultFileWarning(RuntimeWarning):
    """A result file under a task's name was not a valid result of that task; it is recomputed."""


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


def _params_json(params: Mapping) -> str:
    """The parameters as stored in a result file."""
    return json.dumps({str(k): _jsonable(v) for k, v in params.items()}, default=repr)


def _canonical(text: str) -> str:
    """Key-sorted JSON of stored parameters, for comparing a file with a task."""
    return json.dumps(json.loads(text), sort_keys=True)


# --------------------------------------------------------------------------- result files

# what reading a damaged or foreign file raises (not MemoryError: a valid file may be large)
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)
_SHORT = 200


def _short(text: str) -> str:
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def _write_atomic(path: Path, params: Mapping, result, token: str) -> None:
    if isinstance(result, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in result.items()}
    else:
        arrays = {"result": np.asarray(result)}
    if "params" in arrays:
        raise ValueError("a task result may not use the key 'params' (reserved)")
    for key, arr in arrays.items():
        if arr.dtype.hasobject:
            raise ValueError(
                f"task result {key!r} has dtype object; results are stored without pickle, "
                "so return numeric or string arrays"
            )
    arrays["params"] = np.array(_params_json(params))
    tmp = path.with_name(f".{path.stem}~{token}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _read_result(path: Path, expected: str) -> dict | str | None:
    """Loaded results if ``path`` is a valid result of the task, None if absent, else why not."""
    try:
        fh = open(path, "rb")  # opened here: np.load leaks its handle when the zip is broken
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    with fh:
        try:
            data = np.load(fh, allow_pickle=False)
        except _READ_ERRORS as exc:
            return f"cannot be read ({type(exc).__name__}: {exc})"
        if not isinstance(data, np.lib.npyio.NpzFile):
            return "is not an .npz archive"
        try:
            with data:  # reading a member to its end checks its CRC-32
                arrays = {k: data[k] for k in data.files}
        except _READ_ERRORS as exc:
            return f"is corrupt ({type(exc).__name__}: {exc})"
    stored = arrays.pop("params", None)
    if stored is None or stored.ndim != 0 or stored.dtype.kind != "U":
        return "holds no task parameters"
    try:
        params = json.loads(str(stored))
        same = _canonical(str(stored)) == expected
    except ValueError:
        return "holds unreadable task parameters"
    if not same:
        theirs, ours = _short(_canonical(str(stored))), _short(expected)
        return f"holds the results of another task (stored parameters {theirs}, this task {ours})"
    arrays["params"] = params
    return arrays


def _reject(path: Path, reason: str) -> None:
    aside = path.with_name(path.name + ".rejected")
    os.replace(path, aside)
    warnings.warn(
        f"run_ensemble: result file {str(path)!r} {reason}; moved it to {aside.name!r} and "
        "recomputing the task",
        ResultFileWarning,
        stacklevel=4,
    )


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- locks and owners

_HELD_FDS: set[int] = set()  # lock descriptors of this process, closed in forked children
_WATCHDOG = {"ppid": None, "lock": threading.Lock()}


def _after_fork_in_child() -> None:
    for fd in list(_HELD_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_FDS.clear()
    _WATCHDOG["ppid"] = None
    _WATCHDOG["lock"] = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            return False
        return True
    os.lseek(fd, 0, os.SEEK_SET)  # pragma: no cover - Windows
    try:  # pragma: no cover
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # pragma: no cover
        return False
    return True  # pragma: no cover


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while not _try_lock(fd):  # pragma: no cover - Windows
        time.sleep(0.005)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    os.lseek(fd, 0, os.SEEK_SET)  # pragma: no cover - Windows
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # pragma: no cover


_TOKEN = r"[A-Za-z0-9-]+"
_OWNER_RE = re.compile(rf"\.owner~({_TOKEN})\.lock")
_TMP_RE = re.compile(rf"\.[^~]+~({_TOKEN})\.tmp")
_LEGACY_TMP_RE = re.compile(r"\.[^~]+\.[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp, no owner
_LEGACY_TMP_AGE = 600.0  # seconds


class _Owner:
    """One sweep into a directory: its lock, its claims, the cleanup of dead owners' files."""

    def __init__(self, directory: Path):
        host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
        self.dir = directory
        self.token = f"{host}-{os.getpid()}-{secrets.token_hex(4)}"
        self.path = directory / f".owner~{self.token}.lock"
        self.fd: int | None = None
        self.claims: set[str] = set()

    @contextmanager
    def mutex(self) -> Iterator[None]:
        fd = os.open(self.dir / ".sweep.lock", os.O_RDWR | os.O_CREAT, 0o666)
        _HELD_FDS.add(fd)
        try:
            _lock(fd)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            _HELD_FDS.discard(fd)
            os.close(fd)

    def register(self) -> None:
        with self.mutex():
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            _HELD_FDS.add(fd)
            self.fd = fd
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
            # owner files are created and probed only under the mutex: nobody holds this one
            if not _try_lock(fd):
                raise RuntimeError(f"could not lock the new owner file {str(self.path)!r}")
            self.clean()

    def close(self) -> None:
        if self.fd is None:
            return
        try:
            with self.mutex():
                for name in list(self.claims):
                    self._drop_claim(name)
                _unlink(self.path)
        finally:
            _HELD_FDS.discard(self.fd)
            os.close(self.fd)  # drops the lock
            self.fd = None

    def alive(self, token: str, cache: dict[str, bool]) -> bool:
        """Whether the owner ``token`` is running (call under the mutex)."""
        if token == self.token:
            return True
        if not re.fullmatch(_TOKEN, token):
            return False
        if token not in cache:
            try:
                fd = os.open(self.dir / f".owner~{token}.lock", os.O_RDWR)
            except FileNotFoundError:
                cache[token] = False
            except OSError:  # e.g. another user's file: assume it is running
                cache[token] = True
            else:
                try:
                    cache[token] = not _try_lock(fd)
                    if not cache[token]:
                        _unlock(fd)
                finally:
                    os.close(fd)
        return cache[token]

    def clean(self) -> None:
        """Remove the owner files, claims and temporaries of dead owners (call under the mutex)."""
        cache: dict[str, bool] = {}
        names = [e.name for e in os.scandir(self.dir) if e.name.startswith(".")]
        for name in names:
            m = _OWNER_RE.fullmatch(name)
            if m and not self.alive(m[1], cache):
                _unlink(self.dir / name)
        now = time.time()
        for name in names:
            m = _TMP_RE.fullmatch(name)
            if m and not self.alive(m[1], cache):
                _unlink(self.dir / name)
            elif name.endswith(".claim") and "~" not in name:
                try:
                    holder = (self.dir / name).read_text().strip()
                except (FileNotFoundError, IsADirectoryError):
                    continue
                if not self.alive(holder, cache):  # e.g. killed between its rename and release
                    _unlink(self.dir / name)
            elif m is None and _LEGACY_TMP_RE.fullmatch(name):
                try:
                    if now - os.stat(self.dir / name).st_mtime > _LEGACY_TMP_AGE:
                        _unlink(self.dir / name)
                except FileNotFoundError:
                    pass

    def claim(self, name: str) -> bool:
        """Claim a task; False if a live owner holds it."""
        path = self.dir / f".{name}.claim"
        with self.mutex():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = path.read_text().strip()
                if self.alive(holder, {}):
                    return False
                os.unlink(path)  # its owner died: clean up after it and take the task over
                self.clean()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.token)
            self.claims.add(name)
        return True

    def release(self, name: str) -> None:
        with self.mutex():
            self._drop_claim(name)

    def _drop_claim(self, name: str) -> None:
        path = self.dir / f".{name}.claim"
        try:
            if path.read_text().strip() == self.token:
                os.unlink(path)
        except FileNotFoundError:
            pass
        self.claims.discard(name)


# --------------------------------------------------------------------------- workers


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(0.1)
        if os.getppid() != ppid:  # the parent died: this worker was reparented
            os._exit(1)


def _call_in_worker(task: Callable[..., object], params: dict):
    """Run a task in a process-pool worker that ends itself when its parent process dies."""
    with _WATCHDOG["lock"]:
        if _WATCHDOG["ppid"] is None:
            _WATCHDOG["ppid"] = os.getppid()
            threading.Thread(
                target=_watch_parent, args=(_WATCHDOG["ppid"],), name="parent-watchdog", daemon=True
            ).start()
    return task(**params)


def _resolve_executor(executor):
    """The executor to submit to and how many tasks to keep claimed and submitted at once."""
    if executor is None:
        return None, 1
    if not isinstance(executor, cf.Executor):
        get = getattr(executor, "get_executor", None)
        if not callable(get):
            raise TypeError(
                "executor must be a concurrent.futures.Executor or a dask.distributed.Client"
            )
        try:
            workers = sum(executor.nthreads().values())
        except Exception:  # a client-like object without nthreads()
            workers = 0
        return get(), 2 * max(workers, os.cpu_count() or 1)
    workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    return executor, 2 * workers


class ResultDirectoryError(OSError, ValueError):
    """The results directory of :func:`run_ensemble` cannot be used.

    Both an :class:`OSError` (it comes from the file system) and a
    :class:`ValueError` (the ``directory`` argument is bad input); the message
    names the argument and the path.
    """


def _os_error(exc: OSError, directory, what: str) -> ResultDirectoryError:
    message = f"run_ensemble: {what} directory={str(directory)!r}: {exc.strerror or exc}"
    return (
        ResultDirectoryError(exc.errno, message)
        if exc.errno is not None
        else ResultDirectoryError(message)
    )


def _prepare_directory(directory) -> Path:
    try:
        path = Path(directory)
    except TypeError as exc:
        raise TypeError(f"directory must be a str or path, got {type(directory).__name__}") from exc
    if path.exists() and not path.is_dir():
        raise ResultDirectoryError(
            errno.ENOTDIR,
            f"run_ensemble: directory={str(directory)!r} exists and is not a directory",
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, directory, "cannot create the results directory") from exc
    return path


# --------------------------------------------------------------------------- the runner


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
        arrays (not of dtype object). It should seed its randomness from its
        parameters (e.g. a ``seed`` entry) so that results do not depend on
        where it runs.
    params : iterable of dict
        Keyword arguments of each task (see :func:`sweep_grid`). Names of the
        result files come from :func:`task_name`; duplicates run once.
    directory : str or path
        Results directory (created if needed). A task whose file holds a valid
        result of it is skipped: rerunning an interrupted sweep finishes it.
        Other sweeps may write into it at the same time (see the module
        documentation for the concurrency contract).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        None runs serially in this process. A dask client is used through
        ``client.get_executor()``. Twice as many tasks as the executor has
        workers are claimed and submitted at a time.
    progress : bool, default False
        tqdm bar over the tasks still to run.

    Returns
    -------
    dict
        File stem -> loaded results (the task's arrays plus ``params``), for
        all tasks of the sweep.

    Raises
    ------
    TypeError
        If ``task``, ``params``, ``executor`` or ``directory`` has a wrong type.
    ResultDirectoryError
        (an OSError and a ValueError) if ``directory`` is not a directory,
        cannot be created or cannot be written (raised before any task runs;
        the message names it).

    Warns
    -----
    ResultFileWarning
        When a file under a task's name is not a valid result of that task
        (unreadable, truncated, corrupt, or another task's); the file is
        moved to ``<name>.npz.rejected`` and the task recomputed.

    Notes
    -----
    *Checks before reuse.* A result file is reused only if it loads without
    pickle, every array passes the CRC-32 check of the zip archive as it is
    read, and the parameters stored in it (canonical JSON) equal the task's.
    Any other file under the task's name (zero-byte or truncated, corrupt
    bytes, not an ``.npz`` archive, or the valid file of another task copied
    there) is never returned: it is moved aside to
    ``<task_name>.npz.rejected``, a :class:`ResultFileWarning` names it and the
    reason, and the task is recomputed.

    *Concurrency contract.* Several sweeps may run into one directory at the
    same time (processes on one host, or on several hosts sharing the
    directory); they share the work and each task is computed once.

    - Each call is an *owner* with a token ``<host>-<pid>-<random>``. It holds
      an exclusive lock (``fcntl.flock``) on ``.owner~<token>.lock`` until it
      returns; the operating system drops the lock when the process dies, even
      by SIGKILL, so a held lock means a live owner. Forked children (e.g.
      process-pool workers) close their copies of the lock.
    - Before a task starts, its owner writes the claim file
      ``.<task_name>.claim`` holding its token. Other sweeps skip claimed tasks
      and wait (polling) for their result files. The claim of a dead owner,
      or of a task that raised (its claim is released), is taken over and the
      task computed again, by the first sweep that finds it.
    - Claims are created, released and taken over, and the files of dead
      owners removed, only under the directory lock ``.sweep.lock`` (held for
      a moment; the file stays in the directory).
    - Temporary files are named ``.<task_name>~<token>.tmp``. A sweep deletes
      the temporaries of dead owners (lock free or owner file gone), never
      those of a live owner. Temporaries of earlier versions
      (``.<task_name>.<8 characters>.tmp``, which name no owner) are deleted
      once they are more than 10 minutes old.
    - With a ``concurrent.futures.ProcessPoolExecutor``, each worker that runs
      a task starts a watchdog thread that ends the worker within about 0.1 s
      once its parent process is gone, so killing a sweep leaves no worker
      computing. Dask workers belong to their cluster and are left alone.
    - Locking needs a filesystem where ``flock`` works between processes:
      local filesystems, and NFS on Linux (emulated there with POSIX locks, so
      run at most one sweep per process into an NFS directory). Without
      ``fcntl`` (Windows), ``msvcrt.locking`` is used.
    """
    if not callable(task):
        raise TypeError(f"task must be callable, got {type(task).__name__}")
    todo: dict[str, dict] = {}
    for p in params:
        if not isinstance(p, Mapping):
            raise TypeError(f"params must be an iterable of dicts, got an item {p!r}")
        todo.setdefault(task_name(p), dict(p))
    executor, window = _resolve_executor(executor)
    directory = _prepare_directory(directory)
    expected = {name: _canonical(_params_json(p)) for name, p in todo.items()}

    owner = _Owner(directory)
    try:
        owner.register()
    except OSError as exc:
        owner.close()
        raise _os_error(exc, directory, "cannot write to the results directory") from exc
    results: dict[str, dict] = {}
    in_flight: dict[cf.Future, str] = {}
    try:
        _sweep(
            task, todo, expected, directory, executor, window, owner, results, in_flight, progress
        )
    finally:
        for fut in in_flight:
            fut.cancel()
        owner.close()
    return {name: results[name] for name in todo}


def _sweep(task, todo, expected, directory, executor, window, owner, results, in_flight, progress):
    unresolved = {}
    for name, p in todo.items():
        got = _read_result(directory / f"{name}.npz", expected[name])
        if isinstance(got, dict):
            results[name] = got
        else:
            unresolved[name] = p
    guarded = isinstance(executor, cf.ProcessPoolExecutor)
    delay = 0.02
    with tqdm(total=len(unresolved), desc="sweep", disable=not progress) as bar:

        def finish(name: str, result) -> None:
            path = directory / f"{name}.npz"
            _write_atomic(path, todo[name], result, owner.token)
            got = _read_result(path, expected[name])
            if not isinstance(got, dict):
                raise OSError(f"run_ensemble: the result file just written {str(path)!r} {got}")
            results[name] = got
            owner.release(name)
            bar.update()

        while unresolved or in_flight:
            progressed = False
            for name in list(unresolved):
                if executor is not None and len(in_flight) >= window:
                    break
                path = directory / f"{name}.npz"
                got = _read_result(path, expected[name])
                if not isinstance(got, dict):
                    if not owner.claim(name):
                        continue  # a live sweep computes it
                    got = _read_result(path, expected[name])  # finished since the first look?
                    if isinstance(got, dict):
                        owner.release(name)
                if isinstance(got, dict):
                    results[name] = got
                    del unresolved[name]
                    bar.update()
                    progressed = True
                    continue
                if got is not None:
                    _reject(path, got)
                p = unresolved.pop(name)
                progressed = True
                if executor is None:
                    finish(name, task(**p))
                elif guarded:
                    in_flight[executor.submit(_call_in_worker, task, p)] = name
                else:
                    in_flight[executor.submit(task, **p)] = name
            if in_flight:
                done, _ = cf.wait(list(in_flight), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    finish(in_flight.pop(fut), fut.result())
            elif unresolved and not progressed:
                time.sleep(delay)  # every remaining task is being computed by another sweep
                delay = min(1.5 * delay, 0.5)
            if progressed:
                delay = 0.02


def langevin_task(
    d: int,
    depth: int,
    beta: float,
    kappa: float,
    *,
    seed: int,
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
        Keyword-only (as everywhere); seeds both the start and the noise
        (``SeedSequence(seed)``).
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
    from .._linalg import haar_orthogonal
    from ..network import balanced_point
    from .balanced import balanced_langevin
    from .brownian import brownian_motion
    from .end_to_end import end_to_end_langevin

    d = check_count(d, "d")
    start_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    X0 = scale * haar_orthogonal(np.random.default_rng(start_seed), d)
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
