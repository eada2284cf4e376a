"""The ``dln-manifolds`` command: ``list`` and ``reproduce``.

Examples
--------
``dln-manifolds list``
    Show the experiments.
``dln-manifolds reproduce --quick --out results``
    Run every experiment at the quick size and write ``results/report.md``,
    ``results/report.html``, one PNG per figure and ``results/results.json``.
    The exit status is 1 when a claim row fails, 2 for bad arguments (checked, the
    output directory included, before anything is computed) and 130 after Ctrl-C.

Console output: one line per finished experiment on stderr and a summary line on
stdout; ``-q`` keeps only failures and errors, ``-v`` adds each experiment's claim
table. Progress bars of the flows and samplers are drawn only when stderr is a terminal
(``--no-progress`` turns them off there too).

The report is rewritten, file by file atomically, after every finished experiment, with
a banner while the run is unfinished; an older report in the output directory is marked
stale as soon as a new run starts. After Ctrl-C the finished experiments' results stay
in a report marked "interrupted".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["RunInterrupted", "build_parser", "check_output_dir", "main", "reproduce"]

#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`reproduce`; ``message`` says what was kept."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _out_dir_arg(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must name a directory, got an empty string")
    return value


def _seed_arg(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {seed}")
    return seed


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dln-manifolds`` command."""
    parser = argparse.ArgumentParser(
        prog="dln-manifolds",
        description="Geometry of the deep linear network: reproduce the claims of "
        "[R] 'Regularization implies balancedness in the deep linear network' and "
        "[G] 'The geometry of the deep linear network'.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    rep = sub.add_parser("reproduce", help="run the experiments and write a report")
    size = rep.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="size",
        action="store_const",
        const="quick",
        help="small sizes, a few minutes on 2 cores (default)",
    )
    size.add_argument(
        "--full", dest="size", action="store_const", const="full", help="the larger versions"
    )
    size.add_argument(
        "--tiny",
        dest="size",
        action="store_const",
        const="tiny",
        help="smallest sizes, seconds (used by the tests)",
    )
    rep.set_defaults(size="quick")
    rep.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        default=None,
        help="run only these experiments (see `dln-manifolds list`)",
    )
    rep.add_argument(
        "--out",
        default="results",
        type=_out_dir_arg,
        metavar="DIR",
        help="output directory, created if needed (default: results)",
    )
    rep.add_argument(
        "--seed",
        type=_seed_arg,
        default=0,
        metavar="S",
        help="random seed, a non-negative integer (default 0)",
    )
    talk = rep.add_mutually_exclusive_group()
    talk.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=0,
        help="print only failures and errors",
    )
    talk.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=2,
        help="also print each experiment's claim table",
    )
    rep.set_defaults(verbosity=1)
    rep.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are drawn only when stderr is a terminal anyway)",
    )
    return parser


def check_output_dir(out: str | os.PathLike, argname: str = "out") -> Path:
    """Create the output directory if needed and check that a report can be written there.

    Parameters
    ----------
    out : str or path-like
        The directory.
    argname : str
        Name of the argument in the error messages.

    Returns
    -------
    Path

    Raises
    ------
    TypeError
        If ``out`` is not a string or path.
    ValueError
        If ``out`` is empty, is an existing file, lies under a file, cannot be created,
        is not writable, or holds a directory where a report file goes.
    """
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"{argname} must be a str or path, got {type(out).__name__}")
    text = os.fspath(out)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{argname} must name a directory, got {text!r}")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{argname} {text!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"{argname}: cannot create the directory {text!r} ({exc.strerror or exc})"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".dln-manifolds-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{argname}: cannot write in {text!r} ({exc.strerror or exc})") from None
    from .experiments.report import REPORT_FILES

    for name in REPORT_FILES:
        if (path / name).exists() and not (path / name).is_file():
            raise ValueError(f"{argname}: {str(path / name)!r} exists and is not a file")
    return path


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


