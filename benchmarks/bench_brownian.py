"""Throughput of the downstairs Brownian sampler on (M_d, g^N) vs geomstats' BrownianMotion.

Brownian motion at inverse temperature beta on (M_d, g^N) ([G] Thm 18, eq. 12.10) for an
ensemble of paths, measured in path-steps per second (single BLAS thread):

1. d = 4, N = 3, 10^4 paths: :func:`dln_manifolds.langevin.brownian_motion` (batched SVD,
   closed-form drift and A^{1/2} in the singular frame, Brownian-bridge step control
   included) against ``geomstats.distributions.brownian_motion.BrownianMotion`` on the
   same metric (the adapter :class:`dln_manifolds.geomstats.EndToEndMatrices`, whose
   Christoffel symbols are already computed by the fast batched frame code, not by
   autodiff), per path-step. geomstats' step is Euler-Maruyama in the vector coordinates
   with drift -(1/2) g^{lm} Gamma^k_{lm} and noise sqrtm(g^{-1}) (generator Delta/2, i.e.
   beta = 2); both are timed at that temperature. Target: >= 100x.
2. Scaling in d (4..64) at fixed ensemble size, and in the ensemble size at d = 4.
3. Peak memory: 10^5 paths at d = 4 (final state 12.8 MB), peak resident memory of a
   fresh process (``resource.getrusage``, minus the process before sampling), with all
   paths advanced at once (``chunk_size = n_paths``, as before chunking existed) and in
   chunks (the default, 16384 paths, and 4096): results are bit-identical.

Writes ``benchmarks/results/brownian.json`` and prints a table.
Run: ``.venv/bin/python benchmarks/bench_brownian.py`` (about two minutes).
"""

from __future__ import annotations

import os

from _common import single_blas_thread, write_results

single_blas_thread()

import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from dln_manifolds.langevin import brownian_motion  # noqa: E402

DEPTH = 3
BETA = 2.0  # geomstats' convention: generator Delta / 2


def start(d: int, seed: int = 0) -> np.ndarray:
    """A well-conditioned starting point: orthogonal times diag in [1, 2]."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return q * np.linspace(1.0, 2.0, d)


def _rate(d: int, n_paths: int, n_steps: int, seconds: float) -> dict:
    """One timing row: the sizes, the seconds and the path-steps per second."""
    return {
        "d": d,
        "n_paths": n_paths,
        "n_steps": n_steps,
        "seconds": seconds,
        "path_steps_per_s": n_paths * n_steps / seconds,
    }


def ours(d: int, n_paths: int, n_steps: int, dt: float = 1e-4) -> dict:
    X0 = start(d)
    brownian_motion(X0, DEPTH, BETA, t_final=dt, dt=dt, n_paths=min(n_paths, 64), seed=0)
    best = np.inf
    for rep in range(2):
        t0 = time.perf_counter()
        res = brownian_motion(
            X0, DEPTH, BETA, t_final=n_steps * dt, dt=dt, n_paths=n_paths, seed=rep
        )
        best = min(best, time.perf_counter() - t0)
    return {**_rate(d, n_paths, n_steps, best), "n_rejected": int(res.n_rejected)}


def geomstats_baseline(d: int, n_paths: int, n_steps: int, dt: float = 1e-4) -> dict:
    from geomstats.distributions.brownian_motion import BrownianMotion

    from dln_manifolds.geomstats import EndToEndMatrices, matrix_to_vector

    space = EndToEndMatrices(d, DEPTH)
    bm = BrownianMotion(space)
    x0 = np.repeat(matrix_to_vector(start(d))[None], n_paths, axis=0)
    bm.sample_path(end_time=dt * 2, n_steps=2, initial_point=x0[:2])  # warm-up
    t0 = time.perf_counter()
    # sample_path takes n_steps - 1 steps
    bm.sample_path(end_time=dt * (n_steps + 1), n_steps=n_steps + 1, initial_point=x0)
    return _rate(d, n_paths, n_steps, time.perf_counter() - t0)


_PEAK_SCRIPT = """
import json, resource, sys, time
import numpy as np
from dln_manifolds.langevin import brownian_motion
n, steps, chunk = (int(a) for a in sys.argv[1:4])
d = 4
q = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))[0]
X0 = q * np.linspace(1.0, 2.0, d)
run = lambda: brownian_motion(X0, 3, 2.0, t_final=steps * 1e-4, dt=1e-4, n_paths=n,
                              seed=0, chunk_size=chunk or None)
if sys.argv[4] == "tracemalloc":
    import tracemalloc
    tracemalloc.start()
    res = run()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    print(json.dumps({"traced_peak_mb": peak, "checksum": float(res.final.sum())}))
else:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    res = run()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_peak_mb": after / 1024, "rss_before_mb": before / 1024,
                      "final_state_mb": res.final.nbytes / 1e6, "seconds": seconds,
                      "checksum": float(res.final.sum())}))
"""


def peak_memory(n_paths: int, n_steps: int, chunk_size: int) -> dict:
    """Peak resident memory (MB) of sampling in a fresh process (Linux ru_maxrss in KiB)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    row = {"n_paths": n_paths, "n_steps": n_steps, "chunk_size": chunk_size or "default"}
    for how in ("rss", "tracemalloc"):
        out = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(n_paths), str(n_steps), str(chunk_size), how],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        row.update(json.loads(out.stdout.strip().splitlines()[-1]))
    # the ensemble's own arrays (numpy buffers, traced exactly) and the process as a whole
    row["peak_mb"] = row["traced_peak_mb"]
    row["rss_increase_mb"] = row["rss_peak_mb"] - row["rss_before_mb"]
    return row


def main() -> None:
    out: dict = {
        "benchmark": "brownian",
        "description": "path-steps per second, Brownian motion on (M_d, g^N), N = 3, beta = 2",
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        },
    }
    head = ours(4, 10_000, 20)
    base = geomstats_baseline(4, 100, 5)
    speedup = head["path_steps_per_s"] / base["path_steps_per_s"]
    out["headline"] = {"ours": head, "geomstats": base, "speedup": speedup, "target": 100.0}
    print(
        f"d=4, N={DEPTH}: ours {head['path_steps_per_s']:.3g} path-steps/s "
        f"(10^4 paths), geomstats BrownianMotion {base['path_steps_per_s']:.3g} "
        f"path-steps/s -> speedup {speedup:.0f}x (target >= 100x)"
    )

    print("\nscaling in d (ours, 1000 paths; geomstats, 20 paths, up to d = 8)")
    print(f"{'d':>4} {'ours path-steps/s':>18} {'geomstats':>12} {'speedup':>9}")
    scaling_d = []
    for d in (4, 8, 16, 32, 64):
        n_paths = 1000 if d <= 16 else (200 if d == 32 else 50)
        row = {"ours": ours(d, n_paths, 10)}
        if d <= 8:
            row["geomstats"] = geomstats_baseline(d, 20, 3)
            row["speedup"] = row["ours"]["path_steps_per_s"] / row["geomstats"]["path_steps_per_s"]
        scaling_d.append(row)
        gs_txt = f"{row['geomstats']['path_steps_per_s']:.3g}" if "geomstats" in row else "-"
        sp_txt = f"{row['speedup']:.0f}x" if "speedup" in row else "-"
        print(f"{d:>4} {row['ours']['path_steps_per_s']:>18.3g} {gs_txt:>12} {sp_txt:>9}")
    out["scaling_d"] = scaling_d

    print("\nscaling in ensemble size (ours, d = 4)")
    print(f"{'paths':>7} {'path-steps/s':>14}")
    scaling_b = []
    for n_paths in (1, 10, 100, 1000, 10_000, 100_000):
        row = ours(4, n_paths, 20 if n_paths < 100_000 else 5)
        scaling_b.append(row)
        print(f"{n_paths:>7} {row['path_steps_per_s']:>14.3g}")
    out["scaling_ensemble"] = scaling_b

    print("\npeak memory above the idle process, 10^5 paths, d = 4 (final state 12.8 MB)")
    print(f"{'chunk_size':>12} {'traced peak MB':>15} {'RSS peak MB':>12} {'seconds':>8}")
    memory = []
    for chunk in (100_000, 0, 4096):
        row = peak_memory(100_000, 3, chunk)
        memory.append(row)
        print(
            f"{row['chunk_size']!s:>12} {row['traced_peak_mb']:>15.0f} "
            f"{row['rss_peak_mb']:>12.0f} {row['seconds']:>8.2f}"
        )
    assert len({row["checksum"] for row in memory}) == 1, "chunked runs must be bit-identical"
    out["peak_memory"] = memory
    out["peak_memory_note"] = (
        "peak_mb = traced_peak_mb: peak of the numpy buffers allocated while sampling "
        "(tracemalloc, one fresh process); rss_peak_mb: peak resident memory of another "
        "fresh process (imports included, rss_before_mb before sampling). Before chunking "
        "existed the whole ensemble was advanced at once (the chunk_size 100000 row)"
    )

    print(f"\nwrote {write_results('brownian', out)}")


if __name__ == "__main__":
    main()
