"""dln-manifolds: the Riemannian geometry of the deep linear network.

Points of the upstairs spaces are arrays of shape (N, d, d), input layer
first: ``W[0]`` is W_1 and the end-to-end matrix is ``W[N-1] @ ... @ W[0]``.

The mathematics lives in plain numpy modules (``network``, ``depth_metric``,
``fiber``, ``balanced``, ``entropy``, ``flows``, ``langevin``); the
subpackages :mod:`dln_manifolds.pymanopt` and :mod:`dln_manifolds.geomstats`
are thin adapters over them.
"""

from .depth_metric import (
    DepthFrame,
    depth_christoffel,
    depth_inner_product,
    depth_multipliers,
    depth_operator,
    depth_operator_derivative,
    depth_operator_derivative_adjoint,
    depth_operator_power,
    inverse_depth_operator,
)
from .network import (
    balanced_point,
    end_to_end,
    end_to_end_differential,
    end_to_end_velocity,
    lifted_gradient,
    moments,
    partial_products,
)

__version__ = "0.1.0"

__all__ = [
    "DepthFrame",
    "balanced_point",
    "depth_christoffel",
    "depth_inner_product",
    "depth_multipliers",
    "depth_operator",
    "depth_operator_derivative",
    "depth_operator_derivative_adjoint",
    "depth_operator_power",
    "end_to_end",
    "end_to_end_differential",
    "end_to_end_velocity",
    "inverse_depth_operator",
    "lifted_gradient",
    "moments",
    "partial_products",
]

# Each module below adds its own import block and extends __all__ (keep one
# block per module, so that parallel work does not collide).
# --- fiber (fiber.py) ---
from .fiber import (  # noqa: E402
    FiberNormalSolver,
    fiber_group_element,
    fiber_normal_matrix,
    fiber_normal_operator,
    fiber_restore,
    fiber_retraction,
    fiber_tangent_projection,
    fiber_weingarten,
    generator_to_tangent,
    group_action,
    group_action_exp,
    ness_gradient,
    regularizer_gradient,
    tangent_to_generator,
)

__all__ += [
    "FiberNormalSolver",
    "fiber_group_element",
    "fiber_normal_matrix",
    "fiber_normal_operator",
    "fiber_restore",
    "fiber_retraction",
    "fiber_tangent_projection",
    "fiber_weingarten",
    "generator_to_tangent",
    "group_action",
    "group_action_exp",
    "ness_gradient",
    "regularizer_gradient",
    "tangent_to_generator",
]

# --- balanced manifold (balanced.py) ---
from .balanced import (  # noqa: E402
    BalancedFrame,
    balance_error,
    balanced_dimension,
    balanced_normal_multipliers,
    balanced_orthonormal_basis,
    balanced_restore,
    balanced_retraction,
    balanced_riemannian_hessian,
    balanced_tangent_projection,
    balanced_weingarten,
    check_balanced,
    horizontal_lift,
    horizontal_projection,
    random_balanced_point,
    vertical_projection,
)

__all__ += [
    "BalancedFrame",
    "balance_error",
    "balanced_dimension",
    "balanced_normal_multipliers",
    "balanced_orthonormal_basis",
    "balanced_restore",
    "balanced_retraction",
    "balanced_riemannian_hessian",
    "balanced_tangent_projection",
    "balanced_weingarten",
    "check_balanced",
    "horizontal_lift",
    "horizontal_projection",
    "random_balanced_point",
    "vertical_projection",
]

# --- alignment along the O(d)^(N-1) orbits (alignment.py) ---
from .alignment import (  # noqa: E402
    geodesic_orbit_alignment,
    horizontal_log,
    horizontal_parallel_transport,
    orbit_action,
    orbit_alignment,
    orbit_distance,
)

__all__ += [
    "geodesic_orbit_alignment",
    "horizontal_log",
    "horizontal_parallel_transport",
    "orbit_action",
    "orbit_alignment",
    "orbit_distance",
]

# --- entropy and free energy (entropy.py) ---
from .entropy import (  # noqa: E402
    entropy_gradient,
    free_energy,
    free_energy_gradient,
    log_orthogonal_group_volume,
    log_volume_density,
    orbit_entropy,
    orbit_volume,
    orthogonal_group_volume,
    volume_density,
)

__all__ += [
    "entropy_gradient",
    "free_energy",
    "free_energy_gradient",
    "log_orthogonal_group_volume",
    "log_volume_density",
    "orbit_entropy",
    "orbit_volume",
    "orthogonal_group_volume",
    "volume_density",
]

# --- energies (energies.py) ---
from .energies import (  # noqa: E402
    Energy,
    MatrixCompletionEnergy,
    MatrixSensingEnergy,
    QuadraticEnergy,
    completion_energy_2x2,
    energy_functions,
)

__all__ += [
    "Energy",
    "MatrixCompletionEnergy",
    "MatrixSensingEnergy",
    "QuadraticEnergy",
    "completion_energy_2x2",
    "energy_functions",
]

# --- training: gradient descent, SGD, initializers, regression loss (training.py) ---
from .energies import RegressionEnergy  # noqa: E402
from .training import (  # noqa: E402
    LayersTrainingResult,
    TrainingDivergedError,
    TrainingResult,
    end_to_end_gradient_descent,
    gradient_descent,
    init_weights,
    sgd,
)

__all__ += [
    "LayersTrainingResult",
    "RegressionEnergy",
    "TrainingDivergedError",
    "TrainingResult",
    "end_to_end_gradient_descent",
    "gradient_descent",
    "init_weights",
    "sgd",
]

# --- second-order retraction on (M_{m x n}, g^N) (retraction.py) ---
from .retraction import depth_retraction, retraction_condition_limit  # noqa: E402

__all__ += ["depth_retraction", "retraction_condition_limit"]

# --- geodesics of (M_d, g^N): exp, log, distance (geodesics.py) ---
from .geodesics import (  # noqa: E402
    DifferentComponentsError,
    GeodesicError,
    LogConvergenceError,
    SingularGeodesicError,
    depth_distance,
    depth_exp,
    depth_log,
    depth_parallel_transport,
    direction_geodesic,
)

__all__ += [
    "DifferentComponentsError",
    "GeodesicError",
    "LogConvergenceError",
    "SingularGeodesicError",
    "depth_distance",
    "depth_exp",
    "depth_log",
    "depth_parallel_transport",
    "direction_geodesic",
]
