"""Brownian motion on (M_d, g^N): drift vs the Laplace-Beltrami operator, generator check."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dln_manifolds.depth_metric import depth_operator
from dln_manifolds.langevin import brownian_drift, brownian_increment, brownian_motion


def _cometric(X, depth):
    """Matrix of the inverse metric A_{N,X} in the coordinates x = vec(X) (row-major)."""
    d = X.shape[0]
    basis = np.eye(d * d).reshape(d * d, d, d)
    return depth_operator(X, depth, basis).reshape(d * d, d * d).T


def _lb_drift_fd(X, depth, h=1e-5):
    r"""LB drift |g|^{-1/2} d_j(|g|^{1/2} g^{jk}) by central differences.

    log|g|^{1/2} = -(1/2) log det(g^{-1}).
    """
    d = X.shape[0]
    n = d * d
    ginv = _cometric(X, depth)
    div = np.zeros(n)
    dlog = np.zeros(n)
    for j in range(n):
        E = np.zeros(n)
        E[j] = h
        Gp = _cometric(X + E.reshape(d, d), depth)
        Gm = _cometric(X - E.reshape(d, d), depth)
        div += (Gp[j] - Gm[j]) / (2 * h)  # d_j g^{jk}, k free
        dlog[j] = -0.5 * (np.linalg.slogdet(Gp)[1] - np.linalg.slogdet(Gm)[1]) / (2 * h)
    return (div + ginv @ dlog).reshape(d, d)


@given(
    d=st.integers(1, 3),
    depth=st.sampled_from([1, 2, 3, 5, np.inf]),
    seed=st.integers(0, 2**32 - 1),
    beta=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_drift_is_laplace_beltrami_drift(d, depth, seed, beta):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d, d)) + 0.5 * np.eye(d)
    s = np.linalg.svd(X, compute_uv=False)
    if s.min() < 0.2 or s.max() / s.min() > 20:  # keep the FD well conditioned
        X = X + 2.0 * np.eye(d) * np.sign(np.linalg.det(X) or 1.0)
    ref = _lb_drift_fd(X, depth) / beta
    # central differences: O(h^2) ~ 1e-10 truncation, eps/h ~ 1e-11 rounding, scaled by |A|
    scale = max(1.0, np.abs(_cometric(X, depth)).max())
    np.testing.assert_allclose(brownian_drift(X, depth, beta), ref, atol=1e-6 * scale)


def test_drift_matches_paper_formula_d2():
    """[G] eq. 12.9 written out with lambda = sigma^{1/N}, and batch consistency."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 2, 2))
    N = 4
    out = brownian_drift(X, N, beta=2.0)
    for b in range(4):
        U, s, Vh = np.linalg.svd(X[b])
        lam = s ** (1 / N)
        np.testing.assert_allclose(
            out[b], U @ np.diag((N - 1) * lam ** (N - 2) / 2.0) @ Vh, rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(out[b], brownian_drift(X[b], N, 2.0), rtol=1e-12, atol=1e-14)


def test_increment_covariance_is_inverse_metric():
    """The linear map noise -> increment is sqrt(2 dt / beta) A^{1/2}: its square is A (exact)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3, 3))
    depth, beta, dt = 3, 2.0, 0.01
    basis = np.eye(9).reshape(9, 3, 3)
    drift = brownian_drift(X, depth, beta) * dt
    S = (brownian_increment(X, depth, beta, dt, basis) - drift).reshape(9, 9).T
    np.testing.assert_allclose(S @ S.T, (2 * dt / beta) * _cometric(X, depth), atol=1e-13)
    np.testing.assert_allclose(S, S.T, atol=1e-13)  # A^{1/2} is self-adjoint


def _hessian_fd(f, X, h=1e-4):
    d = X.shape[0]
    n = d * d
    H = np.zeros((n, n))
    E = np.eye(n).reshape(n, d, d) * h
    for i in range(n):
        for j in range(n):
            H[i, j] = (
                f(X + E[i] + E[j]) - f(X + E[i] - E[j]) - f(X - E[i] + E[j]) + f(X - E[i] - E[j])
            ) / (4 * h * h)
    return H


def _grad_fd(f, X, h=1e-5):
    d = X.shape[0]
    E = np.eye(d * d).reshape(d * d, d, d) * h
    return np.array([(f(X + e) - f(X - e)) / (2 * h) for e in E])


TEST_FUNCTIONS = {
    "quadratic_entry": lambda X: X[..., 0, 1] ** 2 + X[..., 0, 0] * X[..., 1, 1],
    "frobenius": lambda X: (X**2).sum(axis=(-2, -1)),
    "trace_cube": lambda X: np.trace(X @ X @ X, axis1=-2, axis2=-1),
}


@pytest.mark.parametrize("name", list(TEST_FUNCTIONS))
@pytest.mark.parametrize("depth", [2, 3])
def test_generator_matches_laplace_beltrami(name, depth):
    """(E f(X_h) - f(X_0)) / h over many one-step paths = (1/beta) Delta f (X_0).

    Antithetic pairs (xi, -xi) cancel the O(h^{-1/2}) martingale term, so the
    estimator's spread is O(1); the tolerance is 5 standard errors of the sample
    plus the O(h) Euler bias.
    """
    f = TEST_FUNCTIONS[name]
    X0 = np.array([[1.2, 0.3], [-0.4, 0.8]])
    beta, h, n = 2.0, 1e-4, 20000
    rng = np.random.default_rng(3)
    xi = rng.standard_normal((n, 2, 2))
    Xp = X0 + brownian_increment(X0, depth, beta, h, xi)
    Xm = X0 + brownian_increment(X0, depth, beta, h, -xi)
    samples = (0.5 * (f(Xp) + f(Xm)) - f(X0)) / h
    est, se = samples.mean(), samples.std(ddof=1) / np.sqrt(n)
    G = _cometric(X0, depth)
    lap = np.sum(G * _hessian_fd(f, X0)) + _grad_fd(f, X0) @ _lb_drift_fd(X0, depth).ravel()
    assert abs(est - lap / beta) < 5 * se + 1e-2 * abs(lap)
    # the drift matters: without it the estimate is off by many standard errors
    drift_part = _grad_fd(f, X0) @ _lb_drift_fd(X0, depth).ravel() / beta
    assert abs(drift_part) > 10 * se


def test_sampler_generator_and_seeding():
    """brownian_motion over one short time: same seed same paths; mean of |X|^2 follows Delta."""
    X0 = np.array([[1.0, 0.2], [0.1, 1.5]])
    depth, beta, t = 3, 1.0, 0.02
    r1 = brownian_motion(X0, depth, beta, t_final=t, dt=t / 4, n_paths=4000, seed=7)
    r2 = brownian_motion(
        X0, depth, beta, t_final=t, dt=t / 4, n_paths=4000, seed=np.random.SeedSequence(7)
    )
    np.testing.assert_array_equal(r1.final, r2.final)
    assert r1.states.shape == (2, 4000, 2, 2)
    f = TEST_FUNCTIONS["frobenius"]
    vals = (f(r1.final) - f(X0)) / t
    G = _cometric(X0, depth)
    lap = 2 * np.trace(G) + 2 * X0.ravel() @ _lb_drift_fd(X0, depth).ravel()
    se = vals.std(ddof=1) / np.sqrt(vals.size)
    assert abs(vals.mean() - lap / beta) < 5 * se + 0.05 * abs(lap)  # O(t) drift of the generator


def test_input_validation():
    with pytest.raises(ValueError, match="beta"):
        brownian_drift(np.eye(2), 2, beta=-1.0)
    with pytest.raises(ValueError, match="X"):
        brownian_drift(np.zeros((2, 2)), 2)
    with pytest.raises(TypeError, match="depth"):
        brownian_drift(np.eye(2), 2.5)
    with pytest.raises(ValueError, match="X0"):
        brownian_motion(np.ones(3), 2, t_final=1.0, dt=0.1)
    with pytest.raises(ValueError, match="dt"):
        brownian_increment(np.eye(2), 2, 1.0, 0.0, np.zeros((2, 2)))
    X = np.eye(2)
    brownian_drift(X, 3)
    np.testing.assert_array_equal(X, np.eye(2))  # input not mutated


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_drift_matches_geomstats_brownian_motion(depth):
    """geomstats' BrownianMotion uses the drift -(1/2) g^{lm} Gamma^k_{lm} (generator Delta/2),
    i.e. brownian_drift at beta = 2, in the row-major vector coordinates of the adapter."""
    adapter = pytest.importorskip("dln_manifolds.geomstats")
    from geomstats.distributions.brownian_motion import BrownianMotion

    d = 2
    space = adapter.EndToEndMatrices(d, depth)
    BrownianMotion(space)  # the adapter is accepted (intrinsic coordinates)
    X = np.array([[1.3, -0.2], [0.4, 0.7]])
    x = adapter.matrix_to_vector(X)
    christoffels = space.metric.christoffels(x)
    cometric = space.metric.cometric_matrix(x)
    gs_drift = -0.5 * np.einsum("...klm,...lm->...k", christoffels, cometric)
    np.testing.assert_allclose(
        adapter.vector_to_matrix(gs_drift, d), brownian_drift(X, depth, 2.0), rtol=1e-9, atol=1e-12
    )
