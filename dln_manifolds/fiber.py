r"""The fiber :math:`\mathcal{F}_X = \{W : W_N \cdots W_1 = X\}` with the induced Euclidean metric.

[R] section 2. Points are arrays ``W`` of shape (N, d, d), input layer first;
X is a full-rank d x d matrix (real or complex). The metric is the real part
of the Frobenius product, :math:`\langle V, Z\rangle = \mathrm{Re\,tr}(V^* Z)`
summed over layers.

Normal space and tangent projection
-----------------------------------
With :math:`D = d\phi_W`, :math:`D(V) = \sum_p A_{p+1} V_p B_{p-1}`, the
normal space of :math:`\mathcal{F}_X` is the range of the adjoint
:math:`D^*(Y)_p = A_{p+1}^* Y B_{p-1}^*` (dimension d^2), so

.. math::

    P(Z) = Z - D^* K^{-1} D(Z), \qquad
    K(Y) = D D^*(Y) = \sum_{p=1}^N A_{p+1}A_{p+1}^*\, Y\, B_{p-1}^* B_{p-1},

with K a d^2 x d^2 Hermitian positive definite operator when X has full rank
(:ref:`math-fiber`). This replaces the (N-1)d^2 block-tridiagonal system of [R]
eq. 2.21. Two solvers (:class:`FiberNormalSolver`):

- ``"cholesky"`` (default for d <= 32): the dense matrix of K in row-major
  vectorization is :math:`\sum_p L_p \otimes R_p^T` with
  :math:`L_p = A_{p+1}A_{p+1}^*`, :math:`R_p = B_{p-1}^*B_{p-1}`; it is formed
  by one (d^2 x N) @ (N x d^2) product, O(N d^4), then factored, O(d^6/3).
  Each solve then costs O(d^4) plus one step of iterative refinement with the
  matrix-free K, O(N d^3).
- ``"cg"`` (default for d > 32): conjugate gradients on K, matrix-free
  (O(N d^3) per iteration: 2 batched products of N d x d matrices),
  preconditioned with the depth operator :math:`\mathcal{A}_{N,X}^{-1}`
  (O(d^3) per iteration after one SVD), which *equals* K at balanced points
  (so CG converges in one step there) and stays a good preconditioner nearby.

Group action and generators
---------------------------
:math:`\mathbf{A}\cdot W` of [R] eq. 1.5 with generators
:math:`a \in \mathfrak{gl}(d)^{N-1}`, stored as ``a`` of shape (N-1, d, d),
``a[k-1]`` = :math:`a_k`; the tangent vector of a generator is
:math:`w_a` of [R] eq. 2.3: layer p gets :math:`a_p W_p - W_p a_{p-1}`
(:math:`a_0 = a_N = 0`).

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).
- [KN] G. Kempf and L. Ness, *The length of vectors in representation spaces*, Lecture
  Notes in Math. 732 (1979).
- [Hig] N. J. Higham, *The scaling and squaring method for the matrix exponential
  revisited*, SIAM J. Matrix Anal. Appl. 26 (2005).
- [AMT] P.-A. Absil, R. Mahony and J. Trumpf, *An extrinsic look at the Riemannian
  Hessian*, GSI (2013).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

from ._checks import as_matrix, as_stack, check_finite_depth, check_full_rank
from .depth_metric import depth_multipliers
from .network import balanced_point, end_to_end, end_to_end_velocity, moments, partial_products

__all__ = [
    "CHOLESKY_MAX_D",
    "FiberNormalSolver",
    "fiber_center",
    "fiber_normal_operator",
    "fiber_normal_matrix",
    "fiber_tangent_projection",
    "group_action",
    "group_action_exp",
    "generator_to_tangent",
    "tangent_to_generator",
    "fiber_group_element",
    "fiber_retraction",
    "fiber_restore",
    "regularizer_gradient",
    "ness_gradient",
    "fiber_weingarten",
]

#: Largest d for which ``method="auto"`` uses the dense Cholesky solver.
CHOLESKY_MAX_D = 32


def _h(A: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(A, -1, -2)) if np.iscomplexobj(A) else np.swapaxes(A, -1, -2)


def _rdiv(Y: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Y @ inv(M) for stacks, through a solve."""
    return np.swapaxes(np.linalg.solve(np.swapaxes(M, -1, -2), np.swapaxes(Y, -1, -2)), -1, -2)


