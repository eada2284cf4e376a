"""The depth operator A_{N,X} ([G] eq. 4.14), its inverse, derivatives and Christoffel term.

References used here:
- the literal sum of Kronecker products of fractional matrix powers (eq. 4.14),
  with powers from ``numpy.linalg.eigh`` of XX^T and X^TX;
- the multiplier formulas of [G] eq. 7.13-7.14 and 14.8-14.9 evaluated with
  mpmath at 50 significant digits;
- central finite differences and the Koszul formula for the derivatives.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dln_manifolds import (
    depth_christoffel,
    depth_inner_product,
    depth_multipliers,
    depth_operator,
    depth_operator_derivative,
    depth_operator_derivative_adjoint,
    depth_operator_power,
    inverse_depth_operator,
)

mpmath.mp.dps = 50


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _point(rng, s):
    """X = U diag(s) V^T with Haar U, V; returns (X, U, V)."""
    d = len(s)
    U, V = _haar(rng, d), _haar(rng, d)
    return (U * np.asarray(s)) @ V.T, U, V


def _well_conditioned(rng, d):
    s = np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=d))
    return _point(rng, s)[0]


def _sym_power(S, p):
    w, Q = np.linalg.eigh(S)
    return (Q * np.clip(w, 0.0, None) ** p) @ Q.T


def dense_depth_matrix(X, N):
    r"""d^2 x d^2 matrix of eq. 4.14: sum_k (X^T X)^{(k-1)/N T} kron (XX^T)^{(N-k)/N}.

    Acts on column-major vec(Z): vec(A Z B) = (B^T kron A) vec(Z).
    """
    P, Q = X @ X.T, X.T @ X
    return sum(
        np.kron(_sym_power(Q, (k - 1) / N).T, _sym_power(P, (N - k) / N)) for k in range(1, N + 1)
    )


def apply_dense(M, Z):
    d = Z.shape[-1]
    return (M @ Z.reshape(-1, order="F")).reshape(d, d, order="F")


def operator_matrix(X, depth, fun=depth_operator):
    """Dense matrix of Z -> fun(X, depth, Z) built by applying it to the basis E_ij."""
    d = X.shape[0]
    basis = np.eye(d * d).reshape(d * d, d, d, order="F")
    cols = fun(X, depth, basis)  # batch input
    return cols.reshape(d * d, d * d, order="F").T


def mp_multiplier(sk, sl, depth):
    """[G] eq. 7.13-7.14 (finite N) and 14.8-14.9 (N = inf) at 50 digits."""
    sk, sl = mpmath.mpf(float(sk)), mpmath.mpf(float(sl))
    if np.isinf(depth):
        if sk == sl:
            return sk**2
        return (sk**2 - sl**2) / (2 * mpmath.log(sk / sl))
    N = mpmath.mpf(int(depth))
    if sk == sl:
        return N * sk ** (2 - 2 / N)
    return (sk**2 - sl**2) / (sk ** (2 / N) - sl ** (2 / N))


def mp_multipliers(s, depth):
    return np.array([[float(mp_multiplier(a, b, depth)) for b in s] for a in s])


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# ---------------------------------------------------------------------------
# The operator against the literal eq. 4.14
# ---------------------------------------------------------------------------


@given(
    d=st.integers(1, 6),
    N=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=30)
def test_depth_operator_matches_kronecker_sum(d, N, seed):
    rng = np.random.default_rng(seed)
    X = _well_conditioned(rng, d)
    Z = rng.standard_normal((d, d))
    ref = apply_dense(dense_depth_matrix(X, N), Z)
    # Both sides are sums of N products of O(1) matrices with condition number
    # <= 10: rounding is a few N d eps ~ 1e-14, so 1e-12 leaves a 100x margin.
    assert _rel(depth_operator(X, N, Z), ref) <= 1e-12


@given(d=st.integers(2, 5), N=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=10)
def test_depth_operator_gaussian_point(d, N, seed):
    """Unstructured Gaussian X (condition numbers up to ~1e3)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d, d))
    if np.linalg.cond(X) > 1e3:
        X = X + 2 * np.eye(d)
    Z = rng.standard_normal((d, d))
    ref = apply_dense(dense_depth_matrix(X, N), Z)
    # eigh of XX^T loses eps * cond^2 relatively on the smallest eigenvalue
    # inside the reference; 1e-9 covers cond <= 1e3 with margin.
    assert _rel(depth_operator(X, N, Z), ref) <= 1e-9


