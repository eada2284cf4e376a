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
    "depth_rk4_dist_vjp",
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
    r"""VJP of ``dist(point_a, point_b)``: :math:`-g\, G_a \log_a b / d` (0 where d is 0 or inf).

    The first variation of arc length: the gradient of the exact distance. A
    :class:`~dln_manifolds.geomstats.DepthMetric` with fixed-step RK4 computes a distance
    that differs from it by the RK4 error; its gradient is :func:`depth_rk4_dist_vjp`.
    """
    metric = args["self"]
    if _fixed_step_depth_metric(metric):
        return depth_rk4_dist_vjp(args, ans, g, wanted)
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


def _fixed_step_depth_metric(metric) -> bool:
    """True for a depth metric of (M_d, g^N) (square or not) whose exp is fixed-step RK4."""
    solver = getattr(metric, "exp_solver", None)
    return (
        hasattr(metric, "depth")
        and hasattr(metric._space, "matrix_shape")
        and getattr(solver, "options", {}).get("n_steps") is not None
    )


def depth_rk4_dist_vjp(args, ans, g, wanted):
    r"""VJP of ``DepthMetric.dist(point_a, point_b)`` with fixed-step RK4: the gradient of
    the computed distance :math:`d = |V|_{g_a}`, :math:`V = \log_a b`, by the implicit
    function theorem.

    ``log`` solves :math:`\exp_a(V) = b` for the RK4 exponential, so
    :math:`dV = J_V^{-1}(db - J_a\,da)` (:func:`exp_jacobians`, the Jacobians of the
    computed map) and :math:`2d\,\delta d = 2\langle G_a V, dV\rangle + D G_a[da](V, V)`.
    With :math:`\lambda = J_V^{-T} G_a V / d`: the gradient in b is :math:`\lambda`, in a
    :math:`-J_a^T\lambda - K / (2d)` with :math:`K` the gradient in a of
    :math:`g_a(V, V)` (:func:`inner_product_vjp`). The first-variation formula
    (:func:`dist_vjp` for the adaptive integrator) is the limit of infinitely many steps;
    with 10 steps it is off by the RK4 error (measured up to 9e-7 relative on 3 x 2
    matrices). 0 where the distance is 0 or inf.
    """
    metric = args["self"]
    n = metric._space.dim
    a, b = np.broadcast_arrays(
        np.asarray(args["point_a"], dtype=np.float64), np.asarray(args["point_b"], dtype=np.float64)
    )
    batch = a.shape[:-1]
    a, b = a.reshape(-1, n), b.reshape(-1, n)
    d = np.broadcast_to(np.asarray(ans, dtype=np.float64), batch).reshape(-1)
    gb = np.broadcast_to(np.asarray(g, dtype=np.float64), batch).reshape(-1)
    ok = np.isfinite(d) & (d > 0)
    out = {name: np.zeros((a.shape[0], n)) for name in wanted}
    if np.any(ok):
        A, Bp, dk = a[ok], b[ok], d[ok][:, None]
        V = metric.log(Bp, A)
        jac = ("tangent_vec",) + (("base_point",) if "point_a" in wanted else ())
        J = exp_jacobians(metric, V, A, jac)
        frame, (Vm,), _ = _depth_setup(metric, A, V)
        BV = frame.inverse(Vm)  # G_a V as a matrix
        lam = np.linalg.solve(
            np.swapaxes(J["tangent_vec"], -1, -2), BV.reshape(-1, n)[..., None] / dk[..., None]
        )[..., 0]
        if "point_b" in wanted:
            out["point_b"][ok] = gb[ok][:, None] * lam
        if "point_a" in wanted:
            K = -frame.derivative_adjoint(BV, BV).reshape(-1, n)
            grad_a = -np.einsum("bi,bij->bj", lam, J["base_point"]) + K / (2.0 * dk)
            out["point_a"][ok] = gb[ok][:, None] * grad_a
    return {name: grad.reshape(batch + (n,)) for name, grad in out.items()}


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


