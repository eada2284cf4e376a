"""The depth operator A_{N,X} ([G] eq. 4.14), its inverse, derivatives and Christoffel term.

References used here:
- the literal sum of Kronecker products of fractional matrix powers (eq. 4.14),
  with powers from ``numpy.linalg.eigh`` of XX^T and X^TX;
- the multiplier formulas of [G] eq. 7.13-7.14 and 14.8-14.9 evaluated with
  mpmath at 50 significant digits;
- central finite differences and the Koszul formula for the derivatives.
"""

from __future__ import annotations

from unittest import mock

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dln_manifolds import (
    DepthFrame,
    depth_christoffel,
    depth_inner_product,
    depth_multipliers,
    depth_operator,
    depth_operator_derivative,
    depth_operator_derivative_adjoint,
    depth_operator_power,
    inverse_depth_operator,
)
from dln_manifolds.depth_metric import (
    _DIVDIFF_CUTOFF,
    _complement_divided_differences,
    _divided_differences,
    _log_sq,
)
from dln_manifolds.depth_metric import depth_q_and_scale as _q_and_scale
from dln_manifolds.depth_metric import multiplier_d_alpha as _multiplier_d_alpha
from dln_manifolds.depth_metric import multiplier_from_alpha as _multiplier_from_alpha

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


# ---------------------------------------------------------------------------
# DepthFrame: one SVD, same results as the standalone formulas it replaced
# ---------------------------------------------------------------------------


def _old_divided_differences(s, depth):
    """``_first_divided_differences`` as it was before DepthFrame (verbatim)."""
    q, scale = _q_and_scale(depth)
    alpha = _log_sq(s)
    lam = s**2
    ai, am, aj = alpha[:, None, None], alpha[None, :, None], alpha[None, None, :]
    fi = _multiplier_from_alpha(ai, aj, q, scale)
    fm = _multiplier_from_alpha(am, aj, q, scale)
    close = np.abs(ai - am) < _DIVDIFF_CUTOFF
    with np.errstate(invalid="ignore", divide="ignore"):
        quotient = (fi - fm) / (lam[:, None, None] - lam[None, :, None])
    shape = (s.size,) * 3
    mid = np.broadcast_to(0.5 * (ai + am), shape)
    deriv = _multiplier_d_alpha(mid, np.broadcast_to(aj, shape), q, scale) * np.exp(-mid)
    return np.where(close, deriv, quotient)


def _old_apply(X, depth, Z, p):
    """``_apply_in_frame`` before DepthFrame: own SVD, multipliers to the power p."""
    U, s, Vh = np.linalg.svd(X)
    return U @ (depth_multipliers(s, depth) ** p * (U.T @ Z @ Vh.T)) @ Vh


def _old_derivative(X, depth, V, Z):
    U, s, Vh = np.linalg.svd(X)
    T = _old_divided_differences(s, depth)
    Vt, Zt = U.T @ V @ Vh.T, U.T @ Z @ Vh.T
    dP = Vt * s[None, :] + s[:, None] * Vt.T
    dQ = Vt.T * s[None, :] + s[:, None] * Vt
    out = np.einsum("imj,im,mj->ij", T, dP, Zt) + np.einsum("mji,im,mj->ij", T, Zt, dQ)
    return U @ out @ Vh


def _old_adjoint(X, depth, Z, Y):
    U, s, Vh = np.linalg.svd(X)
    T = _old_divided_differences(s, depth)
    Zt, Yt = U.T @ Z @ Vh.T, U.T @ Y @ Vh.T
    C1 = np.einsum("ij,imj,mj->im", Yt, T, Zt)
    C2 = np.einsum("ij,mji,im->mj", Yt, T, Zt)
    return U @ ((C1 + C1.T) * s[None, :] + s[:, None] * (C2 + C2.T)) @ Vh


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 4)])
def test_derivative_adjoint_complex(rng, shape):
    # <K, V> = Re tr(K^* V) = Re <Y, DA[V] Z> for complex X, V, Z, Y (the adjoint once
    # lacked the conjugate of Z: right only for real arguments).
    X, V, Z, Y = rng.standard_normal((4,) + shape) + 1j * rng.standard_normal((4,) + shape)
    f = DepthFrame(X, 3)
    lhs = np.real(np.vdot(f.derivative_adjoint(Z, Y), V))
    rhs = np.real(np.vdot(Y, f.derivative(V, Z)))
    assert abs(lhs - rhs) <= 1e-12 * (1 + abs(rhs))
    if shape[0] == shape[1]:  # negative control: the unconjugated formula fails here
        U, s, Vh = np.linalg.svd(X)
        T = f.divided_differences
        Zt, Yt = U.conj().T @ Z @ Vh.conj().T, U.conj().T @ Y @ Vh.conj().T
        C1 = np.einsum("ij,imj,mj->im", Yt, T, Zt)
        C2 = np.einsum("ij,mji,im->mj", Yt, T, Zt)
        old = U @ ((C1 + C1.T) * s[None, :] + s[:, None] * (C2 + C2.T)) @ Vh
        assert abs(np.real(np.vdot(old, V)) - rhs) > 1e-3 * abs(rhs)


