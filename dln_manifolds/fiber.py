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
eq. 2.21. Solving K directly (the normal equations of the least-squares
problem :math:`\min_y |D^*(y) - Z|`) loses accuracy like
:math:`\mathrm{cond}(D)^2 = \mathrm{cond}(K)`, and cond(K) is large both
for ill-conditioned X (:math:`\mathrm{cond}(X)^{2-2/N}` at the center) and
at unbalanced points. Three solvers (:class:`FiberNormalSolver`):

- ``"cholesky"`` (default for d <= 32): the dense matrix of K in row-major
  vectorization is :math:`\sum_p L_p \otimes R_p^T` with
  :math:`L_p = A_{p+1}A_{p+1}^*`, :math:`R_p = B_{p-1}^*B_{p-1}`; it is formed
  by one (d^2 x N) @ (N x d^2) product, O(N d^4), then factored, O(d^6/3),
  and its condition number is estimated (LAPACK ``pocon``, O(d^4)). Each
  projection solves the *corrected semi-normal equations*: after
  :math:`y = K^{-1} D(Z)`, one refinement :math:`y \leftarrow y + K^{-1}
  D(Z - D^* y)` with the residual taken in the ambient space (Bjorck), so
  the error is :math:`O(\epsilon\,\mathrm{cond}(D))` when
  :math:`\epsilon\,\mathrm{cond}(K) \ll 1`. When the estimate exceeds
  :data:`CHOLESKY_MAX_CONDITION` (or the factorization fails) the solver
  switches to ``"qr"``.
- ``"qr"``: Householder QR of the dense (N d^2) x d^2 matrix of
  :math:`D^*`, O(N d^4) to form and O(N d^6) to factor; the projection is
  :math:`Z - \hat Q \hat Q^* Z`, backward stable, error
  :math:`O(\epsilon\,\mathrm{cond}(D))` like an SVD of the dense Jacobian.
- ``"cg"`` (default for d > 32): conjugate gradients on K, matrix-free
  (O(N d^3) per iteration: 2 batched products of N d x d matrices),
  preconditioned with the depth operator :math:`\mathcal{A}_{N,X}^{-1}`
  (O(d^3) per iteration after one SVD), which *equals* K at balanced points
  (so CG converges in one step there) and stays a good preconditioner nearby.
  CG works on the normal equations, so it refuses (ValueError) points where
  a computable upper bound of cond(K) exceeds :data:`CG_MAX_CONDITION`:
  :math:`\sum_p |A_{p+1}|_2^2 |B_{p-1}|_2^2` over
  :math:`\max\big(\sigma_{\min}(A_2)^2 + \sigma_{\min}(B_{N-1})^2,\
  \max_p \sigma_{\min}(A_{p+1})^2\sigma_{\min}(B_{p-1})^2\big)`
  (each term of K is positive semi-definite; the first and last form a
  Kronecker sum), O(N d^3).

