r"""Rosenbrock-W steps for the stiff phases of the training flow: a measured negative result.

The question (issue 12, docs/performance.rst "Flow solvers", "Rosenbrock-W"): in the slow
growth phases of the matrix-completion flow of ``bench_training.py`` dopri5 is held by
stability (step about 0.13, spectral radius about 25 at N = 8). A W-method (a linearly
implicit Runge-Kutta method that keeps its order for *any* matrix T in place of the
Jacobian J) with a cheap structured T would be stable at longer steps. The structured T
replaces the mask :math:`P_\Omega` of :math:`E''` by :math:`c I`:

- upstairs (the state of the chosen flow: the balanced layers W, velocity
  :func:`~dln_manifolds.flows.learning.factor_velocity`, J about :math:`-D^T P_\Omega D` with
  D the differential of the product map): :math:`T = -c D^T D`, and by Woodbury
  :math:`(I + \kappa D^T D)^{-1} v = v - \kappa D^T (I + \kappa D D^T)^{-1} D v` with
  :math:`D D^T = \mathcal{A}_{N,X}` at balanced W, diagonal in the SVD frame of X (one SVD
  per step, 2N - 2 products for D v and for D^T z);
- closer W-matrices: the Gauss-Newton Jacobian :math:`-D^T P_\Omega D` (the Jacobian without
  its curvature term, E' times the second derivative of the product map), solved exactly by
  Woodbury and conjugate gradients on the observed entries (:math:`\mathcal{A}_{N,X}` in the
  frame, no velocity evaluation), and the same restricted to the 5 x 5 block of the largest
  singular values (a 25 x 25 system, thin products);
- the bound: the same method with the *exact* Jacobian (linear systems by conjugate
  gradients on :math:`I - h\gamma J`, Jacobian-vector products by a finite difference of the
  velocity), the best any W-matrix can do; its solves are counted apart.

Method: ROS34PW2 (Rang & Angermann 2005, Table: 4 stages, order 3 for any W, embedded order
2, L-stable), written in the transformed variables of Hairer & Wanner, *Solving ODEs II*,
IV.7 (eq. 7.4'), so that T enters only through the solves; the error of the layers is
controlled entrywise as in the chosen flow (rtol 1e-3, atol 1e-8), PI control as in
:func:`~dln_manifolds.flows.integrate_flow`.

Each row integrates one window [t_a, t_b] of the flow from the tight reference's state at t_a
(a slow-growth phase between two escapes) and reports the velocity evaluations of the stages,
the steps and the relative distance to the reference at t_b; the library's dopri5,
dopri5-rkc and dopri5-erkc integrate the same window in the same run. Then, at N = 8, the
W-method (T = 0 and T = -0.2 D^T D), the chosen solver of ``bench_training.py`` and
dopri5-rkc at rtol 3e-3 run from X0 to the goal, with their path errors (``full``).

``python benchmarks/explore_rosw.py --check-order`` prints the convergence slopes of the
W-step on a small nonlinear system with T = 0, T = J and two matrices unrelated to J
(about 3 for each: the W-method property, and a check of the transcribed coefficients).

Writes ``benchmarks/results/rosw_windows.json``. Run: ``python benchmarks/explore_rosw.py``
(about 15 minutes on one thread, most of it the exact-Jacobian bound, the references and
the full runs).

References
----------
- J. Rang and L. Angermann, New Rosenbrock W-methods of order 3 for partial
  differential algebraic equations of index 1, BIT 45 (2005) 761-787 (ROS34PW2).
- E. Hairer and G. Wanner, *Solving Ordinary Differential Equations II*, 2nd ed., Springer
  (1996), IV.7 (Rosenbrock and W-methods, transformed variables).
"""

from __future__ import annotations

import os

from _common import single_blas_thread, write_results

single_blas_thread()

import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
from bench_training import (  # noqa: E402
    CHOSEN,
    GOAL,
    RANK,
    SCALE,
    SEED,
    T_MAX,
    CountingEnergy,
    D,
    M,
    Reference,
    path_error,
    run_flow,
    training_mse,
)

from dln_manifolds import balanced_point  # noqa: E402
from dln_manifolds.depth_metric import DepthFrame  # noqa: E402
from dln_manifolds.experiments.completion_at_scale import problem  # noqa: E402
from dln_manifolds.flows import integrate_flow  # noqa: E402
from dln_manifolds.flows.learning import factor_velocity  # noqa: E402
from dln_manifolds.network import end_to_end  # noqa: E402

