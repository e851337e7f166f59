"""One self-contained HTML page from a report: tables and plots inlined, no network.

Plots are drawn with matplotlib's object API (no pyplot, no global state) to
PNG and inlined as ``data:`` URIs; the page has no script, no external style,
font or image, so it reads the same offline and from a file.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._model import AuditReport, CheckResult

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:2em}
.pass{color:#176f2c} .fail{color:#b00020} .skipped{color:#777}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:left;vertical-align:top;font-size:.9em} th{background:#f3f3f3}
.verdict{font-size:1.3em;font-weight:bold} figure{margin:1em 0} img{max-width:100%}
pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:.8em;max-height:20em}
"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return (f'<figure><img src="{uri}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def plot_intervals(plot: dict[str, Any]) -> str | None:
    hist = plot.get("histogram")
    if not hist or not hist.get("n"):
        return None
    edges = [float(e) for e in hist["edges"]]
    counts = hist["counts"]
    n = hist["n"]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    density = [c / (n * w) if w > 0 else 0 for c, w in zip(counts, widths, strict=True)]
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    ax.bar(edges[:-1], density, width=widths, align="edge", alpha=0.6,
           label=f"measured ({n} intervals)")
    rate = hist.get("rate")
    if rate:
        xs = [edges[-1] * i / 200 for i in range(201)]
        ax.plot(xs, [rate * math.exp(-rate * x) for x in xs], color="C3",
                label=f"Exp(λ={rate:.3g})")
    ax.set_xlabel("inter-departure time (s)")
    ax.set_ylabel("density")
    ax.legend()
    return _png(fig)


def plot_sizes(plot: dict[str, Any]) -> str | None:
    hist = plot.get("size_histogram")
    if not hist:
        return None
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    labels = [str(s) for s, _ in hist[:40]]
    ax.bar(range(len(labels)), [n for _, n in hist[:40]])
    ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
    ax.set_xlabel("bytes per frame (write) / per traced cell")
    ax.set_ylabel("frames")
    ax.set_yscale("log")
    return _png(fig)


def plot_heatmap(hm: dict[str, Any]) -> str | None:
    rows = hm.get("r") or []
    if not rows or not rows[0]:
        return None
    data = [[0.0 if v is None else v for v in row] for row in rows]
    fig = Figure(figsize=(1.5 + 0.45 * len(data[0]), 1.2 + 0.4 * len(data)))
    ax = fig.add_subplot()
    im = ax.imshow(data, vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
    ax.set_xticks(range(len(data[0])), [f"out {i}" for i in range(len(data[0]))], fontsize=7,
                  rotation=60)
    ax.set_yticks(range(len(data)), [f"in {i}" for i in range(len(data))], fontsize=7)
    fig.colorbar(im, ax=ax, label="Pearson r (lag 0)")
    ax.set_title(str(hm.get("node", "")), fontsize=8)
    return _png(fig)


def plot_lags(plot: dict[str, Any]) -> str | None:
    nodes = plot.get("nodes") or []
    lags = plot.get("lags") or []
    if not nodes or not lags:
        return None
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    for i, row in enumerate(nodes[:8]):
        # a label must not start with "_" (matplotlib would leave it out of the legend)
        ax.plot(lags, [0 if v is None else v for v in row["r_by_lag"]], marker="o",
                label=f"{i + 1}: {str(row['node'])[-40:]}")
    ax.axhline(0, color="#999", lw=0.5)
    ax.set_xlabel("lag (bins; outgoing after incoming is positive)")
    ax.set_ylabel("r (in, out)")
    ax.legend(fontsize=7)
    return _png(fig)


def plot_anonymity(plot: dict[str, Any]) -> str | None:
    series = plot.get("series") or []
    if not series:
        return None
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.plot([s[0] for s in series], [s[1] for s in series], marker=".")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("anonymity set 2^H")
    ax.set_ylim(bottom=0)
    return _png(fig)


def _plots(c: CheckResult) -> list[str]:
    out = []
    if c.name == "timing" and (u := plot_intervals(c.plots)):
        out.append(_img(u, "Inter-departure times of the outgoing links against the "
                           "expected exponential"))
    if c.name == "cells" and (u := plot_sizes(c.plots)):
        out.append(_img(u, "Frame sizes on cell streams (a single bar at multiples of the "
                           "cell size is what passing looks like)"))
    if c.name == "correlation":
        if u := plot_lags(c.plots):
            out.append(_img(u, "Correlation of incoming and outgoing cell counts by lag"))
        for hm in c.plots.get("heatmaps", []):
            if u := plot_heatmap(hm):
                out.append(_img(u, "Correlation heatmap: incoming vs outgoing links"))
    if c.name == "anonymity" and (u := plot_anonymity(c.plots)):
        out.append(_img(u, "Effective anonymity set over time"))
    return out


def _table(rows: list[dict[str, Any]], limit: int = 20) -> str:
    if not rows:
        return ""
    keys: list[str] = []
    for r in rows[:limit]:
        keys += [k for k in r if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(r.get(k)))}</td>" for k in keys)
                   + "</tr>" for r in rows[:limit])
    more = f"<p>… and {len(rows) - limit} more</p>" if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _text(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, dict)):
        text = json.dumps(v, allow_nan=False)
        return text if len(text) <= 300 else text[:300] + " …"
    return str(v)


def _kv(d: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_text(v))}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def render_html(report: AuditReport) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    verdict = "PASSED" if report.passed else "FAILED: " + ", ".join(report.failed)
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<title>aegis-hidden privacy audit</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>aegis-hidden privacy audit</h1>",
             f'<p class="verdict {"pass" if report.passed else "fail"}">{html.escape(verdict)}</p>',
             "<h2>Summary</h2><table><tr><th>check</th><th>result</th><th>what it found</th></tr>"]
    for c in report.checks:
        parts.append(f'<tr><td><a href="#{c.name}">{c.name}</a></td>'
                     f'<td class="{c.status}">{c.status}</td><td>{html.escape(c.summary)}</td></tr>')
    parts.append("</table><h2>Inputs</h2>" + _table(report.inputs))
    parts.append("<h2>Parameters</h2>" + _kv(report.parameters))
    for c in report.checks:
        parts.append(f'<h2 id="{c.name}">{c.name}: <span class="{c.status}">{c.status}</span>'
                     f"</h2><p>{html.escape(c.summary)}</p>")
        parts.append("<h3>Thresholds</h3>" + _kv(c.thresholds))
        if c.figures:
            parts.append("<h3>Figures</h3>" + _kv(c.figures))
        parts += _plots(c)
        if c.findings:
            parts.append("<h3>Findings</h3>" + _table(c.findings))
        elif c.plots.get("links") and c.name in ("timing", "bursts", "volume"):
            parts.append("<h3>Links</h3>" + _table(c.plots["links"]))
        elif c.plots.get("nodes"):
            parts.append("<h3>Nodes</h3>" + _table(c.plots["nodes"]))
    parts.append("</body></html>")
    return "\n".join(parts)
