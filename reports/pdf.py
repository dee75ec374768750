"""The human-readable report as PDF (reportlab).

Deterministic (reportlab ``invariant`` mode: fixed document ID and dates) so
the same report gives the same bytes; page streams are not compressed so the
text can be checked without a PDF parser.  A draft carries a diagonal
"PRELIMINARY — not verified by a clinician" watermark on every page until signed.

Text in Helvetica (WinAnsi) when it fits; otherwise a Unicode TrueType font
(DejaVu Sans) when the system has one, else a clear error rather than a PDF
with replaced characters.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.doctemplate import BaseDocTemplate

from core.errors import ReportError
from core.records import DraftReport, Study
from reports._layout import Layout, build_layout
from reports.context import ReportContext

#: Unicode fonts tried in order when the text does not fit WinAnsi (Latin, Greek, Cyrillic, then CJK)
_UNICODE_FONTS = (
    ("DejaVuSans", Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")),
    ("DejaVuSans", Path("/usr/share/fonts/TTF/DejaVuSans.ttf")),
    ("DroidSansFallback", Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")),
)


def _all_text(lay: Layout) -> list[str]:
    out = [lay.title, lay.banner, *lay.status_lines, *(lay.watermark or "",)]
    out += [v for kv in lay.exam for v in kv] + [v for s in lay.sections for v in s]
    out += [c for t in (lay.findings_table, lay.measurements_table, lay.provenance_table) for r in t for c in r]
    return out


def _coverage(name: str, path: Path) -> set[int] | None:
    if not path.is_file():
        return None
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(path)))
    return set(pdfmetrics.getFont(name).face.charToGlyph)


class _Fonts:
    """The primary font for the report, plus fallbacks for runs of characters it lacks (e.g. CJK names)."""

    def __init__(self, texts: list[str]) -> None:
        needed = {ord(c) for t in texts for c in t if not c.isspace()}
        self.fallbacks: list[tuple[str, set[int]]] = []
        try:
            for t in texts:
                t.encode("cp1252")
            self.primary, self.bold, self.covered = "Helvetica", "Helvetica-Bold", needed
            self.missing: set[int] = set()
            self.replacement = "?"
            return
        except UnicodeEncodeError:
            pass
        fonts = [(n, c) for n, p in _UNICODE_FONTS if (c := _coverage(n, p)) is not None]
        if not fonts:  # no Unicode font installed: Helvetica, and what WinAnsi cannot show is replaced
            self.primary, self.bold = "Helvetica", "Helvetica-Bold"
            self.covered = {c for c in needed if _winansi(chr(c))}
            fonts = [(self.primary, self.covered)]
        self.primary, self.covered = fonts[0]
        self.bold = self.primary if self.primary != "Helvetica" else "Helvetica-Bold"
        self.fallbacks = fonts[1:]
        #: characters no installed font has (an emoji in a model's text): replaced, never fatal
        self.missing = needed - self.covered - set().union(*(c for _, c in self.fallbacks))
        self.replacement = "\u25a1" if 0x25A1 in self.covered else "?"

    def markup(self, text: str) -> str:
        """Escaped Paragraph markup, switching font for characters the primary font lacks."""
        out: list[str] = []
        for ch in text:
            piece = escape(ch)
            if ch.isspace() or ord(ch) in self.covered:
                out.append(piece)
                continue
            name = next((n for n, c in self.fallbacks if ord(ch) in c), None)
            out.append(self.replacement if name is None else f'<font name="{name}">{piece}</font>')
        return "".join(out).replace("\n", "<br/>")

    def plain(self, text: str) -> str:
        """``text`` with the characters no font can show replaced (for canvas strings: banner, watermark)."""
        return "".join(self.replacement if ord(c) in self.missing else c for c in text)


def _winansi(ch: str) -> bool:
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


class _Typesetter:
    """The paragraph and table styles of one report, in its fonts, so each part of the story is one call."""

    def __init__(self, fonts: _Fonts, is_draft: bool) -> None:
        self.fonts = fonts
        base = getSampleStyleSheet()
        self.body = ParagraphStyle("body", parent=base["BodyText"], fontName=fonts.primary, fontSize=9.5, leading=12)
        self.h1 = ParagraphStyle("h1", parent=base["Heading1"], fontName=fonts.bold, fontSize=15)
        self.h2 = ParagraphStyle("h2", parent=base["Heading2"], fontName=fonts.bold, fontSize=11.5, spaceBefore=8)
        banner_color = colors.HexColor("#990000") if is_draft else colors.HexColor("#1b5e20")
        self.banner = ParagraphStyle(
            "banner",
            parent=self.body,
            fontName=fonts.bold,
            textColor=banner_color,
            borderColor=banner_color,
            borderWidth=1,
            borderPadding=4,
            spaceAfter=6,
        )

    def p(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        return Paragraph(self.fonts.markup(text), self.body if style is None else style)

    def table(self, rows: list[list[str]], widths: list[float] | None = None) -> Table:
        t = Table([[self.p(c) for c in r] for r in rows], colWidths=widths, repeatRows=1)
        t.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return t


def _printout(ts: _Typesetter, png: bytes) -> list[Flowable]:
    """The ECG printout at full text width, keeping its aspect ratio; a clear error when it is not an image."""
    try:
        reader = ImageReader(io.BytesIO(png))
        w, h = reader.getSize()
    except Exception as exc:
        raise ReportError(f"render_pdf: the ECG printout is not a readable image ({exc})") from exc
    width = 170 * mm
    return [ts.p("ECG printout", ts.h2), Image(io.BytesIO(png), width=width, height=width * h / w)]


def _story(lay: Layout, ts: _Typesetter, ecg_printout_png: bytes | None) -> list[Flowable]:
    """The report's flowables in reading order: title, banner, exam, sections, tables, printout, signature."""
    story: list[Flowable] = [ts.p(lay.title, ts.h1), ts.p(lay.banner, ts.banner), ts.p("Exam", ts.h2)]
    story.append(ts.table([[k, v] for k, v in lay.exam], [40 * mm, 130 * mm]))
    for heading, text in lay.sections:
        story += [ts.p(heading, ts.h2), ts.p(text)]
    story += [ts.p("Coded findings", ts.h2), ts.table(lay.findings_table)]
    if len(lay.measurements_table) > 1:
        story += [ts.p("Measurements", ts.h2), ts.table(lay.measurements_table)]
    if ecg_printout_png is not None:
        story += _printout(ts, ecg_printout_png)
    story += [ts.p("Model provenance", ts.h2), ts.table(lay.provenance_table, [45 * mm, 25 * mm, 20 * mm, 80 * mm])]
    story += [ts.p("Status and signature", ts.h2), *(ts.p(s) for s in lay.status_lines), Spacer(1, 6 * mm)]
    return story