RTOL, ATOL = 1e-3, 1e-8
#: (N, t_a, t_b): slow growth between escapes (docs/performance.rst, "Flow solvers")
WINDOWS = ((8, 48.0, 60.0), (8, 66.0, 80.0), (16, 48.0, 60.0))
C_VALUES = {8: (0.0, 0.05, 0.2, 1.0), 16: (0.0, 0.2)}
LIBRARY = ("dopri5", "dopri5-rkc", "dopri5-erkc")
FULL_C = (0.0, 0.2)
FULL_LIBRARY = {
    "dopri5-erkc, rtol 1e-3 (chosen)": CHOSEN,
    "dopri5-rkc, rtol 3e-3": {**CHOSEN, "method": "dopri5-rkc", "rtol": 3e-3},
}

# ROS34PW2 (Rang & Angermann 2005) in the classical form of Hairer & Wanner (1996), IV.7:
# (I - h gamma T) k_i = F(y + h sum_j alpha_ij k_j) + h T sum_j gamma_ij k_j
_G = 0.435866521508459
_ALPHA = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.87173304301691801, 0.0, 0.0, 0.0],
        [0.84457060015369423, -0.11299064236484185, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ]
)
_GAMMA = np.array(
    [
        [_G, 0.0, 0.0, 0.0],
        [-0.87173304301691801, _G, 0.0, 0.0],
        [-0.90338057013044082, 0.054180672388095326, _G, 0.0],
        [0.24212380706095346, -1.2232505839045147, 0.54526025533510214, _G],
    ]
)
_B = np.array([0.24212380706095346, -1.2232505839045147, 1.5452602553351020, _G])
_B_HAT = np.array([0.37810903145819369, -0.096042292212423178, 0.5, 0.2179332607542295])


def transformed_tableau() -> dict:
    """Hairer & Wanner (1996), IV.7 (7.4'): with u_i = h sum_j gamma_ij k_j,
    (I/(h gamma) - T) u_i = F(y + sum_j a_ij u_j) + sum_j (c_ij / h) u_j, y1 = y + sum m_j u_j."""
    inv = np.linalg.inv(_GAMMA)

    def clean(x):
        return np.where(np.abs(x) < 1e-12, 0.0, x)

    m = _B @ inv
    return {
        "a": clean(_ALPHA @ inv),
        "c": clean(np.diag(1.0 / np.diag(_GAMMA)) - inv),
        "m": clean(m),
        "e": clean(m - _B_HAT @ inv),
    }


TAB = transformed_tableau()


class WoodburySolve:
    """v -> (I + kappa D^T D)^{-1} v at the layers W, through D D^T = A_{N,X} (exact at a
    balanced W; elsewhere it defines another fixed W-matrix, which a W-method allows)."""

    def __init__(self, W: np.ndarray):
        self.W, self.N = W, W.shape[0]
        self.B = [W[0]]
        for p in range(1, self.N):
            self.B.append(W[p] @ self.B[-1])
        self.frame = DepthFrame(self.B[-1], self.N, check=False)

    def D(self, v):  # sum_p W_N..W_{p+1} v_p W_{p-1}..W_1 (Horner): 2N - 2 products
        Z = v[0]
        for p in range(1, self.N):
            Z = self.W[p] @ Z + v[p] @ self.B[p - 1]
        return Z

    def DT(self, z):  # (W_N..W_{p+1})^T z (W_{p-1}..W_1)^T: 2N - 2 products
        out = np.empty_like(self.W)
        for p in range(self.N - 1, 0, -1):
            out[p] = z @ self.B[p - 1].T
            z = self.W[p].T @ z
        out[0] = z
        return out

    def __call__(self, v, kappa):
        f = self.frame
        zh = (f.U.T @ self.D(v) @ f.Vh.T) / (1.0 + kappa * f.M)
        return v - kappa * self.DT(f.U @ zh @ f.Vh)


