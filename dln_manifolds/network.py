r"""The deep linear network: end-to-end map, partial products, moments, gradients.

A depth-N network has weights stored as one array ``W`` of shape (N, d, d),
input layer first: ``W[p-1]`` is the paper's :math:`W_p` and the end-to-end
matrix is :math:`X = \phi(W) = W_N \cdots W_1` ([G] eq. 1.1).

Partial products ([G] eq. 4.10) are
:math:`A_{p+1} = W_N \cdots W_{p+1}` (:math:`A_{N+1} = I`) and
:math:`B_{p-1} = W_{p-1} \cdots W_1` (:math:`B_0 = I`).

All functions accept real and complex weights; for complex input the
transpose ``^T`` of the papers becomes the conjugate transpose ``^*``.
:func:`end_to_end`, :func:`partial_products`, :func:`moments`,
:func:`lifted_gradient` (the adjoint of :math:`d\phi_W`),
:func:`end_to_end_differential` and :func:`end_to_end_velocity` also take a batch
of networks, shape (..., N, d, d), vectorized over the leading axes.

**Networks of general widths.** A network of widths :math:`(d_0, \dots, d_N)` is a
list (or tuple) of N arrays, input layer first, ``W[k-1]`` of shape
:math:`(d_k, d_{k-1})` (the paper's :math:`W_k`); its end-to-end matrix is
:math:`d_N \times d_0` and the moment :math:`G_k` is :math:`d_k \times d_k`. Every
function above accepts such a sequence wherever it accepts weights and then returns
lists of arrays of the right shapes: a stacked ndarray in, a stacked ndarray out (the
fast path for square networks, unchanged); a list or tuple in, lists out. A batch of
general-width networks puts the same leading batch axes on every layer, ``W[k-1]`` of
shape :math:`(\dots, d_k, d_{k-1})`. A list or tuple is always read as a sequence of
layers along its first axis, also a nested list of numbers: pass an ndarray for the
stacked layout (..., N, d, d). The keyword ``widths=(d_0, ..., d_N)`` checks the
layers' shapes. :func:`balanced_point` with ``widths`` builds a balanced network of
general widths over a rectangular X; one exists if and only if every hidden width is
at least rank X.

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [KN] G. Kempf and L. Ness, *The length of vectors in representation spaces*, Lecture
  Notes in Math. 732 (1979).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._checks import (
    as_array,
    as_layer_sequence,
    as_layer_stack,
    as_matrix,
    as_matrix_batch,
    as_stack,
    check_finite_depth,
    check_stack_widths,
    check_widths,
    widths_of_layers,
)
from ._linalg import (
    chain_partial_products,
    chain_product,
    conj_transpose,
    stack_partial_products,
    stack_product,
)

__all__ = [
    "end_to_end",
    "partial_products",
    "moments",
    "lifted_gradient",
    "end_to_end_differential",
    "end_to_end_velocity",
    "balanced_point",
]


def _as_gradient(dE, W: np.ndarray, name: str = "dE") -> np.ndarray:
    """Validate E'(X): shape (d, d), or one per network of a batch W (..., N, d, d)."""
    dE = as_matrix_batch(dE, W.shape[-1], name)
    batch = W.shape[:-3]
    if not batch and dE.ndim != 2:
        raise ValueError(f"{name} must have shape (d, d), got {dE.shape}")
    if dE.shape[:-2] not in ((), batch):
        raise ValueError(f"{name} must have shape (d, d) or {batch + W.shape[-2:]}, got {dE.shape}")
    return dE


# A network given as a list or tuple of layers (general widths) ---------------------

#: Type of the weights: a stacked ndarray (..., N, d, d) or a sequence of N layers.
Layers = np.ndarray | list[np.ndarray]


#: A network given as one of these is a sequence of layers (general widths).
_SEQUENCE = (list, tuple)


def _is_sequence(W) -> bool:
    """True for a network given as a sequence of layers (general widths)."""
    return isinstance(W, _SEQUENCE)


def _as_sequence_target(Y, layers: list[np.ndarray], name: str) -> np.ndarray:
    """Validate E'(X) (or Y) for a sequence of layers: (d_N, d_0), or one per network."""
    Y = as_array(Y, name, (), real=False, batch=True)
    batch = layers[0].shape[:-2]
    d_out, d_in = layers[-1].shape[-2], layers[0].shape[-1]
    if Y.ndim < 2 or Y.shape[-2:] != (d_out, d_in) or Y.shape[:-2] not in ((), batch):
        per_network = f" or {(*batch, d_out, d_in)}" if batch else ""
        raise ValueError(
            f"{name} must have the shape (d_N, d_0) = ({d_out}, {d_in}) of the end-to-end "
            f"matrix of W (widths {widths_of_layers(layers)}){per_network}, got shape {Y.shape}"
        )
    return Y


