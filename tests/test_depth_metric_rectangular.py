"""The depth operator and the metric g^N on non-square full-rank matrices (M_{m x n}, g^N).

Every quantity is checked against brute force: eq. 4.14 of [G] summed literally with
eigh-based matrix powers ((.)^0 = I, exact zeros for the kernel of XX^T or X^TX), its
dense Kronecker matrix, finite differences of the operator and of the dense metric (the
Koszul formula), and mpmath at repeated and nearly repeated singular values. The square
path is compared bit for bit with the module as it was before non-square X existed.
"""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import mpmath
import numpy as np
import pytest

from dln_manifolds import (
    DepthFrame,
    depth_christoffel,
    depth_inner_product,
    depth_operator,
    depth_operator_derivative,
    depth_operator_derivative_adjoint,
    depth_operator_power,
    inverse_depth_operator,
)
from dln_manifolds import depth_metric as dm
from dln_manifolds.depth_metric import svd_frame

SHAPES = [(5, 3), (3, 5), (6, 2)]
DEPTHS = [1, 2, 3, 7]


def _orthonormal(rng, m, r):
    Q, R = np.linalg.qr(rng.standard_normal((m, r)))
    return Q * np.sign(np.diag(R))


def _point(rng, shape, spectrum="random"):
    """X = U diag(s) V^T of the given shape with a chosen spectrum (r = min(m, n))."""
    m, n = shape
    r = min(m, n)
    if spectrum == "random":
        s = np.exp(rng.uniform(-0.7, 0.7, size=r))
    else:
        gap = {"repeated": 0.0, "near": 1e-9}[spectrum]
        s = np.array([1.7, 1.7 * (1 + gap), 0.6, 0.6 * (1 - gap), 1.1, 0.9][:r])
    return (_orthonormal(rng, m, r) * s) @ _orthonormal(rng, n, r).T


def _power(S, p):
    """Hermitian PSD power with (.)^0 = I and exact zeros below 1e-12 of the top eigenvalue."""
    if p == 0:
        return np.eye(S.shape[0])
    w, Q = np.linalg.eigh(S)
    w = np.where(w < 1e-12 * w.max(), 0.0, w)
    return (Q * w**p) @ Q.conj().T


def literal_operator(X, N, Z):
    """[G] eq. 4.14 literally: sum_k (XX^T)^{(N-k)/N} Z (X^TX)^{(k-1)/N}."""
    P, Q = X @ X.conj().T, X.conj().T @ X
    return sum(_power(P, (N - k) / N) @ Z @ _power(Q, (k - 1) / N) for k in range(1, N + 1))


def kronecker_operator(X, N):
    """Dense (mn x mn) matrix of eq. 4.14 on column-major vec: sum_k kron(Q_k^T, P_k)."""
    P, Q = X @ X.T, X.T @ X
    return sum(np.kron(_power(Q, (k - 1) / N).T, _power(P, (N - k) / N)) for k in range(1, N + 1))


def _vec(Z):
    return Z.reshape(-1, order="F")


def _dense(fun, shape):
    """Matrix of a linear map on (m, n) matrices in the column-major basis."""
    m, n = shape
    basis = np.eye(m * n).reshape(m * n, m, n, order="F")
    return np.stack([_vec(fun(E)) for E in basis], axis=1)


def _fd(fun, h=1e-3):
    """Fourth-order central difference of t -> fun(t) at 0."""
    return (-fun(2 * h) + 8 * fun(h) - 8 * fun(-h) + fun(-2 * h)) / (12 * h)


