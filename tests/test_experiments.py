"""The experiment framework: claim rows, registry, report writer, figures from data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from dln_manifolds.experiments import (  # noqa: E402
    REGISTRY,
    SIZES,
    UNAVAILABLE,
    ExperimentResult,
    FigureSpec,
    get_experiment,
    list_experiments,
    make_claim,
    run_experiment,
)
from dln_manifolds.experiments.report import (  # noqa: E402
    atomic_write,
    jsonable,
    mark_stale,
    write_report,
)


@pytest.mark.parametrize(
    ("mode", "predicted", "measured", "tol", "error", "passed"),
    [
        ("abs", 1.0, 1.05, 0.1, 0.05, True),
        ("abs", 1.0, 1.2, 0.1, 0.2, False),
        ("rel", 2.0, 2.1, 0.06, 0.05, True),
        ("rel", -2.0, -2.3, 0.1, 0.15, False),
        ("le", 1.0, 0.5, 0.0, 0.0, True),
        ("le", 1.0, 1.5, 0.0, 0.5, False),
        ("ge", 1.0, 3.0, 0.0, 0.0, True),
        ("ge", 1.0, 0.25, 0.5, 0.75, False),
    ],
)
def test_make_claim_modes(mode, predicted, measured, tol, error, passed):
    c = make_claim("c", "q", predicted, measured, tol, mode)
    assert c.error == pytest.approx(error)
    assert c.passed is passed


def test_make_claim_rejects_bad_input():
    with pytest.raises(ValueError, match="mode"):
        make_claim("c", "q", 0.0, 0.0, 1.0, "max")
    with pytest.raises(ValueError, match="tolerance"):
        make_claim("c", "q", 0.0, 0.0, -1.0)
    assert not make_claim("c", "q", 0.0, np.nan, 1.0).passed  # NaN never passes


def test_registry_order_and_lookup():
    exps = list_experiments()
    assert [e.number for e in exps] == sorted(e.number for e in exps)
    assert len({e.name for e in exps}) == len(exps) == len(REGISTRY)
    # every experiment, by name and number: none may drop out of the report
    assert [(e.number, e.name) for e in exps] == [
        (1, "fiber_hyperbolas"),
        (2, "regularizing_rate"),
        (3, "kempf_ness_pymanopt"),
        (4, "upstairs_downstairs"),
        (5, "completion_2x2"),
        (6, "completion_at_scale"),
        (7, "free_energy_2x2"),
        (8, "large_d_spectrum"),
        (9, "simons_cone"),
        (10, "dyson_sphere"),
        (11, "saxe_hierarchy"),
    ]
    assert UNAVAILABLE == {}
    with pytest.raises(KeyError, match="unknown experiment"):
        get_experiment("nope")
    with pytest.raises(ValueError, match="size"):
        run_experiment("simons_cone", size="huge")
    assert SIZES == ("tiny", "quick", "full")


def test_every_module_declares_its_interface():
    for exp in list_experiments():
        mod = exp.module
        assert callable(mod.run) and callable(mod.plot)
        assert set(mod.PARAMS) == set(SIZES), mod.__name__
        assert mod.TITLE and mod.__doc__


@pytest.fixture(scope="module")
def simons():
    return run_experiment("simons_cone", size="tiny", seed=3)


def test_result_is_data_and_claims(simons):
    assert isinstance(simons, ExperimentResult)
    assert simons.passed and simons.claims
    assert all(isinstance(v, (np.ndarray, float, int)) for v in simons.data.values())
    json.dumps(jsonable(simons.summary))


def test_plot_uses_only_the_data(simons):
    """Figures come from result.data: plotting a result whose data were altered shows the change."""
    exp = get_experiment("simons_cone")
    figs = exp.plot(simons)
    assert figs and all(isinstance(f, FigureSpec) for f in figs)
    ax = figs[0].figure.axes[0]
    before = np.asarray(ax.collections[1].get_offsets())  # the balanced points
    altered = ExperimentResult(
        **{
            **simons.__dict__,
            "data": {**simons.data, "norms_balanced": simons.data["norms_balanced"] + 100.0},
        }
    )
    ax2 = exp.plot(altered)[0].figure.axes[0]
    after = np.asarray(ax2.collections[1].get_offsets())
    assert np.allclose(after, before + 100.0)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_seed_changes_the_data_but_not_the_verdict():
    a = run_experiment("simons_cone", size="tiny", seed=0)
    b = run_experiment("simons_cone", size="tiny", seed=1)
    assert not np.allclose(a.data["norms_balanced"], b.data["norms_balanced"])
    assert a.passed and b.passed
    c = run_experiment("simons_cone", size="tiny", seed=0)
    assert np.array_equal(a.data["norms_balanced"], c.data["norms_balanced"])  # reproducible


def test_write_report_with_a_failing_claim(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    res = ExperimentResult(
        "demo",
        "Demo | with a pipe",
        "tiny",
        0,
        {"x": np.arange(3)},
        [make_claim("ok", "a", 1.0, 1.0, 0.0), make_claim("bad", "b", 0.0, 2.0, 1.0)],
        summary={"v": np.float64(1.5), "arr": np.ones(2), "inf": np.inf},
        elapsed=0.1,
    )
    paths = write_report(
        [res],
        {"demo": [FigureSpec("f", "line one\nline two", fig)]},
        tmp_path,
        size="tiny",
        seed=0,
        unavailable={"other": "missing dependency"},
    )
    payload = json.loads(paths["json"].read_text())
    assert payload["n_claims"] == 2 and payload["n_passed"] == 1 and not payload["all_passed"]
    assert payload["experiments"][0]["summary"] == {"v": 1.5, "arr": [1.0, 1.0], "inf": "inf"}
    assert payload["unavailable"] == {"other": "missing dependency"}
    md = paths["markdown"].read_text()
    assert "FAIL" in md and "Demo \\| with a pipe" not in md.split("## Claims")[0]
    assert (tmp_path / "demo_f.png").is_file()
    assert "line one<br>line two" in paths["html"].read_text()


@pytest.mark.parametrize(
    ("blocked", "module"),
    [
        ("dln_manifolds.experiments.simons_cone", "simons_cone"),  # the experiment itself
        ("pymanopt", "pymanopt"),  # a dependency of kempf_ness_pymanopt
    ],
)
def test_an_experiment_that_fails_to_import_is_an_error(blocked, module):
    """No experiment silently leaves the registry: the import error propagates."""
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import dln_manifolds.experiments as e\n"
        "print(sorted(e.REGISTRY), e.UNAVAILABLE)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode != 0, proc.stdout
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(("ModuleNotFoundError", "ImportError")) and module in last, last


def _tiny_result(status_name="demo"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    res = ExperimentResult(
        status_name, "Demo", "tiny", 0, {}, [make_claim("ok", "a", 1.0, 1.0, 0.0)], elapsed=0.1
    )
    return res, {status_name: [FigureSpec("f", "line one\nline two", fig)]}


def test_report_status_banner_and_stale_mark(tmp_path):
    res, figs = _tiny_result()
    paths = write_report([res], figs, tmp_path, size="tiny", seed=0, status="interrupted")
    payload = json.loads(paths["json"].read_text())
    assert payload["complete"] is False and payload["status"] == "interrupted"
    assert payload["all_passed"] is False  # an incomplete run never passes as a whole
    assert paths["markdown"].read_text().startswith("> **INCOMPLETE: interrupted**")
    assert "INCOMPLETE: interrupted" in paths["html"].read_text()

    # a finished run replaces the files whole: no banner left
    paths = write_report([res], {"demo": [("demo_f.png", "a\nb")]}, tmp_path, size="tiny", seed=0)
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert md.startswith("# dln-manifolds") and "INCOMPLETE" not in md + page
    assert json.loads(paths["json"].read_text())["complete"] is True
    assert "<code>tiny</code>" in page and "`" not in page

    # marking twice leaves one banner; the report itself is kept
    mark_stale(tmp_path, "first")
    marked = mark_stale(tmp_path, "second")
    assert sorted(p.name for p in marked) == ["report.html", "report.md", "results.json"]
    md2, page2 = paths["markdown"].read_text(), paths["html"].read_text()
    assert md2 == "> **STALE: second**\n\n" + md
    assert page2.count("STALE") == 1 and "STALE: second" in page2
    assert (
        page2.replace(page2[page2.index('<p class="banner"') : page2.index("</p>\n") + 5], "")
        == page
    )
    payload = json.loads(paths["json"].read_text())
    assert payload["stale"] == "second" and payload["complete"] is True
    assert mark_stale(tmp_path / "nothing_here", "x") == []


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    atomic_write(target, "old\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left
    atomic_write(target, b"\x89PNG")
    assert target.read_bytes() == b"\x89PNG"


def test_simons_cone_labels_every_depth(simons):
    import matplotlib.pyplot as plt

    ax = get_experiment("simons_cone").plot(simons)[0].figure.axes[1]
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    lo, hi = ax.get_xlim()
    shown = [f"{N:g}" for N in simons.data["depths"]]
    assert labels == shown and lo < simons.data["depths"].min() and hi > simons.data["depths"].max()
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "docs/mathematics.rst" in legend  # (test_packaging checks no outside file is cited)
    plt.close("all")


def test_kempf_ness_curves_stop_at_the_rounding_floor():
    """No curve shows the rounding noise: values end at the first one at the floor."""
    import matplotlib.pyplot as plt

    result = run_experiment("kempf_ness_pymanopt", size="tiny", seed=0)
    fig = get_experiment("kempf_ness_pymanopt").plot(result)[0].figure
    floor = 16 * np.finfo(float).eps
    n_at_floor = 0
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() != "None"]
        assert lines
        for ln in lines:
            y = np.asarray(ln.get_ydata(), dtype=float)
            assert np.all(y >= floor), ln.get_label()
            assert np.count_nonzero(y <= floor) <= 1 and (y[-1] == floor or y.min() > floor)
            n_at_floor += y[-1] == floor
        assert ax.get_ylim()[0] >= floor / 100  # the axis does not reach down to 1e-17
    assert n_at_floor >= 2  # the tiny runs do reach the floor: the check above is not vacuous
    plt.close("all")
