r"""Flows on and around the fiber :math:`\mathcal{F}_X`: regularizing, Ness, regularized gradient.

- :func:`regularizing_flow`: :math:`\dot W = -\mathrm{grad}\,|W|^2` on
  :math:`(\mathcal{F}_X, \iota)` ([R] eq. 1.13); the moments obey
  :math:`G(t) = G_0 e^{-4t}` ([R] Thm 2).
- :func:`ness_flow`: :math:`\dot W = -\mathrm{grad}\,|G|^2 = -4 w_G`
  ([R] eq. 1.17, section 2.5; see its docstring for the factor 2 of [R]).
- :func:`regularized_gradient_flow`: :math:`\dot W = -\nabla_W\big(E(\phi(W)) +
  \tfrac{\kappa}{2}|W|^2\big)` in the full space ([R] eq. 1.18); the moments
  obey :math:`G(t) = G_0 e^{-2\kappa t}` (:ref:`math-corrections`), and
  :func:`split_velocity` splits its velocity into the part tangent to the
  fiber (regularizing) and the part normal to it (learning).

The fiber flows are integrated by :func:`~dln_manifolds.flows.integrate_flow`
(projected Runge-Kutta) with ``restore = fiber_restore(., X)``, so every saved
state has end-to-end matrix X to rounding and an RK method of order p stays
of order p.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [KN] G. Kempf and L. Ness, *The length of vectors in representation spaces*, Lecture
  Notes in Math. 732 (1979).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from .._checks import as_stack, check_positive
from ..energies import Energy, energy_functions
from ..fiber import (
    FiberNormalSolver,
    as_fiber_layers,
    fiber_restore,
    generator_to_tangent,
    regularizer_gradient,
)
from ..network import end_to_end, lifted_gradient, moments
from .integrators import FlowResult, integrate_with_defaults
from .learning import LayersFlowResult

__all__ = ["regularizing_flow", "ness_flow", "regularized_gradient_flow", "split_velocity"]


def _fiber_point(W0) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    W0 = as_fiber_layers(W0, "W0")
    if len(W0) < 2:
        raise ValueError("W0 must have depth N >= 2: for N = 1 the fiber is a single point")
    X = end_to_end(W0)
    s = np.linalg.svd(X, compute_uv=False)
    if s[-1] <= s[0] * 1e-12:
        raise ValueError(
            f"the end-to-end matrix of W0 (shape {X.shape}) is rank-deficient (singular values "
            f"down to {s[-1]:.3g} of {s[0]:.3g}); the fiber flows need full rank min(d_0, d_N)"
        )
    return W0, X


def _norm_sq(W) -> float:
    if isinstance(W, list):
        return float(sum(np.sum(np.abs(w) ** 2) for w in W))
    return float(np.sum(np.abs(W) ** 2))


def _flat(layers) -> np.ndarray:
    """A list of arrays (layers or moments), row-major, concatenated into one vector."""
    return np.concatenate([np.reshape(a, -1) for a in layers])


def _flat_state(W0: list[np.ndarray]) -> tuple[np.ndarray, Callable, Callable]:
    """The flat state of a sequence of layers (the saved layout) and its (unpack, pack)."""
    shapes = [w.shape for w in W0]
    splits = np.cumsum([w.size for w in W0])[:-1]

    def unpack(y):
        parts = np.split(y, splits)
        return [part.reshape(shape) for part, shape in zip(parts, shapes, strict=True)]

    return _flat(W0), unpack, _flat


def _default_monitors(X: np.ndarray | None) -> dict[str, Callable]:
    mons: dict[str, Callable] = {
        "moments": lambda t, W: _flat(moments(W)) if isinstance(W, list) else moments(W),
        "norm_sq": lambda t, W: _norm_sq(W),
    }
    if X is not None:
        nx = np.linalg.norm(X)
        mons["product_error"] = lambda t, W: float(np.linalg.norm(end_to_end(W) - X) / nx)
    return mons


#: The integration options that every fiber flow forwards to ``integrate_flow`` unchanged.
_RUN_OPTIONS = (
    "dt",
    "method",
    "adaptive",
    "rtol",
    "atol",
    "stop_when",
    "save_every",
    "monitors",
    "progress",
)


def _run_options(arguments: Mapping[str, object]) -> dict[str, object]:
    """The options of :data:`_RUN_OPTIONS` among a flow's arguments (its ``locals()``)."""
    return {name: arguments[name] for name in _RUN_OPTIONS}


