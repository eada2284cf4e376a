"""Orbit entropy and volume density for networks of general widths, against brute force.

The orbit over X of a balanced network of widths (d_0, ..., d_N) is the orbit of
G = O(d_1) x ... x O(d_{N-1}) through a balanced point; its stabilizer is
H = O(d_1 - r) x ... x O(d_{N-1} - r). The brute force needs no Stiefel formula:
vol(orbit) = vol(G) / vol(H) * (product of the nonzero singular values of the map
so(d_1) x ... x so(d_{N-1}) -> T_W, alpha -> (.., alpha_k W_k, -W_{k+1} alpha_k, ..)
on Frobenius-orthonormal bases), with vol O(d) = c_d (checked in tests/test_entropy.py).
"""

import math

import numpy as np
import pytest
import scipy.linalg
from dense import dense_cometric
from scipy.special import gammaln

from dln_manifolds import (
    balanced_point,
    depth_inner_product,
    depth_multipliers,
    depth_operator,
    entropy_gradient,
    log_orthogonal_group_volume,
    log_volume_density,
    orbit_entropy,
    orbit_volume,
    volume_density,
)
from dln_manifolds.entropy import log_stiefel_volume

WIDTHS = [(2, 3, 2), (3, 4, 5, 2), (4, 6, 5, 3), (1, 3, 1), (2, 5, 4), (3, 3, 3, 3), (2, 2)]


def _log_c(d):
    return 0.0 if d == 0 else log_orthogonal_group_volume(d)


def _orbit_log_volume_brute(W, widths):
    """log vol of the G-orbit through W by the coarea formula (module docstring)."""
    N = len(W)
    r = min(widths[0], widths[-1])
    columns = []
    for p in range(1, N):  # O(d_p) acts on W_p from the left and on W_{p+1} from the right
        d = widths[p]
        for k in range(d):
            for l in range(k + 1, d):
                alpha = np.zeros((d, d))
                alpha[k, l], alpha[l, k] = 1 / math.sqrt(2), -1 / math.sqrt(2)
                V = [np.zeros_like(w) for w in W]
                V[p - 1], V[p] = alpha @ W[p - 1], -W[p] @ alpha
                columns.append(np.concatenate([v.ravel() for v in V]))
    hidden = widths[1:-1]
    rank = sum(d * (d - 1) // 2 - (d - r) * (d - r - 1) // 2 for d in hidden)
    const = sum(_log_c(d) - _log_c(d - r) for d in hidden)
    if not columns:
        return const, 0.0
    sv = np.linalg.svd(np.array(columns).T, compute_uv=False)
    gap = sv[rank:].max() / sv[0] if rank < sv.size else 0.0  # the stabilizer's directions
    return const + float(np.sum(np.log(sv[:rank]))), gap


def _random_orthogonal(rng, d):
    return np.linalg.qr(rng.standard_normal((d, d)))[0]


@pytest.mark.parametrize("widths", WIDTHS)
def test_entropy_equals_gram_determinant(widths):
    """Closed form = brute force to ~1e-14 (measured 7e-15); the stabilizer is exactly H.

    Negative control: the square formula applied blindly (log c_{d_k} per hidden layer and
    the r x r multipliers, no Stiefel density) misses whenever a hidden width exceeds r.
    """
    rng = np.random.default_rng(sum(widths) * 7 + len(widths))
    N = len(widths) - 1
    X = rng.standard_normal((widths[-1], widths[0]))
    R = [_random_orthogonal(rng, d) for d in widths[1:-1]]
    W = balanced_point(X, N, widths=widths, rotations=R)
    brute, gap = _orbit_log_volume_brute(W, widths)
    assert gap < 1e-12
    S = orbit_entropy(X, N, widths=widths)
    assert S == pytest.approx(brute, rel=1e-12, abs=1e-12)
    assert orbit_volume(X, N, widths=widths) == pytest.approx(math.exp(brute), rel=1e-11)
    s = np.linalg.svd(X, compute_uv=False)
    iu = np.triu_indices(s.size, 1)
    naive = sum(_log_c(d) for d in widths[1:-1]) + 0.5 * np.log(depth_multipliers(s, N)[iu]).sum()
    if max(widths[1:-1], default=0) > s.size:
        assert abs(naive - brute) > 0.1


def test_square_widths_reduce_to_square_formula():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, 3))
    for N in (1, 2, 4):
        assert orbit_entropy(X, N, widths=(3,) * (N + 1)) == pytest.approx(
            orbit_entropy(X, N), rel=1e-13, abs=1e-13
        )


@pytest.mark.parametrize("n", range(1, 7))
def test_stiefel_volume_two_routes(n):
    """Gaussian-integral closed form = fibration O(n-r) -> O(n) -> St(n, r); v(n, 1) = |S^{n-1}|."""
    for r in range(1, n + 1):
        fibration = _log_c(n) - _log_c(n - r) - 0.5 * r * (n - r) * math.log(2.0)
        assert log_stiefel_volume(n, r) == pytest.approx(fibration, rel=1e-13, abs=1e-13)
    sphere = math.log(2.0) + 0.5 * n * math.log(math.pi) - gammaln(0.5 * n)
    assert log_stiefel_volume(n, 1) == pytest.approx(sphere, rel=1e-13)


