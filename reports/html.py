"""The human-readable report as one self-contained HTML page.

Everything is escaped (report text comes from models and people), the ECG
printout is inlined as a data: URI and the style sheet is inline, so the page
loads nothing from anywhere: safe to open inside a hospital network.
"""

from __future__ import annotations

import base64
import html as _html

from core.records import DraftReport, Study
from reports._layout import Layout, build_layout
from reports.context import ReportContext

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#111;max-width:60em}
h1{font-size:1.4em}h2{font-size:1.1em;border-bottom:1px solid #ccc;margin-top:1.4em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left}
.banner{padding:.6em;font-weight:bold;border:2px solid}
.draft{background:#fff3cd;border-color:#c00;color:#900}.signed{background:#e8f5e9;border-color:#2e7d32}
.watermark{position:fixed;top:40%;left:10%;font-size:4em;color:rgba(200,0,0,.12);transform:rotate(-30deg);
pointer-events:none}
img{max-width:100%;border:1px solid #ccc}
"""


def _e(text: str) -> str:
    return _html.escape(text, quote=True)


def _table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    report: DraftReport, study: Study, ctx: ReportContext, *, ecg_printout_png: bytes | None = None
) -> bytes:
    """Render the report as UTF-8 HTML bytes (deterministic for the same inputs)."""
    lay: Layout = build_layout(report, study, ctx)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">",
        f"<title>{_e(lay.title)}</title><style>{_CSS}</style></head><body>",
    ]
    if lay.watermark:
        parts.append(f'<div class="watermark" aria-hidden="true">{_e(lay.watermark)}</div>')
    cls = "draft" if lay.is_draft else "signed"
    parts.append(f'<h1>{_e(lay.title)}</h1><p class="banner {cls}" role="status">{_e(lay.banner)}</p>')
    parts.append("<h2>Exam</h2><table>")
    parts += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in lay.exam]
    parts.append("</table>")
    for heading, text in lay.sections:
        paras = "".join(f"<p>{_e(p)}</p>" for p in text.split("\n") if p.strip())
        parts.append(f"<h2>{_e(heading)}</h2>{paras}")
    parts.append("<h2>Coded findings</h2>" + _table(lay.findings_table))
    if len(lay.measurements_table) > 1:
        parts.append("<h2>Measurements</h2>" + _table(lay.measurements_table))
    if ecg_printout_png is not None:
        data = base64.b64encode(ecg_printout_png).decode("ascii")
        parts.append(f'<h2>ECG printout</h2><img alt="ECG printout" src="data:image/png;base64,{data}">')
    parts.append("<h2>Model provenance</h2>" + _table(lay.provenance_table))
    parts.append("<h2>Status and signature</h2>" + "".join(f"<p>{_e(s)}</p>" for s in lay.status_lines))
    parts.append("</body></html>\n")
    return "\n".join(parts).encode("utf-8")
