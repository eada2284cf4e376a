"""Experiment 3: Minimizing |W|^2 and Schatten norms on the fiber with pymanopt ([R] Thm 1, 19).

Runs :func:`dln_manifolds.experiments.kempf_ness_pymanopt.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/kempf_ness_pymanopt.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    return example_main("kempf_ness_pymanopt", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
