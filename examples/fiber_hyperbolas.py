"""Experiment 1: Fibers w2 w1 = x and balanced asymptotes for d = 1, N = 2 ([R] Fig. 1.1).

Runs :func:`dln_manifolds.experiments.fiber_hyperbolas.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/fiber_hyperbolas.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("fiber_hyperbolas", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
