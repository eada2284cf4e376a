"""RegressionEnergy: E = 1/(2n)|XA - B|^2, checked against finite differences and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds import RegressionEnergy


def _data(rng, d=4, n=9):
    return rng.standard_normal((d, n)), rng.standard_normal((d, n))


def _brute_value(X, A, B):
    return 0.5 * np.sum((X @ A - B) ** 2) / A.shape[1]


def test_value_matches_definition(rng):
    A, B = _data(rng)
    E = RegressionEnergy(A, B)
    for _ in range(3):
        X = rng.standard_normal((4, 4))
        assert E.value(X) == pytest.approx(_brute_value(X, A, B), rel=1e-14)
    Xs = rng.standard_normal((2, 3, 4, 4))
    vals = E.value(Xs)
    assert vals.shape == (2, 3)
    assert vals[1, 2] == pytest.approx(_brute_value(Xs[1, 2], A, B), rel=1e-14)


@pytest.mark.parametrize("form", ["data", "covariances"])
def test_gradient_and_hessian_against_finite_differences(rng, form):
    A, B = _data(rng)
    E = RegressionEnergy(A, B)
    if form == "covariances":
        E = RegressionEnergy.from_covariances(E.input_covariance, E.cross_covariance, E.constant)
    X = rng.standard_normal((4, 4))
    h = 1e-5
    fd = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            Eij = np.zeros((4, 4))
            Eij[i, j] = h
            fd[i, j] = (E.value(X + Eij) - E.value(X - Eij)) / (2 * h)
    np.testing.assert_allclose(E.gradient(X), fd, rtol=1e-7, atol=1e-8)
    Z = rng.standard_normal((4, 4))
    fd_h = (E.gradient(X + h * Z) - E.gradient(X - h * Z)) / (2 * h)
    np.testing.assert_allclose(E.hessian(X, Z), fd_h, rtol=1e-8, atol=1e-9)
    # negative control: the transposed covariance is a different (wrong) gradient
    wrong = X @ E.input_covariance - E.cross_covariance.T
    assert np.max(np.abs(wrong - fd)) > 1e-3


def test_covariance_form_equals_data_form(rng):
    A, B = _data(rng, d=3, n=7)
    E = RegressionEnergy(A, B)
    C = RegressionEnergy.from_covariances(A @ A.T / 7, B @ A.T / 7, np.sum(B * B) / 14)
    X = rng.standard_normal((3, 3))
    assert C.value(X) == pytest.approx(E.value(X), rel=1e-12)
    np.testing.assert_allclose(C.gradient(X), E.gradient(X), rtol=1e-13, atol=1e-14)
    assert C.inputs is None and C.n_samples is None and C.d == 3


def test_whitened_inputs_give_saxe_form(rng):
    """With A A^T / n = I, E(X) = 1/2 |X - S|^2 + const, S = B A^T / n."""
    d, n = 4, 12
    Q, _ = np.linalg.qr(rng.standard_normal((n, d)))  # orthonormal columns
    A = np.sqrt(n) * Q.T
    np.testing.assert_allclose(A @ A.T / n, np.eye(d), atol=1e-13)
    B = rng.standard_normal((d, n))
    E = RegressionEnergy(A, B)
    S = B @ A.T / n
    offsets = [E.value(X) - 0.5 * np.sum((X - S) ** 2) for X in rng.standard_normal((5, d, d))]
    assert np.ptp(offsets) < 1e-12
    assert offsets[0] == pytest.approx(E.constant - 0.5 * np.sum(S * S), rel=1e-12)
    saxe = RegressionEnergy.from_covariances(np.eye(d), S)
    X = rng.standard_normal((d, d))
    assert saxe.value(X) == pytest.approx(0.5 * np.sum((X - S) ** 2) - 0.5 * np.sum(S * S))
    # negative control: non-whitened inputs do not have that form
    A2 = rng.standard_normal((d, n))
    E2 = RegressionEnergy(A2, B)
    S2 = B @ A2.T / n
    offsets2 = [E2.value(X) - 0.5 * np.sum((X - S2) ** 2) for X in rng.standard_normal((5, d, d))]
    assert np.ptp(offsets2) > 1e-3


def test_batch_gradient(rng):
    A, B = _data(rng, d=3, n=10)
    E = RegressionEnergy(A, B)
    X = rng.standard_normal((3, 3))
    np.testing.assert_allclose(E.batch_gradient(X, np.arange(10)), E.gradient(X), atol=1e-13)
    S = np.array([7, 2, 5])
    sub = RegressionEnergy(A[:, S], B[:, S])
    np.testing.assert_allclose(E.batch_gradient(X, S), sub.gradient(X), atol=1e-13)


def test_immutable_and_copies(rng):
    A, B = _data(rng, d=2, n=3)
    E = RegressionEnergy(A, B)
    A[0, 0] = 100.0
    assert E.inputs[0, 0] != 100.0
    with pytest.raises(AttributeError):
        E.inputs = A
    with pytest.raises(ValueError):
        E.input_covariance[0, 0] = 1.0


@pytest.mark.parametrize(
    ("inputs", "outputs", "exc", "word"),
    [
        (np.ones((3, 5)), np.ones((3, 4)), ValueError, "outputs"),
        (np.ones(5), np.ones((3, 5)), ValueError, "inputs"),
        (np.ones((3, 0)), np.ones((3, 0)), ValueError, "inputs"),
        (np.full((3, 5), np.nan), np.ones((3, 5)), ValueError, "inputs"),
        (np.ones((3, 5)), np.ones((3, 5)) * 1j, TypeError, "outputs"),
        ("abc", np.ones((3, 5)), TypeError, "inputs"),
    ],
)
def test_bad_data_names_argument(inputs, outputs, exc, word):
    with pytest.raises(exc, match=word):
        RegressionEnergy(inputs, outputs)


def test_bad_covariances():
    with pytest.raises(ValueError, match="symmetric"):
        RegressionEnergy.from_covariances(np.array([[1.0, 1.0], [0.0, 1.0]]), np.eye(2))
    with pytest.raises(ValueError, match="semidefinite"):
        RegressionEnergy.from_covariances(-np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="cross_covariance"):
        RegressionEnergy.from_covariances(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="constant"):
        RegressionEnergy.from_covariances(np.eye(2), np.eye(2), np.inf)