def _inner(U: np.ndarray, V: np.ndarray) -> float:
    return float(np.real(np.vdot(U, V)))


def _check_vector(W: np.ndarray, V, name: str) -> np.ndarray:
    return as_stack(V, name, depth=W.shape[0], d=W.shape[1])


def _stack_and_generator(W, a, name: str = "a") -> tuple[np.ndarray, np.ndarray]:
    """Validate layers W, shape (N, d, d), and generators ``a``, shape (N-1, d, d)."""
    W = as_stack(W)
    N, d, _ = W.shape
    if N == 1:
        a = np.asarray(a)
        if a.shape not in ((0, d, d), (0,)):
            raise ValueError(f"{name} must have shape (0, {d}, {d}) for depth 1, got {a.shape}")
        return W, np.zeros((0, d, d), dtype=W.dtype)
    return W, as_stack(a, name, depth=N - 1, d=d)


# ---------------------------------------------------------------------------
# Normal system
# ---------------------------------------------------------------------------


def fiber_center(X: ArrayLike, depth: int) -> np.ndarray:
    r"""The center :math:`C = (Q_N\Lambda, \Lambda, \dots, \Lambda Q_0^*)` of :math:`\mathcal{F}_X`.

    [R] section 1.2 and Lemma 1, :math:`X = Q_N \Sigma Q_0^*`,
    :math:`\Lambda = \Sigma^{1/N}`. It minimizes :math:`|W|^2` on the fiber
    (Kempf-Ness, [R] Thm 1), with minimum :math:`N\,\mathrm{tr}\,\Sigma^{2/N}`.

    Parameters
    ----------
    X : array_like, shape (d, d)
    depth : int

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    return balanced_point(X, depth)


class FiberNormalSolver:
    r"""Solver of the d^2 x d^2 normal system :math:`K y = r` at a fixed point W.

    :math:`K = d\phi_W\, d\phi_W^*`, see the module docstring for the two
    methods and their cost. The factorization (or the preconditioner) is
    computed once in the constructor, so that repeated projections at the
    same point (as in trust-region inner iterations) are cheap.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Layers with a full-rank product.
    method : {"auto", "cholesky", "cg"}
        ``"auto"`` uses Cholesky for d <= :data:`CHOLESKY_MAX_D` and CG beyond.
    tol : float
        Relative residual :math:`|r - K y| / |r|` at which CG stops.
    maxiter : int, optional
        CG iteration cap (default ``2 d^2 + 100``, above the exact-arithmetic
        bound of d^2 real or 2 d^2 complex iterations).

    Attributes
    ----------
    method : str
        The method actually used.
    last_iterations : int
        CG iterations of the last solve (0 for Cholesky).
    """

    def __init__(
        self, W: ArrayLike, method: str = "auto", tol: float = 1e-13, maxiter: int | None = None
    ):
        W = as_stack(W)
        if method not in ("auto", "cholesky", "cg"):
            raise ValueError(f"method must be 'auto', 'cholesky' or 'cg', got {method!r}")
        tol = float(tol)
        if not tol > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        N, d, _ = W.shape
        if method == "auto":
            method = "cholesky" if d <= CHOLESKY_MAX_D else "cg"
        self.method = method
        self.tol = tol
        self.maxiter = int(maxiter) if maxiter is not None else 2 * d * d + 100
        self.point = W.copy()
        self.depth, self.d = N, d
        A, B = partial_products(W)
        self._A, self._B = A[1:], B[:-1]  # layer p: A_{p+1}, B_{p-1}
        self._Ah, self._Bh = _h(self._A), _h(self._B)
        self._L = self._A @ self._Ah
        self._R = self._Bh @ self._B
        self.end_to_end = A[0]
        self.last_iterations = 0
        if method == "cholesky":
            s = np.linalg.svd(self.end_to_end, compute_uv=False)
            check_full_rank(s, "end-to-end matrix of W")
            K = _normal_matrix_from_factors(self._L, self._R)
            try:
                self._chol = scipy.linalg.cho_factor(K, lower=True, check_finite=False)
            except np.linalg.LinAlgError as exc:
                raise ValueError(
                    "the normal operator K is not positive definite: the end-to-end "
                    "matrix of W is rank-deficient"
                ) from exc
        else:
            U, s, Vh = np.linalg.svd(self.end_to_end)
            check_full_rank(s, "end-to-end matrix of W")
            self._U, self._Vh = U, Vh
            self._Uh, self._V = _h(U), _h(Vh)
            self._M = depth_multipliers(s, N)

    # -- the maps D, D^*, K ---------------------------------------------------
    def differential(self, V: np.ndarray) -> np.ndarray:
        """:math:`d\\phi_W(V)`, shape (d, d)."""
        return np.sum(self._A @ V @ self._B, axis=0)

    def adjoint(self, Y: np.ndarray) -> np.ndarray:
        """:math:`d\\phi_W^*(Y)`, shape (N, d, d)."""
        return self._Ah @ Y @ self._Bh

    def apply(self, Y: np.ndarray) -> np.ndarray:
        """:math:`K(Y)`, matrix-free, O(N d^3)."""
        return np.sum(self._L @ Y @ self._R, axis=0)

    def _precondition(self, Y: np.ndarray) -> np.ndarray:
        return self._U @ ((self._Uh @ Y @ self._V) / self._M) @ self._Vh

    # -- solves ---------------------------------------------------------------
    def solve(self, r: np.ndarray) -> np.ndarray:
        """Return y with :math:`K(y) = r`, shape (d, d)."""
        r = np.asarray(r)
        if not np.any(r):
            self.last_iterations = 0
            return np.zeros_like(r, dtype=np.result_type(r, self.point))
        if self.method == "cholesky":
            self.last_iterations = 0
            y = self._chol_solve(r)
            return y + self._chol_solve(r - self.apply(y))  # one refinement step
        return self._cg(r)

    def _chol_solve(self, r: np.ndarray) -> np.ndarray:
        d = self.d
        return scipy.linalg.cho_solve(self._chol, r.reshape(d * d), check_finite=False).reshape(
            d, d
        )

    def _cg(self, b: np.ndarray) -> np.ndarray:
        bnorm = np.linalg.norm(b)
        y = self._precondition(b)
        r = b - self.apply(y)
        z = self._precondition(r)
        p = z
        rz = _inner(r, z)
        it = 0
        while np.linalg.norm(r) > self.tol * bnorm:
            if it >= self.maxiter:
                warnings.warn(
                    f"CG on the fiber normal system stopped after {it} iterations at relative "
                    f"residual {np.linalg.norm(r) / bnorm:.2e} > tol={self.tol:.1e}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break
            Kp = self.apply(p)
            alpha = rz / _inner(p, Kp)
            y = y + alpha * p
            it += 1
            if it % 25 == 0:
                r = b - self.apply(y)  # refresh the recursive residual
            else:
                r = r - alpha * Kp
            z = self._precondition(r)
            rz_new = _inner(r, z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        self.last_iterations = it
        return y

    # -- projections ----------------------------------------------------------
    def normal_coordinates(self, Z: np.ndarray) -> np.ndarray:
        r""":math:`y = K^{-1} d\phi_W(Z)`, so that the normal part of Z is :math:`d\phi_W^*(y)`."""
        return self.solve(self.differential(Z))

    def normal_part(self, Z: np.ndarray) -> np.ndarray:
        """Orthogonal projection of Z onto the normal space, shape (N, d, d)."""
        return self.adjoint(self.normal_coordinates(Z))

    def project(self, Z: np.ndarray) -> np.ndarray:
        """Orthogonal projection of Z onto :math:`T_W\\mathcal{F}_X = \\ker d\\phi_W`."""
        return Z - self.normal_part(Z)


def _normal_matrix_from_factors(L: np.ndarray, R: np.ndarray) -> np.ndarray:
    r"""Dense :math:`\sum_p L_p \otimes R_p^T` (row-major vectorization), O(N d^4)."""
    N, d, _ = L.shape
    # T[a, c, e, b] = sum_p L[p, a, c] R[p, e, b]: one (d^2 x N) @ (N x d^2) product
    T = np.tensordot(L, R, axes=([0], [0]))
    K = T.transpose(0, 3, 1, 2).reshape(d * d, d * d)
    return 0.5 * (K + _h(K))


def fiber_normal_operator(W: ArrayLike, Y: ArrayLike) -> np.ndarray:
    r"""Apply :math:`K(Y) = \sum_p A_{p+1}A_{p+1}^*\, Y\, B_{p-1}^*B_{p-1} = d\phi_W d\phi_W^*(Y)`.

    See :ref:`math-fiber`. Matrix-free, O(N d^3).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
    Y : array_like, shape (d, d)

    Returns
    -------
    ndarray, shape (d, d)
    """
    W = as_stack(W)
    Y = as_matrix(Y, "Y")
    if Y.shape[0] != W.shape[1]:
        raise ValueError(f"Y must have shape {W.shape[1:]}, got {Y.shape}")
    # K = dphi dphi^* is minus the end-to-end velocity map of [G] eq. 4.9
    return -end_to_end_velocity(W, Y)


def fiber_normal_matrix(W: ArrayLike) -> np.ndarray:
    r"""Dense d^2 x d^2 matrix of K in row-major vectorization (``Y.reshape(-1)``).

    :math:`K = \sum_p L_p \otimes R_p^T`, :math:`L_p = A_{p+1}A_{p+1}^*`,
    :math:`R_p = B_{p-1}^*B_{p-1}`. Cost O(N d^3 + N d^4) (one GEMM with inner
    dimension N).

    Parameters
    ----------
    W : array_like, shape (N, d, d)

    Returns
    -------
    ndarray, shape (d^2, d^2)
        Hermitian; positive definite iff the end-to-end matrix has full rank.
    """
    W = as_stack(W)
    A, B = partial_products(W)
    return _normal_matrix_from_factors(A[1:] @ _h(A[1:]), _h(B[:-1]) @ B[:-1])


def fiber_tangent_projection(
    W: ArrayLike, Z: ArrayLike, method: str = "auto", tol: float = 1e-13
) -> np.ndarray:
    r"""Orthogonal projection onto :math:`T_W\mathcal{F}_X = \ker d\phi_W`.

    :math:`P(Z) = Z - d\phi_W^* K^{-1} d\phi_W(Z)` (:ref:`math-fiber`; replaces the
    (N-1)d^2 system of [R] eq. 2.21). Real and complex.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Point with a full-rank end-to-end matrix (it need not lie on a given
        fiber: the projection is onto the fiber through W).
    Z : array_like, shape (N, d, d)
        Ambient vector.
    method : {"auto", "cholesky", "cg"}
        Solver of the d^2 normal system: dense Cholesky (O(N d^4 + d^6)) or
        preconditioned conjugate gradients (O(N d^3) per iteration).
        ``"auto"``: Cholesky for d <= 32, CG beyond.
    tol : float
        CG relative-residual tolerance. The residual is exactly the
        tangency defect :math:`d\phi_W(P Z)`, so ``tol`` bounds
        :math:`|d\phi_W(PZ)| / |d\phi_W(Z)|`.

    Returns
    -------
    ndarray, shape (N, d, d)

    Raises
    ------
    ValueError
        If the end-to-end matrix of W is rank-deficient.
    """
    W = as_stack(W)
    Z = _check_vector(W, Z, "Z")
    return FiberNormalSolver(W, method=method, tol=tol).project(Z)


# ---------------------------------------------------------------------------
# Group action and generators
# ---------------------------------------------------------------------------


_PADE13 = (
    64764752532480000.0,
    32382376266240000.0,
    7771770303897600.0,
    1187353796428800.0,
    129060195264000.0,
    10559470521600.0,
    670442572800.0,
    33522128640.0,
    1323241920.0,
    40840800.0,
    960960.0,
    16380.0,
    182.0,
    1.0,
)
_THETA13 = 5.371920351148152


def _expm_pair(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched :math:`(e^{a}, e^{-a})` by scaling and squaring with the [13/13] Pade approximant.

    Higham (2005), Algorithm 2.3 with one common scaling for the batch. The
    approximant of :math:`e^{-a}` reuses the same odd/even parts U, V
    (:math:`r(-A) = (V+U)^{-1}(V-U)`). Much faster than calling
    ``scipy.linalg.expm`` on small matrices (which costs ~100 us each).
    """
    d = a.shape[-1]
    norm1 = float(np.max(np.sum(np.abs(a), axis=-2), initial=0.0))
    s = max(0, int(np.ceil(np.log2(norm1 / _THETA13)))) if norm1 > _THETA13 else 0
    A = a / (2.0**s)
    b = _PADE13
    eye = np.broadcast_to(np.eye(d, dtype=a.dtype), a.shape)
    A2 = A @ A
    A4 = A2 @ A2
    A6 = A4 @ A2
    U = A @ (
        A6 @ (b[13] * A6 + b[11] * A4 + b[9] * A2) + b[7] * A6 + b[5] * A4 + b[3] * A2 + b[1] * eye
    )
    V = A6 @ (b[12] * A6 + b[10] * A4 + b[8] * A2) + b[6] * A6 + b[4] * A4 + b[2] * A2 + b[0] * eye
    E = np.linalg.solve(V - U, V + U)
    Einv = np.linalg.solve(V + U, V - U)
    for _ in range(s):
        E = E @ E
        Einv = Einv @ Einv
    return E, Einv


