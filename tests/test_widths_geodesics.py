"""Geodesics of the induced metric on M and F_X for general widths (lists of layers).

Checked against the constraints (balance, end-to-end product), the speed, the Weingarten
maps of the frames (an independent formula for the normal acceleration: for an
orthonormal basis xi_i of the normal space, II(V, V) = sum_i <W_V(xi_i), V> xi_i) and
second differences of the computed curves, the square stack path for square layers, and
each other (log o exp, exp o log, transport). Negative controls drop the normal
acceleration, or only the curvature block of the rank-r layers.
"""

from __future__ import annotations

import geomstats.backend as gs
import numpy as np
import pymanopt
import pytest
from geomstats.learning.frechet_mean import FrechetMean

from dln_manifolds import submanifold_geodesics as sg
from dln_manifolds._linalg import components_differ
from dln_manifolds.balanced import (
    BalancedFrame,
    balance_error,
    balanced_retraction,
    balanced_tangent_projection,
    balanced_weingarten,
    random_balanced_point,
    restore_layers,
)
from dln_manifolds.fiber import fiber_restore, fiber_tangent_projection, fiber_weingarten
from dln_manifolds.geomstats import BalancedManifold as GeomstatsBalanced
from dln_manifolds.geomstats import BalancedMetric
from dln_manifolds.geomstats import Fiber as GeomstatsFiber
from dln_manifolds.network import end_to_end
from dln_manifolds.pymanopt import BalancedManifold, Fiber
from dln_manifolds.pymanopt._submanifold import LayerList

WIDTHS = [(3, 5, 4, 2), (2, 4, 3, 5), (2, 3, 3, 2)]
KINDS = ["balanced", "fiber"]


def flat(layers) -> np.ndarray:
    return np.concatenate([np.ravel(z) for z in layers])


def norm(layers) -> float:
    return float(np.linalg.norm(flat(layers)))


def _scaled(V, size):
    return [v * size for v in V]


def _gauss(rng, W):
    return [rng.standard_normal(w.shape) for w in W]


def _case(kind: str, widths, seed: int, size: float):
    """(W, V, X, project, residual): a point, a tangent vector of norm size |W|, the
    end-to-end matrix (fiber), the tangent projection and the constraint residual."""
    rng = np.random.default_rng(seed)
    B = random_balanced_point(widths=widths, seed=rng)
    if kind == "balanced":
        W, X = B, None

        def project(P, Z):
            return balanced_tangent_projection(P, Z)

        def residual(P):
            return balance_error(P)

    else:
        X = end_to_end(B)
        W = fiber_restore([b * (1 + 0.2 * rng.standard_normal(b.shape)) for b in B], X)

        def project(P, Z):
            return fiber_tangent_projection(P, Z)

        def residual(P):
            return np.linalg.norm(end_to_end(P) - X) / np.linalg.norm(X)

    V = project(W, _gauss(rng, W))
    return W, _scaled(V, size * norm(W) / norm(V)), X, project, residual


def _exp(kind, W, V, X, n_steps=sg.DEFAULT_GEODESIC_STEPS, **kw):
    if kind == "balanced":
        return sg.balanced_exp(W, V, n_steps, **kw)
    return sg.fiber_exp(W, V, X, n_steps, **kw)


def _weingarten_normal(kind, W, V, project):
    """sum_i <W_V(xi_i), V> xi_i over an orthonormal basis of the normal space at W."""
    widths = (W[0].shape[1], *(w.shape[0] for w in W))
    P = np.stack([flat(project(W, sg.unpack_layers(e, widths))) for e in np.eye(flat(W).size)])
    w, Q = np.linalg.eigh(0.5 * (P + P.T))
    normal = Q[:, w < 0.5].T
    out = np.zeros(flat(W).size)
    for xi in normal:
        Xi = sg.unpack_layers(xi, widths)
        if kind == "balanced":
            Wv = balanced_weingarten(W, V, Xi)
        else:
            Wv = fiber_weingarten(W, V, Xi)
        out += (flat(Wv) @ flat(V)) * xi
    return out


def _second_difference(kind, W, V, X, h=1e-3):
    plus = _exp(kind, W, _scaled(V, h), X, n_steps=4)
    minus = _exp(kind, W, _scaled(V, -h), X, n_steps=4)
    return (flat(plus) - 2 * flat(W) + flat(minus)) / h**2


# ---------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("kind", KINDS)
def test_exp_stays_on_the_space_at_constant_speed(kind, widths):
    W, V, X, project, residual = _case(kind, widths, 1, 0.4)
    W1, V1 = _exp(kind, W, V, X, velocity=True)
    assert isinstance(W1, list) and [w.shape for w in W1] == [w.shape for w in W]
    assert residual(W1) < 1e-12
    assert abs(norm(V1) / norm(V) - 1) < 1e-7  # measured 5e-11 to 5e-10
    assert norm([a - b for a, b in zip(V1, project(W1, V1), strict=True)]) < 1e-12 * norm(V1)
    assert norm([a - b for a, b in zip(W1, W, strict=True)]) > 0.3 * norm(V)  # it moved


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("kind", KINDS)
def test_geodesic_equation_against_the_weingarten_map(kind, widths):
    """The computed curve's second difference is the normal vector of the Weingarten map."""
    W, V, X, project, _ = _case(kind, widths, 2, 0.5)
    normal = _weingarten_normal(kind, W, V, project)
    if kind == "balanced":
        acc = sg.balanced_geodesic_acceleration(W, V)
    else:
        acc = sg.fiber_geodesic_acceleration(W, V)
    assert np.linalg.norm(flat(acc) - normal) < 1e-10 * np.linalg.norm(normal)
    fd = _second_difference(kind, W, V, X)
    assert np.linalg.norm(fd - normal) < 1e-5 * np.linalg.norm(normal)


def test_dropping_the_normal_acceleration_breaks_the_geodesic_equation(monkeypatch):
    """Negative control: with II = 0 the restored curve is not a geodesic."""
    W, V, X, project, _ = _case("balanced", (3, 5, 4, 2), 2, 0.5)
    normal = _weingarten_normal("balanced", W, V, project)
    monkeypatch.setattr(
        BalancedFrame, "geodesic_acceleration", lambda self, Z: [np.zeros_like(z) for z in Z]
    )
    fd = _second_difference("balanced", W, V, X)
    assert np.linalg.norm(fd - normal) > 0.1 * np.linalg.norm(normal)


