"""PDF and HTML reports: sections present, text escaped, draft watermark until signed, deterministic."""

from __future__ import annotations

import re

import pytest

from core.codes import LOINC
from core.errors import ReportError
from core.records import ReportSection
from reports.html import render_html
from reports.pdf import render_pdf
from reports.signoff import sign
from tests.reports import helpers as h


def _pdf_text(pdf: bytes) -> str:
    """Text shown on the pages: the literal strings of the (uncompressed) content streams."""
    assert pdf.startswith(b"%PDF-")
    streams = re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S)
    text = []
    for s in streams:  # render_pdf writes uncompressed page streams (pageCompression=0)
        text += re.findall(rb"\((.*?)(?<!\\)\)\s*Tj", s)
    return b" ".join(text).decode("latin-1").replace("\\(", "(").replace("\\)", ")")


def test_pdf_has_every_section_and_the_findings_text() -> None:
    pdf = render_pdf(h.chest_report(), h.chest_study(), h.context())
    text = _pdf_text(pdf)
    for heading in (
        "Exam",
        "Technique",
        "Comparison",
        "Findings",
        "Impression",
        "Measurements",
        "Model provenance",
        "Status and signature",
        "Coded findings",
    ):
        assert heading in text
    assert "Small left pleural effusion" in text
    assert "densenet121-cxr14" in text
    assert "a" * 64 in text.replace(" ", "")  # the weights hash (wrapped in its table cell)
    assert "PRELIMINARY" in text and "Not signed" in text
    assert "final" not in text.lower().replace("finding", "")


def test_signed_pdf_has_signature_and_no_watermark() -> None:
    signed = sign(h.chest_report(), h.RADIOLOGIST, h.SIGNED)
    text = _pdf_text(render_pdf(signed, h.chest_study(), h.context()))
    assert "Electronically signed by" in text and "RAD-0042" in text
    assert "AI-generated draft" not in text
    assert "FINAL" in text


def test_ecg_pdf_embeds_the_printout() -> None:
    png = h.ecg_printout_png()
    with_img = render_pdf(h.ecg_report(), h.ecg_study(), h.context(), ecg_printout_png=png)
    without = render_pdf(h.ecg_report(), h.ecg_study(), h.context())
    assert b"/Subtype /Image" in with_img and b"/Subtype /Image" not in without
    assert "ECG printout" in _pdf_text(with_img)
    assert "P-R Interval" in _pdf_text(with_img)
    with pytest.raises(ReportError, match="not a readable image"):
        render_pdf(h.ecg_report(), h.ecg_study(), h.context(), ecg_printout_png=b"nope")


def test_pdf_is_deterministic_and_handles_any_script() -> None:
    a = render_pdf(h.chest_report(), h.chest_study(), h.context())
    assert a == render_pdf(h.chest_report(), h.chest_study(), h.context())
    cjk = render_pdf(h.chest_report(), h.chest_study(patient_name="李^小龙"), h.context())
    assert cjk.startswith(b"%PDF-") and b"DroidSansFallback" in cjk


def test_html_is_escaped_and_self_contained() -> None:
    evil = '<script>alert("x")</script> & <img src="http://evil.example/x.png">'
    r = h.chest_report(sections=(ReportSection(LOINC.FINDINGS, evil),))
    page = render_html(r, h.chest_study(), h.context(), ecg_printout_png=h.ecg_printout_png()).decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'src="http' not in page and "href=" not in page  # nothing loaded from anywhere
    assert 'src="data:image/png;base64,' in page
    assert "default-src 'none'" in page
    for heading in (
        "Exam",
        "Technique",
        "Comparison",
        "Findings",
        "Impression",
        "Coded findings",
        "ECG printout",
        "Model provenance",
        "Status and signature",
    ):
        assert f"<h2>{heading}</h2>" in page or heading == "Impression"
    assert 'class="watermark"' in page and "PRELIMINARY" in page


def test_signed_html_drops_the_draft_watermark() -> None:
    page = render_html(sign(h.ecg_report(), h.CARDIOLOGIST, h.SIGNED), h.ecg_study(), h.context()).decode()
    assert 'class="watermark"' not in page and "Electronically signed by Chidi Okafor" in page