def _integrate_fiber_flow(
    velocity: Callable,
    W0: np.ndarray,
    X: np.ndarray | None,
    t_final: float,
    *,
    extra_monitors: Mapping[str, Callable] | None = None,
    **options,
) -> FlowResult:
    """Integrate a flow of layers with the default monitors (then ``extra_monitors``);
    ``X`` given: restored onto the fiber F_X by :func:`~dln_manifolds.fiber.fiber_restore`
    after each step; ``options`` go to :func:`~dln_manifolds.flows.integrate_flow`."""
    restore = None if X is None else (lambda W: fiber_restore(W, X))
    defaults = {**_default_monitors(X), **(extra_monitors or {})}
    if not isinstance(W0, list):
        return integrate_with_defaults(
            velocity, W0, t_final, defaults=defaults, restore=restore, **options
        )
    # general widths: the integrator's state is the flat vector of the layers (the layout
    # of LayersFlowResult); monitors and stop_when see the layers
    y0, unpack, pack = _flat_state(W0)
    user = options.pop("monitors", None) or {}
    defaults = {**defaults, **user}
    stop_when = options.pop("stop_when", None)

    def on_layers(f):
        return lambda t, y: f(t, unpack(y))

    result = integrate_with_defaults(
        lambda t, y: pack(velocity(t, unpack(y))),
        y0,
        t_final,
        defaults={name: on_layers(f) for name, f in defaults.items()},
        restore=None if restore is None else (lambda y: pack(restore(unpack(y)))),
        stop_when=None if stop_when is None else on_layers(stop_when),
        **options,
    )
    widths = (W0[0].shape[1], *(layer.shape[0] for layer in W0))
    return LayersFlowResult(**vars(result), widths=np.array(widths, dtype=np.int64))


def regularizing_flow(
    W0: ArrayLike,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    projection: str = "auto",
    adaptive: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    stop_when: Callable | None = None,
    save_every: int = 1,
    monitors: Mapping[str, Callable] | None = None,
    progress: bool = False,
) -> FlowResult:
    r"""The regularizing flow :math:`\dot W = -\mathrm{grad}\,|W|^2` on the fiber ([R] eq. 1.13).

    The velocity is :math:`-P(2W)` (:func:`~dln_manifolds.fiber.regularizer_gradient`,
    one d^2 normal solve per stage). [R] Thm 2: :math:`G(t) = G_0 e^{-4t}`, and
    the flow converges to the point of the orbit :math:`\mathcal{O}_X` of the
    center that it selects (Kempf-Ness, [R] Thm 1).

    **General widths.** ``W0`` may be a list of N layers of widths
    :math:`(d_0, \dots, d_N)` (hidden widths at least :math:`r = \min(d_0, d_N)`, product
    of rank r). Thm 2 holds unchanged, :math:`G(t) = G_0 e^{-4t}` (the normal part of the
    velocity keeps the moments), and :math:`|W|^2` decreases to the Kempf-Ness minimum
    :math:`N\sum_i\sigma_i^{2/N}`. The excess :math:`|W|^2 - N\sum_i\sigma_i^{2/N}`
    decays like :math:`|G|^2` (rate 8) for square networks and for widths such as
    (2, 3, 2) or (3, 4, 3, 3), but only like :math:`|G|` (rate 4, Thm 2's rate) when an
    interior layer :math:`W_k` (:math:`2 \le k \le N-1`) joins two hidden widths above r,
    as in (3, 5, 4, 2) or (2, 3, 3, 3) (measured: fitted late-time rates 8.000 and 4.00;
    such a layer has a block between the complements of the rank-r images that the
    product does not see, and that block only decays with the moments). For a list the result is a
    :class:`~dln_manifolds.flows.LayersFlowResult`: ``states`` holds the layers raveled and
    concatenated (input layer first), shape (n_saved, sum_k d_k d_{k+1}), ``layers(i)`` and
    ``final`` unpack them; the ``moments`` monitor is the flat vector of the N-1 moments;
    monitors and ``stop_when`` passed by the caller receive the list of layers.

    Parameters
    ----------
    W0 : array_like, shape (N, d, d), or sequence of N arrays
        Initial point (N >= 2, full-rank product X); never modified.
    t_final : float
    dt : float, optional
        Step size (default ``t_final / 100``).
    method : {"rk4", "heun", "euler", "dopri5"}
        Runge-Kutta method of :func:`~dln_manifolds.flows.integrate_flow`.
    projection : {"auto", "cholesky", "cg"}
        Solver of the normal system.
    adaptive : bool
        Error-controlled steps (dopri5).
    rtol, atol : float
        Tolerances of the adaptive mode (:func:`~dln_manifolds.flows.integrate_flow`).
    stop_when : callable ``(t, W) -> bool``, optional
        Stop after the first accepted step where it returns True.
    save_every : int
    monitors : mapping, optional
        Extra monitored quantities ``name -> f(t, W)``, added to the defaults
        ``moments`` (shape (N-1, d, d)), ``norm_sq`` (:math:`|W|^2`) and
        ``product_error`` (:math:`|\phi(W) - X| / |X|`).
    progress : bool
        tqdm progress bar.

    Returns
    -------
    FlowResult, or LayersFlowResult for a list of layers
    """
    W0, X = _fiber_point(W0)

    def velocity(t, W):
        grad = regularizer_gradient(W, method=projection)
        return [-g for g in grad] if isinstance(grad, list) else -grad

    return _integrate_fiber_flow(
        velocity,
        W0,
        X,
        t_final,
        **_run_options(locals()),
        desc="regularizing flow",
    )


