r"""Loss functions E(X) on end-to-end matrices, with Euclidean gradient and Hessian.

Each energy is an immutable object with ``value(X)``, ``gradient(X)`` (the
Euclidean gradient :math:`E'(X)`, [G] eq. 3.5) and ``hessian(X, Z)`` (the
Euclidean Hessian applied to Z). All three accept a batch ``X`` of shape
(..., d, d); ``value`` then returns shape (...). :class:`QuadraticEnergy` and
:class:`RegressionEnergy` also act on rectangular end-to-end matrices of shape
(m, n) = (d_N, d_0), for networks of general widths: their ``shape`` is (m, n) and
their ``d`` is the int d when m = n and the tuple (m, n) otherwise (the convention of
:class:`dln_manifolds.pymanopt.EndToEndMatrices`). The formulas use only
elementwise products and sums, so they can also be differentiated by
autograd when ``X`` is an autograd box.

Upstairs, the lifted loss is :math:`E(\phi(W))` with gradient
:func:`dln_manifolds.lifted_gradient`.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._checks import as_array, as_matrix, check_count, check_positive, check_real_scalar

__all__ = [
    "energy_functions",
    "Energy",
    "QuadraticEnergy",
    "MatrixCompletionEnergy",
    "MatrixSensingEnergy",
    "completion_energy_2x2",
    "RegressionEnergy",
]


class Energy:
    """Base class: a smooth function of the end-to-end matrix."""

    d: int

    @property
    def shape(self) -> tuple[int, int]:
        """Shape (m, n) of the matrices X the energy acts on ((d, d) unless rectangular)."""
        d = self.d
        return tuple(d) if isinstance(d, tuple) else (d, d)

    def value(self, X):
        raise NotImplementedError

    def gradient(self, X):
        raise NotImplementedError

    def hessian(self, X, Z):
        raise NotImplementedError

    def __call__(self, X):
        return self.value(X)

    def _check(self, X, name: str = "X") -> np.ndarray:
        """Validate a real matrix, or a batch of them, of shape (..., m, n) (``self.shape``)."""
        if hasattr(X, "shape") and not isinstance(X, np.ndarray):
            return X  # an autodiff tracer (autograd, jax): differentiated, not validated
        return as_array(X, name, self.shape, real=True, batch=True)


def _size(shape: tuple[int, int]) -> int | tuple[int, int]:
    """The ``d`` of an energy on matrices of ``shape``: d when square, else (m, n)."""
    return shape[0] if shape[0] == shape[1] else tuple(shape)


def _real_matrix(value, name: str) -> np.ndarray:
    """A finite real float64 matrix of any shape (m, n), m, n >= 1."""
    arr = as_array(value, name, real=True, batch=True)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a matrix of shape (m, n), got shape {arr.shape}")
    return arr


def energy_functions(energy) -> tuple[Callable, Callable | None]:
    """Resolve an ``energy`` argument to ``(gradient, value)`` callables of X.

    Accepts an :class:`Energy` (or any object with a ``gradient(X)`` method; its
    ``value`` is returned if present) or a plain callable ``X -> E'(X)``, in
    which case ``value`` is None.

    Raises
    ------
    TypeError
        If ``energy`` is neither.
    """
    gradient = getattr(energy, "gradient", None)
    if callable(gradient):
        value = getattr(energy, "value", None)
        return gradient, value if callable(value) else None
    if callable(energy):
        return energy, None
    raise TypeError(
        "energy must be an Energy (with a gradient(X) method) or a callable returning E'(X), "
        f"got {type(energy).__name__}"
    )


@dataclass(frozen=True, eq=False)
class QuadraticEnergy(Energy):
    r""":math:`E(X) = \tfrac{c}{2} |X - T|_F^2`.

    With ``target = 0`` and ``c = 1`` this is :math:`\tfrac12\mathrm{tr}(X^TX)`,
    the energy of [G] section 14.3.

    Parameters
    ----------
    target : ndarray, shape (d, d) or (m, n)
        A rectangular target makes an energy on (m, n) matrices (networks of general
        widths, X of shape (d_N, d_0)).
    scale : float
        The constant c > 0.
    """

    target: np.ndarray
    scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "target", _real_matrix(self.target, "target"))
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))

    @property
    def d(self) -> int | tuple[int, int]:
        return _size(self.target.shape)

    @property
    def shape(self) -> tuple[int, int]:
        return self.target.shape

    def value(self, X):
        R = self._check(X) - self.target
        return 0.5 * self.scale * (R * R).sum(axis=(-2, -1))

    def gradient(self, X):
        return self.scale * (self._check(X) - self.target)

    def hessian(self, X, Z):
        self._check(X)
        return self.scale * self._check(Z, "Z")


@dataclass(frozen=True, eq=False)
class MatrixCompletionEnergy(Energy):
    r""":math:`E(X) = \tfrac12 \sum_{(i,j)\in\Omega} (X_{ij} - Y_{ij})^2` ([G] eq. 14.1).

    Parameters
    ----------
    mask : ndarray of bool, shape (d, d)
        Observed entries :math:`\Omega`.
    observed : ndarray, shape (d, d)
        Values :math:`Y` (entries outside the mask are ignored).
    """

    mask: np.ndarray
    observed: np.ndarray

    def __post_init__(self):
        mask = np.asarray(self.mask)
        if mask.dtype != np.bool_:  # 0/1 numbers are accepted as a mask
            mask = as_array(mask, "mask", batch=True, real=True)
            if not np.all((mask == 0) | (mask == 1)):
                raise ValueError("mask must be a bool array (or of 0 and 1 only)")
            mask = mask.astype(bool)
        observed = as_matrix(self.observed, "observed", real=True)
        if mask.shape != observed.shape:
            raise ValueError(f"mask has shape {mask.shape} but observed has {observed.shape}")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "observed", np.where(mask, observed, 0.0))

    @property
    def d(self) -> int:
        return self.mask.shape[0]

    def value(self, X):
        R = (self._check(X) - self.observed) * self.mask
        return 0.5 * (R * R).sum(axis=(-2, -1))

    def gradient(self, X):
        return (self._check(X) - self.observed) * self.mask

    def hessian(self, X, Z):
        self._check(X)
        return self._check(Z, "Z") * self.mask


def completion_energy_2x2() -> MatrixCompletionEnergy:
    r"""The energy of [G] eq. 14.1: :math:`\tfrac12((X_{11}-1)^2 + (X_{22}-1)^2)`.

    Its zero set is :math:`\{X_{11} = X_{22} = 1\}` (eq. 14.2); the rank-one
    part is eq. 14.3 and the point of eq. 14.4 is ``[[1, 1], [1, 1]]``.
    """
    return MatrixCompletionEnergy(mask=np.eye(2, dtype=bool), observed=np.eye(2))


@dataclass(frozen=True, eq=False)
class MatrixSensingEnergy(Energy):
    r""":math:`E(X) = \tfrac{1}{2m} \sum_{i=1}^m (\langle A_i, X\rangle - y_i)^2`.

    Parameters
    ----------
    sensing : ndarray, shape (m, d, d)
        Measurement matrices :math:`A_i`.
    measurements : ndarray, shape (m,)
        Values :math:`y_i`.
    """

    sensing: np.ndarray
    measurements: np.ndarray

    def __post_init__(self):
        A = as_array(self.sensing, "sensing", real=True, batch=True)
        if A.ndim != 3 or A.shape[1] != A.shape[2]:
            raise ValueError(f"sensing must have shape (m, d, d), got {A.shape}")
        y = as_array(self.measurements, "measurements", (A.shape[0],), real=True)
        object.__setattr__(self, "sensing", A)
        object.__setattr__(self, "measurements", y)

    @classmethod
    def random(cls, target, n_measurements: int, seed=None) -> MatrixSensingEnergy:
        """Gaussian measurements of ``target`` (entries N(0, 1))."""
        target = as_matrix(target, "target", real=True)
        n_measurements = check_count(n_measurements, "n_measurements")
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((n_measurements,) + target.shape)
        return cls(A, np.einsum("mij,ij->m", A, target))

    @property
    def d(self) -> int:
        return self.sensing.shape[1]

    def _residual(self, X):
        return (X[..., None, :, :] * self.sensing).sum(axis=(-2, -1)) - self.measurements

    def value(self, X):
        r = self._residual(self._check(X))
        return 0.5 * (r * r).sum(axis=-1) / self.sensing.shape[0]

    def gradient(self, X):
        r = self._residual(self._check(X))
        return np.einsum("...m,mij->...ij", r, self.sensing) / self.sensing.shape[0]

    def hessian(self, X, Z):
        self._check(X)
        Z = self._check(Z, "Z")
        return self.gradient(Z) - self.gradient(np.zeros_like(Z))


class RegressionEnergy(Energy):
    r"""Least squares on data: :math:`E(X) = \tfrac{1}{2n} |X A - B|_F^2`.

    The columns of ``inputs`` :math:`A` (shape (d, n)) are the n input vectors and
    those of ``outputs`` :math:`B` the targets, so the network maps :math:`a_i`
    to :math:`X a_i`. In terms of the covariances
    :math:`\Sigma_{xx} = AA^T/n`, :math:`\Sigma_{yx} = BA^T/n` and
    :math:`c = |B|_F^2/(2n)`,

    .. math::

        E(X) = \tfrac12\mathrm{tr}(X\Sigma_{xx}X^T) - \mathrm{tr}(X\Sigma_{yx}^T) + c,
        \qquad E'(X) = X\Sigma_{xx} - \Sigma_{yx},\qquad E''(X)[Z] = Z\Sigma_{xx}.

    With whitened inputs (:math:`\Sigma_{xx} = I`) this is the loss of Saxe,
    McClelland and Ganguli (2014), :math:`\tfrac12|X - \Sigma_{yx}|_F^2` plus the
    constant :math:`c - \tfrac12|\Sigma_{yx}|_F^2`; build it from the covariances
    alone with :meth:`from_covariances`.

    Parameters
    ----------
    inputs : array_like, shape (d_0, n)
        Input vectors as columns.
    outputs : array_like, shape (d_N, n)
        Target vectors as columns (same n). X has shape (d_N, d_0), rectangular when
        the widths differ (a network of general widths); ``shape`` is (d_N, d_0).

    Notes
    -----
    ``gradient`` and ``hessian`` use the covariances (cost O(d^3), independent
    of n); ``value`` uses the data when they are stored (exact near zero loss,
    cost O(d^2 n)) and the covariance form otherwise. Immutable: the arrays are
    read-only copies.
    """

    def __init__(self, inputs, outputs):
        A = _data_matrix(inputs, "inputs")
        B = _data_matrix(outputs, "outputs")
        if B.shape[1] != A.shape[1]:
            raise ValueError(
                f"outputs must have as many columns (samples) as inputs ({A.shape[1]}), "
                f"got shape {B.shape}"
            )
        n = A.shape[1]
        self._set(
            A,
            B,
            A @ A.T / n,
            B @ A.T / n,
            float(np.sum(B * B)) / (2 * n),
            n,
        )

    def _set(self, A, B, sxx, syx, const, n):
        for arr in (A, B, sxx, syx):
            if arr is not None:
                arr.flags.writeable = False
        object.__setattr__(self, "inputs", A)
        object.__setattr__(self, "outputs", B)
        object.__setattr__(self, "input_covariance", sxx)
        object.__setattr__(self, "cross_covariance", syx)
        object.__setattr__(self, "constant", const)
        object.__setattr__(self, "n_samples", n)

    def __setattr__(self, name, value):
        raise AttributeError(f"RegressionEnergy is immutable (cannot set {name!r})")

    @classmethod
    def from_covariances(
        cls, input_covariance, cross_covariance, constant: float = 0.0
    ) -> RegressionEnergy:
        r"""The energy :math:`\tfrac12\mathrm{tr}(X\Sigma_{xx}X^T) - \mathrm{tr}(X\Sigma_{yx}^T)+c`.

        Parameters
        ----------
        input_covariance : array_like, shape (d_0, d_0)
            :math:`\Sigma_{xx}`, symmetric positive semidefinite. The identity
            gives Saxe et al.'s whitened form
            :math:`\tfrac12|X - \Sigma_{yx}|^2 + c - \tfrac12|\Sigma_{yx}|^2`.
        cross_covariance : array_like, shape (d_N, d_0)
            :math:`\Sigma_{yx}`; rectangular for a network of general widths.
        constant : float
            c (e.g. :math:`|B|^2/(2n)` to match the data form exactly).

        Returns
        -------
        RegressionEnergy
            With ``inputs = outputs = None`` and ``n_samples = None``.
        """
        sxx = as_matrix(input_covariance, "input_covariance").copy()
        syx = as_array(cross_covariance, "cross_covariance", real=False, batch=True).copy()
        if np.iscomplexobj(sxx) or np.iscomplexobj(syx):
            raise TypeError("input_covariance and cross_covariance must be real")
        if syx.ndim != 2 or syx.shape[1] != sxx.shape[0]:
            raise ValueError(
                f"cross_covariance must have shape (d_N, {sxx.shape[0]}) (as many columns "
                f"as input_covariance, shape {sxx.shape}), got {syx.shape}"
            )
        scale = max(1.0, float(np.max(np.abs(sxx))))
        if np.max(np.abs(sxx - sxx.T)) > 1e-12 * scale:
            raise ValueError("input_covariance must be symmetric")
        if np.min(np.linalg.eigvalsh(sxx)) < -1e-12 * scale * sxx.shape[0]:
            raise ValueError("input_covariance must be positive semidefinite")
        constant = check_real_scalar(constant, "constant")
        obj = cls.__new__(cls)
        obj._set(None, None, sxx, syx, constant, None)
        return obj

    @property
    def d(self) -> int | tuple[int, int]:
        return _size(self.cross_covariance.shape)

    @property
    def shape(self) -> tuple[int, int]:
        return self.cross_covariance.shape

    def value(self, X):
        X = self._check(X)
        if self.inputs is not None:
            R = X @ self.inputs - self.outputs
            return 0.5 * (R * R).sum(axis=(-2, -1)) / self.n_samples
        quad = ((X @ self.input_covariance) * X).sum(axis=(-2, -1))
        return 0.5 * quad - (X * self.cross_covariance).sum(axis=(-2, -1)) + self.constant

    def gradient(self, X):
        return self._check(X) @ self.input_covariance - self.cross_covariance

    def hessian(self, X, Z):
        self._check(X)
        return self._check(Z, "Z") @ self.input_covariance

    def batch_gradient(self, X, columns):
        r"""Gradient of the minibatch loss :math:`\tfrac{1}{2b}|X A_S - B_S|^2`, S = ``columns``.

        Parameters
        ----------
        X : ndarray, shape (d_N, d_0)
        columns : ndarray of int, shape (b,)
            Sample indices (not validated: the training loop calls this).

        Returns
        -------
        ndarray, shape (d_N, d_0)
            :math:`(X A_S - B_S) A_S^T / b`.
        """
        A = self.inputs[:, columns]
        R = X @ A - self.outputs[:, columns]
        return R @ A.T / len(columns)


def _data_matrix(value, name: str) -> np.ndarray:
    """A finite real float64 matrix of shape (d, n), n >= 1, copied."""
    arr = as_array(value, name, real=True, batch=True)  # any non-empty real array
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must have shape (d, n) (samples as columns), got shape {arr.shape}"
        )
    return arr.copy()
