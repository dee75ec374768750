"""A character no bundled font has (an emoji in a model's text) is replaced, never fatal (issue 20, item 7)."""

from __future__ import annotations

from core.codes import LOINC
from core.records import ReportSection
from reports.pdf import render_pdf
from tests.reports import helpers as h


def test_emoji_in_model_text_is_replaced_and_the_pdf_is_written() -> None:
    text = "Lungs clear \U0001fac1 no effusion \U0001f44d; heart normal."
    r = h.chest_report(sections=(ReportSection(LOINC.FINDINGS, text),))
    pdf = render_pdf(r, h.chest_study(), h.context())
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:]
    assert b"DejaVuSans" in pdf  # the Unicode font typeset it, with the missing glyphs replaced


def test_emoji_beside_cjk_keeps_the_cjk_fallback() -> None:
    r = h.chest_report(sections=(ReportSection(LOINC.FINDINGS, "\u80ba clear \U0001f600"),))
    pdf = render_pdf(r, h.chest_study(patient_name="\u674e^\u5c0f\u9f99"), h.context())
    assert pdf.startswith(b"%PDF-") and b"DroidSansFallback" in pdf
