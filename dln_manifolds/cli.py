"""The ``dln-manifolds`` command: ``list`` and ``reproduce``.

Examples
--------
``dln-manifolds list``
    Show the experiments.
``dln-manifolds reproduce --quick --out results``
    Run every experiment at the quick size and write ``results/report.md``,
    ``results/report.html``, one PNG per figure and ``results/results.json``.
    The exit status is 1 when a claim row fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["build_parser", "main", "reproduce"]


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
        "--out", default="results", metavar="DIR", help="output directory (default: results)"
    )
    rep.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def reproduce(
    size: str = "quick",
    only: Sequence[str] | None = None,
    out: str = "results",
    seed: int = 0,
    progress: bool = True,
) -> bool:
    """Run experiments, write the report, and return True when every claim passes.

    Parameters
    ----------
    size : {"tiny", "quick", "full"}
    only : sequence of str, optional
        Experiment names; all registered experiments by default.
    out : str
        Output directory.
    seed : int
    progress : bool
        Progress bars and a line per experiment on stderr.
    """
    import matplotlib

    matplotlib.use("Agg")
    from .experiments import UNAVAILABLE, get_experiment, list_experiments
    from .experiments.report import write_report

    exps = list_experiments() if not only else [get_experiment(n) for n in only]
    results, figures = [], {}
    for exp in exps:
        if progress:
            print(f"[{exp.number:2d}] {exp.name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        res = exp.run(size=size, seed=seed, progress=progress)
        res.elapsed = time.perf_counter() - t0
        results.append(res)
        figures[exp.name] = exp.plot(res)
        if progress:
            bad = [c for c in res.claims if not c.passed]
            verdict = "ok" if not bad else f"{len(bad)} claim(s) FAILED"
            print(
                f"     {res.elapsed:6.1f} s, {len(res.claims)} claims, {verdict}",
                file=sys.stderr,
                flush=True,
            )
    unavailable = {} if only else dict(UNAVAILABLE)
    paths = write_report(results, figures, out, size=size, seed=seed, unavailable=unavailable)
    ok = all(r.passed for r in results)
    n = sum(len(r.claims) for r in results)
    n_ok = sum(c.passed for r in results for c in r.claims)
    print(f"{n_ok}/{n} claims passed; report: {paths['markdown']} and {paths['html']}")
    if not ok:
        for r in results:
            for c in r.claims:
                if not c.passed:
                    print(
                        f"FAILED [{r.name}] {c.claim}: {c.quantity} measured "
                        f"{c.measured:.4g}, predicted {c.predicted:.4g}, error {c.error:.3g} "
                        f"> tol {c.tolerance:.3g}",
                        file=sys.stderr,
                    )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dln-manifolds`` and ``python -m dln_manifolds``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        from .experiments import UNAVAILABLE, list_experiments

        for exp in list_experiments():
            print(f"{exp.number:2d}  {exp.name:22s} {exp.title}")
        for name, why in UNAVAILABLE.items():
            print(f"--  {name:22s} (unavailable: {why})")
        return 0
    try:
        ok = reproduce(
            size=args.size,
            only=args.only,
            out=args.out,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except KeyError as exc:
        print(f"dln-manifolds: error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
