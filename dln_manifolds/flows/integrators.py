r"""Time integration of flows on manifolds embedded in Euclidean space.

The scheme is the *standard projection method* (Hairer, Lubich, Wanner,
Geometric Numerical Integration, section IV.4): one step of an explicit
Runge-Kutta method in the ambient space, followed by a smooth map ``restore``
that sends nearby points back onto the manifold and fixes its points. Because
the restore map fixes the manifold and is smooth, a method of order p stays of
order p, and the iterates lie on the manifold to rounding after any number of
steps (for instance: recompute the last layer so that the end-to-end matrix is
exactly X on the fiber, or the polar construction on the balanced manifold).

The velocity field must be defined (and smooth) in a neighbourhood of the
manifold, which holds for every flow in this package: the fiber projection,
the lifted gradient and the depth operator are all defined off the manifold.

References
----------
- [HLW] E. Hairer, C. Lubich and G. Wanner, *Geometric Numerical Integration*, Springer
  (2006).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import blas
from tqdm.auto import tqdm

from .._checks import as_array, check_count, check_nonnegative, check_positive

__all__ = [
    "FlowResult",
    "integrate_flow",
    "TABLEAUS",
    "rkc_coefficients",
    "rkc_stages",
    "rkc_stability_bound",
    "ERKC_DAMPING",
]


@dataclass(frozen=True)
class _Tableau:
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    b_low: tuple[float, ...] | None = None  # embedded lower-order weights


TABLEAUS: dict[str, _Tableau] = {
    "euler": _Tableau(a=((),), b=(1.0,), c=(0.0,), order=1),
    "heun": _Tableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2),
    "rk4": _Tableau(
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        c=(0.0, 0.5, 0.5, 1.0),
        order=4,
    ),
    # Dormand-Prince 5(4), used for adaptive steps; the last row of a is b (FSAL).
    "dopri5": _Tableau(
        a=(
            (),
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
        c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        order=5,
        b_low=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    ),
}


@dataclass
class FlowResult:
    """Output of :func:`integrate_flow`.

    Attributes
    ----------
    times : ndarray, shape (n,)
        Saved times, starting at 0 and ending at ``t_final``.
    states : ndarray, shape (n, ...)
        Saved states (copies).
    monitors : dict of str to ndarray
        Each monitored quantity at the saved times, stacked along axis 0.
    n_steps : int
        Accepted steps.
    n_rejected : int
        Rejected steps (adaptive mode only).
    """

    times: np.ndarray
    states: np.ndarray
    monitors: dict[str, np.ndarray] = field(default_factory=dict)
    n_steps: int = 0
    n_rejected: int = 0

    @property
    def final(self) -> np.ndarray:
        """The state at ``t_final``."""
        return self.states[-1]

    def save(self, path) -> None:
        """Write the result to an ``.npz`` file (no pickle: it loads with ``allow_pickle=False``).

        Every array field and monitor is stored bit for bit; scalar fields
        (int, float, bool, str, None) go into a JSON header. Subclasses with
        more fields (e.g. :class:`dln_manifolds.training.TrainingResult`) are
        saved the same way.

        Parameters
        ----------
        path : str or os.PathLike
            File name, used as given (no ``.npz`` suffix is added).

        Raises
        ------
        TypeError
            If a field or monitor holds something other than a numeric array or
            a plain scalar (e.g. objects that would need pickle).
        """
        save_result(self, path)

    @classmethod
    def load(cls, path) -> FlowResult:
        """Read a result written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        FlowResult
            An instance of the class that saved it (``cls`` or a subclass of it).

        Raises
        ------
        ValueError
            If the file was not written by :meth:`save`, or by a class that is
            not ``cls`` or one of its (imported) subclasses.
        """
        return load_result(cls, path)


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a and b are the same memory with the same layout (a row of the stage buffer)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def _rk_step(velocity, t, y, h, tab: _Tableau, k1=None, work=None):
    """One explicit Runge-Kutta step; ``k1``: the first stage if known (FSAL, rejected step).

    ``work``: an array of shape (stages, y.size) to hold the stages (reused across steps: no
    fresh pages per step); ``k1`` may be its row 0, which is then not copied.

    Returns ``(y_new, err, K, y_before_last)``: ``err`` is the embedded error estimate (or
    None), ``K`` the stages (``K[0]`` the velocity at y, ``K[-1]`` the velocity at ``y_new``
    for dopri5, whose last row of ``a`` is ``b``) and ``y_before_last`` the argument of the
    second-to-last stage (for dopri5 also at time t + h: Hairer's stiffness detection
    compares the velocities at the two points).
    """
    n = len(tab.c)
    fsal = tab.b_low is not None and tuple(tab.a[-1]) == tuple(tab.b)
    K = None  # stages stacked along axis 0: one pass over memory per combination
    flat = None
    yi = y_prev = y
    for i, ci in enumerate(tab.c):
        if i:
            y_prev = yi
            # (h a_i) @ K[:i] as one matrix-vector product over the flattened stages
            yi = (np.asarray(tab.a[i]) * h) @ flat[:i]
            yi = yi.reshape(y.shape)
            yi += y
        if i == 0 and k1 is not None:
            k = np.asarray(k1)
        else:
            k = np.asarray(velocity(t + ci * h, yi))
        if K is None:
            dtype = np.result_type(k, y)
            if work is not None and work.dtype == dtype and work.shape == (n, k.size):
                K = work.reshape(n, *k.shape)
            else:
                K = np.empty((n, *k.shape), dtype=dtype)
            flat = K.reshape(n, -1)
        if not (i == 0 and _same_view(k, K[0])):
            K[i] = k
    if fsal:  # the last stage was evaluated at y_new itself
        y_new = yi
    else:
        y_new = ((np.asarray(tab.b) * h) @ flat).reshape(y.shape)
        y_new += y
    err = None
    if tab.b_low is not None:
        err = ((h * (np.asarray(tab.b) - np.asarray(tab.b_low))) @ flat).reshape(y.shape)
    return y_new, err, K, y_prev


# ---------------------------------------------------------------------------------------------
# Runge-Kutta-Chebyshev (RKC, second order; Sommeijer, Shampine & Verwer 1997)
# ---------------------------------------------------------------------------------------------

_RKC_DAMPING = 2.0 / 13.0
_RKC_MAX_STAGES = 400
_RKC_RHO_EVERY = 5  # accepted steps between spectral radius estimates


def rkc_coefficients(s: int, *, damping: float = _RKC_DAMPING) -> tuple[np.ndarray, ...]:
    r"""Coefficients of the s-stage damped second-order Runge-Kutta-Chebyshev method.

    With :math:`w_0 = 1 + \epsilon/s^2` (:math:`\epsilon` = ``damping``, 2/13 by default),
    :math:`w_1 = T_s'(w_0)/T_s''(w_0)` and :math:`b_j = T_j''(w_0)/T_j'(w_0)^2`
    (:math:`b_0 = b_1 = b_2`), the stages are

    .. math::

        Y_1 = y + \tilde\mu_1 h F_0,\qquad
        Y_j = (1-\mu_j-\nu_j) y + \mu_j Y_{j-1} + \nu_j Y_{j-2}
              + \tilde\mu_j h F(Y_{j-1}) + \tilde\gamma_j h F_0,

    :math:`\mu_j = 2b_jw_0/b_{j-1}`, :math:`\nu_j = -b_j/b_{j-2}`,
    :math:`\tilde\mu_j = 2b_jw_1/b_{j-1}`, :math:`\tilde\gamma_j = -(1-b_{j-1}T_{j-1}(w_0))
    \tilde\mu_j`, :math:`\tilde\mu_1 = b_1w_1`. The stability polynomial is bounded by 1 on
    :math:`[-\beta_s, 0]`, :math:`\beta_s \approx 0.653 s^2`.

    Returns
    -------
    mu, nu, mu_t, gamma_t, c : ndarray, shape (s + 1,)
        Index j = 1..s (entries 0, and 1 for mu/nu/gamma_t, unused); c_j the stage times.
    """
    if s < 2:
        raise ValueError(f"RKC needs s >= 2 stages, got {s}")
    w0 = 1.0 + damping / s**2
    T = np.zeros(s + 1)
    dT = np.zeros(s + 1)
    ddT = np.zeros(s + 1)
    T[0], T[1], dT[1] = 1.0, w0, 1.0
    for j in range(2, s + 1):
        T[j] = 2 * w0 * T[j - 1] - T[j - 2]
        dT[j] = 2 * T[j - 1] + 2 * w0 * dT[j - 1] - dT[j - 2]
        ddT[j] = 4 * dT[j - 1] + 2 * w0 * ddT[j - 1] - ddT[j - 2]
    w1 = dT[s] / ddT[s]
    b = np.zeros(s + 1)
    b[2:] = ddT[2:] / dT[2:] ** 2
    b[0] = b[1] = b[2]
    a = 1.0 - b * T
    mu, nu, mu_t, gamma_t, c = (np.zeros(s + 1) for _ in range(5))
    mu_t[1] = b[1] * w1
    c[1] = mu_t[1]
    for j in range(2, s + 1):
        mu[j] = 2 * b[j] * w0 / b[j - 1]
        nu[j] = -b[j] / b[j - 2]
        mu_t[j] = 2 * b[j] * w1 / b[j - 1]
        gamma_t[j] = -a[j - 1] * mu_t[j]
        c[j] = mu[j] * c[j - 1] + nu[j] * c[j - 2] + mu_t[j] + gamma_t[j]
    return mu, nu, mu_t, gamma_t, c


def rkc_stages(h_rho: float) -> int:
    """Fewest RKC stages s (>= 2) with ``h * rho < (s^2 - 1) / 1.54``, inside the stability
    interval (about ``0.653 s^2``) for a step h and spectral radius rho."""
    return max(2, 1 + int(np.sqrt(1.0 + 1.54 * h_rho)))


_AXPY = {np.dtype(np.float64): blas.daxpy, np.dtype(np.complex128): blas.zaxpy}


def _axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += a * x`` in place: one pass over memory and no temporary (BLAS axpy) for
    C-contiguous x, y of the same float64/complex128 dtype, else numpy."""
    f = _AXPY.get(y.dtype)
    if f is not None and x.dtype == y.dtype and x.flags.c_contiguous and y.flags.c_contiguous:
        f(x.reshape(-1), y.reshape(-1), a=a)
    else:
        y += a * x


