"""Experiment 8: singular values of long RLE runs vs the quarter circle ([G] section 14.3).

Runs :func:`dln_manifolds.experiments.large_d_spectrum.run` through
:func:`dln_manifolds.experiments.example_main`: saves its figures (drawn from the returned
data by ``plot``) and prints the claim rows.

    python examples/large_d_spectrum.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys

from dln_manifolds.experiments import example_main


def main(argv: list[str] | None = None) -> int:
    # an open question: no claim rows, so the exit status is always 0
    return example_main("large_d_spectrum", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