# -- the exponential map and the logarithm of (M_d, g^N) -------------------------------------

#: RK4 steps of the flow whose Jacobian serves an adaptive ``exp`` (error O(steps^-4)).
JACOBIAN_STEPS = 64
_STENCIL = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))  # 4th order, divide by 12 h


def _flow_jacobian(flow, v, x, h, which: int, directions=None) -> np.ndarray:
    """``J[b, i, j]``: derivative of ``flow(V, X)`` (flat (B, n) arrays) in V (which = 0)
    or X (which = 1), 4th-order central differences with steps h (B,), one batched call.

    Along the coordinate axes, or along ``directions`` (B, n, k) (columns: the directions
    at each of the B points; then J has shape (B, n, k)).
    """
    n = v.shape[-1]
    offsets = np.array([o for o, _ in _STENCIL])[None, :, None, None]
    weights = np.array([w for _, w in _STENCIL])[None, :, None, None]
    if directions is None:
        directions = np.broadcast_to(np.eye(n), (v.shape[0], n, n))
    dirs = np.swapaxes(directions, -1, -2)[:, None]  # (B, 1, k, n)
    step = offsets * h[:, None, None, None] * dirs  # (B, 4, k, n)
    V, X = np.broadcast_arrays(
        v[:, None, None] + (step if which == 0 else 0.0),
        x[:, None, None] + (step if which == 1 else 0.0),
    )
    Y = flow(V.reshape(-1, n), X.reshape(-1, n)).reshape(V.shape)
    J = np.sum(weights * Y, axis=1) / (12.0 * h[:, None, None])  # (B, k, i)
    return np.swapaxes(J, -1, -2)


def exp_jacobians(metric, tangent_vec, base_point, wanted=("tangent_vec", "base_point")):
    r"""Jacobians of :math:`(V, X) \mapsto \exp_X(V)` of :math:`g^N`, shapes (..., n, n).

    The linearized geodesic flow (Jacobi fields), by 4th-order central differences of
    the batched fixed-step RK4 flow of :func:`~dln_manifolds.geodesics.depth_exp`: all
    perturbed geodesics in one call. The metric's own RK4 if it uses fixed steps (then
    this is the Jacobian of the computed map, to ~1e-10 relative), else RK4 with
    :data:`JACOBIAN_STEPS` steps (the Jacobian of the exact map to its O(steps^-4)
    discretization error). Steps: :math:`10^{-3}` times ``max(1, |V|)`` in V and times
    :math:`\sigma_{\min}(X)` in X.

    Returns
    -------
    dict
        ``{"tangent_vec": J_V, "base_point": J_X}`` with ``J[..., i, j]`` the derivative
        of output coordinate i in input coordinate j (the keys of ``wanted``).
    """
    from ..geodesics import depth_exp

    space = metric._space
    shape, n = space.matrix_shape, space.dim
    v, x = np.broadcast_arrays(
        np.asarray(tangent_vec, dtype=np.float64), np.asarray(base_point, dtype=np.float64)
    )
    batch = v.shape[:-1]
    v, x = v.reshape(-1, n), x.reshape(-1, n)
    s_min = np.linalg.svd(x.reshape(-1, *shape), compute_uv=False)[:, -1]
    steps = {
        "tangent_vec": (0, 1e-3 * np.maximum(1.0, np.linalg.norm(v, axis=-1))),
        "base_point": (1, 1e-3 * np.minimum(1.0, s_min)),
    }
    n_steps = metric.exp_solver.options["n_steps"] or JACOBIAN_STEPS

    def flow(V, X):
        Y = depth_exp(X.reshape(-1, *shape), V.reshape(-1, *shape), metric.depth, n_steps=n_steps)
        return Y.reshape(-1, n)

    out = {}
    for name in wanted:
        which, h = steps[name]
        out[name] = _flow_jacobian(flow, v, x, h, which).reshape(batch + (n, n))
    return out


