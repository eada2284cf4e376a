r"""Vector-Jacobian products of the geomstats adapters, from the core's own derivatives.

Each function has the signature that :func:`._backend.differentiable` expects,
``vjp(args, ans, g, wanted) -> {name: gradient}``: ``args`` the numpy arguments
of the adapter method by name (``self`` included), ``ans`` its numpy result,
``g`` the cotangent of the result. Gradients are Euclidean (Frobenius) in the
coordinates of the adapters: vectors (..., d * d) on (M_d, g^N), stacks
(..., N, d, d) upstairs.

- depth metric :math:`g^N_X(U, V) = \langle U, \mathcal{A}_X^{-1} V\rangle`:
  gradients :math:`\mathcal{A}^{-1}V`, :math:`\mathcal{A}^{-1}U` in U, V and
  :math:`-K` in X, where :math:`\langle K, W\rangle = \langle \mathcal{A}^{-1}U,
  D\mathcal{A}[W]\,\mathcal{A}^{-1}V\rangle`
  (:meth:`~dln_manifolds.depth_metric.DepthFrame.derivative_adjoint`), [G] eq. 4.16-4.17;
- geodesic distance: :math:`\nabla_a d(a, b) = -G_a \log_a b / d(a, b)`
  (first variation of arc length; 0 where d = 0 or d = inf);
- linear maps (reshapes, orthogonal projections, :math:`d\phi_W`, the
  horizontal lift): their adjoints.

References
----------
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`.
"""

from __future__ import annotations

import numpy as np

from ..network import end_to_end, end_to_end_differential, lifted_gradient_unchecked
from ._frame import DenseDepthFrame

__all__ = [
    "cometric_matrix_vjp",
    "dist_vjp",
    "horizontal_lift_vjp",
    "identity_vjp",
    "inner_product_vjp",
    "metric_matrix_vjp",
    "projection_vjp",
    "reshape_vjp",
    "submersion_vjp",
    "tangent_submersion_vjp",
]


def _depth_setup(metric, base_point, *vectors):
    """Frame over the broadcast batch and the vectors as (..., d, d) matrices."""
    shape = metric._space.matrix_shape
    n = metric._space.dim
    arrays = [np.asarray(a, dtype=np.float64) for a in (base_point, *vectors)]
    batch = np.broadcast_shapes(*(a.shape[:-1] for a in arrays))
    mats = [np.broadcast_to(a, batch + (n,)).reshape(batch + shape) for a in arrays]
    return DenseDepthFrame(mats[0], metric.depth), mats[1:], batch


def inner_product_vjp(args, ans, g, wanted):
    """VJP of ``DepthMetric.inner_product(tangent_vec_a, tangent_vec_b, base_point)``."""
    metric = args["self"]
    frame, (U, V), batch = _depth_setup(
        metric, args["base_point"], args["tangent_vec_a"], args["tangent_vec_b"]
    )
    BU, BV = frame.inverse(U), frame.inverse(V)
    gm = g[..., None, None]
    n = metric._space.dim
    flat = lambda Z: Z.reshape(batch + (n,))  # noqa: E731
    out = {}
    if "tangent_vec_a" in wanted:
        out["tangent_vec_a"] = flat(gm * BV)
    if "tangent_vec_b" in wanted:
        out["tangent_vec_b"] = flat(gm * BU)
    if "base_point" in wanted:
        out["base_point"] = flat(-gm * frame.derivative_adjoint(BV, BU))
    return out


def _basis_pairs(metric, base_point, g, inverse: bool):
    """Gradient in X of sum_ij g_ij <e_i, B e_j>, B = A^{-1} (inverse) or A."""
    shape = metric._space.matrix_shape
    n = metric._space.dim
    X = np.asarray(base_point, dtype=np.float64).reshape(g.shape[:-2] + shape)
    frame = DenseDepthFrame(X[..., None, :, :], metric.depth)
    E = np.eye(n).reshape((n,) + shape)
    # sum_ij g_ij <Z_i, dA Z_j> = sum_j <D*(Z_j, Y_j), W> with Y_j = sum_i g_ij Z_i
    Z = frame.inverse(E) if inverse else np.broadcast_to(E, g.shape[:-2] + E.shape)
    Y = np.einsum("...ij,...ikl->...jkl", g, Z)
    K = frame.derivative_adjoint(Z, Y).sum(axis=-3)
    return (-K if inverse else K).reshape(g.shape[:-2] + (n,))


