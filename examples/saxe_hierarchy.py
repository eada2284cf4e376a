"""Experiment 11: stage-like learning of a hierarchy by rectangular networks ([SMG]).

Runs :func:`dln_manifolds.experiments.saxe_hierarchy.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/saxe_hierarchy.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("saxe_hierarchy", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
