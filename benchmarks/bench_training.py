"""Time to a training loss on matrix completion: plain gradient descent against the exact flow.

Problem (the full size of the ``completion_at_scale`` experiment): d = 100, a rank-5 target
(``completion_at_scale.problem(100, 5, 2000, seed=0)``), 2,000 observed entries Omega,
E(X) = 1/2 sum_{(i,j) in Omega} (X_ij - Y_ij)^2, start X0 = 1e-3 I (balanced layers
W_p = 1e-3^{1/N} I), one BLAS thread. The goal is

    training MSE = (1/|Omega|) sum_{(i,j) in Omega} (X_ij - Y_ij)^2 = 2 E(X) / |Omega| < 1e-6.

Rows, per depth N = 3, 8, 16, all in one run:

1. Plain gradient descent on the N factors, written here in numpy (forward products, one
   backward sweep: 3N - 1 matrix products per step). Learning rate: the largest of
   1, 1/2, 1/4, ... with which it reaches the goal without diverging (the halving search),
   and half of it (the largest stable rate oscillates in the stiff directions and is often
   slower). Each run has a time budget of ``GD_BUDGET_S``; a run that hits it is reported as
   a lower bound (status "budget").
2. The exact flow dX/dt = -A_{N,X}(E'(X)) (:func:`dln_manifolds.flows.end_to_end_flow`)
   with the solver chosen in docs/performance.rst ("Flow solvers": ``CHOSEN`` below, the
   dopri5 / extrapolated-RKC switch with the velocity through the balanced factors),
   stopped by ``stop_when`` at the goal. Its path error is measured afterwards (not timed)
   against a tight reference (dopri5, rtol 1e-9, atol 1e-12, the SVD evaluation of
   A_{N,X}, which shares no code with the factor evaluation), restarted at ~30
   checkpoints of the flow's own accepted steps: the largest
   |X(t) - X_ref(t)|_F / |X_ref(t)|_F over the checkpoints.
3. Other flow solvers for the record (``OTHERS``: the previous choice, plain dopri5 with
   ``evaluation="auto"``, with its path error; dopri5 with the chosen tolerances, which
   separates the effect of the tolerances from that of the switch).

``gradient_descent`` of ``dln_manifolds.training`` runs at the plain loop's largest stable
rate to the goal; its time per step is also measured against the plain loop's on a fixed
number of steps, the two interleaved, best of ``RATIO_REPEATS`` (less sensitive to the
load of a shared machine than the two runs to the goal).

The machine may be shared: only ratios measured in this run are meaningful; the load average
is recorded. Writes ``benchmarks/results/training.json``.
Run: ``.venv/bin/python benchmarks/bench_training.py`` (a few minutes).
"""

from __future__ import annotations

import os

from _common import single_blas_thread, write_results

single_blas_thread()

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from dln_manifolds.energies import MatrixCompletionEnergy  # noqa: E402
from dln_manifolds.experiments.completion_at_scale import problem  # noqa: E402
from dln_manifolds.flows import end_to_end_flow  # noqa: E402
from dln_manifolds.network import end_to_end  # noqa: E402
from dln_manifolds.training import gradient_descent  # noqa: E402

D, RANK, M, SEED = 100, 5, 2000, 0
SCALE = 1e-3  # X0 = SCALE * I
GOAL = 1e-6  # training MSE
DEPTHS = (3, 8, 16)
GD_BUDGET_S = 150.0
T_MAX = 1e5  # flow horizon; the flow stops at the goal long before
CHOSEN = {
    "method": "dopri5-erkc",
    "adaptive": True,
    "rtol": 1e-3,
    "atol": 1e-8,
    "evaluation": "factors",
}
OTHERS = {
    "dopri5, rtol 1e-3, atol 1e-6, evaluation auto (the previous choice)": {
        "method": "dopri5",
        "adaptive": True,
        "rtol": 1e-3,
        "atol": 1e-6,
        "evaluation": "auto",
    },
    "dopri5, rtol 1e-3, atol 1e-8, factors": {
        "method": "dopri5",
        "adaptive": True,
        "rtol": 1e-3,
        "atol": 1e-8,
        "evaluation": "factors",
    },
}
PATH_ERROR_OF = ("dopri5, rtol 1e-3, atol 1e-6, evaluation auto (the previous choice)",)
RATIO_STEPS = 200  # steps per sample of the per-step comparison of gradient descents
RATIO_REPEATS = 5
REFERENCE = {"method": "dopri5", "adaptive": True, "rtol": 1e-9, "atol": 1e-12}
N_CHECKPOINTS = 30
CHECK_EVERY = 10  # steps between goal checks of the library's gradient descent


