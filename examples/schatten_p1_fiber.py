"""Exploration: are the minimizers of the Schatten-1 (nuclear) norm sum on F_X balanced?

[R] Thm 19 shows that for 1 < p < inf the minimizers of
``|W|_p = sum_k |W_k|_p`` ([R] eq. 3.8) on the fiber F_X are exactly F_X cap M
(the balanced points); for p = 1 the norm is plurisubharmonic but not strictly,
and the question is left open ([R] section 3.4). This script only *reports*
what it sees; it makes no pass/fail claim.

What it does, for several X (distinct singular values, X = I, a repeated pair)
and small (d, N):

1. Minimizes sum_k |W_k|_1 on F_X with pymanopt ConjugateGradient from random
   points (autograd cost through ``svd(compute_uv=False)``; the nuclear norm is
   smooth at invertible matrices, so no smoothing is used), and records the
   final value, the gap to the lower bound ``N tr(Sigma^{1/N})`` (valid on all
   of F_X by Hoelder's inequality for Schatten quasi-norms,
   ``|W_N...W_1|_{1/N} <= prod_k |W_k|_1``, and AM-GM; attained at balanced
   points), the balance defect ``|G| / |W|^2`` and the distance of the orbit
   coordinates from O(d)^{N-1}. The same is done for p = 1.5 as a control.
2. At the center, estimates the Riemannian Hessian of the p = 1 cost by
   central differences of the Riemannian gradient along the retraction (the
   center is a critical point, so this is the Hessian to O(t^2)) and counts
   its near-zero eigenvalues, to be compared with the dimension
   (N-1) d(d-1)/2 of the orbit O_X (distinct singular values; it is larger
   when singular values repeat). Extra flat directions would be candidates
   for non-balanced minimizers.

Writes ``schatten_p1_fiber.json`` and ``schatten_p1_fiber.png`` to ``--out``.

    python examples/schatten_p1_fiber.py [--tiny] [--out DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import autograd.numpy as anp
import matplotlib
import numpy as np
import pymanopt
import scipy.linalg

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dln_manifolds import end_to_end_differential, fiber_group_element  # noqa: E402
from dln_manifolds.pymanopt import Fiber, RoundingTolerantLineSearcher  # noqa: E402


def schatten_problem(M: Fiber, p: float) -> pymanopt.Problem:
    @pymanopt.function.autograd(M)
    def cost(W):
        s = anp.linalg.svd(W, compute_uv=False)
        return anp.sum(anp.sum(s**p, axis=-1) ** (1.0 / p))

    return pymanopt.Problem(M, cost)


def orbit_defect(M: Fiber, W: np.ndarray) -> float:
    A = fiber_group_element(M.center, W)
    return float(np.max(np.abs(np.swapaxes(A, 1, 2) @ A - np.eye(M.d))))


def minimize(M: Fiber, p: float, W0: np.ndarray, max_iterations: int) -> dict:
    problem = schatten_problem(M, p)
    opt = pymanopt.optimizers.ConjugateGradient(
        verbosity=0,
        min_gradient_norm=1e-10,
        min_step_size=0.0,
        max_iterations=max_iterations,
        line_searcher=RoundingTolerantLineSearcher(gradient=problem.riemannian_gradient),
    )
    res = opt.run(problem, initial_point=W0)
    W = res.point
    sigma = np.linalg.svd(M.X, compute_uv=False)
    bound = M.depth * np.sum(sigma ** (p / M.depth)) ** (1.0 / p)
    norm_sq = float(np.sum(W**2))
    return {
        "p": p,
        "value": float(res.cost),
        "balanced_value": float(bound),
        "relative_gap": float((res.cost - bound) / bound),
        "balance_defect": float(np.linalg.norm(M.moments(W)) / norm_sq),
        "orbit_defect": orbit_defect(M, W),
        "gradient_norm": float(res.gradient_norm),
        "iterations": int(res.iterations),
        "stopping": res.stopping_criterion,
        "start_balance_defect": float(np.linalg.norm(M.moments(W0)) / np.sum(W0**2)),
    }


def hessian_at_center(M: Fiber, p: float, t: float = 1e-4) -> np.ndarray:
    """Eigenvalues of the Riemannian Hessian at the center, by differences of the gradient."""
    problem = schatten_problem(M, p)
    C = M.center
    J = np.stack(
        [end_to_end_differential(C, e.reshape(C.shape)).ravel() for e in np.eye(C.size)], axis=1
    )
    basis = scipy.linalg.null_space(J).T.reshape(-1, *C.shape)  # orthonormal basis of T_C F_X
    cols = []
    for v in basis:
        gp = problem.riemannian_gradient(M.retraction(C, t * v))
        gm = problem.riemannian_gradient(M.retraction(C, -t * v))
        cols.append(M.projection(C, (gp - gm) / (2 * t)).ravel())
    H = basis.reshape(len(basis), -1) @ np.stack(cols, axis=1)
    return np.linalg.eigvalsh(0.5 * (H + H.T))


def cases(rng: np.random.Generator, tiny: bool) -> list[tuple[str, np.ndarray, int]]:
    out = []
    sizes = [(2, 2), (2, 3)] if tiny else [(2, 2), (2, 3), (3, 3), (3, 4)]
    for d, N in sizes:
        U = np.linalg.qr(rng.standard_normal((d, d)))[0]
        V = np.linalg.qr(rng.standard_normal((d, d)))[0]
        out.append((f"distinct d={d} N={N}", (U * np.linspace(2.0, 0.5, d)) @ V, N))
        out.append((f"identity d={d} N={N}", np.eye(d), N))
        if d >= 3:
            s = np.array([2.0, 2.0] + [0.7] * (d - 2))
            out.append((f"repeated pair d={d} N={N}", (U * s) @ V, N))
    return out


def run(tiny: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n_starts = 2 if tiny else 6
    max_it = 300 if tiny else 3000
    rows, spectra = [], []
    t0 = time.perf_counter()
    for label, X, N in cases(rng, tiny):
        M = Fiber(X, N, seed=int(rng.integers(2**31)))
        d = M.d
        for start in range(n_starts):
            W0 = M.random_point()
            for p in (1.0, 1.5):
                row = minimize(M, p, W0, max_it)
                row.update({"case": label, "d": d, "N": N, "start": start})
                rows.append(row)
        eig = hessian_at_center(M, 1.0)
        tol = 1e-6 * np.max(np.abs(eig))
        spectra.append(
            {
                "case": label,
                "d": d,
                "N": N,
                "eigenvalues": eig.tolist(),
                "near_zero": int(np.sum(np.abs(eig) <= tol)),
                "negative": int(np.sum(eig < -tol)),
                "orbit_dimension_distinct": (N - 1) * d * (d - 1) // 2,
                "tangent_dimension": (N - 1) * d * d,
            }
        )
    return {
        "rows": rows,
        "hessian_p1_at_center": spectra,
        "wall_s": time.perf_counter() - t0,
        "tiny": tiny,
        "seed": seed,
    }


def plot(result: dict):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = sorted({r["case"] for r in result["rows"]}, key=lambda s: s)
    for p, marker in ((1.0, "o"), (1.5, "x")):
        xs, ys = [], []
        for r in result["rows"]:
            if r["p"] == p:
                xs.append(labels.index(r["case"]) + (0.1 if p == 1.5 else -0.1))
                ys.append(max(r["balance_defect"], 1e-18))
        axes[0].semilogy(xs, ys, marker, label=f"p = {p}")
    axes[0].set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    axes[0].set_ylabel("|G| / |W|^2 at the end")
    axes[0].set_title("Schatten-p minimization on F_X (CG, random starts)")
    axes[0].legend()
    for k, s in enumerate(result["hessian_p1_at_center"]):
        eig = np.abs(np.asarray(s["eigenvalues"])) + 1e-18
        axes[1].semilogy(np.full(eig.size, k), eig, "_", markersize=12)
        axes[1].annotate(
            f"{s['near_zero']}/{s['orbit_dimension_distinct']}",
            (k, eig.max()),
            fontsize=7,
            ha="center",
            va="bottom",
        )
    axes[1].set_xticks(
        range(len(result["hessian_p1_at_center"])),
        [s["case"] for s in result["hessian_p1_at_center"]],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    axes[1].set_ylabel("|eigenvalue| of Hess (p = 1) at the center")
    axes[1].set_title("near-zero / orbit dimension (distinct sigma)")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds: small sizes, 2 starts")
    parser.add_argument("--out", default="results", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(tiny=args.tiny, seed=args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "schatten_p1_fiber.json").write_text(json.dumps(result, indent=2))
    fig = plot(result)
    fig.savefig(out / "schatten_p1_fiber.png", dpi=120)
    plt.close(fig)
    print(f"{'case':>24} {'p':>4} {'rel. gap':>10} {'|G|/|W|^2':>10} {'orbit def.':>10} {'it':>5}")
    for r in result["rows"]:
        print(
            f"{r['case']:>24} {r['p']:4.1f} {r['relative_gap']:10.1e} {r['balance_defect']:10.1e}"
            f" {r['orbit_defect']:10.1e} {r['iterations']:5d}"
        )
    for s in result["hessian_p1_at_center"]:
        print(
            f"{s['case']:>24}: Hessian (p = 1) at the center has {s['near_zero']} near-zero and "
            f"{s['negative']} negative eigenvalues; orbit dimension (distinct sigma) "
            f"{s['orbit_dimension_distinct']}, tangent dimension {s['tangent_dimension']}"
        )
    print(
        f"wrote {out / 'schatten_p1_fiber.json'} and {out / 'schatten_p1_fiber.png'} "
        f"({result['wall_s']:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
