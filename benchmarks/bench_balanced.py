"""Tangent projection on the balanced manifold M: SVD frames + depth solves vs dense null space.

Two comparisons, one run, single BLAS thread:

1. At (d, N) = (6, 8): :func:`dln_manifolds.balanced_tangent_projection`
   (with and without precomputed frames, which the pymanopt adapter caches
   per point) against the dense-nullspace projection (dense Jacobian of the moment map,
   ``scipy.linalg.null_space``, then K K^T z). Target: >= 100x faster.
2. Scaling up to (d, N) = (128, 64): time of one projection (frames
   included, and with cached frames) divided by the time of 2N d x d matrix
   products (two batched (N, d, d) @ (N, d, d) products). Target: <= 20x.

Writes ``benchmarks/results/balanced.json`` and prints a table.
Run: ``.venv/bin/python benchmarks/bench_balanced.py`` (about 20 s). Timings on a
shared machine are noisy; the ratios are taken within one run.
"""

from __future__ import annotations

from _common import best_time, single_blas_thread, write_results

single_blas_thread()

import platform  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

from dln_manifolds import (  # noqa: E402
    BalancedFrame,
    balanced_tangent_projection,
    random_balanced_point,
)


def dense_projection(W, Z):
    """Baseline: dense Jacobian of dG (built in one batched pass), null space, K K^T z."""
    N, d, _ = W.shape
    n = W.size
    E = np.eye(n).reshape(n, N, d, d)
    T = np.swapaxes
    J = (
        (
            E[:, :-1] @ T(W[:-1], 1, 2)
            + W[:-1] @ T(E[:, :-1], 2, 3)
            - T(E[:, 1:], 2, 3) @ W[1:]
            - T(W[1:], 1, 2) @ E[:, 1:]
        )
        .reshape(n, -1)
        .T
    )
    K = scipy.linalg.null_space(J)
    return (K @ (K.T @ Z.ravel())).reshape(W.shape)


def main() -> dict:
    rng = np.random.default_rng(0)
    results: dict = {
        "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "threads": 1,
    }

    # 1. against the dense null space
    d, N = 6, 8
    W = random_balanced_point(d, N, rng)
    Z = rng.standard_normal(W.shape)
    err = np.linalg.norm(balanced_tangent_projection(W, Z) - dense_projection(W, Z))
    t_fast = best_time(lambda: balanced_tangent_projection(W, Z), repeat=5)
    frames = BalancedFrame(W)
    t_cached = best_time(lambda: balanced_tangent_projection(W, Z, frame=frames), repeat=5)
    t_dense = best_time(lambda: dense_projection(W, Z), repeat=3)
    results["dense_comparison"] = {
        "d": d,
        "N": N,
        "fast_s": t_fast,
        "dense_nullspace_s": t_dense,
        "speedup": t_dense / t_fast,
        "fast_cached_frames_s": t_cached,
        "speedup_cached_frames": t_dense / t_cached,
        "max_abs_difference": float(err),
        "target_speedup": 100,
    }
    print(
        f"(d, N) = ({d}, {N}): frames+solve {t_fast * 1e3:.3f} ms "
        f"(given frames {t_cached * 1e3:.3f} ms), dense null space {t_dense * 1e3:.2f} ms, "
        f"speedup {t_dense / t_fast:.0f}x ({t_dense / t_cached:.0f}x given frames), "
        f"|difference| {err:.1e}"
    )

    # 2. scaling, as a ratio to 2N matrix products of size d
    rows = []
    print(
        f"{'d':>5} {'N':>4} {'proj ms':>9} {'cached ms':>10} {'2N prod ms':>11} "
        f"{'ratio':>7} {'cached ratio':>13}"
    )
    for d in (8, 16, 32, 64, 128):
        for N in (8, 64):
            W = random_balanced_point(d, N, rng)
            Z = rng.standard_normal(W.shape)
            frames = BalancedFrame(W)
            A = rng.standard_normal((N, d, d))
            B = rng.standard_normal((N, d, d))

            def products(A=A, B=B):
                A @ B
                B @ A

            t_ref = best_time(products, repeat=5)
            t_proj = best_time(lambda W=W, Z=Z: balanced_tangent_projection(W, Z), repeat=5)
            t_cached = best_time(
                lambda W=W, Z=Z, F=frames: balanced_tangent_projection(W, Z, frame=F), repeat=5
            )
            row = {
                "d": d,
                "N": N,
                "projection_s": t_proj,
                "projection_cached_frames_s": t_cached,
                "two_N_products_s": t_ref,
                "ratio": t_proj / t_ref,
                "ratio_cached_frames": t_cached / t_ref,
            }
            rows.append(row)
            print(
                f"{d:5d} {N:4d} {t_proj * 1e3:9.3f} {t_cached * 1e3:10.3f} {t_ref * 1e3:11.3f} "
                f"{row['ratio']:7.1f} {row['ratio_cached_frames']:13.1f}"
            )
    results["scaling"] = rows
    results["target_ratio"] = 20
    print(f"wrote {write_results('balanced', results)}")
    return results


if __name__ == "__main__":
    main()
