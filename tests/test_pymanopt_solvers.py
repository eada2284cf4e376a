"""pymanopt solvers on (M_d, g^N) near and across the rank-deficient boundary of GL(d).

Cost E(X) = |X - T|^2 / 2 throughout. Three kinds of start:

- near T (|X0 - T| = sigma_min(T) / 2): the sublevel set {E <= E(X0)} is a ball
  without singular matrices (Eckart-Young), T is its only critical point, and
  every solver must converge to T;
- a random start in T's component: a descent method may still be drawn to a
  rank-deficient critical point (e.g. X0 ~ diag(1, -1), T ~ diag(-1, 1) and
  N >= 2, where X -> 0), so the run must converge, or end cleanly: no
  exception, no NaN, the component of the start kept, and never "min grad
  norm" away from T without a BoundaryWarning (one exception, see
  :func:`_check_no_false_convergence`);
- a start in the other component: T is unreachable (det never changes sign),
  so the run must end cleanly, by the same rules. Approaching the boundary is
  slow (the limit is a degenerate critical point), so with a few hundred
  iterations most runs stop at "max iterations" before the BoundaryWarning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pymanopt
import pytest
from slopes import quadratic_problem
from threadpoolctl import threadpool_limits

from dln_manifolds.pymanopt import BoundaryWarning, EndToEndMatrices

SPACES = [(2, 1), (2, 2), (3, 3), (3, np.inf)]
BETA_RULES = ["FletcherReeves", "PolakRibiere", "HestenesStiefel", "HagerZhang", "LiuStorey"]
OPTIMIZERS = ["SteepestDescent", *(f"CG-{b}" for b in BETA_RULES), "TrustRegions"]

pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array:DeprecationWarning")


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    with threadpool_limits(1):
        yield


def _optimizer(name: str, max_iterations: int):
    common = dict(verbosity=0, max_iterations=max_iterations)
    if name == "SteepestDescent":
        return pymanopt.optimizers.SteepestDescent(**common)
    if name == "TrustRegions":
        return pymanopt.optimizers.TrustRegions(**common)
    return pymanopt.optimizers.ConjugateGradient(beta_rule=name[3:], **common)


def _run(manifold, T, x0, optimizer):
    """Run and return (result, BoundaryWarnings); any exception fails the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = optimizer.run(quadratic_problem(manifold, T), initial_point=x0)
    return result, [w for w in caught if issubclass(w.category, BoundaryWarning)]


def _start(kind: str, T, manifold, rng):
    if kind == "near":
        D = rng.standard_normal(T.shape)
        return T + 0.5 * np.linalg.svd(T, compute_uv=False)[-1] * D / np.linalg.norm(D)
    x0 = manifold.random_point()
    if (np.linalg.det(x0) * np.linalg.det(T) > 0) != (kind == "same"):
        x0[:, 0] *= -1
    return x0


def _case(d, depth, seed, kind):
    rng = np.random.default_rng(1000 * seed + 7)
    M = EndToEndMatrices(d, depth, seed=rng)
    T = M.random_point()
    return M, T, _start(kind, T, M, rng)


def _assert_clean(result, x0):
    X = result.point
    assert np.all(np.isfinite(X))
    assert np.sign(np.linalg.det(X)) == np.sign(np.linalg.det(x0))  # never crossed det = 0
    assert np.isfinite(result.cost) and np.isfinite(result.gradient_norm)


def _converged(result, T) -> bool:
    return "min grad norm" in result.stopping_criterion and np.linalg.norm(result.point - T) < 1e-5


# ---------------------------------------------------------------------------
# Optimizers x spaces x starts
# ---------------------------------------------------------------------------


def _check_near(name, d, depth, seed):
    M, T, x0 = _case(d, depth, seed, "near")
    result, _ = _run(M, T, x0, _optimizer(name, 1000))
    _assert_clean(result, x0)
    # Before the fix: TrustRegions at depth 1 crashed in every run ("U_vec contains NaN").
    assert _converged(result, T), (result.stopping_criterion, np.linalg.norm(result.point - T))


def _check_no_false_convergence(result, T, boundary):
    """A "min grad norm" stop away from T comes with a BoundaryWarning, except at X ~ 0.

    X -> 0 with bounded condition numbers (all singular values shrinking
    together, the saddle W = 0 of the network) is not detectable by the
    manifold: g^N is homogeneous in X, so nothing distinguishes a small point
    from a small target; the caller sees it from |X| << |T|.
    """
    if "min grad norm" in result.stopping_criterion and not _converged(result, T):
        near_zero = np.linalg.norm(result.point) < 1e-2 * np.linalg.norm(T)
        assert boundary or near_zero, "a small gradient away from T needs a BoundaryWarning"


