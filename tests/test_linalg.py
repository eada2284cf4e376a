"""The internal layer of batched primitives (dln_manifolds._linalg) against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds._linalg import (
    components_differ,
    conj_transpose,
    haar_from_gaussian,
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


@pytest.mark.parametrize("complex_", [False, True])
def test_haar_from_gaussian_is_the_qr_factor_with_positive_diagonal(complex_):
    # Q^* Z = R upper triangular with a positive real diagonal: the unique QR factor that
    # makes the law Haar (Mezzadri 2007); the raw numpy factor is not (negative control)
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((50, 4, 4))
    if complex_:
        Z = (Z + 1j * rng.standard_normal(Z.shape)) / np.sqrt(2.0)
    Q = haar_from_gaussian(Z)
    R = conj_transpose(Q) @ Z
    np.testing.assert_allclose(np.tril(R, -1), 0.0, atol=1e-12)
    diag = np.diagonal(R, axis1=-2, axis2=-1)
    assert np.all(diag.real > 0) and np.allclose(diag.imag, 0.0, atol=1e-12)
    raw = np.diagonal(np.linalg.qr(Z)[1], axis1=-2, axis2=-1)
    assert np.any(raw.real < 0) or np.any(np.abs(raw.imag) > 1e-3)
    if not complex_:  # the real case is the sign fix, to the bit
        Qr, Rr = np.linalg.qr(Z)
        np.testing.assert_array_equal(
            Q, Qr * np.sign(np.diagonal(Rr, axis1=-2, axis2=-1))[..., None, :]
        )


def test_components_differ_by_the_segment_signs():
    """Square stacks: a layer's determinant sign; general widths: the r x r product of
    the layers between widths r (the hidden layers alone do not fix a component);
    complex networks: one component."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((3, 2, 2))
    flip = np.diag([-1.0, 1.0])
    assert not components_differ(W, W + 0.01)
    assert components_differ(W, np.stack([W[0] @ flip, W[1], W[2]]))
    assert components_differ(W, np.stack([W[0] @ flip, flip @ W[1], W[2]]))  # every layer's sign
    layers = [rng.standard_normal(s) for s in ((4, 2), (3, 4), (2, 3))]  # widths (2, 4, 3, 2)
    other = [layers[0] @ flip, layers[1], layers[2]]
    assert components_differ(layers, other)
    assert not components_differ(layers, [layers[0], -layers[1], -layers[2]])  # product kept
    assert not components_differ([z + 0j for z in layers], other)
