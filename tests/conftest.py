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
