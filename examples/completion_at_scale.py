"""Experiment 6: Matrix completion at scale: test error and effective rank against depth.

For each depth the downstairs flow and plain gradient descent on the weights (from the
balanced lift of the same start, learning rate 1/(N sigma^(2-2/N)), drawn at t = steps x lr)
are shown side by side.

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
