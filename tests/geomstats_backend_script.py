"""End-to-end run of the geomstats adapters under the backend of GEOMSTATS_BACKEND.

Run by tests/test_geomstats_backends.py in a subprocess (geomstats reads the
backend once, at import): ``python geomstats_backend_script.py SECTION...`` with
sections ``downstairs`` ((M_d, g^N): EndToEndMatrices(2, 3)), ``upstairs``
(BalancedManifold, Fiber, BalancedBundle, the quotient metric) and ``widths``
(BalancedManifold and Fiber of general widths, flat points: all but geodesics) and
``widths_geodesics`` (their exp, log, dist, squared_dist, parallel_transport, geodesic) and
``rectangular`` (non-square EndToEndMatrices (3, 2) and (2, 3), N = 2, 3: every method,
FrechetMean, gradients, Christoffel symbols and curvature against AutodiffDepthMetric).
Prints one JSON line: the type of every returned array, errors of exp/log round
trips and of the Frechet means, and, under an autodiff backend, the relative
error of every gradient against central finite differences (ambient coordinates on the open set
M_d; directional derivatives along retraction curves on the submanifolds).
"""

import json
import sys
import time

import geomstats.backend as gs
import numpy as np
from geomstats.learning.frechet_mean import FrechetMean

from dln_manifolds.geomstats import (
    AutodiffDepthMetric,
    BalancedManifold,
    EndToEndMatrices,
    Fiber,
)
from dln_manifolds.geomstats._backend import BACKEND, NotDifferentiableError, plain

SECTIONS = sys.argv[1:] or [
    "downstairs",
    "upstairs",
    "widths",
    "widths_geodesics",
    "rectangular",
]
t0 = time.time()
out = {"backend": BACKEND, "autodiff": bool(gs.has_autodiff()), "types": {}, "not_diff": {}}
out["grad_err"] = {}
ARRAY = gs.zeros(1).__class__ if BACKEND == "pytorch" else (np.ndarray, np.generic)


def record(name, value):
    """Store whether every array returned is of the backend's type."""
    vals = value if isinstance(value, tuple) else (value,)
    out["types"][name] = all(isinstance(v, ARRAY) for v in vals)
    return value


def npf(x):
    return np.asarray(plain(x), dtype=float)


def fd_grad(f, p, h=1e-6):
    p = npf(p)
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        e = np.zeros_like(p)
        e[i] = h
        g[i] = (npf(f(gs.array(p + e))) - npf(f(gs.array(p - e)))) / (2 * h)
    return g


def check_grad(name, f, p, h=1e-6):
    """Gradient by the backend against central differences in every ambient coordinate."""
    value, grad = gs.autodiff.value_and_grad(f)(p)
    record("grad." + name, grad)
    ref = fd_grad(f, p, h)
    err = np.max(np.abs(npf(grad) - ref)) / max(1.0, np.max(np.abs(ref)))
    out["grad_err"][name] = float(err + abs(npf(value) - npf(f(p))))


def check_tangent_grad(name, f, p, manifold, h=1e-5):
    """Directional derivatives along retraction curves in 4 random tangent directions."""
    grad = gs.autodiff.value_and_grad(f)(p)[1]
    record("grad." + name, grad)
    err = 0.0
    for _ in range(4):
        u = npf(manifold.to_tangent(gs.random.normal(size=p.shape), p))
        fp = npf(f(manifold.retraction(gs.array(h * u), p)))
        fm = npf(f(manifold.retraction(gs.array(-h * u), p)))
        fd = (fp - fm) / (2 * h)
        err = max(err, abs(float(np.sum(npf(grad) * u)) - fd) / max(1.0, abs(fd)))
    out["grad_err"][name] = err


def frechet(name, space, pts, epsilon):
    """Frechet mean by geomstats; stores the norm of the sum of logs at the mean."""
    fm = FrechetMean(space)
    fm.set(epsilon=epsilon, max_iter=40)
    mean = record(f"{name}.frechet_mean", fm.fit(pts).estimate_)
    logs = space.metric.log(pts, mean)
    out[f"{name}.frechet_grad"] = float(npf(space.metric.norm(gs.sum(logs, axis=0), mean)))
    return mean


def check_not_differentiable(name, f, p):
    try:
        gs.autodiff.value_and_grad(f)(p)
        out["not_diff"][name] = "no error"
    except NotDifferentiableError as exc:
        out["not_diff"][name] = str(exc)


