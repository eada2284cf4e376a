"""geomstats' own generic test cases for every geomstats adapter of this project.

Each class pairs a test case of ``geomstats.test_cases`` (manifold, open set,
Riemannian metric, fiber bundle, quotient metric) with the data classes and
random-data generators of tests/geomstats_data.py, through geomstats'
``DataBasedParametrizer``. Spaces: EndToEndMatrices and DepthMetric for several
(d, N), including N = inf, with points in each component of GL(d) (a class per
sign of the determinant: the geodesic tests pair points of one component);
Fiber, BalancedManifold, their induced metrics, BalancedBundle and the quotient
metric of M -> (M_d, g^N); Fiber and BalancedManifold of general widths (flat
points (D,), ``WIDTHS_CASES``; the metric of the incomplete balanced manifold of general
widths on points of a ball where a geodesic joins every pair, ``CertifiedBallGenerator``).
The default run takes a few (d, N); the full matrix
is marked slow.

Skipped tests are listed in ``SKIPS`` with the reason; nothing is silently
passed (``fail_for_not_implemented_errors`` stays True, no retries).

The module runs under every geomstats backend (``GEOMSTATS_BACKEND``): numpy in the
default suite, autograd and pytorch with ``make test-generic-backends``.
"""

import zlib

import numpy as np
import pytest

pytest.importorskip("geomstats")

import geomstats.backend as gs  # noqa: E402
from geomstats.test_cases.geometry.base import VectorSpaceOpenSetTestCase  # noqa: E402
from geomstats.test_cases.geometry.fiber_bundle import FiberBundleTestCase  # noqa: E402
from geomstats.test_cases.geometry.manifold import ManifoldTestCase  # noqa: E402
from geomstats.test_cases.geometry.mixins import ProjectionTestCaseMixins  # noqa: E402
from geomstats.test_cases.geometry.quotient_metric import QuotientMetricTestCase  # noqa: E402
from geomstats.test_cases.geometry.riemannian_metric import (  # noqa: E402
    RiemannianMetricTestCase,
)
from geomstats_data import (  # noqa: E402  (stubs the notebook runners of parametrizers)
    CONNECTION,
    DIST,
    FIBER_BUNDLE,
    GEODESIC_BVP,
    MANIFOLD,
    OPEN_SET,
    PROJECTION,
    RIEMANNIAN,
    TWO_POINT,
    BaseGenerator,
    CertifiedBallGenerator,
    ComponentGenerator,
    DataBasedParametrizer,
    SubmanifoldGenerator,
    WidthsGenerator,
    data_class,
    without,
)

from dln_manifolds.geomstats import (  # noqa: E402
    BalancedManifold,
    EndToEndMatrices,
    Fiber,
)


@pytest.fixture(autouse=True)
def _seed(request):
    """Reproducible random data: geomstats' generators draw from numpy's global state."""
    gs.random.seed(zlib.crc32(request.node.nodeid.encode()))


# --- which tests run where -------------------------------------------------------------

#: Tests skipped, with the reason. geomstats' ``Connection``/``FiberBundle`` methods these
#: call raise NotImplementedError in geomstats itself unless a space provides a closed
#: form (geomstats' own data classes skip them for most spaces): optional.
OPTIONAL = {
    "injectivity_radius_vec": "Connection.injectivity_radius: closed forms only",
    "curvature_derivative_vec": "Connection.curvature_derivative: symmetric spaces only",
    "directional_curvature_derivative_vec": "as curvature_derivative",
    "integrability_tensor_vec": "FiberBundle.integrability_tensor: a few bundles only",
    "integrability_tensor_derivative_vec": "as integrability_tensor",
}
#: geomstats computes inner_product_derivative_matrix by autodiff of metric_matrix, which
#: the numpy backend cannot do (geomstats marks such tests with fail_for_autodiff_exceptions)
AUTODIFF = {"inner_product_derivative_matrix_vec": "autodiff of metric_matrix"}
METRIC_SKIPS = tuple(k for k in OPTIONAL if not k.startswith("integrability")) + (
    tuple(AUTODIFF) if gs.__name__.endswith("numpy") else ()
)

