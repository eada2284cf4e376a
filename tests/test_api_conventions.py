"""The API conventions of docs/conventions.rst: one name per object, energy arguments,
argument order and randomness."""

from __future__ import annotations

import numpy as np
import pytest

import dln_manifolds as dm
from dln_manifolds import flows, langevin
from dln_manifolds.balanced import random_balanced_point
from dln_manifolds.flows import end_to_end_flow, free_energy_flow, learning_flow

X0 = np.array([[1.1, 0.2], [0.1, 0.6]])  # det > 0
TARGET = np.diag([1.0, 0.5])


def test_aliases_are_gone():
    for name in (
        "depth_frame",
        "end_to_end_differential_adjoint",
        "fiber_center",
        "submersion_differential",
        "svd_frame",
        "orthonormal_basis",
    ):
        assert name not in dm.__all__
        assert not hasattr(dm, name), name
    # one object, one name: no two exported names refer to the same function
    for mod in (dm, flows, langevin):
        objs = [getattr(mod, n) for n in mod.__all__ if callable(getattr(mod, n))]
        assert len({id(o) for o in objs}) == len(objs), mod.__name__


def test_energy_functions_is_exported():
    energy = dm.QuadraticEnergy(TARGET)
    grad, value = dm.energy_functions(energy)
    np.testing.assert_array_equal(grad(X0), X0 - TARGET)
    assert value(X0) == pytest.approx(0.5 * np.sum((X0 - TARGET) ** 2))
    grad, value = dm.energy_functions(energy.gradient)
    assert value is None
    with pytest.raises(TypeError, match="energy must be"):
        dm.energy_functions(3)


@pytest.mark.parametrize("evaluation", ["svd", "factors"])
def test_end_to_end_flow_takes_a_plain_gradient(evaluation):
    energy = dm.QuadraticEnergy(TARGET)
    ref = end_to_end_flow(X0, energy, 3, 0.5, dt=0.05, evaluation=evaluation)
    run = end_to_end_flow(X0, energy.gradient, 3, 0.5, dt=0.05, evaluation=evaluation)
    np.testing.assert_array_equal(run.states, ref.states)
    assert "energy" in ref.monitors and "energy" not in run.monitors
    np.testing.assert_array_equal(run.monitors["singular_values"], ref.monitors["singular_values"])


def test_free_energy_flow_and_gradient_take_a_plain_gradient():
    energy = dm.QuadraticEnergy(TARGET)
    ref = free_energy_flow(X0, energy, 3, 2.0, 0.5, dt=0.05)
    run = free_energy_flow(X0, lambda X: X - TARGET, 3, 2.0, 0.5, dt=0.05)
    np.testing.assert_array_equal(run.states, ref.states)
    assert "free_energy" not in run.monitors and "entropy" in run.monitors
    np.testing.assert_array_equal(
        dm.free_energy_gradient(X0, energy.gradient, depth=3, beta=2.0),
        dm.free_energy_gradient(X0, energy, depth=3, beta=2.0),
    )
    # the free energy itself needs E(X): a gradient is not enough
    with pytest.raises(TypeError, match="value"):
        dm.free_energy(X0, energy.gradient, depth=3, beta=2.0)


def test_learning_flow_takes_a_plain_gradient():
    energy = dm.QuadraticEnergy(TARGET)
    W0 = dm.balanced_point(X0, 3)
    ref = learning_flow(W0, energy, 0.3, dt=0.05)
    run = learning_flow(W0, energy.gradient, 0.3, dt=0.05)
    np.testing.assert_array_equal(run.states, ref.states)
    assert "energy" in ref.monitors and "energy" not in run.monitors


def test_a_bad_gradient_callable_is_refused_at_the_door():
    calls = []

    def wrong_shape(X):
        calls.append(1)
        return np.zeros((3, 3))

    with pytest.raises(ValueError, match=r"energy must return E'\(X\) of shape \(2, 2\)"):
        end_to_end_flow(X0, wrong_shape, 3, 1.0, dt=0.01)
    assert len(calls) == 1  # one check at the door, no integration
    with pytest.raises(ValueError, match="non-finite"):
        free_energy_flow(X0, lambda X: np.full((2, 2), np.nan), 3, 2.0, 1.0, dt=0.01)
    with pytest.raises(TypeError, match="energy must be"):
        end_to_end_flow(X0, "quadratic", 3, 1.0, dt=0.01)


def test_free_energy_argument_order():
    """Point, energy, then depth and beta (keyword-only): the old order fails loudly."""
    energy = dm.QuadraticEnergy(TARGET)
    F = dm.free_energy(X0, energy, depth=3, beta=2.0)
    assert F == pytest.approx(energy.value(X0) - dm.orbit_entropy(X0, 3) / 2.0, rel=1e-14)
    with pytest.raises(TypeError):
        dm.free_energy(X0, 3, 2.0, energy)  # the 0.1 order
    with pytest.raises(TypeError):
        dm.free_energy(X0, energy, 3, 2.0)  # depth and beta are keyword-only
    with pytest.raises(TypeError):
        dm.free_energy_gradient(X0, 3, 2.0, energy)


def test_seed_everywhere():
    """Every public sampler takes ``seed=``; none takes ``rng=``."""
    import inspect

    for mod in (dm, flows, langevin):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not callable(obj) or isinstance(obj, type):
                continue
            params = inspect.signature(obj).parameters
            if "seed" in params and name != "random_balanced_point":
                # keyword-only, so that no positional scalar is read as a seed
                assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY, name
            assert "rng" not in params, name


def test_random_balanced_point_seed_and_global_state():
    a = random_balanced_point(3, 4, seed=7)
    np.testing.assert_array_equal(a, random_balanced_point(3, 4, seed=np.random.default_rng(7)))
    with pytest.raises(TypeError):
        random_balanced_point(3, 4, rng=7)  # the old name is gone
    # documented choice: the global numpy.random.seed does not make seed=None repeatable
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(0)  # noqa: NPY002 (the legacy global state on purpose)
        b = random_balanced_point(3, 4)
        np.random.seed(0)  # noqa: NPY002
        c = random_balanced_point(3, 4)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    assert not np.array_equal(b, c)
