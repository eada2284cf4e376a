"""Upstairs RLE on the balanced manifold [G] eq. 12.11 vs the downstairs RLE eq. 12.12."""

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

import dln_manifolds.balanced as bm
import dln_manifolds.langevin.end_to_end as e2e_module
from dln_manifolds.energies import QuadraticEnergy
from dln_manifolds.langevin import balanced_langevin, balanced_noise, end_to_end_langevin
from dln_manifolds.network import balanced_point, end_to_end, lifted_gradient


def retraction2_batch(W, V):
    return bm.balanced_retraction(W, V, order=2)


@given(d=st.integers(1, 3), depth=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_batched_geometry_matches_single_point_functions(d, depth, seed):
    """The ensemble kernels (dln_manifolds.balanced on a leading batch axis) = single points."""
    rng = np.random.default_rng(seed)
    W = np.stack([bm.random_balanced_point(d, depth, seed=rng) for _ in range(3)])
    Z = rng.standard_normal(W.shape)
    dE = rng.standard_normal((3, d, d))
    xi_split = balanced_noise(W, Z, kappa=0.25)
    for b in range(3):
        np.testing.assert_allclose(
            bm.balanced_tangent_projection(W, Z)[b],
            bm.balanced_tangent_projection(W[b], Z[b]),
            atol=1e-12,
        )
        np.testing.assert_allclose(
            bm.balanced_restore(W + 0.1 * Z)[b], bm.balanced_restore(W[b] + 0.1 * Z[b]), atol=1e-12
        )
        np.testing.assert_allclose(
            retraction2_batch(W, 0.1 * Z)[b],
            bm.balanced_retraction(W[b], 0.1 * Z[b], order=2),
            atol=1e-12,
        )
        for project in (bm.vertical_projection, bm.horizontal_projection):
            np.testing.assert_allclose(project(W, Z)[b], project(W[b], Z[b]), atol=1e-12)
        ref = bm.vertical_projection(W[b], Z[b]) + 0.5 * bm.horizontal_projection(W[b], Z[b])
        np.testing.assert_allclose(xi_split[b], ref, atol=1e-12)
        np.testing.assert_allclose(
            lifted_gradient(W, dE)[b], lifted_gradient(W[b], dE[b]), atol=1e-12
        )
        np.testing.assert_allclose(end_to_end(W)[b], end_to_end(W[b]), atol=1e-12)
    frame = bm.BalancedFrame(W)
    Q, lam = frame.Q, frame.lam
    np.testing.assert_allclose(
        (Q[:, 1:] * lam[:, None, None, :]) @ np.swapaxes(Q[:, :-1], -1, -2), W, atol=1e-12
    )


def test_paths_stay_balanced():
    X0 = np.array([[1.2, 0.3], [-0.1, 0.8]])
    W0 = balanced_point(X0, 4)
    res = balanced_langevin(
        W0,
        2.0,
        0.5,
        QuadraticEnergy(np.eye(2)),
        t_final=0.2,
        dt=0.01,
        n_paths=50,
        seed=3,
        save_every=5,
    )
    assert res.states.shape == (5, 50, 4, 2, 2)
    errs = [bm.balance_error(W) for W in res.states.reshape(-1, 4, 2, 2)]
    assert max(errs) < 1e-10


def _singular_values(W):
    return np.linalg.svd(end_to_end(W), compute_uv=False)


def test_upstairs_law_matches_downstairs():
    """d = 2, N = 3: law of phi(W_T) (upstairs, eq. 12.11) = law of X_T (downstairs, eq. 12.12).

    Two-sample Kolmogorov-Smirnov test per singular value at T = 0.3 (1500 paths each,
    dt = 0.015: the weak O(dt) bias of both schemes is far below the KS resolution
    ~1.36 sqrt(2/1500) = 0.05). Negative control with the same samples: dropping the
    entropic force downstairs (the orbit mean curvature upstairs) is rejected.
    """
    X0 = np.diag([1.5, 1.0])
    N, beta, kappa = 3, 1.5, 0.5
    energy = QuadraticEnergy(np.diag([1.2, 0.4]))
    kw = dict(t_final=0.3, dt=0.015, n_paths=1500)
    up = balanced_langevin(balanced_point(X0, N), beta, kappa, energy, seed=1, **kw)
    down = end_to_end_langevin(X0, N, beta, kappa, energy, seed=2, **kw)
    # lambda_2 starts at 1 with sd ~ 0.35 at T: rarely (~1e-3 per path) a path reaches the
    # singular set and is stopped; compare the paths alive at T
    assert (~up.alive).sum() <= 5 and (~down.alive).sum() <= 5
    su = _singular_values(up.final[up.alive])
    sd = np.linalg.svd(down.final[down.alive], compute_uv=False)
    pvals = [scipy.stats.ks_2samp(su[:, k], sd[:, k]).pvalue for k in range(2)]
    assert min(pvals) > 1e-3, pvals
    original = e2e_module.free_energy_gradient_in_frame
    try:  # the drift without its entropy term: beta = inf in the shared core
        e2e_module.free_energy_gradient_in_frame = lambda frame, dE, beta, **kw: original(
            frame, dE, np.inf, **kw
        )
        wrong = end_to_end_langevin(X0, N, beta, kappa, energy, seed=2, **kw)
    finally:
        e2e_module.free_energy_gradient_in_frame = original
    sw = np.linalg.svd(wrong.final[wrong.alive], compute_uv=False)
    assert max(scipy.stats.ks_2samp(su[:, k], sw[:, k]).pvalue for k in range(2)) < 1e-4


def test_kappa_zero_end_to_end_follows_free_energy_flow():
    """kappa = 0: only gauge noise; phi(W_t) follows the deterministic flow [G] eq. 12.7.

    The end-to-end spread is O(sqrt(dt)) (second-order fluctuations of the vertical steps);
    the mean matches the downstairs kappa = 0 path to 5 standard errors plus O(dt).
    """
    X0 = np.diag([1.4, 0.9])
    N, beta = 3, 1.0
    energy = QuadraticEnergy(np.diag([1.0, 0.5]))
    up = balanced_langevin(
        balanced_point(X0, N), beta, 0.0, energy, t_final=0.2, dt=0.005, n_paths=300, seed=4
    )
    flow = end_to_end_langevin(X0, N, beta, 0.0, energy, t_final=0.2, dt=0.005, n_paths=1).final[0]
    X = end_to_end(up.final)
    spread = X.std(axis=0)
    assert spread.max() < 0.05
    se = spread / np.sqrt(X.shape[0])
    assert np.all(np.abs(X.mean(axis=0) - flow) < 5 * se + 0.01)
    # the gauge noise is large upstairs: the layers themselves move
    assert np.abs(up.final[:, 0] - up.states[0][:, 0]).mean() > 0.1


def test_validation():
    W0 = balanced_point(np.eye(2), 3)
    with pytest.raises(ValueError, match="balanced"):
        balanced_langevin(W0 * np.array([1.1, 1.0, 1.0])[:, None, None], 1.0, t_final=0.1, dt=0.01)
    with pytest.raises(ValueError, match="beta"):
        balanced_langevin(W0, 0.0, t_final=0.1, dt=0.01)
    with pytest.raises(ValueError, match="W0"):
        balanced_langevin(np.eye(2), 1.0, t_final=0.1, dt=0.01)
    with pytest.raises(ValueError, match="xi"):
        balanced_noise(W0, np.zeros((2, 2, 2)))


def test_upstairs_generator_on_basic_functions_is_downstairs_generator():
    """One scheme step from W0 over X0: (E g(phi(W_h)) - g(X0)) / h = L_down g (X0).

    L_down g = <b, grad g> + (kappa/beta) tr(A Hess g) with b the drift of [G] eq. 12.12
    (free_energy_drift) and A the cometric of g^N: the orbit mean curvature produced by
    the vertical noise and the second-order retraction is the entropic force. Antithetic
    pairs make the estimator O(1); tolerance 5 SE + O(h) bias. Negative control: the
    entropic part alone is many SE.
    """
    from dln_manifolds.depth_metric import depth_operator
    from dln_manifolds.entropy import entropy_gradient
    from dln_manifolds.langevin import free_energy_drift

    X0 = np.array([[1.2, 0.3], [-0.4, 0.8]])
    N, beta, kappa, h, n = 3, 2.0, 0.5, 1e-4, 20000
    energy = QuadraticEnergy(np.diag([1.0, 0.5]))
    W = np.broadcast_to(balanced_point(X0, N), (n, N, 2, 2))
    xi = np.random.default_rng(0).standard_normal(W.shape)
    drift = -h * lifted_gradient(W, energy.gradient(end_to_end(W)))

    def g(X):
        return np.trace(X @ X @ X, axis1=-2, axis2=-1) + X[..., 0, 1] ** 2

    vals = [
        g(
            end_to_end(
                retraction2_batch(
                    W, np.sqrt(2 * h / beta) * balanced_noise(W, s * xi, kappa) + drift
                )
            )
        )
        for s in (1, -1)
    ]
    est = (0.5 * (vals[0] + vals[1]) - g(X0)) / h
    mean, se = est.mean(), est.std(ddof=1) / np.sqrt(n)
    basis = np.eye(4).reshape(4, 2, 2)
    A = depth_operator(X0, N, basis).reshape(4, 4).T
    e = 1e-4  # central differences, O(e^2) relative error
    grad = np.array([(g(X0 + e * a) - g(X0 - e * a)) / (2 * e) for a in basis])
    hess = np.array(
        [
            [
                (
                    g(X0 + e * a + e * b)
                    - g(X0 + e * a - e * b)
                    - g(X0 - e * a + e * b)
                    + g(X0 - e * a - e * b)
                )
                / (4 * e * e)
                for b in basis
            ]
            for a in basis
        ]
    )
    L = grad @ free_energy_drift(X0, N, beta, kappa, energy).ravel() + kappa / beta * np.sum(
        A * hess
    )
    assert abs(mean - L) < 5 * se + 1e-2 * abs(L)
    entropic = grad @ entropy_gradient(X0, N).ravel() / beta
    assert abs(entropic) > 10 * se
