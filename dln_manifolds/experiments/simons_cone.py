r"""Experiment 9: [G] Remark 8 (Simons cone) and Remark 9 (depth 2 and Bures-Wasserstein).

Remark 8: for d = 2, N = 2 the balanced manifold :math:`\mathcal{M}` is cut out by the
three quadratic equations (4.25)-(4.27); adding the first and last gives the Simons cone
(4.28), :math:`|W_1|^2 = |W_2|^2` in :math:`\mathbb{R}^8`, and :math:`\mathcal{M}` is a
five-dimensional variety inside it.

Remark 9: on symmetric positive definite matrices and symmetric tangent vectors the depth-2
metric :math:`g^2` equals twice geomstats' ``SPDBuresWassersteinMetric`` (which carries a
factor 1/2, see :ref:`math-corrections`); other depths do not match.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [BJL] R. Bhatia, T. Jain and Y. Lim, *On the Bures-Wasserstein distance between
  positive definite matrices*, Expo. Math. 37 (2019).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from .._linalg import haar_orthogonal
from ..depth_metric import depth_inner_product
from ..network import balanced_point, moments
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "simons_cone"
NUMBER = 9
TITLE = "[G] Remarks 8-9: balanced points of d = N = 2 lie on the Simons cone; g^2 = 2 g^BW"

PARAMS = {
    "tiny": {"n_points": 40, "n_spd": 10, "depths": (1, 2, 3, 5)},
    "quick": {"n_points": 400, "n_spd": 60, "depths": (1, 2, 3, 4, 6, 10)},
    "full": {"n_points": 4000, "n_spd": 400, "depths": (1, 2, 3, 4, 6, 10, 20)},
}


def _moment_jacobian(W: np.ndarray) -> np.ndarray:
    """Matrix of V -> dG[V] (upper triangle of the symmetric 2 x 2 moment), shape (3, 8)."""
    cols = []
    eps = 1e-6
    for i in range(W.size):  # central differences are exact for the quadratic map G
        E = np.zeros(W.size)
        E[i] = eps
        E = E.reshape(W.shape)
        dG = (moments(W + E) - moments(W - E))[0] / (2 * eps)
        cols.append(dG[np.triu_indices(2)])
    return np.array(cols).T


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Sample balanced points of d = N = 2 and SPD tangent vectors; compare with the cone and BW.

    Returns
    -------
    ExperimentResult
        ``data`` holds ``norms_balanced`` (n, 2): the squared norms of the two layers of
        the balanced points;
        ``norms_random`` (n, 2) the same for unbalanced Gaussian points; ``eq_residuals``
        (n, 3): residuals of (4.25)-(4.27); ``jac_ranks`` (n,): rank of the moment map's
        Jacobian; ``depths`` and ``ratios`` (n_depths, n_spd): g^N(U, U) / g^BW(U, U).
    """
    p = PARAMS[check_size(size)]
    from geomstats.geometry.spd_matrices import SPDBuresWassersteinMetric, SPDMatrices

    rng = np.random.default_rng(seed)
    n = p["n_points"]
    norms_bal, norms_rand, resid, ranks = [], [], [], []
    for _ in range(n):
        X = rng.standard_normal((2, 2))
        W = balanced_point(X, 2, rotations=haar_orthogonal(rng, 2)[None])
        x = W.reshape(2, 4)  # x_1..x_4 = W_1 row-major, x_5..x_8 = W_2 ([G] eq. 4.24)
        x1, x2, x3, x4 = x[0]
        x5, x6, x7, x8 = x[1]
        resid.append(
            [
                x5**2 + x7**2 - (x1**2 + x2**2),  # (4.25)
                x5 * x6 + x7 * x8 - (x1 * x3 + x2 * x4),  # (4.26)
                x6**2 + x8**2 - (x3**2 + x4**2),  # (4.27)
            ]
        )
        norms_bal.append([np.sum(W[0] ** 2), np.sum(W[1] ** 2)])
        ranks.append(np.linalg.matrix_rank(_moment_jacobian(W), tol=1e-6))
        Wr = rng.standard_normal((2, 2, 2))
        norms_rand.append([np.sum(Wr[0] ** 2), np.sum(Wr[1] ** 2)])
    norms_bal, norms_rand = np.array(norms_bal), np.array(norms_rand)
    resid, ranks = np.array(resid), np.array(ranks)
    cone_err = np.max(np.abs(norms_bal[:, 0] - norms_bal[:, 1]) / norms_bal.sum(axis=1))

    # Remark 9: g^N vs Bures-Wasserstein on SPD matrices, symmetric tangent vectors.
    d = 3
    space = SPDMatrices(d, equip=False)
    bw = SPDBuresWassersteinMetric(space)
    depths = np.array(p["depths"], dtype=float)
    ratios = np.empty((depths.size, p["n_spd"]))
    for j in range(p["n_spd"]):
        A = rng.standard_normal((d, d))
        P = A @ A.T + 0.1 * np.eye(d)
        B = rng.standard_normal((d, d))
        U = B + B.T
        g_bw = float(bw.inner_product(U, U, P))
        for i, N in enumerate(depths):
            ratios[i, j] = depth_inner_product(P, int(N), U, U) / g_bw
    i2 = int(np.flatnonzero(depths == 2)[0])
    bw_err = float(np.max(np.abs(ratios[i2] - 2.0)))
    others = np.delete(ratios, i2, axis=0)
    min_other_dev = float(np.min(np.max(np.abs(others - 2.0), axis=1))) if others.size else 0.0

    claims = [
        make_claim(
            "[G] Remark 8, eq. 4.25-4.27: balanced points satisfy the quadratic system",
            "max |residual| of (4.25)-(4.27)",
            0.0,
            float(np.max(np.abs(resid))),
            1e-12,
        ),
        make_claim(
            "[G] eq. 4.28: M (d = N = 2) lies on the Simons cone",
            "max | |W1|^2 - |W2|^2 | / (|W1|^2 + |W2|^2)",
            0.0,
            cone_err,
            1e-13,
        ),
        make_claim(
            "[G] Remark 8 / eq. 4.6: dim M = 8 - 3 = 5 for d = N = 2",
            "8 - rank of dG (all samples equal)",
            5.0,
            8.0 - float(np.max(ranks)) if np.all(ranks == ranks[0]) else np.nan,
            0.0,
        ),
        make_claim(
            "[G] Remark 9: g^2 = 2 g^BW on SPD matrices (BW carries a factor 1/2)",
            "max |g^2(U,U) / g^BW(U,U) - 2|",
            0.0,
            bw_err,
            1e-10,
        ),
        make_claim(
            "[G] Remark 9: only depth 2 gives Bures-Wasserstein",
            "min over N != 2 of max |g^N / g^BW - 2|",
            1e-3,
            min_other_dev,
            0.0,
            "ge",
        ),
    ]
    data = {
        "norms_balanced": norms_bal,
        "norms_random": norms_rand,
        "eq_residuals": resid,
        "jac_ranks": ranks,
        "depths": depths,
        "ratios": ratios,
    }
    summary = {"cone_error": cone_err, "bw_ratio_error": bw_err, "n_points": n}
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Two panels: the cone test, and g^N / g^BW against N."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    D = result.data
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.2))
    nr = D["norms_random"]
    nb = D["norms_balanced"]
    ax[0].scatter(nr[:, 0], nr[:, 1], s=8, c="0.7", label="random W (not balanced)")
    ax[0].scatter(nb[:, 0], nb[:, 1], s=8, c="C3", label="balanced W (on M)")
    m = max(nr.max(), nb.max())
    ax[0].plot([0, m], [0, m], "k--", lw=0.8, label=r"Simons cone $|W_1|^2=|W_2|^2$")
    ax[0].set(
        xlabel=r"$|W_1|^2 = x_1^2+\dots+x_4^2$",
        ylabel=r"$|W_2|^2 = x_5^2+\dots+x_8^2$",
        title="[G] Remark 8: d = N = 2",
    )
    ax[0].legend(fontsize=8)
    depths, ratios = D["depths"], D["ratios"]
    for i, N in enumerate(depths):
        # multiplicative jitter: the same visual width at every depth on the log axis
        jitter = np.exp(0.04 * np.random.default_rng(i).standard_normal(ratios.shape[1]))
        ax[1].scatter(N * jitter, ratios[i], s=8, c="C3" if N == 2 else "C0")
    ax[1].axhline(
        2.0,
        color="k",
        ls="--",
        lw=0.8,
        label="2 (geomstats' BW has a factor 1/2: docs/mathematics.rst)",
    )
    ax[1].set(
        xscale="log",
        yscale="log",
        xlabel="depth N",
        ylabel=r"$g^N_P(U,U)\,/\,g^{BW}_P(U,U)$",
        title="[G] Remark 9: SPD P, symmetric U",
    )
    # one labelled tick per sampled depth (a log axis over 1..10 would label only 1 and 10)
    ax[1].set_xticks(depths, [f"{N:g}" for N in depths])
    ax[1].xaxis.set_minor_locator(NullLocator())
    ax[1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    cap = (
        "Left: |W1|^2 against |W2|^2 for balanced points (red) and random points (grey), "
        "d = N = 2.\nBalanced points sit exactly on the diagonal (the Simons cone, [G] eq. "
        "4.28); right: only depth 2 gives a constant ratio g^N/g^BW, equal to 2."
    )
    return [FigureSpec("cone_and_bw", cap, fig)]