def ness_flow(
    W0: ArrayLike,
    t_final: float,
    *,
    scaling: str = "gradient",
    dt: float | None = None,
    method: str = "rk4",
    adaptive: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    stop_when: Callable | None = None,
    save_every: int = 1,
    monitors: Mapping[str, Callable] | None = None,
    progress: bool = False,
) -> FlowResult:
    r"""The Ness flow, the gradient flow of :math:`|G|^2` on :math:`\mathcal{F}_X` ([R] eq. 1.17).

    Scaling: with ``scaling="gradient"`` (default) the velocity is
    :math:`-\mathrm{grad}|G|^2 = -4 w_G` (:ref:`math-corrections`), so that
    :math:`\tfrac{d}{dt}|G|^2 = -|\mathrm{grad}|G|^2|^2 = -16 |w_G|^2`. With
    ``scaling="paper"`` it is :math:`-2 w_G`, [R] eq. 2.26 as printed (which is
    the gradient flow of :math:`\tfrac12|G|^2`, i.e. the default flow at half
    speed; then :math:`\tfrac{d}{dt}|G|^2 = -8|w_G|^2`, not the
    :math:`-4|w_G|^2` of [R] eq. 2.31). No linear solve is needed: :math:`w_G`
    is explicit. The flow ends on the balanced manifold (:math:`G \to 0`).

    Parameters
    ----------
    W0 : array_like, shape (N, d, d), or sequence of N arrays
        General widths as in :func:`regularizing_flow` (flat saved states).
    t_final : float
    scaling : {"gradient", "paper"}
    dt, method, adaptive, rtol, atol, stop_when, save_every, progress
        As in :func:`regularizing_flow`.
    monitors : mapping, optional
        Extra monitors; defaults: ``moments``, ``norm_sq``, ``product_error``,
        ``moment_norm_sq`` (:math:`|G|^2`) and ``grad_norm_sq``
        (:math:`|\mathrm{grad}|G|^2|^2 = 16|w_G|^2`).

    Returns
    -------
    FlowResult
    """
    W0, X = _fiber_point(W0)
    if scaling not in ("gradient", "paper"):
        raise ValueError(f"scaling must be 'gradient' or 'paper', got {scaling!r}")
    c = 4.0 if scaling == "gradient" else 2.0

    def velocity(t, W):
        w_G = generator_to_tangent(W, moments(W))
        return [-c * v for v in w_G] if isinstance(w_G, list) else -c * w_G

    extra = {
        "moment_norm_sq": lambda t, W: _norm_sq(moments(W)),
        "grad_norm_sq": lambda t, W: 16.0 * _norm_sq(generator_to_tangent(W, moments(W))),
    }
    return _integrate_fiber_flow(
        velocity,
        W0,
        X,
        t_final,
        extra_monitors=extra,
        **_run_options(locals()),
        desc="Ness flow",
    )


