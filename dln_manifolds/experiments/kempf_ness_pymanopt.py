r"""Experiment 3: [R] Thm 1 and Thm 19 through pymanopt, minimizing norms on the fiber.

On :math:`\mathcal{F}_X` (the pymanopt manifold :class:`~dln_manifolds.pymanopt.Fiber`) the
minimum of :math:`|W|^2` is :math:`N\operatorname{tr}(\Sigma^{2/N})`, attained exactly on the
balanced points (Kempf-Ness, [R] Thm 1). We track :math:`|G|` and the excess
:math:`|W|^2 - N\operatorname{tr}(\Sigma^{2/N})` per iteration of SteepestDescent,
ConjugateGradient and TrustRegions, and with TrustRegions on the fiber of a network of general
widths :math:`(d_0, \dots, d_N)` (every hidden width at least min(d_0, d_N), X of shape
(d_N, d_0)), where the minimum is the same expression over the min(d_0, d_N) singular values
and is attained at the balanced points of the fiber. [R] Thm 19 extends this to the sums of
Schatten p-norms
:math:`\sum_k |W_k|_p` for 1 < p < infinity, whose minimum on the fiber is
:math:`N(\sum_i\sigma_i^{p/N})^{1/p}`; p = 1 (not strictly plurisubharmonic) is explored,
without a claim.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [KN] G. Kempf and L. Ness, *The length of vectors in representation spaces*, Lecture
  Notes in Math. 732 (1979).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np
import pymanopt

from ..network import moments
from ..pymanopt import Fiber
from ..pymanopt.line_search import RoundingTolerantLineSearcher
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "kempf_ness_pymanopt"
NUMBER = 3
TITLE = "[R] Thm 1 and 19: minimizing |W|^2 and Schatten norms on the fiber with pymanopt"

PARAMS = {
    "tiny": {
        "d": 2,
        "depth": 3,
        "schatten": (1.5, 3.0),
        "max_iter": 300,
        "n_explore": 2,
        "widths": (2, 3, 3, 1),
    },
    "quick": {
        "d": 4,
        "depth": 4,
        "schatten": (1.5, 3.0),
        "max_iter": 2000,
        "n_explore": 5,
        "widths": (3, 5, 4, 2),
    },
    "full": {
        "d": 6,
        "depth": 5,
        "schatten": (1.25, 1.5, 3.0, 6.0),
        "max_iter": 5000,
        "n_explore": 20,
        "widths": (4, 7, 6, 5, 3),
    },
}


def _schatten(W: np.ndarray, p: float) -> tuple[float, np.ndarray]:
    """Value and Euclidean gradient of sum_k |W_k|_{S_p} (full-rank layers)."""
    U, s, Vh = np.linalg.svd(W)
    norms = np.sum(s**p, axis=-1) ** (1.0 / p)
    coef = s ** (p - 1) * norms[:, None] ** (1.0 - p)
    return float(norms.sum()), (U * coef[:, None, :]) @ Vh


def _problem(manifold: Fiber, p: float, record: list | None = None) -> pymanopt.Problem:
    """The pymanopt problem for ``|W|^2`` (p = 2) or ``sum_k |W_k|_p``.

    With ``record``, every evaluated point that lowers the cost is appended as (cost, W).
    """
    if p == 2 and manifold.widths is not None:  # list points: the N layers as N arguments
        N = manifold.depth

        @pymanopt.function.numpy(manifold)
        def cost_w(*W):
            val = float(sum(np.sum(w * w) for w in W))
            if record is not None and (not record or val < record[-1][0]):
                record.append((val, [w.copy() for w in W]))
            return val

        @pymanopt.function.numpy(manifold)
        def egrad_w(*W):
            return tuple(2.0 * w for w in W)

        @pymanopt.function.numpy(manifold)
        def ehess_w(*args):
            return tuple(2.0 * v for v in args[N:])

        return pymanopt.Problem(
            manifold, cost_w, euclidean_gradient=egrad_w, euclidean_hessian=ehess_w
        )
    if p == 2:

        @pymanopt.function.numpy(manifold)
        def cost(W):
            val = float(np.sum(W * W))
            if record is not None and (not record or val < record[-1][0]):
                record.append((val, W.copy()))
            return val

        @pymanopt.function.numpy(manifold)
        def egrad(W):
            return 2.0 * W

        @pymanopt.function.numpy(manifold)
        def ehess(W, V):
            return 2.0 * V

        return pymanopt.Problem(manifold, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)

    @pymanopt.function.numpy(manifold)
    def cost_p(W):
        return _schatten(W, p)[0]

    @pymanopt.function.numpy(manifold)
    def egrad_p(W):
        return _schatten(W, p)[1]

    return pymanopt.Problem(manifold, cost_p, euclidean_gradient=egrad_p)


def _first_order(kind: str, problem, max_iter: int):
    common = {
        "verbosity": 0,
        "log_verbosity": 1,
        "min_gradient_norm": 1e-11,
        "max_iterations": max_iter,
    }
    if kind == "SteepestDescent":
        return pymanopt.optimizers.SteepestDescent(
            line_searcher=RoundingTolerantLineSearcher(), **common
        )
    return pymanopt.optimizers.ConjugateGradient(
        line_searcher=RoundingTolerantLineSearcher(gradient=problem.riemannian_gradient), **common
    )


def _trace(points, p, sigma, N):
    """``|G| / |W|^2`` and the relative excess cost along a list of points."""
    best = N * np.sum(sigma ** (p / N)) ** (1.0 / p) if p != 2 else N * np.sum(sigma ** (2 / N))
    G, excess = [], []
    for W in points:
        if isinstance(W, list):  # general widths
            norm_sq = float(sum(np.sum(w * w) for w in W))
            G.append(np.sqrt(sum(np.sum(g * g) for g in moments(W))) / norm_sq)
            excess.append((norm_sq - best) / best)
            continue
        G.append(np.linalg.norm(moments(W)) / np.sum(W * W))
        val = np.sum(W * W) if p == 2 else _schatten(W, p)[0]
        excess.append((val - best) / best)
    return np.array(G), np.array(excess)


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Run the three pymanopt optimizers (``|W|^2``) and two first-order ones (Schatten p).

    Returns
    -------
    ExperimentResult
        ``data``: ``runs``, a dict ``label -> {"G": (n_it,), "excess": (n_it,)}`` with
        ``G`` = ``|G| / |W|^2`` and ``excess`` = (cost - predicted minimum) / predicted minimum per
        iteration; ``sigma`` (d,), the singular values of X.
    """
    p_ = PARAMS[check_size(size)]
    rng = np.random.default_rng(seed)
    d, N = p_["d"], p_["depth"]
    q1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    sigma = np.exp(rng.uniform(np.log(0.5), np.log(2.0), d))
    X = (q1 * sigma) @ q2
    manifold = Fiber(X, N, seed=seed)
    x0 = manifold.random_point()
    runs = {}

    problem = _problem(manifold, 2)
    for kind in ("SteepestDescent", "ConjugateGradient"):
        res = _first_order(kind, problem, p_["max_iter"]).run(problem, initial_point=x0)
        runs[f"{kind}, |W|^2"] = _trace(res.log["iterations"]["point"] + [res.point], 2, sigma, N)
    # TrustRegions keeps no per-iteration log: record the points that lowered the cost
    seen: list = []
    tr_problem = _problem(manifold, 2, record=seen)
    res = pymanopt.optimizers.TrustRegions(verbosity=0, min_gradient_norm=1e-11).run(
        tr_problem, initial_point=x0
    )
    runs["TrustRegions, |W|^2"] = _trace([w for _, w in seen] + [res.point], 2, sigma, N)

    # general widths: X of shape (d_N, d_0), list points, from a point off the center's orbit
    widths = p_["widths"]
    Nw = len(widths) - 1
    Xw = rng.standard_normal((widths[-1], widths[0]))
    sigma_w = np.linalg.svd(Xw, compute_uv=False)
    fiber_w = Fiber(Xw, Nw, seed=seed, widths=widths)
    seen_w: list = []
    res = pymanopt.optimizers.TrustRegions(verbosity=0, min_gradient_norm=1e-11).run(
        _problem(fiber_w, 2, record=seen_w), initial_point=fiber_w.random_point()
    )
    label_w = f"TrustRegions, |W|^2, widths {widths}"
    runs[label_w] = _trace([w for _, w in seen_w] + [list(res.point)], 2, sigma_w, Nw)

    for p in p_["schatten"]:
        prob = _problem(manifold, p)
        res = _first_order("ConjugateGradient", prob, p_["max_iter"]).run(prob, initial_point=x0)
        runs[f"ConjugateGradient, Schatten p={p:g}"] = _trace(
            res.log["iterations"]["point"] + [res.point], p, sigma, N
        )
    prob = _problem(manifold, 1.0)
    explores = []
    for k in range(p_["n_explore"]):
        start = x0 if k == 0 else manifold.random_point()
        res = _first_order("SteepestDescent", prob, p_["max_iter"]).run(prob, initial_point=start)
        explores.append(_trace(res.log["iterations"]["point"] + [res.point], 1.0, sigma, N))
    explore = explores[0]
    explore_final_G = np.array([e[0][-1] for e in explores])
    explore_final_excess = np.array([e[1][-1] for e in explores])

    claims = []
    for label in ("SteepestDescent, |W|^2", "ConjugateGradient, |W|^2", "TrustRegions, |W|^2"):
        G, ex = runs[label]
        claims.append(
            make_claim(
                f"[R] Thm 1: min |W|^2 on F_X = N tr(Sigma^(2/N)) ({label.split(',')[0]})",
                "final (|W|^2 - N tr Sigma^(2/N)) / N tr Sigma^(2/N)",
                0.0,
                float(ex[-1]),
                1e-10,
            )
        )
        claims.append(
            make_claim(
                f"[R] Thm 1: the minimizer is balanced ({label.split(',')[0]})",
                "final |G| / |W|^2",
                0.0,
                float(G[-1]),
                1e-5,
            )
        )
    G, ex = runs[label_w]
    claims.append(
        make_claim(
            f"[R] Thm 1, widths {widths}: min |W|^2 on F_X = N sum_i sigma_i^(2/N) (TrustRegions)",
            "final (|W|^2 - N sum sigma^(2/N)) / N sum sigma^(2/N)",
            0.0,
            float(ex[-1]),
            1e-10,
        )
    )
    claims.append(
        make_claim(
            f"[R] Thm 1, widths {widths}: the minimizer is balanced (TrustRegions)",
            "final |G| / |W|^2",
            0.0,
            float(G[-1]),
            1e-5,
        )
    )
    for p in p_["schatten"]:
        G, ex = runs[f"ConjugateGradient, Schatten p={p:g}"]
        claims.append(
            make_claim(
                f"[R] Thm 19 (p = {p:g}): min sum_k |W_k|_p on F_X is attained on F_X ∩ M",
                "final relative excess over N (sum sigma^(p/N))^(1/p)",
                0.0,
                float(ex[-1]),
                1e-8,
            )
        )
        claims.append(
            make_claim(
                f"[R] Thm 19 (p = {p:g}): the minimizer is balanced",
                "final |G| / |W|^2",
                0.0,
                float(G[-1]),
                1e-3,
            )
        )
    data = {
        "runs": {k: {"G": v[0], "excess": v[1]} for k, v in runs.items()},
        "explore_p1": {"G": explore[0], "excess": explore[1]},
        "sigma": sigma,
        "widths": np.asarray(widths),
        "d": d,
        "depth": N,
    }
    summary = {
        k: {
            "iterations": int(v[0].size - 1),
            "final_G": float(v[0][-1]),
            "final_excess": float(v[1][-1]),
        }
        for k, v in runs.items()
    }
    summary["p=1 exploration"] = {
        "final_G": explore_final_G.tolist(),
        "final_excess": explore_final_excess.tolist(),
    }
    notes = (
        f"X is {d} x {d} with singular values in [1/2, 2], N = {N}; the same random start "
        "(the center moved by a random group element) for every run. p = 1 exploration "
        f"(SteepestDescent on sum_k |W_k|_1 from {len(explores)} starts): largest final "
        f"relative excess over N tr(Sigma^(1/N)) {explore_final_excess.max():.2e}, largest "
        f"final |G|/|W|^2 {explore_final_G.max():.2e}. A minimizer with |G| clearly nonzero "
        "would show that the argmin set is larger than F_X ∩ M; "
        + ("none was seen here" if explore_final_G.max() < 1e-6 else "SEEN here")
        + " (no claim is made: the nuclear norm is not strictly plurisubharmonic)."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def _to_floor(values: np.ndarray, floor: float) -> np.ndarray:
    """``|values|`` up to the first one at or below ``floor`` (that one set to ``floor``).

    Beyond that point the values are rounding noise (they flicker between 0 and a few
    eps); drawing them on a log axis shows only that noise.
    """
    v = np.abs(np.asarray(values, dtype=float))
    hit = np.flatnonzero(v <= floor)
    if hit.size:
        v = v[: hit[0] + 1].copy()
        v[-1] = floor
    return v


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """``|G|`` and the excess cost per iteration for every run.

    Both quantities are relative, so rounding puts a floor near a few machine epsilons:
    each curve stops (with a marker) where it first reaches 16 eps, drawn as a grey band.
    """
    import matplotlib.pyplot as plt

    D = result.data
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    items = list(D["runs"].items()) + [
        ("SteepestDescent, nuclear p=1 (exploration)", D["explore_p1"])
    ]
    floor = 16 * np.finfo(float).eps
    for i, (label, r) in enumerate(items):
        ls = "-" if "|W|^2" in label else ("--" if "Schatten" in label else ":")
        for a, key in ((ax[0], "G"), (ax[1], "excess")):
            v = _to_floor(r[key], floor)
            it = np.arange(v.size)
            a.semilogy(it, v, ls, color=f"C{i}", label=label)
            if v[-1] <= floor:
                a.plot(it[-1], v[-1], "v", color=f"C{i}", ms=6)
    for a in ax:
        a.axhspan(floor / 10, floor, color="0.85", zorder=0)
        a.set_ylim(bottom=floor / 10)
        a.set_xlim(left=0)
        a.text(
            0.99,
            0.01,
            "rounding level (16 eps): runs stop at the marker",
            transform=a.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            color="0.3",
        )
    ax[0].set(
        xlabel="iteration",
        ylabel=r"$|G| / |W|^2$",
        xscale="symlog",
        title=f"fiber over X, d = {D['d']}, N = {D['depth']}",
    )
    ax[1].set(
        xlabel="iteration",
        ylabel="relative excess over the predicted minimum",
        xscale="symlog",
        title="cost - N tr(Sigma^(2/N)) (Schatten: N |Sigma^(1/N)|_p)",
    )
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    cap = (
        "Per iteration: balance |G|/|W|^2 (left) and excess cost over the Kempf-Ness value "
        "(right), |W|^2 solid, Schatten p dashed, p = 1 dotted.\nAll solid and dashed runs "
        "reach the predicted minimum at a balanced point ([R] Thm 1, 19); TrustRegions in a "
        "few iterations."
    )
    return [FigureSpec("optimizers", cap, fig)]
