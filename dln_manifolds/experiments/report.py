"""Write the reproduction report: report.md, report.html, one PNG per figure, results.json."""

from __future__ import annotations

import html
import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._base import Claim, ExperimentResult, FigureSpec

__all__ = ["claims_table", "format_number", "jsonable", "save_figures", "write_report"]


def format_number(x: float, digits: int = 4) -> str:
    """Compact human-readable number for the tables (``digits`` significant digits)."""
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if x == round(x) and abs(x) < 1e6:
        return f"{int(round(x))}"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{min(digits, 3)}e}"


def jsonable(value: Any) -> Any:
    """Convert numpy scalars and arrays (recursively) to JSON-friendly Python objects."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else str(v)
    return value


_MODE_TEXT = {"abs": "|m - p|", "rel": "|m - p| / |p|", "le": "m <= p", "ge": "m >= p"}


def _claim_cells(exp_name: str, c: Claim) -> list[str]:
    return [
        exp_name,
        c.claim,
        c.quantity,
        format_number(c.predicted, 10),
        format_number(c.measured, 10),
        format_number(c.error),
        f"{'pass' if c.passed else 'FAIL'} "
        f"({_MODE_TEXT[c.mode]}, tol {format_number(c.tolerance)})",
    ]


_HEADER = ["experiment", "claim", "quantity", "predicted", "measured", "error", "verdict"]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def save_figures(figures: Sequence[FigureSpec], out_dir: str | Path, prefix: str) -> list[Path]:
    """Save each figure as ``<out_dir>/<prefix>_<name>.png`` (and close it); return the paths."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fig in figures:
        path = out / f"{prefix}_{fig.name}.png"
        fig.figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig.figure)
        paths.append(path)
    return paths


def claims_table(result: ExperimentResult) -> str:
    """The claim rows of one result as a plain-text table."""
    rows = [_claim_cells(result.name, c)[1:] for c in result.claims]
    head = _HEADER[1:]
    widths = [min(max(len(r[i]) for r in [head, *rows]), 60) for i in range(len(head))]
    fmt = "  ".join(f"{{:{w}.{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def write_report(
    results: Sequence[ExperimentResult],
    figures: dict[str, list[FigureSpec]],
    out_dir: str | Path,
    *,
    size: str,
    seed: int,
    unavailable: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write the report of a reproduction run.

    Parameters
    ----------
    results : sequence of ExperimentResult
    figures : dict
        Experiment name -> its figures (from the experiment's ``plot``). Each
        figure is saved as ``<out_dir>/<experiment>_<figure name>.png`` and closed.
    out_dir : str or Path
        Created if needed.
    size : str
        Size level of the run (reported).
    seed : int
        Seed of the run (reported).
    unavailable : dict, optional
        Experiments left out, with the reason (reported).

    Returns
    -------
    dict
        Paths of ``report.md``, ``report.html`` and ``results.json``.
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unavailable = dict(unavailable or {})
    pngs: dict[str, list[tuple[str, str]]] = {}
    for res in results:
        pngs[res.name] = []
        for fig in figures.get(res.name, []):
            fname = f"{res.name}_{fig.name}.png"
            fig.figure.savefig(out / fname, dpi=110, bbox_inches="tight")
            plt.close(fig.figure)
            pngs[res.name].append((fname, fig.caption))

    n_claims = sum(len(r.claims) for r in results)
    n_passed = sum(c.passed for r in results for c in r.claims)
    all_passed = n_passed == n_claims
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    total = sum(r.elapsed for r in results)
    head = (
        f"Size `{size}`, seed {seed}, {len(results)} experiments, {stamp}, "
        f"{total:.1f} s of compute. Claims passed: **{n_passed}/{n_claims}**."
    )

    # ---------------- markdown ----------------
    md = ["# dln-manifolds: reproduction report", "", head, ""]
    md += [
        "[R] Lindsey and Menon, *Regularization implies balancedness in the deep linear "
        "network*; [G] Menon, *The geometry of the deep linear network*. "
        "Error modes: `|m - p|` absolute, `|m - p| / |p|` relative, `m <= p` / `m >= p` "
        "one-sided bounds (error = amount of violation).",
        "",
        "## Claims",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "---|" * len(_HEADER),
    ]
    for r in results:
        for c in r.claims:
            md.append("| " + " | ".join(_md_escape(x) for x in _claim_cells(r.name, c)) + " |")
    if unavailable:
        md += [
            "",
            "Left out (dependency missing): "
            + ", ".join(f"`{k}` ({v})" for k, v in unavailable.items())
            + ".",
        ]
    md += ["", "## Experiments", ""]
    for r in results:
        kind = "" if r.claims else " Open question: observations only, no claim rows."
        md += [f"### {r.title}", "", f"`{r.name}`, {r.elapsed:.1f} s.{kind}", ""]
        if r.notes:
            md += [r.notes, ""]
        for fname, caption in pngs[r.name]:
            md += [f"![{r.name}]({fname})", ""]
            md += [line + "  " for line in caption.strip().splitlines()]
            md += [""]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    # ---------------- html ----------------
    e = html.escape
    h = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>dln-manifolds: reproduction report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;"
        "padding:3px 6px;vertical-align:top}tr.fail{background:#fdd}tr.pass td:last-child"
        "{color:#070}img{max-width:100%}figcaption{color:#333;font-size:90%}</style>",
        "</head><body>",
        "<h1>dln-manifolds: reproduction report</h1>",
        f"<p>{e(head).replace('**', '')}</p>",
        "<h2>Claims</h2><table><tr>" + "".join(f"<th>{e(x)}</th>" for x in _HEADER) + "</tr>",
    ]
    for r in results:
        for c in r.claims:
            cls = "pass" if c.passed else "fail"
            cells = "".join(f"<td>{e(x)}</td>" for x in _claim_cells(r.name, c))
            h.append(f'<tr class="{cls}">{cells}</tr>')
    h.append("</table>")
    if unavailable:
        h.append(
            "<p>Left out (dependency missing): "
            + ", ".join(f"<code>{e(k)}</code> ({e(v)})" for k, v in unavailable.items())
            + ".</p>"
        )
    h.append("<h2>Experiments</h2>")
    for r in results:
        kind = "" if r.claims else " Open question: observations only, no claim rows."
        h.append(f"<h3>{e(r.title)}</h3><p><code>{e(r.name)}</code>, {r.elapsed:.1f} s.{kind}</p>")
        if r.notes:
            h.append(f"<p>{e(r.notes)}</p>")
        for fname, caption in pngs[r.name]:
            cap = "<br>".join(e(line) for line in caption.strip().splitlines())
            h.append(
                f'<figure><img src="{e(fname)}" alt="{e(fname)}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
    h.append("</body></html>")
    (out / "report.html").write_text("\n".join(h) + "\n", encoding="utf-8")

    # ---------------- json ----------------
    payload = {
        "size": size,
        "seed": seed,
        "created": stamp,
        "python": platform.python_version(),
        "all_passed": all_passed,
        "n_claims": n_claims,
        "n_passed": n_passed,
        "unavailable": unavailable,
        "experiments": [
            {
                "name": r.name,
                "title": r.title,
                "elapsed_s": r.elapsed,
                "passed": r.passed,
                "claims": [c.to_dict() for c in r.claims],
                "summary": jsonable(r.summary),
                "figures": [{"file": f, "caption": cap} for f, cap in pngs[r.name]],
                "notes": r.notes,
            }
            for r in results
        ],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return {
        "markdown": out / "report.md",
        "html": out / "report.html",
        "json": out / "results.json",
    }
