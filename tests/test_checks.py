"""Input validation: every bad input raises ValueError/TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

from dln_manifolds import (
    MatrixSensingEnergy,
    QuadraticEnergy,
    balanced_point,
    depth_christoffel,
    depth_inner_product,
    depth_multipliers,
    depth_operator,
    depth_operator_derivative,
    depth_operator_derivative_adjoint,
    depth_operator_power,
    end_to_end,
    end_to_end_differential,
    end_to_end_velocity,
    inverse_depth_operator,
    lifted_gradient,
    moments,
)
from dln_manifolds._checks import (
    as_matrix,
    as_matrix_batch,
    as_stack,
    check_depth,
    check_finite_depth,
    check_full_rank,
    check_positive,
)
from dln_manifolds.flows import integrate_flow
from dln_manifolds.pymanopt import EndToEndMatrices

X3 = np.diag([2.0, 1.0, 0.5])
Z3 = np.ones((3, 3))
W3 = np.stack([np.eye(3)] * 4)


def _raises(exc, name, *phrases):
    """pytest.raises whose message names the argument ``name`` (a whole word, case-sensitive)
    and contains every regex in ``phrases`` (case-insensitive)."""
    pattern = rf"(?s)(?=.*\b{name}\b)" + "".join(f"(?=.*(?i:{p}))" for p in phrases)
    return pytest.raises(exc, match=pattern)


# ---------------------------------------------------------------------------
# Matrices: shape, squareness, finiteness, dtype
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [np.ones(3), np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 3, 3)), np.ones((0, 0)), 1.0],
    ids=["vector", "2x3", "3x2", "stack", "empty", "scalar"],
)
def test_base_point_shape(bad):
    with _raises(ValueError, "X"):
        depth_operator(bad, 2, Z3)


def test_non_square_x_needs_z_of_its_shape():
    """A rectangular X is a point of (M_{m x n}, g^N); Z must have its shape."""
    with _raises(ValueError, "Z", r"\(\.\.\., 2, 3\)"):
        depth_operator(np.ones((2, 3)), 2, Z3)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_base_point_not_finite(value):
    X = X3.copy()
    X[1, 2] = value
    with _raises(ValueError, "X", "NaN or Inf"):
        depth_operator(X, 2, Z3)


def test_tangent_not_finite():
    Z = Z3.copy()
    Z[0, 0] = np.nan
    with _raises(ValueError, "Z", "NaN or Inf"):
        depth_operator(X3, 2, Z)


@pytest.mark.parametrize("bad", [np.ones((2, 2)), np.ones((3, 4)), np.ones(9), np.ones((2, 4, 4))])
def test_tangent_wrong_shape(bad):
    with _raises(ValueError, "Z", r"\(\.\.\., 3, 3\)"):
        depth_operator(X3, 2, bad)


@pytest.mark.parametrize("bad", ["abc", None, np.array(["a", "b"]), np.array([[{}]], dtype=object)])
def test_not_numbers(bad):
    with _raises(TypeError, "X"):
        depth_operator(bad, 2, Z3)


def test_inner_product_names_both_vectors():
    with _raises(ValueError, "Z1"):
        depth_inner_product(X3, 2, np.ones((2, 2)), Z3)
    with _raises(ValueError, "Z2"):
        depth_inner_product(X3, 2, Z3, np.ones((2, 2)))


def test_derivative_names_its_arguments():
    with _raises(ValueError, "V"):
        depth_operator_derivative(X3, 2, np.ones((2, 2)), Z3)
    with _raises(ValueError, "Z"):
        depth_operator_derivative(X3, 2, Z3, np.full((3, 3), np.inf))


def test_derivatives_take_single_matrices():
    batch = np.ones((2, 3, 3))
    with _raises(ValueError, "V", r"\(3, 3\)"):
        depth_operator_derivative(X3, 2, batch, Z3)
    with _raises(ValueError, "Y"):
        depth_operator_derivative_adjoint(X3, 2, Z3, batch)
    with _raises(ValueError, "U_vec"):
        depth_christoffel(X3, 2, batch, Z3)


@pytest.mark.parametrize("power,exc", [(np.nan, ValueError), ("1/2", TypeError), (True, TypeError)])
def test_operator_power_argument(power, exc):
    with _raises(exc, "power"):
        depth_operator_power(X3, 2, Z3, power)


def test_checks_helpers_use_given_name():
    with _raises(ValueError, "target"):
        as_matrix(np.ones((2, 3)), "target")
    with _raises(ValueError, "Y"):
        as_matrix_batch(np.ones((3, 2)), 3, "Y")
    with _raises(ValueError, "layers"):
        as_stack(np.ones((3, 3)), "layers")
    assert as_matrix([[1, 2], [3, 4]]).dtype == np.float64
    assert as_matrix(np.eye(2, dtype=np.complex64)).dtype == np.complex128


# ---------------------------------------------------------------------------
# Depth
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, -1, -np.inf])
def test_depth_below_one(depth):
    with _raises(ValueError, "depth", ">= 1"):
        depth_operator(X3, depth, Z3)


@pytest.mark.parametrize("depth", [2.5, 0.5, np.nan, "3", None, 3 + 0j])
def test_depth_not_integer(depth):
    with _raises(TypeError, "depth"):
        depth_operator(X3, depth, Z3)


@pytest.mark.parametrize("depth", [True, False, np.True_])
def test_depth_bool(depth):
    with _raises(TypeError, "depth"):
        depth_operator(X3, depth, Z3)


@pytest.mark.parametrize("depth", [3, 3.0, np.int64(3), np.float32(3), np.uint8(3)])
def test_depth_integral_values_accepted(depth):
    assert check_depth(depth) == 3
    assert isinstance(check_depth(depth), int)
    np.testing.assert_allclose(depth_operator(X3, depth, Z3), depth_operator(X3, 3, Z3))


def test_depth_inf_accepted_where_meaningful():
    assert check_depth(np.inf) == np.inf
    assert check_depth(float("inf")) == np.inf
    with _raises(ValueError, "depth", "finite"):
        check_finite_depth(np.inf)
    with _raises(ValueError, "depth", "finite"):
        balanced_point(X3, np.inf)


def test_depth_errors_in_other_entry_points():
    with _raises(ValueError, "depth"):
        depth_multipliers(np.ones(3), 0)
    with _raises(TypeError, "depth"):
        balanced_point(X3, 2.5)
    with _raises(TypeError, "depth"):
        EndToEndMatrices(3, depth=1.5)
    with _raises(ValueError, "depth"):
        EndToEndMatrices(3, depth=0)


# ---------------------------------------------------------------------------
# Rank
# ---------------------------------------------------------------------------


def test_inverse_at_rank_deficient_point():
    X = np.diag([1.0, 1.0, 0.0])
    with _raises(ValueError, "X", "rank-deficient"):
        inverse_depth_operator(X, 3, Z3)
    # the forward operator is defined on the closure
    assert np.all(np.isfinite(depth_operator(X, 3, Z3)))


def test_inverse_at_numerically_singular_point():
    X = np.diag([1.0, 1.0, 1e-17])
    with _raises(ValueError, "X", "condition number"):
        inverse_depth_operator(X, 2, Z3)
    with _raises(ValueError, "X"):
        depth_inner_product(X, 2, Z3, Z3)


def test_derivatives_need_full_rank():
    X = np.outer([1.0, 2.0, 3.0], [1.0, 0.0, 1.0])
    with _raises(ValueError, "X", "rank"):
        depth_operator_derivative(X, 2, Z3, Z3)
    with _raises(ValueError, "X", "rank"):
        depth_christoffel(X, 2, Z3, Z3)


def test_check_full_rank_threshold():
    check_full_rank(np.array([1.0, 1e-3]))
    with _raises(ValueError, "M", "1e\\+03|1000"):
        check_full_rank(np.array([1.0, 1e-4]), "M", max_condition=1e3)


def test_multipliers_input():
    with _raises(ValueError, "s"):
        depth_multipliers(np.ones((2, 2)), 2)
    with _raises(ValueError, "s"):
        depth_multipliers(np.array([1.0, -1.0]), 2)
    with _raises(ValueError, "s"):
        depth_multipliers(np.array([1.0, np.nan]), 2)


# ---------------------------------------------------------------------------
# Network maps
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [np.ones(3), np.ones((3, 3)), np.ones((2, 3, 4)), np.ones((0, 3, 3))]
)
def test_stack_shape(bad):
    # (..., N, d, d) with extra leading axes is a batch of networks, valid since the
    # network maps accept batches (tests/test_network.py checks those).
    for fun in (end_to_end, moments):
        with _raises(ValueError, "W", r"\(N, d, d\)|N >= 1"):
            fun(bad)


def test_stack_not_finite():
    W = W3.copy()
    W[2, 0, 0] = np.inf
    with _raises(ValueError, "W", "NaN or Inf"):
        end_to_end(W)


def test_second_stack_must_match():
    with _raises(ValueError, "V", "4 layers"):
        end_to_end_differential(W3, W3[:3])
    with _raises(ValueError, "V", "2 x 2|\\(2, 2\\)"):
        end_to_end_differential(W3[:, :2, :2], W3)


@pytest.mark.parametrize("bad", [np.ones((2, 2)), np.ones((2, 3, 3)), np.ones(3)])
def test_gradient_shape(bad):
    for fun in (lifted_gradient, end_to_end_velocity):
        with _raises(ValueError, "dE"):
            fun(W3, bad)


def test_rotations_not_orthogonal():
    rot = np.stack([np.eye(3)] * 3)
    rot[1] = np.diag([1.0, 2.0, 1.0])
    with _raises(ValueError, "rotations", "orthogonal"):
        balanced_point(X3, 4, rotations=rot)


def test_rotations_wrong_count_or_size():
    with _raises(ValueError, "rotations"):
        balanced_point(X3, 4, rotations=np.stack([np.eye(3)] * 2))
    with _raises(ValueError, "rotations"):
        balanced_point(X3, 4, rotations=np.stack([np.eye(2)] * 3))
    with _raises(ValueError, "rotations", "NaN"):
        balanced_point(X3, 2, rotations=np.full((1, 3, 3), np.nan))


def test_balanced_point_needs_square_x():
    with _raises(ValueError, "X", "square"):
        balanced_point(np.ones((2, 3)), 2)


# ---------------------------------------------------------------------------
# Manifold, energies, integrator, scalars
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "d,exc",
    [(0, ValueError), (-2, ValueError), (2.5, TypeError), (True, TypeError), ("3", TypeError)],
)
def test_manifold_dimension(d, exc):
    with _raises(exc, "d"):
        EndToEndMatrices(d)


def test_manifold_point_shape():
    M = EndToEndMatrices(3, 2)
    with _raises(ValueError, "point", r"\(3, 3\)"):
        M.retraction(np.eye(4), np.zeros((4, 4)))
    with _raises(ValueError, "point"):
        M.retraction(np.full((3, 3), np.nan), np.ones((3, 3)))
    with _raises(ValueError, "point"):  # the pymanopt name of the argument, not the core's X
        M.euclidean_to_riemannian_gradient(np.full((3, 3), np.nan), np.eye(3))


def test_energy_inputs():
    with _raises(ValueError, "target", "matrix"):  # a vector; rectangular is fine
        QuadraticEnergy(np.ones(3))
    with _raises(ValueError, "scale"):
        QuadraticEnergy(np.eye(2), scale=-1.0)
    with _raises(ValueError, "sensing"):
        MatrixSensingEnergy(np.ones((4, 2, 3)), np.ones(4))
    with _raises(ValueError, "measurements"):
        MatrixSensingEnergy(np.ones((4, 2, 2)), np.ones(3))


def test_integrator_inputs():
    def v(t, y):
        return -y

    with _raises(ValueError, "t_final"):
        integrate_flow(v, np.ones(2), 0.0)
    with _raises(ValueError, "dt"):
        integrate_flow(v, np.ones(2), 1.0, dt=-0.1)
    with _raises(ValueError, "method"):
        integrate_flow(v, np.ones(2), 1.0, method="rk5")
    with _raises(ValueError, "adaptive"):
        integrate_flow(v, np.ones(2), 1.0, method="heun", adaptive=True)
    with _raises(ValueError, "save_every"):
        integrate_flow(v, np.ones(2), 1.0, save_every=0)
    with _raises(ValueError, "y0", "NaN"):
        integrate_flow(v, np.array([1.0, np.nan]), 1.0)


@pytest.mark.parametrize(
    "value,exc",
    [
        (0.0, ValueError),
        (-1, ValueError),
        (np.inf, ValueError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
def test_check_positive(value, exc):
    with _raises(exc, "beta"):
        check_positive(value, "beta")


def test_check_matrix_space():
    from dln_manifolds._checks import check_matrix_space

    assert check_matrix_space(3, 2.0) == ((3, 3), 2)
    assert check_matrix_space((2, 5), 4) == ((2, 5), 4)
    assert check_matrix_space(3, np.inf) == ((3, 3), np.inf)
    with pytest.raises(ValueError, match="pair"):
        check_matrix_space((2, 3, 4), 2)
    with pytest.raises(TypeError, match=r"d\[1\]"):
        check_matrix_space((2, 1.5), 2)
    with pytest.raises(ValueError, match="depth must be finite for non-square"):
        check_matrix_space((2, 3), np.inf)


def test_as_generator():
    from dln_manifolds._checks import as_generator

    g = np.random.default_rng(0)
    assert as_generator(g) is g
    assert as_generator(7).random() == np.random.default_rng(7).random()
    seq = np.random.SeedSequence(3)
    assert as_generator(seq).random() == np.random.default_rng(seq).random()
    assert isinstance(as_generator(None), np.random.Generator)
    for bad in (True, 1.5, "0"):
        with pytest.raises(TypeError, match="seed must be None"):
            as_generator(bad)
