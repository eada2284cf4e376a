"""Reliability of the fiber F_X in float64: long retraction walks, ill-conditioned projections.

Drift. Rounding each layer of W to float64 already moves phi(W) = W_N ... W_1 by about
eps |W_N| |W_{N-1} ... W_1| (the *floor*), which is eps |X| at balanced points but up to
1e12 eps |X| at the unbalanced points used below (group element diag(1e6, 1, 1e-6)), and
random walks drift into unbalanced regions by themselves. So the checks are (1) one step
never moves phi by more than a few floors (the old group-action retraction moved it by
41 |X| in one step, or returned NaN, or raised LinAlgError); (2) with X given (pymanopt
and geomstats ``Fiber``, ``fiber_retraction(..., X=X)``) |phi(W_k) - X| stays within a
few floors after every step, without accumulation, and below 1e-10 |X| wherever the floor
allows it; (3) without X the rounding accumulates like a random walk of floors. The
10,000-step walks are ``slow``; the default run keeps 1,000-step versions.

Projection. Compared with the projector onto the null space of the dense Jacobian from
a float64 SVD (scipy.linalg.null_space), whose own error is O(eps cond(J)); the old
normal-equation solve was off by O(eps cond(J)^2) (1e-2 at sigma_min(X) = 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from dln_manifolds import (
    FiberNormalSolver,
    balanced_point,
    end_to_end,
    end_to_end_differential,
    fiber_group_element,
    fiber_restore,
    fiber_retraction,
    fiber_tangent_projection,
    fiber_weingarten,
    generator_to_tangent,
    group_action,
    group_action_exp,
    tangent_to_generator,
)
from dln_manifolds.fiber import CG_MAX_CONDITION
from dln_manifolds.geomstats import Fiber as GeomstatsFiber
from dln_manifolds.pymanopt import Fiber

EPS = np.finfo(np.float64).eps


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _matrix(rng, d, cond):
    """U diag(1 .. 1/cond) V^T with Haar U, V (geometric spacing)."""
    return _haar(rng, d) @ np.diag(np.geomspace(1.0, 1.0 / cond, d)) @ _haar(rng, d)


def _unbalanced(rng, X, N, k):
    """The center of F_X acted on by A_1 = D, A_j = Q_j D (Q_j Haar), D = diag(k .. 1/k)."""
    d = X.shape[0]
    D = np.diag(np.geomspace(k, 1.0 / k, d))
    a = np.stack([D] + [_haar(rng, d) @ D for _ in range(N - 2)])
    return group_action(a, balanced_point(X, N))


def _floor(W):
    """eps |W_N| |W_{N-1} ... W_1| (Frobenius): the float64 resolution of phi(W) at W."""
    return EPS * np.linalg.norm(W[-1]) * np.linalg.norm(end_to_end(W[:-1]))


def _err(W, X):
    return float(np.linalg.norm(end_to_end(W) - X))


def _walk(retract, W, X, steps, norm, seed, tangent=None):
    """Random walk W_{k+1} = retract(W_k, V_k, solver), |V_k| = norm, V_k a projected Gaussian.

    Returns a dict of maxima over the walk: ``rel`` |phi(W_k) - X| / |X|; ``floors``
    |phi(W_k) - X| / floor(W_k); ``step`` |phi(W_{k+1}) - phi(W_k)| in floors of both
    points; ``excess`` |phi(W_k) - X| / max(1e-10 |X|, floor(W_k)) (<= 1: relative drift
    below 1e-10, or below one floor where float64 cannot resolve 1e-10); ``random_walk``
    |phi(W_k) - X| / sqrt(sum_{j <= k} floor(W_j)^2) (rounding accumulating like a random
    walk); ``floor`` max floor(W_k) / |X|; and the last point ``W``.
    """
    rng = np.random.default_rng(seed)
    xnorm = np.linalg.norm(X)
    out = dict.fromkeys(("rel", "floors", "step", "excess", "random_walk", "floor"), 0.0)
    acc = _floor(W) ** 2
    for _ in range(steps):
        Z = rng.standard_normal(W.shape)
        solver = FiberNormalSolver(W)
        V = solver.project(Z) if tangent is None else tangent(W, Z)
        V *= norm / np.linalg.norm(V)
        W_new = retract(W, V, solver)
        assert np.all(np.isfinite(W_new))
        f_old, f = _floor(W), _floor(W_new)
        step = np.linalg.norm(end_to_end(W_new) - end_to_end(W)) / (f + f_old)
        W = W_new
        acc += f * f
        e = _err(W, X)
        for key, value in (
            ("rel", e / xnorm),
            ("floors", e / f),
            ("step", step),
            ("excess", e / max(1e-10 * xnorm, f)),
            ("random_walk", e / np.sqrt(acc)),
            ("floor", f / xnorm),
        ):
            out[key] = max(out[key], value)
    out["W"] = W
    return out


def _core(W, V, solver):
    return fiber_retraction(W, V, solver=solver)


def _core_with(X):
    return lambda W, V, solver: fiber_retraction(W, V, X=X, solver=solver)


def _pymanopt(M):
    return lambda W, V, solver: M.retraction(W, V)


# --------------------------------------------------------------------------- retraction


@pytest.mark.parametrize("k", [1e3, 1e6])
def test_issue_example_one_step(k):
    # X = diag(1, 2, 0.5), N = 3, W = (diag(k, 1, 1/k), Q diag(k, 1, 1/k)) . center, |V| = 0.5:
    # the old retraction moved phi from 3.7e-5 |X| to 41 |X| at k = 1e6 (e^a e^-a != I)
    rng = np.random.default_rng(0)
    X = np.diag([1.0, 2.0, 0.5])
    W = _unbalanced(rng, X, 3, k)
    assert _err(W, X) <= 10 * _floor(W)
    M = Fiber(X, 3)
    for _ in range(5):
        V = fiber_tangent_projection(W, rng.standard_normal(W.shape))
        V *= 0.5 / np.linalg.norm(V)
        R = fiber_retraction(W, V)
        assert np.all(np.isfinite(R))
        assert _err(R, end_to_end(W)) <= 10 * (_floor(R) + _floor(W))
        for R in (fiber_retraction(W, V, X=X), M.retraction(W, V)):
            assert _err(R, X) <= 10 * _floor(R)
    if k == 1e3:  # floor ~ 1e-10 |X| here
        assert _err(R, X) <= 1e-10 * np.linalg.norm(X)


def test_walk_core_default():
    # no X: phi(W) of the input is kept, so per-step rounding accumulates like a random walk
    rng = np.random.default_rng(1)
    X = _matrix(rng, 3, 1e6)
    res = _walk(_core, balanced_point(X, 3), X, 1000, 0.5, seed=2)
    assert res["rel"] <= 1e-10  # measured 1e-13
    assert res["step"] <= 10  # measured 0.3


def test_walk_pymanopt_default():
    # unbalanced start (group element of condition number 1e6), X known: no accumulation
    rng = np.random.default_rng(3)
    X = _matrix(rng, 3, 1e3)
    M = Fiber(X, 3)
    W = _unbalanced(rng, X, 3, 1e3)
    res = _walk(_pymanopt(M), W, X, 1000, 0.5, seed=4)
    assert res["floors"] <= 10
    assert res["rel"] <= 1e-10


def test_walk_geomstats_default():
    rng = np.random.default_rng(5)
    X = _matrix(rng, 3, 1e3)
    space = GeomstatsFiber(X, 3)
    W = _unbalanced(rng, X, 3, 1e3)
    retract = lambda W, V, solver: space.retraction(V, W)  # noqa: E731
    tangent = lambda W, Z: space.to_tangent(Z, W)  # noqa: E731
    res = _walk(retract, W, X, 300, 0.5, seed=6, tangent=tangent)
    assert res["floors"] <= 10
    assert res["rel"] <= 1e-10


_WALKS = [
    # (N, start, step norm): start "cond1e6" = center of X with cond(X) = 1e6,
    # "g1e3"/"g1e6" = unbalanced by diag(k, 1, 1/k) with k = 1e3 / 1e6 (cond(X) = 10).
    # Not N = 10, g1e6 with steps 0.5: that walk reaches points where the product of
    # layers 1..N-1 has condition number > 1/(d eps) and stops with the documented
    # ValueError (the step leaves the domain), see test_retraction_domain_errors.
    *[(3, start, norm) for start in ("cond1e6", "g1e3", "g1e6") for norm in (0.1, 0.5)],
    (10, "cond1e6", 0.1),
    (10, "cond1e6", 0.5),
    (10, "g1e3", 0.1),
    (10, "g1e6", 0.1),
]


def _start(N, start, seed):
    rng = np.random.default_rng(seed)
    if start == "cond1e6":
        X = _matrix(rng, 3, 1e6)
        return X, balanced_point(X, N)
    X = _matrix(rng, 3, 10.0)
    return X, _unbalanced(rng, X, N, {"g1e3": 1e3, "g1e6": 1e6}[start])


@pytest.mark.slow
@pytest.mark.parametrize(("N", "start", "norm"), _WALKS)
def test_walk_10000_steps_with_X(N, start, norm):
    # the walks drift into unbalanced regions (|W| grows), where the floor itself exceeds
    # 1e-10 |X|; there the drift stays within a few floors, elsewhere below 1e-10 |X|
    X, W = _start(N, start, 10 * N + len(start))
    M = Fiber(X, N, max_condition=1e7)
    res = _walk(_pymanopt(M), W, X, 10_000, norm, seed=N)
    assert res["floors"] <= 10
    assert res["step"] <= 10
    assert res["excess"] <= 10


@pytest.mark.slow
@pytest.mark.parametrize(("N", "start", "norm"), _WALKS)
def test_walk_10000_steps_core(N, start, norm):
    # without X each step's rounding stays: the drift grows like a random walk of floors
    X, W = _start(N, start, 10 * N + len(start))
    res = _walk(_core, W, X, 10_000, norm, seed=N + 1)
    assert res["step"] <= 10
    assert res["random_walk"] <= 10


def test_retraction_domain_errors(rng):
    X = _matrix(rng, 3, 10.0)
    W = balanced_point(X, 3)
    # a tangent step that makes layer 1 singular: w_a with a_1 = -I, so W_1 + V_1 = 0
    a = np.stack([-np.eye(3), np.zeros((3, 3))])
    V = generator_to_tangent(W, a)
    with pytest.raises(ValueError, match="step V is too large"):
        fiber_retraction(W, V, second_order=False)
    singular = W.copy()
    singular[0] = np.diag([1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"^W .*layer 1 is singular"):
        fiber_retraction(singular, V)
    with pytest.raises(ValueError, match=r"^W .*layer 1 is singular"):
        tangent_to_generator(singular, V)
    with pytest.raises(ValueError, match="X must have shape"):
        fiber_retraction(W, V, X=np.eye(2))


@pytest.mark.parametrize("smallest", [0.0, 1e-17])
def test_restore_singular_layers(rng, smallest):
    # the old restore returned |W| ~ 1e16 or raised LinAlgError
    X = _matrix(rng, 3, 10.0)
    W = balanced_point(X, 3)
    W[1] = _haar(rng, 3) @ np.diag([1.0, 0.5, smallest]) @ _haar(rng, 3)
    with pytest.raises(ValueError, match=r"^W cannot be restored.*layer 2 is singular"):
        fiber_restore(W, X)
    # the product of well-conditioned layers can still be singular in float64
    W = balanced_point(X, 4)
    D = np.diag([1e6, 1.0, 1e-6])  # cond 1e12 each, 1e36 for the product
    W[0], W[1], W[2] = D, D, D
    with pytest.raises(ValueError, match="product of these layers"):
        fiber_restore(W, X)


# --------------------------------------------------------------------------- projection


def _dense_jacobian(W):
    n = W.size
    cols = [end_to_end_differential(W, e.reshape(W.shape)).ravel() for e in np.eye(n)]
    return np.stack(cols, axis=1)


def _svd_projection(W, Z):
    """Projector onto ker dphi_W from a float64 SVD of the dense Jacobian, and cond(J)."""
    J = _dense_jacobian(W)
    s = np.linalg.svd(J, compute_uv=False)
    Q = scipy.linalg.null_space(J)
    return (Q @ (Q.T @ Z.ravel())).reshape(W.shape), s[0] / s[-1]


def _ill_point(N, smin, unbalanced, seed):
    rng = np.random.default_rng(seed)
    X = _haar(rng, 3) @ np.diag([1.0, np.sqrt(smin), smin]) @ _haar(rng, 3)
    W = balanced_point(X, N)
    if unbalanced:
        a = np.stack([_haar(rng, 3) @ np.diag([3.0, 1.0, 1.0 / 3.0]) for _ in range(N - 1)])
        W = group_action(a, W)
    return X, W, rng.standard_normal(W.shape)


@pytest.mark.parametrize("unbalanced", [False, True])
@pytest.mark.parametrize("smin", [1e-4, 1e-8, 1e-12])
@pytest.mark.parametrize("N", [3, 10])
def test_projection_matches_dense_svd(N, smin, unbalanced):
    # old code: 1e-3..4e-2 at N = 3, sigma_min = 1e-12; a ValueError at N = 10
    X, W, Z = _ill_point(N, smin, unbalanced, seed=N)
    ref, condJ = _svd_projection(W, Z)
    bound = 10 * EPS * condJ * np.linalg.norm(Z)  # measured: <= 0.15 eps cond(J) |Z|
    for method in ("auto", "qr"):
        assert np.linalg.norm(fiber_tangent_projection(W, Z, method=method) - ref) <= bound
    if smin >= 1e-4 or N == 3 and smin >= 1e-8:  # within CG_MAX_CONDITION
        P = fiber_tangent_projection(W, Z, method="cg", tol=1e-14)
        assert np.linalg.norm(P - ref) <= bound


def test_projection_entry_points_at_sigma_min_1e_12():
    X, W, Z = _ill_point(3, 1e-12, False, seed=7)
    ref, condJ = _svd_projection(W, Z)
    bound = 10 * EPS * condJ * np.linalg.norm(Z)
    M = Fiber(X, 3, max_condition=1e13)
    assert np.linalg.norm(M.projection(W, Z) - ref) <= bound
    space = GeomstatsFiber(X, 3)
    assert np.linalg.norm(space.to_tangent(Z, W) - ref) <= bound
    solver = FiberNormalSolver(W)
    assert solver.method == "qr"  # switched from Cholesky: cond(K) ~ 1e16
    assert np.linalg.norm(solver.normal_part(Z) - (Z - ref)) <= bound


def test_cg_refuses_beyond_stated_condition():
    _, W, Z = _ill_point(3, 1e-12, False, seed=8)
    with pytest.raises(ValueError, match="CG_MAX_CONDITION"):
        fiber_tangent_projection(W, Z, method="cg")
    _, W, Z = _ill_point(3, 1e-4, False, seed=8)
    solver = FiberNormalSolver(W, method="cg")
    assert solver.condition_estimate <= CG_MAX_CONDITION
    # the bound is an upper bound of cond(K)
    K = solver.apply  # matrix-free; compare with the dense eigenvalues
    Kd = np.stack([K(e.reshape(3, 3)).ravel() for e in np.eye(9)], axis=1)
    ev = np.linalg.eigvalsh(0.5 * (Kd + Kd.T))
    assert ev[-1] / ev[0] <= solver.condition_estimate * (1 + 1e-8)


def test_cholesky_switches_to_qr_by_condition():
    _, W, Z = _ill_point(3, 1e-2, False, seed=9)
    solver = FiberNormalSolver(W, method="cholesky")
    assert solver.method == "cholesky"
    K = np.stack([solver.apply(e.reshape(3, 3)).ravel() for e in np.eye(9)], axis=1)
    # LAPACK's 1-norm estimate is within a factor d^2 of the 2-norm condition number
    assert np.linalg.cond(K) / 9 <= solver.condition_estimate <= 9 * np.linalg.cond(K)
    _, W, Z = _ill_point(3, 1e-8, False, seed=9)
    assert FiberNormalSolver(W, method="cholesky").method == "qr"


def test_group_action_exp_overflow_and_group_element_singular(rng):
    X = _matrix(rng, 3, 10.0)
    W = balanced_point(X, 3)
    with pytest.raises(ValueError, match="^a is too large"):
        group_action_exp(np.stack([800.0 * np.eye(3), np.zeros((3, 3))]), W)
    singular = W.copy()
    singular[0] = np.diag([1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"^W .*layer 1 is singular"):
        fiber_group_element(singular, W)


def test_qr_solver_complex_and_weingarten():
    rng = np.random.default_rng(11)
    d, N = 3, 3

    def unitary():
        return np.linalg.qr(rng.standard_normal((d, d)) + 1j * rng.standard_normal((d, d)))[0]

    X = unitary() @ np.diag([1.0, 1e-6, 1e-12]) @ unitary()
    W = balanced_point(X, N)
    Z = rng.standard_normal(W.shape) + 1j * rng.standard_normal(W.shape)
    J = _dense_jacobian(W)  # complex-linear: the complex null space is the real tangent space
    s = np.linalg.svd(J, compute_uv=False)
    Q = scipy.linalg.null_space(J)
    ref = (Q @ (Q.conj().T @ Z.ravel())).reshape(W.shape)
    bound = 10 * EPS * s[0] / s[-1] * np.linalg.norm(Z)
    assert np.linalg.norm(fiber_tangent_projection(W, Z) - ref) <= bound
    # the QR solver's normal coordinates agree with Cholesky's at a benign point
    X = unitary() @ np.diag([1.0, 0.7, 0.5]) @ unitary()
    W = balanced_point(X, N)
    V = fiber_tangent_projection(W, Z)
    chol, qr = FiberNormalSolver(W), FiberNormalSolver(W, method="qr")
    assert (chol.method, qr.method) == ("cholesky", "qr")
    y = chol.normal_coordinates(Z)
    assert np.linalg.norm(qr.normal_coordinates(Z) - y) <= 1e-12 * np.linalg.norm(y)
    assert np.linalg.norm(qr.solve(chol.differential(Z)) - y) <= 1e-12 * np.linalg.norm(y)
    w_chol = fiber_weingarten(W, V, Z, solver=chol)
    w_qr = fiber_weingarten(W, V, Z, solver=qr)
    assert np.linalg.norm(w_qr - w_chol) <= 1e-12 * np.linalg.norm(w_chol)