def _rkc_step(velocity, t, y, h, f0, s, damping=_RKC_DAMPING):
    mu, nu, mu_t, gamma_t, c = rkc_coefficients(s, damping=damping)
    dtype = np.result_type(y, f0)
    y_prev2 = y
    y_prev = np.array(y, dtype=dtype, order="C")
    _axpy(mu_t[1] * h, f0, y_prev)
    for j in range(2, s + 1):
        fj = np.asarray(velocity(t + c[j - 1] * h, y_prev))
        # Y_j = (1 - mu - nu) y + mu Y_{j-1} + nu Y_{j-2} + mu~ h F_{j-1} + gamma~ h F_0, in
        # a fresh array (a velocity may keep its argument) by axpy: five passes, no temporaries
        y_j = np.multiply(y_prev, mu[j], dtype=np.result_type(dtype, fj))
        _axpy(1.0 - mu[j] - nu[j], y, y_j)
        _axpy(nu[j], y_prev2, y_j)
        _axpy(mu_t[j] * h, fj, y_j)
        _axpy(gamma_t[j] * h, f0, y_j)
        y_prev2, y_prev = y_prev, y_j
    return y_prev


#: dopri5-erkc: dopri5 hands over to the stiff solver after ``_STIFF_STREAK`` consecutive
#: accepted steps whose stiffness estimate :math:`h\,|\Delta k|/|\Delta y|` (Hairer & Wanner,
#: *Solving ODEs II*, IV.2: the difference of the velocities at the two stages of dopri5 that
#: sit at t + h, over the difference of their arguments) exceeds ``_STIFF_H_RHO``: the step is
#: then held by stability (the real stability boundary of dopri5 is 3.31), not by accuracy.
_STIFF_H_RHO = 3.0
_STIFF_STREAK = 5
#: ... and takes over again after ``_NONSTIFF_STREAK`` consecutive steps of the stiff solver
#: with :math:`h\rho` below ``_NONSTIFF_H_RHO`` (its accuracy then holds the step inside the
#: stability interval of dopri5, whose fifth order is worth more there); after such a switch
#: dopri5 keeps at least ``_DWELL`` steps (hysteresis: without it the two alternate).
_NONSTIFF_H_RHO = 3.0
_NONSTIFF_STREAK = 2
_DWELL = 10

#: damping of the RKC steps that the ``"erkc"`` method extrapolates: with it, the extrapolated
#: stability polynomial stays bounded by 1 on the whole interval of the s-stage method
#: (with the default 2/13 it reaches 1.09; tests/test_flow_solvers.py checks both).
ERKC_DAMPING = 1.0


def rkc_stability_bound(s: int, *, damping: float = _RKC_DAMPING) -> float:
    r"""Length :math:`\beta_s` of the real stability interval :math:`[-\beta_s, 0]` of s-stage RKC.

    The stability polynomial is :math:`a_s + b_s T_s(w_0 + w_1 z)`, bounded by 1 while
    :math:`w_0 + w_1 z \ge -1`: :math:`\beta_s = (1 + w_0)/w_1`.

    Raises
    ------
    ValueError
        If ``s < 2`` or ``damping`` is not positive and finite.
    """
    if int(s) != s or s < 2:
        raise ValueError(f"RKC needs s >= 2 stages, got s={s}")
    s = int(s)
    damping = check_positive(damping, "damping")
    w0 = 1.0 + damping / s**2
    T = [1.0, w0]
    dT = [0.0, 1.0]
    ddT = [0.0, 0.0]
    for _ in range(2, s + 1):
        T.append(2 * w0 * T[-1] - T[-2])
        dT.append(2 * T[-2] + 2 * w0 * dT[-1] - dT[-2])
        ddT.append(4 * dT[-2] + 2 * w0 * ddT[-1] - ddT[-2])
    return (1.0 + w0) * ddT[s] / dT[s]


def _erkc_stages(h_rho: float) -> int:
    """Fewest stages s (>= 2) whose extrapolated RKC step is stable for ``h * rho``."""
    s = max(2, int(np.sqrt(max(h_rho, 0.0) / 0.6)))
    while rkc_stability_bound(s, damping=ERKC_DAMPING) < h_rho:
        s += 1
    while s > 2 and rkc_stability_bound(s - 1, damping=ERKC_DAMPING) >= h_rho:
        s -= 1
    return s


def _erkc_step(velocity, t, y, h, f0, s):
    r"""One step of extrapolated RKC: third order, with an error estimate.

    One s-stage RKC step of size h (:math:`y_h`) and two of size h/2 (:math:`y_{h/2}`),
    all with damping ``ERKC_DAMPING``, combined by Richardson extrapolation of the
    second-order method: :math:`y_1 = y_{h/2} + (y_{h/2} - y_h)/3` (its h^3 error terms
    cancel; third order), and ``err`` :math:`= (y_{h/2} - y_h)/3`, the estimate of the
    error of :math:`y_{h/2}` (pessimistic for :math:`y_1`, as dopri5's). Stability
    polynomial :math:`(4R_s(z/2)^2 - R_s(z))/3`, bounded by 1 on :math:`[-\beta_s, 0]`
    (:func:`rkc_stability_bound`). Costs 3s - 2 evaluations of the velocity besides
    ``f0`` (the velocity at y).

    Returns
    -------
    y1, err : ndarray
    """
    coarse = _rkc_step(velocity, t, y, h, f0, s, ERKC_DAMPING)
    half = _rkc_step(velocity, t, y, 0.5 * h, f0, s, ERKC_DAMPING)
    f_half = np.asarray(velocity(t + 0.5 * h, half))
    fine = _rkc_step(velocity, t + 0.5 * h, half, 0.5 * h, f_half, s, ERKC_DAMPING)
    err = (fine - coarse) / 3.0
    return fine + err, err


#: What a velocity may raise at the stage of a trial step that has left the region where it
#: is defined (a stage that overflowed, an SVD that did not converge, an input check): the
#: step is rejected and shrunk, at most ``_MAX_FAILED_TRIALS`` times in a row.
_TRIAL_ERRORS = (ArithmeticError, ValueError)  # FloatingPointError, OverflowError, LinAlgError
_MAX_FAILED_TRIALS = 12
_PI_BETA = 0.04


def _spectral_radius(velocity, t, y, f0, direction, max_iter: int = 30):
    """Nonlinear power method for the spectral radius of dv/dy at y (Sommeijer et al. 1997).

    Returns ``(rho, direction, n_evaluations)``; ``rho`` carries a 1.2 safety factor.
    """
    ynorm = float(np.linalg.norm(y))
    eps = np.sqrt(np.finfo(float).eps)
    dy = eps * ynorm if ynorm > 0 else eps
    v = np.asarray(direction, dtype=float)
    vnorm = float(np.linalg.norm(v))
    if not np.isfinite(vnorm) or vnorm == 0.0:
        v = np.random.default_rng(0).standard_normal(y.shape)
        vnorm = float(np.linalg.norm(v))
    v = v * (dy / vnorm)
    sigma = 0.0
    n = 0
    for it in range(max_iter):
        dv = np.asarray(velocity(t, y + v)) - f0
        n += 1
        dvnorm = float(np.linalg.norm(dv))
        sigma_old, sigma = sigma, dvnorm / dy
        if not np.isfinite(sigma):
            raise FloatingPointError(f"the velocity is not finite near the state at t={t:.6g}")
        if dvnorm == 0.0:
            break
        v = dv * (dy / dvnorm)
        if it >= 2 and abs(sigma - sigma_old) <= 0.01 * sigma:
            break
    return 1.2 * sigma, v, n


