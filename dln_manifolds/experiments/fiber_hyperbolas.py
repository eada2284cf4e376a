r"""Experiment 1: [R] Fig. 1.1, fibers and balanced asymptotes for d = 1, N = 2.

For scalars the fiber over x is the hyperbola :math:`w_2 w_1 = x` and the balanced manifold is
the pair of lines :math:`w_2 = \pm w_1`. The regularizing flow ([R] eq. 1.13) moves along a
hyperbola to its vertex, the balanced point; the learning flow ([G] eq. 3.4) started balanced
moves along a line :math:`w_2 = \pm w_1`, crossing the hyperbolas at right angles (the
orthogonal foliation of [R] Fig. 1.1).

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [KN] G. Kempf and L. Ness, *The length of vectors in representation spaces*, Lecture
  Notes in Math. 732 (1979).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import numpy as np

from ..energies import QuadraticEnergy
from ..flows.fiber import regularizing_flow
from ..flows.learning import learning_flow
from ._base import ExperimentResult, FigureSpec, check_size, make_claim

NAME = "fiber_hyperbolas"
NUMBER = 1
TITLE = "[R] Fig. 1.1: fibers w2 w1 = x and balanced asymptotes w2 = +-w1 (d = 1, N = 2)"

PARAMS = {
    "tiny": {"xs": (-1.0, 1.0), "starts_per_fiber": 2, "t_final": 4.0, "dt": 0.02},
    "quick": {"xs": (-2.0, -0.5, 0.5, 2.0), "starts_per_fiber": 3, "t_final": 4.0, "dt": 0.005},
    "full": {
        "xs": (-3.0, -1.0, -0.25, 0.25, 1.0, 3.0),
        "starts_per_fiber": 4,
        "t_final": 5.0,
        "dt": 0.002,
    },
}
LEARNING_TARGETS = (-2.5, 2.5)


def run(size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
    """Regularizing-flow trajectories on the hyperbolas, learning-flow trajectories on the lines.

    Returns
    -------
    ExperimentResult
        ``data``: ``xs``; ``reg_paths`` (n_paths, n_t, 2): (w1, w2) along the regularizing
        flow; ``reg_x`` (n_paths,) their fiber; ``reg_times``; ``learn_paths`` (n_learn, n_t, 2)
        along the learning flow for E = (x - target)^2 / 2; ``learn_targets``.
    """
    p = PARAMS[check_size(size)]
    rng = np.random.default_rng(seed)
    reg_paths, reg_x, prod_err, bal_end, g_rate = [], [], [], [], []
    times = None
    for x in p["xs"]:
        for _ in range(p["starts_per_fiber"]):
            w1 = np.sign(rng.standard_normal()) * np.exp(rng.uniform(-1.3, 1.3))
            W0 = np.array([[[w1]], [[x / w1]]])
            res = regularizing_flow(W0, p["t_final"], dt=p["dt"], progress=progress)
            path = res.states[:, :, 0, 0]
            reg_paths.append(path)
            reg_x.append(x)
            times = res.times
            prod_err.append(float(np.max(res.monitors["product_error"])))
            G = res.monitors["moments"][:, 0, 0, 0]
            bal_end.append(abs(G[-1]) / max(abs(G[0]), 1e-300))
            if abs(G[0]) > 1e-8:
                g_rate.append(np.log(abs(G[-1] / G[0])) / res.times[-1])
    learn_paths, learn_balance, learn_final = [], [], []
    for target in LEARNING_TARGETS:
        # the flow keeps the sign of x = w2 w1 (it cannot cross rank 0), so start on the
        # branch of the target's sign: w2 = w1 for x > 0, w2 = -w1 for x < 0
        for a in (np.sqrt(0.2), -np.sqrt(0.2)):
            W0 = np.array([[[a]], [[np.sign(target) * a]]])
            energy = QuadraticEnergy(np.array([[target]]))
            res = learning_flow(W0, energy, 4.0, dt=0.01, progress=progress)
            learn_paths.append(res.states[:, :, 0, 0])
            learn_balance.append(float(np.max(res.monitors["balance_error"])))
            learn_final.append(abs(res.monitors["end_to_end"][-1, 0, 0] - target) / abs(target))
    reg_paths = np.array(reg_paths)
    end = reg_paths[:, -1]
    claims = [
        make_claim(
            "[R] eq. 1.13: the regularizing flow stays on its fiber w2 w1 = x",
            "max_t |w2 w1 - x| / |x|",
            0.0,
            max(prod_err),
            1e-12,
        ),
        make_claim(
            "[R] Thm 2: G(t) = G(0) exp(-4t) along the regularizing flow",
            "fitted rate -log(|G(T)|/|G(0)|)/T, all paths",
            4.0,
            float(np.mean(-np.array(g_rate))),
            1e-6,
            "rel",
        ),
        make_claim(
            "[R] Thm 1 (Kempf-Ness): the limit minimizes |W|^2 on the fiber, "
            "= N tr(Sigma^(2/N)) = 2|x|",
            "max | |W(T)|^2 - 2|x| | / 2|x|",
            0.0,
            float(np.max(np.abs(np.sum(end**2, axis=1) - 2 * np.abs(reg_x)) / (2 * np.abs(reg_x)))),
            1e-9,
        ),
        make_claim(
            "[G] Thm 1: the learning flow started balanced stays on w2 = +-w1",
            "max_t balance error",
            0.0,
            max(learn_balance),
            1e-12,
        ),
        make_claim(
            "[G] eq. 3.4: the learning flow reaches the target end-to-end value",
            "max |x(T) - target| / |target|",
            0.0,
            max(learn_final),
            1e-3,
        ),
    ]
    data = {
        "xs": np.array(p["xs"]),
        "reg_paths": reg_paths,
        "reg_x": np.array(reg_x),
        "reg_times": times,
        "learn_paths": np.array(learn_paths),
        "learn_targets": np.array(LEARNING_TARGETS),
    }
    summary = {
        "max_product_error": max(prod_err),
        "moment_decay_rates": [float(-r) for r in g_rate],
    }
    return ExperimentResult(NAME, TITLE, size, seed, data, claims, summary)


def plot(result: ExperimentResult) -> list[FigureSpec]:
    """The (w1, w2) plane: hyperbolas, the balanced lines and both kinds of trajectories."""
    import matplotlib.pyplot as plt

    D = result.data
    fig, ax = plt.subplots(figsize=(5.6, 5.4))
    lim = 3.2
    w = np.linspace(1e-3, lim, 400)
    for x in D["xs"]:
        ax.plot(w, x / w, color="0.75", lw=0.9)
        ax.plot(-w, -x / w, color="0.75", lw=0.9)
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8, label=r"balanced: $w_2 = \pm w_1$")
    ax.plot([-lim, lim], [lim, -lim], "k--", lw=0.8)
    for i, path in enumerate(D["reg_paths"]):
        ax.plot(
            path[:, 0],
            path[:, 1],
            color="C0",
            lw=1.8,
            label="regularizing flow (on a fiber)" if i == 0 else None,
        )
        ax.plot(path[0, 0], path[0, 1], "o", color="C0", ms=3)
        ax.plot(path[-1, 0], path[-1, 1], "s", color="C0", ms=4)
    for i, path in enumerate(D["learn_paths"]):
        ax.plot(
            path[:, 0],
            path[:, 1],
            color="C3",
            lw=2.2,
            alpha=0.8,
            label="learning flow (on M)" if i == 0 else None,
        )
        ax.annotate(
            "",
            xy=path[-1],
            xytext=path[len(path) // 2],
            arrowprops={"arrowstyle": "->", "color": "C3"},
        )
    ax.set(
        xlim=(-lim, lim),
        ylim=(-lim, lim),
        aspect="equal",
        xlabel=r"$w_1$",
        ylabel=r"$w_2$",
        title="d = 1, N = 2: fibers (grey) and M (dashed)",
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    cap = (
        "Grey hyperbolas are the fibers w2 w1 = x; blue paths are regularizing-flow "
        "trajectories (circle: start, square: end), red paths learning-flow trajectories.\n"
        "Blue paths stay on their hyperbola and stop on the dashed balanced lines; red paths "
        "run along those lines, across the fibers ([R] Fig. 1.1)."
    )
    return [FigureSpec("fibers", cap, fig)]
