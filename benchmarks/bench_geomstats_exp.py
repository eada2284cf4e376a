"""One exp on (M_d, g^N): our closed-form Christoffel terms vs geomstats' autodiff Christoffels.

Both sides run geomstats' own ``ExpODESolver`` with the same fixed-step RK4
integrator, from the same point and tangent vector; only the geodesic equation
differs:

- ours: ``DepthMetric.geodesic_equation`` (one SVD and O(d^3) per evaluation,
  Daleckii-Krein Christoffel term, no autodiff);
- baseline: ``AutodiffDepthMetric``, i.e. geomstats' generic
  ``RiemannianMetric.christoffels`` (autograd Jacobian of ``metric_matrix``,
  [G] eq. 4.14 written with backend operations) contracted by geomstats'
  generic ``Connection.geodesic_equation``.

The baseline needs ``GEOMSTATS_BACKEND=autograd``, read once at geomstats'
first import, so it runs in a subprocess (which also times our exp under the
autograd backend). Our exp is timed again here, under the default numpy backend.

Usage::

    python benchmarks/bench_geomstats_exp.py [--dims 3 6] [--depth 3] [--n-steps 5]

Writes ``benchmarks/results/geomstats_exp.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
from _common import write_results


def _problem(d: int, depth: int, seed: int = 0):
    """A well-conditioned point and a tangent vector of g^N-norm 0.5, as vectors (d*d,)."""
    from dln_manifolds.depth_metric import depth_inner_product

    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = np.exp(rng.uniform(np.log(0.5), np.log(2.0), d))
    X = (U * s) @ V.T
    Z = rng.standard_normal((d, d))
    Z *= 0.5 / np.sqrt(depth_inner_product(X, depth, Z, Z))
    return X.ravel(), Z.ravel()


def _time_exp(metric, v, x, repeats: int) -> tuple[float, np.ndarray]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = metric.exp(v, x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), np.asarray(y)


def _ours(d: int, depth: int, n_steps: int, repeats: int):
    from dln_manifolds.geomstats import EndToEndMatrices

    space = EndToEndMatrices(d, depth)
    space.metric.set_integrator(n_steps=n_steps)
    x, v = _problem(d, depth)
    return _time_exp(space.metric, v, x, repeats)


def worker(d: int, depth: int, n_steps: int, repeats: int) -> dict:
    """Runs under GEOMSTATS_BACKEND=autograd: baseline exp and ours, same backend."""
    import geomstats.backend as gs

    from dln_manifolds.geomstats import AutodiffDepthMetric, EndToEndMatrices

    assert gs.has_autodiff(), "the baseline needs an autodiff backend"
    space = EndToEndMatrices(d, depth, equip=False)
    space.equip_with_metric(AutodiffDepthMetric, n_steps=n_steps)
    x, v = _problem(d, depth)
    t_base, y_base = _time_exp(space.metric, v, x, repeats=1)
    t_ours, y_ours = _ours(d, depth, n_steps, repeats)
    return {
        "backend": os.environ.get("GEOMSTATS_BACKEND"),
        "baseline_s": t_base,
        "ours_autograd_backend_s": t_ours,
        "endpoint_max_abs_diff": float(np.max(np.abs(y_base - y_ours))),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--n-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        (d,) = args.dims
        print(json.dumps(worker(d, args.depth, args.n_steps, args.repeats)))
        return {}

    rows = []
    for d in args.dims:
        env = dict(os.environ, GEOMSTATS_BACKEND="autograd")
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--dims",
            str(d),
            "--depth",
            str(args.depth),
            "--n-steps",
            str(args.n_steps),
            "--repeats",
            str(args.repeats),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        sub = json.loads(out.stdout.strip().splitlines()[-1])
        t_ours, _ = _ours(d, args.depth, args.n_steps, args.repeats)
        rows.append(
            {
                "d": d,
                "depth": args.depth,
                "integrator": f"RK4, {args.n_steps} steps ({4 * args.n_steps} evaluations)",
                "ours_numpy_backend_s": t_ours,
                **sub,
                "speedup_vs_numpy_backend": sub["baseline_s"] / t_ours,
                "speedup_same_backend": sub["baseline_s"] / sub["ours_autograd_backend_s"],
            }
        )

    result = {
        "benchmark": "one exp on (M_d, g^N): closed-form Christoffel terms vs geomstats autodiff",
        "baseline": "AutodiffDepthMetric (geomstats RiemannianMetric.christoffels, autograd)",
        "target_speedup": 20.0,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
    }
    path = write_results("geomstats_exp", result)

    print(
        f"{'d':>3} {'ours (numpy) s':>15} {'ours (autograd) s':>18} {'baseline s':>11} "
        f"{'speedup':>9} {'same-backend':>13} {'|dy|':>9}"
    )
    for r in rows:
        print(
            f"{r['d']:>3} {r['ours_numpy_backend_s']:>15.4f} {r['ours_autograd_backend_s']:>18.4f} "
            f"{r['baseline_s']:>11.3f} {r['speedup_vs_numpy_backend']:>8.0f}x "
            f"{r['speedup_same_backend']:>12.0f}x {r['endpoint_max_abs_diff']:>9.1e}"
        )
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
