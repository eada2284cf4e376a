"""The fiber F_X of a network of general widths (d_0, ..., d_N): core, flows and adapters.

Checked against brute force: the dense Jacobian of phi (SVD: its null space is the tangent
space), finite differences (projector, Weingarten map, gradients, moments along the
regularizing flow), the closed-form Kempf-Ness minimum N sum_i sigma_i^(2/N), and pymanopt's
Taylor slopes. Each kind of check comes with a negative control showing that it can fail.
"""

from __future__ import annotations

import numpy as np
import pymanopt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from slopes import taylor_slopes

from dln_manifolds import (
    FiberNormalSolver,
    balanced_point,
    end_to_end,
    end_to_end_differential,
    fiber_group_element,
    fiber_normal_matrix,
    fiber_normal_operator,
    fiber_restore,
    fiber_retraction,
    fiber_tangent_projection,
    fiber_weingarten,
    generator_to_tangent,
    group_action,
    group_action_exp,
    moments,
    ness_gradient,
    regularizer_gradient,
    tangent_to_generator,
)
from dln_manifolds.flows import LayersFlowResult, ness_flow, regularizing_flow, split_velocity
from dln_manifolds.geomstats import Fiber as GeomstatsFiber
from dln_manifolds.pymanopt import Fiber
from dln_manifolds.pymanopt.line_search import RoundingTolerantLineSearcher
from dln_manifolds.submanifold_geodesics import (
    fiber_dist,
    fiber_exp,
    fiber_geodesic_acceleration,
    fiber_geodesic_midpoint,
    fiber_log,
)

WIDTHS = [(3, 5, 4, 2), (2, 4, 3, 5), (4, 3, 2), (2, 3, 3, 2)]


def _layers(rng, widths, cplx=False):
    shapes = [(widths[k + 1], widths[k]) for k in range(len(widths) - 1)]
    out = [rng.standard_normal(s) for s in shapes]
    if cplx:
        out = [w + 1j * rng.standard_normal(w.shape) for w in out]
    return out


def _flat(layers):
    return np.concatenate([np.reshape(w, -1) for w in layers])


def _unflat(z, like):
    splits = np.cumsum([w.size for w in like])[:-1]
    return [p.reshape(w.shape) for p, w in zip(np.split(z, splits), like, strict=True)]


def _dense_jacobian(W):
    """Complex-linear Jacobian of phi, shape (d_N d_0, sum d_k d_{k+1}) (test-only)."""
    n = sum(w.size for w in W)
    cols = [end_to_end_differential(W, _unflat(e, W)).ravel() for e in np.eye(n)]
    return np.stack(cols, axis=1)


def _projection_errors(W, project, Z_list):
    """Errors of a candidate projection at W against the dense SVD of the Jacobian."""
    J = _dense_jacobian(W)
    _, s, Vh = np.linalg.svd(J)
    r = J.shape[0]
    null = np.conj(Vh[r:]).T  # orthonormal basis of ker dphi_W
    P_dense = null @ np.conj(null).T
    err = {"dense": 0.0, "tangent": 0.0, "idempotent": 0.0, "self_adjoint": 0.0}
    for Z, Y in Z_list:
        PZ, PY = _flat(project(Z)), _flat(project(Y))
        z, y = _flat(Z), _flat(Y)
        scale = np.linalg.norm(z)
        err["dense"] = max(err["dense"], np.linalg.norm(PZ - P_dense @ z) / scale)
        err["tangent"] = max(
            err["tangent"], np.linalg.norm(J @ PZ) / (np.linalg.norm(J, 2) * scale)
        )
        PPZ = _flat(project(_unflat(PZ, W)))
        err["idempotent"] = max(err["idempotent"], np.linalg.norm(PPZ - PZ) / scale)
        sa = abs(np.vdot(PZ, y) - np.vdot(z, PY)) / (scale * np.linalg.norm(y))
        err["self_adjoint"] = max(err["self_adjoint"], sa)
    return err


@st.composite
def network_widths(draw):
    N = draw(st.integers(2, 4))
    d0, dN = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    r = min(d0, dN)
    hidden = [draw(st.integers(r, 5)) for _ in range(N - 1)]
    return (d0, *hidden, dN)