def test_dropping_the_rank_curvature_block_breaks_the_acceleration_and_the_order(monkeypatch):
    """Negative control for general widths: without E_k = 2 C_k Lambda^-1 B_k in the
    perp-perp blocks (two adjacent widths above r), II disagrees with the Weingarten map,
    and exp converges at first order only (the restore map puts the missing normal
    component back at each step, so the second difference of a short curve still
    matches). Measured at n = 10, 20, 40 against n = 160: 8e-7, 5e-8, 3e-9 with the
    block, 7e-3, 3e-3, 2e-3 without (relative to |V|)."""
    W, V, X, project, _ = _case("balanced", (3, 5, 4, 2), 3, 0.5)
    normal = _weingarten_normal("balanced", W, V, project)

    def order_gap():  # of the plain RK4 (uniform steps: a tolerance every step meets)
        coarse, fine = (flat(_exp("balanced", W, V, X, n_steps=n, rtol=1.0)) for n in (10, 40))
        return np.linalg.norm(coarse - fine) / norm(V)

    assert order_gap() < 1e-5
    original = BalancedFrame._layers_acceleration_hat

    def without_block(self, Vh):
        out = original(self, Vh)
        for z in out:
            z[self.r :, self.r :] = 0.0
        return out

    monkeypatch.setattr(BalancedFrame, "_layers_acceleration_hat", without_block)
    acc = flat(sg.balanced_geodesic_acceleration(W, V))
    assert np.linalg.norm(acc - normal) > 1e-2 * np.linalg.norm(normal)
    assert order_gap() > 1e-3


def test_the_rank_curvature_block_vanishes_when_one_width_is_r():
    """Widths (2, 3, 3, 2): every layer touches a width r = 2... except the middle one,
    whose perp-perp block is 1 x 1; at (2, 4, 2) it is absent (and II is the moment part)."""
    W, V, _, _, _ = _case("balanced", (2, 4, 2), 4, 0.5)
    frame = BalancedFrame(W)
    acc_hat = frame.to_frame(sg.balanced_geodesic_acceleration(W, V))
    for z in acc_hat:
        assert np.abs(z[2:, 2:]).max(initial=0.0) < 1e-14


# ---------------------------------------------------------------------------
# square layers: the list path gives the stack path
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_square_list_equals_the_stack_path(kind):
    W, V, X, project, _ = _case(kind, (2, 2, 2, 2), 5, 0.3)
    Ws, Vs = np.stack(W), np.stack(V)
    U = project(W, _gauss(np.random.default_rng(6), W))
    if kind == "balanced":
        pairs = [
            (sg.balanced_exp(W, V), sg.balanced_exp(Ws, Vs)),
            (sg.balanced_parallel_transport(W, V, U), sg.balanced_parallel_transport(Ws, Vs, U)),
            (sg.balanced_geodesic_acceleration(W, V), sg.balanced_geodesic_acceleration(Ws, Vs)),
        ]
        T = sg.balanced_exp(Ws, 0.5 * Vs, 10)
        pairs.append((sg.balanced_log(W, list(T), 10), sg.balanced_log(Ws, T, 10)))
    else:
        pairs = [
            (sg.fiber_exp(W, V, X), sg.fiber_exp(Ws, Vs, X)),
            (
                sg.fiber_parallel_transport(W, V, U, X=X),
                sg.fiber_parallel_transport(Ws, Vs, U, X=X),
            ),
            (sg.fiber_geodesic_acceleration(W, V), sg.fiber_geodesic_acceleration(Ws, Vs)),
        ]
        T = sg.fiber_exp(Ws, 0.5 * Vs, X, 10)
        pairs.append((sg.fiber_log(W, list(T), X, 10), sg.fiber_log(Ws, T, X, 10)))
    for lst, stack in pairs:
        assert isinstance(lst, list)
        assert np.linalg.norm(np.stack(lst) - stack) < 1e-9 * max(1.0, np.linalg.norm(stack))


# ---------------------------------------------------------------------------
# log, dist, midpoint
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (2, 4, 3, 5)])
@pytest.mark.parametrize("kind", KINDS)
def test_log_inverts_exp_for_small_vectors(kind, widths):
    W, V, X, _, _ = _case(kind, widths, 7, 0.1)
    T = _exp(kind, W, V, X)
    L = sg.balanced_log(W, T) if kind == "balanced" else sg.fiber_log(W, T, X)
    assert norm([a - b for a, b in zip(L, V, strict=True)]) < 1e-8 * norm(V)


