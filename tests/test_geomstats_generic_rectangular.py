"""geomstats' generic test cases on non-square EndToEndMatrices and DepthMetric.

The full-rank m x n matrices (m != n, finite depth) with g^N: the open-set tests of
``VectorSpaceOpenSetTestCase`` and every Riemannian-metric test of
``RiemannianMetricTestCase`` (exp, log, dist, geodesic BVP, parallel transport,
Christoffel symbols, curvature), with the data classes of tests/test_geomstats_generic.py
and a random-data generator for non-square points (:class:`RectangularGenerator`: the set
is connected, so every pair is joined by a geodesic). The default run takes the open set
(3, 2), N = 2 and the one-point metric tests of (3, 2), N = 2 and (2, 3), N = 3; the
two-point tests (a g^N log each) run in the slow suite for (3, 2), N = 2, 3 and (2, 3),
N = 2.
"""

import zlib

import numpy as np
import pytest

pytest.importorskip("geomstats")

import geomstats.backend as gs  # noqa: E402
from geomstats.test.random import RandomDataGenerator  # noqa: E402
from geomstats.test_cases.geometry.base import VectorSpaceOpenSetTestCase  # noqa: E402
from geomstats.test_cases.geometry.riemannian_metric import (  # noqa: E402
    RiemannianMetricTestCase,
)
from geomstats_data import DataBasedParametrizer  # noqa: E402
from test_geomstats_generic import (  # noqa: E402
    DepthMetricOnePointTestData,
    DepthMetricTestData,
    EndToEndTestData,
)

from dln_manifolds.geomstats import EndToEndMatrices  # noqa: E402


@pytest.fixture(autouse=True)
def _seed(request):
    """Reproducible random data: geomstats' generators draw from numpy's global state."""
    gs.random.seed(zlib.crc32(request.node.nodeid.encode()))


class RectangularGenerator(RandomDataGenerator):
    """Random data on the full-rank m x n matrices, m != n (one connected component).

    Points: ``space.random_point`` (Haar frames, singular values in [1/2, 2]). Tangent
    vectors: Gaussian, Frobenius norm ``scale`` times that of the point (a margin from
    the rank-deficient set for the geodesics of the generic tests). Points to project:
    rank-deficient matrices (a zero column of a tall matrix, a zero row of a wide one).
    """

    def __init__(self, space, scale: float = 0.15):
        super().__init__(space)
        self.scale = scale

    def random_point(self, n_points=1):
        return self.space.random_point(n_points)

    def point_to_project(self, n_points=1):
        m, n = self.space.matrix_shape
        x = self.space.to_matrix(self.space.embedding_space.random_point(n_points))
        if m > n:
            mask = gs.array([0.0] + [1.0] * (n - 1))[None, :]
        else:
            mask = gs.array([0.0] + [1.0] * (m - 1))[:, None]
        return self.space.to_vector(x * mask)

    def random_tangent_vec(self, base_point):
        base_point = gs.array(base_point)
        v = gs.random.normal(size=base_point.shape)
        norm = gs.sqrt(gs.sum(base_point**2, axis=-1, keepdims=True))
        return self.scale * v * norm / gs.sqrt(gs.sum(v**2, axis=-1, keepdims=True))


#: (shape, N, one-point default, full slow)
CASES = [((3, 2), 2, True), ((3, 2), 3, False), ((2, 3), 2, False), ((2, 3), 3, True)]
DEFAULT_OPEN_SET = [((3, 2), 2)]


def _make(name, bases, slow, **attrs):
    if slow:
        attrs["pytestmark"] = pytest.mark.slow
    globals()[name] = DataBasedParametrizer(name, bases, attrs)


for _shape, _N, _one_point in CASES:
    _space = EndToEndMatrices(_shape, _N)
    _gen = RectangularGenerator(_space)
    _name = f"{_shape[0]}x{_shape[1]}_N{_N}"
    common = dict(space=_space, data_generator=_gen)
    _make(
        f"TestEndToEndMatrices_{_name}",
        (VectorSpaceOpenSetTestCase,),
        (_shape, _N) not in DEFAULT_OPEN_SET,
        testing_data=EndToEndTestData(),
        **common,
    )
    if _one_point:
        _make(
            f"TestDepthMetricOnePoint_{_name}",
            (RiemannianMetricTestCase,),
            False,
            testing_data=DepthMetricOnePointTestData(),
            **common,
        )
    if (_shape, _N) != ((2, 3), 3):
        _make(
            f"TestDepthMetric_{_name}",
            (RiemannianMetricTestCase,),
            True,
            testing_data=DepthMetricTestData(),
            **common,
        )


def test_generator_draws_full_rank_points_and_rank_deficient_projections():
    """The data of the generic tests: points on the space, tangent vectors of the right
    size, points to project off it (negative control: belongs rejects them)."""
    for shape in ((3, 2), (2, 3)):
        space = EndToEndMatrices(shape, 2)
        gen = RectangularGenerator(space)
        x = gen.random_point(4)
        assert tuple(x.shape) == (4, space.dim) and bool(gs.all(space.belongs(x)))
        v = gen.random_tangent_vec(x)
        ratio = np.linalg.norm(gs.to_numpy(v), axis=-1) / np.linalg.norm(gs.to_numpy(x), axis=-1)
        np.testing.assert_allclose(ratio, 0.15)
        p = gen.point_to_project(3)
        assert not bool(gs.any(space.belongs(p)))
        assert bool(gs.all(space.belongs(space.projection(p))))


def test_generic_metric_tests_can_fail():
    """Negative control: the generic exp-after-log test catches an exp that drops the
    Christoffel term (the straight line X + V), on a non-square space."""
    space = EndToEndMatrices((3, 2), 2)
    case = type("Case", (RiemannianMetricTestCase,), {})()
    case.space, case.data_generator = space, RectangularGenerator(space)
    case.test_exp_after_log(1, 1e-7)  # the real metric passes

    class StraightLines(type(space.metric)):
        def exp(self, tangent_vec, base_point):
            return base_point + tangent_vec

    space.metric = StraightLines(space)
    with pytest.raises(AssertionError):
        case.test_exp_after_log(1, 1e-7)