# -- the operator ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spectrum", ["random", "repeated", "near"])
@pytest.mark.parametrize("N", DEPTHS)
def test_operator_matches_literal_sum_and_kronecker_matrix(rng, shape, spectrum, N):
    X = _point(rng, shape, spectrum)
    Z = rng.standard_normal(shape)
    got = depth_operator(X, N, Z)
    ref = literal_operator(X, N, Z)
    assert got.shape == shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.linalg.norm(ref))
    dense = _dense(DepthFrame(X, N).operator, shape)
    np.testing.assert_allclose(dense, kronecker_operator(X, N), rtol=0, atol=1e-12 * N)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_operator_complement_blocks_in_closed_form(rng, shape):
    """U_perp^T A(Z) V = U_perp^T Z V diag(s^{2(N-1)/N}) (tall); U^T A(Z) V_perp likewise."""
    N = 4
    X = _point(rng, shape)
    U, s, Vt = np.linalg.svd(X, full_matrices=True)
    r = min(shape)
    Z = rng.standard_normal(shape)
    A = U.T @ depth_operator(X, N, Z) @ Vt.T
    Zf = U.T @ Z @ Vt.T
    c = s ** (2 * (N - 1) / N)
    if shape[0] > shape[1]:
        np.testing.assert_allclose(A[r:], Zf[r:] * c[None, :], rtol=1e-13, atol=1e-14)
    else:
        np.testing.assert_allclose(A[:, r:], c[:, None] * Zf[:, r:], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(DepthFrame(X, N).c, c, rtol=1e-14)


def test_operator_at_large_depth_and_any_rank(rng):
    # N = 1000 against the literal sum; the complement block only meets one term.
    X = _point(rng, (5, 3), "near")
    Z = rng.standard_normal((5, 3))
    ref = literal_operator(X, 1000, Z)
    got = depth_operator(X, 1000, Z)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * np.linalg.norm(ref))
    # Rank 1 < min(m, n): the operator is still eq. 4.14 ((.)^0 = I), but not invertible.
    X1 = np.outer(rng.standard_normal(5), rng.standard_normal(3))
    np.testing.assert_allclose(depth_operator(X1, 3, Z), literal_operator(X1, 3, Z), atol=1e-12)
    with pytest.raises(ValueError, match="X is rank-deficient"):
        inverse_depth_operator(X1, 3, Z)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_operator_accuracy_at_repeated_singular_values_mpmath(rng, shape):
    """Complement and square blocks against 50-digit multipliers, in the known frame."""
    mpmath.mp.dps = 50
    m, n = shape
    r = min(shape)
    s = np.array([1.3, 1.3 * (1 + 1e-12), 0.7])
    U, V = _orthonormal(rng, m, m), _orthonormal(rng, n, n)
    X = (U[:, :r] * s) @ V[:, :r].T
    Z = rng.standard_normal(shape)
    for N in (2, 7, 10_000):
        q = mpmath.mpf(1) / N
        sm = [mpmath.mpf(float(v)) for v in s]

        def f(a, b, N=N, q=q):
            if a == b:
                return N * a ** (2 - 2 * q)
            return (a**2 - b**2) / (a ** (2 * q) - b ** (2 * q))

        full = np.zeros(shape)
        for i in range(m):
            for j in range(n):
                if i < r and j < r:
                    full[i, j] = float(f(sm[i], sm[j]))
                elif i < r or j < r:
                    full[i, j] = float(sm[min(i, j)] ** (2 - 2 * q))
        ref = U @ (full * (U.T @ Z @ V)) @ V.T
        got = depth_operator(X, N, Z)
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-13


def test_inverse_and_power(rng):
    for shape in SHAPES:
        X = _point(rng, shape)
        Z = rng.standard_normal(shape)
        for N in DEPTHS:
            f = DepthFrame(X, N)
            np.testing.assert_allclose(f.inverse(f.operator(Z)), Z, atol=1e-13)
            np.testing.assert_allclose(f.operator(inverse_depth_operator(X, N, Z)), Z, atol=1e-13)
            half = depth_operator_power(X, N, Z, 0.5)
            np.testing.assert_allclose(f.power(half, 0.5), f.operator(Z), atol=1e-13)
            np.testing.assert_allclose(f.power(Z, -1.0), f.inverse(Z), atol=1e-13)