class GaussNewtonSolve(WoodburySolve):
    """v -> (I + kappa D^T P D)^{-1} v: T = -D^T P_Omega D, the Jacobian without its curvature
    term (E' times the second derivative of the product map), by Woodbury
    v - kappa D^T P (I + kappa P A_{N,X} P)^{-1} P D v with CG on the observed entries (A in the
    frame: 4 products per iteration, no velocity evaluation)."""

    def __init__(self, W: np.ndarray, mask: np.ndarray, counter: list):
        super().__init__(W)
        self.mask, self.counter = mask, counter

    def __call__(self, v, kappa):
        f, P = self.frame, self.mask

        def apply(Z):
            return Z + kappa * (f.U @ (f.M * (f.U.T @ Z @ f.Vh.T)) @ f.Vh) * P

        b = self.D(v) * P
        x = b.copy()
        r = b - apply(x)
        p, rr, nb = r.copy(), float(np.vdot(r, r)), float(np.linalg.norm(b))
        for _ in range(200):
            if np.sqrt(rr) <= 1e-10 * nb:
                break
            Ap = apply(p)
            self.counter[0] += 1
            alpha = rr / float(np.vdot(p, Ap))
            x += alpha * p
            r -= alpha * Ap
            rr, rr_old = float(np.vdot(r, r)), rr
            p = r + (rr / rr_old) * p
        self.counter[1] += 1
        return v - kappa * self.DT(x)


class TopBlockSolve(WoodburySolve):
    """T = -Q G Q^T: the Gauss-Newton Jacobian restricted to the r x r block of the largest
    singular values (r = 5, the target's rank): Q_ij = D^T(u_i v_j^T)/sqrt(m_ij), G the r^2 x r^2
    matrix sqrt(m_kl m_ij) <u_k v_l^T, P_Omega(u_i v_j^T)> (O(|Omega| r^4)); the solve in thin
    products (r x d and d x r per layer)."""

    def __init__(self, W: np.ndarray, mask: np.ndarray, r: int = 5):
        super().__init__(W)
        f, N = self.frame, self.N
        Ur, Vr = f.U[:, :r], f.Vh[:r].T
        self.L = [None] * N
        self.L[N - 1] = Ur.T
        for p in range(N - 1, 0, -1):
            self.L[p - 1] = self.L[p] @ W[p]
        self.R = [Vr] + [self.B[p - 1] @ Vr for p in range(1, N)]
        self.sq = np.sqrt(f.M[:r, :r])
        rows, cols = np.nonzero(mask)
        phi = (Ur[rows][:, :, None] * Vr[cols][:, None, :]).reshape(len(rows), r * r)
        sq = self.sq.reshape(-1)
        self.G = sq[:, None] * (phi.T @ phi) * sq[None, :]
        self.r = r

    def __call__(self, v, kappa):
        r = self.r
        y = (sum(self.L[p] @ v[p] @ self.R[p] for p in range(self.N)) / self.sq).reshape(-1)
        z = (np.linalg.solve(np.eye(r * r) + kappa * self.G, y) - y).reshape(r, r) / self.sq
        out = v.copy()
        for p in range(self.N):
            out[p] += self.L[p].T @ z @ self.R[p].T
        return out


class ExactSolve:
    """v -> (I - kappa J)^{-1} v by conjugate gradients (I - kappa J is symmetric: J is minus
    the Hessian of E o phi), J v by a finite difference of the velocity (counted apart)."""

    def __init__(self, velocity, W, F0, counter):
        self.velocity, self.W, self.F0, self.counter = velocity, W, F0, counter

    def _jv(self, v):
        eps = 1e-7 * max(1.0, float(np.linalg.norm(self.W))) / float(np.linalg.norm(v))
        calls = CountingEnergy.calls[0]
        out = (self.velocity(self.W + eps * v) - self.F0) / eps
        self.counter[0] += CountingEnergy.calls[0] - calls
        return out

    def __call__(self, b, kappa):
        x = b.copy()
        r = b - (x - kappa * self._jv(x))
        p, rr, nb = r.copy(), float(np.vdot(r, r)), float(np.linalg.norm(b))
        for _ in range(60):
            if np.sqrt(rr) < 1e-10 * nb:
                break
            Ap = p - kappa * self._jv(p)
            alpha = rr / float(np.vdot(p, Ap))
            x += alpha * p
            r -= alpha * Ap
            rr, rr_old = float(np.vdot(r, r)), rr
            p = r + (rr / rr_old) * p
        return x


def w_step(velocity, W, F0, h, solve):
    """One ROS34PW2 step; ``solve(v, kappa)`` applies (I - kappa T)^{-1} (None: T = 0)."""
    a, c, g = TAB["a"], TAB["c"], _G
    u = []
    for i in range(4):
        F = F0 if i == 0 else velocity(W + sum(a[i, j] * u[j] for j in range(i) if a[i, j]))
        rhs = F + sum((c[i, j] / h) * u[j] for j in range(i) if c[i, j])
        u.append((h * g) * (rhs if solve is None else solve(rhs, h * g)))
    W1 = W + sum(TAB["m"][j] * u[j] for j in range(4))
    return W1, sum(TAB["e"][j] * u[j] for j in range(4) if TAB["e"][j])