def _page_decorator(lay: Layout, fonts: _Fonts) -> Callable[[Canvas, BaseDocTemplate], None]:
    """Draws the status footer on every page and, on a draft, the diagonal watermark."""

    def decorate(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(fonts.primary, 7.5)
        canvas.drawString(15 * mm, 10 * mm, fonts.plain(f"{lay.banner} · page {doc.page}"))
        if lay.watermark:
            canvas.setFillColor(colors.Color(0.8, 0, 0, alpha=0.13))
            canvas.setFont(fonts.bold, 34)
            canvas.translate(A4[0] / 2, A4[1] / 2)
            canvas.rotate(40)
            canvas.drawCentredString(0, 0, fonts.plain(lay.watermark))
        canvas.restoreState()

    return decorate


def render_pdf(
    report: DraftReport, study: Study, ctx: ReportContext, *, ecg_printout_png: bytes | None = None
) -> bytes:
    """Render the report as PDF bytes.

    Raises
    ------
    ReportError
        When the text cannot be typeset faithfully, or the printout is not an image.
    """
    lay = build_layout(report, study, ctx)
    fonts = _Fonts(_all_text(lay))
    story = _story(lay, _Typesetter(fonts, lay.is_draft), ecg_printout_png)
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=lay.title,
        author=ctx.software_name,
        subject=f"{report.status.value} report v{report.version} for study {study.study_instance_uid}",
        creator=f"{ctx.software_name} {ctx.software_version}",
        pageCompression=0,
        invariant=1,
    )
    decorate = _page_decorator(lay, fonts)
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buf.getvalue()