@pytest.mark.parametrize("widths", [(2, 3, 2), (3, 4, 5, 2), (2, 5, 4)])
@pytest.mark.parametrize("metric", ["depth", "euclidean"])
def test_entropy_gradient_against_finite_differences(widths, metric):
    rng = np.random.default_rng(len(widths) + widths[1])
    N = len(widths) - 1
    X = rng.standard_normal((widths[-1], widths[0]))
    Z = rng.standard_normal(X.shape)
    h = 1e-5
    fd = (
        orbit_entropy(X + h * Z, N, widths=widths) - orbit_entropy(X - h * Z, N, widths=widths)
    ) / (2 * h)
    grad = entropy_gradient(X, N, metric, widths=widths)
    if metric == "depth":
        got = depth_inner_product(X, N, grad, Z)
        np.testing.assert_allclose(
            depth_operator(X, N, entropy_gradient(X, N, "euclidean", widths=widths)),
            grad,
            rtol=1e-12,
            atol=1e-12,
        )
    else:
        got = float(np.vdot(grad, Z))
    assert got == pytest.approx(fd, rel=1e-6, abs=1e-8)


def _tall_svd_chart(Ufull, s, V, x):
    """X(sigma, a, c, b) = [U U_perp] expm(A(a, c))[:, :r] diag(sigma) (V expm(B(b)))^T.

    Frobenius-normal coordinates at x = (s, 0, 0, 0): the Stiefel factor moves by
    U Omega + U_perp C with |Omega|^2 + |C|^2 = |a|^2 + |c|^2, V by V Omega_V, |Omega_V| = |b|.
    """
    m, r = Ufull.shape[0], s.size
    iu = np.triu_indices(r, k=1)
    npair = iu[0].size
    sig, a = x[:r], x[r : r + npair]
    c = x[r + npair : r + npair + (m - r) * r].reshape(m - r, r)
    b = x[r + npair + (m - r) * r :]
    A = np.zeros((m, m))
    A[:r, :r][iu] = a / math.sqrt(2)
    A[:r, :r] -= A[:r, :r].T
    A[r:, :r], A[:r, r:] = c, -c.T
    B = np.zeros((r, r))
    B[iu] = b / math.sqrt(2)
    B -= B.T
    left = (Ufull @ scipy.linalg.expm(A))[:, :r]
    return (left * sig) @ (V @ scipy.linalg.expm(B)).T


@pytest.mark.parametrize("shape", [(3, 2), (2, 3), (4, 2), (3, 1)])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_volume_density_against_dense_metric(shape, depth):
    """sqrt(det g) in SVD coordinates (central differences of the chart): agreement ~1e-9.

    Negative control: the square formula for the r singular values (without the
    prod sigma_k^{|m-n|/N} of the complement block) fails.
    """
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + depth)
    m, n = shape
    tall = (max(m, n), min(m, n))
    r = min(shape)
    Ufull = _random_orthogonal(rng, tall[0])
    V = _random_orthogonal(rng, r)
    s = np.sort(rng.uniform(0.3, 0.9, r))[::-1]  # det far from 1: the control below bites
    x0 = np.concatenate([s, np.zeros(r * (r - 1) // 2 + (tall[0] - r) * r + r * (r - 1) // 2)])
    h = 1e-6

    def chart(x):
        Y = _tall_svd_chart(Ufull, s, V, x)
        return Y if m >= n else Y.T

    J = np.stack(
        [(chart(x0 + h * e) - chart(x0 - h * e)).ravel() / (2 * h) for e in np.eye(x0.size)],
        axis=1,
    )
    X = chart(x0)
    G = J.T @ np.linalg.solve(dense_cometric(X, depth), J)
    expected = math.sqrt(np.linalg.det(G))
    assert volume_density(X, depth) == pytest.approx(expected, rel=1e-7)
    assert log_volume_density(X, depth) == pytest.approx(math.log(expected), abs=1e-7)
    factor = np.prod(s) ** (abs(m - n) / depth)  # the complement block's contribution
    assert volume_density(np.diag(s), depth) * factor == pytest.approx(expected, rel=1e-7)
    assert abs(math.log(factor)) > 0.1


def test_errors():
    X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="widths"):
        orbit_entropy(X, 2)
    with pytest.raises(ValueError, match="widths"):
        entropy_gradient(X, 2)
    with pytest.raises(ValueError, match=r"widths\[1\] = 1"):
        orbit_entropy(X, 2, widths=(2, 1, 3))
    with pytest.raises(ValueError, match="d_N, d_0"):
        orbit_entropy(X, 2, widths=(3, 3, 2))
    with pytest.raises(ValueError, match="depth \\+ 1"):
        orbit_entropy(X, 2, widths=(2, 3, 3, 3))
    with pytest.raises(ValueError, match="finite"):
        orbit_entropy(X, np.inf, widths=(2, 3))
    with pytest.raises(ValueError, match="finite"):
        volume_density(X, np.inf)
    with pytest.raises(ValueError, match="rank-deficient"):
        orbit_entropy(np.ones((3, 2)), 2, widths=(2, 2, 3))
    with pytest.raises(TypeError, match="real"):
        orbit_entropy(X + 1j, 2, widths=(2, 2, 3))