class CountingEnergy(MatrixCompletionEnergy):
    """The completion energy, counting gradient evaluations (one per velocity evaluation)."""

    calls = [0]

    def gradient(self, X):
        CountingEnergy.calls[0] += 1
        return super().gradient(X)


def training_mse(X: np.ndarray, energy: MatrixCompletionEnergy) -> float:
    """Mean of the squared residuals over the observed entries, 2 E(X) / |Omega|."""
    return 2.0 * float(energy.value(X)) / int(energy.mask.sum())


def plain_gd(N: int, lr: float, energy, budget_s: float, max_steps: int | None = None) -> dict:
    """Gradient descent on the factors from the balanced start; stops at GOAL or divergence
    (or after ``max_steps``, for the per-step timing)."""
    Y, mask = energy.observed, energy.mask
    m = int(mask.sum())
    W = [np.eye(D) * SCALE ** (1.0 / N) for _ in range(N)]
    mse0 = None
    t0 = time.perf_counter()
    steps = 0
    while True:
        B = [W[0]]
        for k in range(1, N):
            B.append(W[k] @ B[-1])
        R = (B[-1] - Y) * mask
        mse = float((R * R).sum()) / m
        mse0 = mse if mse0 is None else mse0
        if not np.isfinite(mse) or mse > 1e3 * mse0:
            status = "diverged"
            break
        if mse < GOAL:
            status = "reached"
            break
        if time.perf_counter() - t0 > budget_s or steps == max_steps:
            status = "budget"
            break
        G = R
        new = [None] * N
        for k in range(N - 1, 0, -1):
            new[k] = W[k] - lr * (G @ B[k - 1].T)
            G = W[k].T @ G
        new[0] = W[0] - lr * G
        W = new
        steps += 1
    return {
        "lr": lr,
        "status": status,
        "steps": steps,
        "seconds": time.perf_counter() - t0,
        "mse": mse,
    }


def gd_rows(N: int, energy) -> dict:
    """The halving search for the largest stable learning rate, and half of it."""
    tried = []
    lr = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        while True:
            run = plain_gd(N, lr, energy, GD_BUDGET_S)
            tried.append({k: run[k] for k in ("lr", "status", "steps", "seconds")})
            if run["status"] != "diverged":
                break
            lr /= 2
        half = plain_gd(N, lr / 2, energy, GD_BUDGET_S)
    return {"largest_stable": run, "half": half, "search": tried}


def library_gd(N: int, lr: float, energy, budget_s: float) -> dict:
    """``dln_manifolds.training.gradient_descent`` on the same problem, start, rate and goal.

    The goal is checked every ``CHECK_EVERY`` steps through ``stop_when`` (a forward pass,
    which the plain loop gets for free from its residual); memory is independent of the
    number of steps (``save_every`` larger than any run).
    """
    W0 = np.stack([np.eye(D) * SCALE ** (1.0 / N)] * N)
    t0 = time.perf_counter()

    def stop_when(t, W):
        k = round(t / lr)
        if k % CHECK_EVERY or k == 0:
            return time.perf_counter() - t0 > budget_s
        return training_mse(end_to_end(W), energy) < GOAL

    res = gradient_descent(
        W0, energy, lr, max_steps=10**9, stop_when=stop_when, save_every=10**9, monitors={}
    )
    seconds = time.perf_counter() - t0
    mse = training_mse(end_to_end(res.final), energy)
    return {
        "lr": lr,
        "status": "reached" if mse < GOAL else "budget",
        "steps": int(res.n_steps),
        "seconds": seconds,
        "mse": mse,
        "check_every": CHECK_EVERY,
    }


