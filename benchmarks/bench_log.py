"""Downstairs log :func:`dln_manifolds.geodesics.depth_log`: the Newton schedule, before/after.

Both variants run in this process, interleaved pair by pair (the order alternates), on
the same random far pairs (``EndToEndMatrices.random_point``: Haar frames, singular
values log-uniform in [1/2, 2], same component of GL(d)):

- ``before``: the schedule of the previous release, restored through the module
  constants of :mod:`dln_manifolds.geodesics`: Newton with fresh Jacobians on geodesics
  of ``rtol = 1e-7`` at every continuation target, intermediate targets solved to a
  mismatch of 1e-5 (1 + |Y|), the requested tolerances from a mismatch of 1e-5 on with
  the chord method;
- ``after``: the current defaults (intermediate targets on geodesics of ``rtol = 1e-5``
  solved to 1e-3 (1 + |Y|), the requested tolerances from 1e-4 on, with a fresh
  Jacobian on the first such geodesic).

Per configuration: CPU seconds per log (median, mean, max), right-hand-side evaluations
of the geodesic equation per log, the accuracy max |exp_X(log_X Y) - Y| / (1 + |Y|) (with
:func:`~dln_manifolds.geodesics.depth_exp` at the same tolerances) and the failures
(LogConvergenceError). Then pymanopt's ParticleSwarm, two iterations on the
EndToEndMatrices spaces of tests/test_pymanopt_optimizers.py (d = 2, seed 100), before
(old schedule, no batching of the logs to the global best) and after.

Usage::

    python benchmarks/bench_log.py [--pairs 20] [--no-swarm]

Writes ``benchmarks/results/log.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from _common import single_blas_thread, write_results

single_blas_thread()

import numpy as np  # noqa: E402

from dln_manifolds import geodesics as geo  # noqa: E402
from dln_manifolds.pymanopt import EndToEndMatrices  # noqa: E402

BEFORE = {
    "_MID_RTOL": 1e-7,
    "_MID_TOL": 1e-5,
    "_LOOSE_RTOL": 1e-7,
    "_SWITCH_TOL": 1e-5,
    "_TIGHT_JACOBIAN": False,
}
AFTER = {name: getattr(geo, name) for name in BEFORE}
CONFIGS = [
    ((2, 2), 2),
    ((2, 2), 3),
    ((2, 2), np.inf),
    ((3, 3), 2),
    ((3, 3), 3),
    ((3, 3), np.inf),
    ((5, 5), 2),
    ((5, 5), 3),
    ((5, 5), np.inf),
    ((3, 2), 2),
    ((3, 2), 3),
]


def _schedule(values: dict) -> None:
    for name, value in values.items():
        setattr(geo, name, value)


class _Counter:
    """Counts the evaluations of the geodesic equation (wraps geodesics._Rhs.__call__)."""

    def __init__(self):
        self.n = 0
        self._call = geo._Rhs.__call__
        counter = self

        def call(rhs, *args, **kwargs):
            counter.n += 1
            return counter._call(rhs, *args, **kwargs)

        geo._Rhs.__call__ = call


def _pairs(shape, depth, n, seed=0):
    M = EndToEndMatrices(shape[0] if shape[0] == shape[1] else shape, depth, seed=seed)
    out = []
    for _ in range(n):
        X, Y = M.random_point(), M.random_point()
        if shape[0] == shape[1] and np.linalg.det(X) * np.linalg.det(Y) < 0:
            Y[:, 0] *= -1.0
        out.append((X, Y))
    return out


def _one_log(X, Y, depth, counter):
    n0, t0 = counter.n, time.process_time()
    try:
        V = geo.depth_log(X, Y, depth)
    except geo.LogConvergenceError:
        return time.process_time() - t0, counter.n - n0, None
    seconds, n_rhs = time.process_time() - t0, counter.n - n0
    err = np.linalg.norm(geo.depth_exp(X, V, depth) - Y) / (1.0 + np.linalg.norm(Y))
    return seconds, n_rhs, float(err)


def _summary(rows):
    t = np.array([r[0] for r in rows])
    errs = [r[2] for r in rows if r[2] is not None]
    return {
        "median_s": float(np.median(t)),
        "mean_s": float(np.mean(t)),
        "max_s": float(np.max(t)),
        "rhs_per_log": float(np.mean([r[1] for r in rows])),
        "max_rel_error": max(errs) if errs else None,
        "failures": sum(r[2] is None for r in rows),
    }


def flat(prefix: str, values: dict) -> dict:
    """Rows of flat values (the documentation renders those as tables)."""
    return {f"{prefix}_{k}": v for k, v in values.items()}


def bench_logs(n_pairs: int, counter) -> list[dict]:
    results = []
    for shape, depth in CONFIGS:
        rows = {"before": [], "after": []}
        for i, (X, Y) in enumerate(_pairs(shape, depth, n_pairs)):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for name in order:
                _schedule(BEFORE if name == "before" else AFTER)
                rows[name].append(_one_log(X, Y, depth, counter))
        _schedule(AFTER)
        entry = {"shape": f"{shape[0]}x{shape[1]}", "depth": str(depth)}
        b, a = _summary(rows["before"]), _summary(rows["after"])
        entry.update(flat("before", b) | flat("after", a))
        entry["speedup_mean"] = b["mean_s"] / a["mean_s"]
        results.append(entry)
        print(
            f"{str(shape):8} N={entry['depth']!s:4} before {b['mean_s']:.3f} s "
            f"({b['rhs_per_log']:.0f} rhs, err {b['max_rel_error']:.1e}, {b['failures']} fail) "
            f"after {a['mean_s']:.3f} s ({a['rhs_per_log']:.0f} rhs, err "
            f"{a['max_rel_error']:.1e}, {a['failures']} fail)  x{entry['speedup_mean']:.2f}",
            flush=True,
        )
    return results


def bench_swarm() -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_pymanopt_optimizers as t  # the test's spaces and run classification

    produced = EndToEndMatrices._produced
    results = []
    for space in ("E2E-N2", "E2E-N3", "E2E-Ninf"):
        entry = {"space": space}
        for name in ("before", "after"):
            _schedule(BEFORE if name == "before" else AFTER)
            if name == "before":  # no record of produced points: no batching over bases
                EndToEndMatrices._produced = lambda self, X: X
            outcome, err, seconds = t._run(space, "ParticleSwarm", 100, 2)
            EndToEndMatrices._produced = produced
            entry |= flat(name, {"outcome": outcome, "error": err, "cpu_s": seconds})
        _schedule(AFTER)
        entry["speedup"] = entry["before_cpu_s"] / entry["after_cpu_s"]
        entry["same_result"] = entry["before_error"] == entry["after_error"]
        results.append(entry)
        print(
            f"ParticleSwarm {space:9} before {entry['before_cpu_s']:.1f} s "
            f"after {entry['after_cpu_s']:.1f} s  x{entry['speedup']:.1f} "
            f"({entry['after_outcome']}, same result: {entry['same_result']})",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--no-swarm", action="store_true")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        counter = _Counter()
        logs = bench_logs(args.pairs, counter)
        swarm = [] if args.no_swarm else bench_swarm()
    payload = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pairs_per_config": args.pairs,
        "timer": "time.process_time (CPU seconds, one BLAS thread)",
        "before": BEFORE,
        "after": AFTER,
        "logs": logs,
        "particle_swarm": swarm,
    }
    print("wrote", write_results("log", payload))


if __name__ == "__main__":
    main()