def check_order() -> dict:
    """Convergence slopes of :func:`w_step` on a nonlinear 2 x 2 system to t = 1, with T = 0,
    T = J(y0) and two matrices unrelated to J: tending to 3 for each (the W-method property; a
    misprinted coefficient of the tableau would show here), slowly where h |T| is large."""
    from scipy.integrate import solve_ivp

    def f(y):
        return np.array([-(y[0] ** 2) + np.sin(y[1]), y[0] * y[1] - 0.5 * y[1]])

    y0 = np.array([1.0, 0.5])
    exact = solve_ivp(lambda t, y: f(y), (0, 1), y0, rtol=1e-13, atol=1e-13).y[:, -1]
    matrices = {
        "T = 0": np.zeros((2, 2)),
        "T = J(y0)": np.array([[-2.0, np.cos(0.5)], [0.5, 0.5]]),
        "T unrelated 1": np.array([[3.0, -1.0], [2.0, -5.0]]),
        "T unrelated 2": np.array([[-20.0, 4.0], [1.0, -0.3]]),
    }
    slopes = {}
    for name, T in matrices.items():
        errors = []
        for n in (10, 20, 40, 80, 160, 320):
            y = y0.copy()
            for _ in range(n):

                def solve(v, kappa, T=T):
                    return np.linalg.solve(np.eye(2) - kappa * T, v)

                y, _ = w_step(f, y, f(y), 1.0 / n, solve)
            errors.append(float(np.linalg.norm(y - exact)))
        ratios = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        slopes[name] = [round(float(r), 2) for r in ratios]
    return slopes


def w_window(velocity, W, t_a, t_b, make_solve, stop=None) -> dict:
    """Adaptive ROS34PW2 from (t_a, W) to t_b (or to the first step where ``stop(X)``);
    ``make_solve(W, F0)`` builds the W-solve. Keeps the end-to-end matrix of every step."""
    t, h, err_prev, rejected_last = t_a, 0.05, None, False
    F0 = velocity(W)
    steps, rejected = 0, 0
    times, states = [t], [end_to_end(W)]
    while t < t_b - 1e-12:
        step = min(h, t_b - t)
        solve = make_solve(W, F0)
        with np.errstate(all="ignore"):
            W1, err = w_step(velocity, W, F0, step, None if solve is None else solve)
        scale = ATOL + RTOL * np.maximum(np.abs(W), np.abs(W1))
        err_norm = float(np.max(np.abs(err) / scale))
        if not np.isfinite(err_norm) or err_norm > 1.0:
            rejected += 1
            rejected_last = True
            h = step * max(0.2, 0.9 * (err_norm if np.isfinite(err_norm) else 1e6) ** (-1 / 3))
            continue
        err_norm = max(err_norm, 1e-10)
        grow = 0.9 * err_norm ** (-1 / 3 + 0.03) * (err_prev**0.04 if err_prev else 1.0)
        h = step * min(1.0 if rejected_last else 5.0, grow)
        err_prev, rejected_last = max(err_norm, 1e-4), False
        t, W = t + step, W1
        steps += 1
        F0 = velocity(W)
        times.append(t)
        states.append(end_to_end(W))
        if stop is not None and stop(states[-1]):
            break
    return {
        "W": W,
        "steps": steps,
        "rejected": rejected,
        "times": np.asarray(times),
        "states": np.asarray(states),
    }


