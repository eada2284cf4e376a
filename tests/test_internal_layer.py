"""The one internal layer: shared checks and formulas, and no cross-module private imports."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from dln_manifolds._checks import check_count, check_full_rank, check_full_rank_batch
from dln_manifolds.balanced import random_balanced_point
from dln_manifolds.depth_metric import (
    depth_multipliers,
    depth_q_and_scale,
    log_multiplier_from_alpha,
    multiplier_from_alpha,
)

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dln_manifolds"

# Imports of private names across modules (issue 14, item 6): none left.
KNOWN: set[tuple[str, str]] = set()


def _private_imports(root: pathlib.Path) -> set[tuple[str, str]]:
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.add((path.relative_to(root).as_posix(), alias.name))
    return found


def test_no_module_imports_another_modules_private_names():
    found = _private_imports(PACKAGE)
    assert found <= KNOWN, sorted(found - KNOWN)


def test_private_import_scan_sees_a_private_import(tmp_path):
    # negative control: the scan finds the pattern it forbids
    (tmp_path / "a.py").write_text("from .b import _hidden, public\n")
    assert _private_imports(tmp_path) == {("a.py", "_hidden")}


def test_check_full_rank_batch_agrees_with_the_single_check(rng):
    s = np.sort(np.exp(rng.uniform(-3, 3, size=(4, 5, 3))), axis=-1)[..., ::-1]
    check_full_rank_batch(s, "X")  # all full rank: no error
    for index, bad in [((2, 1), [1.0, 0.5, 0.0]), ((0, 4), [1.0, 1.0, 1e-17]), ((3, 0), [0.0] * 3)]:
        t = s.copy()
        t[index] = bad
        with pytest.raises(ValueError, match="W is rank-deficient") as batch_error:
            check_full_rank_batch(t, "W")
        with pytest.raises(ValueError) as single_error:
            check_full_rank(t[index], "W")
        assert str(batch_error.value) == str(single_error.value)


def test_check_full_rank_batch_with_infinite_limit_still_rejects_a_zero_value():
    check_full_rank_batch(np.array([[1e300, 1e-300]]), max_condition=np.inf)
    with pytest.raises(ValueError, match="rank-deficient"):
        check_full_rank_batch(np.array([[1.0, 0.0]]), max_condition=np.inf)


def test_check_count_integral():
    assert check_count(3.0, "n") == 3
    assert check_count(np.int64(3), "n", integral=True) == 3
    with pytest.raises(TypeError, match="n must be an integer >= 1"):
        check_count(3.0, "n", integral=True)
    with pytest.raises(TypeError, match="n must be"):
        check_count(True, "n", integral=True)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        check_count(0, "n", integral=True)


@pytest.mark.parametrize("depth", [1, 2, 3, 7])
def test_log_multiplier_matches_the_sum_of_eq_7_13(rng, depth):
    lam = np.exp(rng.uniform(-1, 1, size=4))
    lam[1] = lam[0]  # a repeated value
    lk, ll = lam[:, None], lam[None, :]
    brute = sum(lk ** (2 * (depth - p)) * ll ** (2 * (p - 1)) for p in range(1, depth + 1))
    q, scale = depth_q_and_scale(depth)
    alpha = 2 * depth * np.log(lam)
    got = np.exp(log_multiplier_from_alpha(alpha[:, None], alpha[None, :], q, scale))
    np.testing.assert_allclose(got, brute, rtol=1e-13)
    np.testing.assert_allclose(got, depth_multipliers(lam**depth, depth), rtol=1e-13)


def test_log_multiplier_does_not_overflow_at_large_depth():
    depth, lam = 2000, np.array([2.0, 1.5])
    q, scale = depth_q_and_scale(depth)
    alpha = 2 * depth * np.log(lam)
    a, c = alpha[:, None], alpha[None, :]
    with np.errstate(over="ignore"):
        assert not np.all(np.isfinite(multiplier_from_alpha(a, c, q, scale)))  # the direct form
    log_m = log_multiplier_from_alpha(a, c, q, scale)
    assert np.all(np.isfinite(log_m))
    # m_11 = N lam_1^{2(N-1)}
    assert log_m[0, 0] == pytest.approx(np.log(depth) + 2 * (depth - 1) * np.log(2.0), rel=1e-14)


def test_balanced_lift_at_large_depth_is_finite():
    from dln_manifolds.balanced import horizontal_lift

    W = random_balanced_point(2, 400, seed=0, spread=4.0)
    H = horizontal_lift(W, np.eye(2))
    assert np.all(np.isfinite(H))


def _second_derivative_brute(W, V):
    # D^2 phi_W[V, V] = 2 sum_{p > q} W_N ... V_p ... V_q ... W_1 (V in two distinct slots)
    N = len(W)
    total = np.zeros((W[-1].shape[0], W[0].shape[1]), dtype=np.result_type(W[0], V[0]))
    for p in range(N):
        for q in range(p):
            term = np.eye(W[0].shape[1])
            for k in range(N):
                term = (V[k] if k in (p, q) else W[k]) @ term
            total = total + term
    return 2.0 * total


@pytest.mark.parametrize("widths", [(3, 3, 3, 3), (2, 4, 3, 5), (3, 2)])
def test_chain_second_derivative_matches_the_sum_over_pairs(rng, widths):
    from dln_manifolds._linalg import chain_second_derivative

    shapes = [(widths[k + 1], widths[k]) for k in range(len(widths) - 1)]
    W = [rng.standard_normal(s) for s in shapes]
    V = [rng.standard_normal(s) + 1j * rng.standard_normal(s) for s in shapes]
    brute = _second_derivative_brute(W, V)
    got = chain_second_derivative(W, V)
    np.testing.assert_allclose(got, brute, rtol=1e-12, atol=1e-12)
    if len(set(widths)) == 1:  # a stack is iterated layer by layer
        np.testing.assert_allclose(chain_second_derivative(np.stack(W), np.stack(V)), brute)
    if len(W) > 1:  # negative control: the first derivative (V in one slot) differs
        first = sum(
            np.linalg.multi_dot([(V[k] if k == p else W[k]) for k in range(len(W))][::-1])
            for p in range(len(W))
        )
        assert not np.allclose(got, first)
