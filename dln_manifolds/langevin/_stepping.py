r"""Time stepping shared by the samplers: Brownian-bridge reject-and-halve.

Every sampler in :mod:`dln_manifolds.langevin` advances an ensemble of B
paths with a fixed nominal step ``dt``. One step of path b is a map
``x_b -> step(x_b, dW_b, dt)`` driven by the Brownian increment ``dW_b``
(independent standard Gaussians times ``sqrt(dt)``). A proposal is *accepted*
when ``accept(x, proposal)`` is true for that path: for matrices, the
determinant keeps its sign and no log singular value moves by more than
``max_log_change`` (so the path never crosses, or jumps over, the singular
set); for Dyson eigenvalues, the ordering is kept.

A rejected step is not redrawn (redrawing would condition the noise on
acceptance and bias the law). Instead the *same* Brownian path is refined:
the midpoint of the increment is sampled from the Brownian bridge,

.. math::

    W_{t+h/2} - W_t = \tfrac12 \Delta W + \sqrt{h/4}\, Z, \qquad Z \sim N(0, I),

and the two half steps are taken with the two halves of the increment, each
of them checked and refined again if needed (at most ``max_halvings`` times).
Only the rejected paths are refined, all of them at once (vectorized over the
subset), so the cost stays proportional to the number of rejections. The
refinement decision looks at the proposal, so the grid is not adapted to the
filtration; but the driving Brownian path is never changed, only sampled more
finely (the Brownian-tree construction of Gaines and Lyons, SIAM J. Appl. Math.
57, 1997), so the scheme converges pathwise to the strong solution driven by
that path, hence in law, as dt -> 0.

The refinement decision is *not* free of bias at a fixed step, though. It looks at
the noise: a step is kept when its increment was small, and the Euler error of a
kept step, conditioned on that, does not average out (the missing Ito-Taylor
term :math:`\tfrac12 b b'(\Delta W^2 - h)` is negative on small increments). When
rejections are rare this is negligible, but when the nominal step is much longer
than the time scale of the process every step is refined and the bias adds up.
This happens on :math:`(\mathfrak M_d, g^N)` at large depth: the log singular
values of X diffuse at rate :math:`\approx 2N\sigma_k^{-2/N}\kappa/\beta`, so with
N = 10^4 and dt = 10^{-3} a step moves them by about 4.5, nine times
``max_log_change`` = 0.5. Measured before the fix below (d = 1, N = 100, t = 0.5,
1000 paths; exactly, :math:`\lambda = \sigma^{1/N}` is Gaussian with mean 1 and
sd 0.1): mean of :math:`\lambda - 1` = +0.31, +0.27, +0.11 for dt = 0.05, 0.005,
0.0005 (standard error 0.003), and at N = 10^4, d = 1..3, t = 0.05 the singular
values ran away to overflow (1e150 and beyond), reported as boundary hits.
A sampler therefore may also halve a step *in advance*, from the current state
and the step length only (``step`` returns ``(proposal, h_max)``): this
refinement is non-anticipating (the grid is a sequence of stopping times), so it
adds no bias, and it keeps the noise-driven rejections rare. The matrix samplers
split a step until the standard deviation of the noise of every log singular
value over it is at most ``max_log_change / 4``, i.e.
:math:`h \le (\texttt{max\_log\_change}/4)^2 / (s^2 N \sigma_{\min}^{-2/N})`
with s the noise scale: at large N a run then costs about
:math:`32\,s^2 N t / \texttt{max\_log\_change}^2` steps whatever dt is
(the price of an explicit scheme on the time scale 1/N), and nothing for
moderate N dt. Near the singular set this rate grows without bound, so a path
that approaches it is followed down to ``max_halvings`` halvings (lower it to
bound the cost); before, the biased refinement kept such paths away from it
(d = 1, N = 3, x_0 = 0.3, t = 0.5: exactly 24.6% of the paths reach 0; the old
control stopped 0-2.5%, the new one 29% with ``max_halvings = 10``).

A limit that this does not remove: at very large depth (N = 10^4, d >= 2) the
singular values of X spread over many orders of magnitude
(:math:`\sigma_k = \lambda_k^N`) while the :math:`\lambda_k` stay close, and an
Euler step in the coordinates of X moves the smallest singular value, through
the off-diagonal noise, by a relative amount of order
:math:`h\,\sigma_1/(\sigma_d(\lambda_1^2-\lambda_d^2))`. The step control then
halves down to ``max_halvings`` and stops the paths although they are far from
the singular set (4 of 4 paths, d = 3, t = 0.05). A scheme in other coordinates
is needed there, e.g. the upstairs sampler
:func:`dln_manifolds.langevin.balanced_langevin`, whose layers have singular
values :math:`\lambda_k = O(1)` (not measured at this depth).

A step still rejected after ``max_halvings`` halvings means that the path has
reached the boundary of the state space. These diffusions can do so in finite
time: near 0, :math:`\lambda = \sigma^{1/N}` of Brownian motion on
:math:`(\mathfrak M_1, g^N)` is a driftless Brownian motion (for d > 1 the
smallest layer singular value behaves alike), and Dyson gaps at beta = 1,
two-dimensional Bessel processes, come arbitrarily close to 0. Such a path is
stopped there and its exit time recorded (``on_boundary="stop"``), or a
:class:`RuntimeError` is raised (``on_boundary="raise"``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .._checks import as_generator, check_count
from ._batch import check_real

__all__ = ["SampleResult", "run_sampler", "rank_preserving", "order_preserving"]

#: Paths advanced at once by default (bounds the temporaries of a step; results do not
#: depend on it).
DEFAULT_CHUNK_SIZE = 2**14


@dataclass
class SampleResult:
    """Output of the samplers.

    Attributes
    ----------
    times : ndarray, shape (n,)
        Saved times, from 0 to ``t_final``.
    states : ndarray, shape (n, B, ...)
        The ensemble at the saved times (axis 1 runs over paths).
    n_steps : int
        Nominal steps taken.
    n_rejected : int
        Number of rejected (path, step) proposals that were refined by halving.
    n_split : int
        Number of (path, step) steps halved in advance because they were too long for
        the scheme at the current state (decided before looking at their noise).
    exit_times : ndarray, shape (B,)
        For each path, the time at which it reached the boundary of the state
        space (a step still rejected after ``max_halvings`` halvings: a
        singular matrix, colliding eigenvalues) and was stopped there;
        ``inf`` for paths alive at ``t_final``. A stopped path keeps its last
        state in all later saved states.
    """

    times: np.ndarray
    states: np.ndarray
    n_steps: int = 0
    n_rejected: int = 0
    exit_times: np.ndarray | None = None
    n_split: int = 0

    @property
    def alive(self) -> np.ndarray:
        """Boolean mask (B,) of the paths that did not reach the boundary."""
        if self.exit_times is None:
            return np.ones(self.states.shape[1], dtype=bool)
        return np.isinf(self.exit_times)

    @property
    def final(self) -> np.ndarray:
        """The ensemble at ``t_final``, shape (B, ...)."""
        return self.states[-1]


def rank_preserving(max_log_change: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Acceptance test for matrix states (..., m, n) (last two axes; any leading batch axes).

    Accept when every matrix of the proposal is finite, its determinant has the
    sign of the current one (square matrices only: full-rank m x n matrices with
    m != n form a connected set), and every (sorted) log singular value moved by at
    most ``max_log_change``.
    """

    def accept(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        batch = x.shape[0]
        xm = x.reshape((-1,) + x.shape[-2:])
        ym = y.reshape((-1,) + y.shape[-2:])
        finite = np.isfinite(ym).all(axis=(-2, -1))
        ym = np.where(finite[:, None, None], ym, 0.0)
        sx = np.linalg.svd(xm, compute_uv=False)
        sy = np.linalg.svd(ym, compute_uv=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.abs(np.log(sy) - np.log(sx)).max(axis=-1)
            if xm.shape[-1] == xm.shape[-2]:
                same_sign = np.sign(np.linalg.det(xm)) == np.sign(np.linalg.det(ym))
            else:
                same_sign = True
        ok = finite & same_sign & (change <= max_log_change)
        return ok.reshape(batch, -1).all(axis=1)

    return accept


def order_preserving(min_gap_ratio: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Acceptance test for increasing vectors (B, d): the order is kept and no gap shrinks
    below ``min_gap_ratio`` times its current value."""

    def accept(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        gx = np.diff(x, axis=-1)
        gy = np.diff(y, axis=-1)
        return np.isfinite(y).all(axis=-1) & (gy > min_gap_ratio * gx).all(axis=-1)

    return accept


class _BridgeNoise:
    """Gaussian draws for the Brownian-bridge refinement, one stream per (step, path).

    The draws that refine path b at nominal step k come from their own generator,
    seeded by ``(entropy of the run, k, b)``, and are consumed in the depth-first order of
    that path's own refinement tree. They therefore do not depend on which other paths
    are refined at the same time, so advancing the ensemble in chunks of paths
    (``chunk_size``) gives bit-identical results. The generators are created lazily, only
    for paths that are actually rejected.
    """

    def __init__(self, rng: np.random.Generator):
        seed_seq = getattr(rng.bit_generator, "seed_seq", None)
        if isinstance(seed_seq, np.random.SeedSequence):
            child = seed_seq.spawn(1)[0]  # does not advance rng's stream
            self._entropy, self._key = child.entropy, tuple(child.spawn_key)
        else:  # a bit generator without a SeedSequence: draw the entropy from it
            self._entropy, self._key = int(rng.integers(2**63)), ()
        self._step = -1
        self._streams: dict[int, np.random.Generator] = {}

    def start_step(self, k: int) -> None:
        self._step = k
        self._streams = {}

    def __call__(self, paths: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty((paths.size,) + shape)
        for i, b in enumerate(paths.tolist()):
            gen = self._streams.get(b)
            if gen is None:
                seq = np.random.SeedSequence(self._entropy, spawn_key=self._key + (self._step, b))
                gen = self._streams[b] = np.random.Generator(np.random.PCG64(seq))
            out[i] = gen.standard_normal(shape)
        return out


def _proposal(step, x, dW, h):
    """``step(x, dW, h)`` as (proposal, largest allowed step from x or None)."""
    out = step(x, dW, h)
    if isinstance(out, tuple):
        return out[0], np.asarray(out[1], dtype=float)
    return out, None


def _refine(x, dW, dt, t, step, accept, bridge, paths, level, max_halvings, counter, hmax):
    """Advance x by one step with increment dW.

    Returns (new x, bool mask of stuck paths, largest allowed step last known per row).
    ``paths`` are the ensemble indices of the rows of x (they select the bridge streams);
    ``hmax`` (rows,) is the largest step allowed by the last state of each row whose
    ``step`` returned one (inf if none): a longer step is halved in advance, without
    evaluating it (a decision on the past only, hence non-anticipating).
    Raises FloatingPointError when a proposal is still not finite after ``max_halvings``
    halvings: the step function itself returned NaN/Inf (a broken energy gradient, an
    overflow), which is not a boundary hit.
    """
    n = x.shape[0]
    can_split = level < max_halvings
    pre = (dt > hmax) if can_split else np.zeros(n, dtype=bool)
    if not pre.any():
        y, h_x = _proposal(step, x, dW, dt)
        ok = accept(x, y)
        ev = None
    else:
        ev = np.flatnonzero(~pre)
        y = x.copy()
        h_x = None
        ok = np.zeros(n, dtype=bool)
        if ev.size:
            y[ev], h_ev = _proposal(step, x[ev], dW[ev], dt)
            ok[ev] = accept(x[ev], y[ev])
            if h_ev is not None:
                h_x = hmax.copy()
                h_x[ev] = h_ev
    hnew = hmax if h_x is None else h_x
    split = pre.copy()
    if h_x is not None and can_split:
        split |= dt > h_x
    rejected = ~ok & ~split
    stuck = np.zeros(n, dtype=bool)
    if not (split.any() or rejected.any()):
        return y, stuck, hnew
    if not can_split:
        bad = np.flatnonzero(rejected)
        finite = np.isfinite(y[bad].reshape(bad.size, -1)).all(axis=1)
        if not finite.all():
            raise FloatingPointError(
                f"the step of {int((~finite).sum())} path(s) is still NaN/Inf after "
                f"{max_halvings} halvings at time {t:.6g} (the drift or the noise coefficient "
                "is not finite: an energy gradient returning NaN/Inf, or a state outside the "
                "float64 range); this is not a boundary hit"
            )
        y[bad] = x[bad]
        stuck[bad] = True
        return y, stuck, hnew
    counter[0] += int(np.count_nonzero(rejected))
    counter[1] += int(np.count_nonzero(split))
    bad = np.flatnonzero(split | rejected)
    dWb = dW[bad]
    mid = 0.5 * dWb + np.sqrt(dt / 4.0) * bridge(paths[bad], dWb.shape[1:])
    z, s1, h1 = _refine(
        x[bad],
        mid,
        dt / 2,
        t,
        step,
        accept,
        bridge,
        paths[bad],
        level + 1,
        max_halvings,
        counter,
        hnew[bad],
    )
    live = ~s1
    z2 = z.copy()
    if live.any():
        z2[live], s2, h1[live] = _refine(
            z[live],
            (dWb - mid)[live],
            dt / 2,
            t + dt / 2,
            step,
            accept,
            bridge,
            paths[bad][live],
            level + 1,
            max_halvings,
            counter,
            h1[live],
        )
        s1[np.flatnonzero(live)[s2]] = True
    y[bad] = z2
    stuck[bad] = s1
    hnew = hnew.copy()
    hnew[bad] = h1
    return y, stuck, hnew


def _saved_steps(n_steps: int, save_every: int | None) -> list[int]:
    """Nominal step indices k (0-based, state after step k) at which the ensemble is saved."""
    if save_every is None:
        return [n_steps - 1]
    ks = list(range(save_every - 1, n_steps, save_every))
    if not ks or ks[-1] != n_steps - 1:
        ks.append(n_steps - 1)
    return ks


class _Store:
    """Where the saved states go: a preallocated array, a .npy file, or a callback."""

    def __init__(self, x, times, out, on_save):
        self.on_save = on_save
        self.keep_all = on_save is None or out is not None
        n = len(times) if self.keep_all else 2
        self.times = np.asarray(times if self.keep_all else [times[0], times[-1]], dtype=float)
        self.shape = (n,) + x.shape
        self.path = None
        self.file = None
        if out is not None:
            self.path = os.fspath(out)
            if not self.path.endswith(".npy"):
                self.path += ".npy"
            self.file = open(self.path, "wb")  # noqa: SIM115 (closed in finish)
            np.lib.format.write_array_header_1_0(
                self.file,
                {
                    "descr": np.lib.format.dtype_to_descr(x.dtype),
                    "fortran_order": False,
                    "shape": self.shape,
                },
            )
            self.states = None
        else:
            self.states = np.empty(self.shape, dtype=x.dtype)
        self.n = 0

    def save(self, t: float, x: np.ndarray, last: bool) -> None:
        if self.on_save is not None:
            view = x.view()
            view.flags.writeable = False
            self.on_save(t, view)
        if not (self.keep_all or self.n == 0 or last):
            return
        if self.file is not None:
            self.file.write(np.ascontiguousarray(x).tobytes())
        else:
            self.states[self.n] = x
        self.n += 1

    def finish(self) -> np.ndarray:
        if self.file is None:
            return self.states
        self.file.close()
        self.file = None
        return np.load(self.path, mmap_mode="r")

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def run_sampler(
    x0: np.ndarray,
    step: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    noise_shape: tuple[int, ...],
    t_final: float,
    dt: float,
    *,
    accept: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    seed=None,
    save_every: int | None = None,
    max_halvings: int = 30,
    on_boundary: str = "stop",
    progress: bool = False,
    desc: str = "sampling",
    chunk_size: int | None = None,
    out=None,
    on_save: Callable[[float, np.ndarray], None] | None = None,
    copy: bool = True,
) -> SampleResult:
    """Advance an ensemble ``x0`` (B, ...) with ``step`` and Brownian-bridge refinement.

    Parameters
    ----------
    x0 : ndarray, shape (B, ...)
    step : callable
        ``step(x, dW, h)`` -> proposal, vectorized over the leading axis;
        ``dW`` has shape (B',) + noise_shape and variance h per entry. It may also
        return ``(proposal, h_max)`` with ``h_max`` a float array (B',) that depends
        on x only, never on dW: the longest step the scheme may take from x. Longer
        steps are halved (Brownian bridge, as for a rejection) whatever their
        proposal, and the following steps of that path are halved in advance, before
        being evaluated, down to the last ``h_max`` known. Being decided before the
        noise is looked at, this refinement is non-anticipating and adds no bias
        (see the module docstring).
    noise_shape : tuple of int
        Shape of one path's Brownian increment.
    t_final, dt : float
        Final time (> 0) and nominal step (> 0); the last step is shortened to
        land on ``t_final``.
    accept : callable, optional
        ``accept(x, proposal)`` -> bool array (B',). None accepts everything.
    seed : None, int, SeedSequence or Generator
    save_every : int, optional
        Save the ensemble every ``save_every`` nominal steps (and at the end).
        None saves only the start and the end.
    max_halvings : int
        Largest number of successive halvings of one step.
    on_boundary : {"stop", "raise"}
        What to do with a path whose step is still rejected after
        ``max_halvings`` halvings (it reached the singular set, which the
        diffusions of this package can do in finite time): "stop" freezes it
        and records its exit time (``SampleResult.exit_times``; a
        RuntimeWarning gives the count), "raise" raises RuntimeError.
        A proposal that is still NaN/Inf at that point is not a boundary hit:
        FloatingPointError is raised in both cases.
    progress : bool
        Show a tqdm progress bar.
    chunk_size : int, optional
        Advance at most this many paths at once (each nominal step is taken chunk
        by chunk). The temporaries of a step (SVDs, frames, noise, proposals: about
        twenty arrays of the chunk's size for the matrix samplers) are then bounded
        by the chunk instead of the ensemble. The results are bit-identical to the
        unchunked run with the same seed: the increments are drawn from the same
        stream in path order, and the bridge refinement of each path has its own
        stream (see :class:`_BridgeNoise`). None means ``DEFAULT_CHUNK_SIZE`` (16384).
    out : str or os.PathLike, optional
        Write the saved states to this ``.npy`` file as they are produced
        (appended state by state, never held in memory together);
        ``SampleResult.states`` is then a read-only memory map of the file.
        None keeps them in memory.
    on_save : callable, optional
        ``on_save(t, states)`` is called at every saved time (including 0) with a
        read-only view of the ensemble (B, ...) (copy it to keep it), e.g. to
        accumulate running statistics. Without ``out`` the states are then *not*
        stored: ``SampleResult`` holds only the first and the last.
    copy : bool, default True
        False lets the sampler advance ``x0`` itself in place (callers that own a
        float64 ``x0`` they built themselves save one ensemble-sized copy).
    """
    t_final = check_real(t_final, "t_final", positive=True)
    dt = check_real(dt, "dt", positive=True)
    max_halvings = check_count(max_halvings, "max_halvings", minimum=0, integral=True)
    if on_boundary not in ("stop", "raise"):
        raise ValueError(f"on_boundary must be 'stop' or 'raise', got {on_boundary!r}")
    if save_every is not None:
        save_every = check_count(save_every, "save_every", integral=True)
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size", integral=True)
    if on_save is not None and not callable(on_save):
        raise TypeError(f"on_save must be callable, got {type(on_save).__name__}")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a file path (str or os.PathLike), got {type(out).__name__}")
    rng = as_generator(seed)
    n_steps = max(1, int(np.ceil(t_final / dt - 1e-9)))
    x = np.array(x0, dtype=np.result_type(x0, np.float64), copy=True if copy else None)
    B = x.shape[0]
    chunk = min(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size, B)
    noise_shape = tuple(noise_shape)
    bridge = _BridgeNoise(rng) if accept is not None else None
    exit_times = np.full(B, np.inf)
    hmax = np.full(B, np.inf)  # largest step allowed by each path's last known state
    saved = _saved_steps(n_steps, save_every)
    step_times = [(k + 1) * dt if k < n_steps - 1 else t_final for k in saved]
    store = _Store(x, [0.0] + step_times, out, on_save)
    counter = [0, 0]  # rejections, predictable splits
    t = 0.0
    next_save = 0
    try:
        store.save(0.0, x, last=False)
        for k in tqdm(range(n_steps), desc=desc, disable=not progress):
            h = dt if k < n_steps - 1 else t_final - t
            if bridge is not None:
                bridge.start_step(k)
            for lo in range(0, B, chunk):
                hi = min(lo + chunk, B)
                dW = np.sqrt(h) * rng.standard_normal((hi - lo,) + noise_shape)
                idx = lo + np.flatnonzero(np.isinf(exit_times[lo:hi]))
                if idx.size == 0:
                    continue
                dWl = dW[idx - lo]
                try:
                    if accept is None:
                        x[idx] = _proposal(step, x[idx], dWl, h)[0]
                        continue
                    x[idx], stuck, hmax[idx] = _refine(
                        x[idx],
                        dWl,
                        h,
                        t,
                        step,
                        accept,
                        bridge,
                        idx,
                        0,
                        max_halvings,
                        counter,
                        hmax[idx],
                    )
                except FloatingPointError as exc:
                    raise FloatingPointError(f"at nominal step {k} (t = {t:.6g}): {exc}") from exc
                if stuck.any():
                    if on_boundary == "raise":
                        raise RuntimeError(
                            f"a step of {stuck.sum()} path(s) was still rejected after "
                            f"{max_halvings} halvings at time {t:.6g}: the path reached the "
                            "boundary of the state space (a singular matrix or colliding "
                            "eigenvalues)"
                        )
                    exit_times[idx[stuck]] = t
            t = (k + 1) * dt if k < n_steps - 1 else t_final
            if next_save < len(saved) and saved[next_save] == k:
                next_save += 1
                store.save(t, x, last=k == n_steps - 1)
        states = store.finish()
    finally:
        store.abort()
    n_dead = int(np.sum(~np.isinf(exit_times)))
    if n_dead:
        warnings.warn(
            f"{n_dead} of {B} paths reached the boundary of the state space and were stopped "
            "(see SampleResult.exit_times)",
            RuntimeWarning,
            stacklevel=3,
        )
    return SampleResult(store.times, states, n_steps, counter[0], exit_times, counter[1])