def exp_vjp(args, ans, g, wanted):
    """VJP of ``DepthMetric.exp(tangent_vec, base_point)``: :math:`J^T g`."""
    metric = getattr(args["self"], "_metric", args["self"])  # DepthMetric or its solver
    J = exp_jacobians(metric, args["tangent_vec"], args["base_point"], wanted)
    return {k: np.einsum("...i,...ij->...j", g, J[k]) for k in wanted}


def log_vjp(args, ans, g, wanted):
    r"""VJP of ``log(point, base_point)`` by the implicit function theorem.

    :math:`V = \log_X Y` solves :math:`\exp_X(V) = Y`, so :math:`dV = J_V^{-1}(dY - J_X dX)`:
    with :math:`\lambda = J_V^{-T} g`, the gradients are :math:`\lambda` in Y and
    :math:`-J_X^T\lambda` in X (:func:`exp_jacobians` at V = ans).
    """
    solver = args["self"]
    J = exp_jacobians(
        solver._metric,
        ans,
        args["base_point"],
        ("tangent_vec",) + (("base_point",) if "base_point" in wanted else ()),
    )
    lam = np.linalg.solve(np.swapaxes(J["tangent_vec"], -1, -2), g[..., None])[..., 0]
    out = {"point": lam}
    if "base_point" in wanted:
        out["base_point"] = -np.einsum("...i,...ij->...j", lam, J["base_point"])
    return out


def _flat_batch(space, *arrays):
    """Broadcast arrays (..., *space.shape) and flatten them to (B, n); returns the batch too."""
    pshape = tuple(space.shape)
    n = int(np.prod(pshape))
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    batch = arrays[0].shape[: arrays[0].ndim - len(pshape)]
    return [a.reshape(-1, n) for a in arrays], batch, pshape


def _tangent_basis(space, points):
    """Orthonormal bases (B, n, k) of the tangent spaces at points (B, n), k = space.dim."""
    pshape = tuple(space.shape)
    n = int(np.prod(pshape))
    B = points.shape[0]
    E = np.broadcast_to(np.eye(n).reshape((1, n) + pshape), (B, n) + pshape)
    P = space.to_tangent(E, points.reshape((B, 1) + pshape)).reshape(B, n, n)
    _, Q = np.linalg.eigh(0.5 * (P + np.swapaxes(P, -1, -2)))
    return Q[..., n - space.dim :]  # eigenvalue 1 (the range), eigh sorts ascending


def _induced_exp_jacobian(metric, v, w):
    r"""``(J B, B)``: derivatives ``(JB)[b, i, j]`` of V -> exp_W(V) upstairs along an
    orthonormal basis ``B[b, :, j]`` of :math:`T_W` (flat (b, n) arrays v, w).

    The exponential maps of the induced metrics project V onto :math:`T_W` first
    (:func:`~dln_manifolds.submanifold_geodesics.balanced_exp`,
    :func:`~dln_manifolds.submanifold_geodesics.fiber_exp`), so the ambient Jacobian is
    :math:`J_V = (JB)B^T`: k = dim differenced geodesics per point instead of n.
    """
    space = metric._space
    pshape = tuple(space.shape)
    h = 1e-3 * np.maximum(1.0, np.linalg.norm(v, axis=-1))
    B = _tangent_basis(space, w)

    held = _held_meshes(metric, v, w, 4 * B.shape[-1])

    def flow(V, W):
        Y = space._geodesic_exp(
            W.reshape((-1,) + pshape), V.reshape((-1,) + pshape), metric.n_steps, **held
        )
        return Y.reshape(V.shape)

    return _flow_jacobian(flow, v, w, h, 0, directions=B), B


