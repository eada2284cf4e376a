"""Brownian motion on (M_{m x n}, g^N) for non-square X: the Laplace-Beltrami drift.

Brute force: the dense Kronecker matrix of A_{N,X} ([G] eq. 4.14 summed literally, with
(.)^0 = I; the inverse metric in row-major coordinates) and central differences of it for
|g|^{-1/2} d_j(|g|^{1/2} g^{jk}) (docs/mathematics.rst, section *Brownian motion for
general widths*).
"""

import numpy as np
import pytest
from dense import dense_cometric

from dln_manifolds import depth_operator, entropy_gradient
from dln_manifolds.langevin import (
    brownian_drift,
    brownian_increment,
    brownian_motion,
    end_to_end_langevin,
    free_energy_drift,
)

SHAPES = [(4, 2), (2, 4), (3, 1), (1, 3), (5, 3)]


def _lb_drift_fd(X, depth, h=1e-5):
    """|g|^{-1/2} d_j(|g|^{1/2} g^{jk}) = d_j A^{jk} - (1/2) A^{kj} d_j log det A."""
    m, n = X.shape
    size = m * n
    A = dense_cometric(X, depth)
    div, dlog = np.zeros(size), np.zeros(size)
    for j in range(size):
        E = np.zeros(size)
        E[j] = h
        Ap = dense_cometric(X + E.reshape(m, n), depth)
        Am = dense_cometric(X - E.reshape(m, n), depth)
        div += (Ap[j] - Am[j]) / (2 * h)
        dlog[j] = -0.5 * (np.linalg.slogdet(Ap)[1] - np.linalg.slogdet(Am)[1]) / (2 * h)
    return (div + A @ dlog).reshape(m, n)