def test_depth_one_is_identity(rng):
    X = rng.standard_normal((4, 4))
    Z = rng.standard_normal((3, 4, 4))
    out = depth_operator(X, 1, Z)
    assert np.array_equal(out, Z)
    assert out is not Z
    assert np.array_equal(inverse_depth_operator(X, 1, Z), Z)
    assert np.array_equal(depth_multipliers(np.array([3.0, 1.0, 0.5]), 1), np.ones((3, 3)))


def test_batch_input(rng):
    d, N = 4, 3
    X = _well_conditioned(rng, d)
    Z = rng.standard_normal((2, 3, d, d))
    out = depth_operator(X, N, Z)
    assert out.shape == Z.shape
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(out[i, j], depth_operator(X, N, Z[i, j]), rtol=1e-13)
    back = inverse_depth_operator(X, N, out)
    np.testing.assert_allclose(back, Z, rtol=1e-12, atol=1e-12)


def test_inputs_not_mutated(rng):
    X = _well_conditioned(rng, 3)
    Z = rng.standard_normal((3, 3))
    X0, Z0 = X.copy(), Z.copy()
    for fun in (depth_operator, inverse_depth_operator):
        fun(X, 5, Z)
    depth_operator_derivative(X, 5, Z, Z)
    depth_christoffel(X, 5, Z, Z)
    assert np.array_equal(X, X0) and np.array_equal(Z, Z0)


@pytest.mark.parametrize("depth", [2, 3, 7, np.inf])
def test_inverse_is_inverse(rng, depth):
    X = _well_conditioned(rng, 5)
    Z = rng.standard_normal((5, 5))
    # Multipliers span a range of at most cond(X)^2 ~ 100: rounding ~ 100 eps.
    assert _rel(inverse_depth_operator(X, depth, depth_operator(X, depth, Z)), Z) <= 1e-12
    assert _rel(depth_operator(X, depth, inverse_depth_operator(X, depth, Z)), Z) <= 1e-12


@pytest.mark.parametrize("depth", [2, 5, np.inf])
def test_operator_power(rng, depth):
    X = _well_conditioned(rng, 4)
    Z = rng.standard_normal((4, 4))
    half = depth_operator_power(X, depth, depth_operator_power(X, depth, Z, 0.5), 0.5)
    assert _rel(half, depth_operator(X, depth, Z)) <= 1e-12
    assert _rel(depth_operator_power(X, depth, Z, -1), inverse_depth_operator(X, depth, Z)) <= 1e-13


@pytest.mark.parametrize("depth", [2, 4, 7, np.inf])
def test_symmetric_positive_definite(rng, depth):
    d = 4
    X = _well_conditioned(rng, d)
    M = operator_matrix(X, depth)
    assert np.max(np.abs(M - M.T)) <= 1e-13 * np.max(np.abs(M))
    eig = np.linalg.eigvalsh(0.5 * (M + M.T))
    assert eig.min() > 0
    # The eigenvalues are exactly the SVD-frame multipliers ([G] eq. 7.13-7.14).
    s = np.linalg.svd(X, compute_uv=False)
    np.testing.assert_allclose(eig, np.sort(mp_multipliers(s, depth).ravel()), rtol=1e-12)
    # g^N is the Frobenius product against the inverse.
    Z1, Z2 = rng.standard_normal((2, d, d))
    g = depth_inner_product(X, depth, Z1, Z2)
    ref = Z1.reshape(-1, order="F") @ np.linalg.solve(M, Z2.reshape(-1, order="F"))
    assert abs(g - ref) <= 1e-12 * np.linalg.norm(Z1) * np.linalg.norm(Z2) * np.linalg.norm(
        np.linalg.inv(M), 2
    )
    assert np.isclose(depth_inner_product(X, depth, Z2, Z1), g, rtol=1e-13, atol=0)