General widths
--------------
Every function here also takes a network of widths :math:`(d_0, \dots, d_N)`
given as a list (or tuple) of N arrays, ``W[k]`` of shape :math:`(d_{k+1}, d_k)`,
with every hidden width at least :math:`r = \min(d_0, d_N)` and X of shape
:math:`(m, n) = (d_N, d_0)` and rank r; vectors are then lists of the same shapes,
and results are lists (a stacked ndarray stays the fast path for square networks, and
a list of d x d layers gives the stack's results). The keyword ``widths`` checks the
shapes. Then:

- :math:`d\phi_W` is onto at every point of the fiber: with :math:`m \le n`,
  :math:`A_2 = W_N\cdots W_2` has rank m and
  :math:`K \succeq A_2A_2^* \otimes I_n \succ 0`; with :math:`m \ge n`, symmetrically
  :math:`K \succeq I_m \otimes B_{N-1}^*B_{N-1} \succ 0`. So
  :math:`\mathcal{F}_X` is a manifold of dimension
  :math:`\sum_k d_k d_{k+1} - d_0 d_N`.
- K is the (m n) x (m n) operator
  :math:`\sum_p (A_{p+1}A_{p+1}^*)\,Y\,(B_{p-1}^*B_{p-1})`; its factors are m x m and
  n x n for every p, so the three solvers above apply unchanged (Cholesky with the
  corrected semi-normal refinement; QR of the dense
  :math:`(\sum_k d_k d_{k+1}) \times mn` adjoint; CG preconditioned by the rectangular
  depth operator :math:`\mathcal{A}_{N,X}^{-1}` of
  :class:`~dln_manifolds.depth_metric.DepthFrame`, equal to K at balanced points).
  ``"auto"`` picks Cholesky for m n <= :data:`CHOLESKY_MAX_D` ** 2.
- The group is :math:`GL(d_1) \times \dots \times GL(d_{N-1})` with the same action.
  When a hidden width exceeds r the fiber is a union of orbits (a hidden layer's rank
  can change along it), the orbits have positive-dimensional stabilizers, and a tangent
  vector need not come from a generator, nor two points of the fiber from a group
  element. :func:`tangent_to_generator` and :func:`fiber_group_element` then solve the
  linear equations :math:`w_a = V` (resp. :math:`A_pW_p = W'_pA_{p-1}`) in the least
  squares sense (matrix-free LSQR, O(N d^3) per iteration, on a system of size
  :math:`\sum_k d_kd_{k-1}` by :math:`\sum_{k=1}^{N-1} d_k^2`), return the minimal-norm
  generator (resp. the group element nearest the identity) when the equations hold, and
  raise ValueError when they do not.
- The retraction solves one end layer from X by the *minimum-change* solution: the
  output layer, :math:`W_N \leftarrow W_N + (X - W_N P)P^+` with
  :math:`P = W_{N-1}\cdots W_1` of full column rank :math:`n = d_0` when
  :math:`d_0 \le d_N`; the input layer, :math:`W_1 \leftarrow W_1 + Q^+(X - QW_1)` with
  :math:`Q = W_N\cdots W_2` of full row rank m otherwise (a thin QR of P or
  :math:`Q^*`, one refinement step). Its second-order correction is the tangent part of
  the end-layer term :math:`D^2\phi[V,V]\,P^+` (or :math:`Q^+D^2\phi[V,V]`), see
  :func:`fiber_retraction`.
- Along the regularizing flow the moments still obey :math:`G(t) = G_0e^{-4t}`
  ([R] Thm 2): the normal directions :math:`d\phi_W^*(y)` change
  :math:`W_kW_k^*` and :math:`W_{k+1}^*W_{k+1}` by the same
  :math:`A_{k+1}^*yB_k^*`.

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

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from numpy.typing import ArrayLike

from ._checks import (
    as_array,
    as_hidden_matrices,
    as_layer_sequence,
    as_matrix,
    as_stack,
    check_finite_depth,
    check_full_rank,
    check_widths,
    widths_of_layers,
)
from ._linalg import chain_partial_products, chain_product, chain_second_derivative, solve_right
from ._linalg import conj_transpose as _h
from .depth_metric import DepthFrame, depth_multipliers
from .network import end_to_end, end_to_end_velocity, moments, partial_products

__all__ = [
    "CHOLESKY_MAX_D",
    "CHOLESKY_MAX_CONDITION",
    "CG_MAX_CONDITION",
    "FiberNormalSolver",
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

#: Weights: a stacked ndarray (N, d, d) or a list of N layers of general widths.
Layers = np.ndarray | list[np.ndarray]

#: Largest d for which ``method="auto"`` uses the dense Cholesky solver.
CHOLESKY_MAX_D = 32

#: Largest estimated cond(K) at which ``"cholesky"`` keeps the normal equations (with
#: one corrected semi-normal refinement); beyond it the solver switches to ``"qr"``.
#: Measured (d = 3, N = 3 and 10): the refined solve stays within 0.2 eps cond(dphi) of
#: an SVD of the dense Jacobian up to cond(K) ~ 1e12, and is 60x worse at 2e13.
CHOLESKY_MAX_CONDITION = 1e10

#: Largest upper bound of cond(K) accepted by the ``"cg"`` solver (ValueError beyond).
CG_MAX_CONDITION = 1e12


def _inner(U: np.ndarray, V: np.ndarray) -> float:
    return float(np.real(np.vdot(U, V)))


def _check_vector(W: Layers, V, name: str) -> Layers:
    """Validate a vector at W: a stack (N, d, d) for a stack, a sequence of the same widths
    for a sequence of layers (or, for square layers, one stacked network (N, d, d))."""
    if isinstance(W, list):
        if not isinstance(V, (list, tuple)):  # one stacked network (N, d, d): its layers
            V = list(as_stack(V, name, depth=len(W)))
        return as_layer_sequence(V, name, widths=layer_widths(W), batch=False)
    return as_stack(V, name, depth=W.shape[0], d=W.shape[1])


def layer_widths(layers: list[np.ndarray]) -> tuple[int, ...]:
    """The widths (d_0, ..., d_N) of a validated sequence of layers (no batch axes)."""
    return widths_of_layers(layers)


def as_fiber_layers(W, name: str = "W", *, widths=None) -> Layers:
    """Validate one network: a stack (N, d, d) (the fast path) or a list or tuple of N layers
    ``W[k]`` of shape (d_{k+1}, d_k) (general widths), checked against ``widths``.

    Internal (not exported): shared with the flows and the adapters. Returns an ndarray for a
    stack and a list of arrays for a sequence.
    """
    if isinstance(W, (list, tuple)):
        return as_layer_sequence(W, name, widths=widths, batch=False)
    W = as_stack(W, name)
    if widths is not None:
        widths = check_widths(widths)
        N, d = W.shape[0], W.shape[1]
        if widths != (d,) * (N + 1):
            raise ValueError(
                f"widths must be (d, ..., d) = {(d,) * (N + 1)} for {name} of shape {W.shape} "
                f"(N = {N} square layers of size d = {d}), got {widths}; pass a list of "
                "layers for general widths"
            )
    return W


def _square_stack(layers: list[np.ndarray]) -> np.ndarray | None:
    """The stack (N, d, d) of a sequence of square layers of one size d, else None."""
    d = layers[0].shape[0]
    if all(layer.shape == (d, d) for layer in layers):
        return np.stack(layers)
    return None


def _flatten(layers: list[np.ndarray]) -> np.ndarray:
    """The layers of a sequence, row-major, concatenated into one vector."""
    return np.concatenate([layer.reshape(-1) for layer in layers])


def _unflatten(z: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """Inverse of :func:`_flatten` for layers shaped like ``like``."""
    out, start = [], 0
    for layer in like:
        out.append(z[start : start + layer.size].reshape(layer.shape))
        start += layer.size
    return out


def _min_gram_eigenvalue(s: np.ndarray, rows: int, cols: int, side: str) -> float:
    """Smallest eigenvalue of M M^* (side "left", size rows) or M^* M (side "right", size
    cols) for M of shape (rows, cols) with singular values ``s``."""
    full = cols >= rows if side == "left" else rows >= cols
    return float(s[-1] ** 2) if full else 0.0


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


class FiberNormalSolver:
    r"""Solver of the (m n) x (m n) normal system :math:`K y = r` at a fixed point W.

    :math:`K = d\phi_W\, d\phi_W^*`, see the module docstring for the three
    methods, their cost and accuracy. The factorization (or the
    preconditioner) is computed once in the constructor, so that repeated
    projections at the same point (as in trust-region inner iterations) are
    cheap. For a square stack (N, d, d), m = n = d; for a sequence of layers
    of widths :math:`(d_0, \dots, d_N)`, :math:`(m, n) = (d_N, d_0)` and
    vectors are sequences of layers of the same widths.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Layers with a full-rank product (rank min(m, n)); a sequence holds layers
        of general widths, ``W[k]`` of shape (d_{k+1}, d_k).
    method : {"auto", "cholesky", "qr", "cg"}
        ``"auto"`` uses Cholesky for m n <= :data:`CHOLESKY_MAX_D` ** 2 and CG beyond.
        ``"cholesky"`` switches to ``"qr"`` when the estimated cond(K) exceeds
        :data:`CHOLESKY_MAX_CONDITION`.
    tol : float
        Relative residual :math:`|r - K y| / |r|` at which CG stops.
    maxiter : int, optional
        CG iteration cap (default ``2 m n + 100``, above the exact-arithmetic
        bound of m n real or 2 m n complex iterations).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Attributes
    ----------
    method : str
        The method actually used (``"cholesky"``, ``"qr"`` or ``"cg"``).
    condition_estimate : float
        For ``"cholesky"``/``"qr"``: the LAPACK estimate of the 1-norm cond(K)
        (``pocon`` on the Cholesky factor, or ``trcon`` on R squared; ``inf``
        if the Cholesky factorization failed). For ``"cg"``: the upper
        bound of cond(K) of the module docstring.
    last_iterations : int
        CG iterations of the last solve (0 otherwise).
    shape : tuple of int
        (m, n), the shape of the end-to-end matrix.
    widths : tuple of int
        :math:`(d_0, \dots, d_N)` (``(d,) * (N + 1)`` for a stack).
    d : int or None
        The layer size d of a stack (None for a sequence of layers).

    Raises
    ------
    ValueError
        If the end-to-end matrix of W is rank-deficient (condition number
        above 1/(min(m, n) eps)), or, for ``"cg"``, if the bound of cond(K) exceeds
        :data:`CG_MAX_CONDITION`.
    """

    def __init__(
        self,
        W: ArrayLike,
        method: str = "auto",
        tol: float = 1e-13,
        maxiter: int | None = None,
        *,
        widths: Sequence[int] | None = None,
    ):
        W = as_fiber_layers(W, widths=widths)
        if method not in ("auto", "cholesky", "qr", "cg"):
            raise ValueError(f"method must be 'auto', 'cholesky', 'qr' or 'cg', got {method!r}")
        tol = float(tol)
        if not tol > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        self._seq = isinstance(W, list)
        if self._seq:
            N = len(W)
            m, n = W[-1].shape[0], W[0].shape[1]
            self.widths = layer_widths(W)
            self.point = [layer.copy() for layer in W]
            A, B = chain_partial_products(W)
            self._A, self._B = A[1:], B[:-1]  # layer p: A_{p+1} (m, d_p), B_{p-1} (d_{p-1}, n)
            self._Ah, self._Bh = [_h(a) for a in self._A], [_h(b) for b in self._B]
            self._L = np.stack([a @ ah for a, ah in zip(self._A, self._Ah, strict=True)])
            self._R = np.stack([bh @ b for bh, b in zip(self._Bh, self._B, strict=True)])
            self.d = None
        else:
            N, m, _ = W.shape
            n = m
            self.widths = (m,) * (N + 1)
            self.point = W.copy()
            A, B = partial_products(W)
            self._A, self._B = A[1:], B[:-1]  # layer p: A_{p+1}, B_{p-1}
            self._Ah, self._Bh = _h(self._A), _h(self._B)
            self._L = self._A @ self._Ah
            self._R = self._Bh @ self._B
            self.d = m
        if method == "auto":
            method = "cholesky" if m * n <= CHOLESKY_MAX_D**2 else "cg"
        self.tol = tol
        self.maxiter = int(maxiter) if maxiter is not None else 2 * m * n + 100
        self.depth, self.shape = N, (m, n)
        self.end_to_end = A[0]
        self.last_iterations = 0
        self.condition_estimate: float | None = None
        if method == "cg":
            if self._seq:
                s = np.linalg.svd(self.end_to_end, compute_uv=False)
                check_full_rank(s, "end-to-end matrix of W")
                self._frame = DepthFrame(self.end_to_end, N)
            else:
                U, s, Vh = np.linalg.svd(self.end_to_end)
                check_full_rank(s, "end-to-end matrix of W")
                self._U, self._Vh = U, Vh
                self._Uh, self._V = _h(U), _h(Vh)
                self._M = depth_multipliers(s, N)
            self.condition_estimate = self._condition_bound()
            if not self.condition_estimate <= CG_MAX_CONDITION:
                raise ValueError(
                    "W is too unbalanced or its end-to-end matrix too ill-conditioned for the "
                    f"'cg' solver: an upper bound of cond(K) is {self.condition_estimate:.3g} > "
                    f"CG_MAX_CONDITION = {CG_MAX_CONDITION:.0e} (CG solves the normal "
                    "equations, whose error grows like cond(K)); use method='qr'"
                )
        else:
            s = np.linalg.svd(self.end_to_end, compute_uv=False)
            check_full_rank(s, "end-to-end matrix of W")
            if method == "cholesky":
                method = self._factor_cholesky()
            if method == "qr":
                self._factor_qr()
        self.method = method

    def _condition_bound(self) -> float:
        """Upper bound of cond(K) from the partial products (module docstring), O(N d^3)."""
        if not self._seq:
            sa = np.linalg.svd(self._A, compute_uv=False)
            sb = np.linalg.svd(self._B, compute_uv=False)
            upper = float(np.sum(sa[:, 0] ** 2 * sb[:, 0] ** 2))
            lower = max(
                float(np.max(sa[:, -1] ** 2 * sb[:, -1] ** 2)),
                float(sa[0, -1] ** 2 + sb[-1, -1] ** 2),
            )
            return upper / lower if lower > 0 else np.inf
        # general widths: lambda_min(A A^*) is 0 when A has fewer columns than rows
        sa = [np.linalg.svd(a, compute_uv=False) for a in self._A]
        sb = [np.linalg.svd(b, compute_uv=False) for b in self._B]
        la = [_min_gram_eigenvalue(s, *a.shape, "left") for s, a in zip(sa, self._A, strict=True)]
        lb = [_min_gram_eigenvalue(s, *b.shape, "right") for s, b in zip(sb, self._B, strict=True)]
        upper = float(sum(x[0] ** 2 * y[0] ** 2 for x, y in zip(sa, sb, strict=True)))
        lower = max(max(x * y for x, y in zip(la, lb, strict=True)), la[0] + lb[-1])
        return upper / lower if lower > 0 else np.inf

    def _factor_cholesky(self) -> str:
        """Factor K; return "qr" instead if K is too ill-conditioned for the normal equations."""
        K = _normal_matrix_from_factors(self._L, self._R)
        try:
            self._chol = scipy.linalg.cho_factor(K, lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            self.condition_estimate = np.inf
            return "qr"
        pocon = scipy.linalg.lapack.zpocon if np.iscomplexobj(K) else scipy.linalg.lapack.dpocon
        rcond, info = pocon(self._chol[0], float(np.linalg.norm(K, 1)), uplo="U")
        self.condition_estimate = 1.0 / rcond if info == 0 and rcond > 0 else np.inf
        return "cholesky" if self.condition_estimate <= CHOLESKY_MAX_CONDITION else "qr"

    def _factor_qr(self) -> None:
        """Householder QR of the dense (sum_p d_p d_{p-1}) x (m n) matrix of the adjoint D^*."""
        # vec_row(A^* Y B^*) = (A^* kron conj(B)) vec_row(Y)
        blocks = [np.kron(Ah, np.conj(B)) for Ah, B in zip(self._Ah, self._B, strict=True)]
        Dstar = np.concatenate(blocks, axis=0)
        self._Q, self._Rqr = scipy.linalg.qr(Dstar, mode="economic", check_finite=False)
        if not np.all(np.isfinite(self._Rqr)):
            raise ValueError("the adjoint of dphi_W is not finite: W is too large to represent")
        if not np.min(np.abs(np.diag(self._Rqr))) > 0:
            raise ValueError("the end-to-end matrix of W is rank-deficient (dphi_W is not onto)")
        if self.condition_estimate is None:  # cond(K) = cond(R)^2
            lapack = scipy.linalg.lapack
            trcon = lapack.ztrcon if np.iscomplexobj(Dstar) else lapack.dtrcon
            rcond, info = trcon(self._Rqr)
            self.condition_estimate = 1.0 / rcond**2 if info == 0 and rcond > 0 else np.inf

    # -- public doors: validate, then the unchecked versions below --------------
    def _stack_arg(self, value, name: str) -> Layers:
        return _check_vector(self.point, value, name)

    def _matrix_arg(self, value, name: str) -> np.ndarray:
        if self._seq:
            return as_array(value, name, self.shape, real=False)
        arr = as_matrix(value, name)
        if arr.shape[0] != self.d:
            raise ValueError(f"{name} must have shape ({self.d}, {self.d}), got {arr.shape}")
        return arr

    def differential(self, V: ArrayLike) -> np.ndarray:
        """:math:`d\\phi_W(V)`, shape (m, n)."""
        return self._differential(self._stack_arg(V, "V"))

    def adjoint(self, Y: ArrayLike) -> Layers:
        """:math:`d\\phi_W^*(Y)`, shaped like W."""
        return self._adjoint(self._matrix_arg(Y, "Y"))

    def apply(self, Y: ArrayLike) -> np.ndarray:
        """:math:`K(Y)`, matrix-free, O(N d^3)."""
        return self._apply(self._matrix_arg(Y, "Y"))

    def solve(self, r: ArrayLike) -> np.ndarray:
        """Return y with :math:`K(y) = r`, shape (m, n)."""
        return self._solve(self._matrix_arg(r, "r"))

    def normal_coordinates(self, Z: ArrayLike) -> np.ndarray:
        r""":math:`y = K^{-1} d\phi_W(Z)`, so that the normal part of Z is :math:`d\phi_W^*(y)`."""
        return self._normal_coordinates(self._stack_arg(Z, "Z"))

    def normal_part(self, Z: ArrayLike) -> Layers:
        """Orthogonal projection of Z onto the normal space, shaped like W."""
        return self._normal_part(self._stack_arg(Z, "Z"))

    def project(self, Z: ArrayLike) -> Layers:
        """Orthogonal projection of Z onto :math:`T_W\\mathcal{F}_X = \\ker d\\phi_W`."""
        return self._project(self._stack_arg(Z, "Z"))

    # -- the maps D, D^*, K ---------------------------------------------------
    def _differential(self, V: Layers) -> np.ndarray:
        """:math:`d\\phi_W(V)`, shape (m, n)."""
        if self._seq:
            return sum(a @ v @ b for a, v, b in zip(self._A, V, self._B, strict=True))
        return np.sum(self._A @ V @ self._B, axis=0)

    def _adjoint(self, Y: np.ndarray) -> Layers:
        """:math:`d\\phi_W^*(Y)`, shaped like W."""
        if self._seq:
            return [ah @ Y @ bh for ah, bh in zip(self._Ah, self._Bh, strict=True)]
        return self._Ah @ Y @ self._Bh

    def _apply(self, Y: np.ndarray) -> np.ndarray:
        """:math:`K(Y)`, matrix-free, O(N d^3)."""
        return np.sum(self._L @ Y @ self._R, axis=0)

    def _precondition(self, Y: np.ndarray) -> np.ndarray:
        if self._seq:
            return self._frame.inverse(Y)
        return self._U @ ((self._Uh @ Y @ self._V) / self._M) @ self._Vh

    # -- solves ---------------------------------------------------------------
    def _solve(self, r: np.ndarray) -> np.ndarray:
        """Return y with :math:`K(y) = r`, shape (m, n)."""
        r = np.asarray(r)
        if not np.any(r):
            self.last_iterations = 0
            return np.zeros_like(r, dtype=np.result_type(r, self._L))
        if self.method == "cholesky":
            self.last_iterations = 0
            y = self._chol_solve(r)
            return y + self._chol_solve(r - self._apply(y))  # one refinement step
        if self.method == "qr":
            self.last_iterations = 0
            m, n = self.shape
            R = self._Rqr
            z = scipy.linalg.solve_triangular(R, r.reshape(m * n), trans="C", check_finite=False)
            return scipy.linalg.solve_triangular(R, z, check_finite=False).reshape(m, n)
        return self._cg(r)

    def _chol_solve(self, r: np.ndarray) -> np.ndarray:
        m, n = self.shape
        return scipy.linalg.cho_solve(self._chol, r.reshape(m * n), check_finite=False).reshape(
            m, n
        )

    def _cg(self, b: np.ndarray) -> np.ndarray:
        bnorm = np.linalg.norm(b)
        y = self._precondition(b)
        r = b - self._apply(y)
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
            Kp = self._apply(p)
            alpha = rz / _inner(p, Kp)
            y = y + alpha * p
            it += 1
            if it % 25 == 0:
                r = b - self._apply(y)  # refresh the recursive residual
            else:
                r = r - alpha * Kp
            z = self._precondition(r)
            rz_new = _inner(r, z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        self.last_iterations = it
        return y

    # -- projections ----------------------------------------------------------
    def _normal_coordinates(self, Z: Layers) -> np.ndarray:
        r""":math:`y = K^{-1} d\phi_W(Z)`, so that the normal part of Z is :math:`d\phi_W^*(y)`.

        The least-squares solution of :math:`\min_y |d\phi_W^*(y) - Z|`: by QR
        (``"qr"``), or by the corrected semi-normal equations (one refinement
        with the ambient residual :math:`Z - d\phi_W^*(y)`).
        """
        if self.method == "qr":
            z = _flatten(Z) if self._seq else Z.reshape(-1)
            qz = _h(self._Q) @ z
            y = scipy.linalg.solve_triangular(self._Rqr, qz, check_finite=False)
            return y.reshape(self.shape)
        solve = self._solve if self.method == "cg" else self._chol_solve
        y = solve(self._differential(Z))
        return y + solve(self._differential(_subtract(Z, self._adjoint(y))))

    def _normal_part(self, Z: Layers) -> Layers:
        """Orthogonal projection of Z onto the normal space, shaped like W."""
        if self.method == "qr":
            if self._seq:
                return _unflatten(self._Q @ (_h(self._Q) @ _flatten(Z)), Z)
            return (self._Q @ (_h(self._Q) @ Z.reshape(-1))).reshape(Z.shape)
        return self._adjoint(self._normal_coordinates(Z))

    def _project(self, Z: Layers) -> Layers:
        """Orthogonal projection of Z onto :math:`T_W\\mathcal{F}_X = \\ker d\\phi_W`."""
        return _subtract(Z, self._normal_part(Z))


def _subtract(U: Layers, V: Layers) -> Layers:
    """``U - V`` for stacks, layer by layer for sequences."""
    if isinstance(U, list):
        return [u - v for u, v in zip(U, V, strict=True)]
    return U - V


def _normal_matrix_from_factors(L: np.ndarray, R: np.ndarray) -> np.ndarray:
    r"""Dense :math:`\sum_p L_p \otimes R_p^T` (row-major vectorization), O(N m^2 n^2)."""
    m, n = L.shape[1], R.shape[1]
    # T[a, c, e, b] = sum_p L[p, a, c] R[p, e, b]: one (m^2 x N) @ (N x n^2) product
    T = np.tensordot(L, R, axes=([0], [0]))
    K = T.transpose(0, 3, 1, 2).reshape(m * n, m * n)
    return 0.5 * (K + _h(K))


def fiber_normal_operator(
    W: ArrayLike, Y: ArrayLike, *, widths: Sequence[int] | None = None
) -> np.ndarray:
    r"""Apply :math:`K(Y) = \sum_p A_{p+1}A_{p+1}^*\, Y\, B_{p-1}^*B_{p-1} = d\phi_W d\phi_W^*(Y)`.

    See :ref:`math-fiber`. Matrix-free, O(N d^3).

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        A sequence holds layers of general widths, ``W[k]`` of shape (d_{k+1}, d_k).
    Y : array_like, shape (d, d), or (d_N, d_0) for a sequence
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (d, d), or (d_N, d_0) for a sequence
    """
    W = as_fiber_layers(W, widths=widths)
    if isinstance(W, list):
        Y = as_array(Y, "Y", (W[-1].shape[0], W[0].shape[1]), real=False)
        return -end_to_end_velocity(W, Y)
    Y = as_matrix(Y, "Y")
    if Y.shape[0] != W.shape[1]:
        raise ValueError(f"Y must have shape {W.shape[1:]}, got {Y.shape}")
    # K = dphi dphi^* is minus the end-to-end velocity map of [G] eq. 4.9
    return -end_to_end_velocity(W, Y)


def fiber_normal_matrix(W: ArrayLike, *, widths: Sequence[int] | None = None) -> np.ndarray:
    r"""Dense (m n) x (m n) matrix of K in row-major vectorization (``Y.reshape(-1)``).

    :math:`K = \sum_p L_p \otimes R_p^T`, :math:`L_p = A_{p+1}A_{p+1}^*`,
    :math:`R_p = B_{p-1}^*B_{p-1}`. Cost O(N d^3 + N m^2 n^2) (one GEMM with inner
    dimension N); (m, n) = (d, d) for a stack, (d_N, d_0) for a sequence.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (m n, m n)
        Hermitian; positive definite iff the end-to-end matrix has full rank min(m, n).
    """
    W = as_fiber_layers(W, widths=widths)
    if isinstance(W, list):
        A, B = chain_partial_products(W)
        L = np.stack([a @ _h(a) for a in A[1:]])
        R = np.stack([_h(b) @ b for b in B[:-1]])
        return _normal_matrix_from_factors(L, R)
    A, B = partial_products(W)
    return _normal_matrix_from_factors(A[1:] @ _h(A[1:]), _h(B[:-1]) @ B[:-1])


def fiber_tangent_projection(
    W: ArrayLike,
    Z: ArrayLike,
    method: str = "auto",
    tol: float = 1e-13,
    *,
    widths: Sequence[int] | None = None,
) -> Layers:
    r"""Orthogonal projection onto :math:`T_W\mathcal{F}_X = \ker d\phi_W`.

    :math:`P(Z) = Z - d\phi_W^* K^{-1} d\phi_W(Z)` (:ref:`math-fiber`; replaces the
    (N-1)d^2 system of [R] eq. 2.21). Real and complex; square stacks or general widths.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Point with a full-rank end-to-end matrix (it need not lie on a given
        fiber: the projection is onto the fiber through W). A sequence holds
        layers of general widths, ``W[k]`` of shape (d_{k+1}, d_k).
    Z : array_like, shaped like W
        Ambient vector (a sequence of the same widths for a sequence W).
    method : {"auto", "cholesky", "qr", "cg"}
        Solver of the (m n) x (m n) normal system (module docstring): dense Cholesky
        with a corrected semi-normal refinement (O(N d^4 + d^6) for a square stack;
        switches to ``"qr"`` when cond(K) > :data:`CHOLESKY_MAX_CONDITION`), QR of the
        dense adjoint (backward stable), or preconditioned conjugate gradients
        (O(N d^3) per iteration, refused when a bound of cond(K) exceeds
        :data:`CG_MAX_CONDITION`). ``"auto"``: Cholesky for m n <= 32^2, CG beyond.
        The error of ``"cholesky"`` and ``"qr"`` is
        :math:`O(\epsilon\,\mathrm{cond}(d\phi_W))`, like an SVD of the dense
        Jacobian.
    tol : float
        CG relative-residual tolerance. The residual is exactly the
        tangency defect :math:`d\phi_W(P Z)`, so ``tol`` bounds
        :math:`|d\phi_W(PZ)| / |d\phi_W(Z)|`.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W

    Raises
    ------
    ValueError
        If the end-to-end matrix of W is rank-deficient (condition number
        above 1/(min(m, n) eps)), or, for ``"cg"``, too ill-conditioned.
    """
    W = as_fiber_layers(W, widths=widths)
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
        return solve_right(left @ W, right)
    _, right_inv = _pad_left_right(a_inv, N, d, dtype)
    return left @ W @ right_inv


def _as_generators(layers: list[np.ndarray], a, name: str = "a") -> list[np.ndarray]:
    """Validate generators (or group elements) for a sequence of N layers: N - 1 square
    matrices, ``a[k-1]`` of shape (d_k, d_k)."""
    return as_hidden_matrices(a, layers, name, "square matrices")


def _chain_action(
    layers: list[np.ndarray], a: list[np.ndarray], a_inv: list[np.ndarray] | None = None
) -> list[np.ndarray]:
    """Layer p becomes ``a_p W_p a_{p-1}^{-1}`` (a_0 = a_N = I) for a sequence of layers."""
    N = len(layers)
    out = []
    for p, layer in enumerate(layers):
        M = a[p] @ layer if p < N - 1 else layer
        if p > 0:
            M = solve_right(M, a[p - 1]) if a_inv is None else M @ a_inv[p - 1]
        out.append(M)
    return out


def _chain_generator_tangent(layers: list[np.ndarray], a: list[np.ndarray]) -> list[np.ndarray]:
    """Layer p gets ``a_p W_p - W_p a_{p-1}`` (a_0 = a_N = 0) for a sequence of layers."""
    N = len(layers)
    out = []
    for p, layer in enumerate(layers):
        V = a[p] @ layer if p < N - 1 else np.zeros_like(layer, dtype=np.result_type(layer, *a))
        if p > 0:
            V = V - layer @ a[p - 1]
        out.append(V)
    return out


def group_action(a: ArrayLike, W: ArrayLike, *, widths: Sequence[int] | None = None) -> Layers:
    r"""The :math:`GL(d)^{N-1}` action :math:`\mathbf{A}\cdot W` of [R] eq. 1.5.

    :math:`\mathbf{A}\cdot W = (W_N A_{N-1}^{-1},\ A_{N-1} W_{N-1} A_{N-2}^{-1},\ \dots,\ A_1 W_1)`:
    layer p becomes :math:`A_p W_p A_{p-1}^{-1}` (:math:`A_0 = A_N = I`), so the
    end-to-end matrix is unchanged.

    For general widths :math:`(d_0, \dots, d_N)` the group is
    :math:`GL(d_1) \times \dots \times GL(d_{N-1})` with the same formula.

    Parameters
    ----------
    a : array_like, shape (N-1, d, d), or sequence of N-1 arrays
        Invertible matrices, ``a[k-1]`` = :math:`A_k`; for a sequence W,
        ``a[k-1]`` has shape (d_k, d_k).
    W : array_like, shape (N, d, d), or sequence of N arrays
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W
    """
    W = as_fiber_layers(W, widths=widths)
    if isinstance(W, list):
        a = _as_generators(W, a)
        for k, Ak in enumerate(a):
            check_full_rank(np.linalg.svd(Ak, compute_uv=False), f"a[{k}]")
        return _chain_action(W, a)
    W, a = _stack_and_generator(W, a)
    for k, Ak in enumerate(a):
        check_full_rank(np.linalg.svd(Ak, compute_uv=False), f"a[{k}]")
    return _layerwise_action(W, a)


def group_action_exp(a: ArrayLike, W: ArrayLike, *, widths: Sequence[int] | None = None) -> Layers:
    r"""The group action of :math:`e^{a} = (e^{a_{N-1}}, \dots, e^{a_1})` ([R] eq. 2.1 and 1.5).

    Layer p becomes :math:`e^{a_p} W_p e^{-a_{p-1}}`. The curve
    :math:`\tau \mapsto e^{\tau a}\cdot W` has velocity :math:`w_a`
    ([R] eq. 2.2-2.3) at :math:`\tau = 0`.

    Parameters
    ----------
    a : array_like, shape (N-1, d, d), or sequence of N-1 arrays
        Generators in :math:`\mathfrak{gl}(d)^{N-1}` (any matrices); for a
        sequence W, ``a[k-1]`` in :math:`\mathfrak{gl}(d_k)`.
    W : array_like, shape (N, d, d), or sequence of N arrays
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W

    Raises
    ------
    ValueError
        If a has the wrong shape, or :math:`e^{\pm a}` or the result overflows.
    """
    W = as_fiber_layers(W, widths=widths)
    if isinstance(W, list):
        a = _as_generators(W, a)
        if not a:
            return [layer.copy() for layer in W]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow raises below
            pairs = [_expm_pair(ak.astype(np.result_type(ak, *W))) for ak in a]
            E, Einv = [e for e, _ in pairs], [f for _, f in pairs]
            if not all(np.all(np.isfinite(e)) and np.all(np.isfinite(f)) for e, f in pairs):
                raise ValueError(
                    "a is too large: the matrix exponentials e^a, e^-a overflow float64"
                )
            out = _chain_action(W, E, Einv)
        if not all(np.all(np.isfinite(layer)) for layer in out):
            raise ValueError("a is too large: the group action e^a . W overflows float64")
        return out
    W, a = _stack_and_generator(W, a)
    if W.shape[0] == 1:
        return W.copy()
    with np.errstate(over="ignore", invalid="ignore"):  # overflow raises below
        E, Einv = _expm_pair(a.astype(np.result_type(a, W)))
        if not (np.all(np.isfinite(E)) and np.all(np.isfinite(Einv))):
            raise ValueError("a is too large: the matrix exponentials e^a, e^-a overflow float64")
        out = _layerwise_action(W, E, Einv)
    if not np.all(np.isfinite(out)):
        raise ValueError("a is too large: the group action e^a . W overflows float64")
    return out


def generator_to_tangent(
    W: ArrayLike, a: ArrayLike, *, widths: Sequence[int] | None = None
) -> Layers:
    r"""The tangent vector :math:`w_a` of a generator ([R] eq. 2.3).

    :math:`w_a = (-W_N a_{N-1},\ a_{N-1}W_{N-1} - W_{N-1}a_{N-2},\ \dots,\ a_1 W_1)`:
    layer p gets :math:`a_p W_p - W_p a_{p-1}` with :math:`a_0 = a_N = 0`.

    For general widths ``a[k-1]`` has shape (d_k, d_k); :math:`w_a` is tangent to the
    fiber for every a (the action keeps the product), but the generators need not span the
    tangent space (the fiber is a union of orbits when a hidden width exceeds
    min(d_0, d_N)).

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
    a : array_like, shape (N-1, d, d), or sequence of N-1 arrays
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W
    """
    W = as_fiber_layers(W, widths=widths)
    if isinstance(W, list):
        if len(W) == 1:
            return [np.zeros_like(W[0])]
        return _generator_tangent(W, _as_generators(W, a))
    return _generator_tangent(*_stack_and_generator(W, a))


def _generator_tangent(W: Layers, a: Layers) -> Layers:
    """:func:`generator_to_tangent` without the checks (W and a validated, N >= 2 for a list)."""
    if isinstance(W, list):
        return _chain_generator_tangent(W, a)
    out = np.zeros(W.shape, dtype=np.result_type(W, a))
    out[:-1] += a @ W[:-1]
    out[1:] -= W[1:] @ a
    return out


def tangent_to_generator(W: ArrayLike, V: ArrayLike) -> Layers:
    r"""The generator a with :math:`w_a = V` (inverse of :func:`generator_to_tangent`).

    :ref:`math-fiber`: :math:`a_1 = V_1 W_1^{-1}`,
    :math:`a_k = (V_k + W_k a_{k-1}) W_k^{-1}`, k = 2..N-1. Layer N is not
    used: for a tangent V it is implied (:math:`V_N = -W_N a_{N-1}`); for a
    non-tangent V the result reproduces layers 1..N-1 of V only. Cost
    O(N d^3).

    General widths (a list of layers not all d x d): the equations
    :math:`a_pW_p - W_pa_{p-1} = V_p`, p = 1..N, are solved in the least squares sense
    (:math:`\sum_k d_kd_{k-1}` equations in :math:`\sum_{k=1}^{N-1} d_k^2` unknowns),
    matrix-free: LSQR on the equations weighted per layer by the inverse square roots of
    the diagonal blocks of their normal matrix, O(N d^3) per iteration (tens to hundreds
    of iterations; 22 at a random balanced point of widths (10, 30, 30, 30, 10)). When a
    hidden width exceeds :math:`r = \min(d_0, d_N)` the stabilizer of W is not trivial,
    so the generator is not unique: the minimal-norm one (Frobenius, summed over k) is
    returned, the one orthogonal to the Lie algebra of the stabilizer. The fiber is then a union of
    orbits, and a tangent vector of the fiber need not be generated: ValueError (naming
    V) when :math:`|w_a - V| > 10^{-8}(|V| + |W||a|)` for the least-squares a. A list
    of square layers is handled as the stack (lists out).

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Point with invertible layers 1..N-1 (square layers); for general widths,
        ``W[k-1]`` of shape (d_k, d_{k-1}) (any ranks).
    V : array_like, shape (N, d, d), or sequence of N arrays shaped like W
        Tangent vector at W.

    Returns
    -------
    a : ndarray, shape (N-1, d, d), or list of N-1 arrays (d_k, d_k)

    Raises
    ------
    ValueError
        Square layers: if a layer 1..N-1 of W is singular or has condition number above
        1/(d eps) (the message names W). General widths: if V is not :math:`w_a` for any
        generator a (the message names V).

    References
    ----------
    - [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
      network*, eq. 2.3.
    """
    if isinstance(W, (list, tuple)):
        layers = as_fiber_layers(W)
        V = _check_vector(layers, V, "V")
        square = _square_stack(layers)
        if square is not None:
            return list(tangent_to_generator(square, np.stack(V)))
        return _chain_generator_of(layers, V)
    W = as_stack(W)
    V = _check_vector(W, V, "V")
    N, d, _ = W.shape
    if N > 1:
        _check_invertible_layers(W[:-1], "W has no generator for V", product=False)
    return _generator_of(W, V)


def _generator_of(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """:func:`tangent_to_generator` without the checks."""
    N, d, _ = W.shape
    a = np.zeros((N - 1, d, d), dtype=np.result_type(W, V))
    prev = None
    for k in range(N - 1):
        rhs = V[k] if prev is None else V[k] + W[k] @ prev
        prev = solve_right(rhs, W[k])
        a[k] = prev
    return a


#: Relative residual above which the least-squares solutions of the general-widths
#: generator and group-element equations count as "no solution".
_LSTSQ_RTOL = 1e-8
#: Stopping tolerances (atol = btol) and iteration cap of the LSQR solves of those
#: equations (:func:`_chain_lstsq`).
_LSQR_TOL = 1e-14
_LSQR_ITER = 20_000


def _chain_apply(left: list[np.ndarray], right: list[np.ndarray], b: list[np.ndarray]) -> list:
    r""":math:`(b_k) \mapsto (b_pL_p - R_pb_{p-1})_{p=1..N}` (:math:`b_0 = b_N = 0`):
    the generator map for L = R = W, the group-element equations for L = W, R = W'."""
    N = len(left)
    out = []
    for p in range(N):
        if p < N - 1:
            y = b[p] @ left[p]
            if p > 0:
                y = y - right[p] @ b[p - 1]
        else:
            y = -(right[p] @ b[p - 1])
        out.append(y)
    return out


def _chain_adjoint(left: list[np.ndarray], right: list[np.ndarray], y: list[np.ndarray]) -> list:
    """The adjoint (Frobenius inner products) of :func:`_chain_apply`."""
    return [y[k] @ _h(left[k]) - _h(right[k + 1]) @ y[k + 1] for k in range(len(left) - 1)]


def _chain_row_weights(left: list[np.ndarray], right: list[np.ndarray]) -> list:
    r"""Row weights :math:`D_p = (S_p\,\cdot + \cdot\,T_p)^{-1/2}` of the output blocks,
    :math:`S_p = R_pR_p^*`, :math:`T_p = L_p^*L_p` (the diagonal blocks of
    :math:`MM^*`), as (U, w, V) with :math:`D_p(y) = U(w \circ U^*yV)V^*`.

    Directions where the diagonal block vanishes (no unknown reaches them) get the
    weight of the largest block entry: any positive weights leave the solutions of a
    consistent system, hence its minimal-norm solution, unchanged."""
    N = len(left)
    blocks = []
    for p in range(N):
        m, n = left[p].shape
        s, U = np.linalg.eigh(right[p] @ _h(right[p])) if p > 0 else (np.zeros(m), np.eye(m))
        t, V = np.linalg.eigh(_h(left[p]) @ left[p]) if p < N - 1 else (np.zeros(n), np.eye(n))
        blocks.append((U, np.maximum(s, 0.0)[:, None] + np.maximum(t, 0.0)[None, :], V))
    top = max(float(np.max(g)) for _, g, _ in blocks) if blocks else 1.0
    top = top if top > 0 else 1.0
    out = []
    for U, g, V in blocks:
        out.append((U, 1.0 / np.sqrt(np.where(g > 1e-14 * top, g, top)), V))
    return out


def _weigh(weights: list, y: list[np.ndarray]) -> list[np.ndarray]:
    return [U @ (w * (_h(U) @ z @ V)) @ _h(V) for (U, w, V), z in zip(weights, y, strict=True)]


def _chain_lstsq(left, right, rhs: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    r"""Minimal-norm solution b of :math:`M b = \mathrm{rhs}` (:func:`_chain_apply`),
    matrix-free: LSQR [PS] on the row-weighted system :math:`DMb = D\,\mathrm{rhs}`
    (:func:`_chain_row_weights`), O(N d^3) per iteration. From b = 0 the iterates stay in
    the range of :math:`M^*D`, which is that of :math:`M^*`; for a consistent system the
    weights do not change the solution set, so the limit is the minimal-norm solution. For
    an inconsistent one it is a weighted least-squares solution, whose residual is at
    least the least-squares residual (the callers reject both). Returns b and
    :math:`|Mb - \mathrm{rhs}|`.

    [PS] C. C. Paige and M. A. Saunders, *LSQR: an algorithm for sparse linear equations
    and sparse least squares*, ACM TOMS 8 (1982)."""
    hidden = [layer.shape[0] for layer in left[:-1]]
    dtype = np.result_type(*left, *right, *rhs, float)
    n = sum(h * h for h in hidden)
    weights = _chain_row_weights(left, right)
    like = [np.empty(z.shape) for z in rhs]

    def matvec(x):
        return _flatten(_weigh(weights, _chain_apply(left, right, _unvec_generators(x, hidden))))

    def rmatvec(y):
        return _flatten(_chain_adjoint(left, right, _weigh(weights, _unflatten(y, like))))

    m = sum(z.size for z in rhs)
    op = scipy.sparse.linalg.LinearOperator((m, n), matvec=matvec, rmatvec=rmatvec, dtype=dtype)
    rw = _flatten(_weigh(weights, rhs))
    x = scipy.sparse.linalg.lsqr(op, rw, atol=_LSQR_TOL, btol=_LSQR_TOL, iter_lim=_LSQR_ITER)[0]
    b = _unvec_generators(x, hidden)
    r = _flatten(_chain_apply(left, right, b)) - _flatten(rhs)
    return b, float(np.linalg.norm(r))


def _unvec_generators(x: np.ndarray, hidden: list[int]) -> list[np.ndarray]:
    out, start = [], 0
    for h in hidden:
        out.append(x[start : start + h * h].reshape(h, h).copy())
        start += h * h
    return out


def _chain_generator_of(layers: list[np.ndarray], V: list[np.ndarray]) -> list[np.ndarray]:
    """Minimal-norm least-squares generator of V at a sequence of layers; ValueError (naming
    V) unless ``w_a = V`` to :data:`_LSTSQ_RTOL`."""
    if len(layers) == 1:  # no generators
        a, residual = [], float(np.linalg.norm(V[0]))
    else:
        a, residual = _chain_lstsq(layers, layers, V)
    scale = float(np.linalg.norm(_flatten(V))) + float(np.linalg.norm(_flatten(layers))) * (
        float(np.linalg.norm(_flatten(a))) if a else 0.0
    )
    if not residual <= _LSTSQ_RTOL * scale:
        raise ValueError(
            f"V is not generated at W: no generator a has w_a = V (least-squares residual "
            f"|w_a - V| = {residual:.3g}, relative {residual / max(scale, 1e-300):.3g} > "
            f"{_LSTSQ_RTOL:g}); for widths {layer_widths(layers)} the fiber is a union of "
            "orbits and its tangent space exceeds the orbit's"
        )
    return a


def fiber_group_element(W: ArrayLike, W_target: ArrayLike) -> Layers:
    r"""The group element :math:`\mathbf{A}` with :math:`\mathbf{A}\cdot W = W'` ([R] Lemma 1).

    :math:`A_1 = W'_1 W_1^{-1}`, :math:`A_k = W'_k A_{k-1} W_k^{-1}`. It exists
    (and is unique) iff both points lie on the same fiber of a full-rank X;
    layer N is then :math:`W'_N = W_N A_{N-1}^{-1}` automatically. With
    ``W = balanced_point(X, N)`` (the center of the fiber) this gives the orbit
    coordinates of W', and
    W' lies in the orbit :math:`\mathcal{O}_X` of the center iff every
    :math:`A_k` is orthogonal (unitary).

    General widths (a list of layers not all d x d): :math:`\mathbf{A}\cdot W = W'` is
    the linear system :math:`A_pW_p = W'_pA_{p-1}`, p = 1..N
    (:math:`A_0 = A_N = I`), solved in the least squares sense (matrix-free, as
    :func:`tangent_to_generator`). When a hidden width exceeds
    :math:`r = \min(d_0, d_N)` its solutions form an affine space (a coset of the
    stabilizer), and the group element is not unique: the solution nearest the identity
    (minimal :math:`\sum_k |A_k - I|_F^2`) is returned. It is the identity for
    W' = W; it is not the minimal-norm solution, which can be singular (for widths
    (1, 2, 1) at a balanced point, minimal norm gives :math:`A_1 = e_1e_1^T`). Should it
    be singular, seeded moves along the solution space are tried (an invertible solution,
    if one exists, is generic there). ValueError (naming ``W_target``) when the system has
    no solution to :math:`10^{-8}` relative (the points lie in different orbits, or in
    different fibers), or no invertible solution is found. A list of square layers is
    handled as the stack (lists out).

    Parameters
    ----------
    W, W_target : array_like, shape (N, d, d), or sequences of N arrays of the same shapes

    Returns
    -------
    ndarray, shape (N-1, d, d), or list of N-1 arrays (d_k, d_k)

    Raises
    ------
    ValueError
        Square layers: if a layer 1..N-1 of W is singular or has condition number above
        1/(d eps) (the message names W). General widths: if ``W_target`` is not in the
        orbit of W (the message names ``W_target``).

    References
    ----------
    - [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
      network*, eq. 1.5 and Lemma 1.
    """
    if isinstance(W, (list, tuple)):
        layers = as_fiber_layers(W)
        W2 = _check_vector(layers, W_target, "W_target")
        square = _square_stack(layers)
        if square is not None:
            return list(fiber_group_element(square, np.stack(W2)))
        return _chain_group_element(layers, W2)
    W = as_stack(W)
    W2 = as_stack(W_target, "W_target", depth=W.shape[0], d=W.shape[1])
    N, d, _ = W.shape
    if N > 1:
        _check_invertible_layers(W[:-1], "W has no group element to W_target", product=False)
    a = np.zeros((N - 1, d, d), dtype=np.result_type(W, W2))
    prev = np.eye(d)
    for k in range(N - 1):
        prev = solve_right(W2[k] @ prev, W[k])
        a[k] = prev
    return a


def _chain_group_element(layers: list[np.ndarray], target: list[np.ndarray]) -> list[np.ndarray]:
    """The group element nearest the identity carrying a sequence of layers to ``target``;
    ValueError (naming W_target) if there is none."""
    N = len(layers)
    hidden = [layer.shape[0] for layer in layers[:-1]]
    if N == 1:
        gap = float(np.linalg.norm(target[0] - layers[0]))
        if not gap <= _LSTSQ_RTOL * float(np.linalg.norm(layers[0])):
            raise ValueError(
                f"W_target is not in the orbit of W: for depth 1 the group is trivial and "
                f"|W_target - W| = {gap:.3g}"
            )
        return []
    eye = [np.eye(h) for h in hidden]
    # A_1 W_1 = W'_1 (p = 1) and W'_N A_{N-1} = W_N (p = N), the rest homogeneous
    dtype = np.result_type(*target, *layers)
    rhs = [np.zeros(t.shape, dtype=dtype) for t in target]
    rhs[0] = rhs[0] + target[0]
    rhs[-1] = rhs[-1] - layers[-1]
    # the solution nearest the identity: I plus the minimal-norm correction
    at_eye = _chain_apply(layers, target, eye)
    step, _ = _chain_lstsq(layers, target, [r - m for r, m in zip(rhs, at_eye, strict=True)])
    A = [e + c for e, c in zip(eye, step, strict=True)]
    residual = float(np.linalg.norm(_flatten(_chain_apply(layers, target, A)) - _flatten(rhs)))
    size = float(np.linalg.norm(_flatten(A)))
    scale = (
        float(np.linalg.norm(_flatten(rhs)))
        + float(np.linalg.norm(_flatten(layers)) + np.linalg.norm(_flatten(target))) * size
    )
    if not residual <= _LSTSQ_RTOL * scale:
        raise ValueError(
            f"W_target is not in the orbit of W: no group element A has A.W = W_target "
            f"(least-squares residual {residual:.3g}, relative "
            f"{residual / max(scale, 1e-300):.3g} > {_LSTSQ_RTOL:g}); for widths "
            f"{layer_widths(layers)} the fiber is a union of orbits"
        )
    if _all_invertible(A):
        return A
    # an invertible solution, if any, is generic on the affine solution space A + ker M:
    # seeded random moves c - M^+Mc along the kernel, scaled to |A|
    rng = np.random.default_rng(0)
    for _ in range(3):
        c = [rng.standard_normal((h, h)) for h in hidden]
        fit, _ = _chain_lstsq(layers, target, _chain_apply(layers, target, c))
        k = [ci - fi for ci, fi in zip(c, fit, strict=True)]
        length = float(np.linalg.norm(_flatten(k)))
        if length <= 1e-8 * float(np.linalg.norm(_flatten(c))):
            break  # trivial kernel: the solution is unique
        B = [a + (size / length) * ki for a, ki in zip(A, k, strict=True)]
        if _all_invertible(B):
            return B
    raise ValueError(
        "W_target is not in the orbit of W: the equations A_p W_p = W_target_p A_{p-1} "
        "have solutions, but no invertible one was found (the points are in one fiber, "
        "in different orbits)"
    )


def _all_invertible(A: list[np.ndarray]) -> bool:
    for Ak in A:
        s = np.linalg.svd(Ak, compute_uv=False)
        if not s[-1] > s[0] * Ak.shape[0] * np.finfo(float).eps:
            return False
    return True


def _second_order_term(W: np.ndarray, a: np.ndarray) -> np.ndarray:
    """d^2/dtau^2 of exp(tau a).W at 0: a_p^2 W_p - 2 a_p W_p a_{p-1} + W_p a_{p-1}^2."""
    out = np.zeros(W.shape, dtype=np.result_type(W, a))
    aW = a @ W[:-1]
    out[:-1] += a @ aW
    out[1:] += W[1:] @ a @ a
    out[1:-1] -= 2.0 * aW[1:] @ a[:-1]
    return out


def _check_invertible_layers(
    layers: np.ndarray, message: str, product: bool = True
) -> np.ndarray | None:
    """ValueError (``message`` names the user's argument) unless every layer (and, with
    ``product``, their product) is numerically invertible: condition number <= 1/(d eps), the
    default bound of :func:`check_full_rank`. Returns the product (with ``product``)."""
    d = layers.shape[-1]
    limit = 1.0 / (d * np.finfo(np.float64).eps)
    if not np.all(np.isfinite(layers)):
        raise ValueError(f"{message}: it has NaN or Inf entries")
    s = np.linalg.svd(layers, compute_uv=False)
    cond = np.divide(s[:, 0], s[:, -1], out=np.full(s.shape[0], np.inf), where=s[:, -1] > 0)
    bad = np.flatnonzero(~(cond <= limit))
    if bad.size:
        raise ValueError(
            f"{message}: layer {int(bad[0]) + 1} is singular or too ill-conditioned "
            f"(condition number {cond[bad[0]]:.3g} > {limit:.3g})"
        )
    if not product:
        return None
    prod = end_to_end(layers)
    sp = np.linalg.svd(prod, compute_uv=False)
    cp = np.inf if not sp[-1] > 0 else float(sp[0] / sp[-1])
    if not cp <= limit:
        raise ValueError(
            f"{message}: the product of these layers is singular or too ill-conditioned "
            f"(condition number {cp:.3g} > {limit:.3g})"
        )
    return prod


def _solved_layer(widths: tuple[int, ...]) -> str:
    r"""Which layer a sequence solves from X: the output layer when d_0 <= d_N (then
    :math:`P = W_{N-1}\cdots W_1` has full column rank d_0 on the fiber), the input layer
    when d_0 > d_N (then :math:`Q = W_N\cdots W_2` has full row rank d_N)."""
    return "output" if widths[0] <= widths[-1] else "input"


def _min_change_map(F: np.ndarray, side: str, message: str):
    """``E -> E F^+`` (side "output", F of full column rank) or ``E -> F^+ E`` (side
    "input", F of full row rank), through a thin QR of F (or F^*); ValueError (``message``
    names the user's argument) when F is numerically rank-deficient."""
    M = F if side == "output" else _h(F)
    if not np.all(np.isfinite(M)):
        raise ValueError(f"{message}: the product of the other layers has NaN or Inf entries")
    Q, R = np.linalg.qr(M)
    s = np.linalg.svd(R, compute_uv=False)
    limit = 1.0 / (R.shape[0] * np.finfo(np.float64).eps)
    cond = np.inf if not s[-1] > 0 else float(s[0] / s[-1])
    if not cond <= limit:
        which = "layers 1..N-1" if side == "output" else "layers 2..N"
        raise ValueError(
            f"{message}: the product of {which} has rank below min(d_0, d_N) = {R.shape[0]} "
            f"or is too ill-conditioned (condition number {cond:.3g} > {limit:.3g})"
        )
    if side == "output":  # E P^+ = (E R^{-1}) Q^*
        return lambda E: _h(_solve_triangular_h(R, _h(E))) @ _h(Q)
    return lambda E: Q @ _solve_triangular_h(R, E)  # Q^+ E = Q R^{-*} E


def _solve_triangular_h(R: np.ndarray, E: np.ndarray) -> np.ndarray:
    """:math:`R^{-*} E` for an upper triangular R (inputs checked finite by the caller)."""
    return scipy.linalg.solve_triangular(R, E, trans="C", check_finite=False)


def _chain_restore(layers: list[np.ndarray], X: np.ndarray, message: str) -> list[np.ndarray]:
    r"""Minimum-change solve of the end layer (:func:`_solved_layer`) so that the product is X.

    Output side: :math:`W_N \leftarrow W_N + (X - W_N P) P^+`, the solution of
    :math:`W_N P = X` nearest to :math:`W_N`; input side:
    :math:`W_1 \leftarrow W_1 + Q^+ (X - Q W_1)`. One refinement step with the new residual.
    """
    if len(layers) == 1:
        return [X.astype(np.result_type(X, layers[0]), copy=True)]
    out = list(layers)
    output = _solved_layer(layer_widths(layers)) == "output"
    with np.errstate(over="ignore", invalid="ignore"):  # overflow raises below
        F = chain_product(layers[:-1]) if output else chain_product(layers[1:])
        apply = _min_change_map(F, "output" if output else "input", message)
        L = layers[-1] if output else layers[0]
        for _ in range(2):  # the solve and one refinement with the new residual
            E = X - L @ F if output else X - F @ L
            if not np.all(np.isfinite(E)):
                raise ValueError(f"{message}: the product of the layers overflows")
            L = L + apply(E)
    if not np.all(np.isfinite(L)):
        raise ValueError(f"{message}: the result overflows")
    out[-1 if output else 0] = L
    return out


def _chain_retraction(
    layers: list[np.ndarray],
    V: list[np.ndarray],
    second_order: bool,
    X: np.ndarray | None,
    solver: FiberNormalSolver | None,
) -> list[np.ndarray]:
    """:func:`fiber_retraction` for a validated sequence of layers that are not all square."""
    if len(layers) == 1 or not any(np.any(v) for v in V):
        return (
            [layer.copy() for layer in layers]
            if X is None
            else _chain_restore(layers, X, "W cannot be restored onto the fiber")
        )
    step = V
    if second_order:
        side = _solved_layer(layer_widths(layers))
        message = "W is outside the domain of the retraction"
        D2 = chain_second_derivative(layers, V)
        E = [np.zeros_like(layer, dtype=np.result_type(layer, D2)) for layer in layers]
        if side == "output":
            E[-1] = _min_change_map(chain_product(layers[:-1]), side, message)(D2)
        else:
            E[0] = _min_change_map(chain_product(layers[1:]), side, message)(D2)
        if solver is None:
            solver = FiberNormalSolver(layers)
        w = solver._project(E)
        step = [v + 0.5 * w_p for v, w_p in zip(V, w, strict=True)]
    moved = [layer + s for layer, s in zip(layers, step, strict=True)]
    target = chain_product(layers) if X is None else X
    return _chain_restore(
        moved, target, "the step V is too large for the retraction at W (W + V leaves its domain)"
    )


def fiber_retraction(
    W: ArrayLike,
    V: ArrayLike,
    *,
    second_order: bool = True,
    X: ArrayLike | None = None,
    solver: FiberNormalSolver | None = None,
    widths: Sequence[int] | None = None,
) -> Layers:
    r"""Retraction on :math:`\mathcal{F}_X`: a step in layers 1..N-1, the output layer solved for.

    .. math::

        R_W(V)_p = W_p + V_p + \tfrac12 n_p \quad (p < N), \qquad
        R_W(V)_N = X\,\big(R_W(V)_{N-1}\cdots R_W(V)_1\big)^{-1},

    with X = ``X`` if given, else the computed :math:`W_N\cdots W_1`. The
    second-order term (default) is the normal acceleration
    :math:`n = (I - P)\,Q(a)` with a = :func:`tangent_to_generator` (W, V) and
    :math:`Q(a)_p = a_p^2W_p - 2a_pW_pa_{p-1} + W_pa_{p-1}^2` the acceleration of
    :math:`\tau \mapsto e^{\tau a}\cdot W` ([R] eq. 2.1-2.3): every curve in
    :math:`\mathcal{F}_X` with velocity V has normal acceleration n, and a
    tangent vector is fixed by its layers 1..N-1, so :math:`t \mapsto
    R_W(tV)` has acceleration exactly n at 0 and agrees with the geodesic to
    second order (Hessian slope 3, superlinear trust regions). With
    ``second_order=False``, n = 0 (first order). The result is the group
    translate :math:`\mathbf{A}\cdot W` of [R] eq. 1.5 with
    :math:`A_k = R_k A_{k-1} W_k^{-1}`.

    **General widths** (a list of layers that are not all d x d): all layers take the
    step :math:`W + V + \tfrac12 w`, then one end layer is replaced by the
    minimum-change solution of the product equation (module docstring: the output
    layer :math:`L \leftarrow L + (X - LP)P^+` when :math:`d_0 \le d_N`, the input layer
    :math:`L \leftarrow L + Q^+(X - QL)` otherwise). This restore map T has
    :math:`dT = ` the oblique projection onto :math:`\ker d\phi_W` along the end-layer
    directions :math:`(0, \dots, 0, YP^+)`, so :math:`t \mapsto T(W + tV)` has
    acceleration :math:`-E`, :math:`E = (0, \dots, 0, D^2\phi_W[V, V]\,P^+)` (or
    :math:`(Q^+D^2\phi_W[V,V], 0, \dots, 0)`), and the second-order term
    :math:`w = P(E)` cancels its tangent part (O(N d^3) for :math:`D^2\phi` and one
    projection). The product is X to the rounding of one refined least-squares
    solve at every step; a step after which P (or Q) loses rank raises a
    ValueError naming V. A list of d x d layers is retracted as the stack.

    Domain and accuracy: :math:`R_W(V)` is defined iff the new layers
    1..N-1 and their product are invertible; numerically, a ValueError naming
    V is raised when one of them has condition number above 1/(d eps)
    (the step is too large for W). Every output layer is computed from
    well-defined quantities (no matrix exponential, which overflowed for
    large generators, and no inverse pair that must cancel), and
    :math:`R_N R_{N-1}\cdots R_1 = X` holds to the rounding of one backward-stable
    solve: :math:`|\phi(R) - X| \le c\,\epsilon\,|R_N|\,|R_{N-1}\cdots R_1|`,
    independently of how many steps were taken before when ``X`` is given
    (as in the pymanopt and geomstats ``Fiber``). Without ``X`` the computed
    product of the input is preserved, so rounding accumulates like a
    random walk of steps of that size. (Floating-point layers cannot do
    better: rounding each layer to float64 already moves :math:`\phi` by
    :math:`\epsilon\prod_p|W_p|`, far more than :math:`\epsilon|X|` at
    unbalanced points.)

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Layers 1..N-1 must be invertible (stack); a sequence holds layers of
        general widths, ``W[k]`` of shape (d_{k+1}, d_k).
    V : array_like, shaped like W
        Tangent vector at W.
    second_order : bool
        Add the second-order correction (one projection, O(N d^3) with a
        factored solver).
    X : array_like, shape (d, d) or (d_N, d_0), optional
        The end-to-end matrix to keep (default: the computed product of W).
    solver : FiberNormalSolver, optional
        A solver built at W (reused for the correction).
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W

    Raises
    ------
    ValueError
        If a layer 1..N-1 of W, or of the step, is singular or too
        ill-conditioned (the message names W or V), or on bad shapes.
    """
    if isinstance(W, (list, tuple)):
        layers = as_fiber_layers(W, widths=widths)
        V = _check_vector(layers, V, "V")
        if X is not None:
            X = as_array(X, "X", (layers[-1].shape[0], layers[0].shape[1]), real=False)
        stack = _square_stack(layers)
        if stack is not None:  # square layers: the stack's retraction, layer by layer
            if solver is not None and solver._seq:
                solver = None
            return list(
                fiber_retraction(stack, np.stack(V), second_order=second_order, X=X, solver=solver)
            )
        return _chain_retraction(layers, V, bool(second_order), X, solver)
    W = as_fiber_layers(W, widths=widths)
    V = _check_vector(W, V, "V")
    if X is not None:
        X = as_matrix(X)
        if X.shape[0] != W.shape[1]:
            raise ValueError(f"X must have shape {W.shape[1:]}, got {X.shape}")
    N = W.shape[0]
    if N == 1 or not np.any(V):
        return W.copy() if X is None else fiber_restore(W, X)
    step = V[:-1]
    if second_order:
        _check_invertible_layers(W[:-1], "W is outside the domain of the retraction", product=False)
        a = _generator_of(W, V)
        if solver is None:
            solver = FiberNormalSolver(W)
        step = step + 0.5 * solver._normal_part(_second_order_term(W, a))[:-1]
    layers = W[:-1] + step
    prod = _check_invertible_layers(
        layers, "the step V is too large for the retraction at W (W + V leaves its domain)"
    )
    target = end_to_end(W) if X is None else X
    out = np.concatenate([layers, solve_right(target, prod)[None]], axis=0)
    if not np.all(np.isfinite(out)):
        raise ValueError("the step V is too large for the retraction at W: the result overflows")
    return out


def fiber_restore(W: ArrayLike, X: ArrayLike, *, widths: Sequence[int] | None = None) -> Layers:
    r"""Smooth map from a neighbourhood of :math:`\mathcal{F}_X` onto it, fixing the fiber.

    Recomputes the output layer, :math:`W_N \leftarrow X (W_{N-1}\cdots W_1)^{-1}`
    (through a solve, O(N d^3)). Points already on the fiber are returned
    unchanged up to rounding, so this is a valid ``restore`` for
    :func:`dln_manifolds.flows.integrate_flow` (standard projection method;
    keeps the order of the Runge-Kutta method).

    For a sequence of layers of general widths the solved end layer is the
    minimum-change solution (the output layer
    :math:`W_N \leftarrow W_N + (X - W_N P)P^+` when :math:`d_0 \le d_N`, else the input
    layer :math:`W_1 \leftarrow W_1 + Q^+(X - QW_1)`, module docstring), which for square
    layers is the same map.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
        Layers 1..N-1 must be invertible (stack); for a sequence, the product of
        the other layers must have rank min(d_0, d_N).
    X : array_like, shape (d, d), or (d_N, d_0) for a sequence
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W

    Raises
    ------
    ValueError
        If X has the wrong shape, or a layer 1..N-1 of W (or their product)
        is singular or has condition number above 1/(d eps).
    """
    if isinstance(W, (list, tuple)):
        layers = as_fiber_layers(W, widths=widths)
        X = as_array(X, "X", (layers[-1].shape[0], layers[0].shape[1]), real=False)
        return _chain_restore(layers, X, "W cannot be restored onto the fiber")
    W = as_fiber_layers(W, widths=widths)
    X = as_matrix(X)
    if X.shape[0] != W.shape[1]:
        raise ValueError(f"X must have shape {W.shape[1:]}, got {X.shape}")
    out = W.astype(np.result_type(W, X), copy=True)
    if W.shape[0] == 1:
        out[0] = X
        return out
    prod = _check_invertible_layers(W[:-1], "W cannot be restored onto the fiber")
    out[-1] = solve_right(X, prod)
    return out


# ---------------------------------------------------------------------------
# General widths, vectorized over networks (internal, for the adapters)
# ---------------------------------------------------------------------------
#
# The functions below take validated layers of general widths with leading batch axes
# shared by every layer, (..., d_{k+1}, d_k), and give for each network what the checked
# single-network doors give (fiber_tangent_projection, fiber_restore, fiber_retraction
# with X): the same formulas, batched. Networks outside the well-conditioned range of the
# batched path (and square layers, which fiber_retraction retracts as a stack) go through
# the single-network code one at a time, which also raises its own ValueError.

#: Largest cond(K) (2-norm, from the eigenvalues) of the batched Cholesky-type solve;
#: beyond it a network goes through FiberNormalSolver (which switches to QR at 1e10).
_BATCH_MAX_CONDITION = 1e8


def _batch_of(layers: list[np.ndarray]) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """The batch shape and the layers reshaped to (B, d_{k+1}, d_k)."""
    batch = layers[0].shape[:-2]
    return batch, [z.reshape((-1,) + z.shape[-2:]) for z in layers]


def _network(layers: list[np.ndarray], i: int) -> list[np.ndarray]:
    return [z[i] for z in layers]


def _per_network(fun, bad: np.ndarray, out: list[np.ndarray], *args) -> list[np.ndarray]:
    """Replace the networks ``bad`` of the batched result ``out`` by ``fun`` on each."""
    for i in np.flatnonzero(bad):
        for z, r in zip(out, fun(*(_network(a, i) for a in args)), strict=True):
            z[i] = r
    return out


#: Entries of the dense normal matrices K (B, m n, m n) held at once by the batched path:
#: larger batches are processed in chunks.
_BATCH_MAX_ENTRIES = 2**22


def _chunked(fun):
    """Run ``fun(W, *vectors)`` (layers with batch axes) on chunks of the flattened batch
    so that the dense normal matrices stay below :data:`_BATCH_MAX_ENTRIES` entries."""

    @functools.wraps(fun)
    def wrapper(W, *args):
        batch = W[0].shape[:-2]
        mn = W[-1].shape[-2] * W[0].shape[-1]
        size = max(1, _BATCH_MAX_ENTRIES // (mn * mn))
        nb = int(np.prod(batch, dtype=int))
        if nb <= size:
            return fun(W, *args)
        flat = [
            [np.broadcast_to(z, batch + z.shape[-2:]).reshape((nb,) + z.shape[-2:]) for z in L]
            if isinstance(L, list)
            else L
            for L in (W, *args)
        ]
        parts = [
            fun(*([z[i : i + size] for z in L] if isinstance(L, list) else L for L in flat))
            for i in range(0, nb, size)
        ]
        return [
            np.concatenate([p[k] for p in parts]).reshape(batch + parts[0][k].shape[1:])
            for k in range(len(parts[0]))
        ]

    return wrapper


class _BatchNormalSystem:
    r"""The normal system :math:`K = d\phi_W d\phi_W^*` at a batch of networks (B, ...)
    of general widths: dense K, solved by LU, the corrected semi-normal projection of
    :class:`FiberNormalSolver` (``"cholesky"``, one refinement). ``ok``: the networks
    whose K is positive definite with cond(K) <= :data:`_BATCH_MAX_CONDITION`."""

    def __init__(self, layers: list[np.ndarray]):
        A, B = chain_partial_products(layers)
        self.A, self.B = A[1:], B[:-1]  # layer p: A_{p+1} (B, m, d_p), B_{p-1} (B, d_{p-1}, n)
        self.Ah, self.Bh = [_h(a) for a in self.A], [_h(b) for b in self.B]
        L = np.stack([a @ ah for a, ah in zip(self.A, self.Ah, strict=True)], axis=1)
        R = np.stack([bh @ b for bh, b in zip(self.Bh, self.B, strict=True)], axis=1)
        nb, m, n = L.shape[0], L.shape[-1], R.shape[-1]
        self.shape = (m, n)
        T = np.einsum("zpac,zpeb->zaceb", L, R)  # sum over layers p
        K = T.transpose(0, 1, 4, 2, 3).reshape(nb, m * n, m * n)
        self.K = 0.5 * (K + _h(K))
        ev = np.linalg.eigvalsh(self.K) if m * n <= CHOLESKY_MAX_D**2 else None
        if ev is None:
            self.ok = np.zeros(nb, dtype=bool)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                self.ok = (ev[:, 0] > 0) & (ev[:, -1] <= _BATCH_MAX_CONDITION * ev[:, 0])
        # the networks outside the range get the identity, so that the batch solves
        self.K[~self.ok] = np.eye(m * n)

    def differential(self, V: list[np.ndarray]) -> np.ndarray:
        return sum(a @ v @ b for a, v, b in zip(self.A, V, self.B, strict=True))

    def adjoint(self, Y: np.ndarray) -> list[np.ndarray]:
        return [ah @ Y @ bh for ah, bh in zip(self.Ah, self.Bh, strict=True)]

    def solve(self, r: np.ndarray) -> np.ndarray:
        m, n = self.shape
        y = np.linalg.solve(self.K, r.reshape(-1, m * n, 1))
        return y.reshape(r.shape)

    def project(self, Z: list[np.ndarray]) -> list[np.ndarray]:
        y = self.solve(self.differential(Z))
        y = y + self.solve(self.differential(_subtract(Z, self.adjoint(y))))
        return _subtract(Z, self.adjoint(y))


def _project_one(W: list[np.ndarray], Z: list[np.ndarray]) -> list[np.ndarray]:
    return FiberNormalSolver(W).project(Z)


@_chunked
def project_layers(W: list[np.ndarray], Z: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`fiber_tangent_projection` (``method="auto"``) of validated layers of general
    widths with batch axes (..., d_{k+1}, d_k), vectorized over the networks (internal).

    Cholesky-range networks (m n <= :data:`CHOLESKY_MAX_D` ** 2, cond(K) <= 1e8) in one
    batched solve with the refinement of :class:`FiberNormalSolver`; the others one at a
    time through it (CG, QR, or its ValueError on a rank-deficient product).
    """
    batch, Wb = _batch_of(W)
    _, Zb = _batch_of([np.broadcast_to(z, w.shape) for z, w in zip(Z, W, strict=True)])
    if Wb[0].shape[0] == 0:
        return [np.empty(z.shape, dtype=np.result_type(z, w)) for z, w in zip(Z, W, strict=True)]
    system = _BatchNormalSystem(Wb)
    out = system.project(Zb)
    out = _per_network(_project_one, ~system.ok, out, Wb, Zb)
    return [z.reshape(batch + z.shape[1:]) for z in out]


def _min_change_batch(F: np.ndarray, side: str):
    """:func:`_min_change_map` for a batch F (B, ...): the map and the networks where F has
    condition number <= 1/(r eps) (the others are left to the single-network code)."""
    M = F if side == "output" else _h(F)
    finite = np.all(np.isfinite(M), axis=(-2, -1))
    M = np.where(finite[:, None, None], M, 0.0)
    Q, R = np.linalg.qr(M)
    s = np.linalg.svd(R, compute_uv=False)
    limit = 1.0 / (R.shape[-1] * np.finfo(np.float64).eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = finite & (s[:, -1] > 0) & (s[:, 0] <= limit * s[:, -1])
    R = np.where(ok[:, None, None], R, np.eye(R.shape[-1]))
    Rh = _h(R)
    if side == "output":  # E P^+ = (E R^{-1}) Q^*
        return (lambda E: _h(np.linalg.solve(Rh, _h(E))) @ _h(Q)), ok
    return (lambda E: Q @ np.linalg.solve(Rh, E)), ok  # Q^+ E = Q R^{-*} E


def _restore_batch(layers: list[np.ndarray], X: np.ndarray):
    """:func:`_chain_restore` on a batch (B, ...): the layers and the networks it handled."""
    out = list(layers)
    output = _solved_layer(layer_widths([z[0] for z in layers])) == "output"
    with np.errstate(over="ignore", invalid="ignore"):
        F = chain_product(layers[:-1]) if output else chain_product(layers[1:])
        apply, ok = _min_change_batch(F, "output" if output else "input")
        L = layers[-1] if output else layers[0]
        for _ in range(2):  # the solve and one refinement with the new residual
            E = X - L @ F if output else X - F @ L
            ok = ok & np.all(np.isfinite(E), axis=(-2, -1))
            L = L + apply(np.where(ok[:, None, None], E, 0.0))
    ok = ok & np.all(np.isfinite(L), axis=(-2, -1))
    out[-1 if output else 0] = L
    return out, ok


def restore_chain_layers(W: list[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
    """:func:`fiber_restore` of validated layers of general widths with batch axes
    (..., d_{k+1}, d_k) onto X (d_N, d_0), or onto one X per network (X with the batch
    axes of W, (..., d_N, d_0)), vectorized over the networks (internal)."""
    batch, Wb = _batch_of(W)
    if len(W) == 1:
        return [np.broadcast_to(X, W[0].shape).astype(np.result_type(W[0], X))]
    if Wb[0].shape[0] == 0:
        return [z.astype(np.result_type(z, X)) for z in W]
    Xb = np.broadcast_to(X, batch + X.shape[-2:]).reshape((-1,) + X.shape[-2:])
    out, ok = _restore_batch(Wb, Xb if X.ndim > 2 else X)

    def one(Wi, Xi):  # Xi: [X of network i]
        return _chain_restore(Wi, Xi[0], "W cannot be restored onto the fiber")

    out = _per_network(one, ~ok, [z.copy() for z in out], Wb, [Xb])
    return [z.reshape(batch + z.shape[1:]) for z in out]


@_chunked
def retract_chain_layers(
    W: list[np.ndarray], V: list[np.ndarray], X: np.ndarray
) -> list[np.ndarray]:
    """:func:`fiber_retraction` (second order, with X) of validated layers of general
    widths with batch axes (..., d_{k+1}, d_k), vectorized over the networks (internal).

    Square layers (retracted as a stack by :func:`fiber_retraction`) and networks outside
    the well-conditioned range of the batched solves go one at a time through it.
    """
    batch, Wb = _batch_of(W)
    _, Vb = _batch_of([np.broadcast_to(v, w.shape) for v, w in zip(V, W, strict=True)])
    nb = Wb[0].shape[0]

    def one(Wi, Vi):
        return fiber_retraction(Wi, Vi, X=X)

    widths = layer_widths([z[0] for z in Wb]) if nb else ()
    if nb == 0 or len(W) == 1 or len(set(widths)) == 1:
        out = [np.empty(z.shape[:1] + z.shape[1:], dtype=np.result_type(z, X)) for z in Wb]
        out = _per_network(one, np.ones(nb, dtype=bool), out, Wb, Vb)
        return [z.reshape(batch + z.shape[1:]) for z in out]
    side = _solved_layer(widths)
    with np.errstate(over="ignore", invalid="ignore"):
        D2 = chain_second_derivative(Wb, Vb)
        F = chain_product(Wb[:-1]) if side == "output" else chain_product(Wb[1:])
        apply, ok = _min_change_batch(F, side)
        E = [np.zeros_like(z, dtype=np.result_type(z, D2)) for z in Wb]
        E[-1 if side == "output" else 0] = apply(np.where(ok[:, None, None], D2, 0.0))
        system = _BatchNormalSystem(Wb)
        ok = ok & system.ok
        w = system.project(E)
        moved = [z + v + 0.5 * w_p for z, v, w_p in zip(Wb, Vb, w, strict=True)]
        moved = [np.where(ok[:, None, None], z, zw) for z, zw in zip(moved, Wb, strict=True)]
    out, ok_restore = _restore_batch(moved, X)
    out = _per_network(one, ~(ok & ok_restore), [z.copy() for z in out], Wb, Vb)
    return [z.reshape(batch + z.shape[1:]) for z in out]


# ---------------------------------------------------------------------------
# Gradients and the Weingarten map
# ---------------------------------------------------------------------------


def regularizer_gradient(
    W: ArrayLike,
    method: str = "auto",
    tol: float = 1e-13,
    *,
    widths: Sequence[int] | None = None,
) -> Layers:
    r"""Riemannian gradient of :math:`|W|^2` on :math:`\mathcal{F}_X`: :math:`P(2W)`.

    This is :math:`w_b` of [R] Lemma 5 (eq. 2.19-2.21), computed through the
    d^2 normal system instead. Along :math:`\dot W = -\mathrm{grad}|W|^2`
    ([R] eq. 1.13) the moments obey :math:`G(t) = G_0 e^{-4t}` ([R] Thm 2).

    The same holds for general widths (the normal directions
    :math:`d\phi_W^*(y)` keep every moment, :ref:`math-fiber`).

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
    method, tol
        As in :func:`fiber_tangent_projection`.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W
    """
    W = as_fiber_layers(W, widths=widths)
    if isinstance(W, list):
        return FiberNormalSolver(W, method=method, tol=tol)._project([2.0 * w for w in W])
    return FiberNormalSolver(W, method=method, tol=tol).project(2.0 * W)


def ness_gradient(W: ArrayLike, *, widths: Sequence[int] | None = None) -> Layers:
    r"""Riemannian gradient of :math:`|G|^2 = \sum_k \mathrm{tr}(G_k^2)` on :math:`\mathcal{F}_X`.

    Equals :math:`4 w_G` (generator :math:`a_k = G_k`), which is also its
    Euclidean gradient: it is already tangent, no linear solve is needed
    (:ref:`math-corrections`). Scaling: [R] Thm 10 writes :math:`2 w_G`, which is the
    gradient of :math:`\tfrac12|G|^2`; here the function is :math:`|G|^2` itself.

    For general widths the same formula holds, with :math:`G_k` of size
    :math:`d_k \times d_k`.

    Parameters
    ----------
    W : array_like, shape (N, d, d), or sequence of N arrays
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W
    """
    W = as_fiber_layers(W, widths=widths)
    if len(W) == 1:
        return [np.zeros_like(W[0])] if isinstance(W, list) else np.zeros_like(W)
    w_G = _generator_tangent(W, moments(W))
    return [4.0 * v for v in w_G] if isinstance(w_G, list) else 4.0 * w_G


def _dphi_adjoint_derivative(W: Layers, U: Layers, y: np.ndarray) -> Layers:
    r"""Directional derivative :math:`\frac{d}{dt} d\phi_{W+tU}^*(y)` at t = 0, O(N d^3)."""
    if isinstance(W, list):
        N = len(W)
        A, B = chain_partial_products(W)
        dtype = np.result_type(y, *W, *U)
        dA: list = [None] * (N + 1)  # dA[i] = D(W_N ... W_{i+1})[U], shape (m, d_i)
        dB: list = [None] * (N + 1)  # dB[i] = D(W_i ... W_1)[U], shape (d_i, n)
        dA[N] = np.zeros_like(A[N], dtype=dtype)
        dB[0] = np.zeros_like(B[0], dtype=dtype)
        for i in range(N - 1, -1, -1):
            dA[i] = dA[i + 1] @ W[i] + A[i + 1] @ U[i]
        for i in range(N):
            dB[i + 1] = U[i] @ B[i] + W[i] @ dB[i]
        return [_h(dA[p + 1]) @ y @ _h(B[p]) + _h(A[p + 1]) @ y @ _h(dB[p]) for p in range(N)]
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
    W: ArrayLike,
    V: ArrayLike,
    normal: ArrayLike,
    solver: FiberNormalSolver | None = None,
    *,
    widths: Sequence[int] | None = None,
) -> Layers:
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
    W : array_like, shape (N, d, d), or sequence of N arrays
        A sequence holds layers of general widths, ``W[k]`` of shape (d_{k+1}, d_k).
    V : array_like, shaped like W
        Tangent vector.
    normal : array_like, shaped like W
        Normal vector (its tangent part is ignored).
    solver : FiberNormalSolver, optional
        A solver built at W.
    widths : sequence of int, optional
        :math:`(d_0, \dots, d_N)`, checked against the layers' shapes.

    Returns
    -------
    ndarray, shape (N, d, d), or list of N arrays shaped like W
        A tangent vector.
    """
    W = as_fiber_layers(W, widths=widths)
    V = _check_vector(W, V, "V")
    normal = _check_vector(W, normal, "normal")
    if solver is None:
        solver = FiberNormalSolver(W)
    y = solver._normal_coordinates(normal)
    out = solver._project(_dphi_adjoint_derivative(W, V, y))
    return [-v for v in out] if isinstance(out, list) else -out


def check_fiber_depth(depth: int) -> int:
    """Validate the depth of a fiber: N >= 2 (for N = 1 the fiber is the single point X).

    Internal (not exported): shared with the adapters, which validate at their door.
    """
    N = check_finite_depth(depth)
    if N == 1:
        raise ValueError(
            "depth must be >= 2: for depth 1 the fiber F_X = {X} is a single point "
            "(dimension 0), with no tangent vectors to optimize or flow along"
        )
    return N


def check_fiber_widths(X: np.ndarray, depth: int, widths, max_condition: float):
    """Validate ``widths`` against X of shape (d_N, d_0): every hidden width at least rank X,
    and X of full rank min(d_0, d_N) (ValueErrors naming the argument and the numbers).

    Internal (not exported): shared with the adapters, which validate at their door.
    """
    widths = check_widths(widths, depth=depth)
    if X.shape != (widths[-1], widths[0]):
        raise ValueError(
            f"X must have shape (d_N, d_0) = ({widths[-1]}, {widths[0]}) for widths {widths}, "
            f"got shape {X.shape}"
        )
    s = np.linalg.svd(X, compute_uv=False)
    rank = int(np.count_nonzero(s > max(X.shape) * np.finfo(np.float64).eps * s[0]))
    for k in range(1, depth):
        if widths[k] < rank:
            raise ValueError(
                f"widths[{k}] = {widths[k]} is below rank X = {rank}: every hidden width of a "
                f"network with end-to-end matrix X is at least rank X (widths {widths}); "
                "bottleneck networks are not supported"
            )
    r = min(X.shape)
    if rank < r:
        raise ValueError(
            f"X must have full rank min(d_N, d_0) = {r}, got rank {rank} (singular values "
            f"{np.array2string(s, precision=3)}); the fiber over a rank-deficient X is not "
            "supported"
        )
    check_full_rank(s, "X", max_condition=float(max_condition))
    return widths