@pytest.mark.parametrize(
    ("widths", "size"),
    [
        ((2, 3, 3, 2), 0.3),
        pytest.param((2, 4, 3, 5), 0.5, marks=pytest.mark.slow),
        pytest.param((3, 5, 4, 2), 0.5, marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_exp_inverts_log_for_moderately_far_pairs(kind, widths, size):
    """T is not built by exp (a retraction step of ``size`` |W|); dist is symmetric to the
    RK4 error (two independent shootings; measured 2e-6 relative at size 0.5)."""
    W, Z, X, _, _ = _case(kind, widths, 8, size)
    if kind == "balanced":
        T = balanced_retraction(W, Z)
        L = sg.balanced_log(W, T)
        back = sg.balanced_dist(T, W)
    else:
        T = fiber_restore([w + z for w, z in zip(W, Z, strict=True)], X)
        L = sg.fiber_log(W, T, X)
        back = sg.fiber_dist(T, W, X)
    E = _exp(kind, W, L, X)
    assert norm([a - b for a, b in zip(E, T, strict=True)]) < 1e-9 * max(norm(W), norm(T))
    assert abs(norm(L) - back) < 2e-5 * norm(L)
    assert norm(L) > 0.5 * size * norm(W)


@pytest.mark.parametrize("kind", KINDS)
def test_midpoint_halves_the_distance(kind):
    W, V, X, _, _ = _case(kind, (2, 3, 3, 2), 9, 0.2)
    n = 10
    T = _exp(kind, W, V, X, n_steps=n)
    if kind == "balanced":
        M = sg.balanced_geodesic_midpoint(W, T, n)
        d1, d2 = sg.balanced_dist(W, M, n), sg.balanced_dist(M, T, n)
    else:
        M = sg.fiber_geodesic_midpoint(W, T, X, n)
        d1, d2 = sg.fiber_dist(W, M, X, n), sg.fiber_dist(M, T, X, n)
    assert abs(d1 - 0.5 * norm(V)) < 1e-7 * norm(V)
    assert abs(d2 - 0.5 * norm(V)) < 1e-7 * norm(V)


def _path_steps(path, n=201):
    points = [flat(path(s)) for s in np.linspace(0.0, 1.0, n)]
    return np.linalg.norm(np.diff(points, axis=0), axis=1), points


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (2, 4, 3, 5), (2, 3, 3, 2), (2, 2, 3, 2)])
def test_balanced_continuation_path_is_balanced_and_continuous(widths):
    """The continuation path of the balanced log (frames rotated on the orthogonal groups,
    singular values interpolated) joins far random points of one component through
    balanced points of rank r, without jumps."""
    seeds = (s for s in range(2, 100, 2) if _same_component(widths, s))
    seed = next(seeds)
    W = random_balanced_point(widths=widths, seed=seed)
    T = random_balanced_point(widths=widths, seed=seed + 1)
    path = sg._balanced_frames_path(W, T)
    steps, points = _path_steps(path)
    assert np.linalg.norm(points[0] - flat(W)) < 1e-12
    assert np.linalg.norm(points[-1] - flat(T)) < 1e-12
    assert steps.max() < 2.0 * np.median(steps)
    for s in np.linspace(0.0, 1.0, 11):
        layers = path(s)
        assert balance_error(layers) < 1e-12
        r = min(widths[0], widths[-1])
        assert all(np.linalg.svd(z, compute_uv=False)[r - 1] > 0.1 for z in layers)


def _same_component(widths, seed) -> bool:
    W = random_balanced_point(widths=widths, seed=seed)
    T = random_balanced_point(widths=widths, seed=seed + 1)
    return not components_differ(W, T)


def test_layerwise_polar_path_restored_onto_the_balanced_manifold_jumps():
    """Negative control (the path used before): where a hidden width exceeds r, the
    layer-wise polar path leaves the frames of consecutive layers unaligned, and the
    restore (polar factors of Y_p Q_{p-1}) jumps where those products lose rank: here a
    step 68 times the median one, which the continuation of ``log`` cannot cross."""
    from dln_manifolds.balanced import restore_layers

    W = random_balanced_point(widths=(3, 5, 4, 2), seed=0)
    T = random_balanced_point(widths=(3, 5, 4, 2), seed=1)
    polar = sg._layers_polar_path(W, T)
    steps, _ = _path_steps(lambda s: restore_layers(polar(s)))
    assert steps.max() > 20.0 * np.median(steps)
    steps, _ = _path_steps(sg._balanced_frames_path(W, T))
    assert steps.max() < 2.0 * np.median(steps)


def test_discrete_geodesic_guess_of_the_balanced_log():
    """The initial guess of the balanced log of general widths: the discrete geodesic
    (relaxed polygon of 16 balanced points, segments of nearly equal length) starts with
    the log's velocity to a few percent; a polygon not relaxed (0 sweeps: the frames path)
    does not (negative control)."""
    from dln_manifolds._linalg import pack_layers

    widths = (2, 3, 3, 2)
    W, Z, _, _, _ = _case("balanced", widths, 8, 0.3)
    T = balanced_retraction(W, Z)
    L = flat(sg.balanced_log(W, T))
    Wp, Tp = pack_layers(W), pack_layers(T)
    guess, path = sg._balanced_straightener(Wp, widths)(Tp)
    assert np.linalg.norm(guess - L) < 0.05 * np.linalg.norm(L)
    steps, points = _path_steps(lambda s: path(s), n=17)
    assert steps.max() < 1.2 * steps.min()
    assert max(balance_error(sg._unpack_rows(p, widths)) for p in points) < 1e-12
    sweeps = sg._STRAIGHTEN_SWEEPS
    try:
        sg._STRAIGHTEN_SWEEPS = 0
        rough, _ = sg._balanced_straightener(Wp, widths)(Tp)
    finally:
        sg._STRAIGHTEN_SWEEPS = sweeps
    assert np.linalg.norm(rough - L) > 0.1 * np.linalg.norm(L)


@pytest.mark.slow
def test_balanced_log_of_a_far_random_pair():
    """Independent random balanced points (Haar frames, as in geomstats' generic tests) for
    which the layer-wise polar path restored onto M jumps (a step 120 times the median
    one): exp(log) hits T, the log back has the same length to the RK4 error (measured
    3.8e-6 relative; the geodesic passes singular values down to 0.16), and the geodesic
    is longer than the chord. About 50 s."""
    W = random_balanced_point(widths=(2, 4, 3, 5), seed=2)
    T = random_balanced_point(widths=(2, 4, 3, 5), seed=3)
    L = sg.balanced_log(W, T)
    E = sg.balanced_exp(W, L)
    assert norm([a - b for a, b in zip(E, T, strict=True)]) < 1e-9 * max(norm(W), norm(T))
    assert abs(sg.balanced_dist(T, W) - norm(L)) < 1e-4 * norm(L)
    assert norm(L) > norm([a - b for a, b in zip(W, T, strict=True)])


def _cone_point(lam: float, a0: float, a1: float) -> list[np.ndarray]:
    """The balanced network of widths (2, 2, 1) with singular value lam and frames
    q_0 = (cos a0, sin a0), q_1 = (cos a1, sin a1), q_2 = 1: W_1 = lam q_1 q_0^T,
    W_2 = lam q_1^T."""
    q0, q1 = np.array([np.cos(a0), np.sin(a0)]), np.array([np.cos(a1), np.sin(a1)])
    return [lam * np.outer(q1, q0), lam * q1[None, :]]


def _cone_dist(lam_a, lam_b, a0, a1):
    """Closed form (docs/mathematics.rst, general widths): M of widths (2, 2, 1) is the
    Euclidean cone over the flat torus of metric (|dq_0|^2 + 2|dq_1|^2)/2, of radius
    rho = sqrt(2) lam; from (lam_a, 0, 0) to (lam_b, a0, a1) (|a0|, |a1| <= pi) the link
    angle is theta = sqrt(a0^2/2 + a1^2): a geodesic iff theta < pi, of length
    sqrt(rho_a^2 + rho_b^2 - 2 rho_a rho_b cos theta). Returns (theta, length)."""
    theta = float(np.sqrt(a0**2 / 2 + a1**2))
    ra, rb = np.sqrt(2) * lam_a, np.sqrt(2) * lam_b
    return theta, float(np.sqrt(ra**2 + rb**2 - 2 * ra * rb * np.cos(theta)))


def test_balanced_log_on_the_cone_of_widths_2_2_1():
    """Widths (2, 2, 1) (r = 1): M is exactly a Euclidean cone over a flat torus, where
    the log has a closed form (:func:`_cone_dist`); the computed one matches it to the
    RK4 error (measured 1.6e-6 relative, 5.6e-9 with 80 steps: order 4), exp(log) hits
    T. Negative control: the chord, and the cone over the torus with the unweighted
    metric (|dq_0|^2 + |dq_1|^2)/2, are off by more than 1e-2 relative (measured 0.10,
    0.087)."""
    lam_b, a0, a1 = 0.7, 0.5 * np.pi, -0.3 * np.pi
    A, B = _cone_point(1.0, 0.0, 0.0), _cone_point(lam_b, a0, a1)
    theta, dist = _cone_dist(1.0, lam_b, a0, a1)
    assert theta < np.pi
    L = sg.balanced_log(A, B)
    E = sg.balanced_exp(A, L)
    assert norm([e - b for e, b in zip(E, B, strict=True)]) < 1e-9
    assert abs(norm(L) - dist) < 1e-4 * dist
    chord = norm([a - b for a, b in zip(A, B, strict=True)])
    unweighted = np.sqrt(a0**2 / 2 + a1**2 / 2)
    wrong = np.sqrt(2 + 2 * lam_b**2 - 4 * lam_b * np.cos(unweighted))
    assert min(abs(chord - dist), abs(wrong - dist)) > 1e-2 * dist


#: Across the apex of the cone of widths (2, 2, 1) a geodesic passing the apex at distance
#: rho_0 turns by the link angle pi within a time ~ rho_0 / |V|. The 20 uniform RK4 steps
#: of the former exp did not resolve that: the log of the pair below with no geodesic
#: returned a V whose 20-step exp hit T to 6e-12 while the 40- to 320-step exps of V missed
#: T by 0.28 (a wrong vector), and the log of the pair after it (a geodesic at lambda 0.07)
#: was not found. The step-controlled exp resolves the turn, or refuses it loudly.


@pytest.mark.slow
def test_balanced_log_raises_where_the_cone_has_no_geodesic():
    """Widths (2, 2, 1), link angle theta = 1.04 pi > pi (:func:`_cone_dist`): the cone
    has no geodesic from A to B (the shortest path runs through W = 0), so the log must
    raise. About 20 s."""
    A, B = _cone_point(1.0, 0.0, 0.0), _cone_point(1.0, 0.85 * np.pi, 0.85 * np.pi)
    assert _cone_dist(1.0, 1.0, 0.85 * np.pi, 0.85 * np.pi)[0] > 1.04 * np.pi
    # the log does not converge, or the controlled exp of its candidate needs more than
    # the most substeps (it runs ever closer to W = 0): an error either way
    with pytest.raises(ValueError, match="did not converge|too close to the singular"):
        sg.balanced_log(A, B)


@pytest.mark.slow
def test_balanced_log_near_the_apex_of_the_cone():
    """Widths (2, 2, 1), link angle theta = 0.955 pi < pi: a geodesic of the closed-form
    length (:func:`_cone_dist`) passes the apex at rho_0 = rho^2 sin(theta)/dist (lambda
    0.07). About 25 s."""
    a = 0.78 * np.pi
    A, B = _cone_point(1.0, 0.0, 0.0), _cone_point(1.0, a, a)
    theta, dist = _cone_dist(1.0, 1.0, a, a)
    assert theta < np.pi
    L = sg.balanced_log(A, B)
    assert abs(norm(L) - dist) < 1e-4 * dist  # measured 1.5e-6 at the default rtol 1e-4


def test_different_components_have_no_geodesic():
    """An r x r segment product (here the whole product, widths (2, 3, 3, 2), or the hidden
    square layer of (2, 2, 3, 2)) with opposite determinant signs: inf and ValueError."""
    for widths in [(2, 3, 3, 2), (2, 2, 3, 2)]:
        W = random_balanced_point(widths=widths, seed=10)
        T = [w.copy() for w in W]
        T[0][0, :] *= -1  # D on the left of layer 1 and the right of layer 2: balanced
        T[1][:, 0] *= -1
        T[-1][0, :] *= -1  # and the last layer's output: another component
        assert balance_error(T) < 1e-14
        assert sg.balanced_dist(W, T) == np.inf
        with pytest.raises(ValueError, match="different connected components"):
            sg.balanced_log(W, T)
    W = random_balanced_point(widths=(2, 2, 3, 2), seed=11)
    X = end_to_end(W)
    A = np.diag([-1.0, 1.0])  # the group acts on the hidden square layer, det A < 0
    T = [A @ W[0], W[1] @ np.linalg.inv(A), W[2]]
    assert np.allclose(end_to_end(T), X)
    assert sg.fiber_dist(W, T, X) == np.inf
    with pytest.raises(ValueError, match=r"layers 1\.\.1"):
        sg.fiber_log(W, T, X)


def test_bad_arguments_name_the_argument():
    W, V, X, _, _ = _case("balanced", (3, 5, 4, 2), 12, 0.2)
    with pytest.raises(ValueError, match="V"):
        sg.balanced_exp(W, V[:2])
    with pytest.raises(ValueError, match="U"):
        sg.balanced_parallel_transport(W, V, [np.ones((5, 3)), np.ones((4, 5)), np.ones((3, 4))])
    with pytest.raises(TypeError, match="T must be a list"):
        sg.balanced_log(W, np.ones(3))
    with pytest.raises(ValueError, match="T is not on the balanced manifold"):
        sg.balanced_log(W, [w + 1.0 for w in W])
    with pytest.raises(ValueError, match="n_steps"):
        sg.balanced_exp(W, V, 0)
    Wf, Vf, X, _, _ = _case("fiber", (3, 5, 4, 2), 12, 0.2)
    with pytest.raises(ValueError, match="T is not on the fiber"):
        sg.fiber_log(Wf, [w + 1.0 for w in Wf], X)
    with pytest.raises(ValueError, match="X must have shape"):
        sg.fiber_exp(Wf, Vf, np.ones((3, 2)))


# ---------------------------------------------------------------------------
# parallel transport
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (2, 3, 3, 2)])
@pytest.mark.parametrize("kind", KINDS)
def test_transport_is_a_tangent_isometry_mapping_v_to_the_velocity(kind, widths):
    W, V, X, project, _ = _case(kind, widths, 13, 0.4)
    rng = np.random.default_rng(14)
    U1, U2 = project(W, _gauss(rng, W)), project(W, _gauss(rng, W))
    if kind == "balanced":
        P1, P2, PV = (sg.balanced_parallel_transport(W, V, U) for U in (U1, U2, V))
    else:
        P1, P2, PV = (sg.fiber_parallel_transport(W, V, U, X=X) for U in (U1, U2, V))
    W1, V1 = _exp(kind, W, V, X, velocity=True)
    gram = np.array([[flat(a) @ flat(b) for b in (U1, U2)] for a in (U1, U2)])
    moved = np.array([[flat(a) @ flat(b) for b in (P1, P2)] for a in (P1, P2)])
    assert np.abs(moved - gram).max() < 1e-8 * np.abs(gram).max()
    for P in (P1, P2):
        assert norm([a - b for a, b in zip(P, project(W1, P), strict=True)]) < 1e-12 * norm(P)
    assert norm([a - b for a, b in zip(PV, V1, strict=True)]) < 1e-8 * norm(V)
    # negative control: the tangent projection alone (vector transport) is no isometry
    Q1 = project(W1, U1)
    assert abs(norm(Q1) - norm(U1)) > 1e-4 * norm(U1)