def per_step_ratio(N: int, lr: float, energy) -> dict:
    """Library over plain seconds per step on ``RATIO_STEPS`` steps, interleaved, best of
    ``RATIO_REPEATS`` each (same start and rate; the library with no monitors, no goal check
    and ``save_every`` larger than the run)."""
    W0 = np.stack([np.eye(D) * SCALE ** (1.0 / N)] * N)
    plain, lib = [], []
    for _ in range(RATIO_REPEATS):
        run = plain_gd(N, lr, energy, 1e9, max_steps=RATIO_STEPS)
        plain.append(run["seconds"] / max(run["steps"], 1))
        t0 = time.perf_counter()
        gradient_descent(W0, energy, lr, max_steps=RATIO_STEPS, save_every=10**9, monitors={})
        lib.append((time.perf_counter() - t0) / RATIO_STEPS)
    return {
        "steps": RATIO_STEPS,
        "repeats": RATIO_REPEATS,
        "plain_seconds_per_step": min(plain),
        "library_seconds_per_step": min(lib),
        "ratio": min(lib) / min(plain),
    }


def run_flow(N: int, energy, options: dict, save: bool) -> dict:
    X0 = SCALE * np.eye(D)
    CountingEnergy.calls[0] = 0
    t0 = time.perf_counter()
    res = end_to_end_flow(
        X0,
        energy,
        N,
        T_MAX,
        dt=1e-2,
        save_every=1 if save else 10**9,
        stop_when=lambda t, X: training_mse(X, energy) < GOAL,
        **options,
    )
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "steps": res.n_steps,
        "rejected": res.n_rejected,
        "evaluations": CountingEnergy.calls[0],
        "t_stop": float(res.times[-1]),
        "mse": training_mse(res.final, energy),
        "result": res if save else None,
    }


def path_error(N: int, energy, res) -> dict:
    """Max relative distance to the tight reference at checkpoints of the flow's own steps."""
    idx = np.unique(np.linspace(0, len(res.times) - 1, N_CHECKPOINTS + 1).astype(int))
    X_ref, t_ref, h = res.states[0], 0.0, 1e-3
    errors = [0.0]
    CountingEnergy.calls[0] = 0
    t0 = time.perf_counter()
    for i in idx[1:]:
        seg = end_to_end_flow(
            X_ref,
            energy,
            N,
            res.times[i] - t_ref,
            dt=min(h, res.times[i] - t_ref),
            evaluation="svd",
            save_every=10**9,
            **REFERENCE,
        )
        X_ref, t_ref = seg.final, res.times[i]
        h = max(float(np.diff(seg.times)[-1]), 1e-6)
        errors.append(float(np.linalg.norm(res.states[i] - X_ref) / np.linalg.norm(X_ref)))
    errors = np.asarray(errors)
    return {
        "max_relative": float(errors.max()),
        "at_time": float(res.times[idx][errors.argmax()]),
        "final_relative": float(errors[-1]),
        "checkpoints": len(idx),
        "reference_evaluations": CountingEnergy.calls[0],
        "reference_seconds": time.perf_counter() - t0,
    }


def table_rows(results: dict) -> list[dict]:
    """Flat rows (one per depth and solver) for the performance page."""
    rows = []
    for N, row in results["depths"].items():
        gd = row["gd"]
        base = gd["largest_stable"]["seconds"]
        for key, label in (("largest_stable", "plain GD, largest stable lr"), ("half", "plain GD")):
            g = gd[key]
            rows.append(
                {
                    "N": int(N),
                    "solver": f"{label} {g['lr']:g}",
                    "status": g["status"],
                    "steps": g["steps"],
                    "velocity evaluations": g["steps"],
                    "seconds": round(g["seconds"], 3),
                    "time / largest-stable GD": round(g["seconds"] / base, 3),
                    "path error": "",
                }
            )
        flows = [
            (
                "flow: "
                + ", ".join(
                    f"{k}={v}" for k, v in results["chosen_flow"].items() if k != "adaptive"
                ),
                row["flow"],
            )
        ]
        flows += [("flow: " + name, o) for name, o in row["others"].items()]
        for label, f in flows:
            pe = f.get("path_error")
            rows.append(
                {
                    "N": int(N),
                    "solver": label,
                    "status": "reached" if f["mse"] < GOAL else "not reached",
                    "steps": f["steps"],
                    "velocity evaluations": f["evaluations"],
                    "seconds": round(f["seconds"], 3),
                    "time / largest-stable GD": round(f["seconds"] / base, 3),
                    "path error": f"{pe['max_relative']:.1e}" if pe else "not measured",
                }
            )
    return rows


