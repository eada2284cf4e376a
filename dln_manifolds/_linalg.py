"""Batched linear-algebra primitives shared by the whole package: the one internal layer.

Every function takes arrays of shape ``(..., m, n)`` (stacks of matrices, any
number of leading axes), works for real and complex input, and does no input
validation: the public functions that call them validate their arguments at
the door (see :mod:`dln_manifolds._checks`). Modelled on pymanopt's
``tools/multi.py``: one-line formulas that the modules above compose, so that
no module needs another module's private helpers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conj_transpose",
    "solve_right",
    "polar_factor",
    "haar_from_gaussian",
    "haar_orthogonal",
    "haar_unitary",
    "stack_product",
    "stack_partial_products",
    "chain_product",
    "chain_partial_products",
    "pack_layers",
    "unpack_layers",
    "chain_second_derivative",
    "chain_segment_cuts",
    "chain_segment_signs",
    "components_differ",
]


def conj_transpose(A: np.ndarray) -> np.ndarray:
    """Conjugate transpose of the last two axes (a plain transpose for real input)."""
    At = np.swapaxes(A, -1, -2)
    return np.conj(At) if np.iscomplexobj(A) else At


def solve_right(Y: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``Y @ inv(M)`` for stacks, through a solve (never forms the inverse)."""
    return np.swapaxes(np.linalg.solve(np.swapaxes(M, -1, -2), np.swapaxes(Y, -1, -2)), -1, -2)


def polar_factor(M: np.ndarray) -> np.ndarray:
    """The orthogonal (unitary) polar factor ``U V^*`` of ``M = U S V^*``, for stacks.

    For a non-square M the thin factor (orthonormal columns of a tall M, rows of a wide one).
    """
    u, _, vh = np.linalg.svd(M, full_matrices=False)
    return u @ vh


def haar_from_gaussian(Z: np.ndarray) -> np.ndarray:
    """Haar orthogonal (unitary) matrices from a stack ``Z`` (..., d, d) of standard Gaussians.

    QR of Z with the phases of R's diagonal moved into Q (Mezzadri 2007), so that
    the law is exactly Haar: real Z gives O(d), complex Z (i.i.d. standard complex
    normal entries) gives U(d). Takes the Gaussians from any source (a numpy
    Generator, geomstats' global generator).
    """
    Q, R = np.linalg.qr(Z)
    diag = np.diagonal(R, axis1=-2, axis2=-1)
    return Q * (diag / np.abs(diag))[..., None, :]