def _old_christoffel(X, depth, U, V):
    """``depth_christoffel`` before DepthFrame: seven SVDs, Koszul formula."""
    BU, BV = _old_apply(X, depth, U, -1.0), _old_apply(X, depth, V, -1.0)
    t = _old_derivative(X, depth, U, BV) + _old_derivative(X, depth, V, BU)
    return -0.5 * t + 0.5 * _old_apply(X, depth, _old_adjoint(X, depth, BV, BU), 1.0)


@given(
    d=st.integers(1, 5),
    depth=st.sampled_from([2, 3, 7, np.inf]),
    gap=st.sampled_from([None, 0.0, 1e-9, 1e-7, 1e-5, 1e-3]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=20)
def test_frame_equals_old_standalone_formulas(d, depth, gap, seed):
    rng = np.random.default_rng(seed)
    if gap is None or d < 2:
        X = _well_conditioned(rng, d)
    else:
        s = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=d))
        s[1] = s[0] * (1 + gap)
        X = _point(rng, s)[0]
    U, V, Z = rng.standard_normal((3, d, d))
    f = DepthFrame(X, depth)
    # Same formulas on the same singular values (measured: bitwise equal). A one-ulp
    # difference in the multipliers is amplified by 1/gap >= 1/_DIVDIFF_CUTOFF in the
    # quotients, hence the tolerance 4 eps / _DIVDIFF_CUTOFF ~ 1e-9 relative to max|T|.
    T_old = _old_divided_differences(f.s, depth)
    atol = 4 * np.finfo(float).eps / _DIVDIFF_CUTOFF * np.abs(T_old).max()
    np.testing.assert_allclose(f.divided_differences, T_old, rtol=0, atol=atol)
    for p in (1.0, -1.0, 0.5, -0.3):
        np.testing.assert_allclose(
            f.power(Z, p), _old_apply(X, depth, Z, p), rtol=1e-12, atol=1e-12
        )
    np.testing.assert_allclose(f.operator(Z), _old_apply(X, depth, Z, 1.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f.inverse(Z), _old_apply(X, depth, Z, -1.0), rtol=1e-12, atol=1e-12)
    assert f.inner(U, V) == pytest.approx(
        np.vdot(U, _old_apply(X, depth, V, -1.0)), rel=1e-12, abs=1e-12
    )
    for got, ref in (
        (f.derivative(V, Z), _old_derivative(X, depth, V, Z)),
        (f.derivative_adjoint(Z, U), _old_adjoint(X, depth, Z, U)),
        (f.christoffel(U, V), _old_christoffel(X, depth, U, V)),
        (f.geodesic_acceleration(V), -_old_christoffel(X, depth, V, V)),
    ):
        # Same T; only the order of the frame changes differs (the old Christoffel
        # term went back to the standard basis between its five pieces): rounding
        # eps times the spread of the multipliers (< 1e2 here). Measured <= 5e-15.
        assert _rel(got, ref) <= 1e-12
    # the module functions are the frame methods
    np.testing.assert_array_equal(depth_christoffel(X, depth, U, V), f.christoffel(U, V))
    np.testing.assert_array_equal(depth_operator_derivative(X, depth, V, Z), f.derivative(V, Z))
    np.testing.assert_array_equal(depth_operator(X, depth, Z), f.operator(Z))


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 5)])
@pytest.mark.parametrize("depth", [2, 3, 7, np.inf])
@pytest.mark.parametrize("spectrum", ["generic", "tie", "near tie", "far"])
def test_frame_reuses_the_multipliers_pieces_exactly(rng, shape, depth, spectrum):
    """The divided differences (and the complement ones) from the pieces of the multipliers'
    evaluation that the frame keeps equal, bit for bit, those evaluated from scratch
    (:func:`multiplier_d_alpha` and the expm1 ratios), at ties, near-ties (< the cutoffs)
    and a large spread of singular values; and the inlined geodesic acceleration equals
    the Christoffel term, real and complex (to rounding: other order of the sums)."""
    r = min(shape)
    s = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=r))
    if spectrum == "tie":
        s[1] = s[0]
    elif spectrum == "near tie":
        s[1] = s[0] * (1 + 1e-8)
        s[-1] = s[0] * (1 + 1e-5)
    elif spectrum == "far":
        s[0], s[-1] = 1e3, 1e-3
    U, _ = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))
    V, _ = np.linalg.qr(rng.standard_normal((shape[1], shape[1])))
    X = (U[:, :r] * s) @ V[:, :r].T
    f = DepthFrame(X, depth)
    np.testing.assert_array_equal(f.divided_differences, _divided_differences(f.s, f.M, depth))
    # negative control: pieces of another point give other values
    other = DepthFrame(1.5 * X, depth)
    assert np.any(_divided_differences(f.s, f.M, depth, other._pieces) != f.divided_differences)
    if shape[0] != shape[1] and np.isfinite(depth):
        for got, ref in zip(
            f._complement_dd, _complement_divided_differences(f.s, f.M, depth), strict=True
        ):
            np.testing.assert_array_equal(got, ref)
    if shape[0] != shape[1] and np.isinf(depth):
        return
    W = rng.standard_normal((2,) + shape) + 1j * rng.standard_normal((2,) + shape)
    for Xc, Z in ((X, W.real), (X + 0.3j * W[1], W[0])):
        fc = DepthFrame(Xc, depth)
        assert _rel(fc.geodesic_acceleration(Z), -fc.christoffel(Z, Z)) <= 1e-12