def _held_meshes(metric, v, w, repeat: int) -> dict:
    """``{"meshes": ...}``: the meshes of a step-controlled exp (the balanced manifold of
    general widths) chosen at each primal point (v, w), each repeated for its ``repeat``
    differenced geodesics, so that the differences are those of one smooth map (the
    computed exp holds its mesh near the point); ``{}`` for uniform steps."""
    space = metric._space
    meshes_at = getattr(space, "_geodesic_meshes", None)
    if meshes_at is None:
        return {}
    pshape = tuple(space.shape)
    meshes = meshes_at(w.reshape((-1,) + pshape), v.reshape((-1,) + pshape), metric.n_steps)
    if meshes is None:
        return {}
    return {"meshes": np.repeat(np.asarray(meshes), repeat, axis=0)}


def induced_exp_vjp(args, ans, g, wanted):
    r"""VJP in V of ``InducedFrobeniusMetric.exp(tangent_vec, base_point)``: :math:`J_V^T g`.

    :math:`J_V = (JB)B^T` (:func:`_induced_exp_jacobian`): 4th-order central differences
    of the space's RK4 geodesic flow (step :math:`10^{-3}\max(1, |V|)`) along an
    orthonormal tangent basis B; the gradient :math:`B (JB)^T g` is tangent at W.
    Flat points of general widths (..., D) are vectors like any other.
    """
    metric = args["self"]
    (v, w), batch, pshape = _flat_batch(metric._space, args["tangent_vec"], args["base_point"])
    JB, B = _induced_exp_jacobian(metric, v, w)
    c = np.einsum("bik,bi->bk", JB, g.reshape(v.shape))
    return {"tangent_vec": np.einsum("bnk,bk->bn", B, c).reshape(batch + pshape)}


def induced_log_vjp(args, ans, g, wanted):
    r"""VJP in Y of ``InducedFrobeniusMetric.log(point, base_point)``, implicit function.

    :math:`V = \log_W Y` solves :math:`\exp_W(V) = Y` on the manifold: with orthonormal
    tangent bases :math:`B` at W and :math:`C` at Y and :math:`M = C^T J_V B`,
    :math:`dV = B M^{-1} C^T dY`, so the gradient in Y is :math:`C M^{-T} B^T g`.
    """
    metric = args["self"]
    space = metric._space
    (v, w, y), batch, pshape = _flat_batch(space, ans, args["base_point"], args["point"])
    JB, B = _induced_exp_jacobian(metric, v, w)
    C = _tangent_basis(space, y)
    M = np.swapaxes(C, -1, -2) @ JB
    Bg = np.einsum("bnk,bn->bk", B, g.reshape(v.shape))
    lam = np.linalg.solve(np.swapaxes(M, -1, -2), Bg[..., None])[..., 0]
    return {"point": np.einsum("bnk,bk->bn", C, lam).reshape(batch + pshape)}


def induced_transport_vjp(args, ans, g, wanted):
    r"""VJP in U of the parallel transport :math:`U \mapsto \tau(P_W U)` along the geodesic
    :math:`t \mapsto \exp_W(tV)`: :math:`\sum_j b_j \langle \tau(b_j), g\rangle`.

    The transport projects U onto :math:`T_W` and integrates a linear ODE in U (RK4 and
    tangent projections are linear in U), so the computed map is exactly
    :math:`U \mapsto \sum_j \langle b_j, U\rangle \tau(b_j)` for an orthonormal basis
    :math:`(b_j)` of :math:`T_W`: k = dim transports per point, no differencing.
    """
    metric = args["self"]
    space = metric._space
    (u, w, v), batch, pshape = _flat_batch(
        space, args["tangent_vec"], args["base_point"], args["direction"]
    )
    B = _tangent_basis(space, w)
    nb, n, k = B.shape
    E = np.swapaxes(B, -1, -2).reshape((nb * k,) + pshape)
    rep = lambda a: np.repeat(a, k, axis=0).reshape((nb * k,) + pshape)  # noqa: E731
    T = space._geodesic_transport(rep(w), rep(v), E, metric.n_steps).reshape(nb, k, n)
    c = np.einsum("bkn,bn->bk", T, g.reshape(u.shape))
    return {"tangent_vec": np.einsum("bnk,bk->bn", B, c).reshape(batch + pshape)}


