"""Networks of general widths (d_0, ..., d_N): the network maps on a list of layers.

Checked against brute force: explicit matmul chains, central finite differences of
E(phi(W)), autograd, and the dense Jacobian of phi assembled column by column. The
stacked (N, d, d) path is compared with outputs stored from the code before general
widths existed (tests/data/network_square_reference.npz).
"""

from __future__ import annotations

from pathlib import Path

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dln_manifolds import (
    balanced_point,
    end_to_end,
    end_to_end_differential,
    end_to_end_velocity,
    lifted_gradient,
    moments,
    partial_products,
)
from dln_manifolds._checks import as_layer_sequence, check_widths
from dln_manifolds._linalg import (
    chain_partial_products,
    chain_product,
    stack_partial_products,
    stack_product,
)

REFERENCE = Path(__file__).parent / "data" / "network_square_reference.npz"

WIDTHS = st.lists(st.integers(1, 5), min_size=2, max_size=5).map(tuple)


def _draw(rng, shape, cplx=False):
    out = rng.standard_normal(shape)
    return out + 1j * rng.standard_normal(shape) if cplx else out


def _layers(rng, widths, batch=(), cplx=False, scale=1.0):
    return [
        scale * _draw(rng, (*batch, widths[k + 1], widths[k]), cplx) for k in range(len(widths) - 1)
    ]


def _loop(layers, d):
    """layers[-1] @ ... @ layers[0] by an explicit loop from the identity of size d."""
    out = np.eye(d)
    for layer in layers:
        out = layer @ out
    return out


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


# ---------------------------------------------------------------------------
# Products and moments
# ---------------------------------------------------------------------------