def test_frame_computes_the_svd_once(rng):
    X = _well_conditioned(rng, 4)
    U, V, Z = rng.standard_normal((3, 4, 4))
    with mock.patch.object(np.linalg, "svd", wraps=np.linalg.svd) as svd:
        f = DepthFrame(X, 3)
        f.operator(Z), f.inverse(Z), f.power(Z, 0.5), f.inner(U, V)
        f.derivative(U, Z), f.derivative_adjoint(Z, V), f.christoffel(U, V)
        f.geodesic_acceleration(V)
        assert svd.call_count == 1
        depth_christoffel(X, 3, U, V)  # was seven SVDs
        assert svd.call_count == 2


def test_frame_divided_differences_are_lazy_and_cached(rng):
    X = _well_conditioned(rng, 3)
    Z = rng.standard_normal((3, 3))
    target = "dln_manifolds.depth_metric._divided_differences"
    with mock.patch(target, wraps=_divided_differences) as dd:
        f = DepthFrame(X, 4)
        f.operator(Z), f.inverse(Z), f.inner(Z, Z)
        assert dd.call_count == 0  # O(d^3) memory only when derivatives are asked for
        f.christoffel(Z, Z), f.derivative(Z, Z), f.geodesic_acceleration(Z)
        assert dd.call_count == 1


@pytest.mark.parametrize("depth", [1, 3, np.inf])
def test_frame_batches(rng, depth):
    d = 3
    Xs = np.stack([_well_conditioned(rng, d) for _ in range(2)])
    U, V = rng.standard_normal((2, 2, 5, d, d))  # batch (2, 5) against points (2, 1)
    f = DepthFrame(Xs[:, None], depth)
    gam, dA, inner = f.christoffel(U, V), f.derivative(U, V), f.inner(U, V)
    assert gam.shape == dA.shape == (2, 5, d, d) and inner.shape == (2, 5)
    for i in range(2):
        g = DepthFrame(Xs[i], depth)
        # a batched SVD may differ from the single one by rounding
        np.testing.assert_allclose(gam[i], g.christoffel(U[i], V[i]), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(dA[i], g.derivative(U[i], V[i]), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(inner[i], g.inner(U[i], V[i]), rtol=1e-12)
        for j in range(5):
            ref = depth_christoffel(Xs[i], depth, U[i, j], V[i, j])
            np.testing.assert_allclose(gam[i, j], ref, rtol=1e-11, atol=1e-12)


def test_frame_validation(rng):
    singular = np.diag([1.0, 0.0, 2.0])
    Z = rng.standard_normal((3, 3))
    f = DepthFrame(singular, 3)  # the operator itself is defined at any rank
    np.testing.assert_allclose(f.operator(Z), depth_operator(singular, 3, Z))
    for call in (
        lambda: f.inverse(Z),
        lambda: f.christoffel(Z, Z),
        lambda: f.derivative(Z, Z),
        lambda: DepthFrame(singular, 3, full_rank=True),
    ):
        with pytest.raises(ValueError, match="X is rank-deficient"):
            call()
    g = DepthFrame(np.eye(3), 2)
    with pytest.raises(ValueError, match="Z1 must have shape"):
        g.inner(np.eye(2), Z)
    with pytest.raises(ValueError, match="U_vec contains NaN"):
        g.christoffel(np.full((3, 3), np.nan), Z)
    with pytest.raises(TypeError, match="power must be a real number"):
        g.power(Z, "half")
    with pytest.raises(ValueError, match="X must have shape"):
        DepthFrame(np.ones((2, 0, 3)), 2)  # (non-square shapes are points of M_{m x n})
    with pytest.raises(TypeError, match="depth"):
        DepthFrame(np.eye(3), 2.5)
    with pytest.raises(ValueError, match="U_vec must have shape"):  # wrappers take no batches
        depth_christoffel(np.eye(3), 2, np.ones((2, 3, 3)), Z)


def test_depth_inner_product_batches_give_one_value_per_pair():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    Z1, Z2 = rng.standard_normal((2, 4, 3, 3))
    batch = depth_inner_product(X, 3, Z1, Z2)
    assert batch.shape == (4,)
    singles = [depth_inner_product(X, 3, a, b) for a, b in zip(Z1, Z2, strict=True)]
    assert isinstance(singles[0], float)
    np.testing.assert_allclose(batch, singles, rtol=1e-14)  # same arithmetic, rounding only
