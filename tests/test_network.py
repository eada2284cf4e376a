"""The DLN maps of dln_manifolds.network against explicit loops, autograd and finite differences."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dln_manifolds import (
    MatrixSensingEnergy,
    balanced_point,
    end_to_end,
    end_to_end_differential,
    end_to_end_velocity,
    lifted_gradient,
    moments,
    partial_products,
)
from dln_manifolds.flows import integrate_flow


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _loop_product(layers, d, dtype=float):
    """W_{last} ... W_{first} by an explicit loop (layers given input first)."""
    out = np.eye(d, dtype=dtype)
    for layer in layers:
        out = layer @ out
    return out


# ---------------------------------------------------------------------------
# end_to_end, partial_products, moments
# ---------------------------------------------------------------------------


@given(N=st.integers(1, 6), d=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), cplx=st.booleans())
@settings(max_examples=20)
def test_products_against_loops(N, d, seed, cplx):
    rng = np.random.default_rng(seed)
    W = _complex(rng, (N, d, d)) if cplx else rng.standard_normal((N, d, d))
    dtype = W.dtype
    X = end_to_end(W)
    np.testing.assert_allclose(X, _loop_product(W, d, dtype), rtol=1e-13, atol=1e-13)
    A, B = partial_products(W)
    assert A.shape == B.shape == (N + 1, d, d)
    for p in range(N + 1):
        # A[p] = W_N ... W_{p+1}, B[p] = W_p ... W_1 (1-based paper indices)
        np.testing.assert_allclose(A[p], _loop_product(W[p:], d, dtype), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(B[p], _loop_product(W[:p], d, dtype), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(A[p] @ B[p], X, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cplx", [False, True])
def test_moments_explicit_and_hermitian(rng, cplx):
    N, d = 4, 3
    W = _complex(rng, (N, d, d)) if cplx else rng.standard_normal((N, d, d))
    G = moments(W)
    assert G.shape == (N - 1, d, d)
    for k in range(N - 1):
        ref = W[k] @ W[k].conj().T - W[k + 1].conj().T @ W[k + 1]
        np.testing.assert_allclose(G[k], ref, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(G[k], G[k].conj().T, atol=1e-14)
    assert np.iscomplexobj(G) == cplx
    assert moments(W[:1]).shape == (0, d, d)


# ---------------------------------------------------------------------------
# Gradients and differentials
# ---------------------------------------------------------------------------


def _quartic_sensing(d, seed=0, weight=1.0):
    """E(X) = weight (sum(X^4)/4 + matrix sensing): non-quadratic, autograd-friendly."""
    sensing = MatrixSensingEnergy.random(np.diag(np.linspace(1.0, 2.0, d)), 2 * d * d, seed=seed)

    def value(X):
        return weight * (anp.sum(X**4) / 4 + sensing.value(X))

    def gradient(X):
        return weight * (X**3 + sensing.gradient(X))

    return value, gradient


def _autograd_end_to_end(W):
    X = W[0]
    for p in range(1, W.shape[0]):
        X = anp.dot(W[p], X)
    return X


@pytest.mark.parametrize("N,d", [(1, 3), (2, 2), (3, 3), (5, 2)])
def test_lifted_gradient_against_autograd(rng, N, d):
    value, gradient = _quartic_sensing(d)
    W = 0.8 * rng.standard_normal((N, d, d))
    X = end_to_end(W)
    # The energy's own gradient first (so that the lifted check tests the lift only).
    np.testing.assert_allclose(gradient(X), autograd.grad(value)(X), rtol=1e-12, atol=1e-12)
    ref = autograd.grad(lambda V: value(_autograd_end_to_end(V)))(W)
    got = lifted_gradient(W, gradient(X))
    # Same algebra in a different order: rounding only.
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("N", [1, 2, 4])
def test_differential_finite_differences_and_adjoint(rng, N):
    d = 3
    W, V = rng.standard_normal((2, N, d, d))
    h = 1e-5
    fd = (end_to_end(W + h * V) - end_to_end(W - h * V)) / (2 * h)
    dX = end_to_end_differential(W, V)
    # phi is a polynomial of degree N: central differences are exact to O(h^2) ~ 1e-10.
    np.testing.assert_allclose(dX, fd, rtol=1e-7, atol=1e-8 * np.abs(fd).max())
    Y = rng.standard_normal((d, d))
    lhs = np.vdot(Y, dX)
    rhs = np.vdot(lifted_gradient(W, Y), V)
    assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + 1)


def test_adjoint_complex(rng):
    N, d = 3, 2
    W, V = _complex(rng, (N, d, d)), _complex(rng, (N, d, d))
    Y = _complex(rng, (d, d))
    lhs = np.vdot(Y, end_to_end_differential(W, V))
    rhs = np.vdot(lifted_gradient(W, Y), V)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize("N", [1, 2, 3, 6])
def test_end_to_end_velocity_is_dphi_of_flow(rng, N):
    d = 3
    _, gradient = _quartic_sensing(d)
    W = 0.9 * rng.standard_normal((N, d, d))
    dE = gradient(end_to_end(W))
    G = lifted_gradient(W, dE)
    h = 1e-5 * np.abs(W).max() / np.abs(G).max()  # a relative step 1e-5 in W
    fd = (end_to_end(W - h * G) - end_to_end(W + h * G)) / (2 * h)
    vel = end_to_end_velocity(W, dE)
    np.testing.assert_allclose(vel, fd, rtol=1e-7, atol=1e-8 * np.abs(fd).max())
    np.testing.assert_allclose(vel, -end_to_end_differential(W, G), rtol=1e-12, atol=1e-13)


def test_moments_conserved_along_upstairs_gradient_flow(rng):
    """[G] Thm 1: d/dt G_k = 0 along dW/dt = -grad E(phi(W)), here for a quartic E."""
    N, d = 3, 3
    _, gradient = _quartic_sensing(d, weight=0.1)
    W0 = np.eye(d) + 0.3 * rng.standard_normal((N, d, d))  # unbalanced start
    assert np.abs(moments(W0)).max() > 0.1

    def velocity(t, W):
        return -lifted_gradient(W, gradient(end_to_end(W)))

    drift = {}
    for dt in (0.05, 0.025):
        res = integrate_flow(velocity, W0, 2.0, dt=dt, method="rk4")
        drift[dt] = np.abs(moments(res.final) - moments(W0)).max()
    moved = np.abs(res.final - W0).max()
    assert moved > 0.1  # the flow really moves the layers
    # RK4 does not conserve quadratic invariants exactly: the drift is the global
    # error O(dt^4). Halving dt must divide it by ~16 (>= 8 allowed), and it is small.
    assert drift[0.025] <= 1e-4 * moved
    assert drift[0.05] / drift[0.025] >= 8.0
    # A flow that is not a lifted gradient does change the moments (the test can fail):
    res = integrate_flow(lambda t, W: -W * np.arange(1, N + 1)[:, None, None], W0, 0.5, dt=0.01)
    assert np.abs(moments(res.final) - moments(W0)).max() > 1e-2


# ---------------------------------------------------------------------------
# balanced_point
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("N", [1, 2, 3, 6])
@pytest.mark.parametrize("rotate", [False, True])
def test_balanced_point(rng, N, rotate):
    d = 3
    X = rng.standard_normal((d, d))
    rot = np.stack([_haar(rng, d) for _ in range(N - 1)]) if rotate and N > 1 else None
    W = balanced_point(X, N, rotations=rot)
    assert W.shape == (N, d, d)
    scale = np.abs(W).max() ** 2
    assert np.abs(moments(W)).max(initial=0.0) <= 1e-13 * scale
    np.testing.assert_allclose(end_to_end(W), X, rtol=1e-12, atol=1e-13 * np.abs(X).max())
    # Every balanced point of the fiber has |W|^2 = N tr(Sigma^{2/N}) (Kempf-Ness, [R] Thm 1).
    s = np.linalg.svd(X, compute_uv=False)
    np.testing.assert_allclose(np.sum(W**2), N * np.sum(s ** (2 / N)), rtol=1e-12)


def test_balanced_point_complex(rng):
    N, d = 3, 2
    X = _complex(rng, (d, d))
    rot = np.stack([np.linalg.qr(_complex(rng, (d, d)))[0] for _ in range(N - 1)])
    W = balanced_point(X, N, rotations=rot)
    assert np.abs(moments(W)).max() <= 1e-13 * np.abs(W).max() ** 2
    np.testing.assert_allclose(end_to_end(W), X, rtol=1e-12, atol=1e-13)


def test_center_minimizes_norm_on_fiber(rng):
    """Kempf-Ness: the center has the least |W|^2 on F_X; other fiber points are larger."""
    N, d = 3, 3
    X = rng.standard_normal((d, d))
    C = balanced_point(X, N)
    s = np.linalg.svd(X, compute_uv=False)
    target = N * np.sum(s ** (2 / N))
    np.testing.assert_allclose(np.sum(C**2), target, rtol=1e-13)
    # The center's middle layers are the diagonal Lambda = Sigma^{1/N}.
    np.testing.assert_allclose(C[1], np.diag(s ** (1 / N)), atol=1e-14)
    for scale in (1e-3, 0.1, 1.0):
        # Group action of GL(d)^{N-1} ([R] eq. 1.5): W_k -> g_k W_k g_{k-1}^{-1}.
        g = [np.eye(d)] + [np.eye(d) + scale * rng.standard_normal((d, d)) for _ in range(N - 1)]
        g.append(np.eye(d))
        W = np.stack([g[k + 1] @ C[k] @ np.linalg.inv(g[k]) for k in range(N)])
        np.testing.assert_allclose(end_to_end(W), X, rtol=1e-10, atol=1e-10)
        assert np.sum(W**2) > target


def test_balanced_point_rank_deficient(rng):
    X = np.outer(rng.standard_normal(3), rng.standard_normal(3))
    W = balanced_point(X, 4)
    np.testing.assert_allclose(end_to_end(W), X, atol=1e-13)
    assert np.abs(moments(W)).max() <= 1e-13


def test_inputs_not_mutated(rng):
    W, V = rng.standard_normal((2, 3, 2, 2))
    Y = rng.standard_normal((2, 2))
    W0, V0, Y0 = W.copy(), V.copy(), Y.copy()
    end_to_end(W)
    partial_products(W)
    moments(W)
    lifted_gradient(W, Y)
    end_to_end_differential(W, V)
    end_to_end_velocity(W, Y)
    balanced_point(Y, 3)
    assert np.array_equal(W, W0) and np.array_equal(V, V0) and np.array_equal(Y, Y0)
    assert end_to_end(W[:1]) is not W[0]


# ---------------------------------------------------------------------------
# Batches of networks (..., N, d, d)
# ---------------------------------------------------------------------------


@given(
    batch=st.sampled_from([(1,), (3,), (2, 2)]),
    N=st.integers(1, 4),
    d=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    cplx=st.booleans(),
)
@settings(max_examples=15)
def test_batched_functions_equal_per_network(batch, N, d, seed, cplx):
    rng = np.random.default_rng(seed)
    draw = (lambda shape: _complex(rng, shape)) if cplx else rng.standard_normal
    W, V = draw((2, *batch, N, d, d))
    Y = draw((*batch, d, d))
    got = {
        "end_to_end": end_to_end(W),
        "partial_products": np.stack(partial_products(W), axis=-4),
        "moments": moments(W),
        "lifted_gradient": lifted_gradient(W, Y),
        "adjoint": lifted_gradient(W, Y),
        "differential": end_to_end_differential(W, V),
        "velocity": end_to_end_velocity(W, Y),
        "shared_dE": lifted_gradient(W, Y[(0,) * len(batch)]),
    }
    for idx in np.ndindex(*batch):
        ref = {
            "end_to_end": end_to_end(W[idx]),
            "partial_products": np.stack(partial_products(W[idx]), axis=-4),
            "moments": moments(W[idx]),
            "lifted_gradient": lifted_gradient(W[idx], Y[idx]),
            "adjoint": lifted_gradient(W[idx], Y[idx]),
            "differential": end_to_end_differential(W[idx], V[idx]),
            "velocity": end_to_end_velocity(W[idx], Y[idx]),
            "shared_dE": lifted_gradient(W[idx], Y[(0,) * len(batch)]),
        }
        for name, value in ref.items():
            assert got[name][idx].shape == value.shape, name
            # The same products in the same order, batched by matmul: rounding only.
            np.testing.assert_allclose(got[name][idx], value, rtol=1e-13, atol=1e-13, err_msg=name)


def test_batched_input_checks(rng):
    W = rng.standard_normal((2, 3, 2, 2))
    with pytest.raises(ValueError, match="dE"):
        lifted_gradient(W, np.zeros((3, 2, 2)))  # neither shared nor one per network
    with pytest.raises(ValueError, match="dE"):
        end_to_end_velocity(W[0], np.zeros((2, 2, 2)))  # one network takes one dE
    with pytest.raises(ValueError, match="V"):
        end_to_end_differential(W, np.zeros((2, 4, 2, 2)))  # wrong number of layers
    with pytest.raises(ValueError, match="W"):
        end_to_end(np.zeros((2, 0, 2, 2)))
    with pytest.raises(ValueError, match="W"):
        moments(np.zeros((2, 3, 2, 3)))
    with pytest.raises(ValueError, match="W"):
        end_to_end(np.full((2, 3, 2, 2), np.nan))
    with pytest.raises(TypeError, match="W"):
        partial_products(np.array([[[["a"]]]]))
