import os
import sys

import matplotlib
import numpy as np
import pytest
from hypothesis import settings

matplotlib.use("Agg")
sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Deselect the geomstats generic tests that their data class marks ``ignore`` (a
    test without data), as geomstats' test plugin ``geomstats.test.conf`` does.

    That plugin also sets ``pytest_make_parametrize_id`` to repr, for every module
    collected after it. A module's test ids then depended on which files ran with it
    (``['NelderMead'-'E2E-2x3-N2']`` in a full run, ``[NelderMead-E2E-2x3-N2]`` alone),
    which broke ``--deselect`` and ``--lf`` across subsets. The generic tests have
    numeric parameters only, whose ids are the same either way. Their data are seeded by
    the node id, so the ids must not change.
    """
    ignored = {id(item) for item in items if any(m.name == "ignore" for m in item.own_markers)}
    if ignored:
        config.hook.pytest_deselected(items=[item for item in items if id(item) in ignored])
        items[:] = [item for item in items if id(item) not in ignored]
