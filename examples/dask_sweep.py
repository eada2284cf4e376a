"""Sweeps on a dask cluster: run a Langevin parameter sweep, interrupt it, resume it.

A ``dask.distributed.LocalCluster`` runs :func:`dln_manifolds.langevin.langevin_task` (the
downstairs Riemannian Langevin equation, [G] eq. 12.12) over a grid of depths, inverse
temperatures and seeds with :func:`dln_manifolds.langevin.run_ensemble`, one result file per
task. The sweep runs in a child process that gets Ctrl-C (SIGINT) once a few result files
exist; the sweep is then resumed here, on a fresh cluster: the finished tasks are skipped (their
files are not touched) and only the missing ones run. The script checks both, checks one result
against a serial run of the same task, and plots the mean singular values against beta.

Needs the extra ``dln-manifolds[distributed]``. To use a real cluster, pass
``Client("tcp://scheduler:8786")`` to :func:`run_ensemble` instead of a local one.

    python examples/dask_sweep.py [--tiny | --full] [--out DIR] [--seed S] [--workers W]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dln_manifolds.langevin import langevin_task, run_ensemble, sweep_grid

# grid of each size: depths x betas x seeds; each task samples n_paths paths to t_final
SIZES = {
    "tiny": dict(depth=[2, 3], beta=[2.0, 8.0, 32.0], seeds=2, n_paths=200, t_final=0.5),
    "quick": dict(depth=[2, 3, 4], beta=[2.0, 4.0, 8.0, 16.0, 32.0], seeds=3, n_paths=500,
                  t_final=0.5),
    "full": dict(depth=[2, 3, 4, 8], beta=[2.0, 4.0, 8.0, 16.0, 32.0, 64.0], seeds=8,
                 n_paths=2000, t_final=1.0),
}  # fmt: skip
INTERRUPT_AFTER = 4  # result files written before the sweep gets Ctrl-C


def sweep_tasks(size: str, seed: int) -> list[dict]:
    """The parameter dicts of the sweep (d = 2, kappa = 1/2, start 2 x a Haar rotation)."""
    s = SIZES[size]
    return sweep_grid(
        d=[2],
        depth=s["depth"],
        beta=s["beta"],
        kappa=[0.5],
        seed=[seed + i for i in range(s["seeds"])],
        t_final=[s["t_final"]],
        dt=[0.01],
        n_paths=[s["n_paths"]],
        scale=[2.0],
    )


def run_sweep(tasks: list[dict], directory: Path, workers: int) -> dict[str, dict]:
    """Run the sweep on a fresh LocalCluster (one process per worker, one thread each)."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:  # fmt: skip
        return run_ensemble(langevin_task, tasks, directory, executor=client)


def _results(directory: Path) -> dict[str, int]:
    """Finished result files and their modification times (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in sorted(directory.glob("*.npz"))}


def _interrupted_sweep(args, directory: Path, log: Path, n_tasks: int) -> dict[str, int]:
    """Start the sweep in a child process and send it Ctrl-C once a few results exist."""
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", "sweep", "--size", args.size]
    cmd += ["--seed", str(args.seed), "--workers", str(args.workers), "--results", str(directory)]
    with open(log, "w") as fh:
        child = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while child.poll() is None and time.monotonic() < deadline:
            if len(_results(directory)) >= min(INTERRUPT_AFTER, n_tasks - 1):
                break
            time.sleep(0.02)
        if child.poll() is None:
            if os.name == "posix":
                child.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal does
            else:
                child.terminate()
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return _results(directory)


def plot(results: dict[str, dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (r["params"]["depth"], r["params"]["beta"], r["singular_values"]) for r in results.values()
    ]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    all_betas = sorted({r[1] for r in rows})
    for i, depth in enumerate(sorted({r[0] for r in rows})):
        betas = sorted({b for dep, b, _ in rows if dep == depth})
        for k, style in ((0, "-o"), (1, "--s")):
            means = [
                np.mean([s[:, k].mean() for dep, b, s in rows if dep == depth and b == beta])
                for beta in betas
            ]
            ax.plot(betas, means, style, color=f"C{i}", ms=4, label=f"N = {depth}, sigma_{k + 1}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_betas, [f"{b:g}" for b in all_betas])
    ax.minorticks_off()
    ax.set(xlabel="beta", ylabel="mean singular value at t_final",
           title="Sweep on a dask LocalCluster: d = 2, kappa = 1/2")  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out / "dask_sweep_singular_values.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny")
    size.add_argument("--full", dest="size", action="store_const", const="full")
    size.add_argument("--size", dest="size", choices=sorted(SIZES), help=argparse.SUPPRESS)
    parser.set_defaults(size="quick")
    parser.add_argument("--out", default="results", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--phase", choices=["all", "sweep"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    tasks = sweep_tasks(args.size, args.seed)

    if args.phase == "sweep":  # the child process: run until done or interrupted
        try:
            run_sweep(tasks, Path(args.results), args.workers)
        except KeyboardInterrupt:
            print("sweep interrupted", flush=True)
            return 130
        return 0

    out = Path(args.out)
    directory = out / "dask_sweep_results"
    if directory.exists():
        shutil.rmtree(directory)  # start from scratch: this script shows one interruption
    directory.mkdir(parents=True)
    log = out / "dask_sweep_interrupted.log"

    t0 = time.perf_counter()
    before = _interrupted_sweep(args, directory, log, len(tasks))
    t1 = time.perf_counter()
    print(f"sweep of {len(tasks)} tasks interrupted with Ctrl-C after {t1 - t0:.1f} s: "
          f"{len(before)} result files written (child's output: {log})")  # fmt: skip
    results = run_sweep(tasks, directory, args.workers)
    after = _results(directory)
    rerun = sorted(name for name in before if after.get(name) != before[name])
    print(f"resumed on a fresh LocalCluster in {time.perf_counter() - t1:.1f} s: "
          f"{len(after) - len(before)} tasks run, {len(before) - len(rerun)} skipped, "
          f"{len(rerun)} finished tasks redone")  # fmt: skip

    name, result = next(iter(results.items()))  # results do not depend on where a task ran
    params = {k: v for k, v in result["params"].items()}
    serial = langevin_task(**params)
    same = np.array_equal(serial["singular_values"], result["singular_values"])
    print(f"task {name}: serial run in this process {'equals' if same else 'DIFFERS FROM'} "
          "the cluster's result file")  # fmt: skip
    print(f"wrote {plot(results, out)}")

    ok = len(results) == len(tasks) == len(after) and not rerun and same
    if len(before) == len(tasks):
        print("note: the sweep finished before Ctrl-C arrived (fast machine): nothing to resume")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
