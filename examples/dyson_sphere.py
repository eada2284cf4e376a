"""Experiment 10: Dyson Brownian motion through the lift; sphere radius growth ([G] Thm 15).

Runs :func:`dln_manifolds.experiments.dyson_sphere.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/dyson_sphere.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("dyson_sphere", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
