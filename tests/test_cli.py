"""The command line: `list`, and `reproduce --tiny` end to end (all claims pass, files parse)."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from dln_manifolds.cli import build_parser, main
from dln_manifolds.experiments import list_experiments, make_claim


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`reproduce --tiny` over every registered experiment (the test-suite version of --quick)."""
    out = tmp_path_factory.mktemp("reproduce")
    rc = main(["reproduce", "--tiny", "--out", str(out), "--no-progress"])
    return rc, out


def test_reproduce_tiny_passes_and_writes_files(tiny_run):
    rc, out = tiny_run
    assert rc == 0
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0


def test_results_json_parses_and_every_claim_passes(tiny_run):
    _, out = tiny_run
    payload = json.loads((out / "results.json").read_text())
    assert payload["size"] == "tiny"
    names = [e["name"] for e in payload["experiments"]]
    assert names == [e.name for e in list_experiments()]
    assert payload["n_claims"] == sum(len(e["claims"]) for e in payload["experiments"]) > 0
    open_questions = {
        e.name for e in list_experiments() if getattr(e.module, "OPEN_QUESTION", False)
    }
    for exp in payload["experiments"]:
        # an open question ([G] 14.3) reports observations, every other experiment has claims
        assert bool(exp["claims"]) != (exp["name"] in open_questions), exp["name"]
        for c in exp["claims"]:
            assert c["passed"], (exp["name"], c)
            assert set(c) >= {
                "claim",
                "quantity",
                "predicted",
                "measured",
                "error",
                "tolerance",
                "passed",
            }
    assert payload["all_passed"] is True


def test_one_png_per_figure_with_two_line_caption(tiny_run):
    _, out = tiny_run
    payload = json.loads((out / "results.json").read_text())
    for exp in payload["experiments"]:
        assert exp["figures"], exp["name"]
        for fig in exp["figures"]:
            png = out / fig["file"]
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert len(fig["caption"].strip().splitlines()) == 2, fig["caption"]


def test_report_md_and_html(tiny_run):
    _, out = tiny_run
    md = (out / "report.md").read_text()
    assert md.startswith("# dln-manifolds: reproduction report")
    assert "| experiment | claim | quantity | predicted | measured | error | verdict |" in md
    assert "FAIL" not in md
    for png in out.glob("*.png"):
        assert f"]({png.name})" in md

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.imgs = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])

    p = Collect()
    p.feed((out / "report.html").read_text())
    assert "table" in p.tags
    assert sorted(p.imgs) == sorted(x.name for x in out.glob("*.png"))


def test_list_prints_every_experiment(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for exp in list_experiments():
        assert exp.name in text


def test_unknown_experiment_exit_status(tmp_path, capsys):
    assert main(["reproduce", "--tiny", "--only", "no_such_thing", "--out", str(tmp_path)]) == 2
    assert "no_such_thing" in capsys.readouterr().err


def test_failing_claim_gives_nonzero_exit(tmp_path, monkeypatch):
    from dln_manifolds.experiments import get_experiment

    exp = get_experiment("simons_cone")
    original = exp.module.run

    def broken(size="quick", seed=0, progress=False):
        res = original(size=size, seed=seed, progress=progress)
        res.claims.append(make_claim("a claim that fails", "x", 0.0, 1.0, 0.5))
        return res

    monkeypatch.setattr(exp.module, "run", broken)
    rc = main(
        ["reproduce", "--tiny", "--only", "simons_cone", "--out", str(tmp_path), "--no-progress"]
    )
    assert rc == 1
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["all_passed"] is False
    assert "FAIL" in (tmp_path / "report.md").read_text()


def test_parser_defaults_and_exclusive_sizes():
    args = build_parser().parse_args(["reproduce"])
    assert (args.size, args.out, args.seed, args.only, args.no_progress) == (
        "quick",
        "results",
        0,
        None,
        False,
    )
    assert build_parser().parse_args(["reproduce", "--full"]).size == "full"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reproduce", "--quick", "--full"])


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "dln_manifolds", "list"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "simons_cone" in proc.stdout
