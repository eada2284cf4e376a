"""The geomstats adapters under both geomstats backends (numpy and autograd).

geomstats reads GEOMSTATS_BACKEND once, at its first import, so each backend
runs a small script in its own subprocess. Under autograd the script also
cross-checks our closed-form Christoffel symbols and curvature against
geomstats' generic autodiff ones (AutodiffDepthMetric, [G] eq. 4.14 written
with backend operations): an independent computation of the same tensors.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("geomstats")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import geomstats.backend as gs
    from geomstats.learning.frechet_mean import FrechetMean
    from dln_manifolds.geomstats import AutodiffDepthMetric, EndToEndMatrices

    out = {"backend": gs.__name__, "autodiff": bool(gs.has_autodiff())}
    gs.random.seed(0)
    space = EndToEndMatrices(2, 3)
    space.metric.set_integrator(n_steps=10)
    m = space.metric
    x = space.random_point()
    v = 0.4 * gs.random.normal(size=4)
    y = m.exp(v, x)
    out["round_trip"] = float(np.max(np.abs(m.log(y, x) - v)))
    out["radial"] = float(np.max(np.abs(m.exp(x, x) - (1 + 1 / 3) ** 3 * x)))
    pts = m.exp(0.2 * gs.random.normal(size=(3, 4)), x)
    fm = FrechetMean(space)
    fm.set(epsilon=1e-14, max_iter=40)
    mean = fm.fit(pts).estimate_
    out["frechet_grad"] = float(m.norm(m.log(pts, mean).sum(axis=0), mean))
    out["belongs"] = bool(space.belongs(mean))
    if gs.has_autodiff():
        ref = EndToEndMatrices(2, 3, equip=False)
        ref.equip_with_metric(AutodiffDepthMetric, n_steps=10)
        out["christoffels_vs_autodiff"] = float(
            np.max(np.abs(ref.metric.christoffels(x) - m.christoffels(x)))
        )
        a, b, c = gs.random.normal(size=(3, 4))
        r_ref = ref.metric.curvature(a, b, c, x)
        out["curvature_vs_autodiff"] = float(
            np.max(np.abs(r_ref - m.curvature(a, b, c, x))) / np.max(np.abs(r_ref))
        )
    print(json.dumps(out))
    """
)


def _run(backend: str) -> dict:
    env = dict(os.environ, GEOMSTATS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["numpy", "autograd"])
def test_backend(backend):
    out = _run(backend)
    assert out["backend"] == f"geomstats.{backend}"
    assert out["round_trip"] < 1e-9
    assert out["radial"] < 1e-6  # RK4, 10 steps, |v| ~ 1: error ~1e-7 (see the exp tests)
    assert out["frechet_grad"] < 1e-6
    assert out["belongs"]
    if backend == "autograd":
        assert out["autodiff"]
        assert out["christoffels_vs_autodiff"] < 1e-12
        # ours: 4th-order finite differences of closed-form symbols (~1e-10 relative)
        assert out["curvature_vs_autodiff"] < 1e-7


def test_top_level_import_does_not_import_geomstats():
    code = (
        "import sys, dln_manifolds; "
        "assert 'geomstats' not in sys.modules, 'dln_manifolds imported geomstats'; "
        "import dln_manifolds.geomstats; assert 'geomstats' in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
