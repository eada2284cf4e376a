r"""Experiment 2: [R] Thm 2, the moments decay like exp(-4t) along the regularizing flow.

Along :math:`\dot W = -\mathrm{grad}_{\mathcal{F}_X}|W|^2` every moment
:math:`G_k = W_k W_k^T - W_{k+1}^T W_{k+1}` obeys :math:`\dot G_k = -4 G_k` exactly, so
:math:`\log|G_k(t)|` is a line of slope -4 whatever the start, d and N. We fit the slope for
several random starts and every k.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ..flows.fiber import regularizing_flow
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "regularizing_rate"
NUMBER = 2
TITLE = "[R] Thm 2: log |G_k(t)| along the regularizing flow has slope -4"

PARAMS = {
    "tiny": {"d": 2, "depth": 3, "n_starts": 2, "t_final": 2.0, "dt": 0.02},
    "quick": {"d": 3, "depth": 4, "n_starts": 5, "t_final": 3.0, "dt": 0.01},
    "full": {"d": 5, "depth": 6, "n_starts": 10, "t_final": 4.0, "dt": 0.005},
}


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Integrate the regularizing flow from random Gaussian starts and fit ``log |G_k|`` against t.

    Returns
    -------
    ExperimentResult
        ``data``: ``times`` (n_t,); ``log_G`` (n_starts, n_t, N - 1): log of the Frobenius
        norm of each moment; ``slopes`` (n_starts, N - 1): least-squares slopes;
        ``product_error`` (n_starts,): max over t of ``|phi(W(t)) - X| / |X|``.
    """
    p = PARAMS[check_size(size)]
    rng = np.random.default_rng(seed)
    d, N = p["d"], p["depth"]
    log_G, slopes, prod_err, times = [], [], [], None
    for _ in range(p["n_starts"]):
        W0 = rng.standard_normal((N, d, d)) / np.sqrt(d)
        res = regularizing_flow(W0, p["t_final"], dt=p["dt"], progress=progress)
        times = res.times
        lg = np.log(np.linalg.norm(res.monitors["moments"], axis=(-2, -1)))
        log_G.append(lg)
        slopes.append(np.polyfit(times, lg, 1)[0])
        prod_err.append(float(np.max(res.monitors["product_error"])))
    log_G, slopes = np.array(log_G), np.array(slopes)
    claims = [
        make_claim(
            "[R] Thm 2: d|G|/dt = -4|G| along the regularizing flow",
            f"least-squares slope of log |G_k(t)|, mean over {slopes.size} fits",
            -4.0,
            float(np.mean(slopes)),
            1e-5,
            "rel",
        ),
        make_claim(
            "[R] Thm 2: the same rate for every start and every k",
            "max |slope + 4|",
            0.0,
            float(np.max(np.abs(slopes + 4.0))),
            1e-4,
        ),
        make_claim(
            "[R] eq. 1.13: the flow stays on the fiber",
            "max_t |phi(W(t)) - X| / |X|",
            0.0,
            max(prod_err),
            1e-12,
        ),
    ]
    data = {
        "times": times,
        "log_G": log_G,
        "slopes": slopes,
        "product_error": np.array(prod_err),
        "d": d,
        "depth": N,
    }
    summary = {
        "slopes": slopes.tolist(),
        "mean_slope": float(np.mean(slopes)),
        "max_product_error": max(prod_err),
    }
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """``log |G_k(t)|`` against t for every start and k, with the slope -4 reference."""
    import matplotlib.pyplot as plt

    D = result.data
    t, lg = D["times"], D["log_G"]
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for i in range(lg.shape[0]):
        for k in range(lg.shape[2]):
            ax.plot(
                t,
                lg[i, :, k],
                color=f"C{i % 10}",
                lw=1.2,
                alpha=0.85,
                label=f"start {i + 1}" if k == 0 else None,
            )
    ref0 = float(np.max(lg[:, 0, :])) + 0.5
    ax.plot(t, ref0 - 4 * t, "k--", lw=1.2, label="slope -4 ([R] Thm 2)")
    ax.set(
        xlabel="t",
        ylabel=r"$\log |G_k(t)|_F$",
        title=f"regularizing flow, d = {D['d']}, N = {D['depth']}: "
        f"fitted slopes {np.min(D['slopes']):.6f} .. {np.max(D['slopes']):.6f}",
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    cap = (
        "log of the norm of each moment G_k along the regularizing flow, one color per random "
        "start, all N - 1 moments.\nEvery curve is a straight line parallel to the dashed "
        "slope -4 ([R] Thm 2), whatever the start and k."
    )
    return [FigureSpec("moment_decay", cap, fig)]