def regularized_gradient_flow(
    W0: ArrayLike,
    energy: Energy | Callable[[np.ndarray], np.ndarray],
    kappa: float,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    adaptive: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    stop_when: Callable | None = None,
    save_every: int = 1,
    monitors: Mapping[str, Callable] | None = None,
    progress: bool = False,
) -> FlowResult:
    r"""Gradient flow of :math:`E(\phi(W)) + \tfrac{\kappa}{2}|W|^2` in all of M_d^N ([R] eq. 1.18).

    :math:`\dot W = -\nabla_W E(\phi(W)) - \kappa W`, with
    :math:`\nabla_W E(\phi(W))` from :func:`~dln_manifolds.lifted_gradient`.
    The loss part conserves the moments and :math:`dG(W) = 2G`, so
    :math:`G(t) = G_0 e^{-2\kappa t}` exactly (:ref:`math-corrections`; [R] section 1.6.1
    says the rate is :math:`\kappa`, it is :math:`2\kappa` for this
    normalization). Use :func:`split_velocity` to separate the learning
    (normal) and regularizing (tangent) parts of the velocity.

    Parameters
    ----------
    W0 : array_like, shape (N, d, d)
    energy : Energy or callable
        A :class:`~dln_manifolds.energies.Energy` or a callable returning the
        Euclidean gradient :math:`E'(X)`, shape (d, d).
    kappa : float
        Regularization strength, > 0.
    t_final : float
    dt, method, adaptive, rtol, atol, stop_when, save_every, progress
        As in :func:`regularizing_flow`.
    monitors : mapping, optional
        Extra monitors; defaults: ``moments``, ``norm_sq``, ``end_to_end``
        and (for an Energy) ``energy``.

    Returns
    -------
    FlowResult
    """
    W0 = as_stack(W0, "W0")
    kappa = check_positive(kappa, "kappa")
    grad_E, value_E = energy_functions(energy)

    def velocity(t, W):
        return -lifted_gradient(W, grad_E(end_to_end(W))) - kappa * W

    extra = {"end_to_end": lambda t, W: end_to_end(W)}
    if value_E is not None:
        extra["energy"] = lambda t, W: float(value_E(end_to_end(W)))
    return _integrate_fiber_flow(
        velocity,
        W0,
        None,
        t_final,
        extra_monitors=extra,
        **_run_options(locals()),
        desc="regularized gradient flow",
    )


def split_velocity(
    W: ArrayLike, velocity: ArrayLike, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    r"""Split an ambient velocity into its parts tangent and normal to the fiber through W.

    ``tangent = P(v)`` lies in :math:`T_W\mathcal{F}_X = \ker d\phi_W` (it moves
    the parameters along the fiber: regularization), ``normal = v - P(v)`` in
    the range of :math:`d\phi_W^*` (it moves X: learning). [R] section 1.6.1.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
    velocity : array_like, shaped like W
    method : {"auto", "cholesky", "cg"}

    Returns
    -------
    tangent, normal : ndarray, shape (N, d, d), or lists of N arrays shaped like W
        Orthogonal, summing to ``velocity``.
    """
    W = as_fiber_layers(W)
    solver = FiberNormalSolver(W, method=method)
    if isinstance(W, list):
        if not isinstance(velocity, (list, tuple)):  # one stacked network (N, d, d)
            velocity = list(as_stack(velocity, "velocity", depth=len(W)))
        v = solver._stack_arg(velocity, "velocity")
        tangent = solver._project(v)
        return tangent, [a - b for a, b in zip(v, tangent, strict=True)]
    v = as_stack(velocity, "velocity", depth=W.shape[0], d=W.shape[1])
    tangent = solver.project(v)
    return tangent, v - tangent