def _check_same(name, d, depth, seed, max_iterations=100):
    M, T, x0 = _case(d, depth, seed, "same")
    result, boundary = _run(M, T, x0, _optimizer(name, max_iterations))
    _assert_clean(result, x0)
    _check_no_false_convergence(result, T, boundary)


def _check_other(name, d, depth, seed, max_iterations=100):
    M, T, x0 = _case(d, depth, seed, "other")
    result, boundary = _run(M, T, x0, _optimizer(name, max_iterations))
    _assert_clean(result, x0)
    assert not _converged(result, T)
    _check_no_false_convergence(result, T, boundary)


# The fast table: a few seeds, and random starts only in d = 2 (where the old
# code crashed: SteepestDescent and TrustRegions at depth 1, ConjugateGradient
# across components at depth 2); the slow table runs every space and more seeds.


@pytest.mark.parametrize("space", SPACES, ids=str)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_converges_from_starts_near_the_minimizer(name, space):
    for seed in range(3):
        _check_near(name, *space, seed)


@pytest.mark.parametrize("space", SPACES[:2], ids=str)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_random_start_in_the_component_of_the_minimizer_ends_cleanly(name, space):
    for seed in (0, 1):
        _check_same(name, *space, seed, 60)


@pytest.mark.parametrize("space", SPACES[:2], ids=str)
@pytest.mark.parametrize("name", ["SteepestDescent", "CG-FletcherReeves", "TrustRegions"])
def test_start_in_the_other_component_ends_cleanly(name, space):
    _check_other(name, *space, 0, 60)


@pytest.mark.slow
@pytest.mark.parametrize("space", SPACES, ids=str)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_solver_table_more_seeds(name, space):
    for seed in range(3, 20):
        _check_near(name, *space, seed)
    for seed in range(20):
        _check_same(name, *space, seed, 1000)
    for seed in range(3):
        _check_other(name, *space, seed, 1000)


# ---------------------------------------------------------------------------
# The reproductions of the issue
# ---------------------------------------------------------------------------

# From SteepestDescent on the issue's example (d = N = 2): the old retraction
# returned exactly 0 here (det X exp(tr K) underflows).
_X_NEAR_ZERO = np.array(
    [
        [1.1142052032927259e-06, -4.038125617913289e-07],
        [7.131291228596957e-07, -2.585431397687788e-07],
    ]
)
_V_TOWARDS_T = np.array(
    [
        [-0.008194200308154598, 0.00293496253410132],
        [-0.005346830049810846, 0.0019171578773198152],
    ]
)


def test_retraction_of_the_issue_stays_in_gl_d():
    M = EndToEndMatrices(2, 2)
    limit = 1e-2 / (2 * np.finfo(np.float64).eps)
    for t in (1.0, 2.0**4, 2.0**8):
        Y = M.retraction(_X_NEAR_ZERO, t * _V_TOWARDS_T)
        s = np.linalg.svd(Y, compute_uv=False)
        assert np.all(np.isfinite(Y)) and s[-1] > 0 and s[0] / s[-1] <= limit
        assert np.sign(np.linalg.det(Y)) == np.sign(np.linalg.det(_X_NEAR_ZERO))
        M.norm(Y, _V_TOWARDS_T)  # a point the solver can use (no ValueError)


def test_steepest_descent_of_the_issue_ends_cleanly():
    """X0 and T in the same component, but descent is drawn to X = 0 (both
    diagonal-like entries must change sign); it used to crash in `norm`."""
    X0 = np.array([[0.849, -0.0862], [0.4452, -0.7006]])
    T = np.array([[-0.6792, -0.5297], [0.0993, 1.1682]])
    assert np.linalg.det(X0) * np.linalg.det(T) > 0
    M = EndToEndMatrices(2, 2)
    result, boundary = _run(
        M, T, X0, pymanopt.optimizers.SteepestDescent(verbosity=0, max_iterations=60)
    )
    _assert_clean(result, X0)
    assert not _converged(result, T)  # drawn to the saddle X = 0 of the closure
    _check_no_false_convergence(result, T, boundary)


def test_trust_regions_across_components_of_the_issue():
    """TrustRegions from I towards diag(1, 1, -1) crashed with "U_vec contains NaN"."""
    M = EndToEndMatrices(3, 3)
    T = np.diag([1.0, 1.0, -1.0])
    result, boundary = _run(M, T, np.eye(3), pymanopt.optimizers.TrustRegions(verbosity=0))
    _assert_clean(result, np.eye(3))
    assert boundary
    # It stops at the rank-deficient critical point diag(1, 1, 0) of the closure.
    np.testing.assert_allclose(result.point, np.diag([1.0, 1.0, 0.0]), atol=1e-4)


