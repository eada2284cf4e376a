"""Downstairs log :func:`dln_manifolds.geodesics.depth_log`: the Newton schedule, before/after.

Both variants run in this process, interleaved pair by pair (the order alternates), on
the same random far pairs (``EndToEndMatrices.random_point``: Haar frames, singular
values log-uniform in [1/2, 2], same component of GL(d)):

- ``before``: the schedule of the previous release, restored through the module
  constants of :mod:`dln_manifolds.geodesics`: Newton with fresh Jacobians on geodesics
  of ``rtol = 1e-7`` at every continuation target, intermediate targets solved to a
  mismatch of 1e-5 (1 + |Y|), the requested tolerances from a mismatch of 1e-5 on with
  the chord method;
- ``after``: the current defaults (intermediate targets on geodesics of ``rtol = 1e-5``
  solved to 1e-3 (1 + |Y|), the requested tolerances from 1e-4 on, with a fresh
  Jacobian on the first such geodesic).

Per configuration: CPU seconds per log (median, mean, max), right-hand-side evaluations
of the geodesic equation per log, the accuracy max |exp_X(log_X Y) - Y| / (1 + |Y|) (with
:func:`~dln_manifolds.geodesics.depth_exp` at the same tolerances) and the failures
(LogConvergenceError). Then pymanopt's ParticleSwarm, two iterations on the
EndToEndMatrices spaces of tests/test_pymanopt_optimizers.py (d = 2, seed 100), before
(old schedule, no batching of the logs to the global best) and after.

Then (section ``evaluation``) the evaluation of the geodesic equation, before/after the
lean path through :class:`~dln_manifolds.depth_metric.DepthFrame` (the multipliers' pieces
reused by the divided differences, the Christoffel contractions inlined, no full-rank test
of unchecked frames with positive singular values, no per-row finiteness test of finite
stages): ``before`` is a copy of the former evaluation kept in this script only
(``_OldFrame``, ``_old_rhs_call``), swapped in for ``geodesics.DepthFrame`` and
``geodesics._Rhs.__call__``; ``after`` the library. Per configuration (d = 2, 3, 5, 10 at
N = 3, d = 3 at N = inf, 3 x 2 and 2 x 4 at N = 3): CPU seconds of ``depth_log`` and of
``depth_exp`` (the log's velocity) per pair, best of ``--repeats`` runs, old and new
interleaved, summed over the pairs; and the largest difference between the two paths'
results relative to the result's norm.

Usage::

    python benchmarks/bench_log.py [--pairs 20] [--no-swarm] [--only-evaluation]

Writes ``benchmarks/results/log.json`` and prints a table (``--only-evaluation``: runs only
the evaluation section and replaces it in the existing JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

from _common import RESULTS_DIR, single_blas_thread, write_results

single_blas_thread()

import numpy as np  # noqa: E402

from dln_manifolds import depth_metric as dm  # noqa: E402
from dln_manifolds import geodesics as geo  # noqa: E402
from dln_manifolds.pymanopt import EndToEndMatrices  # noqa: E402

BEFORE = {
    "_MID_RTOL": 1e-7,
    "_MID_TOL": 1e-5,
    "_LOOSE_RTOL": 1e-7,
    "_SWITCH_TOL": 1e-5,
    "_TIGHT_JACOBIAN": False,
}
AFTER = {name: getattr(geo, name) for name in BEFORE}
CONFIGS = [
    ((2, 2), 2),
    ((2, 2), 3),
    ((2, 2), np.inf),
    ((3, 3), 2),
    ((3, 3), 3),
    ((3, 3), np.inf),
    ((5, 5), 2),
    ((5, 5), 3),
    ((5, 5), np.inf),
    ((3, 2), 2),
    ((3, 2), 3),
]


def _schedule(values: dict) -> None:
    for name, value in values.items():
        setattr(geo, name, value)


class _Counter:
    """Counts the evaluations of the geodesic equation (wraps geodesics._Rhs.__call__)."""

    def __init__(self):
        self.n = 0
        self._call = geo._Rhs.__call__
        counter = self

        def call(rhs, *args, **kwargs):
            counter.n += 1
            return counter._call(rhs, *args, **kwargs)

        geo._Rhs.__call__ = call


def _pairs(shape, depth, n, seed=0):
    M = EndToEndMatrices(shape[0] if shape[0] == shape[1] else shape, depth, seed=seed)
    out = []
    for _ in range(n):
        X, Y = M.random_point(), M.random_point()
        if shape[0] == shape[1] and np.linalg.det(X) * np.linalg.det(Y) < 0:
            Y[:, 0] *= -1.0
        out.append((X, Y))
    return out


def _one_log(X, Y, depth, counter):
    n0, t0 = counter.n, time.process_time()
    try:
        V = geo.depth_log(X, Y, depth)
    except geo.LogConvergenceError:
        return time.process_time() - t0, counter.n - n0, None
    seconds, n_rhs = time.process_time() - t0, counter.n - n0
    err = np.linalg.norm(geo.depth_exp(X, V, depth) - Y) / (1.0 + np.linalg.norm(Y))
    return seconds, n_rhs, float(err)


def _summary(rows):
    t = np.array([r[0] for r in rows])
    errs = [r[2] for r in rows if r[2] is not None]
    return {
        "median_s": float(np.median(t)),
        "mean_s": float(np.mean(t)),
        "max_s": float(np.max(t)),
        "rhs_per_log": float(np.mean([r[1] for r in rows])),
        "max_rel_error": max(errs) if errs else None,
        "failures": sum(r[2] is None for r in rows),
    }


def flat(prefix: str, values: dict) -> dict:
    """Rows of flat values (the documentation renders those as tables)."""
    return {f"{prefix}_{k}": v for k, v in values.items()}


def bench_logs(n_pairs: int, counter) -> list[dict]:
    results = []
    for shape, depth in CONFIGS:
        rows = {"before": [], "after": []}
        for i, (X, Y) in enumerate(_pairs(shape, depth, n_pairs)):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for name in order:
                _schedule(BEFORE if name == "before" else AFTER)
                rows[name].append(_one_log(X, Y, depth, counter))
        _schedule(AFTER)
        entry = {"shape": f"{shape[0]}x{shape[1]}", "depth": str(depth)}
        b, a = _summary(rows["before"]), _summary(rows["after"])
        entry.update(flat("before", b) | flat("after", a))
        entry["speedup_mean"] = b["mean_s"] / a["mean_s"]
        results.append(entry)
        print(
            f"{str(shape):8} N={entry['depth']!s:4} before {b['mean_s']:.3f} s "
            f"({b['rhs_per_log']:.0f} rhs, err {b['max_rel_error']:.1e}, {b['failures']} fail) "
            f"after {a['mean_s']:.3f} s ({a['rhs_per_log']:.0f} rhs, err "
            f"{a['max_rel_error']:.1e}, {a['failures']} fail)  x{entry['speedup_mean']:.2f}",
            flush=True,
        )
    return results


def bench_swarm() -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_pymanopt_optimizers as t  # the test's spaces and run classification

    produced = EndToEndMatrices._produced
    results = []
    for space in ("E2E-N2", "E2E-N3", "E2E-Ninf"):
        entry = {"space": space}
        for name in ("before", "after"):
            _schedule(BEFORE if name == "before" else AFTER)
            if name == "before":  # no record of produced points: no batching over bases
                EndToEndMatrices._produced = lambda self, X: X
            outcome, err, seconds = t._run(space, "ParticleSwarm", 100, 2)
            EndToEndMatrices._produced = produced
            entry |= flat(name, {"outcome": outcome, "error": err, "cpu_s": seconds})
        _schedule(AFTER)
        entry["speedup"] = entry["before_cpu_s"] / entry["after_cpu_s"]
        entry["same_result"] = entry["before_error"] == entry["after_error"]
        results.append(entry)
        print(
            f"ParticleSwarm {space:9} before {entry['before_cpu_s']:.1f} s "
            f"after {entry['after_cpu_s']:.1f} s  x{entry['speedup']:.1f} "
            f"({entry['after_outcome']}, same result: {entry['same_result']})",
            flush=True,
        )
    return results


# -- the former evaluation of the geodesic equation (this script only) --------------------


def _old_divided_differences(s, M, depth):
    """The former ``depth_metric._divided_differences`` (no reuse of M's pieces)."""
    q, scale = dm.depth_q_and_scale(depth)
    alpha = dm._log_sq(s)
    lam = s**2
    d = s.shape[-1]
    eye = np.eye(d, dtype=bool)
    den = np.where(eye, 1.0, lam[..., :, None] - lam[..., None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        T = (M[..., :, None, :] - M[..., None, :, :]) / den[..., :, :, None]
    a, c = np.broadcast_arrays(alpha[..., :, None], alpha[..., None, :])
    idx = np.arange(d)
    T[..., idx, idx, :] = dm.multiplier_d_alpha(a, c, q, scale) * np.exp(-a)
    close = (np.abs(alpha[..., :, None] - alpha[..., None, :]) < dm._DIVDIFF_CUTOFF) & ~eye
    if np.any(close):
        where = np.nonzero(close)
        batch, i, m = where[:-2], where[-2], where[-1]
        mid = 0.5 * (alpha[batch + (i,)] + alpha[batch + (m,)])
        mid, aj = np.broadcast_arrays(mid[:, None], alpha[batch] if batch else alpha)
        T[where] = dm.multiplier_d_alpha(mid, aj, q, scale) * np.exp(-mid)
    return T


def _old_complement_divided_differences(s, M, depth):
    """The former ``depth_metric._complement_divided_differences``."""
    q, _ = dm.depth_q_and_scale(depth)
    alpha = dm._log_sq(s)
    ai, aj = alpha[..., :, None], alpha[..., None, :]
    if q == 0.0:
        return M / (s * s)[..., :, None], np.zeros_like(M)
    hi = np.maximum(ai, aj)
    delta = -np.abs(ai - aj)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        E = np.exp((q - 1.0) * ai + (1.0 - 2.0 * q) * hi) * dm._expm1_ratio(delta, 1.0 - q, q)
        G = np.exp(-q * hi) * dm._expm1_ratio(delta, 1.0 - q, 1.0)
    return E, G


def _old_multipliers(s, depth):
    if depth == 1:
        return np.ones(s.shape + s.shape[-1:])
    q, scale = dm.depth_q_and_scale(depth)
    alpha = dm._log_sq(s)
    return dm.multiplier_from_alpha(alpha[..., :, None], alpha[..., None, :], q, scale)


class _OldFrame(dm.DepthFrame):
    """DepthFrame with the former evaluation path (construction, T, E, G, acceleration)."""

    def __init__(self, X, depth, *, check=True, full_rank=False):
        if check:
            X = dm._as_points(X)
            depth = dm.check_depth(depth)
        else:
            X = np.asarray(X)
        self.depth = depth
        self.shape = X.shape[-2:]
        self._check = check
        self._rect = self.shape[0] != self.shape[1]
        self._pieces = None
        if self._rect:
            self.U, self.s, self.Vh = np.linalg.svd(X, full_matrices=False)
            self.d = self.s.shape[-1]
            self._flip = self.shape[0] < self.shape[1]
            V = dm.conj_transpose(self.Vh)
            self._L, self._R = (V, self.U) if self._flip else (self.U, V)
            self.M = _old_multipliers(self.s, self.depth)
            self.c = dm._complement_multipliers(self.s, self.depth)
            self._EG = None
            self._Lfull = None
        else:
            self.d = X.shape[-1]
            self.U, self.s, self.Vh = np.linalg.svd(X)
            self.M = _old_multipliers(self.s, depth)
        self._T = None
        self._full_rank_checked = False
        if full_rank:
            self._require_full_rank()

    def _require_full_rank(self):
        if self._full_rank_checked:
            return
        limit = 1.0 / (max(self.shape) * np.finfo(np.float64).eps) if self._check else np.inf
        dm.check_full_rank_batch(self.s, "X", limit)
        self._full_rank_checked = True

    @property
    def divided_differences(self):
        if self._T is None:
            self._require_full_rank()
            self._T = _old_divided_differences(self.s, self.M, self.depth)
        return self._T

    @property
    def _complement_dd(self):
        if self._EG is None:
            self._require_full_rank()
            self._EG = _old_complement_divided_differences(self.s, self.M, self.depth)
        return self._EG

    def geodesic_acceleration(self, V):
        V = self._arg(V, "V")
        self._require_full_rank()
        if self.depth == 1:
            return self._zeros(V)
        if self._rect:
            return self._rect_acceleration(V)
        Vh = self._to(V)
        BV = Vh / self.M
        acc = self._dA_hat(Vh, BV) - 0.5 * self.M * self._dA_adjoint_hat(BV, BV)
        return self._from(acc)

    def _rect_acceleration(self, V_vec):
        self._require_full_rank()
        self._require_finite_depth()
        Vh, Vc = self._split(V_vec)
        M, c = self.M, self.c[..., None, :]
        BVh, BVc = Vh / M, Vc / c
        th, tc = self._rect_dA(Vh, Vc, BVh, BVc)
        Kh, Kc = self._rect_dA_adjoint(BVh, BVc, BVh, BVc)
        return self._join(th - 0.5 * M * Kh, tc - 0.5 * c * Kc)


def _old_rhs_call(self, X, V, want_predictor=False):
    """The former ``geodesics._Rhs.__call__``."""
    self.n_evals += 1
    finite = np.isfinite(X).all(axis=(-2, -1)) & np.isfinite(V).all(axis=(-2, -1))
    eye = np.eye(*X.shape[-2:])
    if not np.all(finite):
        X = np.where(finite[..., None, None], X, eye)
        V = np.where(finite[..., None, None], V, 0.0)
    frame = _OldFrame(X, self.depth, check=False)
    s = frame.s
    with np.errstate(divide="ignore", invalid="ignore"):
        bad = ~finite | ~(s[..., -1] > self.singular_tol * s[..., 0])
    if np.any(bad):
        X = np.where(bad[..., None, None], eye, X)
        frame = _OldFrame(X, self.depth, check=False)
    acc = frame.geodesic_acceleration(V)
    self.last_ratio = np.where(bad, 0.0, s[..., -1] / np.where(bad, 1.0, s[..., 0]))
    t_hit = None
    if want_predictor:
        t_hit = np.full(bad.shape, np.inf)
        if not np.isinf(self.depth):
            u, w = frame.U[..., :, -1], frame.Vh[..., -1, :]
            ds = np.einsum("...i,...ij,...j->...", u, V, w)
            with np.errstate(divide="ignore", invalid="ignore"):
                t_hit = np.where(ds < 0, -self.depth * frame.s[..., -1] / ds, np.inf)
            t_hit = np.where(bad, 0.0, t_hit)
    return acc, bad, t_hit


def _old_combine(base: np.ndarray, h: np.ndarray, coeffs, ks) -> np.ndarray:
    """The former ``geodesics._combine`` (4-d arrays)."""
    out = base.copy()
    for a, k in zip(coeffs, ks, strict=False):
        if a != 0.0:
            out += (h * a)[:, None, None, None] * k
    return out


def _old_integrate(
    X0: np.ndarray,
    V0: np.ndarray,
    depth,
    *,
    rtol: float,
    atol: float,
    n_steps: int | None,
    max_steps: int,
    singular_tol: float,
):
    """The former ``geodesics._integrate`` (separate X and V stages, one combination each)."""
    B = X0.shape[0]
    rtol = np.broadcast_to(np.asarray(rtol, dtype=float), (B,))
    atol = np.broadcast_to(np.asarray(atol, dtype=float), (B,))
    rhs = geo._Rhs(depth, singular_tol)
    X, V = X0.copy(), V0.copy()
    t = np.zeros(B)
    ok = np.ones(B, dtype=bool)
    done = np.zeros(B, dtype=bool)
    sign0 = geo._signs(X0[:, 0])
    acc, bad, t_hit = rhs(X, V, want_predictor=True)
    ok &= ~bad.any(axis=1)
    k1X, k1V = V.copy(), acc
    adaptive = n_steps is None
    if adaptive:
        # initial step: a tenth of the time scales |X| / |V| and |V| / |V'| of the geodesic
        nX, nV, nA = geo._norm(X[:, 0]), geo._norm(V[:, 0]), geo._norm(acc[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.maximum(nV / nX, np.where(nV > 0, nA / nV, 0.0))
            h = np.where(rate > 0, 0.1 / rate, 0.5)
        h = np.clip(np.nan_to_num(h, nan=1e-3), 1e-6, 0.5)
    else:
        h = np.full(B, 1.0 / n_steps)
    n_taken = np.zeros(B, dtype=int)
    t_hit_g = np.min(t_hit, axis=1)
    while True:
        act = np.flatnonzero(ok & ~done)
        if act.size == 0:
            break
        ta = t[act]
        ha = h[act]
        if not adaptive:
            grid_next = (np.floor(ta * n_steps + 1e-9) + 1.0) / n_steps
            ha = np.minimum(ha, grid_next - ta)
        ha = np.minimum(ha, 1.0 - ta)
        ha = np.minimum(ha, (0.5 if adaptive else 0.2) * t_hit_g[act])
        too_small = ha < geo._H_MIN
        if np.any(too_small):
            ok[act[too_small]] = False
            keep = ~too_small
            act, ta, ha = act[keep], ta[keep], ha[keep]
            if act.size == 0:
                continue
        Xa, Va = X[act], V[act]
        kX, kV = [k1X[act]], [k1V[act]]
        stage_bad = np.zeros(act.size, dtype=bool)
        tab_a = geo._DP_A if adaptive else geo._RK4_A
        for i, coeffs in enumerate(tab_a[1:]):
            Xs = _old_combine(Xa, ha, coeffs, kX)
            Vs = _old_combine(Va, ha, coeffs, kV)
            last = adaptive and i == len(tab_a) - 2
            a_s, b_s, hit_s = rhs(Xs, Vs, want_predictor=last)
            stage_bad |= b_s.any(axis=1)
            if last:  # the new point: same component as the start
                stage_bad |= (geo._signs(Xs) != sign0[act, None]).any(axis=1)
            kX.append(Vs)
            kV.append(a_s)
        if adaptive:
            Xn, Vn, a_n, hit_n = Xs, Vs, a_s, hit_s  # the 7th stage is the new point (FSAL)
            eX = _old_combine(np.zeros_like(Xa[:, :1]), ha, geo._DP_E, [k[:, :1] for k in kX])[:, 0]
            eV = _old_combine(np.zeros_like(Va[:, :1]), ha, geo._DP_E, [k[:, :1] for k in kV])[:, 0]
            nX = np.maximum(geo._norm(Xa[:, 0]), geo._norm(Xn[:, 0]))
            nV = np.maximum(geo._norm(Va[:, 0]), geo._norm(Vn[:, 0]))
            with np.errstate(invalid="ignore", over="ignore"):
                ra, aa = rtol[act], atol[act]
                err = np.maximum(geo._norm(eX) / (aa + ra * nX), geo._norm(eV) / (aa + ra * nV))
            accept, h_new = geo._step_control(err, ha, stage_bad)
        else:
            Xn = _old_combine(Xa, ha, geo._RK4_B, kX)
            Vn = _old_combine(Va, ha, geo._RK4_B, kV)
            accept = ~stage_bad
            if np.any(accept):  # f at the new point: the first stage of the next step
                a_n, b_n, hit_n = rhs(Xn, Vn, want_predictor=True)
                flipped = geo._signs(Xn) != sign0[act, None]
                accept &= ~(b_n | flipped).any(axis=1)
            h_new = np.where(accept, 1.0 / n_steps, 0.25 * ha)
        sel = np.flatnonzero(accept)
        if sel.size:
            idx = act[sel]
            X[idx], V[idx] = Xn[sel], Vn[sel]
            k1X[idx], k1V[idx] = Vn[sel], a_n[sel]
            t_new = ta[sel] + ha[sel]
            t[idx] = np.where(np.abs(t_new - 1.0) < 1e-13, 1.0, t_new)
            t_hit_g[idx] = np.min(hit_n[sel], axis=1)
            n_taken[idx] += 1
            if not np.isinf(depth):
                # heading for the singular set and already close to it in the flat
                # coordinate r = sigma^{1/N}: r_min / r_max < 1e-3 and r_min predicted to
                # vanish before t = 1
                rmin = (rhs.last_ratio[sel, 0]) ** (1.0 / depth)
                close = (rmin < geo._FLAT_NEAR) & (t[idx] + t_hit_g[idx] < 1.0)
                ok[idx[close]] = False
        h[act] = h_new
        done |= t >= 1.0
        ok &= n_taken <= max_steps
    return X, V, ok, t


@contextlib.contextmanager
def _evaluation(old: bool):
    """Run geodesics with the former evaluation (``old``) or the library's."""
    saved = geo.DepthFrame, geo._Rhs.__call__, geo._integrate, geo._combine
    ratio = geo._Rhs.__dict__["last_ratio"]  # a property now, an attribute before
    if old:
        geo.DepthFrame, geo._Rhs.__call__ = _OldFrame, _old_rhs_call
        geo._integrate, geo._combine = _old_integrate, _old_combine
        del geo._Rhs.last_ratio
    try:
        yield
    finally:
        geo.DepthFrame, geo._Rhs.__call__, geo._integrate, geo._combine = saved
        geo._Rhs.last_ratio = ratio


EVAL_CONFIGS = [
    ((2, 2), 3),
    ((3, 3), 3),
    ((3, 3), np.inf),
    ((5, 5), 3),
    ((10, 10), 3),
    ((3, 2), 3),
    ((2, 4), 3),
]


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def bench_evaluation(n_pairs: int, repeats: int) -> list[dict]:
    """Old and new evaluation path, interleaved per pair, best of ``repeats``."""
    results = []
    for shape, depth in EVAL_CONFIGS:
        pairs = _pairs(shape, depth, n_pairs if shape[0] < 10 else max(1, n_pairs // 3), seed=1)
        totals = {"before_log_s": 0.0, "after_log_s": 0.0, "before_exp_s": 0.0, "after_exp_s": 0.0}
        diff_log = diff_exp = 0.0
        for i, (X, Y) in enumerate(pairs):
            best = dict.fromkeys(totals, np.inf)
            out = {}
            for r in range(repeats):
                order = (True, False) if (i + r) % 2 == 0 else (False, True)
                for old in order:
                    name = "before" if old else "after"
                    with _evaluation(old):
                        t0 = time.process_time()
                        V = geo.depth_log(X, Y, depth)
                        t1 = time.process_time()
                        E = geo.depth_exp(X, V, depth)
                        t2 = time.process_time()
                    best[f"{name}_log_s"] = min(best[f"{name}_log_s"], t1 - t0)
                    best[f"{name}_exp_s"] = min(best[f"{name}_exp_s"], t2 - t1)
                    out[name] = (V, E)
            for k in totals:
                totals[k] += best[k]
            diff_log = max(diff_log, _rel(out["after"][0], out["before"][0]))
            diff_exp = max(diff_exp, _rel(out["after"][1], out["before"][1]))
        entry = {"shape": f"{shape[0]}x{shape[1]}", "depth": str(depth), "pairs": len(pairs)}
        entry |= totals
        entry["speedup_log"] = totals["before_log_s"] / totals["after_log_s"]
        entry["speedup_exp"] = totals["before_exp_s"] / totals["after_exp_s"]
        entry["max_rel_diff_log"], entry["max_rel_diff_exp"] = diff_log, diff_exp
        results.append(entry)
        print(
            f"evaluation {entry['shape']:5} N={entry['depth']:4} log {totals['before_log_s']:.3f} s"
            f" -> {totals['after_log_s']:.3f} s (x{entry['speedup_log']:.2f}), exp "
            f"{totals['before_exp_s']:.4f} s -> {totals['after_exp_s']:.4f} s "
            f"(x{entry['speedup_exp']:.2f}); differences {diff_log:.1e} (log), "
            f"{diff_exp:.1e} (exp)",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--no-swarm", action="store_true")
    parser.add_argument("--only-evaluation", action="store_true")
    parser.add_argument("--eval-pairs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    evaluation_info = {
        "pairs_per_config": args.eval_pairs,
        "repeats": args.repeats,
        "timer": "time.process_time (CPU seconds, one BLAS thread), best of repeats per pair",
    }
    if args.only_evaluation:
        with threadpool_limits(1):
            evaluation = bench_evaluation(args.eval_pairs, args.repeats)
        path = RESULTS_DIR / "log.json"
        payload = json.loads(path.read_text()) if path.exists() else {}
        payload["evaluation_setup"] = evaluation_info
        payload["evaluation"] = evaluation
        print("wrote", write_results("log", payload))
        return
    with threadpool_limits(1):
        counter = _Counter()
        logs = bench_logs(args.pairs, counter)
        swarm = [] if args.no_swarm else bench_swarm()
        evaluation = bench_evaluation(args.eval_pairs, args.repeats)
    payload = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pairs_per_config": args.pairs,
        "timer": "time.process_time (CPU seconds, one BLAS thread)",
        "before": BEFORE,
        "after": AFTER,
        "logs": logs,
        "particle_swarm": swarm,
        "evaluation_setup": evaluation_info,
        "evaluation": evaluation,
    }
    print("wrote", write_results("log", payload))


if __name__ == "__main__":
    main()
