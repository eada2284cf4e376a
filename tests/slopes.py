"""Slope tests for Riemannian gradients and Hessians, and test problems, shared by the tests.

Wraps :func:`pymanopt.tools.diagnostics.check_directional_derivative`, which
fits the slope of the Taylor-model error in log-log scale along the
retraction (slope 2 for a correct gradient, 3 for a correct Hessian with a
second-order retraction or at a critical point).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pymanopt
from pymanopt.tools.diagnostics import check_directional_derivative


def quadratic_problem(manifold, T) -> pymanopt.Problem:
    """E(X) = |X - T|^2 / 2 on ``manifold``, with explicit Euclidean gradient and Hessian.

    A list (or tuple) ``T`` of layers of general widths gives :func:`layers_quadratic_problem`.
    """
    if isinstance(T, (list, tuple)):
        return layers_quadratic_problem(manifold, T)

    @pymanopt.function.numpy(manifold)
    def cost(X):
        return 0.5 * np.sum((X - T) ** 2)

    @pymanopt.function.numpy(manifold)
    def egrad(X):
        return X - T

    @pymanopt.function.numpy(manifold)
    def ehess(X, Z):
        return Z

    return pymanopt.Problem(manifold, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)


def layers_quadratic_problem(manifold, T) -> pymanopt.Problem:
    """E(W) = sum_k |W_k - T_k|^2 / 2 for points that are lists of layers ``T``.

    Follows ``manifold.point_layout``: 1 (the point is one list, e.g. BalancedManifold
    with widths) or N (the N layers are N arguments, e.g. Fiber with widths; the gradient
    and Hessian return tuples of N arrays).
    """
    T = [np.array(t, dtype=np.result_type(t, np.float64)) for t in T]
    N = len(T)
    if manifold.point_layout == 1:

        @pymanopt.function.numpy(manifold)
        def cost(W):
            return 0.5 * sum(float(np.sum(np.abs(w - t) ** 2)) for w, t in zip(W, T, strict=True))

        @pymanopt.function.numpy(manifold)
        def egrad(W):
            return [w - t for w, t in zip(W, T, strict=True)]

        @pymanopt.function.numpy(manifold)
        def ehess(W, Z):
            return [np.array(z, copy=True) for z in Z]

    elif manifold.point_layout == N:

        @pymanopt.function.numpy(manifold)
        def cost(*W):
            return 0.5 * sum(float(np.sum(np.abs(w - t) ** 2)) for w, t in zip(W, T, strict=True))

        @pymanopt.function.numpy(manifold)
        def egrad(*W):
            return tuple(w - t for w, t in zip(W, T, strict=True))

        @pymanopt.function.numpy(manifold)
        def ehess(*args):
            return tuple(np.array(z, copy=True) for z in args[N:])

    else:
        raise ValueError(f"point_layout {manifold.point_layout} does not match {N} layers")
    return pymanopt.Problem(manifold, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)


def taylor_slopes(problem, point=None, tangent_vector=None) -> tuple[float, float]:
    """Return (gradient slope, Hessian slope) at ``point`` along ``tangent_vector``."""
    manifold = problem.manifold
    if point is None:
        point = manifold.random_point()
    if tangent_vector is None:
        tangent_vector = manifold.random_tangent_vector(point)
    with contextlib.redirect_stdout(io.StringIO()):
        *_, poly_g = check_directional_derivative(problem, point, tangent_vector)
        *_, poly_h = check_directional_derivative(
            problem, point, tangent_vector, use_quadratic_model=True
        )
    return float(poly_g[0]), float(poly_h[0])


def gradient_slope(problem, point=None, tangent_vector=None) -> float:
    """Slope of the first-order Taylor error (2 when the gradient is right)."""
    manifold = problem.manifold
    if point is None:
        point = manifold.random_point()
    if tangent_vector is None:
        tangent_vector = manifold.random_tangent_vector(point)
    with contextlib.redirect_stdout(io.StringIO()):
        *_, poly = check_directional_derivative(problem, point, tangent_vector)
    return float(poly[0])
