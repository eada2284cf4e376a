r"""The boundary between the numpy core and geomstats' active backend.

The geometry of the adapters is computed by the numpy core
(:mod:`dln_manifolds.depth_metric`, :mod:`dln_manifolds.balanced`, ...). This
module converts at the door of every adapter method, so that each one takes and
returns the arrays of the backend geomstats runs on (``GEOMSTATS_BACKEND``:
numpy, autograd or pytorch), and supplies the derivatives of the core where an
automatic-differentiation backend asks for them:

- :func:`boundary`: numpy in, backend out, *not* differentiable. An input that
  carries a gradient (an autograd ``ArrayBox``, a torch tensor with
  ``requires_grad``) raises :class:`NotDifferentiableError` instead of being
  silently cut from the graph.
- :func:`differentiable`: the same conversion, and the method becomes a
  primitive of the backend: ``autograd.extend.primitive`` with a vector-Jacobian
  product under autograd, a ``torch.autograd.Function`` under pytorch, a plain
  call under numpy. The VJP is supplied by the adapter, from the core's own
  derivatives (first order only: the VJP itself is numpy).

Calls nested inside a converted call (an adapter method calling another one)
see numpy in and numpy out: only the outermost call converts.

References
----------
- [geomstats] N. Miolane et al., *Geomstats: a Python package for Riemannian geometry in
  machine learning*, JMLR 21 (2020).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect

import geomstats.backend as gs
import numpy as np

__all__ = [
    "BACKEND",
    "NotDifferentiableError",
    "boundary",
    "differentiable",
    "is_traced",
    "plain",
    "to_backend",
    "to_numpy",
]

#: Name of geomstats' active backend: "numpy", "autograd" or "pytorch".
BACKEND: str = gs.__name__.rsplit(".", 1)[-1]

if BACKEND == "pytorch":  # pragma: no cover - exercised in the backend subprocess tests
    import torch

    def _is_tensor(x) -> bool:
        return isinstance(x, torch.Tensor)

    def _carries_gradient(x) -> bool:
        return isinstance(x, torch.Tensor) and x.requires_grad

    def _plain(x):
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x

    def _wrap(x):
        return torch.from_numpy(np.array(x))

elif BACKEND == "autograd":
    from autograd.extend import defvjp_argnums, primitive
    from autograd.tracer import getval, isbox

    def _is_tensor(x) -> bool:
        return isbox(x)

    def _carries_gradient(x) -> bool:
        return isbox(x)

    def _plain(x):
        return getval(x)

    def _wrap(x):
        return x

else:

    def _is_tensor(x) -> bool:
        return False

    def _carries_gradient(x) -> bool:
        return False

    def _plain(x):
        return x

    def _wrap(x):
        return x


class NotDifferentiableError(NotImplementedError):
    """An adapter method without derivatives received an input that carries a gradient."""


# depth of nested converted calls: only the outermost one converts
_INSIDE = contextvars.ContextVar("dln_manifolds_geomstats_inside", default=0)


def plain(x):
    """``x`` without its gradient tape (a numpy array for tensors, ``x`` itself otherwise)."""
    if isinstance(x, (tuple, list)) and any(_is_tensor(v) for v in x):
        return type(x)(plain(v) for v in x)
    return _plain(x)


def is_traced(x) -> bool:
    """True for a backend array that may carry a gradient (torch tensor, autograd box)."""
    return _is_tensor(x)


def to_numpy(x, name: str = "argument", where: str = "this method"):
    """``x`` as numpy for the core; NotDifferentiableError if it carries a gradient."""
    if _carries_gradient(x):
        raise NotDifferentiableError(
            f"{where} is not differentiable in {name} under the geomstats {BACKEND} backend "
            "(the differentiable adapter methods: docstring of dln_manifolds.geomstats, Backends)"
        )
    return plain(x)


def to_backend(x):
    """Convert the core's results (arrays, scalars, tuples of them) to backend arrays."""
    if isinstance(x, (tuple, list)):  # e.g. (horizontal, vertical) bases, layers of any widths
        return type(x)(to_backend(v) for v in x)
    if isinstance(x, (np.ndarray, np.generic)):
        return _wrap(x)
    return x


def _named(fun):
    """The parameter names of fun and a binder of a call's arguments to {name: value}."""
    sig = inspect.signature(fun)
    names = list(sig.parameters)

    def bind(args, kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    return names, bind


class _Inside:
    def __enter__(self):
        self.token = _INSIDE.set(_INSIDE.get() + 1)

    def __exit__(self, *exc):
        _INSIDE.reset(self.token)


def boundary(fun):
    """Decorate an adapter method (or function): numpy in, backend arrays out, no derivatives."""
    names = list(inspect.signature(fun).parameters)
    where = fun.__qualname__

    @functools.wraps(fun)
    def wrapper(*args, **kwargs):
        if BACKEND == "numpy" or _INSIDE.get():
            return fun(*args, **kwargs)
        args = [
            to_numpy(v, names[i] if i < len(names) else f"argument {i}", where)
            for i, v in enumerate(args)
        ]
        kwargs = {k: to_numpy(v, k, where) for k, v in kwargs.items()}
        with _Inside():
            out = fun(*args, **kwargs)
        return to_backend(out)

    return wrapper


def _unbroadcast(grad, shape) -> np.ndarray:
    """Sum a gradient of the broadcast shape down to an argument's shape."""
    grad = np.asarray(grad, dtype=np.float64)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return np.broadcast_to(grad, shape).copy()


def differentiable(vjp, wrt: tuple[str, ...]):
    """Decorate an adapter method as a backend primitive with the vector-Jacobian product vjp.

    Parameters
    ----------
    vjp : callable
        ``vjp(args, ans, g, names)``: ``args`` the numpy arguments by name
        (``self`` included), ``ans`` the numpy result, ``g`` the cotangent of
        the result and ``names`` the arguments whose gradient is wanted. Returns
        a dict name -> gradient (of the argument's shape, or of a shape that
        broadcasts to it; reduced here).
    wrt : tuple of str
        The arguments with derivatives. Any other argument that carries a
        gradient raises :class:`NotDifferentiableError`.
    """

    def decorate(fun):
        names, bind = _named(fun)
        where = fun.__qualname__

        def core(*values):
            with _Inside():
                return np.asarray(fun(*values), dtype=np.float64)

        def gradients(values, ans, g, wanted):
            args = dict(zip(names, values, strict=True))
            with _Inside():
                grads = vjp(args, ans, np.asarray(g, dtype=np.float64), tuple(wanted))
            return {k: _unbroadcast(grads[k], np.shape(args[k])) for k in wanted}

        def check(arguments):
            for k, v in arguments.items():
                if k not in wrt:
                    to_numpy(v, k, where)

        if BACKEND == "autograd":
            prim = primitive(core)

            def vjpmaker(argnums, ans, args, kwargs):
                wanted = [names[i] for i in argnums]

                def vjp_fn(g):
                    grads = gradients(args, ans, g, wanted)
                    return tuple(grads[k] for k in wanted)

                return vjp_fn

            defvjp_argnums(prim, vjpmaker)

            def call(arguments):
                check(arguments)
                values = [arguments[k] for k in names]
                values = [v if k in wrt else plain(v) for k, v in zip(names, values, strict=True)]
                return prim(*values)

        elif BACKEND == "pytorch":  # pragma: no cover - exercised in the subprocess tests

            class Function(torch.autograd.Function):
                @staticmethod
                def forward(ctx, *values):
                    numpy_values = [plain(v) for v in values]
                    ans = core(*numpy_values)
                    ctx.values, ctx.ans = numpy_values, ans
                    return torch.from_numpy(np.array(ans))

                @staticmethod
                def backward(ctx, g):
                    wanted = [
                        k for k, need in zip(names, ctx.needs_input_grad, strict=True) if need
                    ]
                    grads = gradients(ctx.values, ctx.ans, plain(g), wanted)
                    return tuple(torch.from_numpy(grads[k]) if k in grads else None for k in names)

            def call(arguments):
                check(arguments)
                return Function.apply(*[arguments[k] for k in names])

        @functools.wraps(fun)
        def wrapper(*args, **kwargs):
            if BACKEND == "numpy" or _INSIDE.get():  # no conversion, no derivatives
                return fun(*args, **kwargs)
            return call(bind(args, kwargs))

        return wrapper

    return decorate