@given(widths=WIDTHS, seed=st.integers(0, 2**32 - 1), cplx=st.booleans())
@settings(max_examples=15)
def test_products_against_loops(widths, seed, cplx):
    rng = np.random.default_rng(seed)
    W = _layers(rng, widths, cplx=cplx)
    N = len(W)
    X = end_to_end(W)
    assert X.shape == (widths[-1], widths[0])
    np.testing.assert_allclose(X, _loop(W, widths[0]), rtol=1e-13, atol=1e-13)
    A, B = partial_products(W)
    assert isinstance(A, list) and len(A) == len(B) == N + 1
    for p in range(N + 1):
        assert A[p].shape == (widths[-1], widths[p]) and B[p].shape == (widths[p], widths[0])
        np.testing.assert_allclose(A[p], _loop(W[p:], widths[p]), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(B[p], _loop(W[:p], widths[0]), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(A[p] @ B[p], X, rtol=1e-12, atol=1e-12)
    # the same numbers with the widths named, and from a tuple
    np.testing.assert_array_equal(end_to_end(tuple(W), widths=widths), X)
    # the public-internal primitives
    np.testing.assert_array_equal(chain_product(W), X)
    for got, want in zip(chain_partial_products(W), (A, B), strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


@given(widths=WIDTHS, seed=st.integers(0, 2**32 - 1), cplx=st.booleans())
@settings(max_examples=15)
def test_moments_shapes_and_values(widths, seed, cplx):
    rng = np.random.default_rng(seed)
    W = _layers(rng, widths, cplx=cplx)
    G = moments(W)
    assert isinstance(G, list) and len(G) == len(W) - 1
    for k in range(1, len(W)):  # G_k = W_k W_k^* - W_{k+1}^* W_{k+1}, d_k x d_k
        Wk, Wk1 = W[k - 1], W[k]
        assert G[k - 1].shape == (widths[k], widths[k])
        ref = Wk @ Wk.conj().T - Wk1.conj().T @ Wk1
        np.testing.assert_allclose(G[k - 1], ref, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(G[k - 1], G[k - 1].conj().T, atol=1e-14)
        assert np.iscomplexobj(G[k - 1]) == cplx


def test_moments_conserved_by_lifted_gradient_general_widths(rng):
    """[G] Thm 1 holds for any widths: dG_k/dt = 0 along dW = -grad E(phi(W))."""
    widths = (4, 6, 5, 3)
    W = _layers(rng, widths)
    C = rng.standard_normal((3, 4))
    dE = end_to_end(W) ** 3 + C  # E(X) = sum(X^4)/4 + <C, X>
    grad = lifted_gradient(W, dE)
    h = 1e-5
    plus = moments([w - h * g for w, g in zip(W, grad, strict=True)])
    minus = moments([w + h * g for w, g in zip(W, grad, strict=True)])
    rate = max(np.abs(p - m).max() / (2 * h) for p, m in zip(plus, minus, strict=True))
    scale = max(np.abs(g).max() for g in grad) * max(np.abs(w).max() for w in W)
    assert rate <= 1e-8 * scale
    # negative control: a direction that is not a lifted gradient moves the moments
    V = _layers(rng, widths)
    plus = moments([w + h * v for w, v in zip(W, V, strict=True)])
    minus = moments([w - h * v for w, v in zip(W, V, strict=True)])
    assert max(np.abs(p - m).max() / (2 * h) for p, m in zip(plus, minus, strict=True)) > 0.1


# ---------------------------------------------------------------------------
# Gradient, differential, adjoint, velocity
# ---------------------------------------------------------------------------


def _energy(C):
    def value(X):
        return anp.sum(X**4) / 4 + anp.sum(C * X)

    def gradient(X):
        return X**3 + C

    return value, gradient


def _chain_ad(layers):
    X = layers[0]
    for layer in layers[1:]:
        X = anp.dot(layer, X)
    return X


@pytest.mark.parametrize("widths", [(4, 6, 5, 3), (3, 2, 4), (2, 1, 3, 2), (5, 3)])
def test_lifted_gradient_finite_differences_and_autograd(rng, widths):
    W = _layers(rng, widths, scale=0.7)
    value, gradient = _energy(rng.standard_normal((widths[-1], widths[0])))
    got = lifted_gradient(W, gradient(end_to_end(W)), widths=widths)
    assert [g.shape for g in got] == [w.shape for w in W]
    # central differences of E(phi(W)), entry by entry of every layer
    h = 1e-5
    for k, layer in enumerate(W):
        fd = np.empty(layer.shape)
        for idx in np.ndindex(layer.shape):
            step = np.zeros(layer.shape)
            step[idx] = h
            up = [w + step if j == k else w for j, w in enumerate(W)]
            down = [w - step if j == k else w for j, w in enumerate(W)]
            fd[idx] = (value(end_to_end(up)) - value(end_to_end(down))) / (2 * h)
        np.testing.assert_allclose(got[k], fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())
    ref = autograd.grad(lambda V: value(_chain_ad(V)))(W)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-12 * np.abs(r).max())


def _dense_jacobian(W):
    """Matrix of dphi_W on the concatenated vectorized layers, column by column."""
    cols = []
    for k, layer in enumerate(W):
        for idx in np.ndindex(layer.shape):
            V = [np.zeros(w.shape) for w in W]
            V[k][idx] = 1.0
            cols.append(end_to_end_differential(W, V).ravel())
    return np.array(cols).T


@pytest.mark.parametrize("widths", [(4, 6, 5, 3), (3, 2, 4), (2, 3), (3, 1, 3)])
def test_differential_adjoint_velocity_against_dense_jacobian(rng, widths):
    W = _layers(rng, widths)
    J = _dense_jacobian(W)
    assert J.shape == (
        widths[-1] * widths[0],
        sum(a * b for a, b in zip(widths, widths[1:], strict=False)),
    )
    # J against central differences of phi (a polynomial: exact to O(h^2))
    h = 1e-5
    V = _layers(rng, widths)
    flat_V = np.concatenate([v.ravel() for v in V])
    fd = (end_to_end([w + h * v for w, v in zip(W, V, strict=True)]) - end_to_end(
        [w - h * v for w, v in zip(W, V, strict=True)]
    )) / (2 * h)  # fmt: skip
    np.testing.assert_allclose((J @ flat_V).reshape(fd.shape), fd, rtol=1e-7, atol=1e-8)
    # adjoint = J^T, velocity = -J J^T vec(dE) = -dphi(lifted gradient)
    dE = rng.standard_normal((widths[-1], widths[0]))
    adj = np.concatenate([a.ravel() for a in lifted_gradient(W, dE)])
    np.testing.assert_allclose(adj, J.T @ dE.ravel(), rtol=1e-12, atol=1e-12)
    vel = end_to_end_velocity(W, dE)
    assert vel.shape == (widths[-1], widths[0])
    np.testing.assert_allclose(vel.ravel(), -J @ (J.T @ dE.ravel()), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(
        vel, -end_to_end_differential(W, lifted_gradient(W, dE)), rtol=1e-12, atol=1e-12
    )


def test_adjoint_complex_general_widths(rng):
    widths = (3, 2, 4)
    W, V = _layers(rng, widths, cplx=True), _layers(rng, widths, cplx=True)
    Y = _draw(rng, (4, 3), cplx=True)
    lhs = np.vdot(Y, end_to_end_differential(W, V))
    rhs = sum(np.vdot(a, v) for a, v in zip(lifted_gradient(W, Y), V, strict=True))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


# ---------------------------------------------------------------------------
# Batches: every layer carries the same leading axes
# ---------------------------------------------------------------------------


@given(
    widths=WIDTHS,
    batch=st.sampled_from([(1,), (3,), (2, 2)]),
    seed=st.integers(0, 2**32 - 1),
    cplx=st.booleans(),
)
@settings(max_examples=10)
def test_batches_equal_per_network(widths, batch, seed, cplx):
    rng = np.random.default_rng(seed)
    W, V = _layers(rng, widths, batch, cplx), _layers(rng, widths, batch, cplx)
    Y = _draw(rng, (*batch, widths[-1], widths[0]), cplx)
    got = {
        "end_to_end": end_to_end(W),
        "A": partial_products(W)[0],
        "B": partial_products(W)[1],
        "moments": moments(W),
        "lifted_gradient": lifted_gradient(W, Y),
        "shared": lifted_gradient(W, Y[(0,) * len(batch)]),
        "adjoint": lifted_gradient(W, Y),
        "differential": end_to_end_differential(W, V),
        "velocity": end_to_end_velocity(W, Y),
    }
    for idx in np.ndindex(*batch):
        Wi, Vi = [w[idx] for w in W], [v[idx] for v in V]
        ref = {
            "end_to_end": end_to_end(Wi),
            "A": partial_products(Wi)[0],
            "B": partial_products(Wi)[1],
            "moments": moments(Wi),
            "lifted_gradient": lifted_gradient(Wi, Y[idx]),
            "shared": lifted_gradient(Wi, Y[(0,) * len(batch)]),
            "adjoint": lifted_gradient(Wi, Y[idx]),
            "differential": end_to_end_differential(Wi, Vi),
            "velocity": end_to_end_velocity(Wi, Y[idx]),
        }
        for name, value in ref.items():
            if isinstance(value, list):
                assert len(got[name]) == len(value), name
                pairs = [(g[idx], r) for g, r in zip(got[name], value, strict=True)]
            else:
                pairs = [(got[name][idx], value)]
            for g, r in pairs:
                assert g.shape == r.shape, name
                np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-13, err_msg=name)


# ---------------------------------------------------------------------------
# Square networks: the list gives the stacked numbers; the stacked path is unchanged
# ---------------------------------------------------------------------------


@given(N=st.integers(1, 5), d=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=10)
def test_list_of_square_layers_equals_stack(N, d, seed):
    rng = np.random.default_rng(seed)
    W, V = rng.standard_normal((2, N, d, d))
    Y = rng.standard_normal((d, d))
    L, LV = list(W), list(V)
    pairs = [
        (end_to_end(L), end_to_end(W)),
        (np.stack(partial_products(L)[0]), partial_products(W)[0]),
        (np.stack(partial_products(L)[1]), partial_products(W)[1]),
        (np.stack(lifted_gradient(L, Y)), lifted_gradient(W, Y)),
        (np.stack(lifted_gradient(L, Y)), lifted_gradient(W, Y)),
        (end_to_end_differential(L, LV), end_to_end_differential(W, V)),
        (end_to_end_velocity(L, Y), end_to_end_velocity(W, Y)),
    ]
    if N > 1:
        pairs.append((np.stack(moments(L)), moments(W)))
    for got, want in pairs:
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    assert moments(L) == [] if N == 1 else True
    X = rng.standard_normal((d, d))
    np.testing.assert_allclose(
        np.stack(balanced_point(X, N, widths=(d,) * (N + 1))), balanced_point(X, N), atol=1e-13
    )
    # the stacked primitives of _linalg are the stacked path
    np.testing.assert_array_equal(stack_product(W), end_to_end(W))
    for got, want in zip(stack_partial_products(W), partial_products(W), strict=True):
        np.testing.assert_array_equal(got, want)


def test_stacked_path_matches_stored_outputs_of_the_old_code():
    """Outputs of the square (..., N, d, d) path stored before general widths existed."""
    ref = np.load(REFERENCE)
    rtol = 1e-14  # bit-identical on the machine that stored them; rounding elsewhere
    for tag in ("single", "batch"):
        W, V, dE = ref[f"{tag}_W"], ref[f"{tag}_V"], ref[f"{tag}_dE"]
        A, B = partial_products(W)
        got = {
            "end_to_end": end_to_end(W),
            "A": A,
            "B": B,
            "moments": moments(W),
            "lifted_gradient": lifted_gradient(W, dE),
            "differential": end_to_end_differential(W, V),
            "adjoint": lifted_gradient(W, dE),
            "velocity": end_to_end_velocity(W, dE),
        }
        for name, value in got.items():
            assert type(value) is np.ndarray, name
            np.testing.assert_allclose(value, ref[f"{tag}_{name}"], rtol=rtol, atol=1e-15)
    Wc, dEc = ref["complex_W"], ref["complex_dE"]
    np.testing.assert_allclose(moments(Wc), ref["complex_moments"], rtol=rtol, atol=1e-15)
    np.testing.assert_allclose(
        lifted_gradient(Wc, dEc), ref["complex_lifted_gradient"], rtol=rtol, atol=1e-15
    )
    X, Q = ref["X"], ref["rotations"]
    np.testing.assert_allclose(balanced_point(X, 4), ref["balanced_point"], atol=1e-14)
    np.testing.assert_allclose(
        balanced_point(X, 4, rotations=Q), ref["balanced_point_rotated"], atol=1e-14
    )


# ---------------------------------------------------------------------------
# balanced_point(X, depth, widths=...)
# ---------------------------------------------------------------------------


def _matrix(rng, shape, rank):
    """A random matrix of the given shape and exact rank (0 allowed)."""
    return rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))


@pytest.mark.parametrize(
    "widths", [(4, 6, 5, 3), (3, 3, 7, 5), (2, 5, 5, 2), (3, 4), (4, 2, 3), (3, 1, 3)]
)
@pytest.mark.parametrize("rank", ["full", 1, 0])
@pytest.mark.parametrize("rotate", [False, True])
def test_balanced_point_general_widths(rng, widths, rank, rotate):
    N = len(widths) - 1
    shape = (widths[-1], widths[0])
    r = min(widths) if rank == "full" else rank
    X = _matrix(rng, shape, r)
    rot = [_haar(rng, widths[k]) for k in range(1, N)] if rotate else None
    W = balanced_point(X, N, rotations=rot, widths=widths)
    assert isinstance(W, list) and [w.shape for w in W] == [
        (widths[k + 1], widths[k]) for k in range(N)
    ]
    scale = max(1.0, max(np.abs(w).max() for w in W) ** 2)
    np.testing.assert_allclose(end_to_end(W), X, rtol=1e-12, atol=1e-13 * scale)
    assert max((np.abs(g).max() for g in moments(W)), default=0.0) <= 1e-13 * scale
    # every balanced point of the fiber has |W|^2 = N tr(Sigma^{2/N}) ([R] Thm 1)
    s = np.linalg.svd(X, compute_uv=False)
    np.testing.assert_allclose(
        sum(np.sum(w**2) for w in W), N * np.sum(s ** (2 / N)), rtol=1e-12, atol=1e-12
    )
    if rotate:  # W_k -> R_k W_k R_{k-1}^T applied to the unrotated point
        C = balanced_point(X, N, widths=widths)
        R = [np.eye(widths[0]), *rot, np.eye(widths[-1])]
        for k in range(N):
            np.testing.assert_allclose(W[k], R[k + 1] @ C[k] @ R[k].T, atol=1e-13 * scale)


def test_balanced_point_complex_general_widths(rng):
    widths = (3, 4, 2)
    X = _draw(rng, (2, 3), cplx=True)
    rot = [np.linalg.qr(_draw(rng, (4, 4), cplx=True))[0]]
    W = balanced_point(X, 2, rotations=rot, widths=widths)
    assert all(np.iscomplexobj(w) for w in W)
    np.testing.assert_allclose(end_to_end(W), X, atol=1e-13)
    assert np.abs(moments(W)[0]).max() <= 1e-13


def test_balanced_point_hidden_width_below_rank_names_width_and_rank(rng):
    X = _matrix(rng, (5, 4), 3)
    with pytest.raises(ValueError, match=r"widths\[2\] must be at least rank X = 3.*d_2 = 2"):
        balanced_point(X, 3, widths=(4, 6, 2, 5))
    with pytest.raises(ValueError, match=r"widths\[1\].*rank X = 3.*d_1 = 1"):
        balanced_point(X, 2, widths=(4, 1, 5))
    # the rank is the numerical rank: a width of 3 is enough for a rank-3 matrix
    W = balanced_point(X, 3, widths=(4, 6, 3, 5))
    np.testing.assert_allclose(end_to_end(W), X, atol=1e-12)


def test_balanced_point_bad_input(rng):
    X = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"X must have shape \(d_N, d_0\) = \(4, 3\)"):
        balanced_point(X, 2, widths=(3, 5, 4))  # X is (3, 4), widths say (4, 3)
    with pytest.raises(ValueError, match=r"widths must have depth \+ 1 = 3 entries"):
        balanced_point(X, 2, widths=(4, 5, 5, 3))
    with pytest.raises(ValueError, match=r"X must be square without widths.*\(3, 4\)"):
        balanced_point(X, 2)
    with pytest.raises(ValueError, match=r"rotations\[0\] must have shape \(5, 5\)"):
        balanced_point(X, 2, rotations=[np.eye(4)], widths=(4, 5, 3))
    with pytest.raises(ValueError, match=r"rotations\[0\] must be orthogonal"):
        balanced_point(X, 2, rotations=[2 * np.eye(5)], widths=(4, 5, 3))
    with pytest.raises(ValueError, match=r"rotations must have N - 1 = 1 matrices"):
        balanced_point(X, 2, rotations=[np.eye(5)] * 2, widths=(4, 5, 3))
    with pytest.raises(TypeError, match=r"widths\[1\]"):
        balanced_point(X, 2, widths=(4, 2.5, 3))
    with pytest.raises(ValueError, match=r"widths\[1\]"):
        balanced_point(X, 2, widths=(4, 0, 3))
    with pytest.raises(TypeError, match="widths"):
        balanced_point(X, 2, widths="453")


# ---------------------------------------------------------------------------
# Bad input for sequences of layers: ValueError naming the argument and the numbers
# ---------------------------------------------------------------------------


def test_sequence_bad_input(rng):
    W = _layers(rng, (4, 6, 5, 3))
    with pytest.raises(ValueError, match=r"W\[1\] has shape \(5, 6\) but widths \(4, 6, 4, 3\)"):
        end_to_end(W, widths=(4, 6, 4, 3))
    with pytest.raises(ValueError, match=r"widths has 3 entries.*2 layers.*W has 3 layers"):
        moments(W, widths=(4, 6, 5))
    with pytest.raises(ValueError, match=r"W\[1\] must have 6 columns.*got shape \(5, 7\)"):
        end_to_end([W[0], rng.standard_normal((5, 7)), W[2]])
    with pytest.raises(ValueError, match=r"W\[2\] has batch axes \(2,\) but W\[0\] has \(\)"):
        end_to_end([W[0], W[1], np.stack([W[2]] * 2)])
    with pytest.raises(ValueError, match=r"dE must have the shape \(d_N, d_0\) = \(3, 4\)"):
        lifted_gradient(W, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"dE must .* \(3, 4\).*got shape \(2, 3, 4\)"):
        end_to_end_velocity(W, np.zeros((2, 3, 4)))  # one network takes one dE
    with pytest.raises(ValueError, match=r"dE must have the shape .* \(3, 4\)"):
        lifted_gradient(W, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"V\[0\] has shape \(6, 3\) but widths \(4, 6, 5, 3\)"):
        end_to_end_differential(W, _layers(rng, (3, 6, 5, 3)))
    with pytest.raises(ValueError, match=r"V must be a stack of square layers"):
        end_to_end_differential(W, np.zeros((2, 3, 4, 4)))  # not one stacked network
    with pytest.raises(ValueError, match=r"V\[0\] has shape \(4, 4\) but widths"):
        end_to_end_differential(W, np.zeros((3, 4, 4)))
    Wsq = _layers(rng, (2, 2, 2))
    V = rng.standard_normal((2, 2, 2))  # a stacked V for a square list W: its layers
    np.testing.assert_array_equal(
        end_to_end_differential(Wsq, V), end_to_end_differential(Wsq, list(V))
    )
    with pytest.raises(ValueError, match="V must have batch axes that broadcast"):
        end_to_end_differential(
            _layers(rng, (4, 6, 5, 3), batch=(3,)), _layers(rng, (4, 6, 5, 3), batch=(2,))
        )
    # batch axes of V that broadcast against W's are fine (as for stacks)
    dX = end_to_end_differential(W, _layers(rng, (4, 6, 5, 3), batch=(2,)))
    assert dX.shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"W\[1\] contains NaN"):
        end_to_end([W[0], np.full((5, 6), np.nan), W[2]])
    with pytest.raises(TypeError, match=r"W\[0\] must be an array of numbers"):
        end_to_end([W[0] > 0, W[1], W[2]])
    with pytest.raises(ValueError, match=r"W\[0\] must be a matrix"):
        end_to_end([np.ones(3)])
    with pytest.raises(ValueError, match="W must have N >= 1 layers"):
        end_to_end([])
    # a stacked network with widths that disagree
    with pytest.raises(ValueError, match=r"widths must be \(d, \.\.\., d\) = \(2, 2, 2\)"):
        lifted_gradient(np.ones((2, 2, 2)), np.ones((2, 2)), widths=(2, 3, 2))
    end_to_end(np.ones((2, 2, 2)), widths=(2, 2, 2))  # agreeing widths are fine