# ---------------------------------------------------------------------------
# Stability: (nearly) equal singular values, large depth, depth = inf
# ---------------------------------------------------------------------------

GAPS = [0.0, 1e-15, 1e-12, 1e-9, 1e-6, 1e-3]
DEPTHS = [2, 3, 7, 1000, 10_000, np.inf]


def _gapped_values(gap):
    s1 = 1.3
    return np.array([s1, s1 * (1 + gap), 0.7, 0.7 * (1 - gap), 2.1])


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("gap", GAPS)
def test_multipliers_against_mpmath(gap, depth):
    s = _gapped_values(gap)
    ref = mp_multipliers(s, depth)
    # The stable geometric-sum evaluation has no cancellation: a few ulps.
    assert np.max(np.abs(depth_multipliers(s, depth) / ref - 1)) <= 1e-12


@pytest.mark.parametrize("depth", [2, 7, 10_000, np.inf])
@pytest.mark.parametrize("gap", [0.0, 1e-12, 1e-9, 1e-6])
def test_operator_near_repeated_singular_values(rng, gap, depth):
    s = _gapped_values(gap)
    X, U, V = _point(rng, s)
    Z = rng.standard_normal((5, 5))
    ref = U @ (mp_multipliers(s, depth) * (U.T @ Z @ V)) @ V.T
    # The numerical SVD of X perturbs s by ~eps |X|; the multipliers are smooth
    # (analytic) in s, so the operator moves by O(eps) even at a zero gap,
    # although the individual singular vectors are ill-determined.
    assert _rel(depth_operator(X, depth, Z), ref) <= 1e-12


def test_naive_formula_fails_where_stable_one_does_not():
    """Sanity check that the reference can fail: the literal formula cancels."""
    s = _gapped_values(1e-12)
    N = 7
    naive = (s[0] ** 2 - s[1] ** 2) / (s[0] ** (2 / N) - s[1] ** (2 / N))
    ref = float(mp_multiplier(s[0], s[1], N))
    assert abs(naive / ref - 1) > 1e-6
    assert abs(depth_multipliers(s, N)[0, 1] / ref - 1) <= 1e-12


def test_inf_is_limit_of_rescaled_depth(rng):
    X = _well_conditioned(rng, 4)
    Z = rng.standard_normal((4, 4))
    N = 10**6
    # (1/N) m_N(s_k, s_l) = m_inf(s_k, s_l) (1 - log(s_k s_l)/N + O(1/N^2)), and
    # |log(s_k s_l)| <= 2 log 3 here, so the relative gap is <= 2.2/N.
    diff = _rel(depth_operator(X, N, Z) / N, depth_operator(X, np.inf, Z))
    assert diff <= 1e-5
    assert diff > 1e-9  # the two really are different operators


def test_large_depth_does_not_overflow():
    s = np.array([50.0, 1.0, 1e-3])
    M = depth_multipliers(s, 10**8)
    assert np.all(np.isfinite(M)) and np.all(M > 0)
    np.testing.assert_allclose(M, mp_multipliers(s, 10**8), rtol=1e-12)


# ---------------------------------------------------------------------------
# Derivatives
# ---------------------------------------------------------------------------

DERIV_GAPS = [None, 0.0, 1e-9, 1e-7, 1e-5, 1e-3, 1e-2]


def _fd5(f, h):
    """f'(0) by the fourth-order 5-point central difference."""
    return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)


def _deriv_point(rng, gap, d=4):
    if gap is None:
        return _well_conditioned(rng, d)
    s = np.array([1.2, 1.2 * (1 + gap), 0.6, 2.0])[:d]
    return _point(rng, s)[0]


