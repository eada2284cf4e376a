"""The internal layer of batched primitives (dln_manifolds._linalg) against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds._linalg import (
    conj_transpose,
    haar_orthogonal,
    haar_unitary,
    polar_factor,
    solve_right,
)


@pytest.mark.parametrize("complex_", [False, True])
def test_conj_transpose_solve_right_polar(complex_):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 3, 4, 4))
    if complex_:
        A = A + 1j * rng.standard_normal(A.shape)
    for idx in np.ndindex(A.shape[:2]):
        np.testing.assert_array_equal(conj_transpose(A)[idx], A[idx].conj().T)
    Y = rng.standard_normal((2, 3, 5, 4))
    np.testing.assert_allclose(solve_right(Y, A) @ A, Y, atol=1e-11)
    U = polar_factor(A)
    eye = np.eye(4)
    np.testing.assert_allclose(conj_transpose(U) @ U, np.broadcast_to(eye, A.shape), atol=1e-13)
    # A = U P with P Hermitian positive semidefinite
    P = conj_transpose(U) @ A
    np.testing.assert_allclose(P, conj_transpose(P), atol=1e-12)
    assert np.all(np.linalg.eigvalsh(P) > -1e-12)


def test_haar_samplers_are_orthogonal_and_unbiased():
    rng = np.random.default_rng(1)
    Q = haar_orthogonal(rng, 3, (20000,))
    np.testing.assert_allclose(np.swapaxes(Q, -1, -2) @ Q, np.broadcast_to(np.eye(3), Q.shape),
                               atol=1e-12)  # fmt: skip
    # Haar: E[Q] = 0 and E[Q_11^2] = 1/d; without the sign fix of R the mean of Q_11 is
    # far from 0 (negative control below)
    assert abs(Q[:, 0, 0].mean()) < 0.02
    assert abs((Q[:, 0, 0] ** 2).mean() - 1 / 3) < 0.01
    raw, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((20000, 3, 3)))
    assert abs(raw[:, 0, 0].mean()) > 0.1
    U = haar_unitary(rng, 3, (5000,))
    np.testing.assert_allclose(np.conj(np.swapaxes(U, -1, -2)) @ U,
                               np.broadcast_to(np.eye(3), U.shape), atol=1e-12)  # fmt: skip
    assert abs(U[:, 0, 0].mean()) < 0.03
