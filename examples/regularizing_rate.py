"""Experiment 2: log |G_k(t)| decays with slope -4 along the regularizing flow ([R] Thm 2).

Runs :func:`dln_manifolds.experiments.regularizing_rate.run`, saves its figures (drawn from the
returned data by ``plot``) and prints the claim rows.

    python examples/regularizing_rate.py [--tiny | --full] [--out DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use("Agg")

from dln_manifolds.experiments import regularizing_rate, single_threaded_blas  # noqa: E402
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
        result = regularizing_rate.run(size=args.size, seed=args.seed)
    for path in save_figures(regularizing_rate.plot(result), args.out, regularizing_rate.NAME):
        print(f"wrote {path}")
    print(claims_table(result))
    if result.notes:
        print(result.notes)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
