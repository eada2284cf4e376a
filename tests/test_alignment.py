"""orbit_alignment: the nearest point of the O(d)^(N-1) orbit, checked by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import dln_manifolds as dm
from dln_manifolds import end_to_end, group_action, orbit_alignment, random_balanced_point
from dln_manifolds.submanifold_geodesics import balanced_log


def _skew(theta: np.ndarray, d: int) -> np.ndarray:
    A = np.zeros((d, d))
    A[np.triu_indices(d, 1)] = theta
    return A - A.T


def _brute_force_distance(W, T, *, starts: int, seed: int) -> float:
    """min over O(d)^(N-1) of |R.W - T| by BFGS on R_k = D_k expm(A_k), every component."""
    N, d, _ = W.shape
    m = d * (d - 1) // 2
    flips = [np.eye(d), np.diag([1.0] * (d - 1) + [-1.0])]
    rng = np.random.default_rng(seed)
    best = np.inf
    for comps in itertools.product(flips, repeat=N - 1):

        def f(x, comps=comps):
            R = np.stack(
                [
                    D @ scipy.linalg.expm(_skew(x[k * m : (k + 1) * m], d))
                    for k, D in enumerate(comps)
                ]
            )
            return np.sum((group_action(R, W) - T) ** 2)

        for _ in range(starts):
            res = scipy.optimize.minimize(f, rng.uniform(-np.pi, np.pi, (N - 1) * m), method="BFGS")
            best = min(best, np.sqrt(res.fun))
    return best


def _pair(d, N, seed):
    return random_balanced_point(d, N, seed=seed), random_balanced_point(d, N, seed=seed + 1000)


@pytest.mark.parametrize(("d", "N", "seed"), [(2, 3, 0), (2, 3, 1), (2, 4, 2), (3, 3, 3)])
def test_alignment_stays_in_the_orbit_and_matches_brute_force(d, N, seed):
    W, T = _pair(d, N, seed)
    aligned, R = orbit_alignment(W, T, return_rotations=True)
    # in the orbit: R.W with orthogonal R, same end-to-end matrix, still balanced
    np.testing.assert_allclose(
        R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(d), R.shape), atol=1e-12
    )
    np.testing.assert_allclose(group_action(R, W), aligned, atol=1e-12)
    np.testing.assert_allclose(end_to_end(aligned), end_to_end(W), atol=1e-12)
    assert dm.balance_error(aligned) < 1e-12
    # the minimum over the orbit (BFGS over every component of O(d)^(N-1), several starts)
    got = np.linalg.norm(aligned - T)
    brute = _brute_force_distance(W, T, starts=2 if d == 3 else 4, seed=seed)
    assert got <= brute + 1e-7
    assert got == pytest.approx(brute, rel=1e-6)


def test_negative_control_brute_force_catches_a_non_minimizer():
    """The same comparison fails for an orbit point that is not the nearest one."""
    W, T = _pair(2, 3, 0)
    aligned = orbit_alignment(W, T)
    R = np.stack([np.diag([1.0, -1.0]), np.eye(2)])
    other = group_action(R, aligned)  # still in the orbit, but not nearest
    np.testing.assert_allclose(end_to_end(other), end_to_end(W), atol=1e-12)
    brute = _brute_force_distance(W, T, starts=4, seed=0)
    assert np.linalg.norm(other - T) > brute + 1e-3
    # and a truncated ascent from the identity is not yet optimal
    assert np.linalg.norm(orbit_alignment(W, T, max_sweeps=1) - T) >= np.linalg.norm(aligned - T)


def test_recovers_points_of_the_same_orbit():
    W = random_balanced_point(3, 4, seed=5)
    rng = np.random.default_rng(5)
    R = np.linalg.qr(rng.standard_normal((3, 3, 3)))[0]
    aligned, R_back = orbit_alignment(group_action(R, W), W, return_rotations=True)
    np.testing.assert_allclose(aligned, W, atol=1e-10)
    np.testing.assert_allclose(R_back @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-10)


def test_batched_equals_the_loop_over_points_and_broadcasts():
    d, N = 3, 3
    W = np.stack([random_balanced_point(d, N, seed=s) for s in range(6)]).reshape(2, 3, N, d, d)
    T = np.stack([random_balanced_point(d, N, seed=50 + s) for s in range(6)]).reshape(
        2, 3, N, d, d
    )
    W[0, 1] = np.random.default_rng(0).standard_normal((N, d, d))  # not balanced: identity start
    got, R = orbit_alignment(W, T, return_rotations=True)
    assert got.shape == W.shape and R.shape == (2, 3, N - 1, d, d)
    for i, j in np.ndindex(2, 3):
        np.testing.assert_allclose(got[i, j], orbit_alignment(W[i, j], T[i, j]), rtol=0, atol=1e-13)
    np.testing.assert_allclose(end_to_end(got[0, 1]), end_to_end(W[0, 1]), atol=1e-12)
    # one target for the whole stack
    one = orbit_alignment(W, T[0, 0])
    np.testing.assert_allclose(one[1, 2], orbit_alignment(W[1, 2], T[0, 0]), rtol=0, atol=1e-13)


def test_depth_one_is_trivial_and_inputs_are_not_mutated():
    W = np.array([[[2.0, 1.0], [0.0, 1.0]]])
    T = np.array([[[1.0, 0.0], [0.0, 3.0]]])
    aligned, R = orbit_alignment(W, T, return_rotations=True)
    np.testing.assert_array_equal(aligned, W)
    assert R.shape == (0, 2, 2)
    W2, T2 = _pair(2, 3, 7)
    copies = W2.copy(), T2.copy()
    orbit_alignment(W2, T2)
    np.testing.assert_array_equal(W2, copies[0])
    np.testing.assert_array_equal(T2, copies[1])


def test_geomstats_aligner_is_the_core():
    from dln_manifolds.geomstats import BalancedManifold, OrbitAligner, align_orbit

    W = np.stack([random_balanced_point(2, 3, seed=s) for s in range(2)])
    T = np.stack([random_balanced_point(2, 3, seed=9 + s) for s in range(2)])
    np.testing.assert_array_equal(
        OrbitAligner(BalancedManifold(2, 3)).align(W, T), dm.geodesic_orbit_alignment(W, T)
    )
    np.testing.assert_array_equal(align_orbit(W, T), orbit_alignment(W, T))


def _vertical_ratio(T, V):
    return np.linalg.norm(dm.vertical_projection(T, V)) / np.linalg.norm(V)


def test_geodesic_alignment_makes_the_log_horizontal():
    """Issue 13: geomstats' align must minimize the geodesic distance of M over the orbit.

    At the geodesic optimum the log at the target is horizontal (first variation of
    the distance along the orbit, [G] Thm 13); the Frobenius optimum is critical for
    the chord only (negative control: its log has a vertical part of 2e-2 and is
    longer by 6e-4).
    """
    W, T = _pair(2, 3, 6)  # end-to-end matrices and layers in one component each
    aligned = dm.geodesic_orbit_alignment(W, T)
    # on the orbit of W: same end-to-end matrix, balanced, and W is recovered from it
    np.testing.assert_allclose(end_to_end(aligned), end_to_end(W), atol=1e-12)
    assert dm.balance_error(aligned) < 1e-12
    np.testing.assert_allclose(orbit_alignment(aligned, W), W, atol=1e-10)
    V = balanced_log(T, aligned)
    assert _vertical_ratio(T, V) < 1e-6
    # negative control: the Frobenius optimum is critical for the chord, not for the log
    frob = orbit_alignment(W, T)
    chord = T - frob
    assert np.linalg.norm(dm.vertical_projection(T, chord)) < 1e-12 * np.linalg.norm(chord)
    V_frob = balanced_log(T, frob)
    assert _vertical_ratio(T, V_frob) > 1e-3
    assert np.linalg.norm(V) < np.linalg.norm(V_frob) - 1e-4


def test_geodesic_alignment_batches_components_and_depth_one():
    W = np.stack([random_balanced_point(2, 2, seed=s) for s in (20, 21)])
    T = random_balanced_point(2, 2, seed=22)
    # the point 1 in the other component of GL(d) downstairs: a row of the last layer
    # flipped keeps the balance (only W_N^T W_N enters it)
    if np.sign(np.linalg.det(end_to_end(W[1]))) == np.sign(np.linalg.det(end_to_end(T))):
        W[1, -1, 0] *= -1.0
    assert dm.balance_error(W[1]) < 1e-12
    got = dm.geodesic_orbit_alignment(W, T)
    np.testing.assert_allclose(got[0], dm.geodesic_orbit_alignment(W[0], T), rtol=0, atol=1e-13)
    # different components of GL(d): no curve of M joins them, the Frobenius alignment
    np.testing.assert_array_equal(got[1], orbit_alignment(W[1], T))
    # N = 1: trivial group; inputs are not mutated
    one = np.array([[[2.0, 1.0], [0.0, 1.0]]])
    np.testing.assert_array_equal(dm.geodesic_orbit_alignment(one, np.eye(2)[None]), one)
    copies = W.copy(), T.copy()
    dm.geodesic_orbit_alignment(W, T)
    np.testing.assert_array_equal(W, copies[0])
    np.testing.assert_array_equal(T, copies[1])
    with pytest.raises(ValueError, match="W_target"):
        dm.geodesic_orbit_alignment(W[0], T + 0.1)  # not balanced


def test_bad_arguments_name_the_argument():
    W, T = _pair(2, 3, 0)
    with pytest.raises(ValueError, match="W_target"):
        orbit_alignment(W, T[:2])
    with pytest.raises(ValueError, match="batch shapes"):
        orbit_alignment(np.stack([W, W]), np.stack([T, T, T]))
    with pytest.raises(TypeError, match="return_rotations"):
        orbit_alignment(W, T, return_rotations="yes")


def test_orbit_action_is_the_group_action_on_stacks():
    """Batched O(d)^(N-1) action = the GL(d)^(N-1) action of [R] eq. 1.5, point by point."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((2, 3, 4, 3, 3))
    R = np.linalg.qr(rng.standard_normal((3, 3, 3, 3)))[0]  # batch (3,), broadcasts against (2, 3)
    got = dm.orbit_action(R, W)
    for i, j in np.ndindex(2, 3):
        np.testing.assert_allclose(got[i, j], group_action(R[j], W[i, j]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(end_to_end(got[1, 2]), end_to_end(W[1, 2]), atol=1e-12)
    # negative control: the transpose is the inverse only for orthogonal matrices
    A = R + 0.1 * rng.standard_normal(R.shape)
    assert np.abs(A[0, 1] @ W[0, 0, 1] @ A[0, 0].T - group_action(A[0], W[0, 0])[1]).max() > 1e-3
    with pytest.raises(ValueError, match="rotations must be orthogonal"):
        dm.orbit_action(A, W)
    np.testing.assert_array_equal(dm.orbit_action(None, W[..., :1, :, :]), W[..., :1, :, :])
