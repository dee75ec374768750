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
    font, bold = fonts.primary, fonts.bold
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName=font, fontSize=9.5, leading=12)
    h1 = ParagraphStyle("h1", parent=base["Heading1"], fontName=bold, fontSize=15)
    h2 = ParagraphStyle("h2", parent=base["Heading2"], fontName=bold, fontSize=11.5, spaceBefore=8)
    banner_color = colors.HexColor("#990000") if lay.is_draft else colors.HexColor("#1b5e20")
    banner = ParagraphStyle(
        "banner",
        parent=body,
        fontName=bold,
        textColor=banner_color,
        borderColor=banner_color,
        borderWidth=1,
        borderPadding=4,
        spaceAfter=6,
    )

    def p(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(fonts.markup(text), style)

    def table(rows: list[list[str]], widths: list[float] | None = None) -> Table:
        t = Table([[p(c) for c in r] for r in rows], colWidths=widths, repeatRows=1)
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

    story: list[Flowable] = [p(lay.title, h1), p(lay.banner, banner), p("Exam", h2)]
    story.append(table([[k, v] for k, v in lay.exam], [40 * mm, 130 * mm]))
    for heading, text in lay.sections:
        story += [p(heading, h2), p(text)]
    story += [p("Coded findings", h2), table(lay.findings_table)]
    if len(lay.measurements_table) > 1:
        story += [p("Measurements", h2), table(lay.measurements_table)]
    if ecg_printout_png is not None:
        try:
            reader = ImageReader(io.BytesIO(ecg_printout_png))
            w, h = reader.getSize()
        except Exception as exc:
            raise ReportError(f"render_pdf: the ECG printout is not a readable image ({exc})") from exc
        width = 170 * mm
        story += [p("ECG printout", h2), Image(io.BytesIO(ecg_printout_png), width=width, height=width * h / w)]
    story += [p("Model provenance", h2), table(lay.provenance_table, [45 * mm, 25 * mm, 20 * mm, 80 * mm])]
    story += [p("Status and signature", h2), *(p(s) for s in lay.status_lines), Spacer(1, 6 * mm)]

    def decorate(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.drawString(15 * mm, 10 * mm, fonts.plain(f"{lay.banner} · page {doc.page}"))
        if lay.watermark:
            canvas.setFillColor(colors.Color(0.8, 0, 0, alpha=0.13))
            canvas.setFont(bold, 34)
            canvas.translate(A4[0] / 2, A4[1] / 2)
            canvas.rotate(40)
            canvas.drawCentredString(0, 0, fonts.plain(lay.watermark))
        canvas.restoreState()

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
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buf.getvalue()
