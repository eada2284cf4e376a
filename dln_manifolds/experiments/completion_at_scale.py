r"""Experiment 6: matrix completion at scale with the downstairs flow on (M_d, g^N).

A rank-r target :math:`M \in \mathbb{R}^{d\times d}` is observed on m random entries; the
energy is :math:`E(X) = \tfrac12 \sum_{(i,j)\in\Omega} (X_{ij} - M_{ij})^2`. From a small
random start the downstairs flow :math:`\dot X = -\mathcal{A}_{N,X}(E'(X))` ([G] eq. 4.21)
runs for depths 1 to 4. Depth 1 never moves the unobserved entries; larger depths learn the
low-rank target one singular value at a time (saddle to saddle). The test error is measured
on the unobserved entries; the effective rank is :math:`\exp(-\sum_i p_i\log p_i)`,
:math:`p_i = s_i / \sum_j s_j`. One depth is also run upstairs ([G] Thm 2) as a check.

Beside each flow runs plain gradient descent on the weights
(:func:`dln_manifolds.training.gradient_descent`, [G] eq. 3.6) from the balanced lift
:math:`W(0)` of the same start ([G] eq. 5.16, so :math:`\phi(W(0)) = X(0)`), recorded at the
times :math:`t = k\eta` after k steps. The flow is its limit :math:`\eta \to 0` ([G] Thm 2:
the downstairs flow is the end-to-end trajectory of the upstairs flow from a balanced
start). **Learning-rate rule.** At a balanced point whose end-to-end matrix X is a critical
point of E, the Hessian of the lifted loss :math:`E(\phi(W))` is
:math:`D\phi^T E''(X)\, D\phi`, of norm at most
:math:`|\mathcal{A}_{N,X}|\,|E''| = N\sigma^{2-2/N}|E''|`, where :math:`\sigma` is the
largest singular value of X and :math:`\mathcal{A}_{N,X}` ([G] eq. 4.14) is
:math:`D\phi\, D\phi^T` at a balanced point ([G] Thm 2); on the top singular pair each of
its N terms is :math:`\sigma^{2-2/N}`. For d = 1,
:math:`\tfrac12(w_N\cdots w_1 - y)^2` at :math:`w_p = y^{1/N}` has Hessian norm
:math:`N y^{2-2/N}`. :math:`|E''| = 1` for the completion energy (a projection). GD
is stable below :math:`2/\text{sharpness}`; we take half of that bound,

.. math:: \eta_N = \frac{1}{N\,\sigma^{2 - 2/N}},

with :math:`\sigma` the largest singular value of the flow's end point :math:`X(T)`
(the minimizer that GD approaches, where this bound applies), lowered to
:math:`T/\lceil T/\eta_N\rceil` so that T is a whole number of steps. GD is run at
:math:`\eta_N` and at :math:`\eta_N/2`; a first-order method has
:math:`|\phi(W_\eta(T)) - X(T)| = O(\eta)`, so halving the rate halves the gap.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import time

import numpy as np

from ..energies import MatrixCompletionEnergy
from ..flows.learning import end_to_end_flow, learning_flow
from ..network import balanced_point
from ..training import gradient_descent
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "completion_at_scale"
NUMBER = 6
TITLE = "Matrix completion at scale: depth, test error and effective rank along the flow"

PARAMS = {
    "tiny": {
        "d": 20,
        "rank": 2,
        "m": 240,
        "depths": (1, 2, 3),
        "t_final": 60.0,
        "upstairs_depth": 2,
    },
    "quick": {
        "d": 50,
        "rank": 3,
        "m": 750,
        "depths": (1, 2, 3, 4),
        "t_final": 100.0,
        "upstairs_depth": 3,
    },
    "full": {
        "d": 100,
        "rank": 5,
        "m": 2000,
        "depths": (1, 2, 3, 4),
        "t_final": 200.0,
        "upstairs_depth": 3,
    },
}
INIT_SCALE = 1e-3


def effective_rank(X: np.ndarray) -> float:
    """:math:`\\exp` of the entropy of the normalized singular values of X."""
    return effective_rank_from_sv(np.linalg.svd(X, compute_uv=False))


def effective_rank_from_sv(s: np.ndarray) -> float:
    """Effective rank from singular values (see :func:`effective_rank`)."""
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def problem(d: int, rank: int, m: int, seed: int):
    """The target, the mask of observed entries, the energy and the small random start."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((d, rank)))
    V, _ = np.linalg.qr(rng.standard_normal((d, rank)))
    # singular values spread over [1, 2], scaled so that p * sigma is of order 1
    target = (U * np.linspace(2.0, 1.0, rank)) @ V.T * (d / np.sqrt(m))
    mask = np.zeros(d * d, dtype=bool)
    mask[rng.choice(d * d, size=m, replace=False)] = True
    mask = mask.reshape(d, d)
    energy = MatrixCompletionEnergy(mask, np.where(mask, target, 0.0))
    X0 = INIT_SCALE * rng.standard_normal((d, d)) / np.sqrt(d)
    return target, mask, energy, X0