# ---------------------------------------------------------------------------
# adapters
# ---------------------------------------------------------------------------


def test_geomstats_frechet_mean_on_rectangular_balanced_manifold():
    """FrechetMean on flat points of general widths: for two points, the geodesic midpoint
    (gradient descent reaches it in one step, then stops at a critical point)."""
    gs.random.seed(0)
    space = GeomstatsBalanced(widths=(2, 3, 1), equip=False)
    space.equip_with_metric(BalancedMetric, n_steps=6)
    center = space.random_point()  # flat (D,)
    V = space.to_tangent(0.2 * gs.random.normal(size=(2, center.size)), center)
    points = space.metric.exp(V, center)
    assert points.shape == (2, center.size) and np.all(space.belongs(points))
    mean = FrechetMean(space).set(epsilon=1e-14, max_iter=5).fit(points).estimate_
    assert mean.shape == center.shape and space.belongs(mean)
    a, b = (space.to_layers(p) for p in points)
    midpoint = sg.balanced_geodesic_midpoint(a, b, 6)
    assert np.linalg.norm(mean - flat(midpoint)) < 1e-8 * np.linalg.norm(mean)
    logs = space.metric.log(points, mean)
    assert np.linalg.norm(logs.sum(axis=0)) < 1e-7 * np.linalg.norm(logs)  # critical point
    # lists in, lists out; the flat and list layouts agree
    E = space.metric.exp(space.to_layers(V[0]), space.to_layers(center))
    assert isinstance(E, list) and np.allclose(flat(E), points[0], atol=1e-14)