def _pad_left_right(a: np.ndarray, N: int, d: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Left factors (A_1..A_{N-1}, I) and right factors (I, A_1..A_{N-1}) of the layers."""
    eye = np.eye(d, dtype=dtype)[None]
    return np.concatenate([a, eye], axis=0), np.concatenate([eye, a], axis=0)


def _layerwise_action(W: np.ndarray, a: np.ndarray, a_inv: np.ndarray | None = None) -> np.ndarray:
    """Layer p becomes ``a_p W_p a_{p-1}^{-1}`` (a_0 = a_N = I), for N >= 2.

    With ``a_inv`` (the inverses of ``a``) the right factors are multiplied,
    otherwise they are divided out by a solve.
    """
    N, d, _ = W.shape
    dtype = np.result_type(a, W)
    left, right = _pad_left_right(a.astype(dtype), N, d, dtype)
    if a_inv is None:
        return _rdiv(left @ W, right)
    _, right_inv = _pad_left_right(a_inv, N, d, dtype)
    return left @ W @ right_inv


def group_action(a: ArrayLike, W: ArrayLike) -> np.ndarray:
    r"""The :math:`GL(d)^{N-1}` action :math:`\mathbf{A}\cdot W` of [R] eq. 1.5.

    :math:`\mathbf{A}\cdot W = (W_N A_{N-1}^{-1},\ A_{N-1} W_{N-1} A_{N-2}^{-1},\ \dots,\ A_1 W_1)`:
    layer p becomes :math:`A_p W_p A_{p-1}^{-1}` (:math:`A_0 = A_N = I`), so the
    end-to-end matrix is unchanged.

    Parameters
    ----------
    a : array_like, shape (N-1, d, d)
        Invertible matrices, ``a[k-1]`` = :math:`A_k`.
    W : array_like, shape (N, d, d)

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W, a = _stack_and_generator(W, a)
    for k, Ak in enumerate(a):
        check_full_rank(np.linalg.svd(Ak, compute_uv=False), f"a[{k}]")
    return _layerwise_action(W, a)


def group_action_exp(a: ArrayLike, W: ArrayLike) -> np.ndarray:
    r"""The group action of :math:`e^{a} = (e^{a_{N-1}}, \dots, e^{a_1})` ([R] eq. 2.1 and 1.5).

    Layer p becomes :math:`e^{a_p} W_p e^{-a_{p-1}}`. The curve
    :math:`\tau \mapsto e^{\tau a}\cdot W` has velocity :math:`w_a`
    ([R] eq. 2.2-2.3) at :math:`\tau = 0`.

    Parameters
    ----------
    a : array_like, shape (N-1, d, d)
        Generators in :math:`\mathfrak{gl}(d)^{N-1}` (any matrices).
    W : array_like, shape (N, d, d)

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W, a = _stack_and_generator(W, a)
    if W.shape[0] == 1:
        return W.copy()
    E, Einv = _expm_pair(a.astype(np.result_type(a, W)))
    return _layerwise_action(W, E, Einv)


def generator_to_tangent(W: ArrayLike, a: ArrayLike) -> np.ndarray:
    r"""The tangent vector :math:`w_a` of a generator ([R] eq. 2.3).

    :math:`w_a = (-W_N a_{N-1},\ a_{N-1}W_{N-1} - W_{N-1}a_{N-2},\ \dots,\ a_1 W_1)`:
    layer p gets :math:`a_p W_p - W_p a_{p-1}` with :math:`a_0 = a_N = 0`.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
    a : array_like, shape (N-1, d, d)

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W, a = _stack_and_generator(W, a)
    out = np.zeros(W.shape, dtype=np.result_type(W, a))
    out[:-1] += a @ W[:-1]
    out[1:] -= W[1:] @ a
    return out


def tangent_to_generator(W: ArrayLike, V: ArrayLike) -> np.ndarray:
    r"""The generator a with :math:`w_a = V` (inverse of :func:`generator_to_tangent`).

    :ref:`math-fiber`: :math:`a_1 = V_1 W_1^{-1}`,
    :math:`a_k = (V_k + W_k a_{k-1}) W_k^{-1}`, k = 2..N-1. Layer N is not
    used: for a tangent V it is implied (:math:`V_N = -W_N a_{N-1}`); for a
    non-tangent V the result reproduces layers 1..N-1 of V only. Cost
    O(N d^3).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Point with invertible layers.
    V : array_like, shape (N, d, d)
        Tangent vector at W.

    Returns
    -------
    a : ndarray, shape (N-1, d, d)
    """
    W = as_stack(W)
    V = _check_vector(W, V, "V")
    N, d, _ = W.shape
    a = np.zeros((N - 1, d, d), dtype=np.result_type(W, V))
    prev = None
    for k in range(N - 1):
        rhs = V[k] if prev is None else V[k] + W[k] @ prev
        prev = _rdiv(rhs, W[k])
        a[k] = prev
    return a


def fiber_group_element(W: ArrayLike, W_target: ArrayLike) -> np.ndarray:
    r"""The group element :math:`\mathbf{A}` with :math:`\mathbf{A}\cdot W = W'` ([R] Lemma 1).

    :math:`A_1 = W'_1 W_1^{-1}`, :math:`A_k = W'_k A_{k-1} W_k^{-1}`. It exists
    (and is unique) iff both points lie on the same fiber of a full-rank X;
    layer N is then :math:`W'_N = W_N A_{N-1}^{-1}` automatically. With
    ``W = fiber_center(X, N)`` this gives the orbit coordinates of W', and
    W' lies in the orbit :math:`\mathcal{O}_X` of the center iff every
    :math:`A_k` is orthogonal (unitary).

    Parameters
    ----------
    W, W_target : array_like, shape (N, d, d)

    Returns
    -------
    ndarray, shape (N-1, d, d)
    """
    W = as_stack(W)
    W2 = as_stack(W_target, "W_target", depth=W.shape[0], d=W.shape[1])
    N, d, _ = W.shape
    a = np.zeros((N - 1, d, d), dtype=np.result_type(W, W2))
    prev = np.eye(d)
    for k in range(N - 1):
        prev = _rdiv(W2[k] @ prev, W[k])
        a[k] = prev
    return a


def _second_order_term(W: np.ndarray, a: np.ndarray) -> np.ndarray:
    """d^2/dtau^2 of exp(tau a).W at 0: a_p^2 W_p - 2 a_p W_p a_{p-1} + W_p a_{p-1}^2."""
    out = np.zeros(W.shape, dtype=np.result_type(W, a))
    aW = a @ W[:-1]
    out[:-1] += a @ aW
    out[1:] += W[1:] @ a @ a
    out[1:-1] -= 2.0 * aW[1:] @ a[:-1]
    return out


def fiber_retraction(
    W: ArrayLike,
    V: ArrayLike,
    *,
    second_order: bool = True,
    X: ArrayLike | None = None,
    solver: FiberNormalSolver | None = None,
) -> np.ndarray:
    r"""Retraction on :math:`\mathcal{F}_X` by the group action ([R] eq. 1.5, 2.1).

    With a = :func:`tangent_to_generator` (W, V), the first-order retraction is
    :math:`e^{a}\cdot W`. The second-order version (default) uses the generator
    :math:`a + b/2` with :math:`w_b = -P\big(Q(a)\big)`, where
    :math:`Q(a)_p = a_p^2W_p - 2a_pW_pa_{p-1} + W_pa_{p-1}^2` is the
    acceleration of :math:`\tau \mapsto e^{\tau a}\cdot W`: the curve
    :math:`t \mapsto R_W(tV)` then has normal acceleration at 0, so it agrees
    with the geodesic to second order (Hessian slope 3, superlinear trust
    regions). Either way the result is a group translate of W, so
    :math:`W_N \cdots W_1 = X` holds to rounding after any number of steps.

    Parameters
    ----------
    W : array_like, shape (N, d, d)
    V : array_like, shape (N, d, d)
        Tangent vector at W.
    second_order : bool
        Add the second-order correction (one more projection, O(N d^3) with a
        factored solver).
    X : array_like, shape (d, d), optional
        If given, finish with :func:`fiber_restore` onto :math:`\mathcal{F}_X`
        (removes the accumulated rounding of the product; a no-op to rounding).
    solver : FiberNormalSolver, optional
        A solver built at W (reused for the correction).

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W = as_stack(W)
    V = _check_vector(W, V, "V")
    if W.shape[0] == 1 or not np.any(V):
        out = W.copy()
    else:
        a = tangent_to_generator(W, V)
        if second_order:
            if solver is None:
                solver = FiberNormalSolver(W)
            b = tangent_to_generator(W, -solver.project(_second_order_term(W, a)))
            a = a + 0.5 * b
        out = group_action_exp(a, W)
    if X is not None:
        out = fiber_restore(out, X)
    return out


def fiber_restore(W: ArrayLike, X: ArrayLike) -> np.ndarray:
    r"""Smooth map from a neighbourhood of :math:`\mathcal{F}_X` onto it, fixing the fiber.

    Recomputes the output layer, :math:`W_N \leftarrow X (W_{N-1}\cdots W_1)^{-1}`
    (through a solve, O(N d^3)). Points already on the fiber are returned
    unchanged up to rounding, so this is a valid ``restore`` for
    :func:`dln_manifolds.flows.integrate_flow` (standard projection method;
    keeps the order of the Runge-Kutta method).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
        Layers 1..N-1 must be invertible.
    X : array_like, shape (d, d)

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W = as_stack(W)
    X = as_matrix(X)
    if X.shape[0] != W.shape[1]:
        raise ValueError(f"X must have shape {W.shape[1:]}, got {X.shape}")
    out = W.astype(np.result_type(W, X), copy=True)
    Bprev = end_to_end(W[:-1]) if W.shape[0] > 1 else np.eye(W.shape[1])
    out[-1] = _rdiv(X, Bprev)
    return out


# ---------------------------------------------------------------------------
# Gradients and the Weingarten map
# ---------------------------------------------------------------------------


def regularizer_gradient(W: ArrayLike, method: str = "auto", tol: float = 1e-13) -> np.ndarray:
    r"""Riemannian gradient of :math:`|W|^2` on :math:`\mathcal{F}_X`: :math:`P(2W)`.

    This is :math:`w_b` of [R] Lemma 5 (eq. 2.19-2.21), computed through the
    d^2 normal system instead. Along :math:`\dot W = -\mathrm{grad}|W|^2`
    ([R] eq. 1.13) the moments obey :math:`G(t) = G_0 e^{-4t}` ([R] Thm 2).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
    method, tol
        As in :func:`fiber_tangent_projection`.

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W = as_stack(W)
    return FiberNormalSolver(W, method=method, tol=tol).project(2.0 * W)


def ness_gradient(W: ArrayLike) -> np.ndarray:
    r"""Riemannian gradient of :math:`|G|^2 = \sum_k \mathrm{tr}(G_k^2)` on :math:`\mathcal{F}_X`.

    Equals :math:`4 w_G` (generator :math:`a_k = G_k`), which is also its
    Euclidean gradient: it is already tangent, no linear solve is needed
    (:ref:`math-corrections`). Scaling: [R] Thm 10 writes :math:`2 w_G`, which is the
    gradient of :math:`\tfrac12|G|^2`; here the function is :math:`|G|^2` itself.

    Parameters
    ----------
    W : array_like, shape (N, d, d)

    Returns
    -------
    ndarray, shape (N, d, d)
    """
    W = as_stack(W)
    if W.shape[0] == 1:
        return np.zeros_like(W)
    return 4.0 * generator_to_tangent(W, moments(W))


def _dphi_adjoint_derivative(W: np.ndarray, U: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Directional derivative :math:`\frac{d}{dt} d\phi_{W+tU}^*(y)` at t = 0, O(N d^3)."""
    N, d, _ = W.shape
    A, B = partial_products(W)
    dtype = np.result_type(W, U, y)
    dA = np.zeros((N + 1, d, d), dtype=dtype)  # dA[i] = D(W_N ... W_{i+1})[U]
    dB = np.zeros((N + 1, d, d), dtype=dtype)  # dB[i] = D(W_i ... W_1)[U]
    for i in range(N - 1, -1, -1):
        dA[i] = dA[i + 1] @ W[i] + A[i + 1] @ U[i]
    for i in range(N):
        dB[i + 1] = U[i] @ B[i] + W[i] @ dB[i]
    return _h(dA[1:]) @ y @ _h(B[:-1]) + _h(A[1:]) @ y @ _h(dB[:-1])


def fiber_weingarten(
    W: ArrayLike, V: ArrayLike, normal: ArrayLike, solver: FiberNormalSolver | None = None
) -> np.ndarray:
    r"""Weingarten map of :math:`\mathcal{F}_X` (Absil-Mahony-Trumpf; pymanopt convention).

    For a tangent vector V and a normal vector :math:`n = d\phi_W^*(y)`
    (:math:`y = K^{-1} d\phi_W(n)`),

    .. math::

        \mathfrak{W}_W(V, n) = P\big(DP[V]\, n\big)
        = -P\Big(\tfrac{d}{dt}\, d\phi_{W+tV}^*(y)\Big|_{t=0}\Big),

    where layer p of the derivative is
    :math:`(DA_{p+1}[V])^* y B_{p-1}^* + A_{p+1}^* y (DB_{p-1}[V])^*`. Then the
    Riemannian Hessian of :math:`f|_{\mathcal{F}_X}` is
    :math:`P(\nabla^2 f[V]) + \mathfrak{W}_W(V, \nabla f)`. Only the normal
    part of ``normal`` matters, so the full Euclidean gradient may be passed.
    Cost: one normal solve and O(N d^3).

    Parameters
    ----------
    W : array_like, shape (N, d, d)
    V : array_like, shape (N, d, d)
        Tangent vector.
    normal : array_like, shape (N, d, d)
        Normal vector (its tangent part is ignored).
    solver : FiberNormalSolver, optional
        A solver built at W.

    Returns
    -------
    ndarray, shape (N, d, d)
        A tangent vector.
    """
    W = as_stack(W)
    V = _check_vector(W, V, "V")
    normal = _check_vector(W, normal, "normal")
    if solver is None:
        solver = FiberNormalSolver(W)
    y = solver.normal_coordinates(normal)
    return -solver.project(_dphi_adjoint_derivative(W, V, y))


def _check_fiber_depth(depth: int) -> int:
    """Validate the depth of a fiber: N >= 2 (for N = 1 the fiber is the single point X)."""
    N = check_finite_depth(depth)
    if N == 1:
        raise ValueError(
            "depth must be >= 2: for depth 1 the fiber F_X = {X} is a single point "
            "(dimension 0), with no tangent vectors to optimize or flow along"
        )
    return N