def test_metric_is_symmetric_positive_definite_and_matches_dense(rng):
    for shape in SHAPES:
        X = _point(rng, shape, "near")
        for N in (2, 3, 7):
            G = _dense(DepthFrame(X, N).inverse, shape)
            np.testing.assert_allclose(G, G.T, atol=1e-12)
            assert np.linalg.eigvalsh(G).min() > 0
            np.testing.assert_allclose(G @ kronecker_operator(X, N), np.eye(G.shape[0]), atol=1e-10)
            Z1, Z2 = rng.standard_normal((2,) + shape)
            ref = _vec(Z1) @ np.linalg.solve(kronecker_operator(X, N), _vec(Z2))
            assert abs(depth_inner_product(X, N, Z1, Z2) - ref) < 1e-12 * (1 + abs(ref))


# -- derivatives and the connection ---------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
@pytest.mark.parametrize("spectrum", ["random", "repeated", "near"])
@pytest.mark.parametrize("N", [2, 3, 7, np.inf])
def test_derivative_matches_finite_differences(rng, shape, spectrum, N):
    X = _point(rng, shape, spectrum)
    V, Z = rng.standard_normal((2,) + shape)
    got = depth_operator_derivative(X, N, V, Z)
    ref = _fd(lambda t: depth_operator(X + t * V, N, Z))
    assert np.max(np.abs(got - ref)) < 1e-8 * np.max(np.abs(ref))


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (6, 2)])
@pytest.mark.parametrize("N", [1, 2, 3, 7, np.inf])
def test_derivative_adjoint_identity(rng, shape, N):
    X = _point(rng, shape, "near")
    V, Z, Y = rng.standard_normal((3,) + shape)
    K = depth_operator_derivative_adjoint(X, N, Z, Y)
    lhs = np.sum(K * V)
    rhs = np.sum(Y * depth_operator_derivative(X, N, V, Z))
    assert abs(lhs - rhs) < 1e-12 * (1 + abs(rhs))


def _koszul(X, N, U, V, h=1e-4):
    """Gamma(U, V) from finite differences of the dense metric matrix (Koszul formula)."""
    shape = X.shape

    def metric(Y):
        return np.linalg.inv(kronecker_operator(Y, N))

    dG = [
        _fd(lambda t, E=E: metric(X + t * E), h)
        for E in np.eye(X.size).reshape(X.size, *shape, order="F")
    ]
    u, v = _vec(U), _vec(V)
    dGu = sum(ui * g for ui, g in zip(u, dG, strict=True))
    dGv = sum(vi * g for vi, g in zip(v, dG, strict=True))
    w = np.array([u @ g @ v for g in dG])
    gam = 0.5 * np.linalg.solve(metric(X), dGu @ v + dGv @ u - w)
    return gam.reshape(shape, order="F")


@pytest.mark.parametrize("shape", [(4, 2), (2, 4)])
@pytest.mark.parametrize("N", [2, 3])
def test_christoffel_matches_koszul_formula(rng, shape, N):
    X = _point(rng, shape)
    U, V = rng.standard_normal((2,) + shape)
    ref = _koszul(X, N, U, V)
    got = depth_christoffel(X, N, U, V)
    assert np.max(np.abs(got - ref)) < 1e-7 * np.max(np.abs(ref))
    f = DepthFrame(X, N)
    np.testing.assert_allclose(f.christoffel(U, V), f.christoffel(V, U), atol=1e-13)
    np.testing.assert_allclose(f.geodesic_acceleration(V), -f.christoffel(V, V), atol=1e-13)
    Gh = f.christoffel_hat(f.to_frame(U), f.to_frame(V))
    np.testing.assert_allclose(f.from_frame(Gh), got, atol=1e-12)


def test_depth_one_is_flat(rng):
    X = _point(rng, (5, 3))
    U, V = rng.standard_normal((2, 5, 3))
    f = DepthFrame(X, 1)
    assert np.array_equal(f.operator(U), U)
    assert not np.any(f.christoffel(U, V)) and not np.any(f.derivative(U, V))


# -- depth = inf, frames, batches, complex ------------------------------------------


