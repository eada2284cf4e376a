r"""Experiment 7: [G] section 14.2, minimizers of the free energy for the energy (14.1), d = 2.

:math:`F_\beta = E - S/\beta` ([G] eq. 6.6) with the entropy of [G] Thm 10. Two findings:

1. For the energy (14.1) itself and N >= 2, :math:`F_\beta` is unbounded below: on the zero
   set, along :math:`X_a = [[1, a], [0, 1]]`, :math:`\sigma_1 \sim a`, :math:`\sigma_2 \sim 1/a`
   and :math:`S \sim (1 - 1/N)\log a`, so :math:`dF/d\log a \to -(1-1/N)/\beta`. The minimizing
   set :math:`\mathcal{S}_\beta` of [G] section 14.2 is empty as posed.
2. With a small weight decay, :math:`E_\lambda = E + \tfrac{\lambda}{2}|X|^2`, minimizers exist.
   We find them with the free energy flow ([G] eq. 6.7) from several starts, for a grid of
   beta and N. As beta grows they approach the minimizer :math:`I/(1+\lambda)` of
   :math:`E_\lambda`; for N = 1 the entropy is constant and beta plays no role.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..energies import Energy, completion_energy_2x2
from ..entropy import free_energy, free_energy_gradient
from ..flows.learning import free_energy_flow
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "free_energy_2x2"
NUMBER = 7
TITLE = "[G] section 14.2: free energy minimizers for the 2 x 2 completion energy"

PARAMS = {
    "tiny": {"depths": (1, 2), "betas": (1.0, 16.0), "n_starts": 2, "t_final": 40.0},
    "quick": {
        "depths": (1, 2, 4),
        "betas": (1.0, 4.0, 16.0, 64.0),
        "n_starts": 2,
        "t_final": 100.0,
    },
    "full": {
        "depths": (1, 2, 3, 4, 8),
        "betas": (0.5, 1.0, 4.0, 16.0, 64.0, 256.0),
        "n_starts": 2,
        "t_final": 400.0,
    },
}
LAMBDA = 0.5
RAY_DEPTHS = (2, 3, 4, 8)
GRAD_TOL = 1e-7  # stationarity reached by the free energy flow before we stop it


@dataclass(frozen=True, eq=False)
class WeightDecayEnergy(Energy):
    r""":math:`E(X) + \tfrac{\lambda}{2}|X|_F^2` for a base energy E."""

    base: Energy
    lam: float

    def value(self, X):
        return self.base.value(X) + 0.5 * self.lam * np.sum(np.asarray(X) ** 2, axis=(-2, -1))

    def gradient(self, X):
        return self.base.gradient(X) + self.lam * np.asarray(X)

    def hessian(self, X, Z):
        return self.base.hessian(X, Z) + self.lam * np.asarray(Z)


def _starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Well-conditioned random starts Q1 diag(s) Q2 with s in [0.5, 1.5], both signs of det."""
    out = []
    for _ in range(n):
        q1, _ = np.linalg.qr(rng.standard_normal((2, 2)))
        q2, _ = np.linalg.qr(rng.standard_normal((2, 2)))
        out.append(q1 @ np.diag(rng.uniform(0.5, 1.5, 2)) @ q2)
    return np.array(out)


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """The ray test of unboundedness, then minimizers of the weight-decayed free energy.

    Returns
    -------
    ExperimentResult
        ``data``: ``ray_a`` (n_a,), ``ray_depths``, ``ray_F`` (n_depths, n_a): F_1 along
        X_a = [[1, a], [0, 1]]; ``depths``, ``betas``; ``minimizers`` (n_depths, n_betas, 2, 2)
        (lowest F over the starts), ``min_F`` and ``min_sv`` (n_depths, n_betas[, 2]),
        ``grad_norm`` (n_depths, n_betas), ``n_failed`` (runs that hit the singular set).
    """
    p = PARAMS[check_size(size)]
    rng = np.random.default_rng(seed)
    E = completion_energy_2x2()

    # 1. the raw free energy along the zero set
    ray_a = np.logspace(0.5, 6, 23)
    ray_F = np.array(
        [
            [free_energy(np.array([[1.0, a], [0.0, 1.0]]), E, depth=N, beta=1.0) for a in ray_a]
            for N in RAY_DEPTHS
        ]
    )
    slopes = (ray_F[:, -1] - ray_F[:, -2]) / np.log(ray_a[-1] / ray_a[-2])
    predicted = np.array([-(1 - 1 / N) for N in RAY_DEPTHS])
    slope_err = float(np.max(np.abs(slopes - predicted) / np.abs(predicted)))

    # 2. minimizers with weight decay
    C = WeightDecayEnergy(E, LAMBDA)
    depths, betas = p["depths"], np.array(p["betas"])
    minimizers = np.full((len(depths), betas.size, 2, 2), np.nan)
    min_F = np.full((len(depths), betas.size), np.nan)
    grad = np.full((len(depths), betas.size), np.nan)
    n_failed = 0
    starts = _starts(rng, p["n_starts"])
    for i, N in enumerate(depths):
        for j, beta in enumerate(betas):
            for X0 in starts:
                try:
                    X = X0
                    # continue the flow (at most 4 more spans) until it is stationary
                    for _ in range(5):
                        X = free_energy_flow(
                            X,
                            C,
                            N,
                            beta,
                            p["t_final"],
                            dt=0.01,
                            adaptive=True,
                            save_every=10**9,
                            progress=progress,
                        ).final
                        if (
                            np.linalg.norm(free_energy_gradient(X, C, depth=N, beta=beta))
                            < GRAD_TOL
                        ):
                            break
                except (ValueError, RuntimeError, FloatingPointError):
                    n_failed += 1  # the path reached the singular set (rank drop)
                    continue
                F = free_energy(X, C, depth=N, beta=beta)
                if not F >= min_F[i, j]:  # also true when min_F is nan
                    min_F[i, j] = F
                    minimizers[i, j] = X
                    grad[i, j] = np.linalg.norm(free_energy_gradient(X, C, depth=N, beta=beta))
    min_sv = np.linalg.svd(np.nan_to_num(minimizers), compute_uv=False)
    X_inf = np.eye(2) / (1 + LAMBDA)
    dist = np.linalg.norm(minimizers - X_inf, axis=(-2, -1))
    i1 = depths.index(1)
    claims = [
        make_claim(
            "[G] eq. 6.6 with E of (14.1): F_beta unbounded below on the zero set, N >= 2",
            "dF/dlog a along [[1, a], [0, 1]], beta = 1, relative error over N = "
            + ", ".join(map(str, RAY_DEPTHS))
            + " (predicted -(1 - 1/N))",
            0.0,
            slope_err,
            1e-3,
        ),
        make_claim(
            "[G] eq. 6.7: the free energy flow reaches critical points",
            "max |grad_{g^N} F| at the computed minimizers",
            0.0,
            float(np.nanmax(grad)),
            1e-5,
        ),
        make_claim(
            "[G] Thm 10 at N = 1: S is constant, so the minimizer ignores beta",
            "max_beta |X*(beta) - I/(1 + lambda)|, N = 1",
            0.0,
            float(np.nanmax(dist[i1])),
            1e-6,
        ),
        make_claim(
            "[G] section 6.3: as beta -> inf the minimizers approach argmin E_lambda",
            f"max_N |X*(beta) - I/(1 + lambda)| at beta = {betas[-1]:g}",
            0.0,
            float(np.nanmax(dist[:, -1])),
            0.1,
        ),
    ]
    data = {
        "ray_a": ray_a,
        "ray_depths": np.array(RAY_DEPTHS),
        "ray_F": ray_F,
        "depths": np.array(depths),
        "betas": betas,
        "minimizers": minimizers,
        "min_F": min_F,
        "min_sv": min_sv,
        "grad_norm": grad,
        "lam": LAMBDA,
        "n_failed": n_failed,
    }
    summary = {
        "ray_slopes": dict(zip(map(str, RAY_DEPTHS), map(float, slopes), strict=True)),
        "minimizer_singular_values": {
            f"N={N}": {f"beta={b:g}": min_sv[i, j].tolist() for j, b in enumerate(betas)}
            for i, N in enumerate(depths)
        },
        "n_failed_runs": n_failed,
    }
    notes = (
        "The raw energy (14.1) gives no minimizer for N >= 2 (finding 1); the grid uses "
        f"E + {LAMBDA}/2 |X|^2, {p['n_starts']} starts per (N, beta), the lowest F kept. "
        f"{n_failed} runs reached the singular set and were dropped."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """F along the ray, and the singular values of the minimizers against beta."""
    import matplotlib.pyplot as plt

    D = result.data
    fig, ax = plt.subplots(1, 2, figsize=(10.5, 4.0))
    for N, F in zip(D["ray_depths"], D["ray_F"], strict=True):
        ax[0].semilogx(D["ray_a"], F, label=f"N = {N}, slope -{1 - 1 / N:.3g}")
    ax[0].set(
        xlabel="a",
        ylabel=r"$F_1([[1, a], [0, 1]])$",
        title="E of (14.1): F is unbounded below on E = 0",
    )
    ax[0].legend(fontsize=8)
    for i, N in enumerate(D["depths"]):
        for k, ls in ((0, "-"), (1, "--")):
            ax[1].semilogx(
                D["betas"],
                D["min_sv"][i, :, k],
                ls,
                marker="o",
                color=f"C{i}",
                label=f"N = {N}" if k == 0 else None,
            )
    ax[1].axhline(1 / (1 + D["lam"]), color="k", ls=":", lw=1, label=r"$1/(1+\lambda)$")
    ax[1].set(
        xlabel=r"$\beta$",
        ylabel=r"singular values of the minimizer ($\sigma_1$ solid, "
        r"$\sigma_2$ dashed)",
        title=rf"$E + \frac{{{D['lam']}}}{{2}}|X|^2$: minimizers",
    )
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    cap = (
        "Left: the free energy along the zero-energy ray [[1, a], [0, 1]] decreases like "
        "-(1 - 1/N) log a / beta, so (14.1) alone has no minimizer.\nRight: with weight decay, "
        "singular values of the minimizers (sigma_1 = sigma_2 at all of them) against beta: "
        "they tend to 1/(1 + lambda), and N = 1 ignores beta."
    )
    return [FigureSpec("landscape", cap, fig)]
