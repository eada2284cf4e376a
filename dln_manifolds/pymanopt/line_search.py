r"""Line search for pymanopt optimizers that stays usable below the rounding level of the cost."""

from __future__ import annotations

import numpy as np

__all__ = ["RoundingTolerantLineSearcher"]


class RoundingTolerantLineSearcher:
    r"""Backtracking (Armijo) line search that keeps working below the rounding level of the cost.

    Near a minimizer the decrease :math:`f(x) - f^*` is of order
    :math:`|\mathrm{grad} f|^2`, so with a cost evaluated in float64 the Armijo
    test stops being decidable once :math:`|\mathrm{grad} f| \approx \sqrt{\epsilon}\,|f|`
    (for :math:`|W|^2` on the fiber this stalls pymanopt's first-order methods
    at :math:`|G| \approx 10^{-8}|W|^2`, with "min step_size reached"). This
    searcher does ordinary Armijo backtracking while the predicted decrease
    :math:`c\,\alpha\,|\mathrm{D}f(x)[d]|` exceeds ``noise * |f(x)|``; below
    that it takes the last step length that passed a resolvable Armijo test
    (a fixed-step gradient method, which contracts linearly for a step that
    was accepted near the minimizer), or, if ``gradient`` is given, one secant
    step on the directional derivative
    :math:`\alpha \mapsto \langle \mathrm{grad} f(R_x(\alpha d)), d\rangle`
    from that step length (exact for quadratics; needed by conjugate
    gradients, whose directions are not scaled like gradients). Stop the
    optimizer with ``min_gradient_norm``.

    Parameters
    ----------
    contraction_factor : float
    optimism : float
        Factor applied to the last accepted step to start the next search.
    sufficient_decrease : float
    max_iterations : int
    initial_step_size : float
        Length of the first trial step.
    noise : float
        Relative rounding level of the cost (default 1e3 machine epsilons).
    gradient : callable, optional
        ``point -> Riemannian gradient`` (e.g. ``problem.riemannian_gradient``),
        used for the secant step below the rounding level.
    """

    def __init__(
        self,
        contraction_factor: float = 0.5,
        optimism: float = 2.0,
        sufficient_decrease: float = 1e-4,
        max_iterations: int = 30,
        initial_step_size: float = 1.0,
        noise: float = 1e3 * np.finfo(np.float64).eps,
        gradient=None,
    ):
        self.contraction_factor = contraction_factor
        self.optimism = optimism
        self.sufficient_decrease = sufficient_decrease
        self.max_iterations = max_iterations
        self.initial_step_size = initial_step_size
        self.noise = noise
        self.gradient = gradient
        self._alpha = None

    def search(self, objective, manifold, x, d, f0, df0):
        """Return ``(step_size, newx)`` as pymanopt's line searchers do."""
        norm_d = manifold.norm(x, d)
        if norm_d == 0 or df0 >= 0:
            return 0.0, x
        slack = self.noise * abs(f0)
        if self._alpha is None:
            alpha = self.initial_step_size / norm_d
        else:
            alpha = self.optimism * self._alpha
        for _ in range(self.max_iterations):
            if self.sufficient_decrease * alpha * abs(df0) < slack:
                # the Armijo test is no longer decidable in float64
                return self._small_step(manifold, x, d, df0, norm_d, alpha)
            newx = manifold.retraction(x, alpha * d)
            newf = objective(newx)
            if newf <= f0 + self.sufficient_decrease * alpha * df0:
                self._alpha = alpha
                return float(alpha * norm_d), newx
            alpha *= self.contraction_factor
        return 0.0, x

    def _small_step(self, manifold, x, d, df0, norm_d, alpha):
        if self._alpha is not None:
            alpha = min(alpha, self._alpha) if self.gradient is None else self._alpha
        newx = manifold.retraction(x, alpha * d)
        if self.gradient is not None:
            # secant on g(t) = <grad f(R_x(t d)), d>, g(0) = df0 < 0
            g1 = manifold.inner_product(newx, self.gradient(newx), manifold.transport(x, newx, d))
            if df0 - g1 > 0:
                alpha = float(np.clip(alpha * df0 / (df0 - g1), 0.1 * alpha, 10.0 * alpha))
                newx = manifold.retraction(x, alpha * d)
        return float(alpha * norm_d), newx
