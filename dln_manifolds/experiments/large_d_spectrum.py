r"""Experiment 8: [G] section 14.3 (open question), singular values of long runs of the RLE.

The downstairs Riemannian Langevin equation ([G] eq. 12.12) with
:math:`E(X) = \tfrac12\mathrm{tr}(X^TX)`, :math:`\beta = d`, :math:`\kappa = 1`, is run for several
d and N. We pool the singular values of the second half of each run, rescale them to unit
mean square, and compare their density with the quarter-circle law
:math:`\sqrt{4-x^2}/\pi` on [0, 2] (the semicircle law folded onto the half line; it is the
large-d law of Gaussian matrices, i.e. the equilibrium at N = 1 if it were reached).
This is an open question: the report states what the runs show and makes **no claim**.

Real matrices: the singular set has codimension one, and the RLE can reach it (near a
vanishing singular value at N = 2 the dynamics looks like a squared Bessel process of
dimension 1). The library sampler stops a path there; we keep only samples taken before a
path's exit time and report the fraction of paths still alive at the end.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..energies import QuadraticEnergy
from ..langevin import end_to_end_langevin
from ._base import ExperimentResult, FigureSpec, check_size

NAME = "large_d_spectrum"
NUMBER = 8
OPEN_QUESTION = True  # no claim rows: the report shows observations only
TITLE = "[G] section 14.3 (open question): singular values of long RLE runs vs the quarter circle"

PARAMS = {
    "tiny": {"dims": (4,), "depths": (1, 2), "n_paths": 4, "t_final": 1.0, "dt": 0.01},
    "quick": {"dims": (8, 16), "depths": (1, 2, 4), "n_paths": 8, "t_final": 2.0, "dt": 0.01},
    "full": {
        "dims": (16, 32, 64),
        "depths": (1, 2, 4),
        "n_paths": 4,
        "t_final": 6.0,
        "dt": 0.01,
    },
}
BINS = np.linspace(0.0, 3.0, 31)
#: Halvings of a step before a path counts as having reached the singular set. The
#: sampler's unbiased step control splits steps ahead of the noise near small singular
#: values; paths heading for det X = 0 (most of them here, at N = 1 almost at once) would
#: otherwise be followed down to 2^-30 of a step, at a cost that dominates the run.
MAX_HALVINGS = 10


def quarter_circle_cdf(x: np.ndarray) -> np.ndarray:
    """CDF of the quarter-circle law sqrt(4 - x^2)/pi on [0, 2]."""
    x = np.clip(np.asarray(x, dtype=float), 0.0, 2.0)
    return (x * np.sqrt(4.0 - x * x) / 2.0 + 2.0 * np.arcsin(x / 2.0)) / np.pi


def _ks_quarter_circle(x: np.ndarray) -> float:
    x = np.sort(x)
    F = quarter_circle_cdf(x)
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n)))


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Run the RLE ensembles and collect rescaled singular values.

    Returns
    -------
    ExperimentResult
        ``data``: ``dims``, ``depths``, ``bins``; ``density`` (n_dims, n_depths, n_bins):
        histogram density of the rescaled singular values (NaN where no sample survived);
        ``ks`` (n_dims, n_depths): Kolmogorov distance to the quarter-circle law;
        ``rms`` (n_dims, n_depths): root mean square singular value before rescaling;
        ``alive`` (n_dims, n_depths): fraction of paths alive at T; ``n_samples``.
        ``claims`` is empty: [G] section 14.3 is an open question.
    """
    p = PARAMS[check_size(size)]
    dims, depths = p["dims"], p["depths"]
    shape = (len(dims), len(depths))
    density = np.full(shape + (BINS.size - 1,), np.nan)
    ks, rms, alive = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape)
    low = np.full(shape, np.nan)  # mass of the rescaled singular values below 0.2
    n_samples = np.zeros(shape, dtype=int)
    save_every = max(1, int(round(p["t_final"] / p["dt"] / 40)))
    for i, d in enumerate(dims):
        energy = QuadraticEnergy(np.zeros((d, d)))
        rng = np.random.default_rng([seed, d])
        X0 = rng.standard_normal((p["n_paths"], d, d)) / np.sqrt(d)
        for j, N in enumerate(depths):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # paths stopped at the boundary
                res = end_to_end_langevin(
                    X0,
                    N,
                    float(d),
                    1.0,
                    energy,
                    t_final=p["t_final"],
                    dt=p["dt"],
                    seed=np.random.SeedSequence([seed, d, N]),
                    save_every=save_every,
                    max_halvings=MAX_HALVINGS,
                    progress=progress,
                )
            exit_t = res.exit_times if res.exit_times is not None else np.full(X0.shape[0], np.inf)
            keep_t = res.times >= p["t_final"] / 2
            mask = keep_t[:, None] & (res.times[:, None] < exit_t[None, :])  # (n_t, B)
            alive[i, j] = float(np.mean(np.isinf(exit_t)))
            if not mask.any():
                continue
            s = np.linalg.svd(res.states[mask], compute_uv=False).ravel()
            rms[i, j] = float(np.sqrt(np.mean(s**2)))
            x = s / rms[i, j]
            density[i, j] = np.histogram(x, bins=BINS, density=True)[0]
            ks[i, j] = _ks_quarter_circle(x)
            low[i, j] = float(np.mean(x < 0.2))
            n_samples[i, j] = x.size
    labels = [(f"d={d}", f"N={N}") for d in dims for N in depths]
    summary = {
        "ks_to_quarter_circle": {
            f"{a},{b}": float(v) for (a, b), v in zip(labels, ks.ravel(), strict=True)
        },
        "fraction_alive_at_T": {
            f"{a},{b}": float(v) for (a, b), v in zip(labels, alive.ravel(), strict=True)
        },
        "mass_below_0_2": {
            f"{a},{b}": float(v) for (a, b), v in zip(labels, low.ravel(), strict=True)
        },
        "rms_singular_value": {
            f"{a},{b}": float(v) for (a, b), v in zip(labels, rms.ravel(), strict=True)
        },
    }
    lines = []
    for i, d in enumerate(dims):
        for j, N in enumerate(depths):
            if n_samples[i, j] == 0:
                lines.append(f"d = {d}, N = {N}: no path alive in [T/2, T]")
                continue
            lines.append(
                f"d = {d}, N = {N}: KS distance to the quarter circle {ks[i, j]:.3f}, "
                f"mass below 0.2 {low[i, j]:.3f} (quarter circle "
                f"{quarter_circle_cdf(0.2):.3f}), rms singular value {rms[i, j]:.3f}, "
                f"paths alive at T {alive[i, j]:.2f}"
            )
    notes = (
        "Open question, no claim. beta = d, kappa = 1, T = "
        f"{p['t_final']:g}, dt = {p['dt']:g}, {p['n_paths']} paths per (d, N), samples from "
        "[T/2, T] taken before each path's exit time. Observed: " + "; ".join(lines) + "."
    )
    data = {
        "dims": np.array(dims),
        "depths": np.array(depths),
        "bins": BINS,
        "density": density,
        "ks": ks,
        "rms": rms,
        "alive": alive,
        "n_samples": n_samples,
        "mass_below_0_2": low,
    }
    return ExperimentResult(NAME, TITLE, size, seed, data, [], summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Rescaled singular-value densities per d (one line per N) against the quarter circle."""
    import matplotlib.pyplot as plt

    D = result.data
    nd = len(D["dims"])
    fig, axes = plt.subplots(1, nd, figsize=(4.6 * nd, 3.8), squeeze=False)
    centers = 0.5 * (D["bins"][1:] + D["bins"][:-1])
    xq = np.linspace(0, 2, 200)
    for i, (ax, d) in enumerate(zip(axes[0], D["dims"], strict=True)):
        ax.plot(xq, np.sqrt(4 - xq**2) / np.pi, "k--", lw=1.2, label="quarter circle")
        for j, N in enumerate(D["depths"]):
            if np.all(np.isnan(D["density"][i, j])):
                continue
            ax.step(
                centers,
                D["density"][i, j],
                where="mid",
                color=f"C{j}",
                label=f"N = {N} (KS {D['ks'][i, j]:.2f}, alive {D['alive'][i, j]:.0%})",
            )
        ax.set(xlabel="singular value / rms", ylabel="density", title=f"d = {d}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    cap = (
        "Density of rescaled singular values from the second half of RLE runs with "
        "E = tr(X^T X)/2, beta = d, against the quarter-circle law (dashed).\nAn open "
        "question ([G] 14.3): compare the shapes as N grows; no theorem is claimed, and "
        "paths that reach the singular set are cut there."
    )
    return [FigureSpec("densities", cap, fig)]
