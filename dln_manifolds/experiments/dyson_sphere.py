r"""Experiment 10: [G] Thm 15 (Dyson Brownian motion through the lift) and eq. 11.11 (spheres).

Dyson Brownian motion ([G] eq. 11.1) is sampled two ways: directly, and as the eigenvalues
of the matrix process :math:`dM = P_M dH + \sqrt{2/\beta} P_M^\perp dH` on Hermitian matrices
([G] eq. 11.4); Thm 15(a) says the two have the same law. Both obey the exact identity
:math:`\tfrac{d}{dt}E\sum_i x_i^2 = d(d-1) + 2d/\beta` (Itô: the Coulomb drift contributes
:math:`\sum_{i\ne j} x_i/(x_i-x_j) = d(d-1)/2` twice). For tangential noise on spheres,
:math:`dm = P_m dW` ([G] eq. 11.10), the radius grows like :math:`\dot r = (d-1)/(2r)`
([G] eq. 11.11): :math:`E|m_t|^2 = |m_0|^2 + (d-1)t`.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ..langevin import dyson_brownian_motion, dyson_lift, sphere_tangential_noise
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "dyson_sphere"
NUMBER = 10
TITLE = "[G] Thm 15 and eq. 11.11: Dyson Brownian motion through the lift; sphere radius growth"

PARAMS = {
    "tiny": {
        "n_paths": 300,
        "t_final": 0.5,
        "dt": 5e-3,
        "sphere_dims": (3, 10),
        "sphere_paths": 400,
    },
    "quick": {
        "n_paths": 1000,
        "t_final": 1.0,
        "dt": 2e-3,
        "sphere_dims": (2, 3, 10),
        "sphere_paths": 2000,
    },
    "full": {
        "n_paths": 4000,
        "t_final": 1.0,
        "dt": 1e-3,
        "sphere_dims": (2, 3, 10, 50),
        "sphere_paths": 10000,
    },
}
BETA = 2.0
X0 = np.array([-1.5, -0.5, 0.5, 1.5])
Z_TOL = 4.0  # claims on sample means: at most 4 standard errors
KS_C = 1.949  # two-sample Kolmogorov-Smirnov critical constant at level 0.001


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / a.size
    fb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Sample both Dyson processes from ``X0`` and the sphere processes from ``|m_0| = 1``.

    Returns
    -------
    ExperimentResult
        ``data``: ``direct`` (n_paths, d) and ``lift`` (n_paths, d): eigenvalues at T;
        ``times`` and ``sum_sq_direct``, ``sum_sq_lift`` (n_t,): sample means of sum x_i^2;
        ``sphere_dims``, ``sphere_times``, ``sphere_r2`` (n_dims, n_t): sample mean ``|m_t|^2``;
        ``sphere_r`` (n_dims, n_t): sample mean ``|m_t|``.
    """
    p = PARAMS[check_size(size)]
    ss = np.random.SeedSequence(seed).spawn(3)
    d = X0.size
    kw = {
        "t_final": p["t_final"],
        "dt": p["dt"],
        "n_paths": p["n_paths"],
        "save_every": max(1, int(round(p["t_final"] / p["dt"] / 20))),
        "progress": progress,
    }
    a = dyson_brownian_motion(X0, BETA, seed=ss[0], **kw)
    b = dyson_lift(np.diag(X0).astype(complex), BETA, seed=ss[1], **kw)
    direct = a.states  # (n_t, B, d)
    lift = np.linalg.eigvalsh(b.states)
    rate = d * (d - 1) + 2 * d / BETA
    exact = np.sum(X0**2) + rate * a.times
    sq_a, sq_b = np.sum(direct**2, axis=-1), np.sum(lift**2, axis=-1)
    n = p["n_paths"]
    z_a = abs(sq_a[-1].mean() - exact[-1]) / (sq_a[-1].std(ddof=1) / np.sqrt(n))
    z_b = abs(sq_b[-1].mean() - exact[-1]) / (sq_b[-1].std(ddof=1) / np.sqrt(n))
    crit = KS_C * np.sqrt(2.0 / n)
    ks = max(_ks(direct[-1][:, i], lift[-1][:, i]) for i in range(d))

    sphere_r2, sphere_r, z_sphere = [], [], []
    for k, dim in enumerate(p["sphere_dims"]):
        m0 = np.zeros(dim)
        m0[0] = 1.0
        res = sphere_tangential_noise(
            m0,
            t_final=p["t_final"],
            dt=p["dt"],
            n_paths=p["sphere_paths"],
            seed=np.random.SeedSequence([seed, 7, k]),
            save_every=kw["save_every"],
            progress=progress,
        )
        r2 = np.sum(res.states**2, axis=-1)
        sphere_r2.append(r2.mean(axis=1))
        sphere_r.append(np.sqrt(r2).mean(axis=1))
        pred = 1.0 + (dim - 1) * res.times[-1]
        z_sphere.append(
            abs(r2[-1].mean() - pred) / (r2[-1].std(ddof=1) / np.sqrt(p["sphere_paths"]))
        )
        sphere_times = res.times
    claims = [
        make_claim(
            "[G] eq. 11.1: E sum x_i^2 = sum x_i(0)^2 + (d(d-1) + 2d/beta) t (direct SDE)",
            "|sample mean - exact| in standard errors, t = T",
            0.0,
            float(z_a),
            Z_TOL,
        ),
        make_claim(
            "[G] Thm 15(a): the same identity for the eigenvalues of the lift (11.4)",
            "|sample mean - exact| in standard errors, t = T",
            0.0,
            float(z_b),
            Z_TOL,
        ),
        make_claim(
            "[G] Thm 15(a): eigenvalues of the lift have the law of Dyson BM",
            "max_i two-sample KS statistic / critical value at level 0.001",
            0.0,
            float(ks / crit),
            1.0,
        ),
        make_claim(
            "[G] eq. 11.11: E|m_t|^2 = |m_0|^2 + (d-1)t for tangential noise",
            "max over d = "
            + ", ".join(map(str, p["sphere_dims"]))
            + " of |mean - exact| in standard errors",
            0.0,
            float(max(z_sphere)),
            Z_TOL,
        ),
    ]
    data = {
        "direct": direct[-1],
        "lift": lift[-1],
        "times": a.times,
        "sum_sq_direct": sq_a.mean(axis=1),
        "sum_sq_lift": sq_b.mean(axis=1),
        "sum_sq_exact": exact,
        "beta": BETA,
        "x0": X0,
        "sphere_dims": np.array(p["sphere_dims"]),
        "sphere_times": sphere_times,
        "sphere_r2": np.array(sphere_r2),
        "sphere_r": np.array(sphere_r),
    }
    summary = {
        "z_direct": float(z_a),
        "z_lift": float(z_b),
        "ks_over_critical": float(ks / crit),
        "z_sphere": [float(z) for z in z_sphere],
        "n_paths": n,
        "rejected_direct": a.n_rejected,
        "rejected_lift": b.n_rejected,
    }
    notes = (
        f"d = {d}, beta = {BETA:g}, x(0) = {X0.tolist()}, {n} paths each, Euler-Maruyama "
        f"with dt = {p['dt']:g} and Brownian-bridge refinement (library samplers)."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Eigenvalue histograms (direct vs lift), and sphere radii against the ODE (11.11)."""
    import matplotlib.pyplot as plt

    D = result.data
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.0))
    bins = np.linspace(
        min(D["direct"].min(), D["lift"].min()), max(D["direct"].max(), D["lift"].max()), 40
    )
    ax[0].hist(D["direct"].ravel(), bins=bins, density=True, alpha=0.5, label="direct SDE (11.1)")
    ax[0].hist(
        D["lift"].ravel(),
        bins=bins,
        density=True,
        histtype="step",
        lw=1.8,
        color="k",
        label="eigenvalues of the lift (11.4)",
    )
    for x in D["x0"]:
        ax[0].axvline(x, color="0.6", ls=":", lw=1)
    ax[0].set(
        xlabel="eigenvalue at t = T",
        ylabel="density",
        title=f"Dyson Brownian motion, beta = {D['beta']:g} (dotted: start)",
    )
    ax[0].legend(fontsize=8)
    t = D["sphere_times"]
    for i, dim in enumerate(D["sphere_dims"]):
        ax[1].plot(t, D["sphere_r"][i], "o", color=f"C{i}", ms=3, label=f"d = {dim}: mean |m_t|")
        ax[1].plot(t, np.sqrt(1 + (dim - 1) * t), "-", color=f"C{i}", lw=1.2)
    ax[1].plot([], [], "k-", label=r"ODE (11.11): $r=\sqrt{1+(d-1)t}$")
    ax[1].set(xlabel="t", ylabel="radius", title="tangential noise on spheres, |m_0| = 1")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    cap = (
        "Left: eigenvalues at time T of Dyson Brownian motion, sampled directly (filled) and "
        "through the matrix lift (black outline).\nThe two histograms agree ([G] Thm 15(a)); "
        "right: the radius of tangential noise follows the ODE r' = (d-1)/(2r) of eq. 11.11."
    )
    return [FigureSpec("dyson_and_spheres", cap, fig)]
