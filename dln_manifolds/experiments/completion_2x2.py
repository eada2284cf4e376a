r"""Experiment 5: [G] section 14.1, limits of the downstairs flow for 2 x 2 matrix completion.

Energy (14.1), :math:`E(X) = \tfrac12((X_{11}-1)^2 + (X_{22}-1)^2)`, flow (14.5),
:math:`\dot X = -\mathcal{A}_{N,X}(E'(X))` (rescaled :math:`\mathcal{A}_{\infty,X}` for
N = inf, eq. 14.7). Every start converges to the zero set (14.2); the question of [G] is
which point. For N = 1 the off-diagonal entries never move; from small random starts and
N >= 2 the limits are close to the rank-one family (14.3), clustered near
:math:`[[1, \pm 1], [\pm 1, 1]]` (eq. 14.4 and its mirror images).

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ..energies import completion_energy_2x2
from ..flows.learning import end_to_end_flow
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "completion_2x2"
NUMBER = 5
TITLE = "[G] section 14.1: 2 x 2 matrix completion, limits of the downstairs flow against N"

PARAMS = {
    "tiny": {"depths": (1, 3, np.inf), "n_starts": 6, "t_final": 150.0},
    "quick": {"depths": (1, 2, 3, 5, 10, np.inf), "n_starts": 12, "t_final": 100.0},
    "full": {"depths": (1, 2, 3, 5, 10, np.inf), "n_starts": 100, "t_final": 400.0},
}
INIT_SCALE = 0.1  # small random starts: the regime of the low-rank bias
RANK1_RATIO = 0.2  # "near rank 1": s_min / s_max below this (N = 1 gives about 0.9)
CLUSTER_RADIUS = 0.3  # "near [[1, +-1], [+-1, 1]]": Frobenius distance below this


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Integrate (14.5) from random small starts for each depth.

    Returns
    -------
    ExperimentResult
        ``data``: ``depths`` (n_depths,), with inf for the limit; ``starts`` (n_starts, 2, 2)
        (the same starts for every depth); ``limits`` (n_depths, n_starts, 2, 2): X(T);
        ``sv_ratio`` (n_depths, n_starts): s_min / s_max of X(T) (NaN for a run stopped at
        the singular set); ``energy`` (n_depths,
        n_starts): E(X(T)).
    """
    p = PARAMS[check_size(size)]
    energy = completion_energy_2x2()
    rng = np.random.default_rng(seed)
    starts = INIT_SCALE * rng.standard_normal((p["n_starts"], 2, 2))
    depths = np.array(p["depths"], dtype=float)
    limits = np.full((depths.size, p["n_starts"], 2, 2), np.nan)
    n_singular = np.zeros(depths.size, dtype=int)
    for i, N in enumerate(depths):
        depth = np.inf if np.isinf(N) else int(N)
        for k, X0 in enumerate(starts):
            try:
                res = end_to_end_flow(
                    X0,
                    energy,
                    depth,
                    p["t_final"],
                    dt=0.01,
                    adaptive=True,
                    save_every=10**9,
                    progress=progress,
                )
            except RuntimeError:
                # a step changed the sign of det X: the run came within rounding of the
                # singular set (rank one), where the flow cannot be followed further
                n_singular[i] += 1
                continue
            limits[i, k] = res.final
    valid = ~np.isnan(limits[..., 0, 0])
    s = np.linalg.svd(np.nan_to_num(limits), compute_uv=False)
    sv_ratio = np.where(valid, s[..., 1] / np.maximum(s[..., 0], 1e-300), np.nan)
    E_end = np.where(valid, energy.value(np.nan_to_num(limits)), np.nan)
    near_rank1 = np.nanmean(np.where(valid, sv_ratio < RANK1_RATIO, np.nan), axis=1)
    signs = np.sign(limits[..., 0, 1])[..., None, None]
    ref = np.array([[1.0, 1.0], [1.0, 1.0]])
    cluster_dist = np.linalg.norm(
        limits - np.where(signs < 0, ref * [[1, -1], [-1, 1]], ref), axis=(-2, -1)
    )
    cluster_dist = np.where(valid, cluster_dist, np.nan)
    near_cluster = np.nanmean(np.where(valid, cluster_dist < CLUSTER_RADIUS, np.nan), axis=1)
    deep = depths >= 2
    i1 = int(np.flatnonzero(depths == 1)[0])
    offdiag_drift = float(
        np.nanmax(np.abs(limits[i1][:, [0, 1], [1, 0]] - starts[:, [0, 1], [1, 0]]))
    )
    claims = [
        make_claim(
            "[G] eq. 14.2: the runs converge to the zero set {X11 = X22 = 1}",
            "fraction of runs with E(X(T)) < 1e-8 (a start near 0 escapes slowly)",
            0.9,
            float(np.mean(E_end[valid] < 1e-8)),
            0.0,
            "ge",
        ),
        make_claim(
            "[G] eq. 14.5, N = 1: off-diagonal entries do not move (E' is diagonal)",
            "max |X12(T) - X12(0)|, |X21(T) - X21(0)|",
            0.0,
            offdiag_drift,
            1e-12,
        ),
        make_claim(
            "[G] section 14.1: N = 1 limits are not low rank",
            f"fraction with s2/s1 < {RANK1_RATIO}, N = 1",
            0.0,
            float(near_rank1[i1]),
            0.0,
            "le",
        ),
        make_claim(
            "[G] section 14.1 (numerics of [14]): limits near rank one for N >= 3",
            "max over N >= 3 of the median of s2/s1 at T",
            RANK1_RATIO,
            float(np.nanmax(np.nanmedian(sv_ratio[depths >= 3], axis=1))),
            0.0,
            "le",
        ),
        make_claim(
            "[G] eq. 14.4: limits cluster near [[1, +-1], [+-1, 1]] for N >= 2",
            f"fraction within {CLUSTER_RADIUS} (Frobenius), all N >= 2",
            0.5,
            float(np.mean(cluster_dist[deep][valid[deep]] < CLUSTER_RADIUS)),
            0.0,
            "ge",
        ),
    ]
    data = {
        "depths": depths,
        "starts": starts,
        "limits": limits,
        "sv_ratio": sv_ratio,
        "energy": E_end,
    }
    labels = ["inf" if np.isinf(N) else str(int(N)) for N in depths]
    summary = {
        "fraction_near_rank1": dict(zip(labels, map(float, near_rank1), strict=True)),
        "fraction_near_cluster": dict(zip(labels, map(float, near_cluster), strict=True)),
        "median_sv_ratio": dict(
            zip(labels, map(float, np.nanmedian(sv_ratio, axis=1)), strict=True)
        ),
        "runs_that_reached_the_singular_set": dict(zip(labels, map(int, n_singular), strict=True)),
    }
    notes = (
        f"{p['n_starts']} starts X0 = {INIT_SCALE} x Gaussian, the same for every depth; "
        f"adaptive Dormand-Prince to T = {p['t_final']:g}. For N > 2 the small singular "
        "value decays only algebraically, so 'near rank one' depends on T. Fraction near "
        "rank one per depth: "
        + ", ".join(f"N={lab}: {v:.2f}" for lab, v in zip(labels, near_rank1, strict=True))
        + f". Runs stopped because a step crossed the singular set (left out): "
        f"{int(n_singular.sum())}."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Off-diagonal entries of the limits, per depth, with the rank-one hyperbola."""
    import matplotlib.pyplot as plt

    D = result.data
    depths, limits, ratio = D["depths"], D["limits"], D["sv_ratio"]
    n = depths.size
    fig, axes = plt.subplots(
        1, n, figsize=(2.4 * n + 1, 3.0), sharex=True, sharey=True, layout="constrained"
    )
    axes = np.atleast_1d(axes)
    a = np.concatenate([np.linspace(-3, -1 / 3, 100), np.linspace(1 / 3, 3, 100)])
    for ax, N, L, r in zip(axes, depths, limits, ratio, strict=True):
        ax.plot(a[:100], 1 / a[:100], "k-", lw=0.7)
        ax.plot(a[100:], 1 / a[100:], "k-", lw=0.7, label="rank one (14.3)")
        sc = ax.scatter(
            L[:, 0, 1],
            L[:, 1, 0],
            c=np.log10(np.maximum(r, 1e-6)),
            s=14,
            cmap="viridis",
            vmin=-4,
            vmax=0,
        )
        ax.plot([1, -1], [1, -1], "r+", ms=10, label="(14.4)")
        ax.set(
            xlim=(-3, 3),
            ylim=(-3, 3),
            xlabel=r"$X_{12}$",
            title="N = inf" if np.isinf(N) else f"N = {int(N)}",
        )
    axes[0].set_ylabel(r"$X_{21}$")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.colorbar(sc, ax=list(axes), label=r"$\log_{10} s_2/s_1$", shrink=0.9, pad=0.01)
    cap = (
        "Off-diagonal entries (X12, X21) of the limits of flow (14.5) from the same small "
        "random starts, one panel per depth.\nN = 1 leaves them near 0 (full rank); for N >= 2"
        " they move onto the rank-one hyperbola X12 X21 = 1, near (1, 1) or (-1, -1)."
    )
    return [FigureSpec("limits", cap, fig)]