EndToEndTestData = data_class("EndToEndTestData", MANIFOLD, PROJECTION, OPEN_SET)
_METRIC_GROUPS = (CONNECTION, GEODESIC_BVP, DIST, RIEMANNIAN)
_LOOSE = {  # shooting (log) to tol 1e-10 relative: geodesic identities to ~1e-8
    name: {"atol": 1e-7}
    for name in (
        "exp_after_log",
        "log_after_exp",
        "geodesic_boundary_points",
        "geodesic_bvp_reverse",
        "dist_is_symmetric",
        "squared_dist_is_symmetric",
        "parallel_transport_ivp_norm",
        "parallel_transport_bvp_norm",
    )
}
DepthMetricTestData = data_class(
    "DepthMetricTestData", *_METRIC_GROUPS, skips=METRIC_SKIPS, tolerances=_LOOSE
)
DepthMetricOnePointTestData = data_class(
    "DepthMetricOnePointTestData",
    *(without(g, TWO_POINT) for g in _METRIC_GROUPS),
    skips=METRIC_SKIPS,
    tolerances={k: v for k, v in _LOOSE.items() if k not in TWO_POINT},
)
SubmanifoldTestData = data_class("SubmanifoldTestData", MANIFOLD, PROJECTION)

#: Coordinate expressions (metric matrix, Christoffel symbols, curvature tensors): geomstats
#: builds them from ``metric_matrix`` in the coordinates of the point array, which it does
#: not implement for points of ndim > 1 (the (N, d, d) stacks upstairs) nor for its
#: QuotientMetric: geomstats itself raises NotImplementedError there.
COORDINATE = {
    "metric_matrix_vec",
    "metric_matrix_is_spd",
    "cometric_matrix_vec",
    "inner_coproduct_vec",
    "inner_product_derivative_matrix_vec",
    "christoffels_vec",
    "geodesic_equation_vec",
    "riemann_tensor_vec",
    "curvature_vec",
    "ricci_tensor_vec",
    "directional_curvature_vec",
    "covariant_riemann_tensor_vec",
    "covariant_riemann_tensor_is_skew_symmetric_1",
    "covariant_riemann_tensor_is_skew_symmetric_2",
    "covariant_riemann_tensor_bianchi_identity",
    "covariant_riemann_tensor_is_interchange_symmetric",
    "sectional_curvature_vec",
    "scalar_curvature_vec",
}
#: Parallel transport: depth_parallel_transport on (M_d, g^N), the induced metrics of F_X
#: and M (submanifold_geodesics.*_parallel_transport) and the quotient metric
#: (alignment.horizontal_parallel_transport): implemented everywhere, no skips.
_UP_SKIPS = tuple(k for k in OPTIONAL if not k.startswith("integrability")) + tuple(
    sorted(COORDINATE)
)
#: The quotient's metric matrix is the Gram matrix of horizontal lifts (BalancedQuotientMetric.
#: metric_matrix); the other coordinate expressions differentiate it by autodiff (geomstats)
#: or need the curvature of the total space and the integrability tensor (optional).
_QUOTIENT_MATRIX = {
    "metric_matrix_vec",
    "metric_matrix_is_spd",
    "cometric_matrix_vec",
    "inner_coproduct_vec",
}
_QUOTIENT_SKIPS = tuple(k for k in _UP_SKIPS if k not in _QUOTIENT_MATRIX)
_UP_TOL = {k: {"atol": 1e-6} for k in _LOOSE}
InducedMetricTestData = data_class(
    "InducedMetricTestData", *_METRIC_GROUPS, skips=_UP_SKIPS, tolerances=_UP_TOL
)
#: BalancedMetric integrates geodesics by fixed-step RK4 (20 steps, error O(h^4)): its
#: log inverts that discrete exp, so reversed geodesics and dist(a, b) - dist(b, a)
#: agree to the discretization error, measured up to 8e-4 (d = 2, 3; N = 2, 3).
_RK4_TOL = {"atol": 2e-3}
BalancedMetricTestData = data_class(
    "BalancedMetricTestData",
    *_METRIC_GROUPS,
    skips=_UP_SKIPS,
    tolerances={
        **_UP_TOL,
        "geodesic_bvp_reverse": _RK4_TOL,
        "dist_is_symmetric": _RK4_TOL,
        "squared_dist_is_symmetric": _RK4_TOL,
        # transport to a random (far) end point: the norm is kept to the RK4 error of the
        # 20-step integration along the log geodesic, measured 1.3e-6 (d = 2, N = 3)
        "parallel_transport_bvp_norm": {"atol": 1e-4},
    },
)
InducedMetricOnePointTestData = data_class(
    "InducedMetricOnePointTestData",
    *(without(g, TWO_POINT) for g in _METRIC_GROUPS),
    skips=tuple(k for k in _UP_SKIPS if k.removesuffix("_vec") not in TWO_POINT),
    tolerances={k: v for k, v in _UP_TOL.items() if k not in TWO_POINT},
)
BundleTestData = data_class(
    "BundleTestData",
    FIBER_BUNDLE,
    skips=tuple(k for k in OPTIONAL if k.startswith("integrability")),
)
#: The quotient metric: exp follows the horizontal geodesic upstairs (BalancedMetric's
#: RK4, 20 steps), log/dist/transport are the horizontal lifts of those of g^N (adaptive,
#: tol 1e-10): identities mixing the two hold to the RK4 error, measured up to 1e-6 for
#: random pairs (exp_after_log, geodesic_boundary_points at d, N = (2, 2), (2, 3), (3, 2)).
_QUOTIENT_TOL = {
    name: {"atol": 1e-5}
    for name in ("exp_after_log", "geodesic_boundary_points", "geodesic_bvp_reverse")
}
QuotientTestData = data_class(
    "QuotientTestData", *_METRIC_GROUPS, skips=_QUOTIENT_SKIPS, tolerances=_QUOTIENT_TOL
)
#: The default run: the tests that solve no boundary value problem (each two-point test
#: costs a g^N log, 0.3-0.5 s per pair: about 50 s of CPU for the class); the slow run has
#: them all, and tests/test_quotient_metric.py checks log, dist and transport by default.
QuotientOnePointTestData = data_class(
    "QuotientOnePointTestData",
    *(without(g, TWO_POINT) for g in _METRIC_GROUPS),
    skips=tuple(k for k in _QUOTIENT_SKIPS if k.removesuffix("_vec") not in TWO_POINT),
    tolerances={k: v for k, v in _QUOTIENT_TOL.items() if k not in TWO_POINT},
)

