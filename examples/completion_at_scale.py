"""Experiment 6: Matrix completion at scale: test error and effective rank against depth.

Runs :func:`dln_manifolds.experiments.completion_at_scale.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/completion_at_scale.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("completion_at_scale", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
