"""(M_{m,n}, g^N): full-rank non-square matrices with the depth metric (pymanopt adapter)."""

from __future__ import annotations

import numpy as np
import pymanopt
import pytest
from slopes import quadratic_problem, taylor_slopes

from dln_manifolds.pymanopt import EndToEndMatrices

SHAPES = [(3, 2), (2, 4)]

pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array:DeprecationWarning")


def _quartic_problem(manifold, T):
    """E(X) = sum(X^4)/4 + |X - T|^2/2 (non-quadratic, so the Hessian varies)."""

    @pymanopt.function.numpy(manifold)
    def cost(X):
        return np.sum(X**4) / 4 + 0.5 * np.sum((X - T) ** 2)

    @pymanopt.function.numpy(manifold)
    def egrad(X):
        return X**3 + X - T

    @pymanopt.function.numpy(manifold)
    def ehess(X, Z):
        return 3 * X**2 * Z + Z

    return pymanopt.Problem(manifold, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)


def _psd_power(P: np.ndarray, a: float) -> np.ndarray:
    """P^a for a symmetric PSD P, with P^0 = I (zero eigenvalues stay 0 for a > 0)."""
    if a == 0:
        return np.eye(P.shape[0])
    w, Q = np.linalg.eigh(P)
    w = np.where(w > 1e-12 * w.max(), w, 0.0)  # exact zeros: rounding^(1/N) is not small
    return (Q * w**a) @ Q.T


def _dense_operator(X: np.ndarray, N: int) -> np.ndarray:
    r"""Row-major matrix of A_{N,X} = sum_k (XX^T)^{(N-k)/N} (x) (X^TX)^{(k-1)/N} ([G] eq. 4.14)."""
    m, n = X.shape
    A = np.zeros((m * n, m * n))
    for k in range(1, N + 1):
        A += np.kron(_psd_power(X @ X.T, (N - k) / N), _psd_power(X.T @ X, (k - 1) / N))
    return A


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("depth", [2, 3])
def test_gradient_and_hessian_slopes(shape, depth):
    M = EndToEndMatrices(shape, depth, seed=31)
    problem = _quartic_problem(M, np.random.default_rng(1).standard_normal(shape))
    x = M.random_point()
    g_slope, h_slope = taylor_slopes(problem, x, M.random_tangent_vector(x))
    assert 1.9 <= g_slope <= 2.1
    assert 2.85 <= h_slope <= 3.15


def test_hessian_slope_needs_second_order_retraction(monkeypatch):
    """Negative control: with the first-order retraction X + Z the slope drops to 2."""
    M = EndToEndMatrices((3, 2), 3, seed=32)
    problem = _quartic_problem(M, np.random.default_rng(2).standard_normal((3, 2)))
    x = M.random_point()
    v = M.random_tangent_vector(x)
    # pymanopt's check_directional_derivative steps with exp where a manifold has one
    monkeypatch.setattr(M, "retraction", lambda point, z: point + z)
    monkeypatch.setattr(M, "exp", lambda point, z: point + z)
    _, h_slope = taylor_slopes(problem, x, v)
    assert h_slope < 2.5


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gradient_is_dense_kronecker_operator(shape, depth):
    rng = np.random.default_rng(33)
    M = EndToEndMatrices(shape, depth, seed=33)
    X = M.random_point()
    G = rng.standard_normal(shape)
    A = _dense_operator(X, depth)
    got = M.euclidean_to_riemannian_gradient(X, G)
    np.testing.assert_allclose(got.ravel(), A @ G.ravel(), atol=1e-12 * np.linalg.norm(A))
    # the metric is the inverse: g(Z1, Z2) = vec(Z1)^T A^{-1} vec(Z2)
    Z1, Z2 = rng.standard_normal((2,) + shape)
    want = Z1.ravel() @ np.linalg.solve(A, Z2.ravel())
    assert M.inner_product(X, Z1, Z2) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("depth", [2, 3])