# The network maps ---------------------------------------------------------------------


def end_to_end(W: Layers, *, widths: Sequence[int] | None = None) -> np.ndarray:
    r"""End-to-end matrix :math:`X = W_N \cdots W_1` ([G] eq. 1.1).

    Parameters
    ----------
    W : array_like, shape (..., N, d, d), or sequence of N arrays
        Layers, input layer first (one network or a batch). A list or tuple holds
        layers of general widths, ``W[k-1]`` of shape (..., d_k, d_{k-1}).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    X : ndarray, shape (..., d, d), or (..., d_N, d_0) for a sequence
    """
    if isinstance(W, _SEQUENCE):
        layers = as_layer_sequence(W, "W", widths=widths)
        X = chain_product(layers)
        return X.copy() if len(layers) == 1 else X
    W = as_layer_stack(W)
    if widths is not None:
        check_stack_widths(W, widths)
    return _end_to_end(W).copy()


#: :func:`end_to_end` without input checks, for validated (..., N, d, d) (may be a view).
_end_to_end = stack_product


def partial_products(W: Layers, *, widths: Sequence[int] | None = None) -> tuple[Layers, Layers]:
    r"""Left and right partial products of the layers ([G] eq. 4.10).

    Parameters
    ----------
    W : array_like, shape (..., N, d, d), or sequence of N arrays
        A sequence holds layers of general widths, ``W[k-1]`` of shape (..., d_k, d_{k-1}).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    A : ndarray, shape (..., N + 1, d, d), or list of N + 1 arrays
        ``A[p] = W_N ... W_{p+1}`` (the paper's :math:`A_{p+1}`), so
        ``A[N] = I`` and ``A[0] = X``. For a sequence, ``A[p]`` has shape
        (..., d_N, d_p).
    B : ndarray, shape (..., N + 1, d, d), or list of N + 1 arrays
        ``B[p] = W_p ... W_1`` (the paper's :math:`B_p`), so ``B[0] = I`` and
        ``B[N] = X``. For a sequence, ``B[p]`` has shape (..., d_p, d_0).

    Notes
    -----
    With 0-based layer index ``i`` (layer :math:`W_{i+1}`),
    :math:`\partial X / \partial W_{i+1}` acts as ``V -> A[i+1] @ V @ B[i]``.
    Cost: 2N matrix products.
    """
    if isinstance(W, _SEQUENCE):
        return chain_partial_products(as_layer_sequence(W, "W", widths=widths))
    W = as_layer_stack(W)
    if widths is not None:
        check_stack_widths(W, widths)
    return _partial_products(W)


#: :func:`partial_products` without input checks.
_partial_products = stack_partial_products


def moments(W: Layers, *, widths: Sequence[int] | None = None) -> Layers:
    r"""Moments :math:`G_k = W_k W_k^* - W_{k+1}^* W_{k+1}`, k = 1..N-1.

    This is [R] eq. 1.10 (and [G] eq. 4.2). [G] eq. 4.8 has the opposite sign,
    a typo. The point is balanced when all moments vanish.

    Parameters
    ----------
    W : array_like, shape (..., N, d, d), or sequence of N arrays
        Real or complex layers; a sequence holds layers of general widths,
        ``W[k-1]`` of shape (..., d_k, d_{k-1}).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    G : ndarray, shape (..., N - 1, d, d), or list of N - 1 arrays
        Symmetric (Hermitian for complex input) matrices; for a sequence
        ``G[k-1]`` (the moment :math:`G_k`) has shape (..., d_k, d_k).
    """
    if isinstance(W, _SEQUENCE):
        layers = as_layer_sequence(W, "W", widths=widths)
        return [
            lower @ conj_transpose(lower) - conj_transpose(upper) @ upper
            for lower, upper in zip(layers[:-1], layers[1:], strict=True)
        ]
    W = as_layer_stack(W)
    if widths is not None:
        check_stack_widths(W, widths)
    lower, upper = W[..., :-1, :, :], W[..., 1:, :, :]
    return lower @ conj_transpose(lower) - conj_transpose(upper) @ upper


def lifted_gradient(W: Layers, dE, *, widths: Sequence[int] | None = None) -> Layers:
    r"""Euclidean gradient of :math:`E(\phi(W))` given :math:`E'(X)` ([G] eq. 3.6).

    Layer p receives :math:`A_{p+1}^* E'(X) B_{p-1}^*`. Cost: 4N products of
    d x d matrices, O(N d^3).

    Parameters
    ----------
    W : array_like, shape (..., N, d, d), or sequence of N arrays
        A sequence holds layers of general widths, ``W[k-1]`` of shape (..., d_k, d_{k-1}).
    dE : array_like, shape (d, d) or (..., d, d)
        Euclidean gradient of E at the end-to-end matrix (one per network of a
        batch, or one shared by all); (d_N, d_0) or (..., d_N, d_0) for a sequence.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (..., N, d, d), or list of N arrays shaped like the layers
    """
    if isinstance(W, _SEQUENCE):
        layers = as_layer_sequence(W, "W", widths=widths)
        return _chain_adjoint(layers, _as_sequence_target(dE, layers, "dE"))
    W = as_layer_stack(W)
    if widths is not None:
        check_stack_widths(W, widths)
    return lifted_gradient_unchecked(W, _as_gradient(dE, W))


def lifted_gradient_unchecked(W: np.ndarray, dE: np.ndarray) -> np.ndarray:
    """:func:`lifted_gradient` without input checks (W (..., N, d, d), dE (..., d, d)).

    Internal (not exported): for callers that validated at their own door (the samplers).
    """
    A, B = _partial_products(W)
    A_h, B_h = conj_transpose(A[..., 1:, :, :]), conj_transpose(B[..., :-1, :, :])
    return A_h @ dE[..., None, :, :] @ B_h


def _chain_adjoint(layers: list[np.ndarray], Y: np.ndarray) -> list[np.ndarray]:
    """Layer p gets A_{p+1}^* Y B_{p-1}^*, for a validated sequence of layers."""
    A, B = chain_partial_products(layers)
    return [conj_transpose(A[p + 1]) @ Y @ conj_transpose(B[p]) for p in range(len(layers))]


def end_to_end_differential(
    W: Layers, V: Layers, *, widths: Sequence[int] | None = None
) -> np.ndarray:
    r"""Differential :math:`d\phi_W(V) = \sum_p A_{p+1} V_p B_{p-1}`.

    Parameters
    ----------
    W, V : array_like, shape (..., N, d, d), or sequences of N arrays
        Batch shapes must broadcast against each other. For a sequence W, V is a
        sequence of layers of the same widths (or, for square layers, one stacked
        network (N, d, d)).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (..., d, d), or (..., d_N, d_0) for a sequence
    """
    if isinstance(W, _SEQUENCE):
        layers = as_layer_sequence(W, "W", widths=widths)
        if not _is_sequence(V):  # one stacked network (N, d, d): its layers
            V = list(as_stack(V, "V"))
        V = as_layer_sequence(V, "V", widths=widths_of_layers(layers))
        try:
            np.broadcast_shapes(layers[0].shape[:-2], V[0].shape[:-2])
        except ValueError:
            raise ValueError(
                f"V must have batch axes that broadcast against those of W, "
                f"{layers[0].shape[:-2]}; got {V[0].shape[:-2]}"
            ) from None
        A, B = chain_partial_products(layers)
        out = A[1] @ V[0] @ B[0]
        for p in range(1, len(layers)):
            out = out + A[p + 1] @ V[p] @ B[p]
        return out
    W = as_layer_stack(W)
    if widths is not None:
        check_stack_widths(W, widths)
    V = as_layer_stack(V, "V", depth=W.shape[-3], d=W.shape[-1])
    A, B = _partial_products(W)
    return np.sum(A[..., 1:, :, :] @ V @ B[..., :-1, :, :], axis=-3)


