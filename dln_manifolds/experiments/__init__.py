"""Reproduced claims of [R] and [G]: one module per experiment.

Each experiment module defines

- ``NAME`` (registry name), ``NUMBER`` (its number in the issue list) and ``TITLE``;
- ``run(size="quick", seed=0, progress=False) -> ExperimentResult``: computes the data
  and the claim rows (see :class:`~dln_manifolds.experiments.ExperimentResult`);
- ``plot(result) -> list[FigureSpec]``: draws the figures from ``result.data`` only.

An experiment module that fails to import makes importing this package fail (its
error propagates); no experiment is left out silently.

Examples
--------
>>> from dln_manifolds.experiments import run_experiment
>>> result = run_experiment("simons_cone", size="tiny")
>>> result.passed
True

References
----------
- [R] K. Lindsey and G. Menon, *Regularization implies balancedness in the deep linear
  network*.
- [G] G. Menon, *The geometry of the deep linear network*, Progress in Probability
  (2024).

Full entries: docs/mathematics.rst, :ref:`math-bibliography`; corrections to the papers:
:ref:`math-corrections`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from threadpoolctl import threadpool_limits

from ._base import SIZES, Claim, ExperimentResult, FigureSpec, check_size, make_claim

__all__ = [
    "REGISTRY",
    "SIZES",
    "UNAVAILABLE",
    "Claim",
    "Experiment",
    "ExperimentResult",
    "FigureSpec",
    "example_main",
    "get_experiment",
    "list_experiments",
    "make_claim",
    "run_experiment",
    "single_threaded_blas",
]

#: Experiment modules in report order.
_MODULES = (
    "fiber_hyperbolas",
    "regularizing_rate",
    "kempf_ness_pymanopt",
    "upstairs_downstairs",
    "completion_2x2",
    "completion_at_scale",
    "free_energy_2x2",
    "large_d_spectrum",
    "simons_cone",
    "dyson_sphere",
    "saxe_hierarchy",
)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes
    ----------
    name : str
    number : int
        Position in the list of reproduced claims.
    title : str
    module : module
        Holds ``run`` and ``plot``.
    """

    name: str
    number: int
    title: str
    module: ModuleType

    def run(self, size: str = "quick", seed: int = 0, progress: bool = False) -> ExperimentResult:
        """Run the experiment; see the module's ``run``.

        BLAS runs single-threaded meanwhile (the matrices are small, at most 100 x 100, and
        multi-threaded BLAS on a busy machine is many times slower for them).
        """
        with single_threaded_blas():
            return self.module.run(size=check_size(size), seed=seed, progress=progress)

    def plot(self, result: ExperimentResult) -> list[FigureSpec]:
        """Draw the figures from ``result.data``."""
        return self.module.plot(result)


def single_threaded_blas() -> threadpool_limits:
    """Context manager limiting BLAS to one thread.

    threadpoolctl is imported with this package, not here: an import at the start of
    every experiment is a window where Ctrl-C surfaces as an import error.
    """
    return threadpool_limits(limits=1, user_api="blas")


REGISTRY: dict[str, Experiment] = {}
#: Kept for compatibility and always empty: an experiment that fails to import raises
#: instead of being left out.
UNAVAILABLE: dict[str, str] = {}


def _load() -> None:
    # Every dependency of the experiments is a required dependency of the package: an
    # import error is a bug and propagates (it must not make an experiment disappear
    # from the report).
    for mod_name in _MODULES:
        mod = importlib.import_module(f".{mod_name}", __name__)
        REGISTRY[mod.NAME] = Experiment(mod.NAME, mod.NUMBER, mod.TITLE, mod)


_load()


def list_experiments() -> list[Experiment]:
    """Registered experiments in report order."""
    return sorted(REGISTRY.values(), key=lambda e: e.number)


def get_experiment(name: str) -> Experiment:
    """The registered experiment called ``name``.

    Raises
    ------
    KeyError
        If no experiment has that name (the message lists the known names).
    """
    if name not in REGISTRY:
        known = ", ".join(e.name for e in list_experiments())
        raise KeyError(f"unknown experiment {name!r}; known: {known}")
    return REGISTRY[name]


def run_experiment(
    name: str, size: str = "quick", seed: int = 0, progress: bool = False
) -> ExperimentResult:
    """Run one experiment by name and return its :class:`ExperimentResult`."""
    return get_experiment(name).run(size=size, seed=seed, progress=progress)


def example_main(
    name: str, argv: Sequence[str] | None = None, description: str | None = None
) -> int:
    """Command-line entry point shared by the scripts ``examples/<name>.py``.

    Parses ``[--tiny | --full] [--out DIR] [--seed S]`` (default size ``quick``, output
    directory ``results``), runs the registered experiment ``name`` (single BLAS thread),
    saves its figures as ``<out>/<name>_<figure>.png``, prints the claim rows and the
    notes, and returns the exit status: 0 if every claim passed, 1 otherwise.

    Parameters
    ----------
    name : str
        Registered experiment name (see :func:`list_experiments`).
    argv : sequence of str, optional
        Command-line arguments; ``sys.argv[1:]`` when None.
    description : str, optional
        Help text of the parser (its first line is used); the experiment's title when None.

    Returns
    -------
    int
        0 if the result passed, else 1.

    Raises
    ------
    KeyError
        If ``name`` is not a registered experiment.
    """
    import matplotlib

    matplotlib.use("Agg")  # the scripts only write PNGs

    from .report import claims_table, save_figures

    exp = get_experiment(name)
    parser = argparse.ArgumentParser(
        description=(description or f"Experiment {exp.number}: {exp.title}").splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny")
    size.add_argument("--full", dest="size", action="store_const", const="full")
    parser.set_defaults(size="quick")
    parser.add_argument("--out", default="results", help="output directory for the PNGs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    result = exp.run(size=args.size, seed=args.seed)  # single BLAS thread: small matrices
    for path in save_figures(exp.plot(result), args.out, exp.name):
        print(f"wrote {path}")
    print(claims_table(result))
    if result.notes:
        print(result.notes)
    return 0 if result.passed else 1
