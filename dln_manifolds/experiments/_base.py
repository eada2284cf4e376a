"""Common pieces of the experiments: claim rows, figures, results, sizes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SIZES",
    "Claim",
    "ExperimentResult",
    "FigureSpec",
    "check_size",
    "make_claim",
    "timed",
]

#: Size levels, smallest first: ``tiny`` (tests, seconds), ``quick`` (the
#: README's reproduction run, about two minutes for all experiments together)
#: and ``full`` (the larger versions).
SIZES = ("tiny", "quick", "full")


def check_size(size: str) -> str:
    """Validate a size level name."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return size


@dataclass(frozen=True)
class Claim:
    """One row of the claims table.

    Attributes
    ----------
    claim : str
        The statement checked, with its source (paper, theorem or equation).
    quantity : str
        What is measured.
    predicted : float
        The value the claim predicts.
    measured : float
        The value the run produced.
    error : float
        ``|measured - predicted|`` (``mode="abs"``), the same divided by
        ``|predicted|`` (``mode="rel"``), or the amount by which a one-sided bound
        is violated (``mode="le"``: measured <= predicted; ``mode="ge"``:
        measured >= predicted), 0 when it holds.
    tolerance : float
        Largest error that passes.
    passed : bool
        ``error <= tolerance``.
    mode : str
        ``"abs"``, ``"rel"``, ``"le"`` or ``"ge"``.
    """

    claim: str
    quantity: str
    predicted: float
    measured: float
    error: float
    tolerance: float
    passed: bool
    mode: str = "abs"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_claim(
    claim: str,
    quantity: str,
    predicted: float,
    measured: float,
    tolerance: float,
    mode: str = "abs",
) -> Claim:
    """Build a :class:`Claim`, computing the error and the verdict.

    Parameters
    ----------
    claim, quantity : str
        Statement (with its source) and measured quantity.
    predicted, measured : float
        Predicted and measured values.
    tolerance : float
        Largest error that passes (>= 0).
    mode : {"abs", "rel", "le", "ge"}
        How the error is computed (see :class:`Claim`).
    """
    predicted, measured, tolerance = float(predicted), float(measured), float(tolerance)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be non-negative, got {tolerance}")
    if mode == "abs":
        error = abs(measured - predicted)
    elif mode == "rel":
        error = abs(measured - predicted) / max(abs(predicted), np.finfo(float).tiny)
    elif mode == "le":
        error = max(measured - predicted, 0.0)
    elif mode == "ge":
        error = max(predicted - measured, 0.0)
    else:
        raise ValueError(f"mode must be 'abs', 'rel', 'le' or 'ge', got {mode!r}")
    passed = bool(np.isfinite(measured) and error <= tolerance)
    return Claim(claim, quantity, predicted, measured, float(error), tolerance, passed, mode)


@dataclass
class FigureSpec:
    """A figure produced from an experiment's data.

    Attributes
    ----------
    name : str
        File stem (the PNG is ``<experiment>_<name>.png``).
    caption : str
        Two lines: what is shown, and what to look at.
    figure : matplotlib.figure.Figure
    """

    name: str
    caption: str
    figure: Any


@dataclass
class ExperimentResult:
    """What an experiment returns.

    Attributes
    ----------
    name : str
        Registry name of the experiment.
    title : str
        One-line title with the paper reference.
    size : str
        Size level used (``"tiny"``, ``"quick"`` or ``"full"``).
    seed : int
        Seed of the run.
    data : dict
        Everything the figures are drawn from (numpy arrays and scalars).
    claims : list of Claim
        The claim rows.
    summary : dict
        Small JSON-friendly numbers worth reporting (fits, timings, counts).
    elapsed : float
        Wall-clock seconds of the run.
    notes : str
        Free text for the report (observations, caveats).
    """

    name: str
    title: str
    size: str
    seed: int
    data: dict[str, Any]
    claims: list[Claim]
    summary: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0
    notes: str = ""

    @property
    def passed(self) -> bool:
        """True when every claim row passes."""
        return all(c.passed for c in self.claims)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn()`` and return ``(value, seconds)``."""
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0