def test_trust_regions_converges_to_target(shape, depth):
    M = EndToEndMatrices(shape, depth, seed=34)
    T = M.random_point()
    x0 = M.random_point()
    result = pymanopt.optimizers.TrustRegions(verbosity=0, max_iterations=50).run(
        quadratic_problem(M, T), initial_point=x0
    )
    assert np.linalg.norm(x0 - T) > 0.5
    np.testing.assert_allclose(result.point, T, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_retraction_keeps_full_rank(shape):
    """Long steps towards and past 0 stay of full rank min(m, n); short ones are second order."""
    M = EndToEndMatrices(shape, 2, seed=35)
    X = M.random_point()
    r = min(shape)
    for t in [-1.0, -3.0, -1e3, -1e12]:
        Y = M.retraction(X, t * X)
        s = np.linalg.svd(Y, compute_uv=False)
        assert Y.shape == shape and np.all(np.isfinite(Y))
        assert s.size == r and s[-1] > 0 and s[0] / s[-1] <= 1e-2 / (max(shape) * 2.2e-16)
    # agreement with X + Z - Gamma(Z, Z)/2 (the exponential map to second order)
    from dln_manifolds import depth_christoffel

    Z = M.random_tangent_vector(X)
    ts = np.array([0.2, 0.1, 0.05])
    errs = [
        np.linalg.norm(
            M.retraction(X, t * Z) - X - t * Z + 0.5 * t**2 * depth_christoffel(X, 2, Z, Z)
        )
        for t in ts
    ]
    assert np.polyfit(np.log(ts), np.log(errs), 1)[0] > 3.5  # O(t^6): only the damping


@pytest.mark.parametrize("shape", SHAPES)
def test_interface(shape):
    m, n = shape
    M = EndToEndMatrices(shape, 3, seed=36)
    assert M.dim == m * n and M.shape == shape and M.d == shape
    X = M.random_point()
    s = np.linalg.svd(X, compute_uv=False)
    assert X.shape == shape and s.size == min(m, n) and 0.5 <= s.min() and s.max() <= 2.0
    Z = M.random_tangent_vector(X)
    assert Z.shape == shape and M.norm(X, Z) == pytest.approx(1.0, rel=1e-12)
    assert M.zero_vector(X).shape == shape
    with pytest.raises(ValueError, match="point"):
        M.norm(X.T, Z)
    # geodesics (tests/test_geodesics_rectangular.py has the accuracy checks)
    Y = M.exp(X, 0.3 * Z)
    assert Y.shape == shape
    np.testing.assert_allclose(M.log(X, Y), 0.3 * Z, atol=1e-8)
    assert M.dist(X, Y) == pytest.approx(0.3, rel=1e-8)
    assert M.pair_mean(X, Y).shape == shape
    with pytest.raises(ValueError, match="depth must be finite"):
        EndToEndMatrices(shape, np.inf)
    with pytest.raises(ValueError, match="pair"):
        EndToEndMatrices((2, 3, 4), 2)
    assert EndToEndMatrices((3, 3), 2).d == 3  # a square shape is the square space


# --- geomstats adapter -------------------------------------------------------------------


def _geomstats_space(shape, depth):
    gs_e2e = pytest.importorskip("dln_manifolds.geomstats")
    return gs_e2e.EndToEndMatrices(shape, depth)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_geomstats_metric_is_inverse_kronecker_operator(shape, depth):
    rng = np.random.default_rng(41)
    space = _geomstats_space(shape, depth)
    X = EndToEndMatrices(shape, depth, seed=41).random_point()
    x = X.ravel()
    A = _dense_operator(X, depth)
    G = space.metric.metric_matrix(x)
    assert G.shape == (space.dim, space.dim)
    np.testing.assert_allclose(G @ A, np.eye(space.dim), atol=1e-10)
    np.testing.assert_allclose(space.metric.cometric_matrix(x), A, atol=1e-10 * np.abs(A).max())
    Z1, Z2 = rng.standard_normal((2, space.dim))
    assert space.metric.inner_product(Z1, Z2, x) == pytest.approx(Z1 @ G @ Z2, rel=1e-10)
    # batched base points
    xs = np.stack([x, 2 * x])
    ip = space.metric.inner_product(Z1, Z2, xs)
    assert ip.shape == (2,)
    assert ip[1] == pytest.approx(Z1 @ space.metric.metric_matrix(2 * x) @ Z2, rel=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("depth", [2, 3])
def test_geomstats_christoffels_match_finite_differences_of_metric(shape, depth):
    """Koszul formula with central differences of metric_matrix (h = 1e-4)."""
    space = _geomstats_space(shape, depth)
    n = space.dim
    x = EndToEndMatrices(shape, depth, seed=42).random_point().ravel()
    h = 1e-4
    dg = np.stack(
        [
            (space.metric.metric_matrix(x + h * e) - space.metric.metric_matrix(x - h * e))
            / (2 * h)
            for e in np.eye(n)
        ],
        axis=-1,
    )  # dg[i, j, l] = d_l g_ij
    ginv = np.linalg.inv(space.metric.metric_matrix(x))
    koszul = 0.5 * (
        np.einsum("kl,jli->kij", ginv, dg)
        + np.einsum("kl,ilj->kij", ginv, dg)
        - np.einsum("kl,ijl->kij", ginv, dg)
    )
    G = space.metric.christoffels(x)
    assert G.shape == (n, n, n)
    np.testing.assert_allclose(G, koszul, atol=1e-6 * np.abs(G).max())
    # batch of two base points, and christoffel_term against the tensor
    G2 = space.metric.christoffels(np.stack([x, 1.5 * x]))
    np.testing.assert_allclose(G2[0], G, atol=1e-13 * np.abs(G).max())
    u, v = np.random.default_rng(3).standard_normal((2, n))
    np.testing.assert_allclose(
        space.metric.christoffel_term(u, v, x),
        np.einsum("kij,i,j->k", G, u, v),
        atol=1e-12 * np.abs(G).max() * n,
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_geomstats_space_interface(shape):
    m, n = shape
    space = _geomstats_space(shape, 2)
    assert space.dim == m * n and space.matrix_shape == shape and space.shape == (m * n,)
    xs = space.random_point(4)
    assert xs.shape == (4, m * n)
    s = np.linalg.svd(space.to_matrix(xs), compute_uv=False)
    assert s.shape == (4, min(m, n)) and np.all(s >= 0.5 - 1e-12) and np.all(s <= 2 + 1e-12)
    assert np.all(space.belongs(xs))
    low_rank = np.outer(np.arange(1.0, m + 1), np.ones(n)).ravel()
    assert not space.belongs(low_rank)
    assert np.all(space.belongs(space.projection(low_rank)))
    np.testing.assert_array_equal(space.to_vector(space.to_matrix(xs)), xs)
    # geodesics (tests/test_geodesics_rectangular.py has the accuracy checks)
    v = 0.1 * xs[1]
    y = space.metric.exp(v, xs[0])
    assert y.shape == (m * n,) and space.belongs(y)
    np.testing.assert_allclose(space.metric.log(y, xs[0]), v, atol=1e-8)
    with pytest.raises(ValueError, match="depth must be finite"):
        _geomstats_space(shape, np.inf)
