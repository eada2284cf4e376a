"""Tangent projection on the fiber F_X: d^2 normal system vs the (N-1)d^2 system of [R] eq. 2.21.

One run, single BLAS thread, all timings per projection at a *new* point
(assembly + factorization/iterations + application), plus the cost of a
repeated projection at the same point (factor reused, as the pymanopt
adapter does):

1. (d, N) = (8, 16): :func:`dln_manifolds.fiber_tangent_projection` (dense
   d^2 x d^2 Cholesky of K = dphi dphi^*) against the dense (N-1)d^2 Gram
   system of [R] eq. 2.8/2.21 (H(b) = w^*(Z), block tridiagonal, assembled
   densely from Kronecker blocks and solved by Cholesky; then P Z = w_b).
   Target: >= 50x faster.
2. (d, N) = (64, 16): preconditioned CG (depth-operator preconditioner)
   against the dense d^2 x d^2 Cholesky of K (4096 x 4096). Target: faster.
   Two points: a random fiber point (group element of condition <= 4 applied
   to the center) and a nearly balanced one (the center moved by a small
   generator), where the preconditioner is almost exact.
3. Scaling in d (N = 8) and in N (d = 8) for the auto method (Cholesky up
   to d = 32, CG beyond) and for CG.

Writes ``benchmarks/results/fiber_projection.json`` and prints a table.
Run: ``.venv/bin/python benchmarks/bench_fiber_projection.py`` (about 1-2 min).
Timings on a shared machine are noisy; the ratios are taken within one run.
"""

from __future__ import annotations

import os

from _common import best_time, single_blas_thread, write_results

single_blas_thread()

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

from dln_manifolds import (  # noqa: E402
    FiberNormalSolver,
    balanced_point,
    end_to_end_differential,
    fiber_tangent_projection,
    generator_to_tangent,
    group_action,
    group_action_exp,
)


def random_fiber_point(rng, d: int, N: int) -> np.ndarray:
    """The center acted on by A_k = U diag(s) V^T, s log-uniform in [1/2, 2] (as random_point)."""
    X = rng.standard_normal((d, d)) + np.sqrt(d) * np.eye(d)
    a = np.empty((N - 1, d, d))
    for k in range(N - 1):
        U = np.linalg.qr(rng.standard_normal((d, d)))[0]
        V = np.linalg.qr(rng.standard_normal((d, d)))[0]
        a[k] = (U * np.exp(rng.uniform(np.log(0.5), np.log(2.0), d))) @ V
    return group_action(a, balanced_point(X, N))


def nearly_balanced_point(rng, d: int, N: int, eps: float = 1e-2) -> np.ndarray:
    X = rng.standard_normal((d, d)) + np.sqrt(d) * np.eye(d)
    return group_action_exp(eps * rng.standard_normal((N - 1, d, d)), balanced_point(X, N))


