"""The evaluation report's parts: tables, the champion comparison, PNG plots (as bytes), two renderers.

A report is a list of blocks rendered twice (``to_markdown``, ``to_html``), so the two never disagree:
``("h", level, text)``, ``("p", text)``, ``("list", items)``, ``("table", headers, rows)``,
``("img", path relative to the report, caption)``. Reading and writing files is ``stages/report.py``'s job.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Block = tuple
MODES = {"blind": "blind (QF estimated)", "header": "QF from the JPEG header"}  # results.MODES, as table cells
REPRODUCED = "reproduced here"  # source label of the published JPEG rows
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#eee;text-align:left}tr.group td{border-top:2px solid #777}code{background:#f4f4f4}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}"""


def fmt(x: Any, digits: int = 2, signed: bool = False) -> str:
    """A number for a table cell; '-' when missing."""
    if isinstance(x, str):
        return x
    if x is None or math.isnan(x):
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def published_rows(published: dict[str, Any], set_name: str, qf: int) -> list[dict[str, Any]]:
    """The published rows of one set at one QF: method, kind, params, source and that QF's numbers."""
    rows = published.get("sets", {}).get(set_name, [])
    return [
        {k: r[k] for k in ("method", "kind", "params", "source")} | r["results"][qf] for r in rows if qf in r["results"]
    ]


def _scores(m: dict[str, Any], ssim_digits: int = 4) -> list[str]:
    return [fmt(m.get("psnr")), fmt(m.get("ssim"), ssim_digits), fmt(m.get("psnrb")), fmt(m.get("psnr_y"))]


def set_table(set_name: str, by_qf: dict[str, Any], published: dict[str, Any], n_params: str) -> Block:
    """One row per QF and method: JPEG and ours measured here, then the published rows for that QF."""
    head = ["QF", "method", "kind", "params", "PSNR", "SSIM", "PSNR-B", "PSNR (Y)", "gain (dB)", "source"]
    rows = []
    for qf in sorted(by_qf, key=int):
        r = by_qf[qf]
        rows.append([qf, f"JPEG input (n={r.get('n', '?')})", "-", "-", *_scores(r["jpeg"]), "-", "measured here"])
        for mode, kind in MODES.items():
            if mode in r:
                gain = fmt(r[mode].get("gain"), 3, signed=True)
                rows.append([qf, f"ours, {mode}", kind, n_params, *_scores(r[mode]), gain, "measured here"])
        pub = published_rows(published, set_name, int(qf))
        jpeg = next((p["psnr"] for p in pub if p["source"] == REPRODUCED), None)
        for p in pub:
            gain = p["psnr"] - jpeg if jpeg is not None and p["source"] != REPRODUCED else None
            rows.append([qf, p["method"], p["kind"], p["params"], *_scores(p, 3), fmt(gain, signed=True), p["source"]])
    return ("table", head, rows)


def real_world_table(cases: list[dict[str, Any]]) -> Block:
    """One row per real-world case and QF: PSNR in and out, gain, the best hand-picked QF with its
    gain and the share of it the decision got (cases without an exact QF), the QF chosen vs the truth."""
    head = [
        "case",
        "QF",
        "n",
        "PSNR in",
        "PSNR out",
        "gain (dB)",
        "best hand-picked QF",
        "its gain (dB)",
        "share of it",
        "QF used (mean)",
        "QF error",
        "unchanged",
        "decided by",
    ]
    rows = []
    for r in cases:
        sources = ", ".join(f"{k} {v}" for k, v in r["sources"].items())
        rows.append(
            [
                r["title"],
                r["qf"] if r["qf"] is not None else "-",
                r["n"],
                fmt(r["psnr_in"]),
                fmt(r["psnr_out"]),
                fmt(r["gain"], 3, True),
                r["best_qf"] if r["best_qf"] is not None else "-",
                fmt(r["best_gain"], 3, True),
                f"{r['share']:.0%}" if r["share"] is not None else "-",
                fmt(r["qf_used_mean"], 0),
                fmt(r["qf_abs_error"], 1),
                f"{r['unchanged']:.0%}",
                sources,
            ]
        )
    return ("table", head, rows)


