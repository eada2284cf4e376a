r"""Experiment 4: [G] Thm 2-3, upstairs gradient flow against the downstairs flow on (M_d, g^N).

From a balanced start, the end-to-end matrix of the upstairs gradient flow
:math:`\dot W = -\nabla_W E(\phi(W))` ([G] eq. 3.5) follows the downstairs Riemannian
gradient flow :math:`\dot X = -\mathcal{A}_{N,X}(E'(X))` ([G] eq. 4.21). The energy is a
matrix sensing loss. The downstairs velocity costs one SVD whatever N, the upstairs one
O(N d^3): the second part times one Runge-Kutta step of each against N
(:func:`~dln_manifolds.flows.learning.learning_flow`, with its projection onto
:math:`\mathcal{M}`, against :func:`~dln_manifolds.flows.learning.end_to_end_flow`).

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

from ..energies import MatrixSensingEnergy
from ..flows.learning import end_to_end_flow, learning_flow
from ..network import balanced_point
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "upstairs_downstairs"
NUMBER = 4
TITLE = "[G] Thm 2-3: upstairs gradient flow and the downstairs flow on (M_d, g^N) agree"

PARAMS = {
    "tiny": {
        "d": 3,
        "depths": (2, 3),
        "t_final": 2.0,
        "dt": 0.02,
        "time_d": 6,
        "time_depths": (1, 4, 16),
        "time_steps": 20,
        "repeats": 5,
    },
    "quick": {
        "d": 4,
        "depths": (2, 3, 5),
        "t_final": 6.0,
        "dt": 0.01,
        "time_d": 10,
        "time_depths": (1, 2, 4, 8, 16, 32, 64),
        "time_steps": 30,
        "repeats": 5,
    },
    "full": {
        "d": 6,
        "depths": (2, 3, 5, 8),
        "t_final": 10.0,
        "dt": 0.005,
        "time_d": 20,
        "time_depths": (1, 2, 4, 8, 16, 32, 64, 128, 256),
        "time_steps": 50,
        "repeats": 7,
    },
}


def _problem(d: int, seed: int):
    rng = np.random.default_rng(seed)
    target = rng.standard_normal((d, d)) / np.sqrt(d)
    energy = MatrixSensingEnergy.random(target, 3 * d * d, seed=rng)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X0 = 0.3 * q @ np.diag(np.linspace(1.0, 0.5, d))
    return energy, X0


def _time_step(flow, n_steps, repeats) -> float:
    """Best-of-``repeats`` seconds per step of ``flow(t_final, dt, save_every)``."""
    dt = 1e-3
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        flow(n_steps * dt, dt, n_steps)
        best = min(best, (time.perf_counter() - t0) / n_steps)
    return best


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Integrate both flows for several depths and time one step of each against N.

    Returns
    -------
    ExperimentResult
        ``data``: ``depths``; ``times`` (n_t,); ``X_down`` (n_depths, n_t, d, d) downstairs
        trajectories; ``X_up`` (n_depths, n_t, d, d) end-to-end matrices of the upstairs runs;
        ``energy_down`` (n_depths, n_t); ``time_depths``; ``time_up`` and ``time_down``
        (seconds per RK4 step, best of several repeats).
    """
    p = PARAMS[check_size(size)]
    energy, X0 = _problem(p["d"], seed)
    Xd, Xu, Ed, times, rel_err = [], [], [], None, []
    for N in p["depths"]:
        kw = {"dt": p["dt"], "method": "rk4", "save_every": 10, "progress": progress}
        ru = learning_flow(balanced_point(X0, N), energy, p["t_final"], **kw)
        rd = end_to_end_flow(X0, energy, N, p["t_final"], **kw)
        X_up = ru.monitors["end_to_end"]
        Xu.append(X_up)
        Xd.append(rd.states)
        Ed.append(energy.value(rd.states))
        times = rd.times
        scale = np.max(np.linalg.norm(rd.states, axis=(1, 2)))
        rel_err.append(np.max(np.linalg.norm(X_up - rd.states, axis=(1, 2))) / scale)

    td = p["time_d"]
    energy_t, X0_t = _problem(td, seed + 1)
    # interleave the depths inside each repeat round, so that a burst of load on a shared
    # machine hits every depth alike; keep the best round per depth
    flows_up, flows_down = [], []
    for N in p["time_depths"]:
        W0_t = balanced_point(X0_t, N)
        flows_up.append(
            lambda T, dt, k, W0_t=W0_t: learning_flow(W0_t, energy_t, T, dt=dt, save_every=k)
        )
        flows_down.append(
            lambda T, dt, k, N=N: end_to_end_flow(X0_t, energy_t, N, T, dt=dt, save_every=k)
        )
    t_up = np.full(len(flows_up), np.inf)
    t_down = np.full(len(flows_down), np.inf)
    for _ in range(p["repeats"]):
        for i in range(len(flows_up)):
            t_up[i] = min(t_up[i], _time_step(flows_up[i], p["time_steps"], 1))
            t_down[i] = min(t_down[i], _time_step(flows_down[i], p["time_steps"], 1))
    t_up, t_down = np.array(t_up), np.array(t_down)
    ratio_down = float(t_down[-1] / t_down[1 if len(t_down) > 2 else 0])
    ratio_up = float(t_up[-1] / t_up[1 if len(t_up) > 2 else 0])
    E0 = float(energy.value(X0))
    # largest increase of E between saved times, relative to E(0): a gradient flow never rises
    E_rise = float(max(np.max(np.diff(e)) for e in Ed)) / E0

    claims = [
        make_claim(
            "[G] Thm 2 (eq. 4.9 = 4.21): phi(W(t)) = X(t) from a balanced start",
            "max_t |phi(W(t)) - X(t)| / max |X| over depths "
            + ", ".join(str(n) for n in p["depths"]),
            0.0,
            float(max(rel_err)),
            1e-7,
        ),
        make_claim(
            "[G] Thm 3: E never increases along the downstairs flow (gradient flow of g^N)",
            "max over saved steps of (E(t_k+1) - E(t_k)) / E(0), all N",
            0.0,
            E_rise,
            1e-12,
            "le",
        ),
        make_claim(
            "[G] eq. 7.13-7.14: cost of the downstairs step does not grow with N",
            f"time per step, N = {p['time_depths'][-1]} over N = "
            f"{p['time_depths'][1 if len(t_down) > 2 else 0]}",
            1.0,
            ratio_down,
            1.0,
            "le",
        ),
    ]
    data = {
        "depths": np.array(p["depths"]),
        "times": times,
        "X_down": np.stack(Xd),
        "X_up": np.stack(Xu),
        "energy_down": np.stack(Ed),
        "time_depths": np.array(p["time_depths"]),
        "time_up": t_up,
        "time_down": t_down,
        "time_d": td,
    }
    summary = {
        "max_relative_trajectory_gap": float(max(rel_err)),
        "gap_per_depth": dict(zip([str(n) for n in p["depths"]], map(float, rel_err), strict=True)),
        "time_per_step_up_s": dict(zip(map(str, p["time_depths"]), map(float, t_up), strict=True)),
        "time_per_step_down_s": dict(
            zip(map(str, p["time_depths"]), map(float, t_down), strict=True)
        ),
        "upstairs_growth_ratio": ratio_up,
        "downstairs_growth_ratio": ratio_down,
        "d_timing": td,
    }
    notes = (
        f"Matrix sensing with d = {p['d']}, {3 * p['d'] ** 2} Gaussian measurements; RK4 "
        f"with dt = {p['dt']}. Timing at d = {td}: the upstairs step grows by "
        f"{ratio_up:.1f}x over the depth range, the downstairs step by {ratio_down:.2f}x."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Trajectories of the entries (overlaid) and time per step against N."""
    import matplotlib.pyplot as plt

    D = result.data
    fig, ax = plt.subplots(1, 2, figsize=(10.5, 4.2))
    t = D["times"]
    k = len(D["depths"]) - 1  # deepest run
    Xd, Xu = D["X_down"][k], D["X_up"][k]
    d = Xd.shape[-1]
    for i in range(d):
        for j in range(d):
            c = f"C{(i * d + j) % 10}"
            ax[0].plot(t, Xd[:, i, j], color=c, lw=1.2)
            ax[0].plot(t[::4], Xu[::4, i, j], "o", color=c, ms=3, mfc="none")
    ax[0].plot([], [], "k-", label=r"downstairs $X(t)$ on $(M_d, g^N)$")
    ax[0].plot([], [], "ko", mfc="none", ms=3, label=r"upstairs $\phi(W(t))$")
    ax[0].set(
        xlabel="t",
        ylabel=r"entries $X_{ij}$",
        title=f"matrix sensing, d = {d}, N = {int(D['depths'][k])}",
    )
    ax[0].legend(fontsize=8)
    N = D["time_depths"]
    ax[1].loglog(N, 1e3 * D["time_up"], "o-", label="upstairs step (learning_flow), O(N d^3)")
    ax[1].loglog(N, 1e3 * D["time_down"], "s-", label="downstairs step (end_to_end_flow)")
    ax[1].set(
        xlabel="depth N", ylabel="ms per RK4 step", title=f"cost per step, d = {int(D['time_d'])}"
    )
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    cap = (
        "Left: every entry of the end-to-end matrix, downstairs flow (lines) and upstairs "
        "gradient flow (circles).\nThe circles sit on the lines ([G] Thm 2); right: the "
        "downstairs step costs the same at every depth, the upstairs one grows with N."
    )
    return [FigureSpec("trajectories_and_cost", cap, fig)]
