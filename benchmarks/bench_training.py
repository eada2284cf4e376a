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
   A_{N,X}, which shares no code with the factor evaluation) at ~30 checkpoints of the
   flow's own accepted steps: the largest |X(t) - X_ref(t)|_F / |X_ref(t)|_F over the
   checkpoints. The reference is integrated once per depth (``Reference``: every
   ``REFERENCE_SAVE_EVERY``-th of its steps kept) and restarted, at the same tolerances,
   from the last kept state before each checkpoint.
3. Other flow solvers for the record, each with its path error (``OTHERS``: the previous
   choice, plain dopri5 with ``evaluation="auto"``; dopri5 with the chosen tolerances, which
   separates the effect of the tolerances from that of the switch; at N = 8 and 16 the
   ``CANDIDATES`` of docs/performance.rst: ``error_scale="norm"``, looser tolerances, RKC
   as the stiff solver, the SVD evaluation). These are timed with every step saved (a copy
   of the d x d end-to-end matrix per step, small against a step).
4. The cost of one plain GD step, one velocity evaluation through the factors and one
   through the SVD at the same depth (``evaluation_costs``, best of 5 loops).

``gradient_descent`` of ``dln_manifolds.training`` runs at the plain loop's largest stable
rate to the goal; its time per step is also measured against the plain loop's on a fixed
number of steps, the two interleaved, best of ``RATIO_REPEATS`` (less sensitive to the
load of a shared machine than the two runs to the goal).