#: (d, N, sign of det): every class of (M_d, g^N) runs in the slow suite; the default run
#: takes two, one per component, with the tests that need no two-point log.
E2E_CASES = [
    (d, N, sign)
    for d, N in [(2, 1), (2, 2), (2, 3), (2, np.inf), (3, 2), (3, np.inf), (4, 3)]
    for sign in (1, -1)
]
DEFAULT_E2E = [(2, 2, 1), (2, np.inf, -1)]
DEFAULT_UP = [(2, 2)]
SLOW_UP = [(2, 3), (3, 2)]


def _label(d, depth):
    return f"d{d}_N{'inf' if np.isinf(depth) else int(depth)}"


def _make(name, bases, slow, **attrs):
    if slow:
        attrs["pytestmark"] = pytest.mark.slow
    globals()[name] = DataBasedParametrizer(name, bases, attrs)


def _make_all(space, generator, classes):
    """One test class per (name, test case, slow, data class), all on ``space``."""
    for name, case, slow, data in classes:
        _make(name, case, slow, space=space, data_generator=generator, testing_data=data())


_METRIC = (RiemannianMetricTestCase,)
for _d, _N, _sign in E2E_CASES:
    _default = (_d, _N, _sign) in DEFAULT_E2E
    _space = EndToEndMatrices(_d, _N)
    _name = f"{_label(_d, _N)}_{'pos' if _sign > 0 else 'neg'}"
    _classes = [
        (
            f"TestEndToEndMatrices_{_name}",
            (VectorSpaceOpenSetTestCase,),
            not _default,
            EndToEndTestData,
        ),
        (f"TestDepthMetric_{_name}", _METRIC, True, DepthMetricTestData),
    ]
    if _default:
        _classes.append(
            (f"TestDepthMetricOnePoint_{_name}", _METRIC, False, DepthMetricOnePointTestData)
        )
    _make_all(_space, ComponentGenerator(_space, _sign), _classes)

for _slow, _cases in ((False, DEFAULT_UP), (True, SLOW_UP + DEFAULT_UP)):
    for _d, _N in _cases:
        _rng = np.random.default_rng(_d * 10 + _N)
        _X = np.eye(_d) + 0.3 * _rng.standard_normal((_d, _d))
        _sfx = f"{_label(_d, _N)}{'_full' if _slow else ''}"
        _full = {"Fiber": InducedMetricTestData, "BalancedManifold": BalancedMetricTestData}
        for _kind, _sp in (
            ("Fiber", Fiber(_X, _N)),
            ("BalancedManifold", BalancedManifold(_d, _N)),
        ):
            _metric_data = _full[_kind] if _slow else InducedMetricOnePointTestData
            _make_all(
                _sp,
                SubmanifoldGenerator(_sp),
                [
                    (
                        f"Test{_kind}_{_sfx}",
                        (ProjectionTestCaseMixins, ManifoldTestCase),
                        _slow,
                        SubmanifoldTestData,
                    ),
                    (f"Test{_kind}Metric_{_sfx}", _METRIC, _slow, _metric_data),
                ],
            )
        _total = BalancedManifold(_d, _N)
        _quotient = _total.equip_with_quotient()
        _make(
            f"TestBalancedBundle_{_sfx}",
            (FiberBundleTestCase,),
            _slow,
            total_space=_total,
            base=_quotient,
            bundle=_total.fiber_bundle,
            data_generator=SubmanifoldGenerator(_total),
            base_data_generator=BaseGenerator(_quotient, 1),
            testing_data=BundleTestData(),
        )
        _make(
            f"TestQuotientMetric_{_sfx}",
            (QuotientMetricTestCase,),
            _slow,
            space=_quotient,
            data_generator=ComponentGenerator(_quotient, 1),
            testing_data=QuotientTestData() if _slow else QuotientOnePointTestData(),
        )


