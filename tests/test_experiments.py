"""The experiment framework: claim rows, registry, report writer, figures from data."""

from __future__ import annotations

import json

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
from dln_manifolds.experiments.report import jsonable, write_report  # noqa: E402


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
    # the experiments whose dependencies are committed must be registered
    for name in ("upstairs_downstairs", "completion_2x2", "completion_at_scale", "simons_cone"):
        assert name in REGISTRY, UNAVAILABLE.get(name)
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