def integrate_flow(
    velocity: Callable[[float, np.ndarray], np.ndarray],
    y0,
    t_final: float,
    *,
    dt: float | None = None,
    method: str = "rk4",
    restore: Callable[[np.ndarray], np.ndarray] | None = None,
    adaptive: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    stop_when: Callable[[float, np.ndarray], bool] | None = None,
    error_scale: str = "entrywise",
    max_steps: int = 1_000_000,
    save_every: int = 1,
    save_as: Callable[[np.ndarray], np.ndarray] | None = None,
    monitors: Mapping[str, Callable[[float, np.ndarray], object]] | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> FlowResult:
    r"""Integrate :math:`\dot y = v(t, y)` from 0 to ``t_final`` by a projected Runge-Kutta method.

    Parameters
    ----------
    velocity : callable ``(t, y) -> ndarray``
        Velocity field, defined in a neighbourhood of the manifold.
    y0 : array_like
        Initial state (any shape); never modified.
    t_final : float
        Final time, > 0.
    dt : float, optional
        Step size (fixed mode) or initial step size (adaptive mode). Default
        ``t_final / 100``. In fixed mode the last step is shortened to land on
        ``t_final``.
    method : {"euler", "heun", "rk4", "dopri5", "rkc", "erkc", "dopri5-erkc", "dopri5-rkc"}
        ``"euler"``, ``"heun"``, ``"rk4"``, ``"dopri5"``: explicit Runge-Kutta tableaus
        (:data:`TABLEAUS`). Adaptive mode with a tableau requires ``"dopri5"`` (the default
        switches to it when ``adaptive=True``); its last stage is the first stage of the
        next step (FSAL), and a rejected step reuses its first stage, so an accepted step
        costs 6 velocity evaluations. ``"rkc"``: the damped second-order
        Runge-Kutta-Chebyshev method (:func:`rkc_coefficients`) for stiff flows whose
        Jacobian has (nearly) real negative eigenvalues, such as gradient flows near a
        minimum: s stages are stable for :math:`h\rho \lesssim 0.65 s^2` (:math:`\rho` the
        spectral radius of the Jacobian, estimated by a nonlinear power method every 5
        steps and after each rejection), so the cost per unit time grows like
        :math:`\sqrt{\rho}` instead of :math:`\rho`. Its error estimate
        :math:`\tfrac{1}{15}(12(y_n - y_{n+1}) + 6h(F_n + F_{n+1}))` controls the step in
        adaptive mode; in fixed mode it only picks the stages. ``"erkc"``: Richardson
        extrapolation of RKC (one step of h and two of h/2 with the same s stages, damping
        :data:`ERKC_DAMPING`): third order, stable on the same interval
        (:func:`rkc_stability_bound`), 3s - 1 evaluations per step; the difference of the
        two RKC solutions, an estimate of the error of the second-order one, controls the
        step (pessimistic for the third-order solution it keeps, like dopri5's).
        ``"dopri5-erkc"`` (adaptive only): dopri5 while its step is held by accuracy, and
        erkc where it is held by stability (detected for free from two dopri5 stages,
        Hairer & Wanner's test, with hysteresis both ways); on a flow that is not stiff it
        is dopri5 step for step. For gradient flows that turn stiff near their minimum
        (docs/performance.rst, "Flow solvers"). ``"dopri5-rkc"``: the same switch with
        ``"rkc"`` as the stiff solver (s evaluations per step instead of 3s - 1, second order).
    restore : callable ``y -> y``, optional
        Smooth map onto the manifold that fixes its points, applied after each
        step (standard projection method). ``None`` for flows in flat space. A restore
        that returns its argument itself (``restore(y) is y``) lets the next step reuse the
        velocity at y (dopri5, rkc).
    adaptive : bool
        Error-controlled step size (mixed tolerance ``atol + rtol |y|`` in the max norm),
        with the embedded 4th-order solution of dopri5 or the estimate of rkc; PI control of
        the step (Gustafsson; Hairer, Norsett & Wanner I, II.4), no growth right after a
        rejection. A trial step whose stages overflow, or at one of whose stages the velocity
        raises ArithmeticError or ValueError (a NaN/Inf check of an energy, an SVD that did
        not converge), is rejected and shrunk five-fold like one whose error is too large;
        after 12 such failures in a row the error says so. In fixed mode it is an error.
    rtol, atol : float
        Tolerances of the adaptive mode (>= 0, not both 0).
    error_scale : {"entrywise", "norm"}
        Adaptive mode: the error of entry i is compared with ``atol + rtol |y_i|``
        (``"entrywise"``) or with ``atol + rtol max_j |y_j|`` (``"norm"``: relative to the size of
        the whole state, for a path error relative to ``|y|``; entries near 0, such as the
        off-diagonal entries of a start ``c I``, then need no absolute tolerance). ``"norm"`` is
        an absolute tolerance for the small entries: where they decide the path later (the
        small singular values of a gradient flow from a small start, which escape one after
        the other) it is far cheaper and far off the path (docs/performance.rst).
    stop_when : callable ``(t, y) -> bool``, optional
        Checked after every accepted step (after ``restore``); when it returns True the
        integration stops there and that state is the last one saved, so
        ``result.times[-1]`` is the stopping time (``< t_final`` when it fired).
    max_steps : int
        Safety bound on the number of attempted steps.
    save_every : int
        Save every k-th accepted step (the final state is always saved).
    save_as : callable ``y -> ndarray``, optional
        What is stored for a saved state (default: a copy of y); for instance the
        end-to-end matrix of a stack of layers.
    monitors : mapping of name to callable ``(t, y) -> array_like``, optional
        Quantities recorded at every saved state.
    progress : bool
        Show a tqdm progress bar over simulated time.
    desc : str, optional
        Progress bar label.

    Returns
    -------
    FlowResult

    Raises
    ------
    RuntimeError
        More than ``max_steps`` attempted steps.
    FloatingPointError
        A step could not be taken: in fixed mode its stages overflowed or the velocity raised
        on one of them (the velocity's exception is the ``__cause__``); in adaptive mode the
        same happened to 12 trial steps in a row; or ``restore`` produced NaN or Inf.
    """
    t_final = check_positive(t_final, "t_final")
    dt = None if dt is None else check_positive(dt, "dt")
    save_every = check_count(save_every, "save_every")
    y0 = as_array(y0, "y0", batch=True, real=False)
    if adaptive and method == "rk4":
        method = "dopri5"
    stabilized = ("rkc", "erkc", "dopri5-rkc", "dopri5-erkc")
    if method not in TABLEAUS and method not in stabilized:
        raise ValueError(
            f"method must be one of {sorted([*TABLEAUS, *stabilized])}, got {method!r}"
        )
    hybrid = method.startswith("dopri5-")
    if hybrid and not adaptive:
        raise ValueError(f"method={method!r} switches on error-controlled steps: adaptive=True")
    tab = TABLEAUS["dopri5"] if hybrid else TABLEAUS.get(method)
    if adaptive and tab is not None and tab.b_low is None:
        raise ValueError(
            f"adaptive stepping needs an embedded method such as 'dopri5', not {method!r}"
        )
    h = t_final / 100 if dt is None else float(dt)
    if not np.isfinite(h) or h <= 0:
        raise ValueError(f"dt must be positive and finite, got {dt}")
    rtol = check_nonnegative(rtol, "rtol")
    atol = check_nonnegative(atol, "atol")
    if adaptive and rtol == 0 and atol == 0:
        raise ValueError("rtol and atol must not both be 0")
    if error_scale not in ("entrywise", "norm"):
        raise ValueError(f"error_scale must be 'entrywise' or 'norm', got {error_scale!r}")
    if stop_when is not None and not callable(stop_when):
        raise TypeError(f"stop_when must be callable (t, y) -> bool, got {type(stop_when)}")
    if int(save_every) < 1:
        raise ValueError(f"save_every must be >= 1, got {save_every}")
    if save_as is None:
        save_as = np.copy
    elif not callable(save_as):
        raise TypeError(f"save_as must be callable y -> ndarray, got {type(save_as)}")
    monitors = dict(monitors or {})

    y = np.array(y0, copy=True)
    if not np.all(np.isfinite(y)):
        raise ValueError("y0 contains NaN or Inf entries")
    times, states = [0.0], [np.array(save_as(y), copy=True)]
    records = {name: [np.asarray(f(0.0, y))] for name, f in monitors.items()}

    t, n_steps, n_rejected, attempts, failures = 0.0, 0, 0, 0, 0
    err_prev, rejected_last = None, False  # step-size control: last accepted error, rejection
    f0 = None  # velocity at (t, y) when known (FSAL, rejected steps, rkc)
    work = None  # the stages of the Runge-Kutta tableau, one buffer for the run
    rho, rho_dir, rho_age = None, None, 0  # rkc: spectral radius, its direction and age
    mode, streak = "dopri5", 0  # dopri5-rkc: the current method, and steps voting to switch
    bar = tqdm(
        total=t_final,
        desc=desc or method,
        disable=not progress,
        leave=False,
        bar_format="{l_bar}{bar}| t={n:.3g}/{total:.3g} [{elapsed}<{remaining}]",
    )
    try:
        while t < t_final * (1 - 1e-14):
            attempts += 1
            if attempts > max_steps:
                raise RuntimeError(f"integrate_flow exceeded max_steps={max_steps} at t={t:.6g}")
            step = min(h, t_final - t)
            f_new = None
            use_rkc = method in ("rkc", "erkc") or (hybrid and mode == "stiff")
            if f0 is None:  # the velocity at the accepted state: an error there is the caller's
                f0 = np.asarray(velocity(t, y))
            if use_rkc and (rho is None or rho_age >= _RKC_RHO_EVERY):
                rho, rho_dir, _ = _spectral_radius(
                    velocity, t, y, f0, f0 if rho_dir is None else rho_dir
                )
                rho_age = 0
            if use_rkc and rho * step > (_RKC_MAX_STAGES**2 - 1) / 1.54:
                step = (_RKC_MAX_STAGES**2 - 1) / 1.54 / rho
            try:
                # a trial step whose stages overflow (or on which the velocity raises) is
                # rejected like one whose error is too large; numpy's overflow warnings of
                # such a step say nothing about the accepted ones
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    if use_rkc and method.endswith("erkc"):
                        s_stages = _erkc_stages(step * rho)
                        y_new, err = _erkc_step(velocity, t, y, step, f0, s_stages)
                    elif use_rkc:
                        y_new = _rkc_step(velocity, t, y, step, f0, rkc_stages(step * rho))
                        f_new = np.asarray(velocity(t + step, y_new))
                        err = (12.0 * (y - y_new) + (6.0 * step) * (f0 + f_new)) / 15.0
                    else:
                        # the stages live in one buffer for the whole run; f0 is copied to
                        # its row 0, which no later stage overwrites (so a rejected or failed
                        # trial keeps it)
                        if work is None or work.shape != (len(tab.c), f0.size):
                            work = np.empty((len(tab.c), f0.size), np.result_type(f0, y))
                        if work.dtype == np.result_type(f0, y):
                            if not _same_view(f0.reshape(-1), work[0]):
                                work[0] = f0.reshape(-1)
                            f0 = work[0].reshape(f0.shape)
                        y_new, err, K, y_before = _rk_step(
                            velocity, t, y, step, tab, k1=f0, work=work
                        )
                        if tab.b_low is not None:  # FSAL: the last stage is at y_new
                            f_new = K[-1]
                    failure = None if np.all(np.isfinite(y_new)) else "a non-finite state"
            except _TRIAL_ERRORS as exc:
                failure = exc
            if failure is not None:
                failures += 1
                if not adaptive or failures > _MAX_FAILED_TRIALS:
                    raise FloatingPointError(
                        f"the flow could not step from t={t:.6g}: "
                        + (
                            f"{failures} consecutive trial steps (the last of size {step:.3g})"
                            if adaptive
                            else f"the step of size {step:.6g} (reduce dt)"
                        )
                        + " produced "
                        + (
                            failure
                            if isinstance(failure, str)
                            else f"a stage where the velocity raised {failure!r}"
                        )
                    ) from (None if isinstance(failure, str) else failure)
                n_rejected += 1
                rejected_last = True
                h = 0.2 * step
                rho_age = _RKC_RHO_EVERY  # rkc: re-estimate the spectral radius
                continue
            if adaptive:
                if error_scale == "norm":
                    scale = atol + rtol * max(
                        float(np.max(np.abs(y))), float(np.max(np.abs(y_new)))
                    )
                else:
                    scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
                with np.errstate(divide="ignore", invalid="ignore"):
                    err_norm = float(np.max(np.abs(err) / scale))
                expo = -1.0 / 3.0 if use_rkc else -0.2
                if not np.isfinite(err_norm) or err_norm > 1.0:
                    n_rejected += 1
                    rejected_last = True
                    h = step * max(0.2, 0.9 * (err_norm if np.isfinite(err_norm) else 1e6) ** expo)
                    rho_age = _RKC_RHO_EVERY  # rkc: re-estimate the spectral radius
                    continue
                err_norm = max(err_norm, 1e-10)
                if _PI_BETA and err_prev is not None:
                    # PI control (Gustafsson; Hairer, Norsett & Wanner I, II.4): the previous error
                    # damps the step-size oscillation of a step held by stability
                    grow = 0.9 * err_norm ** (expo * (1 - 0.75 * _PI_BETA / -expo))
                    grow *= err_prev ** (_PI_BETA)
                else:
                    grow = 0.9 * err_norm**expo
                # no growth right after a rejection (the rejected size was too large)
                h = step * min(1.0 if rejected_last else 5.0, grow)
                err_prev, rejected_last = max(err_norm, 1e-4), False
                if hybrid and mode == "stiff":
                    streak = streak + 1 if step * rho < _NONSTIFF_H_RHO else 0
                    if streak >= _NONSTIFF_STREAK:
                        mode, streak = "dopri5", -_DWELL
                elif hybrid:
                    dy = float(np.linalg.norm(y_new - y_before))
                    dk = K[-1] - K[-2]
                    h_rho = step * float(np.linalg.norm(dk)) / dy if dy > 0 else 0.0
                    if streak < 0:  # dwell in dopri5 after a switch back
                        streak += 1
                    else:
                        streak = streak + 1 if h_rho > _STIFF_H_RHO else 0
                    if streak >= _STIFF_STREAK:
                        # the stiff direction seeds the power method of the RKC phase
                        mode, streak, rho, rho_dir = "stiff", 0, None, dk
            if restore is not None:
                y_restored = restore(y_new)
                if y_restored is not y_new:
                    f_new = None
                y_new = y_restored
            if not np.all(np.isfinite(y_new)):
                raise FloatingPointError(f"restore produced NaN/Inf at t={t + step:.6g}")
            t += step
            y = y_new
            f0 = f_new
            failures = 0
            rho_age += 1
            n_steps += 1
            bar.update(step)
            stop = stop_when is not None and bool(stop_when(t, y))
            last = stop or t >= t_final * (1 - 1e-14)
            if n_steps % int(save_every) == 0 or last:
                times.append(t)
                states.append(np.array(save_as(y), copy=True))
                for name, f in monitors.items():
                    records[name].append(np.asarray(f(t, y)))
            if stop:
                break
    finally:
        bar.close()
    return FlowResult(
        times=np.asarray(times),
        states=np.stack(states),
        monitors={k: np.stack(v) for k, v in records.items()},
        n_steps=n_steps,
        n_rejected=n_rejected,
    )


def integrate_with_defaults(
    velocity: Callable[[float, np.ndarray], np.ndarray],
    y0,
    t_final: float,
    *,
    defaults: Mapping[str, Callable[[float, np.ndarray], object]],
    monitors: Mapping[str, Callable[[float, np.ndarray], object]] | None = None,
    **options,
) -> FlowResult:
    """:func:`integrate_flow` with default monitors that the caller's ``monitors`` extend.

    The shared driver of the flows in :mod:`dln_manifolds.flows`: the monitors
    are ``defaults`` (in their order) updated by ``monitors`` (a user entry with
    the same name replaces the default); ``options`` are passed on to
    :func:`integrate_flow` (``dt``, ``method``, ``restore``, ``adaptive``,
    ``save_every``, ``progress``, ``desc``, ...).
    """
    merged = dict(defaults)
    merged.update(monitors or {})
    return integrate_flow(velocity, y0, t_final, monitors=merged, **options)


# --- FlowResult.save / FlowResult.load (npz without pickle) ---
_RESULT_FORMAT = "dln_manifolds.FlowResult"


def save_result(result: FlowResult, path) -> None:
    """Write a :class:`FlowResult` (or subclass) to ``path`` as npz; see :meth:`FlowResult.save`."""
    import dataclasses
    import json
    import numbers

    cls = type(result)
    meta = {
        "format": _RESULT_FORMAT,
        "version": 1,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "scalars": {},
        "arrays": [],
        "dicts": {},
    }
    arrays = {}

    def put(key, value, what):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"cannot save {what}: it is not a numeric array (dtype object)")
        arrays[key] = arr

    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray):
            put(f"a_{f.name}", value, f"field {f.name!r}")
            meta["arrays"].append(f.name)
        elif isinstance(value, Mapping):
            keys = []
            for i, (k, v) in enumerate(value.items()):
                put(f"d_{f.name}_{i}", v, f"{f.name}[{k!r}]")
                keys.append(str(k))
            meta["dicts"][f.name] = keys
        elif value is None or isinstance(value, (bool, str)):
            meta["scalars"][f.name] = value
        elif isinstance(value, numbers.Integral):
            meta["scalars"][f.name] = int(value)
        elif isinstance(value, numbers.Real):
            meta["scalars"][f.name] = float(value)
        else:
            raise TypeError(f"cannot save field {f.name!r} of type {type(value).__name__}")
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_result(cls: type, path) -> FlowResult:
    """Read a result written by :func:`save_result`; see :meth:`FlowResult.load`."""
    import json

    data = np.load(path, allow_pickle=False)
    if not hasattr(data, "files"):  # a plain .npy array
        raise ValueError(f"{path!s} was not written by FlowResult.save (not an npz archive)")
    with data:
        if "__meta__" not in data.files:
            raise ValueError(f"{path!s} was not written by FlowResult.save (no header)")
        meta = json.loads(str(data["__meta__"]))
        if meta.get("format") != _RESULT_FORMAT:
            raise ValueError(f"{path!s} was not written by FlowResult.save")
        if meta.get("version") != 1:
            raise ValueError(f"{path!s}: unsupported FlowResult file version {meta.get('version')}")
        target = None
        todo = [cls]
        while todo:
            c = todo.pop()
            if f"{c.__module__}:{c.__qualname__}" == meta["class"]:
                target = c
                break
            todo.extend(c.__subclasses__())
        if target is None:
            raise ValueError(
                f"{path!s} holds a {meta['class']}, which is not {cls.__qualname__} or one of "
                "its subclasses (import the module that defines it first)"
            )
        kwargs = {name: data[f"a_{name}"] for name in meta["arrays"]}
        for name, keys in meta["dicts"].items():
            kwargs[name] = {k: data[f"d_{name}_{i}"] for i, k in enumerate(keys)}
        kwargs.update(meta["scalars"])
    return target(**kwargs)
