"""Input validation shared by the whole package.

Every public function validates its arguments through these helpers, at its
door and before any work, so that bad input raises a :class:`ValueError` or
:class:`TypeError` naming the user's own argument (for adapter methods the
peer library's name: geomstats ``tangent_vec``, ``base_point``; pymanopt
``point``, ``tangent_vector``) instead of a numpy traceback or a silent NaN.

Policy (checked over every public entry point by ``tests/test_bad_input.py``):

- Array arguments accept anything numpy turns into an array of numbers:
  plain (nested) lists and integer arrays are legitimate and are converted to
  float64 (complex128 where complex input is allowed).
- TypeError: None, strings, objects, **bool arrays** (a mask passed where
  numbers are expected is a bug, not a 0/1 matrix), and **complex input where
  the space is real** (``real=True``). The fiber and the network maps work over
  real or complex numbers; (M_d, g^N), the balanced manifold, the energies,
  the entropy and the samplers are real, and their adapters reject complex
  input instead of casting it (which would drop the imaginary part).
- ValueError: wrong ndim or shape (including empty arrays), NaN or Inf
  entries, depth 0 or negative, non-positive scales.
- Depths and counts: non-integral values (1.5) are a TypeError, integral
  floats (3.0) are accepted, values below the minimum a ValueError.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_matrix",
    "as_stack",
    "as_matrix_batch",
    "check_depth",
    "check_finite_depth",
    "check_positive",
    "check_full_rank",
    "check_count",
    "check_real_scalar",
    "check_nonnegative",
    "as_array",
    "as_arrays",
    "check_widths",
    "as_layer_sequence",
    "as_layer_stack",
    "check_full_rank_batch",
    "full_rank_mask",
    "check_matrix_space",
    "as_generator",
    "check_square_or_widths",
    "check_stack_widths",
]


def _as_float_array(value, name: str, real: bool = False, finite: bool = True) -> np.ndarray:
    if type(value) is np.ndarray and (
        value.dtype == np.float64 or (not real and value.dtype == np.complex128)
    ):  # fast path: the checks run in inner loops (projections, energies)
        if finite and not np.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or Inf entries")
        return value
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be an array of numbers: {exc}") from exc
    if arr.dtype == np.bool_:
        raise TypeError(f"{name} must be an array of numbers, got a bool array")
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        if real:
            raise TypeError(f"{name} must be real, got complex input (dtype {arr.dtype})")
        arr = arr.astype(np.complex128, copy=False)
    else:
        arr = arr.astype(np.float64, copy=False)
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf entries")
    return arr


def as_matrix(X, name: str = "X", *, real: bool = False, d: int | None = None) -> np.ndarray:
    """Return ``X`` as a finite float64 (or complex128) square matrix of shape (d, d).

    ``real=True`` rejects complex input (TypeError); ``d`` fixes the size.
    """
    arr = _as_float_array(X, name, real)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a square matrix of shape (d, d), got shape {arr.shape}")
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be square, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have d >= 1, got shape {arr.shape}")
    if d is not None and arr.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}), got shape {arr.shape}")
    return arr


def as_matrix_batch(Z, d: int, name: str = "Z", *, real: bool = False) -> np.ndarray:
    """Return ``Z`` as a finite array of shape (..., d, d)."""
    arr = _as_float_array(Z, name, real)
    if arr.ndim < 2 or arr.shape[-2:] != (d, d):
        raise ValueError(f"{name} must have shape (..., {d}, {d}), got shape {arr.shape}")
    return arr


def as_stack(
    W, name: str = "W", depth: int | None = None, d: int | None = None, *, real: bool = False
) -> np.ndarray:
    """Return ``W`` as a finite stack of layers of shape (N, d, d).

    ``W[0]`` is the input layer W_1 and ``W[N-1]`` the output layer W_N.
    """
    arr = _as_float_array(W, name, real)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(
            f"{name} must be a stack of square layers of shape (N, d, d), got shape {arr.shape}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have N >= 1 layers and d >= 1, got shape {arr.shape}")
    if depth is not None and arr.shape[0] != depth:
        raise ValueError(f"{name} must have {depth} layers, got {arr.shape[0]}")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have layers of size {d} x {d}, got {arr.shape[1:]}")
    return arr


def check_depth(depth, allow_inf: bool = True) -> int | float:
    """Validate a network depth N: an integer >= 1, or ``numpy.inf`` if allowed."""
    if isinstance(depth, bool):
        raise TypeError("depth must be an integer >= 1 or numpy.inf, got a bool")
    if isinstance(depth, numbers.Integral):
        depth = int(depth)
    elif isinstance(depth, numbers.Real):
        if np.isinf(depth):
            if depth < 0:
                raise ValueError("depth must be >= 1, got -inf")
            if not allow_inf:
                raise ValueError("depth must be a finite integer >= 1 here, got inf")
            return np.inf
        if np.isnan(depth) or depth != int(depth):
            raise TypeError(f"depth must be an integer >= 1 or numpy.inf, got {depth!r}")
        depth = int(depth)
    else:
        raise TypeError(f"depth must be an integer >= 1 or numpy.inf, got {type(depth).__name__}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return depth


def check_finite_depth(depth) -> int:
    """Validate a finite depth N >= 1."""
    return check_depth(depth, allow_inf=False)


def check_positive(value, name: str) -> float:
    """Validate a positive finite real scalar."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def check_full_rank(
    singular_values: np.ndarray, name: str = "X", max_condition: float | None = None
):
    """Raise ValueError if the singular values describe a (numerically) singular matrix.

    Parameters
    ----------
    singular_values : ndarray, shape (d,)
        Singular values in any order.
    name : str
        Name used in the error message.
    max_condition : float, optional
        Largest accepted condition number. Defaults to ``1 / (d * eps)``.
    """
    s = np.asarray(singular_values)
    smax, smin = float(np.max(s)), float(np.min(s))
    if max_condition is None:
        max_condition = 1.0 / (s.size * np.finfo(np.float64).eps)
    if smin <= 0 or smax / smin > max_condition:
        cond = np.inf if smin <= 0 else smax / smin
        raise ValueError(
            f"{name} is rank-deficient or too ill-conditioned "
            f"(condition number {cond:.3g} > {max_condition:.3g})"
        )