def test_infinite_depth_is_the_rescaled_limit_and_not_invertible(rng):
    X = _point(rng, (5, 3))
    Z = rng.standard_normal((5, 3))
    got = depth_operator(X, np.inf, Z)
    big = 10**7
    np.testing.assert_allclose(got, depth_operator(X, big, Z) / big, rtol=0, atol=1e-5)
    U, _, Vt = np.linalg.svd(X)
    np.testing.assert_allclose((U.T @ got @ Vt.T)[3:], 0.0, atol=1e-14)  # complement block
    f = DepthFrame(X, np.inf)
    for call in (
        lambda: f.inverse(Z),
        lambda: f.inner(Z, Z),
        lambda: f.power(Z, -0.5),
        lambda: f.christoffel(Z, Z),
        lambda: f.geodesic_acceleration(Z),
        lambda: inverse_depth_operator(X.T, np.inf, Z.T),
        lambda: depth_inner_product(X, np.inf, Z, Z),
    ):
        with pytest.raises(ValueError, match="depth must be finite for a non-square X"):
            call()
    np.testing.assert_allclose(f.power(Z, 0.5), f.power(f.power(Z, 0.25), 0.25), atol=1e-14)


def test_frame_coordinates_and_svd(rng):
    for shape in [(5, 3), (3, 5)]:
        X = _point(rng, shape)
        f = DepthFrame(X, 3)
        Z = rng.standard_normal(shape)
        Zh = f.to_frame(Z)
        assert Zh.shape == shape
        np.testing.assert_allclose(Zh[:3, :3], f.U.T @ Z @ f.Vh.T, atol=1e-14)
        np.testing.assert_allclose(f.from_frame(Zh), Z, atol=1e-14)
        np.testing.assert_allclose(np.sum(Zh**2), np.sum(Z**2), rtol=1e-14)  # orthogonal
        U, s, Vh = svd_frame(X)
        np.testing.assert_allclose((U * s) @ Vh, X, atol=1e-14)
        assert f.d == s.size == 3 and f.shape == shape and f.M.shape == (3, 3)


def test_batches_of_points_and_vectors(rng):
    X = np.stack([_point(rng, (5, 3)) for _ in range(2)])
    Z, V = rng.standard_normal((2, 4, 2, 5, 3))
    f = DepthFrame(X, 3)
    op, gam, inner = f.operator(Z), f.christoffel(Z, V), f.inner(Z, V)
    assert op.shape == gam.shape == (4, 2, 5, 3) and inner.shape == (4, 2)
    for b in range(2):
        g = DepthFrame(X[b], 3)
        np.testing.assert_allclose(op[:, b], g.operator(Z[:, b]), atol=1e-13)
        np.testing.assert_allclose(gam[:, b], g.christoffel(Z[:, b], V[:, b]), atol=1e-12)
        np.testing.assert_allclose(inner[:, b], g.inner(Z[:, b], V[:, b]), atol=1e-12)


def test_complex_operator_and_derivative(rng):
    for shape in [(4, 2), (2, 4)]:
        X, Z, V = rng.standard_normal((3,) + shape) + 1j * rng.standard_normal((3,) + shape)
        for N in (2, 5):
            np.testing.assert_allclose(
                depth_operator(X, N, Z), literal_operator(X, N, Z), atol=1e-12
            )
            ref = _fd(lambda t, X=X, N=N, V=V, Z=Z: depth_operator(X + t * V, N, Z))
            got = depth_operator_derivative(X, N, V, Z)
            assert np.max(np.abs(got - ref)) < 1e-8 * np.max(np.abs(ref))