@pytest.mark.parametrize("depth", [2, 3, 7, np.inf])
@pytest.mark.parametrize("gap", DERIV_GAPS)
def test_derivative_against_finite_differences(rng, gap, depth):
    X = _deriv_point(rng, gap)
    V, Z = rng.standard_normal((2, 4, 4))
    exact = depth_operator_derivative(X, depth, V, Z)
    # Fourth-order central differences (5-point stencil) with h = 5e-4: truncation
    # h^4 |f^(5)| / 30 ~ 1e-14 and rounding ~ eps/h ~ 5e-13, relative; the operator
    # is analytic in X (for full rank), so the stencil may cross the (nearly)
    # coincident singular values. Measured <= 1.2e-11; tolerance 1e-10.
    assert _rel(exact, _fd5(lambda t: depth_operator(X + t * V, depth, Z), 5e-4)) <= 1e-10


@pytest.mark.parametrize("depth", [2, 5, np.inf])
@pytest.mark.parametrize("gap", [None, 0.0, 1e-7])
def test_derivative_adjoint(rng, gap, depth):
    d = 4
    X = _deriv_point(rng, gap, d)
    V, Z, Y = rng.standard_normal((3, d, d))
    K = depth_operator_derivative_adjoint(X, depth, Z, Y)
    lhs = np.vdot(Y, depth_operator_derivative(X, depth, V, Z))
    assert abs(lhs - np.vdot(K, V)) <= 1e-12 * np.linalg.norm(K) * np.linalg.norm(V)
    # Against 5-point differences of V -> <Y, A_{X+V}(Z)>, one basis direction at a time.
    fd = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            E = np.zeros((d, d))
            E[i, j] = 1.0
            fd[i, j] = _fd5(lambda t, E=E: np.vdot(Y, depth_operator(X + t * E, depth, Z)), 5e-4)
    assert _rel(K, fd) <= 1e-10


def test_derivative_depth_one_is_zero(rng):
    X, V, Z = rng.standard_normal((3, 3, 3))
    assert not np.any(depth_operator_derivative(X, 1, V, Z))
    assert not np.any(depth_christoffel(X, 1, V, Z))


def _metric_matrix(X, depth):
    """Dense metric tensor of g^N in the coordinates vec_F(X): inverse of eq. 4.14."""
    if np.isinf(depth):
        return np.linalg.inv(operator_matrix(X, depth))
    return np.linalg.inv(dense_depth_matrix(X, depth))


def _brute_force_christoffel(X, depth, h=1e-5):
    r"""Gamma^k_{ij} = 1/2 g^{kl}(d_i g_{lj} + d_j g_{li} - d_l g_{ij}) by central differences."""
    d = X.shape[0]
    n = d * d
    dG = np.empty((n, n, n))  # dG[m] = d g / d x_m
    for m in range(n):
        E = np.zeros(n)
        E[m] = h
        E = E.reshape(d, d, order="F")
        dG[m] = (_metric_matrix(X + E, depth) - _metric_matrix(X - E, depth)) / (2 * h)
    ginv = np.linalg.inv(_metric_matrix(X, depth))
    # first kind: Gamma_{l,ij} = 1/2 (d_i g_{lj} + d_j g_{li} - d_l g_{ij})
    first = 0.5 * (np.einsum("ilj->lij", dG) + np.einsum("jli->lij", dG) - dG)
    return np.einsum("kl,lij->kij", ginv, first)


@pytest.mark.parametrize("depth", [2, 3, np.inf])
@pytest.mark.parametrize("d", [2, 3])
def test_christoffel_against_koszul(rng, d, depth):
    X = _well_conditioned(rng, d)
    Gam = _brute_force_christoffel(X, depth)
    U, V = rng.standard_normal((2, d, d))
    u, v = U.reshape(-1, order="F"), V.reshape(-1, order="F")
    ref = np.einsum("kij,i,j->k", Gam, u, v).reshape(d, d, order="F")
    got = depth_christoffel(X, depth, U, V)
    # Central differences of the dense metric: O(h^2) ~ 1e-10 truncation plus
    # eps/h ~ 1e-11 rounding, amplified by the metric's condition (<= 1e2).
    assert _rel(got, ref) <= 1e-7
    np.testing.assert_allclose(depth_christoffel(X, depth, V, U), got, rtol=1e-12, atol=1e-14)