def check_full_rank_batch(
    singular_values: np.ndarray, name: str = "X", max_condition: float | None = None
) -> None:
    """:func:`check_full_rank` for a stack of singular values (..., d): raises at the first bad one.

    Singular values in any order; a zero smallest value (also 0/0 at a zero
    matrix) counts as rank-deficient. ``max_condition`` defaults to ``1 / (d * eps)``.
    """
    s = np.asarray(singular_values)
    flat = s.reshape(-1, s.shape[-1])
    bad = ~full_rank_mask(flat, max_condition)
    if np.any(bad):
        check_full_rank(flat[np.argmax(bad)], name, max_condition)


def full_rank_mask(singular_values: np.ndarray, max_condition: float | None = None) -> np.ndarray:
    """True where a stack of singular values (..., d) passes :func:`check_full_rank`: a
    positive smallest value and a condition number at most ``max_condition`` (default
    ``1 / (d * eps)``); shape (...)."""
    s = np.asarray(singular_values)
    if max_condition is None:
        max_condition = 1.0 / (s.shape[-1] * np.finfo(np.float64).eps)
    smax, smin = s.max(axis=-1), s.min(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return (smin > 0) & (smax / smin <= max_condition)


def as_array(
    value,
    name: str,
    shape: tuple[int, ...] = (),
    *,
    real: bool = True,
    batch: bool = False,
    finite: bool = True,
) -> np.ndarray:
    """Return ``value`` as a finite float64 (complex128 unless ``real``) array of ``shape``.

    With ``batch``, leading batch axes are allowed: the shape is ``(..., *shape)``.
    An empty ``shape`` with ``batch`` accepts any non-empty array. With
    ``finite=False`` NaN and Inf entries are let through (for callers that
    propagate them on purpose, as pymanopt's solvers expect of a manifold).
    """
    arr = _as_float_array(value, name, real, finite)
    core = arr.shape[arr.ndim - len(shape) :] if arr.ndim >= len(shape) else None
    ok = core == tuple(shape) and (batch or arr.ndim == len(shape))
    if not ok or arr.size == 0:
        want = ("(..., " + ", ".join(map(str, shape)) + ")") if batch else str(tuple(shape))
        raise ValueError(f"{name} must have shape {want}, got shape {arr.shape}")
    return arr


def broadcast_batch(**batch_shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of the batch shapes of named arguments; ValueError naming them if none."""
    try:
        return np.broadcast_shapes(*batch_shapes.values())
    except ValueError:
        listed = ", ".join(f"{name} {shape}" for name, shape in batch_shapes.items())
        raise ValueError(f"the batch shapes of {listed} do not broadcast") from None


def as_arrays(
    shape: tuple[int, ...], /, *, real: bool = True, batch: bool = False, **arrays
) -> tuple[np.ndarray, ...]:
    """:func:`as_array` on each keyword argument (its keyword is its name); in order."""
    return tuple(as_array(v, name, shape, real=real, batch=batch) for name, v in arrays.items())


def check_count(value, name: str, minimum: int = 1, *, integral: bool = False) -> int:
    """Validate an integer count >= ``minimum``.

    Integral floats such as 3.0 are accepted unless ``integral`` (then only
    :class:`numbers.Integral` values, bool excluded, pass).
    """
    kinds = numbers.Integral if integral else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__}")
    if not isinstance(value, numbers.Integral) and not (np.isfinite(value) and value == int(value)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_matrix_space(d, depth) -> tuple[tuple[int, int], int | float]:
    r"""Validate the size and depth of :math:`(\mathfrak{M}_d, g^N)` (the manifold adapters).

    ``d`` is an integer >= 1 (square matrices (d, d)) or a pair (m, n) of them; ``depth``
    as in :func:`check_depth`, finite for m != n (the rescaled operator
    :math:`\mathcal{A}_\infty` vanishes on the complement block). Returns ``((m, n), depth)``.
    """
    if isinstance(d, (tuple, list)):
        if len(d) != 2:
            raise ValueError(f"d must be an integer or a pair (m, n), got {d!r}")
        m, n = check_count(d[0], "d[0]"), check_count(d[1], "d[1]")
    else:
        m = n = check_count(d, "d")
    depth = check_depth(depth)
    if m != n and np.isinf(depth):
        raise ValueError(
            f"depth must be finite for non-square matrices (shape ({m}, {n})): the rescaled "
            "operator A_inf vanishes on the complement block, so g^inf is not defined there"
        )
    return (m, n), depth


def as_generator(seed, name: str = "seed") -> np.random.Generator:
    """A numpy Generator from None, an int, a SeedSequence or a Generator (returned as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (
        isinstance(seed, (numbers.Integral, np.random.SeedSequence)) and not isinstance(seed, bool)
    ):
        return np.random.default_rng(seed)
    raise TypeError(
        f"{name} must be None, an int, a numpy SeedSequence or Generator, got {type(seed).__name__}"
    )


def check_nonnegative(value, name: str) -> float:
    """Validate a finite real scalar >= 0 (a tolerance that may be zero)."""
    value = check_real_scalar(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_real_scalar(value, name: str) -> float:
    """Validate a finite real scalar (not bool, not complex)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_widths(widths, name: str = "widths", depth: int | None = None) -> tuple[int, ...]:
    """Validate the widths (d_0, ..., d_N) of a network: N + 1 >= 2 integers >= 1.

    With ``depth``, the number of entries must be ``depth + 1``.
    """
    if isinstance(widths, (str, bytes)) or widths is None or np.ndim(widths) != 1:
        raise TypeError(
            f"{name} must be a sequence (d_0, ..., d_N) of integers, got {type(widths).__name__}"
            + (f" of shape {np.shape(widths)}" if isinstance(widths, np.ndarray) else "")
        )
    out = tuple(check_count(w, f"{name}[{k}]") for k, w in enumerate(widths))
    if len(out) < 2:
        raise ValueError(f"{name} must have at least 2 entries (d_0, d_1), got {out}")
    if depth is not None and len(out) != depth + 1:
        raise ValueError(
            f"{name} must have depth + 1 = {depth + 1} entries (d_0, ..., d_N), "
            f"got {len(out)}: {out}"
        )
    return out


def as_layer_sequence(
    W,
    name: str = "W",
    *,
    widths=None,
    depth: int | None = None,
    real: bool = False,
    batch: bool = True,
) -> list[np.ndarray]:
    """Return a network given as a sequence of layers as a list of finite arrays.

    ``W`` is a list or tuple of N >= 1 arrays, input layer first: ``W[k]`` has shape
    (..., d_{k+1}, d_k), and every layer carries the same leading batch axes (none
    unless ``batch``). The layers come back as float64 arrays, or all complex128 if one
    of them is complex (a TypeError with ``real``). ``widths`` (d_0, ..., d_N) and
    ``depth`` N are checked against the layers' shapes when given.
    """
    if not isinstance(W, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of layers, got {type(W).__name__}")
    if len(W) == 0:
        raise ValueError(f"{name} must have N >= 1 layers, got an empty {type(W).__name__}")
    layers = [_as_float_array(layer, f"{name}[{k}]", real) for k, layer in enumerate(W)]
    N = len(layers)
    for k, layer in enumerate(layers):
        if layer.ndim < 2 or (layer.ndim > 2 and not batch):
            want = "(..., d_out, d_in)" if batch else "(d_out, d_in)"
            raise ValueError(
                f"{name}[{k}] must be a matrix of shape {want}, got shape {layer.shape}"
            )
        if layer.size == 0:
            raise ValueError(f"{name}[{k}] must not be empty, got shape {layer.shape}")
    lead = layers[0].shape[:-2]
    for k, layer in enumerate(layers):
        if layer.shape[:-2] != lead:
            raise ValueError(
                f"{name}[{k}] has batch axes {layer.shape[:-2]} but {name}[0] has {lead}: "
                "every layer must carry the same leading batch axes"
            )
    if depth is not None and N != depth:
        raise ValueError(f"{name} must have {depth} layers, got {N}")
    if widths is not None:
        widths = check_widths(widths)
        if len(widths) != N + 1:
            raise ValueError(
                f"widths has {len(widths)} entries {widths}, so the network has "
                f"{len(widths) - 1} layers, but {name} has {N} layers"
            )
        for k, layer in enumerate(layers):
            if layer.shape[-2:] != (widths[k + 1], widths[k]):
                raise ValueError(
                    f"{name}[{k}] has shape {layer.shape[-2:]} but widths {widths} "
                    f"needs (d_{k + 1}, d_{k}) = ({widths[k + 1]}, {widths[k]})"
                )
    for k in range(1, N):
        if layers[k].shape[-1] != layers[k - 1].shape[-2]:
            raise ValueError(
                f"{name}[{k}] must have {layers[k - 1].shape[-2]} columns (the output width "
                f"of {name}[{k - 1}], shape {layers[k - 1].shape[-2:]}), "
                f"got shape {layers[k].shape[-2:]}"
            )
    if any(layer.dtype == np.complex128 for layer in layers):
        layers = [layer.astype(np.complex128, copy=False) for layer in layers]
    return layers


def as_layer_stack(
    W, name: str = "W", depth: int | None = None, d: int | None = None
) -> np.ndarray:
    """Validate one network (N, d, d) (by :func:`as_stack`) or a batch (..., N, d, d)."""
    if isinstance(W, (str, bytes)) or W is None or np.ndim(W) <= 3:
        return as_stack(W, name, depth, d)
    shape = np.shape(W)
    if shape[-1] != shape[-2]:
        raise ValueError(
            f"{name} must be a stack of square layers of shape (..., N, d, d), got shape {shape}"
        )
    arr = as_matrix_batch(W, shape[-1], name)  # dtype and finiteness
    if shape[-3] < 1 or shape[-1] < 1:
        raise ValueError(f"{name} must have N >= 1 layers and d >= 1, got shape {shape}")
    if depth is not None and shape[-3] != depth:
        raise ValueError(f"{name} must have {depth} layers, got {shape[-3]}")
    if d is not None and shape[-1] != d:
        raise ValueError(f"{name} must have layers of size {d} x {d}, got {shape[-2:]}")
    return arr


def check_square_or_widths(d, depth, widths) -> tuple[int | None, int, tuple[int, ...] | None]:
    """Resolve a shape given as ``d`` and ``depth`` (square layers) or as ``widths``.

    Returns ``(d, N, None)`` for square layers and ``(None, N, widths)`` for general widths
    (``depth``, if given with ``widths``, must be ``len(widths) - 1``); passing both ``d``
    and ``widths`` is a TypeError.
    """
    if widths is None:
        return check_count(d, "d"), check_finite_depth(depth), None
    if d is not None:
        raise TypeError(
            "pass either d (square layers) or widths=(d_0, ..., d_N), not both; got "
            f"d = {d!r} and widths = {widths!r}"
        )
    widths = check_widths(widths)
    if depth is not None:
        widths = check_widths(widths, depth=check_finite_depth(depth))
    return None, len(widths) - 1, widths


def check_stack_widths(W: np.ndarray, widths, name: str = "W") -> None:
    """``widths`` must be (d, ..., d) (N + 1 entries) for a stack W (..., N, d, d)."""
    widths = check_widths(widths)
    N, d = W.shape[-3], W.shape[-1]
    if widths != (d,) * (N + 1):
        raise ValueError(
            f"widths must be (d, ..., d) = {(d,) * (N + 1)} for {name} of shape {W.shape} "
            f"(N = {N} square layers of size d = {d}), got {widths}; pass a list of layers "
            "for general widths"
        )


def as_hidden_matrices(
    a, layers: list[np.ndarray], name: str, what: str, *, real: bool = False
) -> list[np.ndarray]:
    """N - 1 square matrices for a network of N layers, ``a[k-1]`` of shape (d_k, d_k) for
    the hidden widths d_k (a stack (N-1, d, d) is taken as its list); ``what`` names them
    in the messages (e.g. "square matrices", "orthogonal matrices")."""
    N = len(layers)
    hidden = [layer.shape[-2] for layer in layers[:-1]]
    if isinstance(a, np.ndarray) and a.ndim == 3:
        a = list(a)
    if not isinstance(a, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of N - 1 = {N - 1} {what}, {name}[k-1] of shape "
            f"(d_k, d_k) for the hidden widths {tuple(hidden)}, got {type(a).__name__}"
        )
    if len(a) != N - 1:
        raise ValueError(
            f"{name} must have N - 1 = {N - 1} matrices (one per hidden layer, of sizes "
            f"{tuple(hidden)}), got {len(a)}"
        )
    return [as_array(a[k], f"{name}[{k}]", (dk, dk), real=real) for k, dk in enumerate(hidden)]


def widths_of_layers(layers: list[np.ndarray]) -> tuple[int, ...]:
    """The widths (d_0, ..., d_N) of a validated sequence of layers (..., d_k, d_{k-1})."""
    return (layers[0].shape[-1], *(layer.shape[-2] for layer in layers))


def check_hidden_widths(widths: tuple[int, ...], name: str = "widths") -> int:
    """Return r = min(d_0, d_N); a ValueError naming ``name`` if a hidden width is below r."""
    r = min(widths[0], widths[-1])
    for k in range(1, len(widths) - 1):
        if widths[k] < r:
            raise ValueError(
                f"{name}[{k}] = {widths[k]} is below r = min(d_0, d_N) = {r} (widths "
                f"{widths}): every hidden width must be at least r; bottleneck networks (a "
                "hidden width below the rank) are not supported"
            )
    return r
