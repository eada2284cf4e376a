"""Packaging: the sdist is self-contained, the wheel installs and runs, references stay inside.

One module fixture builds, offline and with the interpreter's own setuptools (no build
isolation, so nothing is downloaded):

1. the sdist, from a copy of the source tree (so the checkout gets no ``build/`` or
   ``*.egg-info``);
2. the wheel, from the unpacked sdist (as ``python -m build`` does: a wheel that builds from
   the sdist proves the sdist carries everything the build needs);
3. a fresh virtual environment with the wheel installed by pip with ``--no-deps``; the
   dependencies come from the running interpreter's site-packages through a ``.pth`` file.

The tests then run the README quickstart with that environment from a directory outside the
repository, and collect the test suite inside the unpacked sdist.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import dln_manifolds

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.packaging

# top-level entries of a checkout that are not sources (build outputs, environments, caches)
_NOT_SOURCES = {
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "results",
    ".pytest_cache",
    ".hypothesis",
    ".ruff_cache",
}
_ANYWHERE = {"__pycache__", "_build", "_generated"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == ROOT
    return {
        n
        for n in names
        if n in _ANYWHERE
        or n.endswith((".egg-info", ".pyc"))
        or (top and (n in _NOT_SOURCES or n.startswith(".venv")))
    }


def _clean_env() -> dict[str, str]:
    """The environment for child interpreters: nothing points back into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed (exit {proc.returncode}) in {cwd}:\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc


def _build(kind: str, source: Path, out: Path) -> Path:
    """Call the setuptools backend (PEP 517 hook ``build_<kind>``) in a child process."""
    code = (
        "import sys\n"
        "from setuptools import build_meta\n"
        f"print(build_meta.build_{kind}(sys.argv[1]))\n"
    )
    proc = _run([sys.executable, "-c", code, out], cwd=source)
    return out / proc.stdout.strip().splitlines()[-1]


def _backend_is_recent() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 77


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not _backend_is_recent():
        pytest.skip(
            "the build backend setuptools>=77 is not installed (it is in the 'test' extra: "
            "pip install -e '.[test]')"
        )
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_ignore)
    sdist = _build("sdist", source, tmp)
    unpacked = tmp / "sdist"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked_root,) = unpacked.iterdir()
    for_wheel = tmp / "wheel_source"
    shutil.copytree(unpacked_root, for_wheel)
    wheel = _build("wheel", for_wheel, tmp)

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
        ).stdout.strip()
    )
    # the dependencies: this interpreter's import path (site-packages and what their .pth files
    # add), after the venv's own site-packages; plain paths, so that the .pth files there (e.g.
    # an editable install of this package) stay inactive. The checkout and the stdlib are left out.
    base_lib = Path(sys.base_prefix).resolve() / "lib"
    env_root = Path(sys.prefix).resolve()  # may lie inside the checkout (make's .venv)

    def in_checkout(path: Path) -> bool:
        return path.is_relative_to(ROOT) and not path.is_relative_to(env_root)

    def is_dependency_dir(entry: str) -> bool:
        path = Path(entry).resolve() if entry else None
        if path is None or not path.is_dir() or in_checkout(path):
            return False
        return path.name == "site-packages" or not path.is_relative_to(base_lib)

    ours = [p for p in dict.fromkeys(sys.path) if is_dependency_dir(p)]
    (purelib / "zz_dependencies.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--quiet", wheel],
        cwd=tmp,
    )  # fmt: skip
    return {
        "tmp": tmp,
        "sdist": sdist,
        "wheel": wheel,
        "unpacked": unpacked_root,
        "python": python,
        "venv": venv,
    }


def _sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}


def test_sdist_carries_tests_docs_examples_benchmarks(built):
    names = _sdist_names(built["sdist"])
    for required in (
        "LICENSE",
        "CITATION.cff",
        "CHANGELOG.md",
        "README.md",
        "Makefile",
        "pyproject.toml",
        "dln_manifolds/py.typed",
        "tests/conftest.py",
        "tests/slopes.py",
        "docs/conf.py",
        "docs/mathematics.rst",
    ):
        assert required in names, f"{required} is missing from the sdist"
    # every source file of these folders is in the sdist
    for folder in ("tests", "docs", "examples", "benchmarks", "dln_manifolds"):
        here = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and not _ignored_path(p)
        }
        assert here, folder
        assert here <= names, f"missing from the sdist: {sorted(here - names)}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("docs/_build/", "docs/_generated/"))]