def real_world_plot(set_name: str, cases: list[dict[str, Any]]) -> bytes | None:
    """PNG: gain vs QF, one line per case made at several QFs (None when there are none)."""
    series = {}
    for r in cases:
        if r["qf"] is not None:
            series.setdefault(r["title"], []).append({"qf": r["qf"], "gain": r["gain"]})
    series = {k: v for k, v in series.items() if len(v) > 1}
    if not series:
        return None
    fig, (ax,) = _figure(1)
    for title, pts in series.items():
        _draw(
            ax,
            (f"{set_name}: photos as users have them", "JPEG quality factor", "PSNR gain (dB)"),
            pts,
            "qf",
            {title: "gain"},
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.legend(fontsize=7)
    return _png(fig)


def qf_mae_table(results: dict[str, Any]) -> Block:
    """Mean absolute error of the QF estimator, one row per set, one column per QF."""
    qfs = sorted({int(q) for by_qf in results.values() for q in by_qf})
    rows = [[s] + [fmt(by_qf.get(str(q), {}).get("qf_est_mae")) for q in qfs] for s, by_qf in results.items()]
    return ("table", ["set"] + [f"QF{q}" for q in qfs], rows)


def champion_blocks(current: dict[str, Any], champion: dict[str, Any] | None, label: str) -> list[Block]:
    """The model just evaluated next to the registry's champion, on the same test sets and QFs
    (blind-mode PSNR and gain; ``champion`` is its stored evaluation, or None)."""
    if champion is None:
        return [("p", f"No comparison: {label}.")]
    head = ["set", "QF", "PSNR (this model)", "PSNR (champion)", "gain (this model)", "gain (champion)", "difference"]
    rows, better, total = [], 0, 0
    for s, by_qf in current["results"].items():
        for q, r in by_qf.items():
            c = champion["results"].get(s, {}).get(q, {}).get("blind", {})
            mine, theirs = r["blind"]["gain"], c.get("gain")
            diff = None if theirs is None else mine - theirs
            better, total = better + (diff is not None and diff > 0), total + (diff is not None)
            rows.append(
                [
                    s,
                    q,
                    fmt(r["blind"]["psnr"]),
                    fmt(c.get("psnr")),
                    fmt(mine, 3, True),
                    fmt(theirs, 3, True),
                    fmt(diff, 3, True),
                ]
            )
    summary = f"This model is better than the champion ({label}) at {better} of {total} set x QF points (blind mode)."
    if total < len(rows):
        summary += " '-': the champion's stored evaluation has no such point (the promote stage completes it)."
    return [("p", summary), ("table", head, rows)]


def _figure(ncols: int) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(5.5 * ncols, 3.6), layout="tight")
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _draw(ax: Any, labels: tuple[str, str, str], rows: list[dict[str, Any]], x: str, lines: dict[str, str]) -> None:
    """Plot column ``y`` against ``x`` for each ``{label: y}``, skipping rows that lack either (logs are sparse)."""
    for label, y in lines.items():
        pts = sorted((r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 50 else None, label=label)
    title, xlabel, ylabel = labels
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def gain_plot(set_name: str, rows: list[dict[str, Any]]) -> bytes:
    """PNG: PSNR gain over the JPEG input vs QF, blind and header modes. rows: {qf, gain_blind, gain_header}."""
    fig, (ax,) = _figure(1)
    labels = (f"{set_name}: gain over the JPEG input", "JPEG quality factor", "PSNR gain (dB)")
    _draw(ax, labels, rows, "qf", {MODES[m]: f"gain_{m}" for m in MODES})
    ax.axhline(0, color="k", lw=0.8)
    return _png(fig)


def train_plot(log: list[dict[str, Any]]) -> bytes:
    """PNG: training loss and, when validation ran, validation PSNR (model and JPEG input) vs step."""
    validated = any(r.get("val_psnr") is not None for r in log)
    fig, axes = _figure(2 if validated else 1)
    _draw(axes[0], ("training loss", "step", "loss"), log, "step", {"loss": "loss"})
    if axes[0].lines and min(axes[0].lines[0].get_ydata()) > 0:
        axes[0].set_yscale("log")  # the loss falls by orders of magnitude early on
    if validated:  # no empty frame when no validation ran
        labels = ("validation PSNR", "step", "PSNR (dB)")
        _draw(axes[1], labels, log, "step", {"model": "val_psnr", "JPEG input": "val_psnr_jpeg"})
    return _png(fig)


def to_markdown(blocks: list[Block]) -> str:
    """Markdown; images are linked by their path relative to reports/."""
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "list":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})  \n*{b[2]}*")
        elif b[0] == "table":
            lines = [b[1], ["---"] * len(b[1]), *b[2]]
            out.append("\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in lines))
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[Block], title: str, base: Path) -> str:
    """One self-contained HTML page: inline CSS, images as base64 data URIs, no external requests."""
    e = html.escape
    head = f"<head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style></head>"
    out = [f"<!DOCTYPE html><html>{head}<body>"]
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", e(b[1])) + "</p>")
        elif b[0] == "list":
            out.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in b[1]) + "</ul>")
        elif b[0] == "img":
            data = base64.b64encode((base / b[1]).read_bytes()).decode()
            out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(b[2])}'>")
            out.append(f"<figcaption>{e(b[2])}</figcaption></figure>")
        elif b[0] == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b[1]) + "</tr>")
            for i, row in enumerate(b[2]):
                group = " class='group'" if i and row[0] != b[2][i - 1][0] and b[1][0] == "QF" else ""
                out.append(f"<tr{group}>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
            out.append("</table>")
    return "\n".join(out + ["</body></html>"]) + "\n"