# --- beyond the generic suite -----------------------------------------------------------


@pytest.mark.parametrize("d, depth", [(2, 2), (2, np.inf)])
def test_components_are_not_joined(d, depth):
    """Points of different components: dist inf, log raises (the generic tests pair one)."""
    from dln_manifolds.geodesics import DifferentComponentsError

    space = EndToEndMatrices(d, depth)
    x = ComponentGenerator(space, 1).random_point(3)
    y = ComponentGenerator(space, -1).random_point(3)
    assert np.all(np.isinf(gs.to_numpy(space.metric.dist(x, y))))
    with pytest.raises(DifferentComponentsError):
        space.metric.log(y, x)
    # negative control: the generators do produce both signs
    dets = np.linalg.det(gs.to_numpy(space.to_matrix(gs.concatenate([x, y]))))
    assert np.all(np.sign(dets) == [1, 1, 1, -1, -1, -1])


def _generators():
    e2e = EndToEndMatrices(2, 2)
    fiber = Fiber(np.eye(2) + 0.1, 2)
    quotient = BalancedManifold(2, 2).equip_with_quotient()
    widths = BalancedManifold(widths=WIDTHS_CASES[0])
    return [
        ComponentGenerator(e2e, -1),
        ComponentGenerator(EndToEndMatrices(2, 1), 1),
        SubmanifoldGenerator(fiber),
        BaseGenerator(quotient, 1),
        WidthsGenerator(widths),
    ]


def test_generators_draw_backend_arrays():
    """The data generators return float64 arrays of the active backend (torch tensors
    under pytorch), of the space's shape, on the space, so that geomstats' test cases
    can call the backend on them; a list of layers would fail here (negative control)."""
    for gen in _generators():
        point = gen.random_point(3)
        drawn = {
            "random_point": point,
            "one point": gen.random_point(1),
            "random_tangent_vec": gen.random_tangent_vec(point),
            "point_to_project": gen.point_to_project(3),
        }
        for what, x in drawn.items():
            assert gs.is_array(x), (type(gen).__name__, what, type(x))
            assert x.dtype == gs.float64, (type(gen).__name__, what, x.dtype)
        assert tuple(point.shape) == (3,) + tuple(gen.space.shape)
        assert bool(gs.all(gen.space.belongs(point)))
    assert not gs.is_array([gs.to_numpy(point[0])])  # the check rejects a list of layers


# --- general widths: Fiber and BalancedManifold with flat points (D,) ---------------------


def _widths_metric_data(name, one_point, tolerances):
    groups = _METRIC_GROUPS
    skips = _UP_SKIPS
    if one_point:
        groups = tuple(without(g, TWO_POINT) for g in groups)
        skips = tuple(k for k in skips if k.removesuffix("_vec") not in TWO_POINT)
        tolerances = {k: v for k, v in tolerances.items() if k not in TWO_POINT}
    return data_class(
        name,
        *groups,
        skips=skips,
        tolerances=tolerances,
    )


#: The widths of the generic tests: a wide and a tall end-to-end matrix, no square layer.
WIDTHS_CASES = [(3, 5, 4, 2), (2, 4, 3, 5)]
#: F_X of general widths: geodesic(a, b)(t) and geodesic(b, a)(1 - t) are two RK4
#: integrations (20 steps over [0, t] and over [0, 1 - t]) of one geodesic: they agree to
#: the RK4 error, measured 1.57e-6 for a far pair (|log| = 4.33, widths (3, 5, 4, 2)),
#: 1.0e-7 and 6.5e-9 with 40 and 80 steps (order 4): above the 1e-6 of the square classes.
_FIBER_WIDTHS_TOL = {**_UP_TOL, "geodesic_bvp_reverse": {"atol": 1e-5}}
_WIDTHS_TOL = {"Fiber": _FIBER_WIDTHS_TOL, "BalancedManifold": BalancedMetricTestData.tolerances}
#: F_X is complete (closed in the weights: the layers keep rank r): pairs of the random law.
#: The balanced manifold of general widths is not (its rank-deficient boundary is at finite
#: distance, and far pairs may have no geodesic): its metric tests draw points in a ball
#: where a minimizing geodesic joins every pair (CertifiedBallGenerator).
_METRIC_GENERATOR = {"Fiber": WidthsGenerator, "BalancedManifold": CertifiedBallGenerator}

