"""The Sphinx documentation builds with warnings as errors (the command of `make docs`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.docs
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    env = dict(
        os.environ,
        DLN_DOCS_GALLERY_SIZE="tiny",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(ROOT / "docs"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    html = tmp_path / "html"
    for page in ("index", "getting_started", "mathematics", "api", "gallery", "performance"):
        assert (html / f"{page}.html").is_file(), page
    gallery = (html / "gallery.html").read_text()
    assert gallery.count("<img") >= 1
    assert "dln_manifolds.depth_metric.depth_operator" in (html / "api.html").read_text()
