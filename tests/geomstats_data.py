"""Test data and random-data generators that drive geomstats' generic test cases.

geomstats 2.8 ships its generic test cases (``geomstats.test_cases``: a
``test_<name>`` method per property, with ``n_points``/``n_reps``/``atol``
arguments) but not the data classes of its own test suite that pair each test
with its parameters (a ``<name>_test_data`` method per test). This module
provides them, in geomstats' conventions (``geomstats.test.data.TestData``:
``generate_random_data``, ``generate_vec_data``, ...), for the test cases used by
tests/test_geomstats_generic.py, plus random-data generators for the spaces of
the deep linear network:

- :class:`ComponentGenerator`: points of one component of GL(d) (sign of the
  determinant), so that the geodesic tests (log, dist, BVP) pair points that a
  geodesic joins; tangent vectors small enough that exp stays inside GL(d).
- :class:`SubmanifoldGenerator`: points of the fiber or the balanced manifold
  and tangent vectors scaled relative to the point.

The generators draw arrays of geomstats' active backend (``gs.*``: torch tensors
under pytorch), so that the test cases run under every backend.

``trials = 1``: no retries of failed random tests (geomstats retries three
times by default, which hides flaky failures).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

# geomstats.test.parametrizers imports the notebook runners (nbformat, nbconvert) at
# module level for its notebook tests only; they are not dependencies of this project.
for _name in ("nbformat", "nbconvert", "nbconvert.preprocessors"):
    if _name not in sys.modules:
        try:
            __import__(_name)
        except ImportError:
            _stub = types.ModuleType(_name)
            _stub.ExecutePreprocessor = None
            sys.modules[_name] = _stub

import geomstats.backend as gs  # noqa: E402

__all__ = ["DataBasedParametrizer", "TestData", "data_class"]
from geomstats.test.data import TestData  # noqa: E402
from geomstats.test.parametrizers import DataBasedParametrizer  # noqa: E402
from geomstats.test.random import RandomDataGenerator  # noqa: E402

from dln_manifolds import random_balanced_point  # noqa: E402

# --- data classes -----------------------------------------------------------------------

# test name -> generator of TestData (the parameters the generic test takes)
_KINDS = {
    "random": "generate_random_data",
    "vec": "generate_vec_data",
    "shape": "generate_shape_data",
    "random_time": "generate_random_data_with_time",
    "vec_time": "generate_vec_data_with_time",
}

MANIFOLD = {
    "vec": ["belongs", "is_tangent", "to_tangent", "regularize"],
    "random": [
        "not_belongs",
        "random_point_belongs",
        "to_tangent_is_tangent",
        "regularize_belongs",
        "random_tangent_vec_is_tangent",
    ],
    "shape": ["random_point_shape", "random_tangent_vec_shape"],
}
PROJECTION = {"vec": ["projection"], "random": ["projection_belongs"]}
OPEN_SET = {"random": ["to_tangent_is_tangent_in_embedding_space"]}
GEODESIC_BVP = {
    "vec_time": ["geodesic_bvp"],
    "random": ["geodesic_boundary_points"],
    "random_time": ["geodesic_bvp_reverse", "geodesic_bvp_belongs"],
}
CONNECTION = {
    "vec": [
        "christoffels",
        "geodesic_equation",
        "exp",
        "log",
        "riemann_tensor",
        "curvature",
        "ricci_tensor",
        "directional_curvature",
        "curvature_derivative",
        "directional_curvature_derivative",
        "parallel_transport_ivp",
        "parallel_transport_bvp",
    ],
    "random": [
        "exp_belongs",
        "log_is_tangent",
        "exp_after_log",
        "log_after_exp",
        "exp_geodesic_ivp",
        "parallel_transport_bvp_transported_is_tangent",
        "parallel_transport_ivp_transported_is_tangent",
    ],
    "vec_time": ["geodesic_ivp"],
    "random_time": ["geodesic_ivp_belongs"],
}
DIST = {
    "vec": ["dist"],
    "random": [
        "dist_is_symmetric",
        "dist_is_positive",
        "dist_point_to_itself_is_zero",
        "dist_triangle_inequality",
    ],
}
RIEMANNIAN = {
    "vec": [
        "metric_matrix",
        "cometric_matrix",
        "inner_product_derivative_matrix",
        "inner_product",
        "inner_coproduct",
        "squared_norm",
        "norm",
        "normalize",
        "squared_dist",
        "covariant_riemann_tensor",
        "sectional_curvature",
        "scalar_curvature",
        "injectivity_radius",
    ],
    "random": [
        "metric_matrix_is_spd",
        "inner_product_is_symmetric",
        "norm_is_positive",
        "normalize_is_unitary",
        "squared_dist_is_symmetric",
        "squared_dist_is_positive",
        "dist_is_log_norm",
        "covariant_riemann_tensor_is_skew_symmetric_1",
        "covariant_riemann_tensor_is_skew_symmetric_2",
        "covariant_riemann_tensor_bianchi_identity",
        "covariant_riemann_tensor_is_interchange_symmetric",
        "parallel_transport_ivp_norm",
        "parallel_transport_bvp_norm",
    ],
}
FIBER_BUNDLE = {
    "vec": [
        "riemannian_submersion",
        "lift",
        "tangent_riemannian_submersion",
        "align",
        "horizontal_projection",
        "vertical_projection",
        "is_horizontal",
        "is_vertical",
        "horizontal_lift",
        "integrability_tensor",
        "integrability_tensor_derivative",
    ],
    "random": [
        "riemannian_submersion_belongs_to_base",
        "lift_belongs_to_total_space",
        "riemannian_submersion_after_lift",
        "tangent_riemannian_submersion_is_tangent",
        "log_after_align_is_horizontal",
        "horizontal_projection_is_horizontal",
        "vertical_projection_is_vertical",
        "tangent_riemannian_submersion_after_vertical_projection",
        "horizontal_lift_is_horizontal",
        "tangent_riemannian_submersion_after_horizontal_lift",
    ],
}


#: Tests that solve the boundary value problem (log, dist, geodesic_bvp, transport to an
#: end point) between two random points: seconds each (Newton shooting), so the default
#: run keeps them to one (d, N).
TWO_POINT = {
    "log",
    "log_is_tangent",
    "exp_after_log",
    "geodesic_bvp",
    "geodesic_boundary_points",
    "geodesic_bvp_reverse",
    "geodesic_bvp_belongs",
    "parallel_transport_bvp",
    "parallel_transport_bvp_transported_is_tangent",
    "parallel_transport_bvp_norm",
    "dist",
    "dist_is_symmetric",
    "dist_is_positive",
    "dist_point_to_itself_is_zero",
    "dist_triangle_inequality",
    "squared_dist",
    "squared_dist_is_symmetric",
    "squared_dist_is_positive",
    "dist_is_log_norm",
}


def without(group: dict, names) -> dict:
    """``group`` without the tests ``names``."""
    return {kind: [n for n in tests if n not in names] for kind, tests in group.items()}


def _data_method(kind: str, reason: str | None = None):
    generate = _KINDS[kind]
    marks = (pytest.mark.skip(reason=reason),) if reason else ()

    def method(self):
        return getattr(self, generate)(marks=marks)

    return method


def data_class(
    name: str, *groups: dict, skips=(), tolerances=None, xfails=(), skip_reasons=None
) -> type:
    """A TestData subclass with a ``<test>_test_data`` method for every test of ``groups``.

    A test that a ``<test>_vec`` entry names is vectorization-tested by geomstats
    (explicit ``test_<test>_vec`` where the test case has one, generated otherwise).
    ``skips`` are geomstats' skips (a mark without a reason); ``skip_reasons`` maps
    further test names (``<test>`` or ``<test>_vec``) to the reason pytest reports.
    """
    skip_reasons = dict(skip_reasons or {})
    attrs: dict = {
        "trials": 1,
        "skips": tuple(skips),
        "xfails": tuple(xfails),
        "tolerances": dict(tolerances or {}),
        # fixed sizes instead of geomstats' random.sample: the same tests every run
        "N_VEC_REPS": [2],
        "N_SHAPE_POINTS": [1, 3],
        "N_RANDOM_POINTS": [1, 3],
        "N_TIME_POINTS": [1, 3],
    }
    for group in groups:
        for kind, names in group.items():
            for test in names:
                key = f"{test}_vec" if kind in ("vec", "vec_time") else test
                attrs[f"{key}_test_data"] = _data_method(kind, skip_reasons.pop(key, None))
    if skip_reasons:
        raise ValueError(f"skip_reasons names tests not in the groups: {sorted(skip_reasons)}")
    return type(name, (TestData,), attrs)


# --- random data ------------------------------------------------------------------------
# Backend-agnostic: points and vectors are arrays of geomstats' active backend (gs.*);
# numpy only for the signs of determinants (plain floats, through gs.to_numpy).


def _frobenius(x, axes):
    """Frobenius norm of ``x`` over ``axes``, kept as axes of length 1 (broadcasts)."""
    return gs.sqrt(gs.sum(x**2, axis=axes, keepdims=True))


class ComponentGenerator(RandomDataGenerator):
    """Random points of (M_d, g^N) in one component of GL(d): ``sign(det X) = sign``.

    Points: ``space.random_point`` (Haar frames, singular values in [1/2, 2]) with
    the first row negated where the determinant has the other sign; at depth 1 a
    ball of GL(d) (:meth:`_ball_point`). Tangent
    vectors: Gaussian, Frobenius norm ``scale`` times that of the point, so that
    the geodesic of the generic tests stays inside GL(d) (|V| < sigma_min keeps
    X + tV invertible for N = 1; a margin for the curved metrics).
    """

    def __init__(self, space, sign: int, scale: float = 0.15):
        super().__init__(space)
        self.sign = sign
        self.scale = scale

    def random_point(self, n_points=1):
        if self.space.depth == 1:
            return self._ball_point(n_points)
        x = self.space.to_matrix(self.space.random_point(n_points))
        flip = gs.sign(gs.linalg.det(x)) != self.sign
        first_row = gs.array([-1.0] + [1.0] * (x.shape[-1] - 1))[:, None]
        return self.space.to_vector(gs.where(flip[..., None, None], x * first_row, x))

    def _ball_point(self, n_points):
        """Depth 1 (flat, incomplete): points of the ball |X - C| < 0.45, C = diag(sign, 1, ...).

        sigma_min(C) = 1, so the ball is a convex set of GL(d): every pair is joined by
        its segment, the geodesic of g^1 (elsewhere the log does not exist).
        """
        d = self.space.matrix_shape[0]
        C = gs.array(np.diag([float(self.sign)] + [1.0] * (d - 1)))
        shape = (n_points, d, d) if n_points > 1 else (d, d)
        D = gs.random.normal(size=shape)
        radius = 0.45 * gs.random.uniform(size=shape[:-2] + (1, 1))
        return self.space.to_vector(C + radius * D / _frobenius(D, (-2, -1)))

    def point_to_project(self, n_points=1):
        """Any matrix (geomstats: a point of the embedding space), singular ones included."""
        x = self.space.to_matrix(self.space.embedding_space.random_point(n_points))
        first_row_zero = gs.array([0.0] + [1.0] * (x.shape[-2] - 1))[:, None]
        return self.space.to_vector(x * first_row_zero)  # rank-deficient: projection must act

    def random_tangent_vec(self, base_point):
        base_point = gs.array(base_point)
        v = gs.random.normal(size=base_point.shape)
        return self.scale * v * (_frobenius(base_point, (-1,)) / _frobenius(v, (-1,)))


class SubmanifoldGenerator(RandomDataGenerator):
    """Random points of one component of the fiber or the balanced manifold.

    Square layers (points (N, d, d)): the components are the sign patterns of the layer
    determinants, so points are drawn by ``space.random_point`` and kept where every
    layer has the sign of the reference (the center of the fiber; all positive on the
    balanced manifold). General widths (flat points (D,), :class:`WidthsGenerator`):
    ``space.random_point`` as it is. Tangent vectors: projected Gaussians of relative
    size ``scale``.
    """

    def __init__(self, space, scale: float = 0.1):
        super().__init__(space)
        self.scale = scale
        self.axes = tuple(range(-len(space.shape), 0))
        self.signs = self._reference_signs()

    def _reference_signs(self):
        center = getattr(self.space, "center", None)
        if center is None:
            return np.ones(self.space.depth)
        return np.sign(np.linalg.det(gs.to_numpy(gs.array(center))))

    def _kept(self, pts):
        signs = np.sign(np.linalg.det(gs.to_numpy(pts)))  # plain floats: numpy
        return [p for p, s in zip(pts, signs, strict=True) if np.all(s == self.signs)]

    def random_point(self, n_points=1):
        kept = []
        for _ in range(1000):
            pts = gs.reshape(self.space.random_point(4 * n_points), (-1,) + self.space.shape)
            kept += self._kept(pts)
            if len(kept) >= n_points:
                break
        pts = gs.stack(kept[:n_points])
        return pts[0] if n_points == 1 else pts

    def _relative(self, v, base_point, scale):
        """v rescaled to ``scale`` times the Frobenius norm of the base point."""
        return scale * v * (_frobenius(base_point, self.axes) / _frobenius(v, self.axes))

    def random_tangent_vec(self, base_point):
        base_point = gs.array(base_point)
        v = self.space.to_tangent(gs.random.normal(size=base_point.shape), base_point)
        return self._relative(v, base_point, self.scale)

    def point_to_project(self, n_points=1):
        """A point moved off the submanifold by a Gaussian of relative size 0.05."""
        point = self.random_point(n_points)
        return point + self._relative(gs.random.normal(size=point.shape), point, 0.05)


class WidthsGenerator(SubmanifoldGenerator):
    """Random points of the fiber or the balanced manifold of general widths (flat (D,)).

    The layers are rectangular, so there are no determinants to fix a component: points
    are ``space.random_point`` (the balanced manifolds of the test widths, with a hidden
    width above r = min(d_0, d_N), are connected: the frames of the hidden layers are
    Stiefel matrices, and a reflection of the r x r frame passes through them).
    """

    def _reference_signs(self):
        return None

    def _kept(self, pts):
        return list(pts)


class CertifiedBallGenerator(WidthsGenerator):
    r"""Points of the balanced manifold M of general widths in a ball where geodesics exist.

    M is incomplete. Its boundary in the weights are the balanced networks of rank below
    r = min(d_0, d_N). On M every layer has the same r nonzero singular values
    (:math:`\lambda_1 \ge \dots \ge \lambda_r`), so every layer of a boundary point has
    rank below r, and by Eckart-Young the Frobenius distance from W to the boundary is
    at least :math:`\sqrt{N}\,\lambda_r(W)`. That bound is attained by dropping
    :math:`\lambda_r` in every layer. The induced distance of M is at least the
    Frobenius distance, so a closed ball of M about c of radius below
    :math:`\sqrt{N}\,\lambda_r(c)` is compact. By the local Hopf-Rinow theorem, a
    minimizing geodesic then joins any two points of the ball
    :math:`B(c, \sqrt{N}\,\lambda_r(c)/3)`. For p, q in that ball,
    :math:`\bar B(p, d(p, q)) \subset \bar B(c, \sqrt{N}\,\lambda_r(c))`.

    Far random pairs (independent Haar frames) may have no geodesic: docs/mathematics.rst,
    general widths (a cone across the rank-(r-1) networks). geomstats' generic tests of
    log, dist and geodesic BVPs assume that every pair has one, as on a complete manifold.
    So the metric tests draw points as

    .. math:: \exp_c(v), \quad |v| \in [R/2, R), \quad R = 0.95\,\sqrt{N}\,\lambda_r(c)/3,

    with a Gaussian direction, about a fixed center c: Haar frames (seeded by the widths)
    and unit layer singular values, where the certified radius relative to the size of
    the point, :math:`0.95/(3\sqrt{r})`, is largest. This is the same device as the depth-1 ball of
    :class:`ComponentGenerator`. The manifold tests (membership, projection) keep
    :class:`WidthsGenerator` and the random law. Far pairs are tested in
    tests/test_widths_geodesics.py.
    """

    margin = 0.95

    def __init__(self, space, scale: float = 0.1):
        super().__init__(space, scale)
        widths = space.widths
        seed = int("".join(str(w) for w in widths))
        layers = random_balanced_point(widths=widths, seed=seed, spread=1.0)
        lam = float(np.linalg.svd(layers[0], compute_uv=False)[min(widths[0], widths[-1]) - 1])
        self.center = gs.array(space.layout.join(layers))
        self.radius = self.margin * np.sqrt(len(widths) - 1) * lam / 3

    def random_point(self, n_points=1):
        base = gs.stack([self.center] * n_points)
        v = self.space.to_tangent(gs.random.normal(size=base.shape), base)
        length = self.radius * (0.5 + 0.5 * gs.random.uniform(size=(n_points, 1)))
        pts = self.space.metric.exp(length * v / _frobenius(v, (-1,)), base)
        return pts[0] if n_points == 1 else pts


class BaseGenerator(ComponentGenerator):
    """Points of the base of the bundle: both components (the submersion is onto GL(d))."""

    def random_point(self, n_points=1):
        return self.space.random_point(n_points)