@contextlib.contextmanager
def _sigint_deferred(reraise: bool = True) -> Iterator[None]:
    """Let a short write finish whole if Ctrl-C is pressed meanwhile (main thread only).

    A Ctrl-C during the block is held back and raised as KeyboardInterrupt at its end
    (``reraise``), or dropped (when the run is already stopping).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if pressed and reraise:
        raise KeyboardInterrupt


def _forget_interrupt() -> None:
    """Reset CPython's "unhandled KeyboardInterrupt" flag after we handled one.

    CPython sets that flag when a KeyboardInterrupt leaves code compiled from a string
    (``exec``, e.g. the methods ``dataclasses`` builds while a module is imported) and
    clears it at the start of the next such ``exec``; if it is still set at exit the
    interpreter kills itself with SIGINT instead of exiting with our status. Observed
    here: about 1 run in 20 interrupted at that moment exited by SIGINT, none in 60
    with this reset.
    """
    exec("pass")


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` wraps a KeyboardInterrupt (Python 3.11 turns one raised in
    ``__set_name__``, e.g. while a dataclass is created, into a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _say(text: str, file=None) -> None:
    print(text, file=file or sys.stderr, flush=True)


def reproduce(
    size: str = "quick",
    only: Sequence[str] | None = None,
    out: str | os.PathLike = "results",
    seed: int = 0,
    progress: bool | None = None,
    verbosity: int = 1,
) -> bool:
    """Run experiments, write the report, and return True when every claim passes.

    Every argument is checked (and the output directory created and probed) before any
    experiment runs. The report is rewritten after each finished experiment; until the
    last one it carries an "unfinished" banner, and an older report in ``out`` is marked
    stale when the run starts (see :func:`~dln_manifolds.experiments.report.mark_stale`).

    Parameters
    ----------
    size : {"tiny", "quick", "full"}
    only : sequence of str, optional
        Experiment names; all registered experiments by default.
    out : str or path-like
        Output directory.
    seed : int
        Non-negative.
    progress : bool, optional
        Progress bars of the flows and samplers. None (default): only when ``verbosity``
        >= 1 and stderr is a terminal.
    verbosity : {0, 1, 2}
        0: failures only; 1: a line per experiment on stderr and a summary on stdout;
        2: also each experiment's claim table.

    Raises
    ------
    ValueError, TypeError, KeyError
        For bad arguments (an unknown experiment name is a KeyError), before any work.
    RunInterrupted
        After Ctrl-C, once the finished experiments' report is written.
    """
    from .experiments import SIZES, get_experiment, list_experiments

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if verbosity not in (0, 1, 2):
        raise ValueError(f"verbosity must be 0, 1 or 2, got {verbosity!r}")
    if isinstance(only, str):
        raise TypeError("only must be a sequence of experiment names, not a single string")
    exps = list_experiments() if not only else [get_experiment(n) for n in dict.fromkeys(only)]
    path = check_output_dir(out)
    if progress is None:
        progress = verbosity >= 1 and _stderr_is_terminal()

    import matplotlib

    matplotlib.use("Agg")
    from .experiments.report import REPORT_FILES, claims_table, mark_stale, save_figures
    from .experiments.report import write_report as _write

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    n = len(exps)
    results, saved = [], {}

    def write(status: str | None) -> dict[str, Path]:
        return _write(results, saved, path, size=size, seed=seed, status=status)

    def interrupted() -> RunInterrupted:
        """Write what finished (Ctrl-C held back meanwhile) and say what was kept."""
        done = len(results)
        if done == n:
            return RunInterrupted(
                f"interrupted after the last experiment; the report in {path} is complete"
            )
        if done:
            with _sigint_deferred(reraise=False):
                paths = write(f"interrupted after {done} of {n} experiments")
            return RunInterrupted(
                f"interrupted: {done} of {n} experiments finished, "
                f"their report is in {paths['markdown']} (marked incomplete)"
            )
        if any((path / name).exists() for name in REPORT_FILES):
            return RunInterrupted(
                "interrupted before the first experiment finished; "
                f"the older report in {path} is marked stale"
            )
        return RunInterrupted("interrupted before the first experiment finished; nothing written")

    exp = None
    try:
        if any((path / name).exists() for name in REPORT_FILES):
            with _sigint_deferred():
                mark_stale(path, f"a newer run started at {started} and has not finished")
        for k, exp in enumerate(exps, 1):
            if verbosity >= 2 or (verbosity >= 1 and progress):
                _say(f"[{k:2d}/{n}] {exp.name} ...")
            t0 = time.perf_counter()
            res = exp.run(size=size, seed=seed, progress=progress)
            res.elapsed = time.perf_counter() - t0
            figs = exp.plot(res)
            pngs = save_figures(figs, path, exp.name)
            saved[exp.name] = [(p.name, f.caption) for p, f in zip(pngs, figs, strict=True)]
            results.append(res)
            with _sigint_deferred():
                paths = write(
                    None if k == n else f"unfinished run (started {started}): {k} of {n} done"
                )
            if verbosity >= 1:
                bad = sum(not c.passed for c in res.claims)
                verdict = "ok" if not bad else f"{bad} FAILED"
                _say(
                    f"[{k:2d}/{n}] {exp.name:<22s} {res.elapsed:6.1f} s  "
                    f"{len(res.claims):2d} claims  {verdict}"
                )
            if verbosity >= 2:
                _say(claims_table(res))
    except KeyboardInterrupt:
        raise interrupted() from None
    except Exception as exc:
        if _caused_by_interrupt(exc):  # e.g. Ctrl-C inside a class body during an import
            raise interrupted() from None
        if results and exp is not None:
            with _sigint_deferred(reraise=False):
                write(f"stopped: {exp.name} raised {type(exc).__name__}: {exc}")
        raise

    ok = all(r.passed for r in results)
    total = sum(len(r.claims) for r in results)
    n_ok = sum(c.passed for r in results for c in r.claims)
    if verbosity >= 1:
        print(
            f"{n_ok}/{total} claims passed; report: {paths['markdown']} and {paths['html']}",
            flush=True,
        )
    if not ok:
        for r in results:
            for c in r.claims:
                if not c.passed:
                    _say(
                        f"FAILED [{r.name}] {c.claim}: {c.quantity} measured "
                        f"{c.measured:.4g}, predicted {c.predicted:.4g}, error {c.error:.3g} "
                        f"> tol {c.tolerance:.3g}"
                    )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dln-manifolds`` and ``python -m dln_manifolds``; returns the exit status.

    0: every claim passed; 1: a claim failed; 2: bad arguments (nothing computed);
    130: interrupted by Ctrl-C (one line on stderr says what was kept).
    """
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            from .experiments import list_experiments

            for exp in list_experiments():
                print(f"{exp.number:2d}  {exp.name:22s} {exp.title}")
            return 0
        try:  # the same checks reproduce makes, with the command-line names in the message
            check_output_dir(args.out, argname="--out")
            if args.only:
                from .experiments import get_experiment

                for name in args.only:
                    get_experiment(name)
        except (KeyError, ValueError) as exc:
            _say(f"dln-manifolds: error: {exc.args[0]}")
            return 2
        ok = reproduce(
            size=args.size,
            only=args.only,
            out=args.out,
            seed=args.seed,
            progress=False if args.no_progress else None,
            verbosity=args.verbosity,
        )
    except KeyboardInterrupt as exc:
        _say(f"dln-manifolds: {getattr(exc, 'message', 'interrupted')}")
        _forget_interrupt()
        return EXIT_INTERRUPTED
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
