"""The core second-order retraction (dln_manifolds.retraction) and the batched balanced lifts."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds import (
    BalancedFrame,
    DepthFrame,
    balanced_point,
    depth_exp,
    depth_retraction,
    horizontal_lift,
    retraction_condition_limit,
)
from dln_manifolds.geomstats import EndToEndMatrices as GsEndToEnd
from dln_manifolds.pymanopt import EndToEndMatrices

SHAPES = [((3, 3), 2), ((3, 3), np.inf), ((2, 2), 1), ((2, 4), 3), ((4, 2), 2)]


def _points(shape, count, rng):
    """Well-conditioned points: Haar-like frames and singular values in [1/2, 2]."""
    m, n = shape
    r = min(m, n)
    U = np.linalg.qr(rng.standard_normal((count, m, m)))[0][..., :r]
    V = np.linalg.qr(rng.standard_normal((count, n, n)))[0][..., :r]
    s = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=(count, r)))
    return (U * s[:, None, :]) @ np.swapaxes(V, -1, -2)


def _taylor2(X, V, depth, t):
    """Second-order Taylor polynomial of exp_X(tV): X + tV - t^2/2 Gamma_X(V, V)."""
    return X + t * V - 0.5 * t**2 * DepthFrame(X, depth).christoffel(V, V)


def _slope(fun, X, V, depth):
    """Log-log slope of |fun(X, tV) - Taylor_2(t)| for t in [1e-3, 1e-1]."""
    ts = np.logspace(-3, -1, 5)
    err = [np.linalg.norm(fun(X, t * V) - _taylor2(X, V, depth, t)) for t in ts]
    return np.polyfit(np.log(ts), np.log(err), 1)[0]


@pytest.mark.parametrize(("shape", "depth"), SHAPES)
def test_second_order_with_negative_control(shape, depth):
    rng = np.random.default_rng(1)
    X, V = _points(shape, 1, rng)[0], rng.standard_normal(shape)
    slope = _slope(lambda x, v: depth_retraction(x, v, depth), X, V, depth)
    # R_X(tV) - Taylor_2 is O(t^3) (square) or O(t^6) (non-square: the damping only)
    assert slope >= 2.8 if shape[0] == shape[1] else slope >= 5.0
    if depth == 1:
        return  # Taylor_2 is X + tV: no negative control
    # negative control: the first-order retraction X + V only reaches slope 2
    assert _slope(lambda x, v: x + v, X, V, depth) < 2.2


def test_agrees_with_exponential_map():
    rng = np.random.default_rng(2)
    X, V = _points((2, 2), 1, rng)[0], rng.standard_normal((2, 2))
    errs = [
        np.linalg.norm(depth_retraction(X, t * V, 2) - depth_exp(X, t * V, 2)) for t in (0.1, 0.05)
    ]
    assert 5.0 < errs[0] / errs[1] < 11.0  # O(t^3): ratio 8 when t halves


@pytest.mark.parametrize(("shape", "depth"), SHAPES)
def test_batched_equals_per_point(shape, depth):
    rng = np.random.default_rng(3)
    X = _points(shape, 8, rng)
    V = rng.standard_normal((8,) + shape) * np.logspace(-4, 6, 8)[:, None, None]
    V[2] = 0.0
    out = depth_retraction(X, V, depth)
    loop = np.stack([depth_retraction(x, v, depth) for x, v in zip(X, V, strict=True)])
    assert np.allclose(out, loop, rtol=1e-13, atol=0)
    assert np.array_equal(out[2], X[2])
    # the pymanopt adapter is the same map
    M = EndToEndMatrices(shape[0] if shape[0] == shape[1] else shape, depth)
    assert np.allclose(
        M.retraction(X[1], V[1]),
        depth_retraction(X[1], V[1], depth, max_length=M.typical_dist),
        rtol=1e-13,
        atol=0,
    )
    # broadcasting: one base point, several vectors
    one = depth_retraction(X[0], V, depth)
    assert np.allclose(one[3], depth_retraction(X[0], V[3], depth), rtol=1e-13, atol=0)
    # negative control: a permuted batch does not match
    assert not np.allclose(depth_retraction(X[::-1], V, depth), loop)


@pytest.mark.parametrize(("shape", "depth"), SHAPES)
def test_long_steps_keep_full_rank_and_component(shape, depth):
    rng = np.random.default_rng(4)
    X = _points(shape, 6, rng)
    V = np.concatenate([-1e6 * X[:2], 1e300 * rng.standard_normal((2,) + shape), -1e3 * X[4:]])
    out = depth_retraction(X, V, depth)
    s = np.linalg.svd(out, compute_uv=False)
    assert np.all(np.isfinite(out))
    assert np.all(s[:, 0] / s[:, -1] <= retraction_condition_limit(max(shape)))
    if shape[0] == shape[1]:
        assert np.all(np.sign(np.linalg.det(out)) == np.sign(np.linalg.det(X)))


def test_geomstats_metric_retraction_is_the_core():
    rng = np.random.default_rng(5)
    space = GsEndToEnd((2, 3), 2)
    X, V = _points((2, 3), 4, rng), rng.standard_normal((4, 2, 3))
    out = space.metric.retraction(V.reshape(4, 6), X.reshape(4, 6))
    assert np.array_equal(out, depth_retraction(X, V, 2).reshape(4, 6))


def test_bad_input_names_the_argument():
    X = np.diag([1.0, 1e-20])
    with pytest.raises(ValueError, match="X"):
        depth_retraction(X, np.eye(2), 2)
    with pytest.raises(ValueError, match="tangent_vec"):
        depth_retraction(np.eye(2), np.full((2, 2), np.nan), 2, names=("base_point", "tangent_vec"))
    with pytest.raises(ValueError, match="depth"):
        depth_retraction(np.ones((2, 3)), np.ones((2, 3)), np.inf)
    with pytest.raises(ValueError, match="V"):
        depth_retraction(np.eye(2), np.ones((2, 3)), 2)


# -- batched balanced lifts (BalancedBundle.lift and horizontal_lift) -------------------


@pytest.mark.parametrize(("d", "N"), [(3, 3), (2, 1), (4, 5)])
def test_batched_balanced_point_and_lift_equal_loops(d, N):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((2, 3, d, d))
    Z = rng.standard_normal((2, 3, d, d))
    W = balanced_point(X, N)
    assert W.shape == (2, 3, N, d, d)
    loop = np.stack([balanced_point(x, N) for x in X.reshape(-1, d, d)]).reshape(W.shape)
    assert np.array_equal(W, loop)
    H = horizontal_lift(W, Z)
    Hloop = np.stack(
        [
            horizontal_lift(w, z)
            for w, z in zip(W.reshape(-1, N, d, d), Z.reshape(-1, d, d), strict=True)
        ]
    )
    assert np.allclose(H, Hloop.reshape(H.shape), rtol=0, atol=1e-14 * np.max(np.abs(Hloop)))
    assert np.allclose(BalancedFrame(W).horizontal_lift(Z), H, rtol=0, atol=1e-14 * np.abs(H).max())
    # negative control: lifting the vectors of other points differs
    assert not np.allclose(horizontal_lift(W, Z[::-1]), H)
    with pytest.raises(ValueError, match="Z"):
        horizontal_lift(W, Z[0])


@pytest.mark.parametrize(("shape", "depth"), SHAPES)
def test_max_length_bounds_the_step_and_keeps_second_order(shape, depth):
    """max_length: the g-length of the scaled step is below the bound; small steps change
    only at order |V|^5 (second-order retraction kept). Negative control: no bound."""
    rng = np.random.default_rng(5)
    X = _points(shape, 1, rng)[0]
    U = rng.standard_normal(shape)
    frame = DepthFrame(X, depth)
    unit = U / np.sqrt(frame.inner(U, U))  # g-length 1
    rho = 0.5
    for t in (1e-3, 1e-2):
        diff = depth_retraction(X, t * unit, depth, max_length=rho) - depth_retraction(
            X, t * unit, depth
        )
        assert np.linalg.norm(diff) <= 10 * (t / rho) ** 4 * t * np.linalg.norm(unit)
    far = depth_retraction(X, 1e3 * unit, depth, max_length=rho)
    near = depth_retraction(X, rho * unit, depth)
    # the bounded step goes no further than an unbounded step of length rho
    assert np.linalg.norm(far - X) <= np.linalg.norm(near - X) * (1 + 1e-12)
    assert np.linalg.norm(depth_retraction(X, 1e3 * unit, depth) - X) > 2 * np.linalg.norm(near - X)
    with pytest.raises(ValueError, match="max_length"):
        depth_retraction(X, unit, depth, max_length=0.0)