def dense_gram_projection(W: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Baseline: P Z = w_b with H(b) = w^*(Z), the dense (N-1)d^2 system of [R] eq. 2.8/2.21.

    Row-major vec: vec(L c R) = kron(L, R^T) vec(c). Blocks (generator k <-> layers W_k, W_{k+1}):
    diagonal kron(I, (W_k W_k^T)^T) + kron(W_{k+1}^T W_{k+1}, I); sub-diagonal
    -kron(W_k, W_k); super-diagonal -kron(W_{k+1}^T, W_{k+1}^T).
    """
    N, d, _ = W.shape
    n = N - 1
    I = np.eye(d)
    H = np.zeros((n * d * d, n * d * d))
    for k in range(n):
        Wk, Wk1 = W[k], W[k + 1]
        blk = slice(k * d * d, (k + 1) * d * d)
        H[blk, blk] = np.kron(I, (Wk @ Wk.T).T) + np.kron(Wk1.T @ Wk1, I)
        if k > 0:
            H[blk, (k - 1) * d * d : k * d * d] = -np.kron(Wk, Wk)
        if k < n - 1:
            H[blk, (k + 1) * d * d : (k + 2) * d * d] = -np.kron(Wk1.T, Wk1.T)
    rhs = (Z[:-1] @ np.swapaxes(W[:-1], 1, 2) - np.swapaxes(W[1:], 1, 2) @ Z[1:]).reshape(-1)
    b = scipy.linalg.cho_solve(scipy.linalg.cho_factor(H), rhs).reshape(n, d, d)
    return generator_to_tangent(W, b)


def comparison_1(rng) -> dict:
    d, N = 8, 16
    W = random_fiber_point(rng, d, N)
    Z = rng.standard_normal(W.shape)
    ours = fiber_tangent_projection(W, Z, method="cholesky")
    base = dense_gram_projection(W, Z)
    agree = float(np.linalg.norm(ours - base) / np.linalg.norm(base))
    t_base = best_time(lambda: dense_gram_projection(W, Z))
    t_ours = best_time(lambda W=W, Z=Z: fiber_tangent_projection(W, Z, method="cholesky"))
    solver = FiberNormalSolver(W, method="cholesky")
    t_cached = best_time(lambda: solver.project(Z), repeat=7)
    return {
        "d": d,
        "N": N,
        "baseline": "dense (N-1)d^2 = 960 Gram system of [R] eq. 2.21, Cholesky",
        "t_baseline_s": t_base,
        "t_ours_s": t_ours,
        "t_ours_cached_factor_s": t_cached,
        "speedup": t_base / t_ours,
        "speedup_cached": t_base / t_cached,
        "relative_difference": agree,
        "target": ">= 50x",
    }


def comparison_2(rng) -> list[dict]:
    d, N = 64, 16
    rows = []
    for kind, W in (
        ("random fiber point", random_fiber_point(rng, d, N)),
        ("nearly balanced point", nearly_balanced_point(rng, d, N)),
    ):
        Z = rng.standard_normal(W.shape)
        dZ = np.linalg.norm(end_to_end_differential(W, Z))
        t0 = time.perf_counter()
        chol = FiberNormalSolver(W, method="cholesky")
        P_chol = chol.project(Z)
        t_chol = time.perf_counter() - t0
        t0 = time.perf_counter()
        cg = FiberNormalSolver(W, method="cg", tol=1e-12)
        P_cg = cg.project(Z)
        t_cg = time.perf_counter() - t0
        t_cg = min(
            t_cg,
            best_time(
                lambda W=W, Z=Z: FiberNormalSolver(W, method="cg", tol=1e-12).project(Z),
                repeat=2,
                min_time=0.0,
            ),
        )
        rows.append(
            {
                "d": d,
                "N": N,
                "point": kind,
                "baseline": "dense 4096 x 4096 Cholesky of K (assembly + factor + solve)",
                "t_baseline_s": t_chol,
                "t_cg_s": t_cg,
                "speedup": t_chol / t_cg,
                "cg_iterations": cg.last_iterations,
                "cg_tangency_defect": float(np.linalg.norm(end_to_end_differential(W, P_cg)) / dZ),
                "cholesky_tangency_defect": float(
                    np.linalg.norm(end_to_end_differential(W, P_chol)) / dZ
                ),
                "relative_difference": float(
                    np.linalg.norm(P_cg - P_chol) / np.linalg.norm(P_chol)
                ),
                "target": "CG faster",
            }
        )
    return rows


def _scaling_row(rng, d: int, N: int, cholesky: bool) -> dict:
    """Times of the auto method, CG and (if ``cholesky``) Cholesky at a random fiber point."""
    W = random_fiber_point(rng, d, N)
    Z = rng.standard_normal(W.shape)
    row = {"d": d, "N": N}
    row["t_auto_s"] = best_time(
        lambda W=W, Z=Z: fiber_tangent_projection(W, Z), repeat=2, min_time=0.02
    )
    if cholesky:
        row["t_cholesky_s"] = (
            best_time(
                lambda W=W, Z=Z: fiber_tangent_projection(W, Z, method="cholesky"),
                repeat=1,
                min_time=0.0,
            )
            if d == 64
            else best_time(
                lambda W=W, Z=Z: fiber_tangent_projection(W, Z, method="cholesky"),
                repeat=2,
                min_time=0.02,
            )
        )
    s = FiberNormalSolver(W, method="cg", tol=1e-12)
    s.project(Z)
    row["cg_iterations"] = s.last_iterations
    row["t_cg_s"] = best_time(
        lambda W=W, Z=Z: fiber_tangent_projection(W, Z, method="cg", tol=1e-12),
        repeat=2,
        min_time=0.02,
    )
    return row


def scaling(rng) -> dict:
    out = {"in_d": [], "in_N": []}
    for d in (2, 4, 8, 16, 32, 64, 96):
        out["in_d"].append(_scaling_row(rng, d, 8, cholesky=d <= 64))
    for N in (2, 4, 8, 16, 32, 64):
        out["in_N"].append(_scaling_row(rng, 8, N, cholesky=False))
    return out


def main() -> dict:
    rng = np.random.default_rng(20261123)
    t0 = time.perf_counter()
    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "comparison_dense_gram_system": comparison_1(rng),
        "comparison_dense_cholesky_vs_cg": comparison_2(rng),
        "scaling": scaling(rng),
    }
    result["wall_s"] = time.perf_counter() - t0
    c1 = result["comparison_dense_gram_system"]
    print(
        f"(d, N) = (8, 16): dense (N-1)d^2 system {c1['t_baseline_s'] * 1e3:8.2f} ms | "
        f"d^2 Cholesky {c1['t_ours_s'] * 1e3:7.3f} ms ({c1['speedup']:.0f}x) | "
        f"cached factor {c1['t_ours_cached_factor_s'] * 1e6:7.1f} us "
        f"({c1['speedup_cached']:.0f}x) | rel. diff {c1['relative_difference']:.1e}"
    )
    for r in result["comparison_dense_cholesky_vs_cg"]:
        print(
            f"(d, N) = (64, 16), {r['point']:>22}: dense Cholesky {r['t_baseline_s']:7.3f} s | "
            f"PCG {r['t_cg_s']:7.3f} s ({r['speedup']:.1f}x, {r['cg_iterations']} it, "
            f"defect {r['cg_tangency_defect']:.1e}) | rel. diff {r['relative_difference']:.1e}"
        )
    print(f"{'d':>4} {'N':>4} {'auto [ms]':>10} {'chol [ms]':>10} {'cg [ms]':>9} {'cg it':>6}")
    for r in result["scaling"]["in_d"] + result["scaling"]["in_N"]:
        ch = r.get("t_cholesky_s")
        print(
            f"{r['d']:>4} {r['N']:>4} {r['t_auto_s'] * 1e3:10.3f} "
            f"{(ch * 1e3 if ch is not None else float('nan')):10.3f} "
            f"{r['t_cg_s'] * 1e3:9.3f} {r['cg_iterations']:>6}"
        )
    out = write_results("fiber_projection", result)
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
