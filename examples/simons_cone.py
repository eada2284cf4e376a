"""Experiment 9: The Simons cone and the Bures-Wasserstein metric ([G] Remarks 8-9).

Runs :func:`dln_manifolds.experiments.simons_cone.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/simons_cone.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("simons_cone", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