def test_geomstats_frechet_mean_on_rectangular_fiber():
    gs.random.seed(1)
    X = np.array([[1.0, 0.4]])
    space = GeomstatsFiber(X, 2, widths=(2, 2, 1))
    space.metric.n_steps = 6
    center = space.center
    V = space.to_tangent(0.2 * gs.random.normal(size=(2, center.size)), center)
    points = space.metric.exp(V, center)
    assert np.all(space.belongs(points))
    mean = FrechetMean(space).set(epsilon=1e-14, max_iter=5).fit(points).estimate_
    assert space.belongs(mean)
    a, b = (space.to_layers(p) for p in points)
    midpoint = sg.fiber_geodesic_midpoint(a, b, X, 6)
    assert np.linalg.norm(mean - flat(midpoint)) < 1e-8 * np.linalg.norm(mean)
    # transport along the flat geodesics keeps inner products
    U = space.to_tangent(gs.random.normal(size=center.shape), center)
    moved = space.metric.parallel_transport(U, center, direction=V[0])
    assert abs(np.linalg.norm(moved) - np.linalg.norm(U)) < 1e-6 * np.linalg.norm(U)
    assert space.metric.dist(points[0], points[0]) == 0.0


@pytest.mark.parametrize("kind", ["balanced", "fiber"])
def test_pymanopt_geodesics_on_rectangular_spaces(kind):
    if kind == "balanced":
        M = BalancedManifold(widths=(2, 3, 2), seed=15)
    else:
        M = Fiber(np.array([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3]]), 2, seed=15, widths=(3, 4, 2))
    M.geodesic_steps = 10
    x = M.random_point()
    v = 0.3 * M.random_tangent_vector(x)
    y = M.exp(x, v)
    assert isinstance(y, LayerList)
    w = M.log(x, y)
    assert isinstance(w, LayerList) and norm(w - v) < 1e-8
    assert M.dist(x, y) == pytest.approx(0.3, rel=1e-8)
    m = M.pair_mean(x, y)
    assert M.dist(x, m) == pytest.approx(0.15, rel=1e-7)


@pytest.mark.parametrize("kind", ["balanced", "fiber", "square balanced"])
def test_pymanopt_log_and_dist_answer_repeats_from_the_cache(kind, monkeypatch):
    """dist then log of one pair (pymanopt's NelderMead centroid) is one shooting solve;
    the log handed out is a copy; geodesic_tol and other points solve anew; points of
    different components have dist inf without a solve."""
    if kind == "balanced":
        M = BalancedManifold(widths=(2, 3, 2), seed=15)
    elif kind == "fiber":
        M = Fiber(np.array([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3]]), 2, seed=15, widths=(3, 4, 2))
    else:
        M = BalancedManifold(2, 2, seed=15)
    M.geodesic_steps = 10
    solves = []
    solve = M._solve_log
    monkeypatch.setattr(M, "_solve_log", lambda a, b: solves.append(1) or solve(a, b))
    x = M.random_point()
    y = M.exp(x, 0.3 * M.random_tangent_vector(x))
    d = M.dist(x, y)
    w = M.log(x, y)
    assert len(solves) == 1 and d == pytest.approx(float(np.sqrt(M.inner_product(x, w, w))))
    w[0][...] = 0.0  # the caller's copy
    assert M.dist(x, y) == d and len(solves) == 1
    assert M.log(y, x) is not None and len(solves) == 2  # another pair: solved
    M.geodesic_tol = 1e-8
    assert M.dist(x, y) == pytest.approx(d, rel=1e-7) and len(solves) == 3
    if kind == "balanced":  # across components, the points are still checked
        off = LayerList([1.5 * x[0] @ np.diag([-1.0, 1.0]), x[1]])  # unbalanced, det flipped
        with pytest.raises(ValueError, match="balanced"):
            M.dist(x, off)
    if kind == "square balanced":
        flipped = x.copy()
        flipped[0] = x[0] @ np.diag([-1.0, 1.0])  # balanced still; det W_1 changes sign
        assert M.dist(x, flipped) == np.inf and len(solves) == 3
        with pytest.raises(ValueError, match="component"):
            M.log(x, flipped)


@pytest.mark.slow
def test_pymanopt_nelder_mead_runs_on_a_rectangular_balanced_manifold():
    """One NelderMead iteration (Karcher means by log/exp/dist, pair_mean): ~15 s."""
    M = BalancedManifold(widths=(1, 2, 1), seed=16)
    T = M.random_point()

    @pymanopt.function.numpy(M)
    def cost(W):
        return 0.5 * sum(np.sum((w - t) ** 2) for w, t in zip(W, T, strict=True))

    result = pymanopt.optimizers.NelderMead(max_iterations=2, verbosity=0).run(
        pymanopt.Problem(M, cost)
    )
    assert np.isfinite(result.cost) and balance_error(result.point) < 1e-12


def test_complex_fiber_of_general_widths():
    """The fiber over a complex X (real dimension 2 (D - d_0 d_N)): exp, log, transport."""
    rng = np.random.default_rng(17)
    widths = (2, 3, 3)
    X = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    W = fiber_restore([rng.standard_normal((widths[k + 1], widths[k])) + 0j for k in range(2)], X)
    assert np.linalg.norm(end_to_end(W) - X) < 1e-13 * np.linalg.norm(X)

    def cgauss():
        return [rng.standard_normal(w.shape) + 1j * rng.standard_normal(w.shape) for w in W]

    V = fiber_tangent_projection(W, cgauss())
    V = [0.2 * norm(W) / np.linalg.norm(flat(V)) * v for v in V]
    T = sg.fiber_exp(W, V, X)
    assert T[0].dtype == np.complex128
    assert np.linalg.norm(end_to_end(T) - X) < 1e-13 * np.linalg.norm(X)
    L = sg.fiber_log(W, T, X)
    assert np.linalg.norm(flat(L) - flat(V)) < 1e-8 * np.linalg.norm(flat(V))
    U = fiber_tangent_projection(W, cgauss())
    P = sg.fiber_parallel_transport(W, V, U, X=X)
    assert abs(np.linalg.norm(flat(P)) / np.linalg.norm(flat(U)) - 1) < 1e-8


# ---------------------------------------------------------------------------
# step control of the balanced exp (general widths)
# ---------------------------------------------------------------------------