def test_validators():
    assert check_widths([3, 4.0, np.int64(2)]) == (3, 4, 2)
    with pytest.raises(ValueError, match="at least 2 entries"):
        check_widths((3,))
    with pytest.raises(TypeError):
        check_widths(np.ones((2, 2), dtype=int))
    layers = as_layer_sequence([np.eye(2, 3, dtype=int), 1j * np.ones((1, 2))])
    assert [x.dtype for x in layers] == [np.complex128, np.complex128]
    with pytest.raises(TypeError, match=r"W\[1\] must be real"):
        as_layer_sequence([np.eye(2), 1j * np.eye(2)], real=True)
    with pytest.raises(ValueError, match=r"W\[0\] must be a matrix of shape \(d_out, d_in\)"):
        as_layer_sequence([np.ones((2, 2, 2))], batch=False)
    with pytest.raises(TypeError, match="W must be a list or tuple"):
        as_layer_sequence(np.ones((2, 2, 2)))


def test_inputs_not_mutated_and_outputs_fresh(rng):
    W = _layers(rng, (3, 2, 4))
    V = _layers(rng, (3, 2, 4))
    Y = np.outer(rng.standard_normal(4), rng.standard_normal(3))  # rank 1 <= d_1 = 2
    copies = [w.copy() for w in W + V] + [Y.copy()]
    end_to_end(W)
    partial_products(W)
    moments(W)
    lifted_gradient(W, Y)
    end_to_end_differential(W, V)
    end_to_end_velocity(W, Y)
    balanced_point(Y, 2, widths=(3, 2, 4))
    for a, b in zip(W + V + [Y], copies, strict=True):
        np.testing.assert_array_equal(a, b)
    single = [rng.standard_normal((2, 3))]
    assert end_to_end(single) is not single[0]
    assert not np.shares_memory(end_to_end(single), single[0])
    A, B = partial_products(single)
    assert not np.shares_memory(A[0], single[0]) and not np.shares_memory(B[1], single[0])