def _exp_base_jacobian(metric, v, w, basis):
    r"""``Ja[b, i, j]``: derivative of :math:`s \mapsto \exp_{R_W(s u_j)}(V)` at 0, V held
    fixed (the exponential projects it onto the moving tangent space), along the curves
    of the space's retraction in the directions ``basis[b, :, j]``; 4th-order central
    differences with step :math:`10^{-3}`, one batched retraction and exp call."""
    space = metric._space
    pshape = tuple(space.shape)
    nb, n, k = basis.shape
    h = 1e-3
    offsets = np.array([o for o, _ in _STENCIL])
    weights = np.array([wt for _, wt in _STENCIL])
    step = offsets[None, :, None, None] * h * np.swapaxes(basis, -1, -2)[:, None]  # (b,4,k,n)
    W = np.broadcast_to(w[:, None, None], step.shape).reshape((-1,) + pshape)
    moved = space.retraction(step.reshape((-1,) + pshape), W)
    V = np.broadcast_to(v[:, None, None], step.shape).reshape((-1,) + pshape)
    held = _held_meshes(metric, v, w, 4 * k)
    Y = space._geodesic_exp(moved, V, metric.n_steps, **held).reshape(step.shape)
    J = np.einsum("o,bokn->bkn", weights, Y) / (12.0 * h)  # (b, k, n)
    return np.swapaxes(J, -1, -2)


def induced_dist_vjp(args, ans, g, wanted):
    r"""VJP of ``InducedFrobeniusMetric.dist(point_a, point_b)``: the gradient of the
    computed distance :math:`|V|`, :math:`V = \log_a b`, by the implicit function theorem.

    With orthonormal tangent bases B at a and C at b, :math:`J = JB` the derivative of
    :math:`\exp_a` along B (:func:`_induced_exp_jacobian`), :math:`M = C^T J B` and
    :math:`\lambda = M^{-T} B^T V / |V|`: the gradient in b is :math:`C\lambda` and in a
    :math:`-B J_a^T C\lambda`, :math:`J_a` the derivative of :math:`\exp_a(V)` in a along
    B (:func:`_exp_base_jacobian`; V stays tangent, so :math:`\langle V, dV\rangle` only
    sees the tangent part of dV). Both are tangent: the first variation of arc length
    (:math:`-V/|V|` at a, the final velocity at b) for the exact exponential, here of the
    RK4 one that ``log`` inverts (the first-variation formula would be off by the RK4
    error, ~1e-6 relative with 10 steps). 0 where the distance is 0 or inf.
    """
    metric = args["self"]
    space = metric._space
    (a, b), batch, pshape = _flat_batch(space, args["point_a"], args["point_b"])
    nb, n = a.shape
    d = np.broadcast_to(np.asarray(ans, dtype=np.float64), batch).reshape(-1)
    gb = np.broadcast_to(g, batch).reshape(-1)
    ok = np.isfinite(d) & (d > 0)
    out = {name: np.zeros((nb, n)) for name in wanted}
    if np.any(ok):
        A, Bp = a[ok], b[ok]
        V = metric.log(Bp.reshape((-1,) + pshape), A.reshape((-1,) + pshape)).reshape(-1, n)
        JB, Ba = _induced_exp_jacobian(metric, V, A)
        C = _tangent_basis(space, Bp)
        M = np.swapaxes(C, -1, -2) @ JB
        rhs = np.einsum("bnk,bn->bk", Ba, V) / d[ok][:, None]
        lam = np.linalg.solve(np.swapaxes(M, -1, -2), rhs[..., None])[..., 0]
        Clam = np.einsum("bnk,bk->bn", C, lam) * gb[ok][:, None]
        if "point_b" in wanted:
            out["point_b"][ok] = Clam
        if "point_a" in wanted:
            Ja = _exp_base_jacobian(metric, V, A, Ba)
            out["point_a"][ok] = -np.einsum("bnk,bik,bi->bn", Ba, Ja, Clam)
    return {name: grad.reshape(batch + pshape) for name, grad in out.items()}
