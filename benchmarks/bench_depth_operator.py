"""Depth operator A_{N,X} ([G] eq. 4.14): accuracy near repeated singular values and cost vs depth.

Two parts, one run, single BLAS thread:

(a) Accuracy. X = U diag(s) V^T (d = 5) with two pairs of singular values at
    relative gap g in {0, 1e-12, 1e-9, 1e-6, 1e-3}, depths N in {2, 7, 1e3, 1e4, inf}.
    Reference: the multipliers of [G] eq. 7.13-7.14 / 14.8-14.9 in mpmath at 50
    digits, in the known frame (U, V). Reported: max relative error of
    ``depth_multipliers`` (entrywise) and of ``depth_operator`` (Frobenius),
    against two baselines: the multiplier formula evaluated literally in
    float64, and eq. 4.14 evaluated literally (sum over k of N products of
    eigh-based fractional powers; not defined for N = inf).
(b) Time of one Riemannian gradient, ``EndToEndMatrices.euclidean_to_riemannian_gradient``,
    at d = 200 for N = 2, 1000 and inf (median of 7 runs), against the named
    baseline "dense sum over k of N fractional-power products" (eq. 4.14
    literally: one eigh of XX^T and of X^TX, then per k two fractional powers
    and two products, O(N d^3)), timed at the same d for N = 2, 10, 100, 1000.
(c) Non-square X. Accuracy: X of shape (7, 5) and (5, 7) with the spectrum of (a),
    ``depth_operator`` against mpmath (50 digits) in the known full frame, including the
    complement block (multiplier s_j^{2(N-1)/N}). Time (best of 5, 1 BLAS thread) of
    ``depth_operator`` (thin SVD + apply) and ``inverse_depth_operator`` at (m, n) = (200, 50)
    and (50, 200) against the square one at d = 100, for N = 2, 1000 (and inf for the
    operator). Targets: rectangular / square <= 1.5, N = 1000 / N = 2 <= 1.5.

Writes ``benchmarks/results/depth_operator.json`` and prints three tables.
Run: ``.venv/bin/python benchmarks/bench_depth_operator.py`` (about 1 minute).
Timings on a shared machine are noisy; ratios are taken within one run.
"""

from __future__ import annotations

import os

from _common import best_time, median_time, single_blas_thread, write_results

single_blas_thread()

import platform  # noqa: E402
import time  # noqa: E402

import mpmath  # noqa: E402
import numpy as np  # noqa: E402

from dln_manifolds import (  # noqa: E402
    depth_multipliers,
    depth_operator,
    inverse_depth_operator,
)
from dln_manifolds.pymanopt import EndToEndMatrices  # noqa: E402

mpmath.mp.dps = 50

GAPS = [0.0, 1e-12, 1e-9, 1e-6, 1e-3]
DEPTHS = [2, 7, 1000, 10_000, np.inf]


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def mp_multiplier(sk: float, sl: float, depth) -> float:
    sk, sl = mpmath.mpf(sk), mpmath.mpf(sl)
    if np.isinf(depth):
        return float(sk**2 if sk == sl else (sk**2 - sl**2) / (2 * mpmath.log(sk / sl)))
    N = mpmath.mpf(int(depth))
    if sk == sl:
        return float(N * sk ** (2 - 2 / N))
    return float((sk**2 - sl**2) / (sk ** (2 / N) - sl ** (2 / N)))