def _point(rng, shape, s=None):
    """A random m x n matrix with prescribed singular values (default: spread in [0.5, 2])."""
    m, n = shape
    r = min(shape)
    U = np.linalg.qr(rng.standard_normal((m, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    if s is None:
        s = np.sort(rng.uniform(0.5, 2.0, r))[::-1]
    return (U * np.asarray(s)) @ V.T


def _relative_error(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_drift_is_laplace_beltrami_drift(shape, depth):
    """Random singular values: agreement to ~1e-9 relative (central differences, h = 1e-5).

    Negative control: the plausible guess (N - 1 + |m - n|) sigma^{1-2/N} (the drift of the
    singular values, not of X) is off by order one whenever m != n and N >= 2.
    """
    rng = np.random.default_rng(hash((shape, depth)) % 2**32)
    X = _point(rng, shape)
    ref = _lb_drift_fd(X, depth)
    got = brownian_drift(X, depth, beta=1.0)
    if depth == 1:
        assert np.abs(ref).max() < 1e-8 and np.abs(got).max() == 0.0
        return
    assert _relative_error(got, ref) < 2e-7
    np.testing.assert_allclose(brownian_drift(X, depth, beta=4.0), got / 4.0, rtol=1e-14)
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    guess = (U * ((depth - 1 + abs(shape[0] - shape[1])) * s ** (1 - 2 / depth))) @ Vh
    assert _relative_error(guess, ref) > 0.1


@pytest.mark.parametrize("shape", [(4, 2), (2, 4), (5, 3)])
@pytest.mark.parametrize(
    "s", [[1.5, 1.5 * (1 + 1e-9), 0.7], [1.2, 1.2, 1.2], [2.0, 1.0 + 1e-12, 1.0]]
)
def test_drift_at_repeated_singular_values(shape, s):
    """Repeated and nearly repeated singular values: the drift is smooth there (no 0/0)."""
    rng = np.random.default_rng(5)
    X = _point(rng, shape, s[: min(shape)])
    for depth in (2, 7):
        got = brownian_drift(X, depth)
        assert np.all(np.isfinite(got))
        assert _relative_error(got, _lb_drift_fd(X, depth)) < 2e-7


def test_drift_batch_and_cost_form():
    """A stack of tall points: one thin SVD each, same as point by point; input not mutated."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3, 6, 2))
    keep = X.copy()
    out = brownian_drift(X, 4, 2.0)
    assert out.shape == (3, 6, 2)
    for b in range(3):
        np.testing.assert_allclose(out[b], brownian_drift(X[b], 4, 2.0), rtol=1e-13)
    np.testing.assert_array_equal(X, keep)


@pytest.mark.parametrize("shape", [(3, 2), (2, 4)])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_singular_value_sde(shape, depth):
    r"""The generator on sigma_k: Delta sigma_k = tr(A Hess sigma_k) + <grad sigma_k, b>.

    Expected (module docstring of langevin.brownian): (N - 1 + |m - n|) sigma_k^{1-2/N}
    + sum_{l != k} 2 sigma_k / (sigma_k^{2/N} - sigma_l^{2/N}); quadratic variation
    <grad sigma_k, A grad sigma_k> = N sigma_k^{2-2/N}. Hessian by central differences
    (h = 1e-4: error ~1e-7). Negative control: without the |m - n| term it fails.
    """
    rng = np.random.default_rng(11)
    X = _point(rng, shape, [1.7, 0.8][: min(shape)])
    m, n = shape
    size = m * n
    A = dense_cometric(X, depth)
    b = brownian_drift(X, depth).ravel()
    basis = np.eye(size).reshape(size, m, n)
    h = 1e-4

    def sv(Y):
        return np.linalg.svd(Y, compute_uv=False)

    grad = np.array([(sv(X + h * e) - sv(X - h * e)) / (2 * h) for e in basis])  # (size, r)
    hess = np.empty((size, size, min(shape)))
    for i in range(size):
        for j in range(size):
            ei, ej = h * basis[i], h * basis[j]
            hess[i, j] = (sv(X + ei + ej) - sv(X + ei - ej) - sv(X - ei + ej) + sv(X - ei - ej)) / (
                4 * h * h
            )
    lap = np.einsum("ij,ijk->k", A, hess) + grad.T @ b
    s = sv(X)
    expected = _singular_value_drift(s, depth, abs(m - n))
    np.testing.assert_allclose(lap, expected, rtol=1e-5)
    qv = np.einsum("ik,ij,jk->k", grad, A, grad)
    np.testing.assert_allclose(qv, depth * s ** (2 - 2 / depth), rtol=1e-8)
    square_guess = _singular_value_drift(s, depth, 0)
    assert np.abs(square_guess - lap).max() > 0.1


@pytest.mark.parametrize("shape", [(4, 2), (2, 3)])
def test_increment_covariance_is_inverse_metric(shape):
    """noise -> increment is sqrt(2 dt / beta) A^{1/2}: its square is the dense A (exactly)."""
    rng = np.random.default_rng(3)
    X = _point(rng, shape)
    m, n = shape
    depth, beta, dt = 3, 2.0, 0.01
    basis = np.eye(m * n).reshape(m * n, m, n)
    drift = brownian_drift(X, depth, beta) * dt
    S = (brownian_increment(X, depth, beta, dt, basis) - drift).reshape(m * n, m * n).T
    A = dense_cometric(X, depth)
    np.testing.assert_allclose(S @ S.T, (2 * dt / beta) * A, atol=1e-13)
    np.testing.assert_allclose(S, S.T, atol=1e-13)
    with pytest.raises(ValueError, match="noise"):
        brownian_increment(X, depth, beta, dt, np.zeros((n, m)))


def _singular_value_drift(s, depth, extra):
    """Drift of sigma_k (module docstring of langevin.brownian), beta = 1."""
    q = 1.0 / depth
    pair = [
        sum(2 * s[k] / (s[k] ** (2 * q) - s[l] ** (2 * q)) for l in range(s.size) if l != k)
        for k in range(s.size)
    ]
    return (depth - 1 + extra) * s ** (1 - 2 * q) + np.array(pair)


def test_sampler_singular_values_and_seeding():
    """brownian_motion on 5 x 2 matrices: same seed same paths; over a short time the mean
    of sigma_1 + sigma_2 moves by the singular-value drift (5 standard errors plus O(t)).

    Negative control: the square drift (no |m - n| term) is rejected by the same margin.
    """
    U = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 2)))[0]
    s0 = np.array([1.7, 0.8])
    X0 = (U * s0) @ np.array([[0.6, 0.8], [-0.8, 0.6]])
    depth, t, n = 3, 0.02, 2000
    r1 = brownian_motion(X0, depth, t_final=t, dt=t / 2, n_paths=n, seed=7)
    r2 = brownian_motion(X0, depth, t_final=t, dt=t / 2, n_paths=n, seed=np.random.SeedSequence(7))
    np.testing.assert_array_equal(r1.final, r2.final)
    assert r1.states.shape == (2, n, 5, 2) and r1.alive.all()
    vals = (np.linalg.svd(r1.final, compute_uv=False).sum(axis=-1) - s0.sum()) / t
    est, se = vals.mean(), vals.std(ddof=1) / np.sqrt(n)
    expected = _singular_value_drift(s0, depth, 3).sum()
    assert abs(est - expected) < 5 * se + 0.05 * abs(expected)
    wrong = _singular_value_drift(s0, depth, 0).sum()
    assert abs(est - wrong) > 5 * se + 0.05 * abs(wrong)


def test_free_energy_drift_with_widths():
    """Downstairs RLE drift for widths (2, 3, 4, 3): -A(E') + grad S / beta + kappa b / beta."""
    rng = np.random.default_rng(4)
    widths = (2, 3, 4, 3)
    X = _point(rng, (3, 2))
    target = rng.standard_normal((3, 2))

    def energy(Y):  # E = |Y - target|^2 / 2 as a gradient callable
        return Y - target

    N, beta, kappa = 3, 2.0, 0.5
    got = free_energy_drift(X, N, beta, kappa, energy, widths=widths)
    expected = (
        -depth_operator(X, N, X - target)
        + entropy_gradient(X, N, widths=widths) / beta
        + brownian_drift(X, N, beta / kappa)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    res = end_to_end_langevin(
        X, N, beta, kappa, energy, widths=widths, t_final=0.01, dt=0.005, n_paths=3, seed=0
    )
    assert res.final.shape == (3, 3, 2)


def test_errors():
    X = np.ones((3, 2)) + np.eye(3, 2)
    with pytest.raises(ValueError, match="depth must be finite"):
        brownian_drift(X, np.inf)
    with pytest.raises(ValueError, match="depth must be finite"):
        brownian_motion(X, np.inf, t_final=0.1, dt=0.1)
    with pytest.raises(ValueError, match="rank-deficient"):
        brownian_drift(np.ones((3, 2)), 2)
    with pytest.raises(ValueError, match="widths"):
        free_energy_drift(X, 2, 1.0)
    with pytest.raises(ValueError, match="widths"):
        end_to_end_langevin(X, 2, 1.0, t_final=0.1, dt=0.1)
    with pytest.raises(ValueError, match=r"widths\[1\]"):
        free_energy_drift(X, 2, 1.0, widths=(2, 1, 3))
    with pytest.raises(ValueError, match="d_N, d_0"):
        free_energy_drift(X, 2, 1.0, widths=(3, 3, 2))
