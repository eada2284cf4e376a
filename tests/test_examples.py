"""Each example script runs with its tiny size and writes its figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dln_manifolds.experiments import REGISTRY

# examples that are not tied to a registered experiment
STANDALONE = {"schatten_p1_fiber", "dask_sweep"}
EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_registered_experiment_has_an_example():
    stems = {p.stem for p in EXAMPLES}
    assert set(REGISTRY) <= stems, set(REGISTRY) - stems


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_tiny(path, tmp_path, capsys):
    mod = _load(path)
    assert callable(getattr(mod, "main", None)), f"{path.name} has no main(argv=None)"
    if path.stem not in REGISTRY and path.stem not in STANDALONE:
        pytest.skip(f"{path.stem}: its experiment is not registered (dependency missing)")
    if path.stem == "dask_sweep":
        pytest.importorskip("dask.distributed")
    rc = mod.main(["--tiny", "--out", str(tmp_path)])
    assert rc in (0, None)
    assert list(tmp_path.glob("*.png")), f"{path.name} wrote no figure"
