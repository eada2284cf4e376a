"""The command line: `list`, and `reproduce --tiny` end to end (all claims pass, files parse).

The command runs in a subprocess for the console, argument, output-directory and Ctrl-C
cases (exit status, the lines printed, what is left on disk).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dln_manifolds.cli import build_parser, main
from dln_manifolds.experiments import list_experiments, make_claim

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("FORCE_COLOR", None)
    return env


def _cli(args, cwd, timeout=300, **kw):
    """Run ``python -m dln_manifolds ARGS`` to completion (stdout, stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "dln_manifolds", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


def _unwritable_dir(tmp_path):
    """A directory this process cannot write in (root ignores permission bits: use /sys)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and _writable("/sys"):
            pytest.skip("no unwritable directory available to root here")
        return "/sys"
    d = tmp_path / "read_only"
    d.mkdir()
    d.chmod(0o500)
    return str(d)


def _writable(path):
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=path)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`reproduce --tiny` over every registered experiment (the test-suite version of --quick),
    run as `make demo` runs it, with its output going to pipes rather than a terminal."""
    out = tmp_path_factory.mktemp("reproduce")
    proc = _cli(["reproduce", "--tiny", "--out", str(out)], cwd=out, timeout=600)
    return proc, out


def test_reproduce_tiny_passes_and_writes_files(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stderr
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files


def test_log_without_terminal_is_one_line_per_experiment(tiny_run):
    """Piped stderr: no progress bars, one line per experiment, one summary line."""
    proc, _ = tiny_run
    assert "\r" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert [ln.split("]")[1].split()[0] for ln in lines] == [e.name for e in list_experiments()], (
        proc.stderr
    )
    assert all(ln.endswith("ok") for ln in lines)
    assert len(proc.stdout.splitlines()) == 1 and "claims passed" in proc.stdout
    assert len(proc.stderr) + len(proc.stdout) < 1500


def test_results_json_parses_and_every_claim_passes(tiny_run):
    out = tiny_run[1]
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
    out = tiny_run[1]
    payload = json.loads((out / "results.json").read_text())
    for exp in payload["experiments"]:
        assert exp["figures"], exp["name"]
        for fig in exp["figures"]:
            png = out / fig["file"]
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert len(fig["caption"].strip().splitlines()) == 2, fig["caption"]


def test_report_md_and_html(tiny_run):
    out = tiny_run[1]
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

    page = (out / "report.html").read_text()
    p = Collect()
    p.feed(page)
    assert "table" in p.tags
    assert "<code>tiny</code>" in page and "`" not in page  # markdown code spans rendered
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


def test_an_experiment_that_raises_leaves_a_partial_report(tmp_path, monkeypatch):
    """A bug in an experiment propagates, after the finished ones are written (marked)."""
    from dln_manifolds.experiments import get_experiment

    def boom(size="quick", seed=0, progress=False):
        raise RuntimeError("boom")

    monkeypatch.setattr(get_experiment("regularizing_rate").module, "run", boom)
    args = ["reproduce", "--tiny", "--only", "simons_cone", "regularizing_rate", "-q"]
    with pytest.raises(RuntimeError, match="boom"):
        main([*args, "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [e["name"] for e in payload["experiments"]] == ["simons_cone"]
    assert payload["status"] == "stopped: regularizing_rate raised RuntimeError: boom"
    assert (tmp_path / "report.md").read_text().startswith("> **INCOMPLETE: stopped")


def test_an_interrupt_wrapped_in_another_error_is_an_interrupt(tmp_path, monkeypatch, capsys):
    """Python 3.11 wraps Ctrl-C inside ``__set_name__`` (class creation, e.g. during an
    import) in a RuntimeError: it still ends the run as an interrupt, results kept."""
    from dln_manifolds.experiments import get_experiment

    def wrapped(size="quick", seed=0, progress=False):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__") from exc

    monkeypatch.setattr(get_experiment("regularizing_rate").module, "run", wrapped)
    args = ["reproduce", "--tiny", "--only", "simons_cone", "regularizing_rate", "-q"]
    assert main([*args, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("dln-manifolds: interrupted: 1 of 2"), err
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["status"] == "interrupted after 1 of 2 experiments"


def test_parser_defaults_and_exclusive_sizes():
    args = build_parser().parse_args(["reproduce"])
    assert (args.size, args.out, args.seed, args.only, args.no_progress, args.verbosity) == (
        "quick",
        "results",
        0,
        None,
        False,
        1,
    )
    assert build_parser().parse_args(["reproduce", "--full"]).size == "full"
    assert build_parser().parse_args(["reproduce", "-q"]).verbosity == 0
    assert build_parser().parse_args(["reproduce", "--verbose"]).verbosity == 2
    for clash in (["--quick", "--full"], ["-q", "-v"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["reproduce", *clash])


def test_python_dash_m_entry_point():
    proc = _cli(["list"], cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "simons_cone" in proc.stdout


# ---------------------------------------------------------------------------------------
# The command in a subprocess: argument and output checks, console output, Ctrl-C.
# ---------------------------------------------------------------------------------------

# a quick-size experiment of about half a minute: if the checks came after the computation,
# these cases would take that long and print its line before failing
_SLOW = ["reproduce", "--quick", "--only", "large_d_spectrum"]


@pytest.mark.parametrize("case", ["existing_file", "under_a_file", "unwritable", "empty"])
def test_bad_out_fails_at_once_with_one_line(case, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    out = {
        "existing_file": str(a_file),
        "under_a_file": str(a_file / "sub"),
        "unwritable": _unwritable_dir(tmp_path) if case == "unwritable" else None,
        "empty": "",
    }[case]
    proc = _cli([*_SLOW, "--out", out], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    _no_traceback(proc)
    assert "large_d_spectrum" not in proc.stderr.replace("--only", "")  # nothing ran
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert "--out" in err[-1] and "error" in err[-1]
    if case != "empty":  # argparse errors come with the usage lines; ours are one line
        assert len(err) == 1, proc.stderr
    # the empty string must not mean "the current directory"
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "report.md").exists()
    assert a_file.read_text() == "not a directory"


@pytest.mark.parametrize("seed", ["-1", "1.5", "x"])
def test_bad_seed_is_a_usage_error(seed, tmp_path):
    proc = _cli([*_SLOW, "--seed", seed, "--out", str(tmp_path / "o")], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    _no_traceback(proc)
    assert "argument --seed" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_reproduce_function_checks_before_work(tmp_path):
    from dln_manifolds.cli import reproduce

    with pytest.raises(ValueError, match="seed"):
        reproduce(size="tiny", only=["simons_cone"], out=tmp_path, seed=-1)
    with pytest.raises(ValueError, match="out"):
        reproduce(size="tiny", only=["simons_cone"], out="")
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        reproduce(size="tiny", only=["simons_cone"], out=tmp_path / "f")
    with pytest.raises(ValueError, match="size"):
        reproduce(size="huge", out=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_quiet_and_verbose(tmp_path, capsys):
    args = ["reproduce", "--tiny", "--only", "simons_cone", "--out", str(tmp_path)]
    assert main([*args, "-q"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    assert main([*args, "-v"]) == 0
    loud = capsys.readouterr()
    assert "Simons cone" in loud.err and "verdict" in loud.err  # the claim table
    assert len(loud.err.splitlines()) > 5


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_bars_on_a_terminal_only(tmp_path):
    import fcntl
    import struct
    import termios

    args = ["reproduce", "--tiny", "--only", "regularizing_rate", "--out", "o"]
    master, slave = os.openpty()
    # a fresh pty is 0 columns wide, and tqdm draws nothing in 0 columns
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks = []

    def drain():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dln_manifolds", *args],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=300,
        )
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "regularizing flow" in tty and "%|" in tty, tty  # the flow's bar


def _old_report(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("# dln-manifolds: reproduction report\n\nOLD RUN\n")
    (out / "report.html").write_text("<!DOCTYPE html>\n<html><body>\n<p>OLD RUN</p>\n</body>\n")
    (out / "results.json").write_text(json.dumps({"created": "OLD RUN", "experiments": []}))


def _start(args, cwd):
    """Start the command with SIGINT at its default (whatever the test runner inherited)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dln_manifolds", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _finish(proc, lines):
    rc = proc.wait(timeout=120)
    rest = []
    while (line := lines.get(timeout=60)) is not None:
        rest.append(line)
    return rc, rest, proc.stdout.read()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_after_first_experiment_keeps_its_results(tmp_path):
    out = tmp_path / "o"
    _old_report(out)
    # simons_cone takes about a second at the quick size, large_d_spectrum half a minute
    proc, lines = _start(
        ["reproduce", "--quick", "--only", "simons_cone", "large_d_spectrum", "--out", "o"],
        tmp_path,
    )
    try:
        first = lines.get(timeout=240)  # printed once the first report is written
        assert first is not None and "simons_cone" in first, first
        proc.send_signal(signal.SIGINT)
        rc, rest, stdout = _finish(proc, lines)
    finally:
        proc.kill()
    assert rc == 130, rest
    assert len(rest) == 1, rest  # one line, no traceback
    assert rest[0].startswith("dln-manifolds: interrupted: 1 of 2 experiments finished")
    assert stdout == ""
    payload = json.loads((out / "results.json").read_text())
    assert payload["complete"] is False and payload["all_passed"] is False
    assert "interrupted after 1 of 2" in payload["status"]
    assert [e["name"] for e in payload["experiments"]] == ["simons_cone"]
    assert all(c["passed"] for c in payload["experiments"][0]["claims"])
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert md.startswith("> **INCOMPLETE: interrupted after 1 of 2")
    assert "INCOMPLETE: interrupted after 1 of 2" in page
    assert "OLD RUN" not in md + page + json.dumps(payload)  # replaced whole
    assert (out / "simons_cone_cone_and_bw.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_before_any_result_leaves_the_old_report_marked_stale(tmp_path):
    out = tmp_path / "o"
    _old_report(out)
    proc, lines = _start(
        ["reproduce", "--quick", "--only", "large_d_spectrum", "--out", "o"], tmp_path
    )
    try:
        # the old report is marked (results.json last) before the first experiment starts
        deadline = time.monotonic() + 240
        while "stale" not in json.loads((out / "results.json").read_text()):
            assert proc.poll() is None, "the run ended without marking the old report"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        rc, rest, stdout = _finish(proc, lines)
    finally:
        proc.kill()
    assert rc == 130, (rest, stdout)
    assert len(rest) == 1 and "before the first experiment finished" in rest[0], rest
    assert "marked stale" in rest[0]
    md = (out / "report.md").read_text()
    assert md.startswith("> **STALE: a newer run started") and "OLD RUN" in md
    page = (out / "report.html").read_text()
    assert "STALE: a newer run started" in page and "OLD RUN" in page
    payload = json.loads((out / "results.json").read_text())
    assert payload["created"] == "OLD RUN" and "newer run" in payload["stale"]
    assert not list(out.glob("*.png"))