#: A far pair of the generic tests (TestBalancedManifoldMetric_w3542_full, transport norm):
#: W, and V = log_W(T) with 20 steps; the geodesic passes near the singular layers (smallest
#: singular value 0.09 at t ~ 0.6, 0.5 at the ends), where the 20-step RK4 end point is off
#: by 6e-3 (640 steps as reference; 3.5e-4, 2.2e-5 with 40, 80 steps).
# fmt: off
_NEAR_SINGULAR_W = [
    0.153613553078, 0.501874557642, -0.339365839428, -0.134876251254, -0.144138848131,
    -0.38308380328, -0.309968468956, -0.414308344277, -0.689632603182, 0.116458953282,
    0.245725081582, 0.0522402946783, -0.0261616616112, -0.222134110619, 0.371684163014,
    0.338328399977, -0.0835844416907, -0.251884307442, 0.159476987023, -0.156007692206,
    0.0384111251957, -0.376776333272, -0.769809709129, 0.185029030864, 0.151564773574,
    -0.522988255604, -0.144055055002, -0.162096436178, -0.122329370387, 0.367097947286,
    0.0344402671036, 0.126578781595, 0.246975780248, -0.0451599977208, -0.0781404450759,
    0.304489515583, -0.254093864261, -0.685444357221, 0.137165317611, 0.376769974622,
    0.853631500776, 0.0208624041743, -0.259877636924,
]
_NEAR_SINGULAR_V = [
    -0.177675870525, -0.799895497813, 0.600307864922, 0.332623428448, 0.463229290336,
    0.886881539386, 0.242113568225, 0.341575777688, 0.952985155385, -0.111535905162,
    -0.37479850534, 0.0777450927442, 0.232709064746, 0.717168839358, -0.332191366997,
    -0.381935158926, 0.305699790324, 0.212890748199, -0.203038012649, 0.375134578104,
    0.161146054989, 0.998322189783, 0.983509481948, -0.121275802877, 0.046500828745,
    0.965620045515, 0.107889906374, 0.0543609913638, 0.382909356854, -0.642330083897,
    -0.12853995212, -0.26974729404, -0.219552664397, -0.0140649654181, 0.0203728146973,
    -0.612607162739, 0.0633282828764, 1.1826345511, -0.0849496545771, -0.299297756881,
    -1.31950361318, -0.0657013759237, 0.315918084835,
]
# fmt: on


def _near_singular():
    widths = (3, 5, 4, 2)
    W = restore_layers(sg.unpack_layers(np.array(_NEAR_SINGULAR_W), widths))
    V = balanced_tangent_projection(W, sg.unpack_layers(np.array(_NEAR_SINGULAR_V), widths))
    return W, V


def _uniform_exp(W, V, n, **kw):
    """The plain RK4 of n equal steps: a tolerance the base step always meets."""
    return sg.balanced_exp(W, V, n, rtol=1.0, **kw)


def _end_error(pair, ref) -> float:
    return norm([a - b for a, b in zip(pair[0] + pair[1], ref[0] + ref[1], strict=True)])


def test_controlled_exp_meets_its_tolerance_near_the_singular_layers():
    """Against 160 uniform steps (themselves within 2e-6 of 640 steps on this pair)."""
    W, V = _near_singular()
    ref = _uniform_exp(W, V, 160, velocity=True)
    scale = max(1.0, norm(W), norm(V))
    assert _end_error(sg.balanced_exp(W, V, rtol=1e-4, velocity=True), ref) < 1e-4 * scale
    # negative control: the plain 20 steps miss it by far (measured 5.9e-3, scale 3.45)
    assert _end_error(_uniform_exp(W, V, 20, velocity=True), ref) > 10 * 1e-4 * scale


@pytest.mark.slow
def test_controlled_exp_against_640_steps_near_the_singular_layers():
    W, V = _near_singular()
    ref = _uniform_exp(W, V, 640, velocity=True)
    scale = max(1.0, norm(W), norm(V))
    for rtol in (1e-4, 1e-5, 1e-6):  # measured error / (rtol scale): 0.3 to 0.5
        assert _end_error(sg.balanced_exp(W, V, rtol=rtol, velocity=True), ref) < rtol * scale
    assert _end_error(_uniform_exp(W, V, 20, velocity=True), ref) > 100 * 1e-5 * scale


def test_controlled_transport_keeps_the_norm_near_the_singular_layers():
    W, V = _near_singular()
    U = balanced_tangent_projection(W, _gauss(np.random.default_rng(3), W))
    U = _scaled(U, 1.0 / norm(U))
    drift = abs(norm(sg.balanced_parallel_transport(W, V, U)) - 1.0)
    plain = abs(norm(sg.balanced_parallel_transport(W, V, U, n_steps=20, rtol=1.0)) - 1.0)
    assert drift < 1e-5 < plain  # measured: 3.2e-6 and 3.5e-5


def test_controlled_exp_is_the_plain_rk4_on_a_benign_geodesic():
    """No refinement where the base steps meet the tolerance: the 20-step RK4 to rounding."""
    W, V, _, _, _ = _case("balanced", (3, 5, 4, 2), 1, 0.4)
    a, b = sg.balanced_exp(W, V), _uniform_exp(W, V, 20)
    assert norm([x - y for x, y in zip(a, b, strict=True)]) < 1e-12 * norm(W)


@pytest.mark.slow
def test_log_inverts_the_controlled_exp_on_a_refined_geodesic():
    W, V = _near_singular()
    T = sg.balanced_exp(W, _scaled(V, 0.75))
    T_plain = _uniform_exp(W, _scaled(V, 0.75), 20)
    assert norm([a - b for a, b in zip(T, T_plain, strict=True)]) > 1e-6  # the mesh is refined
    L = sg.balanced_log(W, T)
    scale = max(1.0, norm(W), norm(T))
    assert norm([a - b for a, b in zip(sg.balanced_exp(W, L), T, strict=True)]) < 1e-10 * scale


def test_held_mesh_is_the_controlled_exp_and_is_refined_near_the_singular_layers():
    W, V = _near_singular()
    mesh = sg.balanced_exp_mesh(W, V)
    assert len(mesh) == sg.DEFAULT_GEODESIC_STEPS and max(mesh) >= 3 and min(mesh) == 0
    a, b = sg.balanced_exp(W, V), sg.balanced_exp(W, V, mesh=mesh)
    assert norm([x - y for x, y in zip(a, b, strict=True)]) < 1e-12 * norm(W)


# ---------------------------------------------------------------------------
# batches of networks of general widths (one call, a step control per network)
# ---------------------------------------------------------------------------


def _stacked(*networks):
    """Networks of the same widths as one batch: layers (B, d_{k+1}, d_k)."""
    return [np.stack(layers) for layers in zip(*networks, strict=True)]


def _at(layers, index):
    return [z[index] for z in layers]