def main() -> dict:
    _, mask, plain_energy, _ = problem(D, RANK, M, SEED)
    energy = CountingEnergy(mask, plain_energy.observed)
    results: dict = {
        "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "problem": {"d": D, "rank": RANK, "observed": M, "seed": SEED, "start": "1e-3 I"},
        "goal": "training MSE = 2 E / |Omega| = mean over observed entries of (X - Y)^2 < 1e-6",
        "chosen_flow": CHOSEN,
        "reference": {**REFERENCE, "evaluation": "svd"},
        "depths": {},
    }
    print(f"matrix completion d={D} rank={RANK} m={M}, start {SCALE} I, goal MSE < {GOAL}")
    for N in DEPTHS:
        row: dict = {}
        gd = gd_rows(N, energy)
        row["gd"] = gd
        lib = library_gd(N, gd["largest_stable"]["lr"], energy, GD_BUDGET_S)
        plain = gd["largest_stable"]
        lib["time_per_step_vs_plain"] = (lib["seconds"] / max(lib["steps"], 1)) / (
            plain["seconds"] / max(plain["steps"], 1)
        )
        lib["per_step"] = per_step_ratio(N, gd["largest_stable"]["lr"], energy)
        row["library_gd"] = lib
        flow = run_flow(N, energy, CHOSEN, save=False)
        saved = run_flow(N, energy, CHOSEN, save=True)
        flow["path_error"] = path_error(N, energy, saved["result"])
        del flow["result"]
        row["flow"] = flow
        row["others"] = {}
        for name, options in OTHERS.items():
            other = run_flow(N, energy, options, save=name in PATH_ERROR_OF)
            if name in PATH_ERROR_OF:
                other["path_error"] = path_error(N, energy, other["result"])
            del other["result"]
            row["others"][name] = other
        gd_best = min(gd["largest_stable"]["seconds"], gd["half"]["seconds"])
        row["speedup_vs_largest_stable_gd"] = gd["largest_stable"]["seconds"] / flow["seconds"]
        row["speedup_vs_best_gd"] = gd_best / flow["seconds"]
        row["targets"] = {
            "path_error_below_1e-3": flow["path_error"]["max_relative"] < 1e-3,
            "flow_time_vs_largest_stable_gd": (
                "within 2x" if N == 3 else "at least 10x faster",
                bool(
                    flow["seconds"] <= 2 * gd["largest_stable"]["seconds"]
                    if N == 3
                    else row["speedup_vs_largest_stable_gd"] >= 10
                ),
            ),
            "library_gd_per_step_within_1.3x": lib["per_step"]["ratio"] <= 1.3,
        }
        results["depths"][str(N)] = row
        ls, hf = gd["largest_stable"], gd["half"]
        print(
            f"N={N:2d} GD lr={ls['lr']:.4g}: {ls['status']} {ls['steps']} steps "
            f"{ls['seconds']:.2f} s | lr={hf['lr']:.4g}: {hf['status']} {hf['steps']} steps "
            f"{hf['seconds']:.2f} s"
        )
        pe = flow["path_error"]
        print(
            f"      flow (chosen): {flow['steps']} steps, {flow['evaluations']} evaluations, "
            f"{flow['seconds']:.2f} s, T={flow['t_stop']:.1f}, path error "
            f"{pe['max_relative']:.1e} (reference {pe['reference_seconds']:.0f} s)"
        )
        print(
            f"      speedup vs largest-stable GD {row['speedup_vs_largest_stable_gd']:.1f}x, "
            f"vs best GD {row['speedup_vs_best_gd']:.1f}x"
        )
        for name, o in row["others"].items():
            pe = o.get("path_error")
            print(
                f"      {name}: {o['steps']} steps, {o['evaluations']} evaluations, "
                f"{o['seconds']:.2f} s" + (f", path error {pe['max_relative']:.1e}" if pe else "")
            )
        print(f"      library GD per step / plain: {lib['per_step']['ratio']:.2f}")
        print(f"      targets: {row['targets']}")
    results["load_average_end"] = os.getloadavg()
    results["table"] = table_rows(results)
    path = write_results("training", results)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
