"""Dense brute-force references shared by the tests (test-only; no library code).

``dense_cometric`` is the depth operator of [G] eq. 4.14 summed literally as a Kronecker
matrix, for square and non-square X (with (.)^0 = I), on row-major coordinates.
"""

from __future__ import annotations

import numpy as np


def psd_power(P: np.ndarray, p: float) -> np.ndarray:
    """P^p for symmetric PSD P with (.)^0 = I; rounding-level eigenvalues count as 0."""
    if p == 0:
        return np.eye(P.shape[0])
    w, Q = np.linalg.eigh(P)
    w = np.where(w > 1e-12 * w.max(), w, 0.0)
    return (Q * w**p) @ Q.T


def dense_cometric(X: np.ndarray, depth: int) -> np.ndarray:
    """sum_k kron((XX^T)^{(N-k)/N}, (X^TX)^{(k-1)/N}): A_{N,X} on row-major vec (mn x mn)."""
    P, Q = X @ X.T, X.T @ X
    return sum(
        np.kron(psd_power(P, (depth - k) / depth), psd_power(Q, (k - 1) / depth))
        for k in range(1, depth + 1)
    )