gs.random.seed(0)
space = EndToEndMatrices(2, 3)
m = space.metric
m.set_integrator(n_steps=10)
x = record("e2e.random_point", space.random_point())
v = 0.4 * gs.random.normal(size=(4,))
y = m.exp(v, x)

if "downstairs" in SECTIONS:
    record("e2e.random_point(3)", space.random_point(3))
    record("e2e.exp", y)
    lv = record("e2e.log", m.log(y, x))
    out["e2e.round_trip"] = float(np.max(np.abs(npf(lv) - npf(v))))
    record("e2e.dist", m.dist(x, y))
    record("e2e.squared_dist", m.squared_dist(x, y))
    record("e2e.inner_product", m.inner_product(v, v, x))
    record("e2e.squared_norm", m.squared_norm(v, x))
    record("e2e.norm", m.norm(v, x))
    record("e2e.metric_matrix", m.metric_matrix(x))
    record("e2e.cometric_matrix", m.cometric_matrix(x))
    record("e2e.christoffels", m.christoffels(x))
    record("e2e.christoffel_term", m.christoffel_term(v, v, x))
    record("e2e.geodesic_equation", m.geodesic_equation(gs.stack([x, v])))
    record("e2e.belongs", space.belongs(x))
    record("e2e.projection", space.projection(x))
    record("e2e.to_tangent", space.to_tangent(v, x))
    record("e2e.to_matrix", space.to_matrix(x))
    record("e2e.to_vector", space.to_vector(space.to_matrix(x)))
    record("e2e.random_tangent_vec", space.random_tangent_vec(x))
    record("e2e.geodesic", m.geodesic(initial_point=x, end_point=y)(gs.linspace(0.0, 1.0, 3)))
    record("e2e.curvature", m.curvature(v, 2 * v, v + 1, x))
    record("e2e.riemann_tensor", m.riemann_tensor(x))
    pts = m.exp(0.2 * gs.random.normal(size=(3, 4)), x)
    frechet("e2e", space, pts, 1e-12)
    if gs.has_autodiff():
        check_grad("e2e.squared_norm(point)", lambda p: m.squared_norm(v, p), x)
        check_grad("e2e.squared_norm(vector)", lambda u: m.squared_norm(u, x), v)
        check_grad("e2e.inner_product(point)", lambda p: m.inner_product(v, 2 * v + 1, p), x)
        check_grad("e2e.dist(point)", lambda p: m.dist(p, y), x)
        check_grad("e2e.squared_dist(point)", lambda p: m.squared_dist(y, p), x)
        C = gs.array(np.arange(16.0).reshape(4, 4) / 10)
        check_grad("e2e.metric_matrix", lambda p: gs.sum(C * m.metric_matrix(p)), x)
        check_grad("e2e.cometric_matrix", lambda p: gs.sum(C * m.cometric_matrix(p)), x)
        check_grad("e2e.to_matrix", lambda p: gs.sum(gs.sin(space.to_matrix(p))), x)
        check_grad("e2e.to_tangent", lambda u: gs.sum(gs.sin(space.to_tangent(u, x))), v)
        # inherited from geomstats: autodiff of metric_matrix (failed before, issue 13)
        jac = record("e2e.inner_product_derivative_matrix", m.inner_product_derivative_matrix(x))
        ref = np.stack(
            [fd_grad(lambda p, k=k: m.metric_matrix(p)[..., k // 4, k % 4], x) for k in range(16)]
        ).reshape(4, 4, 4)
        out["grad_err"]["e2e.inner_product_derivative_matrix"] = float(
            np.max(np.abs(npf(jac) - ref))
        )
        c4 = gs.array([0.3, -1.0, 0.7, 0.2])
        check_grad("e2e.exp(vector)", lambda u: gs.sum(c4 * m.exp(u, x)), v)
        check_grad("e2e.exp(point)", lambda p: gs.sum(c4 * m.exp(v, p)), x)
        check_grad("e2e.log(point)", lambda p: gs.sum(c4 * m.log(p, x)), y)
        check_grad("e2e.log(base_point)", lambda p: gs.sum(c4 * m.log(y, p)), x)
        check_not_differentiable("e2e.christoffels", lambda p: gs.sum(m.christoffels(p)), x)

if "upstairs" in SECTIONS:
    bal = BalancedManifold(2, 3)
    bal.metric.n_steps = 10
    W = record("bal.random_point", bal.random_point())
    record("bal.random_point(3)", bal.random_point(3))
    V = record("bal.to_tangent", bal.to_tangent(0.3 * gs.random.normal(size=(3, 2, 2)), W))
    T = record("bal.exp", bal.metric.exp(V, W))
    LV = record("bal.log", bal.metric.log(T, W))
    out["bal.round_trip"] = float(np.max(np.abs(npf(LV) - npf(V))))
    record("bal.dist", bal.metric.dist(W, T))
    record("bal.squared_dist", bal.metric.squared_dist(W, T))
    record("bal.squared_norm", bal.metric.squared_norm(V, W))
    record("bal.belongs", bal.belongs(W))
    record("bal.is_tangent", bal.is_tangent(V, W))
    record("bal.projection", bal.projection(W))
    record("bal.retraction", bal.retraction(V, W))
    record("bal.orthonormal_basis", bal.orthonormal_basis(W))
    bpts = bal.metric.exp(bal.to_tangent(0.2 * gs.random.normal(size=(3, 3, 2, 2)), W), W)
    bmean = frechet("bal", bal, bpts, 1e-10)
    out["bal.frechet_belongs"] = bool(npf(bal.belongs(bmean)))

    fib = Fiber(np.array([[1.2, 0.3], [-0.2, 0.9]]), 3)
    fib.metric.n_steps = 10
    F = record("fib.random_point", fib.random_point())
    record("fib.center", fib.center)
    FV = record("fib.to_tangent", fib.to_tangent(0.3 * gs.random.normal(size=(3, 2, 2)), F))
    FT = record("fib.exp", fib.metric.exp(FV, F))
    FL = record("fib.log", fib.metric.log(FT, F))
    out["fib.round_trip"] = float(np.max(np.abs(npf(FL) - npf(FV))))
    record("fib.dist", fib.metric.dist(F, FT))
    record("fib.projection", fib.projection(F))
    record("fib.retraction", fib.retraction(FV, F))
    fpts = fib.metric.exp(fib.to_tangent(0.2 * gs.random.normal(size=(3, 3, 2, 2)), F), F)
    frechet("fib", fib, fpts, 1e-10)

    quotient = bal.equip_with_quotient()
    bundle = bal.fiber_bundle
    X_W = record("bundle.riemannian_submersion", bundle.riemannian_submersion(W))
    record("bundle.tangent_riemannian_submersion", bundle.tangent_riemannian_submersion(V, W))
    record("bundle.lift", bundle.lift(x))
    record("bundle.horizontal_lift", bundle.horizontal_lift(v, fiber_point=W))
    record("bundle.horizontal_projection", bundle.horizontal_projection(V, W))
    record("bundle.vertical_projection", bundle.vertical_projection(V, W))
    record("bundle.is_horizontal", bundle.is_horizontal(V, W))
    record("bundle.align", bundle.align(bal.projection(W + 0.01), W))
    record("quotient.inner_product", quotient.metric.inner_product(v, v, X_W))
    record("quotient.exp", quotient.metric.exp(0.1 * v, X_W))
    out["quotient_vs_depth"] = float(
        abs(npf(quotient.metric.inner_product(v, v, X_W)) - npf(m.inner_product(v, v, X_W)))
    )
    if gs.has_autodiff():
        G = 0.1 * gs.array(np.arange(12.0).reshape(3, 2, 2))
        g4 = gs.array([0.3, -1.0, 0.7, 0.2])
        check_grad("bal.squared_norm(vector)", lambda u: bal.metric.squared_norm(u, W), V)
        check_tangent_grad("bal.dist(point)", lambda p: bal.metric.dist(p, T), W, bal)
        check_grad("bal.to_tangent", lambda u: gs.sum(G * bal.to_tangent(u, W)), V + 0.1)
        check_grad("fib.to_tangent", lambda u: gs.sum(G * fib.to_tangent(u, F)), FV + 0.1)
        check_tangent_grad("fib.dist(point)", lambda p: fib.metric.dist(FT, p), F, fib)
        check_grad(
            "bundle.riemannian_submersion",
            lambda p: gs.sum(g4 * bundle.riemannian_submersion(p)),
            W,
        )
        check_grad(
            "bundle.tangent_riemannian_submersion",
            lambda u: gs.sum(g4 * bundle.tangent_riemannian_submersion(u, W)),
            V,
        )
        check_grad(
            "bundle.horizontal_lift",
            lambda z: gs.sum(G * bundle.horizontal_lift(z, fiber_point=W)),
            v,
        )
        check_grad(
            "bundle.horizontal_projection",
            lambda u: gs.sum(G * bundle.horizontal_projection(u, W)),
            V + 0.1,
        )
        check_grad(
            "bundle.vertical_projection",
            lambda u: gs.sum(G * bundle.vertical_projection(u, W)),
            V + 0.1,
        )
        check_grad("quotient.squared_norm", lambda z: quotient.metric.squared_norm(z, X_W), v)
        check_grad("bal.exp(vector)", lambda u: gs.sum(G * bal.metric.exp(u, W)), V)
        check_tangent_grad("bal.log(point)", lambda p: gs.sum(G * bal.metric.log(p, W)), T, bal)
        check_grad("fib.exp(vector)", lambda u: gs.sum(G * fib.metric.exp(u, F)), FV)
        check_tangent_grad("fib.log(point)", lambda p: gs.sum(G * fib.metric.log(p, F)), FT, fib)
        check_not_differentiable("bal.exp(base_point)", lambda p: gs.sum(bal.metric.exp(V, p)), W)
        check_not_differentiable("bal.projection", lambda p: gs.sum(bal.projection(p)), W)


def widths_section(name, sp):
    """Every method of a space of general widths but the geodesics (flat points (D,))."""
    P = record(f"{name}.random_point", sp.random_point())
    Ps = record(f"{name}.random_point(3)", sp.random_point(3))
    out[f"{name}.belongs"] = bool(np.all(npf(record(f"{name}.belongs", sp.belongs(Ps)))))
    U = record(f"{name}.to_tangent", sp.to_tangent(gs.random.normal(size=P.shape), P))
    out[f"{name}.is_tangent"] = bool(npf(record(f"{name}.is_tangent", sp.is_tangent(U, P))))
    record(f"{name}.random_tangent_vec", sp.random_tangent_vec(Ps))
    off = record(f"{name}.projection", sp.projection(Ps + 0.01))
    out[f"{name}.projection_belongs"] = bool(np.all(npf(sp.belongs(off))))
    record(f"{name}.retraction", sp.retraction(0.1 * U, P))
    record(f"{name}.inner_product", sp.metric.inner_product(U, 2 * U, P))
    record(f"{name}.squared_norm", sp.metric.squared_norm(U, P))
    record(f"{name}.norm", sp.metric.norm(U, P))
    record(f"{name}.to_layers", tuple(sp.to_layers(Ps)))
    record(f"{name}.from_layers", sp.from_layers(sp.to_layers(Ps)))
    if not gs.has_autodiff():
        return
    G = gs.array(np.sin(np.arange(P.shape[0], dtype=float)))
    check_grad(f"{name}.squared_norm(vector)", lambda u: sp.metric.squared_norm(u, P), U)
    check_grad(f"{name}.inner_product(vector)", lambda u: sp.metric.inner_product(u, U + 1, P), U)
    check_grad(f"{name}.to_tangent", lambda u: gs.sum(G * sp.to_tangent(u, P)), U + 0.1)
    check_grad(f"{name}.to_layers", lambda p: gs.sum(gs.sin(sp.to_layers(p)[1])), P)
    check_not_differentiable(f"{name}.projection", lambda p: gs.sum(sp.projection(p)), P)


def widths_geodesics(name, sp):
    """The geodesics of a space of general widths (flat points (D,)) and their gradients."""
    sp.metric.n_steps = 10
    m = sp.metric
    P = sp.random_point()
    V = 0.3 * sp.to_tangent(gs.random.normal(size=P.shape), P)
    U = sp.to_tangent(gs.random.normal(size=P.shape), P)
    E = record(f"{name}.exp", m.exp(V, P))
    L = record(f"{name}.log", m.log(E, P))
    out[f"{name}.round_trip"] = float(np.max(np.abs(npf(L) - npf(V))))
    record(f"{name}.dist", m.dist(P, E))
    record(f"{name}.squared_dist", m.squared_dist(P, E))
    record(f"{name}.parallel_transport", m.parallel_transport(U, P, direction=V))
    record(f"{name}.geodesic", m.geodesic(initial_point=P, end_point=E)(gs.linspace(0.0, 1.0, 3)))
    if not gs.has_autodiff():
        return
    G = gs.array(np.cos(np.arange(P.shape[0], dtype=float)))
    check_grad(f"{name}.exp(vector)", lambda u: gs.sum(G * m.exp(u, P)), V)
    check_tangent_grad(f"{name}.log(point)", lambda p: gs.sum(G * m.log(p, P)), E, sp)
    check_tangent_grad(f"{name}.dist(point_a)", lambda p: m.dist(p, E), P, sp)
    check_tangent_grad(f"{name}.dist(point_b)", lambda p: m.dist(P, p), E, sp)
    check_tangent_grad(f"{name}.squared_dist(point)", lambda p: m.squared_dist(p, E), P, sp)
    check_grad(
        f"{name}.parallel_transport(vector)",
        lambda u: gs.sum(G * m.parallel_transport(u, P, direction=V)),
        U,
    )
    check_not_differentiable(f"{name}.exp(base_point)", lambda p: gs.sum(m.exp(V, p)), P)
    check_not_differentiable(f"{name}.log(base_point)", lambda p: gs.sum(m.log(E, p)), P)
    check_not_differentiable(
        f"{name}.parallel_transport(direction)",
        lambda v: gs.sum(m.parallel_transport(U, P, direction=v)),
        V,
    )


if "widths" in SECTIONS:
    widths_section("bal_w", BalancedManifold(widths=(3, 5, 4, 2)))
    X_w = np.array([[1.1, 0.2], [-0.3, 0.8], [0.5, 0.1], [0.0, 0.4], [0.2, -0.6]])
    widths_section("fib_w", Fiber(X_w, 3, widths=(2, 4, 3, 5)))

if "widths_geodesics" in SECTIONS:
    widths_geodesics("bal_wg", BalancedManifold(widths=(3, 5, 4, 2)))
    X_w = np.array([[1.1, 0.2], [-0.3, 0.8], [0.5, 0.1], [0.0, 0.4], [0.2, -0.6]])
    widths_geodesics("fib_wg", Fiber(X_w, 3, widths=(2, 4, 3, 5)))


def rectangular(name, shape, depth):
    """Non-square EndToEndMatrices(shape, depth): every geodesic tool, backend types, and
    under an autodiff backend the gradients of squared_norm, dist, exp and log."""
    sp = EndToEndMatrices(shape, depth)
    m = sp.metric
    m.set_integrator(n_steps=10)
    n = sp.dim
    P = record(f"{name}.random_point", sp.random_point())
    Ps = record(f"{name}.random_point(5)", sp.random_point(5))
    out[f"{name}.belongs"] = bool(np.all(npf(record(f"{name}.belongs", sp.belongs(Ps)))))
    mask = np.ones(shape)
    mask[0] = 0.0 if shape[0] < shape[1] else 1.0
    mask[:, 0] = 0.0 if shape[0] > shape[1] else mask[:, 0]
    deficient = gs.array((npf(sp.to_matrix(P)) * mask).reshape(n))
    out[f"{name}.deficient_belongs"] = bool(npf(sp.belongs(deficient)))
    proj = record(f"{name}.projection", sp.projection(deficient))
    out[f"{name}.projection_belongs"] = bool(npf(sp.belongs(proj)))
    V = 0.3 * gs.random.normal(size=(n,))
    U = gs.random.normal(size=(n,))
    E = record(f"{name}.exp", m.exp(V, P))
    L = record(f"{name}.log", m.log(E, P))
    out[f"{name}.round_trip"] = float(np.max(np.abs(npf(L) - npf(V))))
    D = record(f"{name}.dist", m.dist(P, E))
    out[f"{name}.dist_vs_norm"] = float(abs(npf(D) - npf(m.norm(V, P))))
    record(f"{name}.squared_dist", m.squared_dist(P, E))
    record(f"{name}.squared_norm", m.squared_norm(V, P))
    record(f"{name}.parallel_transport", m.parallel_transport(U, P, direction=V))
    record(f"{name}.geodesic", m.geodesic(initial_point=P, end_point=E)(gs.linspace(0.0, 1.0, 3)))
    record(f"{name}.to_matrix", sp.to_matrix(Ps))
    record(f"{name}.to_vector", sp.to_vector(sp.to_matrix(Ps)))
    record(f"{name}.to_tangent", sp.to_tangent(U, P))
    record(f"{name}.random_tangent_vec", sp.random_tangent_vec(Ps))
    record(f"{name}.inner_product", m.inner_product(U, V, Ps))
    record(f"{name}.norm", m.norm(V, P))
    record(f"{name}.metric_matrix", m.metric_matrix(P))
    record(f"{name}.cometric_matrix", m.cometric_matrix(P))
    record(f"{name}.christoffels", m.christoffels(P))
    record(f"{name}.christoffel_term", m.christoffel_term(U, V, P))
    record(f"{name}.geodesic_equation", m.geodesic_equation(gs.stack([P, V])))
    record(f"{name}.retraction", m.retraction(V, P))
    record(f"{name}.curvature", m.curvature(U, V, U + V, P))
    pts = m.exp(0.2 * gs.random.normal(size=(5, n)), P)
    mean = frechet(name, sp, pts, 1e-16)  # stops at |sum of logs| <= 5 sqrt(1e-16 dim)
    out[f"{name}.frechet_belongs"] = bool(npf(sp.belongs(mean)))
    if not gs.has_autodiff():
        return
    G = gs.array(np.cos(np.arange(n, dtype=float)))
    check_grad(f"{name}.squared_norm(base_point)", lambda p: m.squared_norm(V, p), P)
    check_grad(f"{name}.dist(point_a)", lambda p: m.dist(p, E), P, h=1e-5)
    check_grad(f"{name}.dist(point_b)", lambda p: m.dist(P, p), E, h=1e-5)
    check_grad(f"{name}.exp(tangent_vec)", lambda u: gs.sum(G * m.exp(u, P)), V)
    check_grad(f"{name}.exp(base_point)", lambda p: gs.sum(G * m.exp(V, p)), P)
    check_grad(f"{name}.log(point)", lambda p: gs.sum(G * m.log(p, P)), E, h=1e-5)
    check_grad(f"{name}.log(base_point)", lambda p: gs.sum(G * m.log(E, p)), P, h=1e-5)
    check_grad(f"{name}.squared_dist(point_a)", lambda p: m.squared_dist(p, E), P, h=1e-5)
    # the closed-form symbols and curvature against geomstats' autodiff of [G] eq. 4.14
    ref = EndToEndMatrices(shape, depth, equip=False)
    ref.equip_with_metric(AutodiffDepthMetric)
    out[f"{name}.christoffels_vs_autodiff"] = float(
        np.max(np.abs(npf(ref.metric.christoffels(P)) - npf(m.christoffels(P))))
    )
    if BACKEND == "autograd":  # pytorch: geomstats' jacobian_vec does not differentiate twice
        r_ref = npf(ref.metric.curvature(U, V, U + V, P))
        out[f"{name}.curvature_vs_autodiff"] = float(
            np.max(np.abs(r_ref - npf(m.curvature(U, V, U + V, P)))) / np.max(np.abs(r_ref))
        )
    else:
        try:
            ref.metric.curvature(U, V, U + V, P)
            out[f"{name}.curvature_vs_autodiff"] = "no error"
        except NotImplementedError as exc:
            out[f"{name}.curvature_vs_autodiff"] = str(exc)
    C = gs.array(np.sin(np.arange(n * n, dtype=float)).reshape(n, n))
    check_grad(f"{name}.metric_matrix", lambda p: gs.sum(C * m.metric_matrix(p)), P)
    check_grad(f"{name}.cometric_matrix", lambda p: gs.sum(C * m.cometric_matrix(p)), P)
    check_grad(f"{name}.inner_product(vector)", lambda u: m.inner_product(u, U + 1, P), V)
    check_grad(f"{name}.to_matrix", lambda p: gs.sum(gs.sin(sp.to_matrix(p))), P)
    check_not_differentiable(f"{name}.christoffels", lambda p: gs.sum(m.christoffels(p)), P)
    check_not_differentiable(
        f"{name}.parallel_transport(tangent_vec)",
        lambda u: gs.sum(m.parallel_transport(u, P, direction=V)),
        U,
    )


if "rectangular" in SECTIONS:
    for _shape in ((3, 2), (2, 3)):
        for _depth in (2, 3):
            rectangular(f"rect{_shape[0]}x{_shape[1]}_N{_depth}", _shape, _depth)

out["seconds"] = time.time() - t0
print(json.dumps(out))
