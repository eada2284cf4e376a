"""Experiment 5: Limits of the downstairs flow for 2 x 2 matrix completion ([G] section 14.1).

Runs :func:`dln_manifolds.experiments.completion_2x2.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/completion_2x2.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("completion_2x2", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
