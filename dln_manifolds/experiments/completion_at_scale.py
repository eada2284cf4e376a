r"""Experiment 6: matrix completion at scale with the downstairs flow on (M_d, g^N).

A rank-r target :math:`M \in \mathbb{R}^{d\times d}` is observed on m random entries; the
energy is :math:`E(X) = \tfrac12 \sum_{(i,j)\in\Omega} (X_{ij} - M_{ij})^2`. From a small
random start the downstairs flow :math:`\dot X = -\mathcal{A}_{N,X}(E'(X))` ([G] eq. 4.21)
runs for depths 1 to 4. Depth 1 never moves the unobserved entries; larger depths learn the
low-rank target one singular value at a time (saddle to saddle). The test error is measured
on the unobserved entries; the effective rank is :math:`\exp(-\sum_i p_i\log p_i)`,
:math:`p_i = s_i / \sum_j s_j`. One depth is also run upstairs ([G] Thm 2) as a check.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ..energies import MatrixCompletionEnergy
from ..flows.learning import end_to_end_flow, learning_flow
from ..network import balanced_point
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
    """Run the downstairs flow for each depth (and one depth upstairs).

    Returns
    -------
    ExperimentResult
        ``data``: ``depths``; per depth (lists of arrays) ``times``, ``test_error``,
        ``train_energy``, ``erank``, ``rank_events`` (n_events, 2): time and new numerical
        rank, ``singular_values`` (n_t, k), the top k = rank + 2; scalars ``target_erank``,
        ``d``, ``rank``, ``m``; ``upstairs_gap`` (relative gap of the final end-to-end matrices).
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
        )
    }
    finals = {}
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
    ]
    data = dict(out)
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
    }
    notes = (
        f"Target {p['d']} x {p['d']} of rank {p['rank']}, {p['m']} observed entries, start "
        f"{INIT_SCALE} x Gaussian / sqrt(d), adaptive Dormand-Prince to T = "
        f"{p['t_final']:g} (default tolerances of end_to_end_flow). Final test error per depth: "
        + ", ".join(f"N={N}: {e:.3g}" for N, e in zip(p["depths"], final_err, strict=True))
        + "."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Test error and effective rank against time, rank events marked."""
    import matplotlib.pyplot as plt

    D = result.data
    fig, ax = plt.subplots(1, 2, figsize=(10.5, 4.0))
    for i, N in enumerate(D["depths"]):
        c = f"C{i}"
        t = D["times"][i]
        ax[0].semilogy(t, D["test_error"][i], color=c, label=f"N = {N}")
        ax[1].semilogy(t, D["erank"][i], color=c, label=f"N = {N}")
        for te, r in D["rank_events"][i]:
            j = min(np.searchsorted(t, te), len(t) - 1)
            ax[1].plot(te, D["erank"][i][j], "v" if r < D["erank"][i][j] else "^", color=c, ms=6)
            ax[1].annotate(
                f"{int(r)}",
                (te, D["erank"][i][j]),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=7,
                color=c,
            )
    ax[1].axhline(D["target_erank"], color="k", ls=":", lw=1, label="target")
    ax[0].set(
        xlabel="t",
        ylabel="relative error on unobserved entries",
        title=f"d = {D['d']}, rank {D['rank']}, {D['m']} observed",
    )
    ax[1].set(
        xlabel="t",
        ylabel="effective rank",
        title="effective rank (triangles: numerical-rank changes)",
    )
    ax[0].legend(fontsize=8)
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    cap = (
        "Left: test error (unobserved entries) along the downstairs flow for each depth; "
        "right: effective rank, triangles where the numerical rank (s_i > 0.1 s_1) "
        "changes.\n"
        "Depth 1 stays at error 1; deeper flows drop to low rank first, then add singular "
        "values one by one and recover the target."
    )
    return [FigureSpec("error_and_rank", cap, fig)]