def naive_multipliers(s: np.ndarray, depth) -> np.ndarray:
    """Eq. 7.13-7.14 / 14.8-14.9 evaluated literally in float64 (the limit where s_k == s_l)."""
    a, b = s[:, None], s[None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if np.isinf(depth):
            off = (a**2 - b**2) / (2 * np.log(a / b))
            equal = a**2 + 0 * b
        else:
            off = (a**2 - b**2) / (a ** (2 / depth) - b ** (2 / depth))
            equal = depth * a ** (2 - 2 / depth) + 0 * b
    return np.where(a == b, equal, off)


def _sym_power_factory(S):
    w, Q = np.linalg.eigh(S)
    w = np.clip(w, 0.0, None)
    return lambda p: (Q * w**p) @ Q.T


def literal_depth_operator(X, N: int, Z) -> np.ndarray:
    """Eq. 4.14 literally: sum_k (XX^T)^{(N-k)/N} Z (X^TX)^{(k-1)/N}, O(N d^3)."""
    P, Q = _sym_power_factory(X @ X.T), _sym_power_factory(X.T @ X)
    out = np.zeros_like(Z)
    for k in range(1, N + 1):
        out += P((N - k) / N) @ Z @ Q((k - 1) / N)
    return out


def accuracy(rng) -> list[dict]:
    rows = []
    d = 5
    Z = rng.standard_normal((d, d))
    U, V = _haar(rng, d), _haar(rng, d)
    for gap in GAPS:
        s = np.array([1.3, 1.3 * (1 + gap), 0.7, 0.7 * (1 - gap), 2.1])
        X = (U * s) @ V.T
        for depth in DEPTHS:
            ref_m = np.array([[mp_multiplier(a, b, depth) for b in s] for a in s])
            ref_op = U @ (ref_m * (U.T @ Z @ V)) @ V.T
            rel_m = float(np.max(np.abs(depth_multipliers(s, depth) / ref_m - 1)))
            with np.errstate(all="ignore"):
                naive = np.max(np.abs(naive_multipliers(s, depth) / ref_m - 1))
            naive = float(naive) if np.isfinite(naive) else float("inf")
            got = depth_operator(X, depth, Z)
            rel_op = float(np.linalg.norm(got - ref_op) / np.linalg.norm(ref_op))
            if np.isinf(depth):
                rel_lit = None
            else:
                lit = literal_depth_operator(X, int(depth), Z)
                rel_lit = float(np.linalg.norm(lit - ref_op) / np.linalg.norm(ref_op))
            rows.append(
                dict(
                    gap=gap,
                    depth="inf" if np.isinf(depth) else int(depth),
                    multipliers_rel_err=rel_m,
                    operator_rel_err=rel_op,
                    naive_formula_rel_err=naive,
                    literal_eq_4_14_rel_err=rel_lit,
                )
            )
    return rows


def timing(rng) -> dict:
    d = 200
    s = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=d))
    X = (_haar(rng, d) * s) @ _haar(rng, d).T
    egrad = rng.standard_normal((d, d))
    ours = {}
    for depth in (2, 1000, np.inf):
        M = EndToEndMatrices(d, depth)
        key = "inf" if np.isinf(depth) else str(depth)
        ours[key] = median_time(lambda M=M: M.euclidean_to_riemannian_gradient(X, egrad), 7)
    baseline, agreement = {}, {}
    for N, repeat in ((2, 7), (10, 5), (100, 3), (1000, 1)):
        baseline[str(N)] = median_time(lambda N=N: literal_depth_operator(X, N, egrad), repeat)
        ref = literal_depth_operator(X, N, egrad)
        got = depth_operator(X, N, egrad)
        agreement[str(N)] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    return dict(
        d=d,
        ours_seconds=ours,
        baseline_seconds=baseline,
        relative_difference_ours_vs_baseline=agreement,
    )


def rectangular_accuracy(rng) -> list[dict]:
    rows = []
    Z0 = rng.standard_normal((7, 5))
    for shape in ((7, 5), (5, 7)):
        m, n = shape
        U, V = _haar(rng, m), _haar(rng, n)
        Z = Z0 if shape == (7, 5) else Z0.T
        for gap in (0.0, 1e-9, 1e-3):
            s = np.array([1.3, 1.3 * (1 + gap), 0.7, 0.7 * (1 - gap), 2.1])
            X = (U[:, :5] * s) @ V[:, :5].T
            for depth in (2, 7, 1000, 10_000):
                full = np.zeros(shape)
                for i in range(m):
                    for j in range(n):
                        if i < 5 and j < 5:
                            full[i, j] = mp_multiplier(s[i], s[j], depth)
                        else:  # complement block: s^{2(N-1)/N} of the index < 5
                            sk = mpmath.mpf(s[min(i, j)])
                            full[i, j] = float(sk ** (2 - mpmath.mpf(2) / depth))
                ref = U @ (full * (U.T @ Z @ V)) @ V.T
                got = depth_operator(X, depth, Z)
                err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
                rows.append(dict(shape=list(shape), gap=gap, depth=depth, operator_rel_err=err))
    return rows