@settings(max_examples=25, deadline=None)
@given(
    widths=network_widths(),
    method=st.sampled_from(["cholesky", "qr", "cg"]),
    cplx=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_projection_against_dense_svd(widths, method, cplx, seed):
    """Idempotent, self-adjoint, tangent (to 1e-12 relative) and equal to the orthogonal
    projector onto the null space of the dense Jacobian, for random general widths."""
    rng = np.random.default_rng(seed)
    W = _layers(rng, widths, cplx)
    s = np.linalg.svd(end_to_end(W), compute_uv=False)
    assume(s[-1] > 1e-3 * s[0])
    solver = FiberNormalSolver(W, method=method)
    pairs = [(_layers(rng, widths, cplx), _layers(rng, widths, cplx)) for _ in range(2)]
    err = _projection_errors(W, solver.project, pairs)
    assert err["tangent"] < 1e-12, err
    assert err["dense"] < 1e-10, err
    assert err["idempotent"] < 1e-12, err
    assert err["self_adjoint"] < 1e-12, err
    # the public function agrees with the solver
    Z = pairs[0][0]
    assert np.allclose(
        _flat(fiber_tangent_projection(W, Z, method=method)), _flat(solver.project(Z))
    )


def test_projection_checks_can_fail():
    """Negative control: a solver built at another point (a wrong projector) fails the checks."""
    rng = np.random.default_rng(0)
    W = _layers(rng, (3, 5, 4, 2))
    wrong = FiberNormalSolver([w + 0.3 * rng.standard_normal(w.shape) for w in W])
    pairs = [(_layers(rng, (3, 5, 4, 2)), _layers(rng, (3, 5, 4, 2)))]
    err = _projection_errors(W, wrong.project, pairs)
    assert err["tangent"] > 1e-3 and err["dense"] > 1e-2


@pytest.mark.parametrize("widths", WIDTHS)
def test_normal_operator_and_matrix(widths):
    """K = dphi dphi^*: the dense matrix is J J^* of the dense Jacobian; the operator agrees."""
    rng = np.random.default_rng(1)
    W = _layers(rng, widths)
    J = _dense_jacobian(W)
    K = fiber_normal_matrix(W, widths=widths)
    assert np.allclose(K, J @ J.T, rtol=1e-12, atol=1e-12 * np.linalg.norm(K))
    Y = rng.standard_normal((widths[-1], widths[0]))
    assert np.allclose(fiber_normal_operator(W, Y).ravel(), K @ Y.ravel())
    solver = FiberNormalSolver(W)
    assert np.allclose(solver.apply(solver.solve(Y)), Y, atol=1e-10)
    assert np.allclose(solver.differential(solver.adjoint(Y)), fiber_normal_operator(W, Y))


def test_square_sequence_matches_stack():
    """A list of square layers gives the stack's results, layer by layer."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((3, 3, 3)) + 2 * np.eye(3)
    Z = rng.standard_normal((3, 3, 3))
    X = end_to_end(W)
    V = fiber_tangent_projection(W, Z)
    pairs = [
        (fiber_tangent_projection(list(W), list(Z)), V),
        (fiber_retraction(list(W), list(0.1 * V), X=X), fiber_retraction(W, 0.1 * V, X=X)),
        (regularizer_gradient(list(W)), regularizer_gradient(W)),
        (ness_gradient(list(W)), ness_gradient(W)),
        (fiber_weingarten(list(W), list(V), list(Z)), fiber_weingarten(W, V, Z)),
        (tangent_to_generator(list(W), list(V)), tangent_to_generator(W, V)),
    ]
    for got, want in pairs:
        assert isinstance(got, list)
        assert np.allclose(np.stack(got), want, atol=1e-12)


@pytest.mark.parametrize("cplx", [False, True])
def test_group_action_and_generators(cplx):
    """GL(d_1) x ... x GL(d_{N-1}) keeps the product; w_a is the velocity of e^{ta}.W."""
    rng = np.random.default_rng(3)
    widths = (3, 5, 4, 2)
    W = _layers(rng, widths, cplx)
    X = end_to_end(W)
    a = [
        rng.standard_normal((d, d)) + (1j * rng.standard_normal((d, d)) if cplx else 0)
        for d in widths[1:-1]
    ]
    A = [np.eye(d) + 0.3 * ak for d, ak in zip(widths[1:-1], a, strict=True)]
    moved = group_action(A, W)
    assert [m.shape for m in moved] == [w.shape for w in W]
    assert np.allclose(end_to_end(moved), X, atol=1e-12)
    # layer p becomes A_p W_p A_{p-1}^{-1}
    assert np.allclose(moved[1], A[1] @ W[1] @ np.linalg.inv(A[0]))
    assert np.allclose(end_to_end(group_action_exp(a, W)), X, atol=1e-10)
    h = 1e-6
    plus = group_action_exp([h * ak for ak in a], W)
    minus = group_action_exp([-h * ak for ak in a], W)
    fd = [(p - m) / (2 * h) for p, m in zip(plus, minus, strict=True)]
    w_a = generator_to_tangent(W, a)
    assert np.allclose(_flat(w_a), _flat(fd), atol=1e-7)
    assert np.linalg.norm(_flat(fiber_tangent_projection(W, w_a)) - _flat(w_a)) < 1e-10
    # general widths: least squares (tests/test_widths_bundle.py has the ValueError cases)
    back = generator_to_tangent(W, tangent_to_generator(W, w_a))
    assert np.linalg.norm(_flat(back) - _flat(w_a)) < 1e-10 * np.linalg.norm(_flat(w_a))
    assert np.allclose(_flat(group_action(fiber_group_element(W, moved), W)), _flat(moved))
    with pytest.raises(ValueError, match=r"a\[1\] must have shape \(4, 4\)"):
        group_action([np.eye(5), np.eye(5)], W)


def _tangent_acceleration(W, V, X, second_order, h):
    """|tangent part| / |acceleration| of t -> R_W(tV) at 0 (central second difference)."""
    plus = _flat(fiber_retraction(W, [h * v for v in V], X=X, second_order=second_order))
    minus = _flat(fiber_retraction(W, [-h * v for v in V], X=X, second_order=second_order))
    acc = (plus + minus - 2 * _flat(W)) / h**2
    tangent = _flat(fiber_tangent_projection(W, _unflat(acc, W)))
    return np.linalg.norm(tangent) / np.linalg.norm(acc)


@pytest.mark.parametrize("widths", WIDTHS)
def test_retraction_is_second_order_and_keeps_X(widths):
    """R_W(tV) = W + tV + O(t^2) on F_X, with normal acceleration (second order); the first
    order retraction is the negative control (its acceleration has a tangent part)."""
    rng = np.random.default_rng(4)
    W = _layers(rng, widths)
    X = end_to_end(W)
    V = fiber_tangent_projection(W, _layers(rng, widths))
    for t in (1e-2, 1e-3):
        R = fiber_retraction(W, [t * v for v in V], X=X)
        assert np.linalg.norm(end_to_end(R) - X) <= 1e-14 * np.linalg.norm(X) * 10
        dev = np.linalg.norm(_flat(R) - _flat(W) - t * _flat(V))
        assert dev < 10 * t**2 * np.linalg.norm(_flat(V)) ** 2
    second = [_tangent_acceleration(W, V, X, True, h) for h in (1e-2, 1e-3)]
    first = [_tangent_acceleration(W, V, X, False, h) for h in (1e-2, 1e-3)]
    assert second[1] < 1e-4 and second[1] < 0.2 * second[0]  # O(h)
    assert first[1] > 0.05  # negative control: first order only


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (2, 4, 3, 5)])
def test_solved_layer_is_the_minimum_change_solution(widths):
    """The solved end layer is the solution of the product equation nearest to the stepped
    layer (W_N + (X - W_N P) P^+ for d_0 <= d_N, W_1 + Q^+ (X - Q W_1) otherwise)."""
    rng = np.random.default_rng(5)
    W = _layers(rng, widths)
    X = end_to_end(W)
    V = fiber_tangent_projection(W, _layers(rng, widths))
    step = [w + 0.2 * v for w, v in zip(W, V, strict=True)]  # leaves the fiber
    R = fiber_restore(step, X)
    assert np.linalg.norm(end_to_end(R) - X) < 1e-13 * np.linalg.norm(X)
    if widths[0] <= widths[-1]:
        P = end_to_end(step[:-1])
        expected = step[-1] + np.linalg.lstsq(P.T, (X - step[-1] @ P).T, rcond=None)[0].T
        assert all(np.array_equal(a, b) for a, b in zip(R[:-1], step[:-1], strict=False))
        assert np.allclose(R[-1], expected, atol=1e-12)
    else:
        Q = end_to_end(step[1:])
        expected = step[0] + np.linalg.lstsq(Q, X - Q @ step[0], rcond=None)[0]
        assert all(np.array_equal(a, b) for a, b in zip(R[1:], step[1:], strict=False))
        assert np.allclose(R[0], expected, atol=1e-12)


def _drift(W, X, n_steps, step, seed, retract=True):
    """Relative |phi(W) - X| after n_steps random tangent steps of norm ``step`` |W_0|."""
    rng = np.random.default_rng(seed)
    size = step * np.linalg.norm(_flat(W))
    for _ in range(n_steps):
        solver = FiberNormalSolver(W)  # one factorization serves the projection and the step
        V = solver.project([rng.standard_normal(w.shape) for w in W])
        V = [(size / np.linalg.norm(_flat(V))) * v for v in V]
        if retract:
            W = fiber_retraction(W, V, X=X, solver=solver)
        else:
            W = [w + v for w, v in zip(W, V, strict=True)]
    return np.linalg.norm(end_to_end(W) - X) / np.linalg.norm(X)


def _ill_conditioned(rng, widths, cond=1e4):
    """Full-rank layers with condition number ``cond`` (singular values log-spaced)."""
    out = []
    for k in range(len(widths) - 1):
        m, n = widths[k + 1], widths[k]
        U, _ = np.linalg.qr(rng.standard_normal((m, m)))
        Vt, _ = np.linalg.qr(rng.standard_normal((n, n)))
        s = np.geomspace(cond**-0.5, cond**0.5, min(m, n))
        out.append((U[:, : s.size] * s) @ Vt[: s.size])
    return out


@pytest.mark.parametrize("start", ["random", "ill-conditioned"])
@pytest.mark.parametrize(
    "widths, n_steps",
    [((3, 5, 4, 2), 1000), pytest.param((2, 4, 3, 5), 10_000, marks=pytest.mark.slow)],
)
def test_retraction_drift(start, widths, n_steps):
    """The product stays X to 1e-10 relative over many retraction steps, also from layers
    of condition number 1e4 (whose product has condition number ~1e6 to 1e8)."""
    rng = np.random.default_rng(6)
    W = _layers(rng, widths) if start == "random" else _ill_conditioned(rng, widths)
    if start == "ill-conditioned":
        assert all(np.isclose(np.linalg.cond(w), 1e4) for w in W)
    assert _drift(W, end_to_end(W), n_steps, 0.01, seed=7) < 1e-10


def test_retraction_drift_negative_control():
    """Plain steps W + V (no retraction) leave the fiber: the drift check detects it."""
    rng = np.random.default_rng(6)
    W = _layers(rng, (3, 5, 4, 2))
    assert _drift(W, end_to_end(W), 50, 0.01, seed=7, retract=False) > 1e-4


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (4, 3, 2)])
def test_weingarten_against_finite_difference_of_projector(widths):
    """W(V, n) = P (DP[V] n), with DP[V] by central differences of the projection."""
    rng = np.random.default_rng(10)
    W = _layers(rng, widths)
    V = fiber_tangent_projection(W, _layers(rng, widths))
    n = _layers(rng, widths)
    h = 1e-6
    plus = fiber_tangent_projection([w + h * v for w, v in zip(W, V, strict=True)], n)
    minus = fiber_tangent_projection([w - h * v for w, v in zip(W, V, strict=True)], n)
    dP = [(p - m) / (2 * h) for p, m in zip(plus, minus, strict=True)]
    ref = _flat(fiber_tangent_projection(W, dP))
    got = _flat(fiber_weingarten(W, V, n))
    assert np.linalg.norm(got - ref) < 1e-7 * np.linalg.norm(ref)
    # negative control: the map at the direction -V differs
    assert np.linalg.norm(
        _flat(fiber_weingarten(W, [-v for v in V], n)) - ref
    ) > 0.5 * np.linalg.norm(ref)


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (2, 4, 3, 5)])
def test_gradients_and_moment_decay(widths):
    """grad |W|^2 = P(2W) makes every moment decay at rate 4 ([R] Thm 2, general widths);
    ness_gradient is the Euclidean gradient of |G|^2, and tangent."""
    rng = np.random.default_rng(11)
    W = _layers(rng, widths)
    g = regularizer_gradient(W, widths=widths)
    assert np.allclose(_flat(g), _flat(fiber_tangent_projection(W, [2 * w for w in W])))
    h = 1e-6
    G0 = moments(W)
    Gp, Gm = (
        moments([w - h * x for w, x in zip(W, g, strict=True)]),
        moments([w + h * x for w, x in zip(W, g, strict=True)]),
    )
    for g0, gp, gm in zip(G0, Gp, Gm, strict=True):
        assert np.linalg.norm((gp - gm) / (2 * h) + 4 * g0) < 1e-6 * np.linalg.norm(g0)
    # negative control: the unprojected Euclidean gradient 2W also changes the moments at
    # rate 4, but it moves X; the projection is what keeps the product
    assert np.linalg.norm(end_to_end_differential(W, g)) < 1e-10 * np.linalg.norm(_flat(g))
    assert np.linalg.norm(end_to_end_differential(W, [2 * w for w in W])) > 1e-2

    def G2(W):
        return sum(np.sum(G**2) for G in moments(W))

    U = _layers(rng, widths)
    ng = ness_gradient(W)
    fd = (
        G2([w + h * u for w, u in zip(W, U, strict=True)])
        - G2([w - h * u for w, u in zip(W, U, strict=True)])
    ) / (2 * h)
    assert abs(fd - _flat(ng) @ _flat(U)) < 1e-6 * abs(fd)
    assert np.linalg.norm(end_to_end_differential(W, ng)) < 1e-10 * np.linalg.norm(_flat(ng))


def test_split_velocity_general_widths():
    rng = np.random.default_rng(12)
    widths = (3, 5, 4, 2)
    W, v = _layers(rng, widths), _layers(rng, widths)
    tangent, normal = split_velocity(W, v)
    assert np.allclose(_flat(tangent) + _flat(normal), _flat(v))
    assert abs(_flat(tangent) @ _flat(normal)) < 1e-10 * np.linalg.norm(_flat(v)) ** 2


def _fit_rate(t, y):
    return -np.polyfit(t, np.log(y), 1)[0]


def test_regularizing_flow_rate_general_widths():
    """[R] Thm 2 for general widths: |G(t)| = |G_0| e^{-4t} (fitted rate 4 to 1e-5, the RK4
    error), the product stays X, |W|^2 decreases to the Kempf-Ness minimum N sum sigma^(2/N)."""
    rng = np.random.default_rng(13)
    widths = (3, 5, 4, 2)
    N = len(widths) - 1
    W0 = _layers(rng, widths)
    X = end_to_end(W0)
    sigma = np.linalg.svd(X, compute_uv=False)
    minimum = N * np.sum(sigma ** (2 / N))
    res = regularizing_flow(W0, 3.0, dt=0.02)
    t = res.times
    G = np.linalg.norm(res.monitors["moments"], axis=1)
    assert np.max(np.abs(G / G[0] - np.exp(-4 * t))) < 1e-6
    assert abs(_fit_rate(t, G) - 4.0) < 1e-5
    assert res.monitors["product_error"].max() < 1e-13
    excess = res.monitors["norm_sq"] - minimum
    assert np.all(np.diff(res.monitors["norm_sq"]) < 0) and excess[-1] < 1e-4 * excess[0]
    # the excess |W|^2 - min decays at Thm 2's rate 4 here (not 8 = 2 x 4, as for square
    # networks): the interior layer W_2 (5 -> 4, both above r = 2) has a block that the
    # product does not see and that decays only with the moments
    late = t > 1.5
    assert abs(_fit_rate(t[late], excess[late]) - 4.0) < 0.05
    # the saved states are the layers, flat and concatenated (LayersFlowResult)
    assert isinstance(res, LayersFlowResult) and tuple(res.widths) == widths
    assert all(
        np.array_equal(a, b) for a, b in zip(res.final, _unflat(res.states[-1], W0), strict=True)
    )
    assert np.allclose(end_to_end(res.final), X, atol=1e-13)
    stopped = regularizing_flow(
        W0, 3.0, dt=0.02, stop_when=lambda t, W: isinstance(W, list) and t > 0.1
    )
    assert stopped.times[-1] < 0.2
    # negative control: the Ness flow balances too, but not at the uniform rate 4
    ness = ness_flow(W0, 0.2, dt=0.002)
    Gn = np.sqrt(ness.monitors["moment_norm_sq"])
    assert abs(_fit_rate(ness.times, Gn) - 4.0) > 0.5


@pytest.mark.parametrize("widths, rate", [((2, 3, 2), 8.0), ((2, 3, 3, 3), 4.0)])
def test_regularizing_flow_excess_rate(widths, rate):
    """The excess |W|^2 - min decays at rate 8 (like |G|^2) unless an interior layer joins
    two hidden widths above r (then at rate 4, like |G|), as documented."""
    rng = np.random.default_rng(5)
    N = len(widths) - 1
    W0 = _layers(rng, widths)
    sigma = np.linalg.svd(end_to_end(W0), compute_uv=False)
    res = regularizing_flow(W0, 3.0, dt=0.02)
    excess = res.monitors["norm_sq"] - N * np.sum(sigma ** (2 / N))
    late = res.times > 1.5
    assert abs(_fit_rate(res.times[late], excess[late]) - rate) < 0.05


def _norm_problem(F):
    N = F.depth

    @pymanopt.function.numpy(F)
    def cost(*W):
        return float(sum(np.sum(w * w) for w in W))

    @pymanopt.function.numpy(F)
    def egrad(*W):
        return tuple(2 * w for w in W)

    @pymanopt.function.numpy(F)
    def ehess(*args):
        return tuple(2 * v for v in args[N:])

    return pymanopt.Problem(F, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (2, 4, 3, 5)])
def test_kempf_ness_general_widths_with_pymanopt(widths):
    """min |W|^2 on F_X = N sum_i sigma_i^(2/N), reached by TrustRegions and SteepestDescent
    from a random fiber point (off the center's orbit), at a balanced point; every balanced
    point of the fiber (rotated hidden frames) attains it, an unbalanced one does not."""
    rng = np.random.default_rng(14)
    N = len(widths) - 1
    X = rng.standard_normal((widths[-1], widths[0]))
    F = Fiber(X, N, seed=0, widths=widths)
    sigma = np.linalg.svd(X, compute_uv=False)
    minimum = N * np.sum(sigma ** (2 / N))
    assert np.isclose(F.minimum_norm_sq(), minimum)
    problem = _norm_problem(F)
    x0 = F.random_point()
    assert np.linalg.norm(end_to_end(list(x0)) - X) < 1e-13 * np.linalg.norm(X)
    assert problem.cost(x0) > minimum * (1 + 1e-2)
    tr = pymanopt.optimizers.TrustRegions(verbosity=0, min_gradient_norm=1e-11)
    sd = pymanopt.optimizers.SteepestDescent(
        verbosity=0,
        min_gradient_norm=1e-9,
        max_iterations=2000,
        line_searcher=RoundingTolerantLineSearcher(),
    )
    for optimizer in (tr, sd):
        res = optimizer.run(problem, initial_point=x0)
        assert abs(res.cost - minimum) < 1e-10 * minimum
        G = np.linalg.norm(_flat(moments(list(res.point))))
        assert G < 1e-7 * minimum
        assert np.linalg.norm(end_to_end(list(res.point)) - X) < 1e-12 * np.linalg.norm(X)
    rotations = [np.linalg.qr(rng.standard_normal((d, d)))[0] for d in widths[1:-1]]
    B = balanced_point(X, N, rotations=rotations, widths=widths)
    assert abs(sum(np.sum(w * w) for w in B) - minimum) < 1e-12 * minimum
    assert np.linalg.norm(_flat(moments(B))) < 1e-12 * minimum


def test_kempf_ness_complex_general_widths():
    """The complex fiber of general widths (real dimension 2 (sum d_k d_{k+1} - d_0 d_N))."""
    rng = np.random.default_rng(20)
    X = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    F = Fiber(X, 3, seed=0, widths=(3, 5, 4, 2))
    assert F.dim == 2 * (15 + 20 + 8 - 6)

    @pymanopt.function.numpy(F)
    def cost(*W):
        return float(sum(np.sum(np.abs(w) ** 2) for w in W))

    @pymanopt.function.numpy(F)
    def egrad(*W):
        return tuple(2 * w for w in W)

    @pymanopt.function.numpy(F)
    def ehess(*args):
        return tuple(2 * v for v in args[3:])

    problem = pymanopt.Problem(F, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)
    tr = pymanopt.optimizers.TrustRegions(verbosity=0, min_gradient_norm=1e-11)
    res = tr.run(problem, initial_point=F.random_point())
    minimum = 3 * np.sum(np.linalg.svd(X, compute_uv=False) ** (2 / 3))
    assert abs(res.cost - minimum) < 1e-10 * minimum
    assert np.linalg.norm(end_to_end(list(res.point)) - X) < 1e-12 * np.linalg.norm(X)


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (4, 3, 2)])
def test_pymanopt_fiber_slopes(widths):
    """Gradient slope 2 and Hessian slope 3 (second-order retraction) on a non-quadratic
    cost; a wrong Euclidean Hessian (negative control) loses slope 3."""
    rng = np.random.default_rng(15)
    N = len(widths) - 1
    X = rng.standard_normal((widths[-1], widths[0]))
    F = Fiber(X, N, seed=1, widths=widths)
    T = _layers(rng, widths)

    def make(hessian_factor):
        @pymanopt.function.numpy(F)
        def cost(*W):
            return sum(
                0.5 * np.sum((w - t) ** 2) + 0.1 * np.sum(w**4) for w, t in zip(W, T, strict=True)
            )

        @pymanopt.function.numpy(F)
        def egrad(*W):
            return tuple(w - t + 0.4 * w**3 for w, t in zip(W, T, strict=True))

        @pymanopt.function.numpy(F)
        def ehess(*args):
            W, V = args[:N], args[N:]
            return tuple(v + hessian_factor * w**2 * v for w, v in zip(W, V, strict=True))

        return pymanopt.Problem(F, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)

    point = F.random_point()
    vector = F.random_tangent_vector(point)
    g, h = taylor_slopes(make(1.2), point, vector)
    assert abs(g - 2) < 0.1 and abs(h - 3) < 0.1
    _, h_wrong = taylor_slopes(make(0.0), point, vector)
    assert h_wrong < 2.5


def test_pymanopt_fiber_widths_basics():
    rng = np.random.default_rng(16)
    widths = (3, 5, 4, 2)
    X = rng.standard_normal((2, 3))
    F = Fiber(X, 3, seed=2, widths=widths)
    assert F.dim == 15 + 20 + 8 - 6
    assert F.widths == widths
    x = F.random_point()
    v, w = F.random_tangent_vector(x), F.random_tangent_vector(x)
    assert np.isclose(F.norm(x, v), 1.0)
    assert np.isclose(F.inner_product(x, v, w), _flat(v) @ _flat(w))
    assert np.allclose(_flat(F.projection(x, v)), _flat(v))
    assert np.allclose(_flat(v + 2 * w - w / 1.0), _flat(v) + _flat(w))
    assert np.allclose(_flat(F.zero_vector(x)), 0)
    assert [m.shape for m in F.moments(x)] == [(5, 5), (4, 4)]
    a = [np.eye(5) * 2, np.eye(4)]
    assert np.allclose(end_to_end(list(F.act(a, x))), X)
    assert np.allclose(_flat(F.regularizer_gradient(x)), _flat(regularizer_gradient(list(x))))
    y = F.exp(x, 0.3 * v)  # geodesics of general widths (tests/test_widths_geodesics.py)
    assert isinstance(y, list) and np.allclose(end_to_end(list(y)), X, atol=1e-13)
    assert F.dist(x, x) == 0.0
    a = [np.eye(5) * 0.5, np.eye(4)]
    w = F.generator_to_tangent(x, a)
    back = F.generator_to_tangent(x, F.tangent_to_generator(x, w))
    assert np.allclose(_flat(back), _flat(w), atol=1e-12)


def test_geomstats_fiber_widths():
    rng = np.random.default_rng(17)
    widths = (2, 4, 3, 5)
    X = rng.standard_normal((5, 2))
    space = GeomstatsFiber(X, 3, widths=widths)
    D = 8 + 12 + 15
    assert space.shape == (D,) and space.dim == D - 10
    p = space.random_point(3)
    assert p.shape == (3, D) and np.all(space.belongs(p))
    v = space.to_tangent(rng.standard_normal(p.shape), p)
    assert np.all(space.is_tangent(v, p))
    assert not np.any(space.is_tangent(rng.standard_normal(p.shape), p))  # negative control
    q = space.retraction(0.1 * v, p)
    assert np.all(space.belongs(q))
    assert np.allclose(end_to_end(space.to_layers(q[1])), X, atol=1e-13)
    assert np.allclose(space.metric.inner_product(v, v, p), np.sum(v * v, axis=-1))
    assert np.allclose(space.from_layers(space.to_layers(p[0])), p[0])
    assert np.allclose(space.projection(p + 0.01), space.projection(space.projection(p + 0.01)))
    assert np.allclose(space.center, _flat(balanced_point(X, 3, widths=widths)))
    q = space.metric.exp(0.1 * v, p)  # geodesics of general widths, flat points
    assert q.shape == p.shape and np.all(space.belongs(q))


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda W: FiberNormalSolver(W, widths=(3, 5, 4, 3)),
            r"W\[2\] has shape \(2, 4\) but widths",
        ),
        (lambda W: fiber_tangent_projection(W, W, widths=(3, 5, 4)), "widths has 3 entries"),
        (lambda W: fiber_restore(W, np.ones((3, 2))), r"X must have shape \(2, 3\)"),
        (lambda W: fiber_retraction(W, W[:2]), "but V has 2 layers"),
        (
            lambda W: fiber_tangent_projection(
                np.ones((3, 2, 2)), np.ones((3, 2, 2)), widths=(2, 3, 2, 2)
            ),
            r"widths must be \(d, \.\.\., d\)",
        ),
        (
            lambda W: Fiber(np.ones((2, 3)) + np.eye(2, 3), 3, widths=(3, 1, 4, 2)),
            r"widths\[1\] = 1 is below rank X = 2",
        ),
        (
            lambda W: Fiber(np.outer([1, 2], [1, 0, 1]), 3, widths=(3, 5, 4, 2)),
            r"full rank min\(d_N, d_0\) = 2, got rank 1",
        ),
        (
            lambda W: Fiber(np.ones((2, 3)), 3, widths=(3, 5, 4, 4)),
            r"X must have shape \(d_N, d_0\) = \(4, 3\)",
        ),
        (
            lambda W: Fiber(np.ones((2, 3)), 3, widths=(3, 5, 2)),
            "widths must have depth \\+ 1 = 4 entries",
        ),
        (
            lambda W: GeomstatsFiber(np.outer([1, 2], [1, 0, 1]), 3, widths=(3, 5, 4, 2)),
            "got rank 1",
        ),
        (lambda W: group_action([np.eye(5)], W), "a must have N - 1 = 2 matrices"),
    ],
)
def test_bad_input_names_argument_and_numbers(make, match):
    W = _layers(np.random.default_rng(18), (3, 5, 4, 2))
    with pytest.raises(ValueError, match=match):
        make(W)


def test_fiber_geodesics_take_general_widths():
    """The geodesics accept lists (full checks: tests/test_widths_geodesics.py)."""
    W = _layers(np.random.default_rng(21), (3, 5, 4, 2))
    X = end_to_end(W)
    zero = [np.zeros_like(w) for w in W]
    assert _flat(fiber_exp(W, zero, X)) == pytest.approx(_flat(W), abs=1e-14)
    assert np.allclose(_flat(fiber_log(W, W, X)), 0.0)
    assert fiber_dist(W, W, X) == 0.0
    assert _flat(fiber_geodesic_midpoint(W, W, X)) == pytest.approx(_flat(W), abs=1e-14)
    assert np.allclose(_flat(fiber_geodesic_acceleration(W, zero)), 0.0)


def test_bottleneck_network_is_refused():
    """A hidden width below min(d_0, d_N): the product cannot have full rank."""
    W = _layers(np.random.default_rng(19), (4, 2, 3))
    with pytest.raises(ValueError, match="rank-deficient"):
        FiberNormalSolver(W)
