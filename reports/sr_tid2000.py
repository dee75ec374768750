"""The free-text draft as a TID 2000 Basic Diagnostic Imaging Report (Enhanced SR).

Sections become TID 2001 containers (the CID 7001 LOINC section codes the
report already uses) holding TID 2002 text items (CID 7002 Finding /
Impression / Recommendation / Procedure Description...), plus a coded Finding
item for every present, coded finding.  Viewers that ignore TID 1500 still show
this narrative.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from core.codes import DCM, LOINC, Code
from core.records import DraftReport, Instance, Presence, Study
from reports import _dicom
from reports._common import check_report, clinical_sections
from reports.context import ReportContext

PURPOSE = "sr-tid2000"
SOP_CLASS_UID = _dicom.SOP_ENHANCED_SR

#: section (CID 7001) -> the text item concept (CID 7002) it holds
_ELEMENT: dict[Code, Code] = {
    LOINC.FINDINGS: DCM.REPORT_FINDING,
    LOINC.IMPRESSION: DCM.REPORT_IMPRESSION,
    LOINC.RECOMMENDATION: DCM.REPORT_RECOMMENDATION,
    LOINC.TECHNIQUE: DCM.PROCEDURE_DESCRIPTION,
    LOINC.COMPARISON: DCM.PREVIOUS_FINDING,
}
#: section order of a radiology report
_ORDER = [LOINC.HISTORY, LOINC.TECHNIQUE, LOINC.COMPARISON, LOINC.FINDINGS, LOINC.IMPRESSION, LOINC.RECOMMENDATION]


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=_dicom.hd_code(name), value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def build_tid2000(
    report: DraftReport, study: Study, ctx: ReportContext, source_instances: Sequence[Instance] = ()
) -> Dataset:
    """An Enhanced SR following TID 2000 with the report's narrative sections.

    Raises
    ------
    core.errors.ReportError
        Bad input (see ``reports._common.check_report``) or a study without instances.
    """
    check_report(report, study)
    _, evidence = _dicom.sr_evidence(study, report, source_instances, ctx=ctx)

    root = hd.sr.ContainerContentItem(name=_dicom.hd_code(DCM.DIAGNOSTIC_IMAGING_REPORT), template_id="2000")
    items = _dicom.content_preamble(report, ctx)

    # processing notes (no model configured...) are not findings: the SR's CompletionFlag says "not analysed"
    sections = sorted(
        clinical_sections(report), key=lambda s: _ORDER.index(s.code) if s.code in _ORDER else len(_ORDER)
    )
    by_code: dict[Code, list[hd.sr.ContentItem]] = {}
    for s in sections:
        by_code.setdefault(s.code, []).append(_text(_ELEMENT.get(s.code, DCM.REPORT_FINDING), s.text))
    coded = [
        hd.sr.CodeContentItem(
            name=_dicom.hd_code(DCM.REPORT_FINDING),
            value=_dicom.hd_code(f.concept),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        for f in report.findings
        if f.concept is not None and f.presence is Presence.PRESENT
    ]
    uncoded = [_text(DCM.REPORT_FINDING, f.text) for f in report.findings if f.concept is None and f.text.strip()]
    if coded or uncoded:
        by_code.setdefault(LOINC.FINDINGS, []).extend([*uncoded, *coded])
    for code, children in by_code.items():
        container = hd.sr.ContainerContentItem(
            name=_dicom.hd_code(code), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        container.ContentSequence = hd.sr.ContentSequence(children)
        items.append(container)
    root.ContentSequence = hd.sr.ContentSequence(items)

    schemes = {f.concept.scheme for f in report.findings if f.concept is not None and f.presence is Presence.PRESENT}
    return _dicom.build_sr(
        hd.sr.EnhancedSR,
        report,
        ctx,
        PURPOSE,
        SOP_CLASS_UID,
        schemes,
        evidence=evidence,
        content=root,
        series_description="mmdx report narrative (TID 2000)",
        requested_procedures=_dicom.referenced_request(study),
    )


def build_tid2000_bytes(
    report: DraftReport, study: Study, ctx: ReportContext, source_instances: Sequence[Instance] = ()
) -> bytes:
    return _dicom.to_bytes(build_tid2000(report, study, ctx, source_instances))
