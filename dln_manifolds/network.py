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
:func:`lifted_gradient` (and its alias :func:`end_to_end_differential_adjoint`),
:func:`end_to_end_differential` and :func:`end_to_end_velocity` also take a batch
of networks, shape (..., N, d, d), vectorized over the leading axes.

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

import numpy as np

from ._checks import as_matrix, as_matrix_batch, as_stack, check_finite_depth

__all__ = [
    "end_to_end",
    "partial_products",
    "moments",
    "lifted_gradient",
    "end_to_end_differential",
    "end_to_end_differential_adjoint",
    "end_to_end_velocity",
    "balanced_point",
]


def _h(A: np.ndarray) -> np.ndarray:
    """Conjugate transpose of the last two axes."""
    return np.conj(np.swapaxes(A, -1, -2)) if np.iscomplexobj(A) else np.swapaxes(A, -1, -2)


def _as_layers(W, name: str = "W", depth: int | None = None, d: int | None = None) -> np.ndarray:
    """Validate one network (N, d, d) (by :func:`as_stack`) or a batch (..., N, d, d)."""
    if isinstance(W, (str, bytes)) or W is None or np.ndim(W) <= 3:
        return as_stack(W, name, depth, d)
    shape = np.shape(W)
    if shape[-1] != shape[-2]:
        raise ValueError(
            f"{name} must be a stack of square layers of shape (..., N, d, d), got shape {shape}"
        )
    arr = as_matrix_batch(W, shape[-1], name)  # dtype and finiteness
    if shape[-3] < 1 or shape[-1] < 1:
        raise ValueError(f"{name} must have N >= 1 layers and d >= 1, got shape {shape}")
    if depth is not None and shape[-3] != depth:
        raise ValueError(f"{name} must have {depth} layers, got {shape[-3]}")
    if d is not None and shape[-1] != d:
        raise ValueError(f"{name} must have layers of size {d} x {d}, got {shape[-2:]}")
    return arr


def _as_gradient(dE, W: np.ndarray, name: str = "dE") -> np.ndarray:
    """Validate E'(X): shape (d, d), or one per network of a batch W (..., N, d, d)."""
    dE = as_matrix_batch(dE, W.shape[-1], name)
    batch = W.shape[:-3]
    if not batch and dE.ndim != 2:
        raise ValueError(f"{name} must have shape (d, d), got {dE.shape}")
    if dE.shape[:-2] not in ((), batch):
        raise ValueError(f"{name} must have shape (d, d) or {batch + W.shape[-2:]}, got {dE.shape}")
    return dE


def end_to_end(W) -> np.ndarray:
    r"""End-to-end matrix :math:`X = W_N \cdots W_1` ([G] eq. 1.1).

    Parameters
    ----------
    W : array_like, shape (..., N, d, d)
        Layers, input layer first (one network or a batch).

    Returns
    -------
    X : ndarray, shape (..., d, d)
    """
    return _end_to_end(_as_layers(W)).copy()


def _end_to_end(W: np.ndarray) -> np.ndarray:
    """:func:`end_to_end` without input checks, for validated (..., N, d, d) (may be a view)."""
    X = W[..., 0, :, :]
    for p in range(1, W.shape[-3]):
        X = W[..., p, :, :] @ X
    return X


def partial_products(W) -> tuple[np.ndarray, np.ndarray]:
    r"""Left and right partial products of the layers ([G] eq. 4.10).

    Parameters
    ----------
    W : array_like, shape (..., N, d, d)

    Returns
    -------
    A : ndarray, shape (..., N + 1, d, d)
        ``A[p] = W_N ... W_{p+1}`` (the paper's :math:`A_{p+1}`), so
        ``A[N] = I`` and ``A[0] = X``.
    B : ndarray, shape (..., N + 1, d, d)
        ``B[p] = W_p ... W_1`` (the paper's :math:`B_p`), so ``B[0] = I`` and
        ``B[N] = X``.

    Notes
    -----
    With 0-based layer index ``i`` (layer :math:`W_{i+1}`),
    :math:`\partial X / \partial W_{i+1}` acts as ``V -> A[i+1] @ V @ B[i]``.
    Cost: 2N matrix products.
    """
    return _partial_products(_as_layers(W))