def test_conjugate_gradient_across_components_of_the_issue():
    """CG (default line search) on EndToEndMatrices(3, 4) from 0.1 I towards a
    target with det < 0 raised "X is rank-deficient" from `norm`."""
    T = 3 * np.random.default_rng(4).standard_normal((3, 3))
    assert np.linalg.det(T) < 0
    M = EndToEndMatrices(3, 4)
    x0 = 0.1 * np.eye(3)
    result, boundary = _run(
        M, T, x0, pymanopt.optimizers.ConjugateGradient(verbosity=0, max_iterations=200)
    )
    _assert_clean(result, x0)
    assert boundary


def test_depth_one_trust_regions_matches_euclidean():
    """At depth 1 the model is solved exactly and truncated CG divides 0/0; pymanopt's
    Euclidean manifold survives that (the NaN step is rejected), and so must this one."""
    rng = np.random.default_rng(5)
    T = np.array([[2.0, 0.5], [-0.3, 1.5]])
    x0 = T + 0.3 * rng.standard_normal((2, 2))
    result, _ = _run(EndToEndMatrices(2, 1), T, x0, pymanopt.optimizers.TrustRegions(verbosity=0))
    reference, _ = _run(
        pymanopt.manifolds.Euclidean(2, 2), T, x0, pymanopt.optimizers.TrustRegions(verbosity=0)
    )
    assert _converged(result, T) and _converged(reference, T)


# ---------------------------------------------------------------------------
# Argument checks with pymanopt's names
# ---------------------------------------------------------------------------


def test_nan_tangent_vectors_propagate_like_pymanopt_manifolds():
    M = EndToEndMatrices(2, 3)
    X, Z, nan = np.eye(2), np.ones((2, 2)), np.full((2, 2), np.nan)
    assert np.isnan(M.inner_product(X, Z, nan)) and np.isnan(M.norm(X, nan))
    assert np.all(np.isnan(M.retraction(X, nan)))
    with pytest.raises(ValueError, match="point"):
        M.retraction(nan, Z)
    with pytest.raises(ValueError, match="euclidean_gradient"):
        M.euclidean_to_riemannian_gradient(X, nan)


@pytest.mark.parametrize(
    ("method", "position", "name"),
    [
        ("euclidean_to_riemannian_gradient", 0, "point"),
        ("euclidean_to_riemannian_gradient", 1, "euclidean_gradient"),
        ("retraction", 0, "point"),
        ("retraction", 1, "tangent_vector"),
        ("inner_product", 1, "tangent_vector_a"),
        ("inner_product", 2, "tangent_vector_b"),
        ("norm", 1, "tangent_vector"),
        ("euclidean_to_riemannian_hessian", 3, "tangent_vector"),
    ],
)
def test_complex_input_is_refused(method, position, name):
    M = EndToEndMatrices(3, 3)
    n_args = {"inner_product": 3, "euclidean_to_riemannian_hessian": 4}.get(method, 2)
    args = [np.eye(3)] + [0.1 * np.ones((3, 3))] * (n_args - 1)
    args[position] = args[position] + 0j
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        getattr(M, method)(*args)


def test_empty_tangent_vector_is_refused():
    M = EndToEndMatrices(3, 3)
    with pytest.raises(ValueError, match=r"tangent_vector must have shape \(3, 3\)"):
        M.retraction(np.eye(3), np.zeros((0, 0)))


@pytest.mark.parametrize("depth", [2, np.inf])
def test_errors_name_pymanopt_arguments(depth):
    M = EndToEndMatrices(2, depth)
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    Z = np.eye(2)
    with pytest.raises(ValueError, match=r"\bpoint\b.*rank-deficient"):
        M.norm(singular, Z)
    with pytest.raises(ValueError, match=r"\bpoint\b"):
        M.euclidean_to_riemannian_hessian(singular, Z, Z, Z)
    with pytest.raises(ValueError, match=r"\bpoint\b"):
        M.retraction(singular, Z)
    with pytest.raises(ValueError, match=r"\bpoint\b"):
        M.euclidean_to_riemannian_gradient(np.full((2, 2), np.inf), Z)


def test_depth_one_is_euclidean_at_any_rank():
    """g^1 needs no inverse: norm and Hessian work at a singular point (like Euclidean)."""
    M = EndToEndMatrices(2, 1)
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    Z = np.array([[3.0, 0.0], [0.0, 4.0]])
    with pytest.warns(BoundaryWarning):
        assert M.norm(singular, Z) == 5.0
    np.testing.assert_array_equal(M.euclidean_to_riemannian_hessian(singular, Z, 2 * Z, Z), 2 * Z)