def test_bad_input_names_the_argument(rng):
    X = _point(rng, (5, 3))
    f = DepthFrame(X, 2)
    with pytest.raises(ValueError, match=r"Z must have shape \(\.\.\., 5, 3\) \(the shape of X\)"):
        f.operator(np.ones((3, 5)))
    with pytest.raises(ValueError, match="Z must have shape"):
        depth_operator(X, 2, np.ones((3, 3)))
    with pytest.raises(ValueError, match="V must have shape"):
        depth_operator_derivative(X, 2, np.ones((2, 5, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="Z1 contains NaN"):
        f.inner(np.full((5, 3), np.nan), np.ones((5, 3)))
    with pytest.raises(ValueError, match="Z must have shape"):
        f.operator(np.ones((0, 3)))
    with pytest.raises(ValueError, match="X must have shape"):
        DepthFrame(np.ones((2, 0, 3)), 2)
    with pytest.raises(ValueError, match="X is rank-deficient"):
        DepthFrame(np.eye(5, 3) * [1.0, 1.0, 0.0], 2, full_rank=True)


# -- the square path is the module as it was ------------------------------------------

# the commit before non-square X existed (the one that added dln_manifolds._linalg)
_BASE = "ed02962bf85472465731badcf409deece0c4995c"


def _old_module():
    root = Path(__file__).resolve().parents[1]
    try:
        src = subprocess.run(
            ["git", "show", f"{_BASE}:dln_manifolds/depth_metric.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git history with the pre-rectangular depth_metric.py not available")
    mod = types.ModuleType("dln_manifolds._depth_metric_before_widths")
    mod.__package__ = "dln_manifolds"
    exec(compile(src, "depth_metric@" + _BASE, "exec"), mod.__dict__)
    return mod


def test_square_results_bit_identical_to_before(rng):
    old = _old_module()
    with pytest.raises(ValueError):  # negative control: the old code had no non-square X
        old.depth_operator(np.ones((3, 2)), 2, np.ones((3, 2)))
    for d in (1, 3):
        for N in (1, 2, 7, np.inf):
            X = rng.standard_normal((d, d)) + 2 * np.eye(d)
            Z, W, Y = rng.standard_normal((3, d, d))
            for name, args in [
                ("depth_operator", (Z,)),
                ("inverse_depth_operator", (Z,)),
                ("depth_operator_power", (Z, 0.5)),
                ("depth_inner_product", (Z, W)),
                ("depth_operator_derivative", (W, Z)),
                ("depth_operator_derivative_adjoint", (Z, Y)),
                ("depth_christoffel", (W, Z)),
            ]:
                new_value = getattr(dm, name)(X, N, *args)
                assert np.array_equal(new_value, getattr(old, name)(X, N, *args)), name
            Xb = rng.standard_normal((2, d, d)) + 2 * np.eye(d)
            fn, fo = dm.DepthFrame(Xb, N), old.DepthFrame(Xb, N)
            for meth, args in [
                ("operator", (Z,)),
                ("inner", (Z, W)),
                ("geodesic_acceleration", (W,)),
                ("christoffel_hat", (W, Z)),
                ("to_frame", (Z,)),
            ]:
                assert np.array_equal(getattr(fn, meth)(*args), getattr(fo, meth)(*args)), meth


@pytest.mark.parametrize("N", [2, 7, 10_000, np.inf])
def test_complement_divided_differences_against_mpmath(N):
    """E and G (the divided differences through the eigenvalue 0) at near-ties and far apart."""
    mpmath.mp.dps = 50
    s = np.array([2.0, 2.0 * (1 + 1e-12), 1.0, 1.0 * (1 - 1e-7), 3e-3, 1.0 + 1e-3])
    M = dm.depth_multipliers(s, N)
    E, G = dm._complement_divided_differences(s, M, N)
    lam = [mpmath.mpf(float(v)) ** 2 for v in s]
    inf = np.isinf(N)
    q = mpmath.mpf(0) if inf else mpmath.mpf(1) / N

    def f(a, c):
        if inf:
            return a if a == c else (a - c) / mpmath.log(a / c)
        return N * a ** (1 - q) if a == c else (a - c) / (a**q - c**q)

    def cfun(a):
        return mpmath.mpf(0) if inf else a ** (1 - q)

    for i, a in enumerate(lam):
        for j, c in enumerate(lam):
            e_ref = (f(a, c) - cfun(c)) / a
            if inf:
                g_ref = 0
            elif a == c:
                g_ref = (1 - q) * a ** (-q)
            else:
                g_ref = (cfun(a) - cfun(c)) / (a - c)
            assert abs(E[i, j] - float(e_ref)) <= 1e-13 * abs(float(e_ref))
            assert abs(G[i, j] - float(g_ref)) <= 1e-13 * abs(float(g_ref))