def full_runs(energy, velocity, reference) -> list[dict]:
    """N = 8 from X0 to the goal: the W-method (T = -c D^T D, c in ``FULL_C``) against the
    chosen solver and dopri5-rkc of ``bench_training.py``, in the same run, with path errors."""
    N, rows = 8, []

    def goal(X):
        return training_mse(X, energy) < GOAL

    for c in FULL_C:

        def make_solve(W, F0, c=c):
            if c == 0:
                return None
            s = WoodburySolve(W)
            return lambda v, kappa: s(v, c * kappa)

        CountingEnergy.calls[0] = 0
        t0 = time.perf_counter()
        out = w_window(velocity, balanced_point(SCALE * np.eye(D), N), 0.0, T_MAX, make_solve, goal)
        seconds = time.perf_counter() - t0
        evaluations = CountingEnergy.calls[0]
        res = SimpleNamespace(times=out["times"], states=out["states"])
        rows.append(
            {
                "solver": f"W-method ROS34PW2, T = -{c:g} D^T D" if c else "ROS34PW2, T = 0",
                "evaluations": evaluations,
                "steps": out["steps"],
                "seconds": round(seconds, 2),
                "path error": float(f"{path_error(reference, res)['max_relative']:.2e}"),
            }
        )
        print(rows[-1], flush=True)
    for name, options in FULL_LIBRARY.items():
        run = run_flow(N, energy, options, save=True)
        rows.append(
            {
                "solver": name,
                "evaluations": run["evaluations"],
                "steps": run["steps"],
                "seconds": round(run["seconds"], 2),
                "path error": float(f"{path_error(reference, run['result'])['max_relative']:.2e}"),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> dict:
    _, mask, plain_energy, _ = problem(D, RANK, M, SEED)
    energy = CountingEnergy(mask, plain_energy.observed)

    def velocity(W):
        return factor_velocity(W, energy.gradient)

    rows = []
    results = {
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "tolerances": {"rtol": RTOL, "atol": ATOL, "error": "entrywise on the layers"},
        "method": "ROS34PW2 (Rang & Angermann 2005)",
    }
    references = {}
    for N, t_a, t_b in WINDOWS:
        reference = references.setdefault(N, Reference(N, energy))
        X_a, X_b = reference.at(t_a), reference.at(t_b)
        W_a = balanced_point(X_a, N)

        def record(solver, W, evaluations, seconds, N=N, t_a=t_a, t_b=t_b, X_b=X_b, **extra):
            X = end_to_end(W)
            row = {
                "N": N,
                "window": f"{t_a:g}-{t_b:g}",
                "solver": solver,
                "stage evaluations": evaluations,
                "distance to reference at t_b": float(
                    f"{np.linalg.norm(X - X_b) / np.linalg.norm(X_b):.2e}"
                ),
                "seconds": round(seconds, 2),
                **extra,
            }
            rows.append(row)
            print(row, flush=True)

        variants = [
            (f"W-method, T = -{c:g} D^T D" if c else "W-method, T = 0", c) for c in C_VALUES[N]
        ]
        variants += [
            ("W-method, T = Gauss-Newton on the top 5 x 5 block", "block"),
            ("W-method, T = -D^T P D (Gauss-Newton; CG on Omega)", "gauss-newton"),
            ("W-method, exact Jacobian (CG; solves counted apart)", None),
        ]
        for name, c in variants:
            counter = [0, 0]
            cg = [0, 0]  # Gauss-Newton: CG iterations, solves
            if c == "block":

                def make_solve(W, F0):
                    return TopBlockSolve(W, mask)
            elif c == "gauss-newton":

                def make_solve(W, F0, cg=cg):
                    return GaussNewtonSolve(W, mask, cg)
            elif c is None:

                def make_solve(W, F0, counter=counter):
                    return ExactSolve(velocity, W, F0, counter)
            elif c == 0:

                def make_solve(W, F0):
                    return None
            else:

                def make_solve(W, F0, c=c):
                    s = WoodburySolve(W)
                    return lambda v, kappa: s(v, c * kappa)

            CountingEnergy.calls[0] = 0
            t0 = time.perf_counter()
            out = w_window(velocity, W_a, t_a, t_b, make_solve)
            seconds = time.perf_counter() - t0
            record(
                name,
                out["W"],
                CountingEnergy.calls[0] - counter[0],
                seconds,
                steps=out["steps"],
                rejected=out["rejected"],
                mean_step=round((t_b - t_a) / max(out["steps"], 1), 4),
                solve_evaluations=counter[0],
                cg_iterations_per_solve=round(cg[0] / max(cg[1], 1), 1),
            )
        for method in LIBRARY:
            CountingEnergy.calls[0] = 0
            t0 = time.perf_counter()
            res = integrate_flow(
                lambda t, W: velocity(W),
                W_a,
                t_b - t_a,
                dt=0.05,
                method=method,
                adaptive=True,
                rtol=RTOL,
                atol=ATOL,
                save_every=10**9,
            )
            seconds = time.perf_counter() - t0
            record(
                method,
                res.final,
                CountingEnergy.calls[0],
                seconds,
                steps=res.n_steps,
                rejected=res.n_rejected,
                mean_step=round((t_b - t_a) / max(res.n_steps, 1), 4),
                solve_evaluations=0,
            )
    results["full"] = full_runs(energy, velocity, references[8])
    results["load_average_end"] = os.getloadavg()
    results["table"] = rows
    path = write_results("rosw_windows", results)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    import sys

    if "--check-order" in sys.argv:
        print(check_order())
    else:
        main()
