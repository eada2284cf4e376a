"""Experiment 7: Free energy minimizers for the 2 x 2 completion energy ([G] section 14.2).

Runs :func:`dln_manifolds.experiments.free_energy_2x2.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/free_energy_2x2.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("free_energy_2x2", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