def metric_matrix_vjp(args, ans, g, wanted):
    """VJP of ``DepthMetric.metric_matrix(base_point)`` (the matrix of A^{-1})."""
    return {"base_point": _basis_pairs(args["self"], args["base_point"], g, inverse=True)}


def cometric_matrix_vjp(args, ans, g, wanted):
    """VJP of ``DepthMetric.cometric_matrix(base_point)`` (the matrix of A)."""
    return {"base_point": _basis_pairs(args["self"], args["base_point"], g, inverse=False)}


def dist_vjp(args, ans, g, wanted):
    r"""VJP of ``dist(point_a, point_b)``: :math:`-g\, G_a \log_a b / d` (0 where d is 0 or inf)."""
    metric = args["self"]
    a, b = args["point_a"], args["point_b"]
    ans = np.asarray(ans)
    ok = np.isfinite(ans) & (ans > 0)
    scale = np.where(ok, g / np.where(ok, ans, 1.0), 0.0)
    out = {}
    for name, base, other in (("point_a", a, b), ("point_b", b, a)):
        if name not in wanted:
            continue
        base_b, other_b = np.broadcast_arrays(
            np.asarray(base, dtype=np.float64), np.asarray(other, dtype=np.float64)
        )
        nd = len(metric._space.shape)
        log = np.zeros(base_b.shape)
        sel = np.broadcast_to(ok, base_b.shape[: base_b.ndim - nd])
        if np.any(sel):
            log[sel] = metric.log(other_b[sel], base_b[sel])
        lowered = _lower(metric, log, base_b)
        out[name] = -scale.reshape(scale.shape + (1,) * nd) * lowered
    return out


def _lower(metric, vector, base_point):
    """The metric applied to a vector: A^{-1} on (M_d, g^N), the identity upstairs."""
    if hasattr(metric, "depth") and hasattr(metric._space, "matrix_shape"):
        frame, (V,), batch = _depth_setup(metric, base_point, vector)
        return frame.inverse(V).reshape(vector.shape)
    return vector


def identity_vjp(args, ans, g, wanted):
    """VJP of a copy of ``vector`` (``to_tangent`` on an open set); 0 in ``base_point``."""
    out = {"vector": g}
    if "base_point" in wanted:
        out["base_point"] = np.zeros(np.shape(args["base_point"]))
    return out


def reshape_vjp(name: str):
    """VJP of a reshape of the argument ``name``."""

    def vjp(args, ans, g, wanted):
        return {name: g.reshape(np.shape(args[name]))}

    return vjp


def projection_vjp(method: str, vector: str = "vector"):
    """VJP of an orthogonal (self-adjoint) projection ``self.method(vector, base_point)``."""

    def vjp(args, ans, g, wanted):
        return {vector: getattr(args["self"], method)(g, args["base_point"])}

    return vjp


def submersion_vjp(args, ans, g, wanted):
    r"""VJP of :math:`W \mapsto \phi(W)` (as a vector): :math:`d\phi_W^*(G)`, [G] eq. 3.6."""
    W = np.asarray(args["point"], dtype=np.float64)
    d = W.shape[-1]
    return {"point": lifted_gradient_unchecked(W, g.reshape(g.shape[:-1] + (d, d)))}


def tangent_submersion_vjp(args, ans, g, wanted):
    r"""VJP in V of :math:`d\phi_W(V)`: the adjoint :math:`d\phi_W^*(G)`."""
    W = np.asarray(args["base_point"], dtype=np.float64)
    d = W.shape[-1]
    G = g.reshape(g.shape[:-1] + (d, d))
    return {"tangent_vec": lifted_gradient_unchecked(W, G)}


def horizontal_lift_vjp(args, ans, g, wanted):
    r"""VJP in Z of the horizontal lift :math:`H = d\phi^*(d\phi\, d\phi^*)^{-1} Z`.

    :math:`d\phi_W d\phi_W^* = \mathcal{A}_{N,X}` on the balanced manifold ([G] Thm 13),
    so the adjoint is :math:`G \mapsto \mathcal{A}_X^{-1} d\phi_W(G)`.
    """
    bundle = args["self"]
    W = args["fiber_point"]
    if W is None:
        W = bundle.lift(args["base_point"])
    W = np.broadcast_to(np.asarray(W, dtype=np.float64), g.shape)
    d = W.shape[-1]
    frame = DenseDepthFrame(end_to_end(W), bundle.depth)
    dX = frame.inverse(end_to_end_differential(W, g))
    return {"tangent_vec": dX.reshape(g.shape[:-3] + (d * d,))}
