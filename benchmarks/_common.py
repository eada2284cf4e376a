"""Helpers shared by the ``benchmarks/bench_*.py`` scripts: BLAS threads, timers, JSON output.

The scripts run as ``python benchmarks/bench_x.py``, so this folder is on ``sys.path`` and
they import this module as ``_common``. It imports no numpy at module level:
:func:`single_blas_thread` must run before numpy is first imported.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Where the benchmarks write their JSON results.
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_blas_thread() -> None:
    """Ask OpenMP, OpenBLAS and MKL for one thread (unless set already); call before numpy."""
    for var in _THREAD_VARS:
        os.environ.setdefault(var, "1")


def best_time(f: Callable[[], Any], repeat: int = 3, min_time: float = 0.05) -> float:
    """Best-of-``repeat`` seconds per call, each sample looping for >= min_time."""
    f()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        dt = time.perf_counter() - t0
        if dt >= min_time:
            break
        n *= 2
    samples = [dt / n]
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        samples.append((time.perf_counter() - t0) / n)
    return min(samples)


def median_time(f: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` single calls, after one warm-up call."""
    f()  # warm-up
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` as indented JSON to ``RESULTS_DIR/<name>.json``; return the path."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