def haar_orthogonal(rng: np.random.Generator, d: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Haar-distributed orthogonal matrices of shape ``shape + (d, d)``."""
    return haar_from_gaussian(rng.standard_normal(tuple(shape) + (d, d)))


def haar_unitary(rng: np.random.Generator, d: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Haar-distributed unitary matrices of shape ``shape + (d, d)`` (Mezzadri 2007)."""
    size = tuple(shape) + (d, d)
    return haar_from_gaussian(
        (rng.standard_normal(size) + 1j * rng.standard_normal(size)) / np.sqrt(2.0)
    )


# ---------------------------------------------------------------------------
# Products of the layers of a network (input layer first)
# ---------------------------------------------------------------------------


def stack_product(W: np.ndarray) -> np.ndarray:
    """``W[..., N-1, :, :] @ ... @ W[..., 0, :, :]`` for a stack (..., N, d, d).

    For N = 1 the result is a view of ``W``.
    """
    X = W[..., 0, :, :]
    for p in range(1, W.shape[-3]):
        X = W[..., p, :, :] @ X
    return X


def stack_partial_products(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Partial products of a stack (..., N, d, d): ``A[..., p] = W_N ... W_{p+1}``,
    ``B[..., p] = W_p ... W_1`` (p = 0..N, 1-based layers), each (..., N + 1, d, d)."""
    *batch, N, d, _ = W.shape
    shape = (*batch, N + 1, d, d)
    A = np.empty(shape, dtype=W.dtype)
    B = np.empty(shape, dtype=W.dtype)
    A[..., N, :, :] = np.eye(d, dtype=W.dtype)
    B[..., 0, :, :] = np.eye(d, dtype=W.dtype)
    for p in range(N):
        B[..., p + 1, :, :] = W[..., p, :, :] @ B[..., p, :, :]
        A[..., N - 1 - p, :, :] = A[..., N - p, :, :] @ W[..., N - 1 - p, :, :]
    return A, B


def chain_product(layers) -> np.ndarray:
    """``layers[N-1] @ ... @ layers[0]`` for a sequence of (..., d_{k+1}, d_k) arrays.

    For N = 1 the result is ``layers[0]`` itself (not a copy).
    """
    X = layers[0]
    for layer in layers[1:]:
        X = layer @ X
    return X


def chain_partial_products(layers) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Partial products of a sequence of layers of shapes (..., d_{k+1}, d_k).

    Returns lists ``A``, ``B`` of N + 1 fresh arrays: ``A[p] = W_N ... W_{p+1}`` of
    shape (..., d_N, d_p) and ``B[p] = W_p ... W_1`` of shape (..., d_p, d_0), with
    ``A[N]`` and ``B[0]`` identities (1-based layers ``W_k = layers[k-1]``).
    """
    N = len(layers)
    batch = layers[0].shape[:-2]
    dtype = np.result_type(*layers)
    d_in, d_out = layers[0].shape[-1], layers[-1].shape[-2]
    A: list[np.ndarray] = [np.empty(0)] * (N + 1)
    B: list[np.ndarray] = [np.empty(0)] * (N + 1)
    A[N] = np.broadcast_to(np.eye(d_out, dtype=dtype), (*batch, d_out, d_out)).copy()
    B[0] = np.broadcast_to(np.eye(d_in, dtype=dtype), (*batch, d_in, d_in)).copy()
    for p in range(N):
        B[p + 1] = layers[p] @ B[p]
        A[N - 1 - p] = A[N - p] @ layers[N - 1 - p]
    return A, B


def pack_layers(layers) -> np.ndarray:
    """The layers (d_{k+1}, d_k) of one network raveled and concatenated, input layer first.

    The packed layout of a network of general widths as one vector of
    P = sum_k d_{k+1} d_k entries (a fresh array); :func:`unpack_layers` inverts it.
    """
    return np.concatenate([np.ravel(layer) for layer in layers])


def unpack_layers(y: np.ndarray, widths) -> list[np.ndarray]:
    """Split a packed network (:func:`pack_layers`) of widths (d_0, ..., d_N) into its N
    layers (d_{k+1}, d_k): views of ``y``, so writing into them writes into ``y``."""
    out = []
    start = 0
    for k in range(len(widths) - 1):
        stop = start + widths[k + 1] * widths[k]
        out.append(y[start:stop].reshape(widths[k + 1], widths[k]))
        start = stop
    return out


def chain_second_derivative(layers, V) -> np.ndarray:
    r""":math:`\tfrac{d^2}{dt^2}\,\phi(W + tV)` at t = 0, :math:`\phi(W) = W_N \cdots W_1`.

    ``layers`` and ``V``: sequences (or stacks, iterated over their first axis) of N arrays
    of shapes (..., d_{k+1}, d_k). :math:`D^2\phi_W[V, V] = 2\sum_{p > q} W_N \cdots V_p
    \cdots V_q \cdots W_1`, by one recursion over the layers, O(N d^3).
    """
    c0, c1 = layers[0], V[0]
    c2 = np.zeros_like(c0, dtype=np.result_type(c0, c1))
    for W_p, V_p in zip(layers[1:], V[1:], strict=True):
        c0, c1, c2 = W_p @ c0, W_p @ c1 + V_p @ c0, W_p @ c2 + V_p @ c1
    return 2.0 * c2


def chain_segment_cuts(widths) -> list[int]:
    """The indices k with d_k = r = min(d_0, d_N) of widths (d_0, ..., d_N), in order."""
    r = min(widths[0], widths[-1])
    return [k for k, w in enumerate(widths) if w == r]


def chain_segment_signs(layers) -> np.ndarray:
    r"""Determinant signs of the r x r products of a network between consecutive widths r.

    For layers of widths :math:`(d_0, \dots, d_N)` and :math:`r = \min(d_0, d_N)`, with
    :func:`chain_segment_cuts` :math:`k_0 < k_1 < \dots`, the signs of
    :math:`\det(W_{k_{i+1}} \cdots W_{k_i + 1})` (the layers' signs for square layers; 0 for
    a singular product). Along a curve of networks whose product keeps rank r these r x r
    products stay invertible, so the signs are invariants of the connected component.
    """
    widths = (layers[0].shape[-1], *(layer.shape[-2] for layer in layers))
    cuts = chain_segment_cuts(widths)
    return np.array(
        [
            np.linalg.slogdet(chain_product(layers[i:j]))[0]
            for i, j in zip(cuts[:-1], cuts[1:], strict=True)
        ]
    )


def components_differ(W, T) -> bool:
    """True if the real networks W and T lie in different connected components.

    W, T: stacks (N, d, d) or sequences of N layers of the same widths. The
    components of the full-rank networks are told apart by :func:`chain_segment_signs`
    (the layers' determinant signs for square layers): no curve of full-rank networks,
    hence no geodesic of the fiber or of the balanced manifold, joins points whose signs
    differ. Complex networks form one component (False).
    """
    W, T = list(W), list(T)
    if any(np.iscomplexobj(z) for z in (*W, *T)):
        return False
    return bool(np.any(chain_segment_signs(W) != chain_segment_signs(T)))
