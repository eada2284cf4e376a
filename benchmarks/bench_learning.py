"""One learning step upstairs on M against one step downstairs on (M_d, g^N).

Two comparisons, one run, single BLAS thread:

1. At (d, N) = (100, 128): one step of the upstairs learning flow (lifted
   gradient of E(phi(W)) through the partial products, then
   ``balanced_restore`` onto M) against one step of the downstairs flow
   dX/dt = -A_{N,X}(E'(X)) (one SVD per stage). Both as one RK4 step through
   ``integrate_flow`` (what ``learning_flow`` / ``end_to_end_flow`` do per step)
   and as one explicit Euler step. The upstairs step is the baseline.
   Target: downstairs >= 10x faster.
2. The downstairs RK4 step at d = 100 for N = 2, 4, ..., 1024, as a ratio to
   N = 2. Target: constant (the depth only enters the multipliers).

Energy: E(X) = |X - T|^2 / 2 with a random target (its gradient costs O(d^2),
so the steps measure the geometry, not the loss).

Writes ``benchmarks/results/learning.json`` and prints a table.
Run: ``.venv/bin/python benchmarks/bench_learning.py`` (about a minute).
"""

from __future__ import annotations

import os

from _common import best_time, single_blas_thread, write_results

single_blas_thread()

import platform  # noqa: E402

import numpy as np  # noqa: E402

from dln_manifolds import QuadraticEnergy, balanced_point, depth_operator, end_to_end  # noqa: E402
from dln_manifolds.balanced import balanced_restore  # noqa: E402
from dln_manifolds.flows import integrate_flow, learning_velocity  # noqa: E402


def _setup(d: int, N: int, rng):
    s = np.exp(rng.uniform(-0.5, 0.5, d))  # end-to-end singular values in [e^-1/2, e^1/2]
    Q = np.linalg.qr(rng.standard_normal((2, d, d)))[0]
    X = (Q[0] * s) @ Q[1].T
    energy = QuadraticEnergy(rng.standard_normal((d, d)) / np.sqrt(d))
    return X, energy


def _steps(X, W, energy, N, dt):
    def up_rk4():
        return integrate_flow(
            lambda t, y: learning_velocity(y, energy), W, dt, dt=dt, restore=balanced_restore
        ).final

    def down_rk4():
        return integrate_flow(
            lambda t, y: -depth_operator(y, N, energy.gradient(y)), X, dt, dt=dt
        ).final

    def up_euler():
        return balanced_restore(W + dt * learning_velocity(W, energy))

    def down_euler():
        return X - dt * depth_operator(X, N, energy.gradient(X))

    return up_rk4, down_rk4, up_euler, down_euler


def main() -> dict:
    rng = np.random.default_rng(0)
    results: dict = {
        "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    d, N, dt = 100, 128, 1e-4  # A_{N,X} has eigenvalues up to ~N e: dt ~ 1/(10 N e)
    X, energy = _setup(d, N, rng)
    W = balanced_point(X, N, rotations=np.linalg.qr(rng.standard_normal((N - 1, d, d)))[0])
    up_rk4, down_rk4, up_euler, down_euler = _steps(X, W, energy, N, dt)
    # the two steps land on the same end-to-end matrix (Thm 2-3), up to O(dt^5)
    agree = float(np.abs(end_to_end(up_rk4()) - down_rk4()).max() / np.abs(X).max())
    t = {
        name: best_time(f)
        for name, f in [
            ("up_rk4", up_rk4),
            ("down_rk4", down_rk4),
            ("up_euler", up_euler),
            ("down_euler", down_euler),
        ]
    }
    results["step"] = {
        "d": d,
        "N": N,
        "dt": dt,
        "baseline": "upstairs step on M (lifted gradient + balanced_restore)",
        "upstairs_rk4_s": t["up_rk4"],
        "downstairs_rk4_s": t["down_rk4"],
        "speedup_rk4": t["up_rk4"] / t["down_rk4"],
        "upstairs_euler_s": t["up_euler"],
        "downstairs_euler_s": t["down_euler"],
        "speedup_euler": t["up_euler"] / t["down_euler"],
        "end_to_end_agreement_rel": agree,
        "target": "speedup >= 10",
    }
    print(f"one step at (d, N) = ({d}, {N}), dt = {dt}; baseline = upstairs step")
    print(f"{'scheme':8s} {'upstairs [s]':>14s} {'downstairs [s]':>15s} {'speedup':>9s}")
    for scheme in ("rk4", "euler"):
        up, down = t[f"up_{scheme}"], t[f"down_{scheme}"]
        print(f"{scheme:8s} {up:14.4e} {down:15.4e} {up / down:9.1f}")
    print(f"end-to-end matrices after one RK4 step agree to {agree:.1e} (relative)")

    rows = []
    base = None
    for n in [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]:
        _, down_step, _, _ = _steps(X, None, energy, n, dt)
        sec = best_time(down_step)
        base = base or sec
        rows.append({"N": n, "downstairs_rk4_s": sec, "ratio_to_N2": sec / base})
    results["downstairs_vs_depth"] = {
        "d": d,
        "rows": rows,
        "target": "ratio ~ 1 (independent of N)",
    }
    print(f"\ndownstairs RK4 step at d = {d} against the depth N")
    print(f"{'N':>6s} {'time [s]':>12s} {'/ N=2':>8s}")
    for r in rows:
        print(f"{r['N']:6d} {r['downstairs_rk4_s']:12.4e} {r['ratio_to_N2']:8.2f}")

    print(f"\nwrote {write_results('learning', results)}")
    return results


if __name__ == "__main__":
    main()