def _partial_products(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`partial_products` without input checks."""
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


def moments(W) -> np.ndarray:
    r"""Moments :math:`G_k = W_k W_k^* - W_{k+1}^* W_{k+1}`, k = 1..N-1.

    This is [R] eq. 1.10 (and [G] eq. 4.2). [G] eq. 4.8 has the opposite sign,
    a typo. The point is balanced when all moments vanish.

    Parameters
    ----------
    W : array_like, shape (..., N, d, d)
        Real or complex layers.

    Returns
    -------
    G : ndarray, shape (..., N - 1, d, d)
        Symmetric (Hermitian for complex input) matrices.
    """
    W = _as_layers(W)
    lower, upper = W[..., :-1, :, :], W[..., 1:, :, :]
    return lower @ _h(lower) - _h(upper) @ upper


def lifted_gradient(W, dE) -> np.ndarray:
    r"""Euclidean gradient of :math:`E(\phi(W))` given :math:`E'(X)` ([G] eq. 3.6).

    Layer p receives :math:`A_{p+1}^* E'(X) B_{p-1}^*`. Cost: 4N products of
    d x d matrices, O(N d^3).

    Parameters
    ----------
    W : array_like, shape (..., N, d, d)
    dE : array_like, shape (d, d) or (..., d, d)
        Euclidean gradient of E at the end-to-end matrix (one per network of a
        batch, or one shared by all).

    Returns
    -------
    ndarray, shape (..., N, d, d)
    """
    W = _as_layers(W)
    return _lifted_gradient(W, _as_gradient(dE, W))


def _lifted_gradient(W: np.ndarray, dE: np.ndarray) -> np.ndarray:
    """:func:`lifted_gradient` without input checks (W (..., N, d, d), dE (..., d, d))."""
    A, B = _partial_products(W)
    return _h(A[..., 1:, :, :]) @ dE[..., None, :, :] @ _h(B[..., :-1, :, :])


def end_to_end_differential(W, V) -> np.ndarray:
    r"""Differential :math:`d\phi_W(V) = \sum_p A_{p+1} V_p B_{p-1}`.

    Parameters
    ----------
    W, V : array_like, shape (..., N, d, d)
        Batch shapes must broadcast against each other.

    Returns
    -------
    ndarray, shape (..., d, d)
    """
    W = _as_layers(W)
    V = _as_layers(V, "V", depth=W.shape[-3], d=W.shape[-1])
    A, B = _partial_products(W)
    return np.sum(A[..., 1:, :, :] @ V @ B[..., :-1, :, :], axis=-3)


def end_to_end_differential_adjoint(W, Y) -> np.ndarray:
    r"""Adjoint of :math:`d\phi_W` in the Frobenius product: layer p gets
    :math:`A_{p+1}^* Y B_{p-1}^*`.

    Parameters
    ----------
    W : array_like, shape (..., N, d, d)
    Y : array_like, shape (d, d) or (..., d, d)

    Returns
    -------
    ndarray, shape (..., N, d, d)
    """
    W = _as_layers(W)
    return _lifted_gradient(W, _as_gradient(Y, W, "Y"))


def end_to_end_velocity(W, dE) -> np.ndarray:
    r"""Velocity of the end-to-end matrix under the upstairs gradient flow.

    The right-hand side of [G] eq. 4.9,
    :math:`\dot X = -\sum_{p=1}^N A_{p+1} A_{p+1}^* E'(X) B_{p-1}^* B_{p-1}`,
    i.e. :math:`-d\phi_W(\nabla_W E(\phi(W)))`.

    Parameters
    ----------
    W : array_like, shape (..., N, d, d)
    dE : array_like, shape (d, d) or (..., d, d)

    Returns
    -------
    ndarray, shape (..., d, d)
    """
    W = _as_layers(W)
    dE = _as_gradient(dE, W)
    A, B = _partial_products(W)
    A, B = A[..., 1:, :, :], B[..., :-1, :, :]
    return -np.sum(A @ _h(A) @ dE[..., None, :, :] @ _h(B) @ B, axis=-3)


def balanced_point(X, depth: int, rotations=None) -> np.ndarray:
    r"""A balanced point with end-to-end matrix X ([G] eq. 5.16).

    With the SVD :math:`X = Q_N \Sigma Q_0^*` and :math:`\Lambda = \Sigma^{1/N}`
    the layers are :math:`W_p = Q_p \Lambda Q_{p-1}^*`. Without rotations
    (:math:`Q_1 = \dots = Q_{N-1} = I`) this is the center
    :math:`C = (Q_N\Lambda, \Lambda, \dots, \Lambda, \Lambda Q_0^*)` of [R],
    the minimizer of :math:`|W|^2` on the fiber (Kempf-Ness, [R] Thm 1).

    Parameters
    ----------
    X : array_like, shape (d, d)
        Any matrix (rank-deficient allowed; then the point lies in the closure
        of the balanced manifold).
    depth : int
        Number of layers N >= 1.
    rotations : array_like, shape (N - 1, d, d), optional
        Orthogonal (unitary) matrices :math:`Q_1, \dots, Q_{N-1}`.

    Returns
    -------
    W : ndarray, shape (N, d, d)
    """
    X = as_matrix(X)
    N = check_finite_depth(depth)
    d = X.shape[0]
    U, s, Vh = np.linalg.svd(X)
    lam = s ** (1.0 / N)
    if rotations is None:
        Q = np.broadcast_to(np.eye(d, dtype=X.dtype), (N - 1, d, d))
    else:
        Q = as_stack(rotations, "rotations", d=d) if N > 1 else np.zeros((0, d, d))
        if Q.shape[0] != N - 1:
            raise ValueError(f"rotations must have shape ({N - 1}, {d}, {d}), got {Q.shape}")
        err = np.max(np.abs(_h(Q) @ Q - np.eye(d)), initial=0.0)
        if err > 1e-8:
            raise ValueError(f"rotations must be orthogonal (unitary); deviation {err:.2e}")
    frames = np.concatenate([_h(Vh)[None], np.asarray(Q), U[None]], axis=0)  # Q_0 .. Q_N
    W = (frames[1:] * lam[None, None, :]) @ _h(frames[:-1])
    return W.astype(np.result_type(X.dtype, Q.dtype), copy=False)
