"""Write the reproduction report: report.md, report.html, one PNG per figure, results.json.

Every file is written atomically (a temporary file in the same directory, then
``os.replace``): a reader sees either the old file or the new one, never a truncated one.
A report of an unfinished run says so in a banner (``status``), and :func:`mark_stale`
marks an older report while a new run is under way.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import platform
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._base import Claim, ExperimentResult, FigureSpec

__all__ = [
    "REPORT_FILES",
    "atomic_write",
    "claims_table",
    "format_number",
    "jsonable",
    "mark_stale",
    "save_figures",
    "write_report",
]

#: The text files of a report (the PNGs are named after the experiments).
REPORT_FILES = ("report.md", "report.html", "results.json")


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    A crash or Ctrl-C leaves either the previous file or the complete new one (and no
    temporary file). ``str`` is written as UTF-8.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _save_png(fig: FigureSpec, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.figure.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig.figure)
    atomic_write(path, buf.getvalue())


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
    """Save each figure as ``<out_dir>/<prefix>_<name>.png`` (and close it); return the paths.

    Each PNG is written atomically (see :func:`atomic_write`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fig in figures:
        path = out / f"{prefix}_{fig.name}.png"
        _save_png(fig, path)
        paths.append(path)
    return paths


def claims_table(result: ExperimentResult) -> str:
    """The claim rows of one result as a plain-text table."""
    rows = [_claim_cells(result.name, c)[1:] for c in result.claims]
    head = _HEADER[1:]
    widths = [min(max(len(r[i]) for r in [head, *rows]), 60) for i in range(len(head))]
    fmt = "  ".join(f"{{:{w}.{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def _inline_html(text: str) -> str:
    """Escape ``text`` for HTML, rendering the markdown ```code``` and ``**bold**`` spans."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


_MD_BANNER = "> **"
_HTML_BANNER = re.compile(r'<p class="banner"[^>]*>.*?</p>\n?', re.S)


def _banner_md(md: str, banner: str | None) -> str:
    """Replace the banner lines at the top of a markdown report by ``banner`` (None: remove)."""
    lines = md.split("\n")
    while lines and lines[0].startswith(_MD_BANNER):
        lines = lines[2:] if len(lines) > 1 and not lines[1] else lines[1:]
    if banner:
        lines = [f"{_MD_BANNER}{banner}**", "", *lines]
    return "\n".join(lines)


def _banner_html(doc: str, banner: str | None) -> str:
    doc = _HTML_BANNER.sub("", doc)
    if banner:
        tag = (
            '<p class="banner" style="background:#fdd;border:2px solid #c00;padding:6px;'
            f'font-weight:bold">{html.escape(banner)}</p>\n'
        )
        doc = doc.replace("<body>\n", "<body>\n" + tag, 1)
    return doc


def mark_stale(out_dir: str | Path, reason: str) -> list[Path]:
    """Mark the report in ``out_dir`` (if any) as stale, atomically, file by file.

    ``report.md`` and ``report.html`` get a banner saying ``reason``; ``results.json``
    gets ``"stale": reason``. Files that are absent (or a ``results.json`` that is not a
    JSON object) are skipped. A later
    :func:`write_report` replaces the files whole (and so removes the marks).

    Returns
    -------
    list of Path
        The files marked.
    """
    out = Path(out_dir)
    marked = []
    banner = f"STALE: {reason}"
    md, page, js = (out / name for name in REPORT_FILES)
    if md.is_file():
        atomic_write(md, _banner_md(md.read_text(encoding="utf-8"), banner))
        marked.append(md)
    if page.is_file():
        atomic_write(page, _banner_html(page.read_text(encoding="utf-8"), banner))
        marked.append(page)
    if js.is_file():
        try:
            payload = json.loads(js.read_text(encoding="utf-8"))
        except ValueError:
            payload = None
        if isinstance(payload, dict):  # anything else is not a report of ours: left alone
            payload["stale"] = reason
            atomic_write(js, json.dumps(payload, indent=2))
            marked.append(js)
    return marked


def write_report(
    results: Sequence[ExperimentResult],
    figures: dict[str, list[FigureSpec | tuple[str, str]]],
    out_dir: str | Path,
    *,
    size: str,
    seed: int,
    unavailable: dict[str, str] | None = None,
    status: str | None = None,
) -> dict[str, Path]:
    """Write the report of a reproduction run.

    Every file is replaced atomically (see :func:`atomic_write`).

    Parameters
    ----------
    results : sequence of ExperimentResult
    figures : dict
        Experiment name -> its figures: :class:`FigureSpec` (from the experiment's
        ``plot``), saved here as ``<out_dir>/<experiment>_<figure name>.png`` and closed, or
        ``(file name, caption)`` pairs of PNGs already saved in ``out_dir`` (see
        :func:`save_figures`).
    out_dir : str or Path
        Created if needed.
    size : str
        Size level of the run (reported).
    seed : int
        Seed of the run (reported).
    unavailable : dict, optional
        Experiments left out, with the reason (reported).
    status : str, optional
        None for a finished run; otherwise why the report is incomplete (e.g. "interrupted
        after 3 of 10 experiments"): shown as a banner at the top of ``report.md`` and
        ``report.html``, and as ``"complete": false, "status": ...`` in ``results.json``.

    Returns
    -------
    dict
        Paths of ``report.md``, ``report.html`` and ``results.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unavailable = dict(unavailable or {})
    pngs: dict[str, list[tuple[str, str]]] = {}
    for res in results:
        pngs[res.name] = []
        for fig in figures.get(res.name, []):
            if isinstance(fig, FigureSpec):
                fname = f"{res.name}_{fig.name}.png"
                _save_png(fig, out / fname)
                pngs[res.name].append((fname, fig.caption))
            else:
                fname, caption = fig
                pngs[res.name].append((str(fname), str(caption)))

    n_claims = sum(len(r.claims) for r in results)
    n_passed = sum(c.passed for r in results for c in r.claims)
    all_passed = n_passed == n_claims
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    total = sum(r.elapsed for r in results)
    head = (
        f"Size `{size}`, seed {seed}, {len(results)} experiments, {stamp}, "
        f"{total:.1f} s of compute. Claims passed: **{n_passed}/{n_claims}**."
    )
    banner = f"INCOMPLETE: {status}" if status else None

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
    md_text = _banner_md("\n".join(md) + "\n", banner)

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
        f"<p>{_inline_html(head)}</p>",
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
            h.append(f"<p>{_inline_html(r.notes)}</p>")
        for fname, caption in pngs[r.name]:
            cap = "<br>".join(e(line) for line in caption.strip().splitlines())
            h.append(
                f'<figure><img src="{e(fname)}" alt="{e(fname)}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
    h.append("</body></html>")
    html_text = _banner_html("\n".join(h) + "\n", banner)

    # ---------------- json ----------------
    payload = {
        "size": size,
        "seed": seed,
        "created": stamp,
        "complete": status is None,
        "status": status or "complete",
        "python": platform.python_version(),
        "all_passed": all_passed and status is None,
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
    paths = {
        "markdown": out / "report.md",
        "html": out / "report.html",
        "json": out / "results.json",
    }
    # results.json first: a reader that trusts the JSON sees the new verdict as early as possible
    atomic_write(paths["json"], json.dumps(payload, indent=2))
    atomic_write(paths["markdown"], md_text)
    atomic_write(paths["html"], html_text)
    return paths
