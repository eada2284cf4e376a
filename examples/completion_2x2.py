"""Experiment 5: Limits of the downstairs flow for 2 x 2 matrix completion ([G] section 14.1).

Runs :func:`dln_manifolds.experiments.completion_2x2.run`, saves its figures (drawn from the
returned data by ``plot``) and prints the claim rows.

    python examples/completion_2x2.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use("Agg")

from dln_manifolds.experiments import completion_2x2, single_threaded_blas  # noqa: E402
from dln_manifolds.experiments.report import claims_table, save_figures  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny")
    size.add_argument("--full", dest="size", action="store_const", const="full")
    parser.set_defaults(size="quick")
    parser.add_argument("--out", default="results", help="output directory for the PNGs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with single_threaded_blas():  # small matrices: one BLAS thread is fastest
        result = completion_2x2.run(size=args.size, seed=args.seed)
    for path in save_figures(completion_2x2.plot(result), args.out, completion_2x2.NAME):
        print(f"wrote {path}")
    print(claims_table(result))
    if result.notes:
        print(result.notes)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
