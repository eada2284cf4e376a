"""DepthMetric.jacobian_christoffels: the batched stencil equals the per-point one."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds.geomstats import EndToEndMatrices


@pytest.mark.parametrize(("d", "depth", "count"), [(2, 3, 20), (2, float("inf"), 3), (3, 2, 2)])
def test_batched_jacobian_equals_the_per_point_one(d, depth, count):
    metric = EndToEndMatrices(d, depth).metric
    rng = np.random.default_rng(d)
    X = (np.eye(d) + 0.4 * rng.standard_normal((count, d, d))).reshape(count, -1)
    got = metric.jacobian_christoffels(X)  # d = 2, 20 points: more than one block
    loop = np.stack([metric.jacobian_christoffels(x) for x in X])
    np.testing.assert_allclose(got, loop, rtol=0, atol=1e-14 * max(1.0, np.abs(loop).max()))
    assert got.shape == (count,) + (d * d,) * 4
    # and it is the derivative of the symbols (central difference, coordinate 0)
    h = 1e-5
    fd = (
        metric.christoffels(X[0] + h * np.eye(d * d)[0])
        - metric.christoffels(X[0] - h * np.eye(d * d)[0])
    ) / (2 * h)
    np.testing.assert_allclose(got[0, ..., 0], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    # negative control: the derivative in another coordinate differs
    assert np.abs(got[0, ..., 1] - fd).max() > 1e-3 * np.abs(fd).max()
