"""Property-based: any valid report (findings, sites, probabilities, measurements, any text) gives
a FHIR bundle that passes the project checker, an ORU that hl7apy accepts with the text intact, and
DICOM SRs that pydicom re-reads with the text intact.
"""

from __future__ import annotations

import io
import json

import hl7
import pydicom
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.codes import LOINC, SCT, UCUM
from core.records import Finding, Laterality, Measurement, Presence, ReportSection
from reports.fhir_bundle import build_bundle, bundle_json
from reports.fhir_validate import check_bundle
from reports.hl7_oru import build_oru
from reports.sr_tid1500 import build_tid1500_bytes, has_coded_content
from reports.sr_tid2000 import build_tid2000_bytes
from tests.reports import helpers as h

_CONCEPTS = [SCT.CARDIOMEGALY, SCT.PLEURAL_EFFUSION, SCT.NODULE, SCT.PNEUMOTHORAX, SCT.EDEMA, None]
_SITES = [SCT.HEART, SCT.LUNG, SCT.PLEURA, None]
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Co", "Cn"), blacklist_characters="\u2028\u2029\x85"),
    min_size=1,
    max_size=60,
).filter(lambda t: t.strip() != "")


@st.composite
def findings(draw: st.DrawFn) -> Finding:
    concept = draw(st.sampled_from(_CONCEPTS))
    return Finding(
        concept=concept,
        text=draw(_text),
        producer=h.CXR_MODEL,
        presence=draw(st.sampled_from(list(Presence))),
        site=draw(st.sampled_from(_SITES)),
        laterality=draw(st.sampled_from(list(Laterality))),
        probability=draw(st.none() | st.floats(0, 1)),
        evidence=h.chest_findings()[0].evidence,
        measurements=tuple(
            Measurement(SCT.LONG_AXIS, v, UCUM.MM) for v in draw(st.lists(st.floats(0.1, 500), max_size=2))
        ),
    )


@st.composite
def reports(draw: st.DrawFn):
    fs = tuple(draw(st.lists(findings(), max_size=4)))
    sections = (
        ReportSection(LOINC.FINDINGS, draw(_text)),
        ReportSection(LOINC.IMPRESSION, draw(_text)),
    )
    return h.chest_report(findings=fs, measurements=(), sections=sections)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_any_report_gives_valid_fhir_oru_and_sr(report) -> None:
    study, ctx = h.chest_study(), h.context()
    bundle = json.loads(bundle_json(build_bundle(report, study, ctx)))
    assert check_bundle(bundle, stage="draft") == []

    text = build_oru(report, study, ctx)
    assert parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()
    tx = [h.unescape(str(s[5])) for s in hl7.parse(text).segments("OBX") if str(s[2]) == "TX"]
    for section in report.sections:
        assert " ".join(section.text.split()) in " ".join(" ".join(tx).split())

    narrative = pydicom.dcmread(io.BytesIO(build_tid2000_bytes(report, study, ctx)))
    values = []

    def walk(items):
        for it in items:
            if "TextValue" in it:
                values.append(str(it.TextValue))
            walk(it.get("ContentSequence", []))

    walk(narrative.ContentSequence)
    # UT values may lose trailing spaces (PS3.5 6.2: "may be padded with trailing spaces, which may be ignored")
    assert report.section(LOINC.IMPRESSION).text.rstrip() in [v.rstrip() for v in values]
    if has_coded_content(report):
        sr = pydicom.dcmread(io.BytesIO(build_tid1500_bytes(report, study, ctx)))
        assert sr.PreliminaryFlag == "PRELIMINARY"