def _ignored_path(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return any(p in _ANYWHERE or p.endswith((".egg-info", ".pyc")) for p in parts)


def test_sdist_tests_collect_from_the_unpacked_archive(built):
    """``pytest --collect-only`` inside the unpacked sdist: no collection error, and every test
    module of the checkout contributes tests."""
    proc = _run(
        [built["python"], "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=built["unpacked"],
    )
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_*.py")}
    assert modules <= collected, f"collected nothing from {sorted(modules - collected)}"
    assert re.search(r"^\d+(/\d+)? tests? collected", proc.stdout, re.MULTILINE), proc.stdout


def test_sdist_tests_run_from_the_unpacked_archive(built):
    """A quick module of the suite passes when run inside the unpacked sdist."""
    proc = _run(
        [built["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_network.py"],
        cwd=built["unpacked"],
        timeout=300,
    )  # fmt: skip
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def _quickstart() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", section, re.DOTALL | re.MULTILINE)
    assert blocks, "README.md has no ```python block under '## Quickstart'"
    return blocks[0]


def test_readme_quickstart_runs_from_the_installed_wheel(built, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert ROOT not in outside.parents
    script = outside / "quickstart.py"
    check = (
        "\nimport importlib.metadata, pathlib, sys\n"
        "pkg = pathlib.Path(dln.__file__).resolve()\n"
        f"assert pathlib.Path({str(built['venv'].resolve())!r}) in pkg.parents, pkg\n"
        "assert (pkg.parent / 'py.typed').is_file()\n"
        "assert importlib.metadata.version('dln-manifolds') == dln.__version__\n"
        "print('INSTALLED', dln.__version__, pkg)\n"
    )
    script.write_text(_quickstart() + check, encoding="utf-8")
    proc = _run([built["python"], script], cwd=outside, timeout=300)
    assert f"INSTALLED {dln_manifolds.__version__}" in proc.stdout
    assert "iterations, end-to-end error" in proc.stdout
    # the console script of [project.scripts] is installed and runs
    exe = built["venv"] / ("Scripts/dln-manifolds.exe" if os.name == "nt" else "bin/dln-manifolds")
    listing = _run([exe, "list"], cwd=outside)
    assert "regularizing_rate" in listing.stdout


def test_wheel_metadata(built):
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = whl.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = whl.read(meta_name).decode()
    assert "dln_manifolds/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "examples/", "benchmarks/"))]
    fields = re.findall(r"^([A-Za-z-]+): (.*)$", meta.split("\n\n", 1)[0], re.MULTILINE)
    values: dict[str, list[str]] = {}
    for key, value in fields:
        values.setdefault(key, []).append(value)
    assert values["Version"] == [dln_manifolds.__version__]
    assert values["License-Expression"] == ["MIT"]
    assert values["Author"] == ["dln-manifolds developers"]
    assert "Typing :: Typed" in values["Classifier"]
    assert values["Requires-Python"] == [">=3.11"]


def test_version_is_written_once():
    """pyproject.toml reads the version from the package; CITATION.cff repeats it and must agree."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "dln_manifolds.__version__"}
    init = (ROOT / "dln_manifolds" / "__init__.py").read_text(encoding="utf-8")
    assert len(re.findall(r"^__version__ = ", init, re.MULTILINE)) == 1
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r'^version: "?([^"\n]+)"?$', cff, re.MULTILINE).group(1) == (
        dln_manifolds.__version__
    )


# ---------------------------------------------------------------------------------------------
# references: nothing cites a file outside the repository

_OUTSIDE = re.compile(r"MATH_NOTES|\.\./shared|/work/shared|shared/papers")
_SCANNED = ("dln_manifolds", "docs", "examples", "benchmarks", "tests")
_TOP_FILES = ("README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml", "Makefile")


def outside_references(root: Path) -> list[str]:
    """``path:line: text`` for each line under ``root`` citing a file outside the repository."""
    files = [root / f for f in _TOP_FILES if (root / f).is_file()]
    for folder in _SCANNED:
        files += [
            p
            for p in sorted((root / folder).rglob("*"))
            if p.is_file()
            and p.suffix in (".py", ".rst", ".md", ".txt", ".cfg", ".toml", ".json")
            and not any(part in _ANYWHERE for part in p.relative_to(root).parts)
        ]
    hits = []
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue  # this file names the patterns it looks for
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _OUTSIDE.search(line):
                hits.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return hits


def test_no_references_to_files_outside_the_repository():
    hits = outside_references(ROOT)
    assert not hits, "cite docs/mathematics.rst or [G]/[R] instead:\n" + "\n".join(hits)


def test_outside_reference_scan_finds_a_planted_citation(tmp_path):
    """Negative control: the scan reports a docstring that cites the notes file."""
    (tmp_path / "dln_manifolds").mkdir()
    (tmp_path / "dln_manifolds" / "mod.py").write_text('"""Rate 2 kappa (MATH_NOTES)."""\n')
    (tmp_path / "README.md").write_text("the code follows `../shared/notes.md`\n")
    assert outside_references(tmp_path) == [
        "README.md:1: the code follows `../shared/notes.md`",
        'dln_manifolds/mod.py:1: """Rate 2 kappa (MATH_NOTES)."""',
    ]


# ---------------------------------------------------------------------------------------------
# bibliography: module docstrings list what they cite, the way geomstats does

_MATH = ROOT / "docs" / "mathematics.rst"


def bibliography_labels(math_rst: str) -> set[str]:
    """Labels ``X`` of the entries ``**[X]**`` of the references section of mathematics.rst."""
    section = math_rst.split(".. _math-bibliography:", 1)[1]
    return set(re.findall(r"^\s+\* - \*\*\[([^\]]+)\]\*\*", section, re.MULTILINE))


def reference_problems(package: Path, math_rst: str) -> list[str]:
    """Modules whose docstrings cite [R] or [G] without listing them under ``References``, entries
    missing from the bibliography, and ``:ref:`` targets that mathematics.rst does not define."""
    labels = bibliography_labels(math_rst)
    targets = set(re.findall(r"^\.\. _([\w-]+):$", math_rst, re.MULTILINE))
    problems = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(package.parent).as_posix()
        tree = ast.parse(text)
        doc = ast.get_docstring(tree) or ""
        docstrings = "\n".join(
            ast.get_docstring(node) or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        )
        listed = set()
        if "\nReferences\n----------\n" in doc:
            section = doc.split("\nReferences\n----------\n", 1)[1]
            listed = set(re.findall(r"^- \[([^\]]+)\]", section, re.MULTILINE))
        for label in ("R", "G"):
            if f"[{label}]" in docstrings and label not in listed:
                problems.append(f"{name}: cites [{label}] but its docstring does not list it")
        problems += [f"{name}: [{x}] is not in the bibliography" for x in sorted(listed - labels)]
        for target in re.findall(r":ref:`(?:[^`<]*<)?(math-[\w-]+)>?`", text):
            if target not in targets:
                problems.append(f"{name}: :ref:`{target}` is not a label of docs/mathematics.rst")
    return problems


def test_module_docstrings_list_their_references():
    math_rst = _MATH.read_text(encoding="utf-8")
    assert {"R", "G", "ACH", "KN"} <= bibliography_labels(math_rst)
    problems = reference_problems(ROOT / "dln_manifolds", math_rst)
    assert not problems, "\n".join(problems)


def test_reference_check_catches_a_missing_entry(tmp_path):
    """Negative control: a module citing [G] without a References section, an unknown label
    and a dangling :ref: are all reported."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text('"""Depth metric ([G] eq. 4.14)."""\n')
    (package / "b.py").write_text(
        '"""See :ref:`math-nowhere`.\n\nReferences\n----------\n- [Q] Someone, *A paper*.\n"""\n'
    )
    problems = reference_problems(package, _MATH.read_text(encoding="utf-8"))
    assert problems == [
        "pkg/a.py: cites [G] but its docstring does not list it",
        "pkg/b.py: [Q] is not in the bibliography",
        "pkg/b.py: :ref:`math-nowhere` is not a label of docs/mathematics.rst",
    ]


def cited_tests_missing(math_rst: str, tests: Path) -> list[str]:
    """``file::test`` citations of mathematics.rst whose test function does not exist."""
    missing = []
    for file, name in re.findall(r"``(test_\w+\.py)::(test_\w+)``", math_rst):
        path = tests / file
        if not path.is_file() or not re.search(
            rf"^def {name}\(", path.read_text(encoding="utf-8"), re.MULTILINE
        ):
            missing.append(f"{file}::{name}")
    return missing


def test_tests_cited_as_evidence_exist():
    math_rst = _MATH.read_text(encoding="utf-8")
    assert len(re.findall(r"``test_\w+\.py::test_\w+``", math_rst)) >= 10
    assert cited_tests_missing(math_rst, ROOT / "tests") == []
    # negative control: a renamed test is reported
    assert cited_tests_missing("``test_fiber.py::test_no_such_test``", ROOT / "tests") == [
        "test_fiber.py::test_no_such_test"
    ]