def end_to_end_velocity(W: Layers, dE, *, widths: Sequence[int] | None = None) -> np.ndarray:
    r"""Velocity of the end-to-end matrix under the upstairs gradient flow.

    The right-hand side of [G] eq. 4.9,
    :math:`\dot X = -\sum_{p=1}^N A_{p+1} A_{p+1}^* E'(X) B_{p-1}^* B_{p-1}`,
    i.e. :math:`-d\phi_W(\nabla_W E(\phi(W)))`.

    Parameters
    ----------
    W : array_like, shape (..., N, d, d), or sequence of N arrays
    dE : array_like, shape (d, d) or (..., d, d); (d_N, d_0) or (..., d_N, d_0) for a sequence
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (..., d, d), or (..., d_N, d_0) for a sequence
    """
    if isinstance(W, _SEQUENCE):
        layers = as_layer_sequence(W, "W", widths=widths)
        dE = _as_sequence_target(dE, layers, "dE")
        A, B = chain_partial_products(layers)
        out = A[1] @ conj_transpose(A[1]) @ dE @ conj_transpose(B[0]) @ B[0]
        for p in range(1, len(layers)):
            a, b = A[p + 1], B[p]
            out = out + a @ conj_transpose(a) @ dE @ conj_transpose(b) @ b
        return -out
    W = as_layer_stack(W)
    if widths is not None:
        check_stack_widths(W, widths)
    dE = _as_gradient(dE, W)
    A, B = _partial_products(W)
    A, B = A[..., 1:, :, :], B[..., :-1, :, :]
    return -np.sum(A @ conj_transpose(A) @ dE[..., None, :, :] @ conj_transpose(B) @ B, axis=-3)


def balanced_point(X, depth: int, rotations=None, *, widths: Sequence[int] | None = None) -> Layers:
    r"""A balanced point with end-to-end matrix X ([G] eq. 5.16).

    With the SVD :math:`X = Q_N \Sigma Q_0^*` and :math:`\Lambda = \Sigma^{1/N}`
    the layers are :math:`W_p = Q_p \Lambda Q_{p-1}^*`. Without rotations
    (:math:`Q_1 = \dots = Q_{N-1} = I`) this is the center
    :math:`C = (Q_N\Lambda, \Lambda, \dots, \Lambda, \Lambda Q_0^*)` of [R],
    the minimizer of :math:`|W|^2` on the fiber (Kempf-Ness, [R] Thm 1).

    With ``widths`` :math:`(d_0, \dots, d_N)` and X of shape :math:`(d_N, d_0)`:
    let :math:`m = \min_k d_k` and :math:`X = U_m \Sigma_m V_m^*` the SVD truncated
    to the m largest singular values (exact when :math:`\operatorname{rank} X \le m`).
    The layers are :math:`W_k = E_k \Lambda E_{k-1}^*`, :math:`\Lambda = \Sigma_m^{1/N}`,
    with :math:`E_0 = V_m`, :math:`E_N = U_m` and, for the hidden layers,
    :math:`E_k = R_k [I_m; 0]` (the first m columns of the k-th rotation, of size
    :math:`d_k \times d_k`; the identity by default). Then
    :math:`W_k W_k^* = E_k \Lambda^2 E_k^* = W_{k+1}^* W_{k+1}`: the point is balanced,
    and :math:`\phi(W) = X`. A balanced network of these widths over X exists if and
    only if every hidden width is at least rank X.

    Parameters
    ----------
    X : array_like, shape (d, d) or (..., d, d), or (d_N, d_0) with ``widths``
        Any matrix (rank-deficient allowed; then the point lies in the closure
        of the balanced manifold). A stack of square matrices gives a stack of
        points (one batched SVD; ``rotations`` are shared by the whole stack).
    depth : int
        Number of layers N >= 1.
    rotations : array_like, shape (N - 1, d, d), or sequence of N - 1 arrays, optional
        Orthogonal (unitary) matrices :math:`Q_1, \dots, Q_{N-1}`; with ``widths``,
        ``rotations[k-1]`` has shape (d_k, d_k). The rotated point is
        :math:`W_k \to R_k W_k R_{k-1}^*` (:math:`R_0 = I_{d_0}`, :math:`R_N = I_{d_N}`).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`: return a network of general widths, as a list.

    Returns
    -------
    W : ndarray, shape (..., N, d, d), or, with ``widths``, list of N arrays
        ``W[k-1]`` of shape (d_k, d_{k-1}).

    Raises
    ------
    ValueError
        If a hidden width is below rank X (naming the width and the rank), or if the
        shape of X disagrees with ``widths``.
    """
    if widths is not None:
        return _balanced_point_widths(X, depth, rotations, widths)
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[0] != X.shape[1] and X.size:
        raise ValueError(
            f"X must be square without widths, got shape {X.shape}; for a network of general "
            f"widths pass widths=(d_0, ..., d_N) with d_0 = {X.shape[1]}, d_N = {X.shape[0]}"
        )
    if np.ndim(X) > 2 and not isinstance(X, (str, bytes)):
        X = as_matrix_batch(X, np.shape(X)[-1], "X")  # a stack (..., d, d): one batched SVD
        if X.size == 0:
            raise ValueError(f"X must have shape (..., d, d) with d >= 1, got shape {X.shape}")
    else:
        X = as_matrix(X)
    N = check_finite_depth(depth)
    d = X.shape[-1]
    U, s, Vh = np.linalg.svd(X)
    lam = s ** (1.0 / N)
    if rotations is None:
        Q = np.broadcast_to(np.eye(d, dtype=X.dtype), (N - 1, d, d))
    else:
        Q = as_stack(rotations, "rotations", d=d) if N > 1 else np.zeros((0, d, d))
        if Q.shape[0] != N - 1:
            raise ValueError(f"rotations must have shape ({N - 1}, {d}, {d}), got {Q.shape}")
        err = np.max(np.abs(conj_transpose(Q) @ Q - np.eye(d)), initial=0.0)
        if err > 1e-8:
            raise ValueError(f"rotations must be orthogonal (unitary); deviation {err:.2e}")
    # Q_0 .. Q_N, shape (..., N + 1, d, d)
    Q = np.broadcast_to(np.asarray(Q), X.shape[:-2] + (N - 1, d, d))
    frames = np.concatenate([conj_transpose(Vh)[..., None, :, :], Q, U[..., None, :, :]], axis=-3)
    W = (frames[..., 1:, :, :] * lam[..., None, None, :]) @ conj_transpose(frames[..., :-1, :, :])
    return W.astype(np.result_type(X.dtype, Q.dtype), copy=False)


def _balanced_point_widths(X, depth, rotations, widths) -> list[np.ndarray]:
    """:func:`balanced_point` for a network of general widths (validates its input)."""
    N = check_finite_depth(depth)
    widths = check_widths(widths, depth=N)
    X = as_array(X, "X", (), real=False, batch=True)
    if X.shape != (widths[-1], widths[0]):
        raise ValueError(
            f"X must have shape (d_N, d_0) = ({widths[-1]}, {widths[0]}) for widths {widths}, "
            f"got shape {X.shape}"
        )
    if rotations is None:
        R = [None] * (N - 1)
    else:
        if _is_sequence(rotations):
            R = list(rotations)
        else:
            arr = as_array(rotations, "rotations", (), real=False, batch=True)
            if arr.ndim != 3:
                raise ValueError(
                    f"rotations must be a sequence of N - 1 = {N - 1} square matrices, "
                    f"got an array of shape {arr.shape}"
                )
            R = list(arr)
        if len(R) != N - 1:
            raise ValueError(
                f"rotations must have N - 1 = {N - 1} matrices (one per hidden layer), got {len(R)}"
            )
        for k in range(1, N):
            name = f"rotations[{k - 1}]"
            R[k - 1] = Rk = as_matrix(R[k - 1], name, d=widths[k])
            err = np.max(np.abs(conj_transpose(Rk) @ Rk - np.eye(widths[k])))
            if err > 1e-8:
                raise ValueError(f"{name} must be orthogonal (unitary); deviation {err:.2e}")
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    tol = max(X.shape) * np.finfo(np.float64).eps * s[0]
    rank = int(np.count_nonzero(s > tol))
    for k in range(1, N):
        if widths[k] < rank:
            raise ValueError(
                f"widths[{k}] must be at least rank X = {rank} (every hidden width of a "
                f"network with end-to-end matrix X is), but widths {widths} has d_{k} = "
                f"{widths[k]}"
            )
    m = min(widths)  # <= min(d_0, d_N) = len(s); s[m:] <= tol are dropped
    lam = s[:m] ** (1.0 / N)
    dtype = np.result_type(X.dtype, *(Rk.dtype for Rk in R if Rk is not None))
    frames = [conj_transpose(Vh[:m])]  # E_0 .. E_N, E_k of shape (d_k, m)
    for k in range(1, N):
        Rk = R[k - 1]
        frames.append(np.eye(widths[k], m, dtype=X.dtype) if Rk is None else Rk[:, :m])
    frames.append(U[:, :m])
    return [
        ((frames[k] * lam) @ conj_transpose(frames[k - 1])).astype(dtype, copy=False)
        for k in range(1, N + 1)
    ]
