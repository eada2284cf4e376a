"""Orbit entropy, free energy and the volume density of g^N against brute force."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from dln_manifolds import (
    QuadraticEnergy,
    balanced_point,
    completion_energy_2x2,
    depth_inner_product,
)
from dln_manifolds.entropy import (
    entropy_gradient,
    free_energy,
    free_energy_gradient,
    log_orthogonal_group_volume,
    log_volume_density,
    orbit_entropy,
    orbit_volume,
    orthogonal_group_volume,
    volume_density,
)

DEPTHS = [1, 2, 3, 5, np.inf]


def _orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _matrix(rng, d, s=None):
    """U diag(s) V^T with singular values spread in [0.5, 2] unless given."""
    if s is None:
        s = rng.uniform(0.5, 2.0, d)
    return (_orthogonal(rng, d) * np.asarray(s, dtype=float)) @ _orthogonal(rng, d).T


def _sphere_volume(k):
    return 2.0 * math.pi ** ((k + 1) / 2) / math.gamma((k + 1) / 2)


# ---------------------------------------------------------------------------
# c_d
# ---------------------------------------------------------------------------


def test_orthogonal_group_volume_closed_forms():
    assert orthogonal_group_volume(1) == pytest.approx(2.0, rel=1e-15)
    assert orthogonal_group_volume(2) == pytest.approx(4 * math.pi * math.sqrt(2), rel=1e-14)
    for d in range(1, 9):
        # Gaussian integral over X = QR: vol(O(d)) for the metric (1/2) tr(A^T B) is
        # 2^d pi^{d(d+1)/4} / prod Gamma(k/2); the Frobenius metric scales each of the
        # d(d-1)/2 dimensions by sqrt 2. Independent of the fibration formula in the code.
        gauss = (
            2.0**d
            * math.pi ** (d * (d + 1) / 4)
            / math.prod(math.gamma(k / 2) for k in range(1, d + 1))
        )
        frob = gauss * 2.0 ** (d * (d - 1) / 4)
        fibration = (
            2.0 * 2.0 ** (d * (d - 1) / 4) * math.prod(_sphere_volume(k) for k in range(1, d))
        )
        assert orthogonal_group_volume(d) == pytest.approx(frob, rel=1e-12)
        assert orthogonal_group_volume(d) == pytest.approx(fibration, rel=1e-12)
    assert np.isfinite(log_orthogonal_group_volume(200))


def test_c3_by_integrating_the_exponential_chart():
    """vol(SO(3)) = c_3 / 2 from the Frobenius Gram determinant of exp: ball(pi) -> SO(3)."""
    basis = np.zeros((3, 3, 3))
    for i, (k, l) in enumerate([(1, 2), (2, 0), (0, 1)]):
        basis[i, k, l], basis[i, l, k] = -1.0, 1.0

    def density(theta):  # depends on |omega| only (conjugation invariance)
        A = theta * basis[0]
        J = np.stack([scipy.linalg.expm_frechet(A, E, compute_expm=False).ravel() for E in basis])
        return math.sqrt(np.linalg.det(J @ J.T))

    vol, _ = scipy.integrate.quad(
        lambda t: 4 * math.pi * t * t * density(t), 0, math.pi, epsabs=0, epsrel=1e-12
    )
    # quad on a smooth integrand: converged to ~1e-12 relative.
    assert 2 * vol == pytest.approx(orthogonal_group_volume(3), rel=1e-10)


def test_c2_against_arc_length_of_the_orbit(rng):
    """d = 2, N = 2: O_X = {(g W_1, W_2 g^T) : g in O(2)}, two closed curves."""
    X = _matrix(rng, 2, [1.7, 0.6])
    W = balanced_point(X, 2, rotations=_orthogonal(rng, 2)[None])
    n = 20000
    theta = np.linspace(0.0, 2 * np.pi, n + 1)
    c, s = np.cos(theta), np.sin(theta)
    R = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (n+1, 2, 2)
    length = 0.0
    for g in (R, R @ np.diag([1.0, -1.0])):  # both components of O(2)
        curve = np.concatenate(
            [(g @ W[0]).reshape(n + 1, -1), (W[1] @ np.swapaxes(g, 1, 2)).reshape(n + 1, -1)],
            axis=1,
        )
        length += np.linalg.norm(np.diff(curve, axis=0), axis=1).sum()
    # chord sum of a smooth closed curve: relative error ~ (2 pi / n)^2 / 24 ~ 4e-9
    assert orbit_volume(X, 2) == pytest.approx(length, rel=1e-7)
    s1, s2 = np.linalg.svd(X, compute_uv=False)
    c2 = length / math.sqrt((s1**2 - s2**2) / (s1 - s2))
    assert orthogonal_group_volume(2) == pytest.approx(c2, rel=1e-7)


# ---------------------------------------------------------------------------
# Entropy = log(c_d^{N-1} sqrt(det Gram))
# ---------------------------------------------------------------------------


def _orbit_gram_logdet(W):
    """log sqrt(det Gram) of the orbit tangent vectors (docs/mathematics.rst, Entropy section)."""
    N, d, _ = W.shape
    vectors = []
    for p in range(N - 1):  # internal frame Q_{p+1}: layers p and p + 1 (0-based)
        for k in range(d):
            for l in range(k + 1, d):
                alpha = np.zeros((d, d))
                alpha[k, l], alpha[l, k] = 1 / math.sqrt(2), -1 / math.sqrt(2)
                V = np.zeros_like(W)
                V[p] = alpha @ W[p]
                V[p + 1] = -W[p + 1] @ alpha
                vectors.append(V.ravel())
    if not vectors:
        return 0.0
    T = np.array(vectors)
    sign, logdet = np.linalg.slogdet(T @ T.T)
    assert sign > 0
    return 0.5 * logdet


@settings(max_examples=15)
@given(d=st.integers(1, 4), N=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_entropy_equals_gram_determinant(d, N, seed):
    rng = np.random.default_rng(seed)
    X = _matrix(rng, d)
    rotations = np.stack([_orthogonal(rng, d) for _ in range(N - 1)]) if N > 1 else None
    W = balanced_point(X, N, rotations=rotations)
    expected = (N - 1) * math.log(orthogonal_group_volume(d)) + _orbit_gram_logdet(W)
    # Gram matrix of O(N d^2) well-scaled entries: slogdet to ~1e-13 absolute
    assert orbit_entropy(X, N) == pytest.approx(expected, rel=1e-11, abs=1e-11)
    assert orbit_volume(X, N) == pytest.approx(math.exp(expected), rel=1e-10)


def test_entropy_close_singular_values_against_mpmath():
    """The naive quotient loses all digits at close sigma; the stable one keeps ~all."""
    mpmath.mp.dps = 60
    for N in (2, 7, 1000):
        s = [2.0, 1.0 + 3e-12, 1.0, 0.25]
        exact = (N - 1) * mpmath.log(mpmath.mpf(orthogonal_group_volume(4)))
        ms = [mpmath.mpf(x) for x in s]
        for i in range(4):
            for j in range(i + 1, 4):
                num = ms[i] ** 2 - ms[j] ** 2
                den = ms[i] ** (mpmath.mpf(2) / N) - ms[j] ** (mpmath.mpf(2) / N)
                exact += mpmath.log(num / den) / 2
        got = orbit_entropy(np.diag(s), N)
        # the c_d term is float64 input to mpmath as well: compare to 1e-13 relative
        assert got == pytest.approx(float(exact), rel=1e-13)


# ---------------------------------------------------------------------------
# Gradient
# ---------------------------------------------------------------------------


@settings(max_examples=15)
@given(d=st.integers(1, 4), depth=st.sampled_from(DEPTHS), seed=st.integers(0, 2**32 - 1))
def test_entropy_gradient_against_finite_differences(d, depth, seed):
    rng = np.random.default_rng(seed)
    X = _matrix(rng, d)
    Z = rng.standard_normal((d, d))
    h = 1e-5
    fd = (orbit_entropy(X + h * Z, depth) - orbit_entropy(X - h * Z, depth)) / (2 * h)
    grad = entropy_gradient(X, depth)
    egrad = entropy_gradient(X, depth, metric="euclidean")
    # central differences: O(h^2) ~ 1e-10 truncation, rounding eps |S| / h ~ 1e-10
    assert depth_inner_product(X, depth, grad, Z) == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert float(np.vdot(egrad, Z)) == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("depth", [1, 3, np.inf])
def test_entropy_gradient_leading_batch_axis(depth, rng):
    """A stack (..., d, d) gives the single-matrix gradients (same operations, vectorized:
    equal to rounding), repeated singular values included; the samplers rely on it."""
    X = rng.standard_normal((2, 3, 3, 3)) + 2 * np.eye(3)
    X[0, 0] = np.diag([1.5, 1.5, 0.7])  # repeated singular value
    for metric in ("depth", "euclidean"):
        batched = entropy_gradient(X, depth, metric=metric)
        assert batched.shape == X.shape
        for idx in np.ndindex(2, 3):
            single = entropy_gradient(X[idx], depth, metric=metric)
            np.testing.assert_allclose(batched[idx], single, rtol=1e-14, atol=1e-14)
    X[1, 2] = np.diag([1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="rank-deficient"):
        entropy_gradient(X, depth)


def test_entropy_gradient_matches_eq_12_8(rng):
    for N in (2, 3, 6):
        X = _matrix(rng, 4, [2.0, 1.3, 0.9, 0.4])
        U, s, Vh = np.linalg.svd(X)
        lam = s ** (1 / N)
        sp = [
            lam[k] ** (N - 1)
            * sum(
                N * lam[k] ** (2 * N - 1) / (lam[k] ** (2 * N) - lam[l] ** (2 * N))
                - lam[k] / (lam[k] ** 2 - lam[l] ** 2)
                for l in range(4)
                if l != k
            )
            for k in range(4)
        ]
        np.testing.assert_allclose(entropy_gradient(X, N), (U * sp) @ Vh, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("depth", [2, 5, 1000, np.inf])
def test_repeated_singular_values_finite_and_continuous(rng, depth):
    U, V = _orthogonal(rng, 3), _orthogonal(rng, 3)
    X = (U * [1.5, 0.7, 0.7]) @ V.T
    Xp = (U * [1.5, 0.7 + 1e-8, 0.7]) @ V.T
    S, Sp = orbit_entropy(X, depth), orbit_entropy(Xp, depth)
    G, Gp = entropy_gradient(X, depth), entropy_gradient(Xp, depth)
    assert np.isfinite(S) and np.all(np.isfinite(G))
    # S and its gradient are smooth (symmetric functions of sigma^2): O(1e-8) changes
    assert abs(S - Sp) < 1e-7 * max(1.0, abs(S))
    np.testing.assert_allclose(G, Gp, atol=1e-6 * np.abs(G).max())
    # fully degenerate spectrum: dS/dlog(s) = O(d^2 N), so a 1e-12 scaling moves S by ~1e-12 N
    scale = depth if np.isfinite(depth) else 1
    assert orbit_entropy(np.eye(4), depth) == pytest.approx(
        orbit_entropy(np.eye(4) * (1 + 1e-12), depth), abs=1e-9 * scale
    )


def test_large_depth_converges_to_depth_inf(rng):
    X = _matrix(rng, 3, [3.0, 1.0, 0.2])
    d = 3
    gaps = []
    for N in (1000, 2000, 10000):
        S = orbit_entropy(X, N)
        assert np.isfinite(S)
        Sp = orbit_entropy(X * (1 + 1e-9), N)
        assert abs(S - Sp) < 1e-6  # continuous: dS/dlog(s) = O(1) whatever N
        renorm = S - (N - 1) * log_orthogonal_group_volume(d) - d * (d - 1) / 4 * math.log(N)
        gaps.append(renorm - orbit_entropy(X, np.inf))
        grad_gap = np.abs(entropy_gradient(X, N) / N - entropy_gradient(X, np.inf)).max()
        assert grad_gap < 10.0 / N
    # m_N / N = m_inf (1 + O(1/N)): the renormalized entropy converges at rate 1/N
    assert abs(gaps[0]) < 0.1
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=1e-2)
    assert gaps[0] / gaps[2] == pytest.approx(10.0, rel=1e-2)
    assert np.isinf(orbit_volume(X, 10**6))  # overflow of c_d^{N-1}, documented


def test_depth_inf_is_half_of_eq_14_11(rng):
    X = _matrix(rng, 3, [2.5, 1.0, 0.3])
    s = np.linalg.svd(X, compute_uv=False)
    eq_14_11 = sum(
        math.log((s[k] ** 2 - s[l] ** 2) / (2 * math.log(s[k] / s[l])))
        for k in range(3)
        for l in range(k + 1, 3)
    )
    assert orbit_entropy(X, np.inf) == pytest.approx(0.5 * eq_14_11, rel=1e-13)


def test_depth_one_and_d_one():
    assert orbit_entropy(np.diag([2.0, 1.0]), 1) == 0.0
    np.testing.assert_array_equal(entropy_gradient(np.diag([2.0, 1.0]), 1), 0.0)
    # d = 1: the orbit is 2^{N-1} points
    assert orbit_volume(np.array([[0.3]]), 4) == pytest.approx(8.0, rel=1e-14)


# ---------------------------------------------------------------------------
# Free energy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 4, np.inf])
def test_free_energy_and_gradient(rng, depth):
    d, beta = 3, 0.7
    X = _matrix(rng, d)
    energy = QuadraticEnergy(rng.standard_normal((d, d)))
    F = free_energy(X, energy, depth=depth, beta=beta)
    assert F == pytest.approx(energy.value(X) - orbit_entropy(X, depth) / beta, rel=1e-14)
    Z = rng.standard_normal((d, d))
    h = 1e-5
    fd = (
        free_energy(X + h * Z, energy, depth=depth, beta=beta)
        - free_energy(X - h * Z, energy, depth=depth, beta=beta)
    ) / (2 * h)
    grad = free_energy_gradient(X, energy, depth=depth, beta=beta)
    assert depth_inner_product(X, depth, grad, Z) == pytest.approx(fd, rel=1e-6)
    egrad = free_energy_gradient(X, energy, depth=depth, beta=beta, metric="euclidean")
    assert float(np.vdot(egrad, Z)) == pytest.approx(fd, rel=1e-6)


# ---------------------------------------------------------------------------
# Volume density
# ---------------------------------------------------------------------------


def _power(P, r):
    lam, Q = np.linalg.eigh(P)
    return (Q * lam**r) @ Q.T


def _dense_depth_operator(X, depth):
    """[G] eq. 4.14 (or 14.7 by Gauss-Legendre) as a d^2 x d^2 matrix on row-major vec."""
    P, Q = X @ X.T, X.T @ X
    if np.isinf(depth):
        t, w = np.polynomial.legendre.leggauss(40)
        t, w = 0.5 * (t + 1), 0.5 * w  # entire integrand: exact to rounding
        return sum(
            wi * np.kron(_power(P, 1 - ti), _power(Q, ti)) for ti, wi in zip(t, w, strict=True)
        )
    return sum(
        np.kron(_power(P, (depth - k) / depth), _power(Q, (k - 1) / depth))
        for k in range(1, depth + 1)
    )


def _svd_chart(U0, s, V0, x):
    """X(sigma, a, b) = U0 exp(Omega(a)) diag(sigma) exp(Omega(b))^T V0^T, Frobenius-normal a, b."""
    d = s.size
    iu = np.triu_indices(d, k=1)
    npair = iu[0].size

    def skew(c):
        A = np.zeros((d, d))
        A[iu] = c / math.sqrt(2)
        return A - A.T

    sig, a, b = x[:d], x[d : d + npair], x[d + npair :]
    return U0 @ scipy.linalg.expm(skew(a)) @ np.diag(sig) @ scipy.linalg.expm(skew(b)).T @ V0.T


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("depth", [1, 2, 3, 5, np.inf])
def test_volume_density_against_dense_metric(rng, d, depth):
    U0, V0 = _orthogonal(rng, d), _orthogonal(rng, d)
    s = np.sort(rng.uniform(0.4, 2.0, d))[::-1]
    X = (U0 * s) @ V0.T
    x0 = np.concatenate([s, np.zeros(d * (d - 1))])
    h = 1e-6
    J = np.stack(
        [
            (_svd_chart(U0, s, V0, x0 + h * e) - _svd_chart(U0, s, V0, x0 - h * e)).ravel()
            / (2 * h)
            for e in np.eye(x0.size)
        ],
        axis=1,
    )
    G = J.T @ np.linalg.solve(_dense_depth_operator(X, depth), J)
    expected = math.sqrt(np.linalg.det(G))
    # central differences of a smooth chart: O(h^2) = 1e-12 per entry, det to ~1e-9
    assert volume_density(X, depth) == pytest.approx(expected, rel=1e-7)
    assert log_volume_density(X, depth) == pytest.approx(math.log(expected), abs=1e-7)


def test_volume_density_closed_form_and_repeated(rng):
    N = 4
    s = np.array([2.0, 0.9, 0.5])
    X = _matrix(rng, 3, s)
    pairs = [(k, l) for k in range(3) for l in range(k + 1, 3)]
    van = np.prod([abs(s[k] ** (2 / N) - s[l] ** (2 / N)) for k, l in pairs])
    closed = 2.0**-3 * N**-1.5 * np.prod(s**2) ** (-(N - 1) / (2 * N)) * van
    assert volume_density(X, N) == pytest.approx(closed, rel=1e-13)
    assert volume_density(np.diag([1.0, 1.0, 2.0]), N) == 0.0
    assert log_volume_density(np.diag([1.0, 1.0, 2.0]), N) == -np.inf


# ---------------------------------------------------------------------------
# Input errors
# ---------------------------------------------------------------------------


def test_input_errors():
    X = np.diag([1.0, 2.0])
    singular = np.diag([1.0, 0.0])
    for f in (orbit_entropy, orbit_volume, entropy_gradient, volume_density, log_volume_density):
        with pytest.raises(ValueError, match="rank-deficient"):
            f(singular, 3)
        with pytest.raises(ValueError, match="depth"):
            f(X, 0)
        with pytest.raises(TypeError, match="depth"):
            f(X, 2.5)
        with pytest.raises(ValueError, match="X"):
            f(np.ones((2, 3)), 2)
        with pytest.raises(ValueError, match="NaN"):
            f(np.array([[np.nan, 0], [0, 1.0]]), 2)
    with pytest.raises(TypeError, match="real"):
        orbit_entropy(X.astype(complex), 2)
    with pytest.raises(ValueError, match="metric"):
        entropy_gradient(X, 2, metric="frobenius")
    energy = completion_energy_2x2()
    with pytest.raises(ValueError, match="beta"):
        free_energy(X, energy, depth=2, beta=0.0)
    with pytest.raises(TypeError, match="beta"):
        free_energy_gradient(X, energy, depth=2, beta="hot")
    with pytest.raises(TypeError, match="energy"):
        free_energy(X, lambda Y: 0.0, depth=2, beta=1.0)
    with pytest.raises(ValueError, match="energy acts on 3 x 3"):
        free_energy_gradient(X, QuadraticEnergy(np.eye(3)), depth=2, beta=1.0)
    with pytest.raises(TypeError, match="d must"):
        orthogonal_group_volume(2.0)
    with pytest.raises(ValueError, match="d must"):
        orthogonal_group_volume(0)
    # inputs are not modified
    Y = np.diag([1.0, 2.0])
    entropy_gradient(Y, 3)
    np.testing.assert_array_equal(Y, np.diag([1.0, 2.0]))
