"""Experiment 4: Upstairs gradient flow vs the downstairs flow on (M_d, g^N) ([G] Thm 2-3).

Runs :func:`dln_manifolds.experiments.upstairs_downstairs.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/upstairs_downstairs.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("upstairs_downstairs", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
