r"""Plots of any :class:`~dln_manifolds.flows.FlowResult`: loss, singular values, moments.

Each helper draws on ``ax`` when given (and returns its figure), otherwise on
a new figure; it returns the :class:`matplotlib.figure.Figure`. The horizontal
axis is ``result.times`` (``steps * lr`` for the results of
:mod:`dln_manifolds.training`). Quantities are taken from the monitors when
recorded, and otherwise computed from the saved states: states of shape
(n, N, d, d) are networks, states of shape (n, d, d) end-to-end matrices.
matplotlib is imported only when a helper is called.
"""

from __future__ import annotations

import numpy as np

from .network import end_to_end, moments

__all__ = ["plot_loss", "plot_singular_values", "plot_moments", "plot_training"]


def _axes(ax):
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    return fig, ax


def _end_to_end_matrices(result) -> np.ndarray:
    if "end_to_end" in result.monitors:
        return np.asarray(result.monitors["end_to_end"])
    states = np.asarray(result.states)
    if states.ndim == 4:
        return end_to_end(states)
    if states.ndim == 3 and states.shape[1] == states.shape[2]:
        return states
    raise ValueError(
        "result has no 'end_to_end' monitor and its states are neither networks "
        f"(n, N, d, d) nor matrices (n, d, d): shape {states.shape}"
    )


def plot_loss(result, *, key: str = "energy", ax=None, logy: bool = True):
    """Loss curve: the monitor ``key`` against time.

    Parameters
    ----------
    result : FlowResult
    key : str
        Name of a scalar monitor (default ``"energy"``).
    ax : matplotlib Axes, optional
    logy : bool
        Logarithmic vertical axis (switched off if a value is <= 0).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``result`` has no monitor ``key``.
    """
    if key not in result.monitors:
        raise ValueError(f"result has no monitor {key!r}; it has {sorted(result.monitors)}")
    values = np.asarray(result.monitors[key], dtype=np.float64).reshape(len(result.times), -1)
    fig, ax = _axes(ax)
    ax.plot(result.times, values)
    if logy and np.all(values > 0):
        ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(key)
    ax.set_title("loss")
    return fig


def plot_singular_values(result, *, ax=None, logy: bool = False):
    """Singular values of the end-to-end matrix against time, one line each.

    Uses the ``"singular_values"`` monitor if present, else the
    ``"end_to_end"`` monitor or the states.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if "singular_values" in result.monitors:
        s = np.asarray(result.monitors["singular_values"])
    else:
        s = np.linalg.svd(_end_to_end_matrices(result), compute_uv=False)
    fig, ax = _axes(ax)
    ax.plot(result.times, s)
    if logy and np.all(s > 0):
        ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(r"$\sigma_k(X)$")
    ax.set_title("singular values")
    return fig


def plot_moments(result, *, ax=None):
    r"""Frobenius norms :math:`|G_k|` of the moments against time, one line per k.

    Uses the ``"moments"`` monitor if present, else the states (networks).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If there is no ``"moments"`` monitor and the states are not networks.
    """
    if "moments" in result.monitors:
        G = np.asarray(result.monitors["moments"])
    else:
        states = np.asarray(result.states)
        if states.ndim != 4:
            raise ValueError(
                "result has no 'moments' monitor and its states are not networks "
                f"(n, N, d, d): shape {states.shape}"
            )
        G = moments(states)
    norms = np.linalg.norm(G, axis=(-2, -1))
    fig, ax = _axes(ax)
    for k in range(norms.shape[1]):
        ax.plot(result.times, norms[:, k], label=f"$|G_{k + 1}|$")
    if norms.shape[1]:
        ax.legend()
    ax.set_xlabel("t")
    ax.set_ylabel("moment norm")
    ax.set_title("moments")
    return fig


def plot_training(result, *, key: str = "energy"):
    """One figure with the loss, the singular values and (for networks) the moments.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    networks = "moments" in result.monitors or np.ndim(result.states) == 4
    panels = 3 if networks else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5), layout="constrained")
    if key in result.monitors:
        plot_loss(result, key=key, ax=axes[0])
    else:
        axes[0].set_axis_off()
    plot_singular_values(result, ax=axes[1])
    if networks:
        plot_moments(result, ax=axes[2])
    return fig