def _gap(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def _benign_and_near_singular():
    """A benign geodesic (level 0 everywhere) and the refined one, as two networks."""
    W0, V0, _, _, _ = _case("balanced", (3, 5, 4, 2), 1, 0.4)
    W1, V1 = _near_singular()
    return [W0, W1], [V0, V1]


def test_batch_of_networks_equals_the_networks_one_by_one():
    """exp (with velocity), its meshes, a held batch of meshes and the transport of a batch
    mixing a benign and a refined geodesic are those of the networks one by one."""
    Ws, Vs = _benign_and_near_singular()
    Us = [_scaled(V, 1.0) for V in Vs[::-1]]  # each network's U: the other's V (projected)
    Us = [balanced_tangent_projection(W, U) for W, U in zip(Ws, Us, strict=True)]
    W, V, U = _stacked(*Ws), _stacked(*Vs), _stacked(*Us)
    W1, V1 = sg.balanced_exp(W, V, velocity=True)
    meshes = sg.balanced_exp_mesh(W, V)
    T = sg.balanced_parallel_transport(W, V, U)
    assert isinstance(meshes, np.ndarray) and meshes.shape == (2, sg.DEFAULT_GEODESIC_STEPS)
    assert max(meshes[0]) == 0 and max(meshes[1]) >= 3  # one plain, one refined
    for i, (Wi, Vi, Ui) in enumerate(zip(Ws, Vs, Us, strict=True)):
        single = sg.balanced_exp_mesh(Wi, Vi)
        assert tuple(meshes[i]) == single
        Ei, Fi = sg.balanced_exp(Wi, Vi, velocity=True, mesh=single)  # = the controlled exp
        scale = max(1.0, norm(Wi), norm(Vi))
        assert _gap(_at(W1, i), Ei) < 1e-12 * scale and _gap(_at(V1, i), Fi) < 1e-12 * scale
        Ti = sg.balanced_parallel_transport(Wi, Vi, Ui)
        assert _gap(_at(T, i), Ti) < 1e-12 * max(1.0, norm(Ui))
    held = sg.balanced_exp(W, V, mesh=meshes)
    assert _gap(held, W1) < 1e-12 * max(1.0, norm(W), norm(V))
    # negative control: one mesh for the whole batch (the benign network's) misses the
    # refined network's end point (measured 6.4e-4 max entry; the equality above catches it)
    shared = sg.balanced_exp(W, V, mesh=tuple(int(k) for k in meshes[0]))
    assert _gap(_at(shared, 1), _at(W1, 1)) > 1e-4


def test_batch_broadcasts_points_against_vectors():
    """One network W against a batch of vectors (2, 3) (and a batch of W against one V):
    results of the broadcast batch shape, each the exp of its own pair."""
    W, V, _, _, _ = _case("balanced", (3, 5, 4, 2), 2, 0.3)
    sizes = np.array([[0.2, 0.5, 1.0], [-0.4, 0.7, 0.1]])
    Vb = [sizes[..., None, None] * z for z in V]
    out = sg.balanced_exp(W, Vb)
    assert [z.shape for z in out] == [(2, 3) + z.shape for z in W]
    for index in [(0, 1), (1, 0)]:
        one = sg.balanced_exp(W, _at(Vb, index))
        assert _gap(_at(out, index), one) < 1e-12 * max(1.0, norm(W))
    Wb = _stacked(W, W)
    assert [z.shape for z in sg.balanced_exp(Wb, V)] == [(2,) + z.shape for z in W]
    meshes = sg.balanced_exp_mesh(W, Vb)
    assert meshes.shape == (2, 3, sg.DEFAULT_GEODESIC_STEPS)
    # a held tuple or (1, n) array is every network's mesh
    zero = (0,) * sg.DEFAULT_GEODESIC_STEPS
    a = sg.balanced_exp(W, Vb, mesh=zero)
    b = sg.balanced_exp(W, Vb, mesh=np.zeros((1, sg.DEFAULT_GEODESIC_STEPS), dtype=int))
    assert _gap(a, b) == 0.0
    with pytest.raises(ValueError, match=r"^V has batch axes \(2, 3\)"):
        sg.balanced_exp(_stacked(W, W, W, W), Vb)
    with pytest.raises(ValueError, match=r"^mesh has batch axes \(4,\)"):
        sg.balanced_exp(W, Vb, mesh=np.zeros((4, sg.DEFAULT_GEODESIC_STEPS), dtype=int))
    with pytest.raises(ValueError, match=r"^U has batch axes \(4,\).*\(2, 3\), those of W and V$"):
        sg.balanced_parallel_transport(W, Vb, _stacked(V, V, V, V))


def test_a_batch_with_one_failing_network_raises_naming_it():
    Ws, Vs = _benign_and_near_singular()
    W, V = _stacked(*Ws), _stacked(*Vs)
    # a network off the balanced manifold: named by its batch index
    off = [z.copy() for z in W]
    off[0][1] *= 1.5
    with pytest.raises(ValueError, match=r"^W \(network \(1,\) of the batch\) is not on the"):
        sg.balanced_exp(off, V)
    # a geodesic that needs more than 64 substeps of a base step (the near-singular one
    # with 2 base steps and rtol 1e-9; the benign network alone passes)
    with pytest.raises(ValueError, match=r"geodesic of network \(1,\) of the batch needs more"):
        sg.balanced_exp(W, V, 2, rtol=1e-9)
    assert sg.balanced_exp_mesh(Ws[0], Vs[0], 2, rtol=1e-9)


def _count_calls(monkeypatch, module, names) -> list[str]:
    """Wrap the functions ``names`` of ``module`` so that each call appends its name to the
    returned list (the calls of an adapter into the core)."""
    calls = []

    def counted(fun):
        def wrapped(*args, **kwargs):
            calls.append(fun.__name__)
            return fun(*args, **kwargs)

        return wrapped

    for name in names:
        monkeypatch.setattr(module, name, counted(getattr(module, name)))
    return calls


def test_geomstats_exp_and_transport_pass_the_batch_in_one_call(monkeypatch):
    """BalancedManifold(widths=...): exp, the meshes held by its VJPs and the transport of
    (2, 2) flat points are one core call each, equal to the points one by one."""
    import dln_manifolds.geomstats.balanced as adapter

    gs.random.seed(1)
    space = GeomstatsBalanced(widths=(3, 5, 4, 2))
    W = space.random_point(4).reshape(2, 2, -1)
    V = space.to_tangent(0.3 * gs.random.normal(size=W.shape), W)
    U = space.to_tangent(gs.random.normal(size=W.shape), W)
    names = ("balanced_exp", "balanced_exp_mesh", "balanced_parallel_transport")
    calls = _count_calls(monkeypatch, adapter, names)
    E = space.metric.exp(V, W)
    meshes = space._geodesic_meshes(W, V, space.metric.n_steps)
    T = space.metric.parallel_transport(U, W, direction=V)
    held = space._geodesic_exp(W, V, space.metric.n_steps, meshes=meshes.reshape(4, -1))
    assert calls == [
        "balanced_exp",
        "balanced_exp_mesh",
        "balanced_parallel_transport",
        "balanced_exp",
    ]
    assert meshes.shape == (2, 2, space.metric.n_steps)
    assert np.max(np.abs(held - E)) < 1e-12 * np.max(np.abs(W))
    for index in np.ndindex(2, 2):
        layers = [space.to_layers(a[index]) for a in (W, V, U)]
        e = sg.balanced_exp(layers[0], layers[1], space.metric.n_steps)
        t = sg.balanced_parallel_transport(*layers, n_steps=space.metric.n_steps)
        assert np.max(np.abs(E[index] - flat(e))) < 1e-12 * np.max(np.abs(W))
        assert np.max(np.abs(T[index] - flat(t))) < 1e-12 * np.max(np.abs(U))


# ---------------------------------------------------------------------------
# batches of networks on their fibers (one RK4 run for the batch)
# ---------------------------------------------------------------------------


def _fiber_pair():
    """Two networks of widths (3, 5, 4, 2) on different fibers, velocities and vectors."""
    cases = [_case("fiber", (3, 5, 4, 2), seed, size) for seed, size in ((1, 0.4), (2, 0.8))]
    Ws, Vs, Xs = ([c[i] for c in cases] for i in range(3))
    rng = np.random.default_rng(5)
    Us = [fiber_tangent_projection(W, _gauss(rng, W)) for W in Ws]
    return Ws, Vs, Us, Xs


def test_fiber_batch_equals_the_networks_one_by_one():
    """exp (with velocity) and transport of a batch of two networks on their own fibers
    (X one per network, or the default products) are those of the networks one by one
    (measured: within 1.4e-15 of them; the batch restores and projects in batched solves,
    the single network through its own)."""
    Ws, Vs, Us, Xs = _fiber_pair()
    W, V, U = _stacked(*Ws), _stacked(*Vs), _stacked(*Us)
    for X in (np.stack(Xs), None):
        E, F = sg.fiber_exp(W, V, X, velocity=True)
        T = sg.fiber_parallel_transport(W, V, U, X=X)
        for i, (Wi, Vi, Ui, Xi) in enumerate(zip(Ws, Vs, Us, Xs, strict=True)):
            Ei, Fi = sg.fiber_exp(Wi, Vi, Xi, velocity=True)
            scale = max(1.0, norm(Wi), norm(Vi))
            assert _gap(_at(E, i), Ei) < 1e-13 * scale and _gap(_at(F, i), Fi) < 1e-13 * scale
            Ti = sg.fiber_parallel_transport(Wi, Vi, Ui, X=Xi)
            assert _gap(_at(T, i), Ti) < 1e-13 * max(1.0, norm(Ui))
            assert np.linalg.norm(end_to_end(_at(E, i)) - Xi) < 1e-12 * np.linalg.norm(Xi)
    # negative control: one X for the batch (the first network's) moves the second
    # network onto the first one's fiber (measured: 8.3 max entry off its own end point;
    # the equality above catches it)
    shared = sg.fiber_exp(W, V, Xs[0])
    assert _gap(_at(shared, 1), sg.fiber_exp(Ws[1], Vs[1], Xs[1])) > 1e-2
    assert _gap(_at(shared, 0), sg.fiber_exp(Ws[0], Vs[0], Xs[0])) < 1e-13 * norm(Ws[0])


def test_fiber_batch_broadcasts_points_against_vectors():
    """One network W against a batch of vectors (2, 3) (and a batch of W against one V and
    one X): results of the broadcast batch shape, each the exp of its own pair."""
    W, V, X, _, _ = _case("fiber", (3, 5, 4, 2), 3, 0.3)
    sizes = np.array([[0.2, 0.5, 1.0], [-0.4, 0.7, 0.1]])
    Vb = [sizes[..., None, None] * z for z in V]
    out = sg.fiber_exp(W, Vb, X)
    assert [z.shape for z in out] == [(2, 3) + z.shape for z in W]
    moved = sg.fiber_parallel_transport(W, Vb, V, X=X)
    for index in [(0, 1), (1, 0)]:
        one = sg.fiber_exp(W, _at(Vb, index), X)
        assert _gap(_at(out, index), one) < 1e-13 * max(1.0, norm(W))
        one = sg.fiber_parallel_transport(W, _at(Vb, index), V, X=X)
        assert _gap(_at(moved, index), one) < 1e-13 * max(1.0, norm(V))
    Wb = _stacked(W, W)
    assert [z.shape for z in sg.fiber_exp(Wb, V, X)] == [(2,) + z.shape for z in W]
    with pytest.raises(ValueError, match=r"^V has batch axes \(2, 3\)"):
        sg.fiber_exp(_stacked(W, W, W, W), Vb, X)
    with pytest.raises(ValueError, match=r"^X has batch axes \(4,\)"):
        sg.fiber_exp(Wb, V, np.stack([X] * 4))
    with pytest.raises(ValueError, match=r"^U has batch axes \(4,\).*\(2, 3\), those of W and V$"):
        sg.fiber_parallel_transport(W, Vb, _stacked(V, V, V, V), X=X)


def test_fiber_batch_with_a_rank_deficient_network_raises_naming_it():
    Ws, Vs, _, _ = _fiber_pair()
    W, V = _stacked(*Ws), _stacked(*Vs)
    W[0][1] = 0.0  # the second network's first layer: a zero end-to-end matrix
    with pytest.raises(ValueError, match=r"^end-to-end matrix of W \(network \(1,\) of the batch"):
        sg.fiber_exp(W, V)
    with pytest.raises(ValueError, match=r"^end-to-end matrix of W \(network \(1,\) of the batch"):
        sg.fiber_parallel_transport(W, V, V)


def test_complex_fiber_batch_equals_the_networks_one_by_one():
    """Two complex networks over one complex X: exp and transport of the batch."""
    rng = np.random.default_rng(17)
    X = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    Ws, Vs = [], []
    for _ in range(2):
        W = fiber_restore([rng.standard_normal(s) + 0j for s in ((3, 2), (3, 3))], X)
        V = fiber_tangent_projection(W, [rng.standard_normal(w.shape) + 1j for w in W])
        Ws.append(W)
        Vs.append([0.2 * norm(W) / norm(V) * v for v in V])
    W, V = _stacked(*Ws), _stacked(*Vs)
    E = sg.fiber_exp(W, V, X)
    T = sg.fiber_parallel_transport(W, V, _stacked(*Vs[::-1]), X=X)
    assert E[0].dtype == np.complex128
    for i in range(2):
        assert _gap(_at(E, i), sg.fiber_exp(Ws[i], Vs[i], X)) < 1e-13 * norm(Ws[i])
        Ti = sg.fiber_parallel_transport(Ws[i], Vs[i], Vs[1 - i], X=X)
        assert _gap(_at(T, i), Ti) < 1e-13 * norm(Vs[1 - i])


def test_geomstats_fiber_exp_and_transport_pass_the_batch_in_one_call(monkeypatch):
    """Fiber(widths=...): exp and transport of (2, 2) flat points are one core call each,
    equal to the points one by one."""
    import dln_manifolds.geomstats.fiber as adapter

    gs.random.seed(1)
    X = np.array([[1.0, 0.3, -0.2], [0.1, 0.8, 0.5]])
    space = GeomstatsFiber(X, 3, widths=(3, 5, 4, 2))
    W = space.random_point(4).reshape(2, 2, -1)
    V = space.to_tangent(0.3 * gs.random.normal(size=W.shape), W)
    U = space.to_tangent(gs.random.normal(size=W.shape), W)
    calls = _count_calls(monkeypatch, adapter, ("fiber_exp", "fiber_parallel_transport"))
    E = space.metric.exp(V, W)
    T = space.metric.parallel_transport(U, W, direction=V)
    assert calls == ["fiber_exp", "fiber_parallel_transport"]
    assert E.shape == T.shape == W.shape
    for index in np.ndindex(2, 2):
        layers = [space.to_layers(a[index]) for a in (W, V, U)]
        e = sg.fiber_exp(layers[0], layers[1], X, space.metric.n_steps)
        t = sg.fiber_parallel_transport(*layers, X=X, n_steps=space.metric.n_steps)
        assert np.max(np.abs(E[index] - flat(e))) < 1e-13 * np.max(np.abs(W))
        assert np.max(np.abs(T[index] - flat(t))) < 1e-13 * np.max(np.abs(U))
