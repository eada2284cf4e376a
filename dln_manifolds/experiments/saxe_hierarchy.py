r"""Experiment 11: [SMG] stage-like learning of a hierarchy by rectangular deep linear networks.

A network of widths :math:`(8, 10, \dots, 10, 6)` learns the whitened regression
:math:`E(X) = \tfrac12|X - S|^2` ([SMG]; :meth:`~dln_manifolds.RegressionEnergy.from_covariances`
with :math:`\Sigma_{xx} = I`), whose 6 x 8 target :math:`S = U\,\mathrm{diag}(s)\,V^T` has
modes of distinct strengths (a hierarchy, :math:`s = 3, 2, 1, 0.5, 0, 0`). The start is small,
balanced (:func:`~dln_manifolds.balanced_point` with ``widths``) and aligned,
:math:`X_0 = U\,\mathrm{diag}(u_0)V^T`. The weights follow the upstairs gradient flow
(:func:`~dln_manifolds.flows.learning_flow` on the list of layers); by [G] Thm 2 ([ACH] Thm 1)
their end-to-end matrix follows :math:`\dot X = -\mathcal{A}_{N,X}(X - S)`, which keeps X
aligned, and each mode solves :math:`\dot u = N u^{2-2/N}(s - u)` (the diagonal multiplier of
:math:`\mathcal{A}_{N,X}`, [G] eq. 7.13-7.14). For N = 2 this is the logistic equation with
[SMG]'s closed form

.. math::

    u(t) = \frac{s\,e^{2st}}{e^{2st} - 1 + s/u_0}
         = \frac{u_0 e^{2st}}{1 + u_0\,\mathrm{expm1}(2st)/s}

(the second form, :func:`saxe_closed_form`, is the limit :math:`u_0/(1 + 2u_0t)` at s = 0).
Each mode stays near :math:`u_0` on a plateau, then rises to s in a sigmoidal transition:
stronger modes are learned first, and deeper networks have longer plateaus and sharper
transitions (relative width :math:`(t_{90} - t_{10})/t_{50}` of the rise from 10% to 90% of
s).

References
----------
- [SMG] A. M. Saxe, J. L. McClelland and S. Ganguli, *Exact solutions to the nonlinear
  dynamics of learning in deep linear neural networks*, arXiv:1312.6120 (2013).
- [ACH] S. Arora, N. Cohen and E. Hazan, *On the optimization of deep networks: implicit
  acceleration by overparameterization*, ICML 2018.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from ..energies import RegressionEnergy
from ..flows.learning import learning_flow
from ..network import balanced_point
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "saxe_hierarchy"
NUMBER = 11
TITLE = "[SMG] stage-like learning of a hierarchy: rectangular networks, closed form at N = 2"

_COMMON = {
    "widths": (8, 10, 6),  # input, hidden, output
    "strengths": (3.0, 2.0, 1.0, 0.5, 0.0, 0.0),
    "u0": 1e-2,
}
# tolerances: the RK4 error at this dt, with margin (measured: N = 2 about 5e-7 at dt = 0.02,
# 3e-8 at 0.01 and 2e-9 at 0.005; N = 5 about 6e-7 at 0.005, 16 times more at 0.01)
PARAMS = {
    "tiny": {
        **_COMMON,
        "depths": (2, 3),
        "t_final": 11.0,
        "dt": 0.02,
        "save_every": 2,
        "tol_closed_form": 2e-6,
        "tol_ode": 5e-5,
    },
    "quick": {
        **_COMMON,
        "depths": (2, 3, 5),
        "t_final": 15.0,
        "dt": 0.01,
        "save_every": 5,
        "tol_closed_form": 1e-7,
        "tol_ode": 2e-5,
    },
    "full": {
        **_COMMON,
        "depths": (2, 3, 5, 8),
        "t_final": 25.0,
        "dt": 0.0025,
        "save_every": 20,
        "tol_closed_form": 1e-9,
        "tol_ode": 1e-6,
    },
}


def saxe_closed_form(t, s, u0) -> np.ndarray:
    r"""[SMG]'s learning curve :math:`u(t) = s e^{2st} / (e^{2st} - 1 + s/u_0)` (N = 2).

    Evaluated as :math:`u_0 e^{2st} / (1 + u_0\,\mathrm{expm1}(2st)/s)`, which is exact at
    s = 0 (:math:`u_0/(1 + 2u_0t)`, the solution of :math:`\dot u = -2u^2`).

    Parameters
    ----------
    t : array_like, shape (n_t,)
        Times.
    s, u0 : array_like, shape (r,)
        Strengths :math:`s_i \ge 0` of the target's modes and their starts :math:`u_{0,i} > 0`.

    Returns
    -------
    ndarray, shape (n_t, r)
    """
    t = np.asarray(t, dtype=float)[:, None]
    s, u0 = np.asarray(s, dtype=float), np.asarray(u0, dtype=float)
    x = 2.0 * s * t
    safe = np.where(s > 0, s, 1.0)
    ratio = np.where(s > 0, np.expm1(x) / safe, 2.0 * t)
    return u0 * np.exp(x) / (1.0 + u0 * ratio)


def _problem(p, seed):
    rng = np.random.default_rng(seed)
    n, m = p["widths"][0], p["widths"][-1]
    r = min(m, n)
    U = np.linalg.qr(rng.standard_normal((m, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    s = np.asarray(p["strengths"], dtype=float)
    u0 = np.full(r, p["u0"])
    return U, V, s, u0


def _crossing(t: np.ndarray, y: np.ndarray, level: float) -> float:
    """First time at which y (increasing through ``level``) reaches it, linearly interpolated."""
    k = int(np.argmax(y >= level))
    if y[k] < level:
        return np.nan
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - y[k - 1]) * (t[k] - t[k - 1]) / (y[k] - y[k - 1]))


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Train the rectangular network at several depths and compare with the closed forms.

    Returns
    -------
    ExperimentResult
        ``data``: ``depths``; ``times`` (n_t,); ``strengths`` (r,); ``u0``; ``modes``
        (n_depths, n_t, r), the diagonal of :math:`U^T X(t) V`; ``ode`` (n_depths, n_t, r),
        the scalar ODE per mode (solve_ivp); ``closed_form`` (n_t, r), the N = 2 formula;
        ``t10``, ``t50``, ``t90`` (n_depths, n_learned) crossing times of 10%, 50%, 90% of
        s for the modes with s > 0; ``off_diagonal`` (n_depths,), max of the off-diagonal
        part of :math:`U^T X V` (0 for an aligned flow).
    """
    p = PARAMS[check_size(size)]
    U, V, s, u0 = _problem(p, seed)
    n, h, m = p["widths"]
    S = (U * s) @ V.T
    energy = RegressionEnergy.from_covariances(np.eye(n), S)  # whitened: 1/2 |X - S|^2 + c
    X0 = (U * u0) @ V.T
    learned = s > 0
    modes, ode, off, t10, t50, t90, times = [], [], [], [], [], [], None
    for N in p["depths"]:
        W0 = balanced_point(X0, N, widths=(n,) + (h,) * (N - 1) + (m,))
        res = learning_flow(
            W0,
            energy,
            p["t_final"],
            dt=p["dt"],
            save_every=p["save_every"],
            progress=progress,
        )
        times = res.times
        M = np.swapaxes(U, 0, 1) @ res.monitors["end_to_end"] @ V
        diag = np.diagonal(M, axis1=-2, axis2=-1)
        modes.append(diag)
        off.append(float(np.abs(M - diag[:, :, None] * np.eye(len(s))).max()))
        sol = solve_ivp(
            lambda t, u, N=N: N * np.abs(u) ** (2 - 2 / N) * (s - u),
            (0.0, p["t_final"]),
            u0,
            t_eval=times,
            method="DOP853",
            rtol=1e-12,
            atol=1e-15,
        )
        ode.append(sol.y.T)
        for out, q in ((t10, 0.1), (t50, 0.5), (t90, 0.9)):
            out.append([_crossing(times, diag[:, i] / s[i], q) for i in np.flatnonzero(learned)])
    modes, ode = np.stack(modes), np.stack(ode)
    t10, t50, t90 = np.array(t10), np.array(t50), np.array(t90)
    closed = saxe_closed_form(times, s, u0)
    depths = list(p["depths"])
    i2 = depths.index(2)
    err2 = float(np.abs(modes[i2] - closed).max())
    deep = [i for i, N in enumerate(depths) if N != 2]
    err_deep = float(max(np.abs(modes[i] - ode[i]).max() for i in deep))
    # learning order: t50 strictly decreasing in s (the learned modes are sorted by strength)
    inversions = int(
        sum(np.sum(np.diff(t50[i]) <= 0) + np.isnan(t50[i]).sum() for i in range(len(depths)))
    )
    width = (t90 - t10) / t50  # relative transition width, per depth and mode
    width_ratio = float(np.nanmax(width[1:] / width[:-1])) if len(depths) > 1 else 0.0
    if np.isnan(width).any():
        width_ratio = np.inf

    claims = [
        make_claim(
            "[SMG] N = 2, balanced aligned start: u(t) = s e^{2st} / (e^{2st} - 1 + s/u0)",
            "max over modes and saved times of |u_sim(t) - u(t)| (RK4, dt = "
            f"{p['dt']:g}, widths {p['widths']})",
            0.0,
            err2,
            p["tol_closed_form"],
        ),
        make_claim(
            "[G] eq. 7.13-7.14: aligned modes follow du/dt = N u^{2-2/N} (s - u)",
            "max |u_sim - u_ode| over modes and times, N = "
            + ", ".join(str(depths[i]) for i in deep),
            0.0,
            err_deep,
            p["tol_ode"],
        ),
        make_claim(
            "[SMG] stage-like learning: stronger modes are learned first, at every depth",
            "number of pairs of modes whose half-times t_50 are not decreasing in s",
            0.0,
            inversions,
            0.0,
        ),
        make_claim(
            "[SMG] deeper networks have sharper transitions",
            "max over modes of (t90 - t10)/t50 at depth N_k+1 over the same at N_k",
            1.0,
            width_ratio,
            0.0,
            "le",
        ),
    ]
    data = {
        "depths": np.array(depths),
        "times": times,
        "strengths": s,
        "u0": float(p["u0"]),
        "modes": modes,
        "ode": ode,
        "closed_form": closed,
        "t10": t10,
        "t50": t50,
        "t90": t90,
        "off_diagonal": np.array(off),
    }
    summary = {
        "closed_form_error_N2": err2,
        "scalar_ode_error_deeper": err_deep,
        "max_off_diagonal": float(max(off)),
        "half_times": {str(N): t50[i].tolist() for i, N in enumerate(depths)},
        "relative_widths": {str(N): width[i].tolist() for i, N in enumerate(depths)},
    }
    notes = (
        f"Widths {p['widths']} (one hidden width repeated for deeper nets), s = "
        f"{tuple(p['strengths'])}, u0 = {p['u0']:g} on every mode; upstairs gradient flow by "
        f"RK4 with dt = {p['dt']:g}. N = 2 against the closed form: {err2:.1e}; "
        f"off-diagonal part of U^T X V at most {max(off):.1e}."
    )
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary, notes=notes)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """Mode strengths against t per depth (closed form over them), and the transition widths."""
    import matplotlib.pyplot as plt

    D = result.data
    depths, t, s = D["depths"], D["times"], D["strengths"]
    fig, axes = plt.subplots(1, len(depths), figsize=(4.0 * len(depths), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, N, modes in zip(axes, depths, D["modes"], strict=True):
        for i in range(len(s)):
            c = f"C{i}"
            ax.plot(t, modes[:, i], color=c, lw=2.0, alpha=0.8, label=f"s = {s[i]:g}")
            ax.plot(t, D["closed_form"][:, i], "k--", lw=0.9)
            ax.axhline(s[i], color=c, lw=0.5, ls=":")
        ax.set(xlabel="t", title=f"N = {int(N)}")
    axes[0].plot([], [], "k--", lw=0.9, label="closed form, N = 2")
    axes[0].set_ylabel(r"mode strength $u_i(t) = u_i^T X(t) v_i$")
    axes[0].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    cap1 = (
        "Mode strengths of the end-to-end matrix while the network trains, one panel per "
        "depth; dashed: Saxe et al.'s N = 2 closed form.\nThe N = 2 curves lie on it; deeper "
        "nets keep the stages (strong modes first) with longer plateaus and sharper rises."
    )

    fig2, ax = plt.subplots(1, 2, figsize=(10.0, 3.8))
    learned = s[s > 0]
    width = (D["t90"] - D["t10"]) / D["t50"]
    for k, N in enumerate(depths):
        ax[0].plot(learned, width[k], "o-", label=f"N = {int(N)}")
        j = int(np.argmin(np.abs(learned - 1.0)))
        i = int(np.flatnonzero(s > 0)[j])
        ax[1].plot(t / D["t50"][k, j], D["modes"][k, :, i] / s[i], label=f"N = {int(N)}")
    ax[0].set(xlabel="strength s", ylabel=r"$(t_{90} - t_{10}) / t_{50}$", title="transition width")
    ax[1].set(
        xlabel=r"$t / t_{50}$",
        ylabel="u / s",
        xlim=(0, 2),
        title=f"mode s = {learned[j]:g}, time in units of its half-time",
    )
    for a in ax:
        a.legend(fontsize=8)
    fig2.tight_layout()
    cap2 = (
        "Left: relative width of each transition (10% to 90% of s) against s and N; right: "
        "one mode's rise in units of its half-time.\nThe width falls with N at every "
        "strength: deeper networks learn each mode more abruptly."
    )
    return [FigureSpec("mode_strengths", cap1, fig), FigureSpec("transition_width", cap2, fig2)]