for _widths in WIDTHS_CASES:
    _rng = np.random.default_rng(sum(_widths))
    _X = np.eye(_widths[-1], _widths[0]) + 0.3 * _rng.standard_normal((_widths[-1], _widths[0]))
    _sfx = "w" + "".join(str(w) for w in _widths)
    for _kind, _sp in (
        ("Fiber", Fiber(_X, len(_widths) - 1, widths=_widths)),
        ("BalancedManifold", BalancedManifold(widths=_widths)),
    ):
        _make_all(
            _sp,
            WidthsGenerator(_sp),
            [
                (
                    f"Test{_kind}_{_sfx}",
                    (ProjectionTestCaseMixins, ManifoldTestCase),
                    False,
                    SubmanifoldTestData,
                ),
            ],
        )
        _make_all(
            _sp,
            _METRIC_GENERATOR[_kind](_sp),
            [
                (
                    f"Test{_kind}Metric_{_sfx}",
                    _METRIC,
                    False,
                    _widths_metric_data(f"{_kind}WidthsOnePoint", True, _WIDTHS_TOL[_kind]),
                ),
                (
                    f"Test{_kind}Metric_{_sfx}_full",
                    _METRIC,
                    True,
                    _widths_metric_data(f"{_kind}WidthsFull", False, _WIDTHS_TOL[_kind]),
                ),
            ],
        )


def test_widths_generic_cases_can_fail():
    """Negative control: the generic manifold tests on a widths space catch a wrong
    projection (the identity, off the manifold) and a wrong to_tangent (twice P)."""
    space = BalancedManifold(widths=WIDTHS_CASES[0])
    case_class = type("Case", (ProjectionTestCaseMixins, ManifoldTestCase), {})
    case = case_class()
    case.space, case.data_generator = space, WidthsGenerator(space)
    case.test_projection_belongs(3, 1e-6)  # the real space passes
    case.test_to_tangent_is_tangent(3, 1e-6)

    class WrongProjection(BalancedManifold):
        def projection(self, point):
            return point

    class WrongTangent(BalancedManifold):
        def to_tangent(self, vector, base_point=None):
            return 2 * super().to_tangent(vector, base_point)

    for wrong, test in (
        (WrongProjection, case.test_projection_belongs),
        (WrongTangent, case.test_to_tangent_is_tangent),
    ):
        case.space = wrong(widths=WIDTHS_CASES[0])
        case.data_generator = WidthsGenerator(case.space)
        with pytest.raises(AssertionError):
            test(3, 1e-6)


def test_certified_ball_of_the_balanced_widths_metric_tests():
    """The ball of CertifiedBallGenerator: its radius is a third of a lower bound on the
    distance from its center to the boundary of M, a bound attained by the Frobenius
    distance to a rank-deficient balanced network (dropping lambda_r in every layer), and
    its points are on M within the radius. Negative control: that boundary point is not
    on M."""
    space = BalancedManifold(widths=WIDTHS_CASES[1])
    gen = CertifiedBallGenerator(space)
    layers = space.layout.split(gs.to_numpy(gen.center))
    N, r = len(layers), min(space.widths[0], space.widths[-1])
    drop = []
    for w in layers:
        U, s, Vt = np.linalg.svd(w, full_matrices=False)
        assert np.allclose(s[:r], s[0]) and np.allclose(s[r:], 0)  # balanced, unit values
        drop.append(w - s[r - 1] * np.outer(U[:, r - 1], Vt[r - 1]))
    gap = float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(layers, drop, strict=True))))
    assert gap == pytest.approx(np.sqrt(N) * s[r - 1], rel=1e-12)  # sqrt(N) lambda_r
    assert gen.radius == pytest.approx(0.95 * gap / 3, rel=1e-12)
    edge = gs.array(space.layout.join(drop))
    assert not space.belongs(edge)  # rank r - 1: off M
    assert bool(space.belongs(gen.center))
    gs.random.seed(0)
    points = gen.random_point(2)
    assert bool(gs.all(space.belongs(points)))
    dist = gs.to_numpy(space.metric.dist(gs.stack([gen.center] * 2), points))
    assert np.all(dist <= gen.radius * (1 + 1e-6)) and np.all(dist >= 0.5 * gen.radius * 0.99)
