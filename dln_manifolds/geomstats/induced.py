r"""The Frobenius metric induced on submanifolds of :math:`(\mathbb{R}^{d\times d})^N`."""

from __future__ import annotations

import numpy as np
from geomstats.geometry.riemannian_metric import RiemannianMetric

__all__ = ["InducedFrobeniusMetric"]


class InducedFrobeniusMetric(RiemannianMetric):
    r"""Metric induced on submanifolds by :math:`\sum_p \mathrm{tr}(V_p^T Z_p)`.

    Used by :class:`~dln_manifolds.geomstats.Fiber` and
    :class:`~dln_manifolds.geomstats.BalancedManifold` (points and tangent
    vectors of shape (N, d, d)). Only the inner product (and the norms derived
    from it) is provided: neither space has closed-form geodesics, so
    ``exp``, ``log`` and ``dist`` raise ``NotImplementedError``. The spaces
    offer a ``retraction`` instead, which is *not* the exponential map
    (:class:`~dln_manifolds.geomstats.balanced.BalancedMetric` adds a numerical
    ``exp`` on the balanced manifold).
    """

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None):
        """Frobenius inner product summed over layers; shapes (..., N, d, d) -> (...,)."""
        a = np.asarray(tangent_vec_a, dtype=float)
        b = np.asarray(tangent_vec_b, dtype=float)
        shape = self._space.shape
        for name, arr in (("tangent_vec_a", a), ("tangent_vec_b", b)):
            if arr.shape[-3:] != shape:
                raise ValueError(f"{name} must have shape (..., {shape}), got {arr.shape}")
        out = np.sum(a * b, axis=(-3, -2, -1))
        if base_point is not None:
            base_point = np.asarray(base_point)
            out = np.broadcast_to(out, np.broadcast_shapes(out.shape, base_point.shape[:-3]))
        return out

    def _no_geodesics(self, *args, **kwargs):
        raise NotImplementedError(
            f"geodesics of the induced metric on {type(self._space).__name__} are not "
            "implemented here; use space.retraction(tangent_vec, base_point) (a retraction, "
            "not exp), or dln_manifolds.geomstats.EndToEndMatrices for (M_d, g^N)"
        )

    exp = log = squared_dist = dist = _no_geodesics
