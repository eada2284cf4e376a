"""Experiment 2: log |G_k(t)| decays with slope -4 along the regularizing flow ([R] Thm 2).

Runs :func:`dln_manifolds.experiments.regularizing_rate.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/regularizing_rate.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("regularizing_rate", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