def rectangular_timing(rng) -> dict:
    def point(m, n):
        r = min(m, n)
        s = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=r))
        return (_haar(rng, m)[:, :r] * s) @ _haar(rng, n)[:, :r].T

    cases = {"square d=100": (100, 100), "tall (200, 50)": (200, 50), "wide (50, 200)": (50, 200)}
    out = {}
    for label, (m, n) in cases.items():
        X, Z = point(m, n), rng.standard_normal((m, n))
        row = {}
        for depth in (2, 1000, np.inf):
            key = "inf" if np.isinf(depth) else str(depth)
            row[f"operator N={key}"] = best_time(
                lambda d=depth, X=X, Z=Z: depth_operator(X, d, Z), 5
            )
            if not np.isinf(depth):
                row[f"inverse N={key}"] = best_time(
                    lambda d=depth, X=X, Z=Z: inverse_depth_operator(X, d, Z), 5
                )
        out[label] = row
    sq = out["square d=100"]
    ratios = {}
    for label in ("tall (200, 50)", "wide (50, 200)"):
        for key, t in out[label].items():
            ratios[f"{label} / square, {key}"] = t / sq[key]
    for label, row in out.items():
        for what in ("operator", "inverse"):
            ratios[f"{label}, {what} N=1000 / N=2"] = row[f"{what} N=1000"] / row[f"{what} N=2"]
    return dict(seconds=out, ratios=ratios)


def main() -> dict:
    rng = np.random.default_rng(20261123)
    t0 = time.perf_counter()
    acc = accuracy(rng)
    tim = timing(rng)
    rect_acc = rectangular_accuracy(rng)
    rect_tim = rectangular_timing(rng)
    out = dict(
        benchmark="depth_operator",
        description=__doc__.split("\n")[0],
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor(),
            python=platform.python_version(),
            numpy=np.__version__,
            blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
        ),
        accuracy=acc,
        timing=tim,
        rectangular_accuracy=rect_acc,
        rectangular_timing=rect_tim,
        wall_seconds=time.perf_counter() - t0,
    )
    path = write_results("depth_operator", out)

    def fmt(x):
        return "n/a" if x is None else f"{x:.1e}"

    print("(a) max relative error against mpmath (50 digits), d = 5")
    print(
        f"{'gap':>7} {'depth':>6} | {'multipliers':>11} {'operator':>9} | "
        f"{'naive formula':>13} {'literal 4.14':>12}"
    )
    for r in acc:
        print(
            f"{r['gap']:>7.0e} {r['depth']:>6} | {fmt(r['multipliers_rel_err']):>11} "
            f"{fmt(r['operator_rel_err']):>9} | {fmt(r['naive_formula_rel_err']):>13} "
            f"{fmt(r['literal_eq_4_14_rel_err']):>12}"
        )
    print(f"\n(b) one Riemannian gradient at d = {tim['d']} (median seconds, 1 BLAS thread)")
    print(f"{'N':>6} | {'EndToEndMatrices':>16} | {'literal sum (baseline)':>22} | {'rel diff':>8}")
    for N in ("2", "10", "100", "1000", "inf"):
        ours = tim["ours_seconds"].get(N)
        base = tim["baseline_seconds"].get(N)
        diff = tim["relative_difference_ours_vs_baseline"].get(N)
        print(f"{N:>6} | {fmt(ours):>16} | {fmt(base):>22} | {fmt(diff):>8}")
    print("\n(c) non-square X: max relative error of depth_operator against mpmath")
    for shape in ([7, 5], [5, 7]):
        worst = max(r["operator_rel_err"] for r in rect_acc if r["shape"] == shape)
        print(f"  shape {tuple(shape)}: {worst:.1e} (gaps 0, 1e-9, 1e-3; N = 2, 7, 1e3, 1e4)")
    print("    time (best of 5, seconds)")
    for label, row in rect_tim["seconds"].items():
        print(f"  {label:>15} | " + "  ".join(f"{k} {v:.1e}" for k, v in row.items()))
    for key, ratio in rect_tim["ratios"].items():
        print(f"  {key:>42}: {ratio:.2f}")
    print(f"\nwrote {path} ({out['wall_seconds']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