GD_SAVES = 200  # saved states per gradient-descent run (the curves of the figure)


def stable_lr(sigma: float, depth: int, t_final: float) -> float:
    """Learning rate :math:`1/(N\\sigma^{2-2/N})`, lowered so that ``t_final`` is whole steps.

    Half the stability limit :math:`2/(N\\sigma^{2-2/N})` of GD near a balanced point whose
    end-to-end matrix has largest singular value ``sigma`` (module docstring).
    """
    lr = 1.0 / (depth * sigma ** (2.0 - 2.0 / depth))
    return t_final / int(np.ceil(t_final / lr))


def _gd(W0: np.ndarray, energy, lr: float, t_final: float, saves: int, progress: bool):
    """Plain GD from W0 to time ``t_final`` (whole steps of ``lr``), about ``saves`` states."""
    steps = int(round(t_final / lr))
    return gradient_descent(
        W0, energy, lr, steps, save_every=max(1, steps // saves), progress=progress
    )


RANK_THRESHOLD = 0.1  # numerical rank: singular values above this fraction of the largest


def _rank_events(times: np.ndarray, sv: np.ndarray) -> np.ndarray:
    """Rank events: rows (time, new numerical rank) where the numerical rank changes.

    The numerical rank counts the stored top singular values above ``RANK_THRESHOLD``
    times the largest (capped at the number stored, rank + 2).
    """
    r = np.sum(sv > RANK_THRESHOLD * sv[:, :1], axis=1)
    idx = np.flatnonzero(np.diff(r) != 0) + 1
    return np.stack([times[idx], r[idx]], axis=1) if idx.size else np.zeros((0, 2))


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Run the downstairs flow and plain GD for each depth (and one depth upstairs).

    Returns
    -------
    ExperimentResult
        ``data``: ``depths``; per depth (lists of arrays) ``times``, ``test_error``,
        ``train_energy``, ``erank``, ``rank_events`` (n_events, 2): time and new numerical
        rank, ``singular_values`` (n_t, k), the top k = rank + 2; scalars ``target_erank``,
        ``d``, ``rank``, ``m``; ``upstairs_gap`` (relative gap of the final end-to-end matrices).
        Plain GD on the weights, per depth: ``gd_times`` (``steps * lr``), ``gd_test_error``,
        ``gd_train_energy`` (lists of arrays); ``gd_lr`` (n_depths,), ``gd_gap``
        (n_depths, 2): :math:`|\\phi(W(T)) - X(T)|/|X(T)|` at ``lr`` and ``lr / 2``;
        ``gd_increases`` (n_depths,): saved steps where GD's training loss went up.
    """
    p = PARAMS[check_size(size)]
    target, mask, energy, X0 = problem(p["d"], p["rank"], p["m"], seed)
    hidden = ~mask
    norm_hidden = np.linalg.norm(target[hidden])
    k = p["rank"] + 2

    out = {
        key: []
        for key in (
            "times",
            "test_error",
            "train_energy",
            "erank",
            "rank_events",
            "singular_values",
            "gd_lr",
            "gd_times",
            "gd_test_error",
            "gd_train_energy",
            "gd_gap",
            "gd_increases",
        )
    }
    finals = {}
    gd_seconds = 0.0
    for N in p["depths"]:
        res = end_to_end_flow(
            X0, energy, N, p["t_final"], dt=1e-3, adaptive=True, progress=progress
        )
        sv = res.monitors["singular_values"]
        out["times"].append(res.times)
        out["test_error"].append(
            np.linalg.norm((res.states - target)[:, hidden], axis=-1) / norm_hidden
        )
        out["train_energy"].append(res.monitors["energy"])
        out["erank"].append(np.array([effective_rank_from_sv(s) for s in sv]))
        out["singular_values"].append(sv[:, :k])
        out["rank_events"].append(_rank_events(res.times, sv[:, :k]))
        finals[N] = res.final

        # plain GD on the weights from the balanced lift of X0, at the stable rate and half it
        lr = stable_lr(float(sv[-1, 0]), N, p["t_final"])
        W0 = balanced_point(X0, N)
        t_gd = time.perf_counter()
        gd = _gd(W0, energy, lr, p["t_final"], GD_SAVES, progress)
        gd_half = _gd(W0, energy, lr / 2, p["t_final"], 1, progress)
        gd_seconds += time.perf_counter() - t_gd
        X_gd = gd.monitors["end_to_end"]
        out["gd_lr"].append(lr)
        out["gd_times"].append(gd.times)
        out["gd_test_error"].append(
            np.linalg.norm((X_gd - target)[:, hidden], axis=-1) / norm_hidden
        )
        out["gd_train_energy"].append(gd.monitors["energy"])
        out["gd_gap"].append(
            [
                float(np.linalg.norm(Y[-1] - res.final) / np.linalg.norm(res.final))
                for Y in (X_gd, gd_half.monitors["end_to_end"])
            ]
        )
        out["gd_increases"].append(int(np.sum(np.diff(gd.monitors["energy"]) > 0)))

    Nu = p["upstairs_depth"]
    res_up = learning_flow(
        balanced_point(X0, Nu),
        energy,
        p["t_final"],
        dt=1e-3,
        adaptive=True,
        save_every=10**9,
        progress=progress,
    )
    X_up = res_up.monitors["end_to_end"][-1]
    up_gap = float(np.linalg.norm(X_up - finals[Nu]) / np.linalg.norm(finals[Nu]))

    deepest = max(p["depths"])
    i_deep = p["depths"].index(deepest)
    i1 = p["depths"].index(1)
    target_erank = effective_rank(target)
    sv_deep_final = out["singular_values"][i_deep][-1]
    final_err = [float(e[-1]) for e in out["test_error"]]
    gd_final_err = [float(e[-1]) for e in out["gd_test_error"]]
    gd_gap = np.array(out["gd_gap"])
    ratios = gd_gap[:, 0] / gd_gap[:, 1]
    deep = np.array(p["depths"]) >= 2  # at N = 1 GD and the flow end at the same point
    worst_ratio = float(ratios[deep][np.argmax(np.abs(ratios[deep] - 2.0))])
    claims = [
        make_claim(
            "Implicit low-rank bias of depth: the deepest flow recovers the target",
            f"test error at T, N = {deepest}",
            0.05,
            final_err[i_deep],
            0.0,
            "le",
        ),
        make_claim(
            "Depth 1 (Euclidean flow) never moves the unobserved entries",
            "test error at T, N = 1",
            1.0,
            final_err[i1],
            1e-2,
            "abs",
        ),
        make_claim(
            "The deepest flow ends at the target's rank",
            f"numerical rank (s_i > {RANK_THRESHOLD} s_1) at T, N = {deepest}",
            float(p["rank"]),
            float(np.sum(sv_deep_final > RANK_THRESHOLD * sv_deep_final[0])),
            0.0,
            "abs",
        ),
        make_claim(
            f"[G] Thm 2 at d = {p['d']}: upstairs flow (N = {Nu}) ends where the "
            "downstairs flow does",
            "|phi(W(T)) - X(T)| / |X(T)|",
            0.0,
            up_gap,
            1e-4,
        ),
        make_claim(
            "Plain GD on the weights (balanced start, lr = 1/(N sigma^(2-2/N))) tracks the "
            "flow to first order in lr: halving lr halves the gap at t = T",
            "|phi(W_lr(T)) - X(T)| / |phi(W_lr/2(T)) - X(T)|, farthest from 2 over N >= 2",
            2.0,
            worst_ratio,
            0.2,
        ),
        make_claim(
            "The learning-rate rule is stable: GD's training loss never increases",
            "increases between saved steps, all depths",
            0.0,
            float(sum(out["gd_increases"])),
            0.0,
        ),
        make_claim(
            "GD recovers the target too (implicit low-rank bias of depth in discrete time)",
            f"GD test error at T, N = {deepest}",
            0.05,
            gd_final_err[i_deep],
            0.0,
            "le",
        ),
    ]
    data = dict(out)
    data["gd_lr"] = np.array(out["gd_lr"])
    data["gd_gap"] = gd_gap
    data["gd_increases"] = np.array(out["gd_increases"])
    data.update(
        {
            "depths": np.array(p["depths"]),
            "target_erank": target_erank,
            "d": p["d"],
            "rank": p["rank"],
            "m": p["m"],
            "upstairs_gap": up_gap,
        }
    )
    summary = {
        "final_test_error": dict(zip(map(str, p["depths"]), final_err, strict=True)),
        "final_effective_rank": dict(
            zip(map(str, p["depths"]), [float(e[-1]) for e in out["erank"]], strict=True)
        ),
        "rank_events": {
            str(N): ev.tolist() for N, ev in zip(p["depths"], out["rank_events"], strict=True)
        },
        "upstairs_gap": up_gap,
        "gd_lr": dict(zip(map(str, p["depths"]), map(float, data["gd_lr"]), strict=True)),
        "gd_final_test_error": dict(zip(map(str, p["depths"]), gd_final_err, strict=True)),
        "gd_seconds": gd_seconds,
        "gd_gap_at_T": {
            str(N): {"lr": float(g[0]), "lr/2": float(g[1])}
            for N, g in zip(p["depths"], gd_gap, strict=True)
        },
    }
    notes = (
        f"Target {p['d']} x {p['d']} of rank {p['rank']}, {p['m']} observed entries, start "
        f"{INIT_SCALE} x Gaussian / sqrt(d), adaptive Dormand-Prince to T = "
        f"{p['t_final']:g} (default tolerances of end_to_end_flow). Final test error per depth: "
        + ", ".join(f"N={N}: {e:.3g}" for N, e in zip(p["depths"], final_err, strict=True))
        + ". Plain GD on the weights from the balanced lift of the start, lr = 1/(N sigma^(2-2/N)) "
        "(half the stability limit at the flow's end point, sigma its largest singular value): "
        + ", ".join(
            f"N={N}: lr={lr:.3g}, test error {e:.3g}, gap to the flow at T {g[0]:.2g} "
            f"(lr/2: {g[1]:.2g})"
            for N, lr, e, g in zip(p["depths"], data["gd_lr"], gd_final_err, gd_gap, strict=True)
        )
        + "."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Test error, training loss and effective rank against time; GD beside the flow."""
    import matplotlib.pyplot as plt

    D = result.data
    fig, ax = plt.subplots(1, 3, figsize=(15.0, 4.2))
    for i, N in enumerate(D["depths"]):
        c = f"C{i}"
        t = D["times"][i]
        tg = D["gd_times"][i]
        lr = D["gd_lr"][i]
        ax[0].semilogy(t, D["test_error"][i], color=c, label=f"N = {N}, flow")
        ax[0].semilogy(tg, D["gd_test_error"][i], color=c, ls="--", label=f"GD, lr = {lr:.2g}")
        ax[1].semilogy(t, D["train_energy"][i], color=c, label=f"N = {N}, flow")
        ax[1].semilogy(tg, D["gd_train_energy"][i], color=c, ls="--", label=f"GD, lr = {lr:.2g}")
        ax[2].semilogy(t, D["erank"][i], color=c, label=f"N = {N}")
        for te, r in D["rank_events"][i]:
            j = min(np.searchsorted(t, te), len(t) - 1)
            ax[2].plot(te, D["erank"][i][j], "v" if r < D["erank"][i][j] else "^", color=c, ms=6)
            ax[2].annotate(
                f"{int(r)}",
                (te, D["erank"][i][j]),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=7,
                color=c,
            )
    # depth 1 fits the observed entries exactly (GD at lr = 1 in one step): show the deep ones
    deep = [float(np.min(e)) for e, N in zip(D["train_energy"], D["depths"], strict=True) if N >= 2]
    if deep and min(deep) > 0:
        ax[1].set_ylim(bottom=0.1 * min(deep))
    ax[2].axhline(D["target_erank"], color="k", ls=":", lw=1, label="target")
    ax[0].set(
        xlabel="t  (GD: steps x lr)",
        ylabel="relative error on unobserved entries",
        title=f"test error: d = {D['d']}, rank {D['rank']}, {D['m']} observed",
    )
    ax[1].set(
        xlabel="t  (GD: steps x lr)",
        ylabel="E(X) on observed entries",
        title="training loss (solid: flow, dashed: GD)",
    )
    ax[2].set(
        xlabel="t",
        ylabel="effective rank",
        title="effective rank, flow (triangles: rank changes)",
    )
    ax[0].legend(fontsize=7, ncol=2, loc="lower left")
    ax[1].legend(fontsize=7, ncol=2, loc="upper right")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    cap = (
        "Left, middle: test error (unobserved entries) and training loss along the downstairs "
        "flow (solid) and plain GD on the weights from the balanced start (dashed, lr = "
        "1/(N sigma^(2-2/N)), t = steps x lr) for each depth; right: effective rank along the "
        "flow, triangles where the numerical rank (s_i > 0.1 s_1) changes.\n"
        "GD follows the flow at every depth (gap O(lr)); depth 1 stays at test error 1, deeper "
        "networks drop to low rank first, then add singular values one by one and recover "
        "the target."
    )
    return [FigureSpec("error_and_rank", cap, fig)]