The machine may be shared: only ratios measured in this run are meaningful; the load average
is recorded. Writes ``benchmarks/results/training.json``.
Run: ``.venv/bin/python benchmarks/bench_training.py`` (10-30 minutes, most of it the GD
baselines and the references).
"""

from __future__ import annotations

import os

from _common import single_blas_thread, write_results

single_blas_thread()

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from dln_manifolds.depth_metric import depth_operator  # noqa: E402
from dln_manifolds.energies import MatrixCompletionEnergy  # noqa: E402
from dln_manifolds.experiments.completion_at_scale import problem  # noqa: E402
from dln_manifolds.flows import end_to_end_flow  # noqa: E402
from dln_manifolds.flows.learning import factor_velocity  # noqa: E402
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
_PREVIOUS = "dopri5, rtol 1e-3, atol 1e-6, evaluation auto (the previous choice)"
OTHERS = {
    _PREVIOUS: {
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
#: Candidates measured at the depths where the speed target is 10x (docs/performance.rst, "Flow
#: solvers": the error scale and tolerance, the stiff solver, the evaluation).
CANDIDATES = {
    "dopri5-erkc, rtol 1e-3, error_scale norm, factors": {
        "method": "dopri5-erkc",
        "rtol": 1e-3,
        "atol": 0.0,
        "error_scale": "norm",
    },
    "dopri5-erkc, rtol 1e-4, error_scale norm, factors": {
        "method": "dopri5-erkc",
        "rtol": 1e-4,
        "atol": 0.0,
        "error_scale": "norm",
    },
    "dopri5-erkc, rtol 3e-3, atol 1e-8, factors": {"method": "dopri5-erkc", "rtol": 3e-3},
    "dopri5-rkc, rtol 1e-3, atol 1e-8, factors": {"method": "dopri5-rkc", "rtol": 1e-3},
    "dopri5-rkc, rtol 3e-3, atol 1e-8, factors": {"method": "dopri5-rkc", "rtol": 3e-3},
    "dopri5-rkc, rtol 3e-3, atol 1e-8, svd": {
        "method": "dopri5-rkc",
        "rtol": 3e-3,
        "evaluation": "svd",
    },
    "rkc, rtol 1e-2, error_scale norm, factors": {
        "method": "rkc",
        "rtol": 1e-2,
        "atol": 0.0,
        "error_scale": "norm",
    },
}
CANDIDATE_DEPTHS = (8, 16)
RATIO_STEPS = 200  # steps per sample of the per-step comparison of gradient descents
RATIO_REPEATS = 5
REFERENCE = {"method": "dopri5", "adaptive": True, "rtol": 1e-9, "atol": 1e-12}
N_CHECKPOINTS = 30
REFERENCE_SAVE_EVERY = 10  # steps of the dense reference kept in memory
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


def evaluation_costs(N: int, energy, repeats: int = 20) -> dict:
    """Seconds of one plain GD step, one velocity evaluation through the balanced factors and
    one through the SVD (``depth_operator``), at a point of the trajectory; best of 5 loops."""
    rng = np.random.default_rng(1)
    W = np.stack([np.eye(D) + 0.1 * rng.standard_normal((D, D)) / np.sqrt(D)] * N)
    X = end_to_end(W)
    Y, mask = energy.observed, energy.mask

    def gd_step():
        B = [W[0]]
        for k in range(1, N):
            B.append(W[k] @ B[-1])
        G = (B[-1] - Y) * mask
        new = [None] * N
        for k in range(N - 1, 0, -1):
            new[k] = W[k] - 0.1 * (G @ B[k - 1].T)
            G = W[k].T @ G
        new[0] = W[0] - 0.1 * G

    calls = CountingEnergy.calls[0]
    out = {}
    for name, f in (
        ("plain_gd_step", gd_step),
        ("factor_velocity", lambda: factor_velocity(W, energy.gradient)),
        ("svd_velocity", lambda: depth_operator(X, N, energy.gradient(X))),
    ):
        best = np.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(repeats):
                f()
            best = min(best, (time.perf_counter() - t0) / repeats)
        out[name] = best
    CountingEnergy.calls[0] = calls
    return out


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


class Reference:
    """The tight reference of one depth, integrated once from X0 and kept every
    ``REFERENCE_SAVE_EVERY`` steps; :meth:`at` restarts it (same tolerances) from the last
    kept state before t. Extended on demand when a flow stops later than it reaches."""

    def __init__(self, N: int, energy):
        self.N, self.energy = N, energy
        self.times, self.states = np.zeros(1), (SCALE * np.eye(D))[None]
        self.seconds, self.evaluations = 0.0, 0

    def _integrate(self, X, T, save_every):
        calls = CountingEnergy.calls[0]
        t0 = time.perf_counter()
        res = end_to_end_flow(
            X,
            self.energy,
            self.N,
            T,
            dt=min(1e-3, T),
            evaluation="svd",
            save_every=save_every,
            monitors={},
            **REFERENCE,
        )
        self.seconds += time.perf_counter() - t0
        self.evaluations += CountingEnergy.calls[0] - calls
        CountingEnergy.calls[0] = calls  # not counted against the flow being measured
        return res

    def at(self, t: float) -> np.ndarray:
        if t > self.times[-1]:
            horizon = max(1.1 * t, t + 1.0) - self.times[-1]
            res = self._integrate(self.states[-1], horizon, REFERENCE_SAVE_EVERY)
            self.times = np.concatenate([self.times, self.times[-1] + res.times[1:]])
            self.states = np.concatenate([self.states, res.states[1:]])
        k = int(np.searchsorted(self.times, t, side="right")) - 1
        if t - self.times[k] <= 1e-12 * max(t, 1.0):
            return self.states[k]
        return self._integrate(self.states[k], t - self.times[k], 10**9).final


def path_error(reference: Reference, res) -> dict:
    """Max relative distance to the tight reference at checkpoints of the flow's own steps."""
    idx = np.unique(np.linspace(0, len(res.times) - 1, N_CHECKPOINTS + 1).astype(int))
    errors = [0.0]
    seconds, evaluations = reference.seconds, reference.evaluations
    for i in idx[1:]:
        X_ref = reference.at(float(res.times[i]))
        errors.append(float(np.linalg.norm(res.states[i] - X_ref) / np.linalg.norm(X_ref)))
    errors = np.asarray(errors)
    return {
        "max_relative": float(errors.max()),
        "at_time": float(res.times[idx][errors.argmax()]),
        "final_relative": float(errors[-1]),
        "checkpoints": len(idx),
        "reference_evaluations": reference.evaluations - evaluations,
        "reference_seconds": reference.seconds - seconds,
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
        row["seconds_per_evaluation"] = evaluation_costs(N, energy)
        reference = Reference(N, energy)
        flow = run_flow(N, energy, CHOSEN, save=False)
        saved = run_flow(N, energy, CHOSEN, save=True)
        flow["path_error"] = path_error(reference, saved["result"])
        del flow["result"]
        row["flow"] = flow
        row["others"] = {}
        others = dict(OTHERS)
        if N in CANDIDATE_DEPTHS:
            others.update(
                {
                    k: {"adaptive": True, "atol": 1e-8, "evaluation": "factors", **v}
                    for k, v in CANDIDATES.items()
                }
            )
        for name, options in others.items():
            # timed with every step saved (copies of d x d matrices: small against a step)
            other = run_flow(N, energy, options, save=True)
            other["options"] = options
            other["path_error"] = path_error(reference, other["result"])
            del other["result"]
            row["others"][name] = other
            o = other
            print(
                f"      {name}: {o['steps']} steps, {o['evaluations']} evaluations, "
                f"{o['seconds']:.2f} s, path error {o['path_error']['max_relative']:.1e}",
                flush=True,
            )
        row["reference"] = {"seconds": reference.seconds, "evaluations": reference.evaluations}
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
        print(f"      library GD per step / plain: {lib['per_step']['ratio']:.2f}")
        print(f"      targets: {row['targets']}")
    results["load_average_end"] = os.getloadavg()
    results["table"] = table_rows(results)
    path = write_results("training", results)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
