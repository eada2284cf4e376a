"""The README's Python code blocks run as written.

All ```python blocks of README.md are concatenated in order (later blocks may
use names from earlier ones) and executed in a fresh interpreter from the
repository root, with a non-interactive matplotlib backend.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a markdown text, in order."""
    return [m.group(1) for m in _BLOCK.finditer(text)]


def test_block_extraction():
    text = "intro\n```python\nx = 1\n```\n```bash\nls\n```\n```python\nprint(x)\n```\n"
    assert python_blocks(text) == ["x = 1\n", "print(x)\n"]


def test_readme_python_blocks_run(tmp_path):
    assert README.is_file(), f"{README} is missing"
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    if not blocks:
        pytest.fail(
            "README.md has no ```python code block: the quickstart must be a ```python block "
            "that runs as written (this test executes it)"
        )
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"README code blocks failed (exit {proc.returncode}):\n"
        f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )
