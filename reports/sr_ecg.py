"""ECG results as a Comprehensive SR following TID 3700 (ECG Report).

highdicom has no builder for TID 3700, so the tree is assembled from its
generic content items (which validate value types and relationships):

::

    CONTAINER (28010-7, LN, "EKG Report")                       TID 3700
     HAS CONCEPT MOD  Language                                   TID 1204
     HAS OBS CONTEXT  device observer (+ verifying person)       TID 1001
     CONTAINS CONTAINER (122158, DCM, "ECG Global Measurements") TID 3713
       CONTAINS NUM  heart rate (LOINC 8867-4); P, PR, QRS, QT, RR (MDC, CID 3228);
                     axes (MDC, CID 3229, -180..180); QTc (MDC 2:15876, CID 3227)
         HAS CONCEPT MOD (370129005, SCT, "Measurement Method") = QTc algorithm (CID 3678)
     CONTAINS CONTAINER (122159, DCM, "ECG Lead Measurements")   TID 3714, one per lead
       CONTAINS CODE (122148, DCM, "Lead ID") = CID 3001 lead
       CONTAINS NUM  per-lead measurements
     CONTAINS CONTAINER (122145, DCM, "Qualitative Analysis")    TID 3717
       CONTAINS CODE (121071, DCM, "Finding") = SNOMED CT statement
         HAS CONCEPT MOD Presence, Algorithm Name / Version
     CONTAINS CONTAINER (121111, DCM, "Summary")                 TID 3719
       CONTAINS TEXT (122147, DCM, "Clinical Interpretation")

The draft status is the document's flags (PreliminaryFlag, VerificationFlag), never a content
item; a study nobody read is CompletionFlag PARTIAL.  The evidence references the source
waveform only when it is a DICOM object (an ECG file has none to reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from core.codes import DCM, ECG_LEAD_CODES, FHIRCODES, LOINC, MDC, QTC_ALGORITHM, SCT, UCUM, Code
from core.errors import ReportError
from core.records import DraftReport, Finding, Instance, Measurement, ReportKind, Study
from reports import _dicom
from reports._common import PRESENCE_CODES, check_report, conclusion_text
from reports.context import ReportContext

PURPOSE = "sr-ecg"
SOP_CLASS_UID = _dicom.SOP_COMPREHENSIVE_SR
_R = hd.sr.RelationshipTypeValues


def _container(code: Code, children: Sequence[hd.sr.ContentItem], template_id: str | None = None) -> hd.sr.ContentItem:
    c = hd.sr.ContainerContentItem(name=_dicom.hd_code(code), relationship_type=_R.CONTAINS, template_id=template_id)
    c.ContentSequence = hd.sr.ContentSequence(children)
    return c


def _local_lead_code(lead: str) -> Code:
    """A local (99MMDX) code for a lead outside CID 3001 (Holter MLII, Frank X/Y/Z...), so nothing is dropped."""
    key = "".join(c for c in lead if c.isalnum())[:11] or "unnamed"
    return Code(f"lead-{key}", "MMDX", f"Lead {lead}"[:64])


#: TID 3713 concept names: the report's measurement code -> (MDC code of CID 3227/3228/3229, QTc algorithm)
TID3713_CODES: dict[Code, tuple[Code, Code | None]] = {
    LOINC.EKG_HEART_RATE: (LOINC.HEART_RATE, None),
    LOINC.RR_INTERVAL: (MDC.RR_INTERVAL, None),
    LOINC.PR_INTERVAL: (MDC.PR_INTERVAL, None),
    LOINC.QRS_DURATION: (MDC.QRS_DURATION, None),
    LOINC.QT_INTERVAL: (MDC.QT_INTERVAL, None),
    LOINC.QTC_INTERVAL: (MDC.QTC_INTERVAL, None),
    LOINC.QTC_BAZETT: (MDC.QTC_INTERVAL, QTC_ALGORITHM.BAZETT),
    LOINC.QTC_HODGES: (MDC.QTC_INTERVAL, QTC_ALGORITHM.HODGES),
    LOINC.QTC_FRIDERICIA: (MDC.QTC_INTERVAL, QTC_ALGORITHM.FRIDERICIA),
    LOINC.QTC_FRAMINGHAM: (MDC.QTC_INTERVAL, QTC_ALGORITHM.FRAMINGHAM),
    LOINC.P_AXIS: (MDC.P_AXIS, None),
    LOINC.QRS_AXIS: (MDC.QRS_AXIS, None),
    LOINC.T_AXIS: (MDC.T_AXIS, None),
}


def _num(m: Measurement) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(
        name=_dicom.hd_code(m.code), value=float(m.value), unit=_dicom.hd_code(m.unit), relationship_type=_R.CONTAINS
    )


def _global_nums(measurements: Sequence[Measurement]) -> list[hd.sr.NumContentItem]:
    """TID 3713 rows: MDC codes; a QTc with its algorithm as a modifier, the bare QTc only without one."""
    with_algorithm = any((TID3713_CODES.get(m.code) or (m.code, None))[1] is not None for m in measurements)
    out = []
    for m in measurements:
        code, algorithm = TID3713_CODES.get(m.code, (m.code, None))
        if code == MDC.QTC_INTERVAL and algorithm is None and with_algorithm:
            continue  # the same value again without saying how it was corrected
        item = hd.sr.NumContentItem(
            name=_dicom.hd_code(code), value=float(m.value), unit=_dicom.hd_code(m.unit), relationship_type=_R.CONTAINS
        )
        if algorithm is not None:
            item.ContentSequence = hd.sr.ContentSequence(
                [
                    hd.sr.CodeContentItem(
                        name=_dicom.hd_code(QTC_ALGORITHM.MEASUREMENT_METHOD),
                        value=_dicom.hd_code(algorithm),
                        relationship_type=_R.HAS_CONCEPT_MOD,
                    )
                ]
            )
        out.append(item)
    return out


def _statement(f: Finding) -> hd.sr.CodeContentItem:
    assert f.concept is not None
    item = hd.sr.CodeContentItem(
        name=_dicom.hd_code(DCM.REPORT_FINDING), value=_dicom.hd_code(f.concept), relationship_type=_R.CONTAINS
    )
    mods: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(
            name=_dicom.hd_code(SCT.PRESENCE),
            value=_dicom.hd_code(PRESENCE_CODES[f.presence]),
            relationship_type=_R.HAS_CONCEPT_MOD,
        ),
        hd.sr.TextContentItem(
            name=_dicom.hd_code(DCM.ALGORITHM_NAME), value=f.producer.name, relationship_type=_R.HAS_CONCEPT_MOD
        ),
        hd.sr.TextContentItem(
            name=_dicom.hd_code(DCM.ALGORITHM_VERSION), value=f.producer.version, relationship_type=_R.HAS_CONCEPT_MOD
        ),
    ]
    if f.probability is not None:
        mods.append(
            hd.sr.NumContentItem(
                name=_dicom.hd_code(FHIRCODES.MODEL_PROBABILITY),
                value=round(float(f.probability), 4),
                unit=_dicom.hd_code(UCUM.RATIO),
                relationship_type=_R.HAS_PROPERTIES,
            )
        )
    item.ContentSequence = hd.sr.ContentSequence(mods)
    return item


def build_ecg_sr(
    report: DraftReport, study: Study, ctx: ReportContext, source_instances: Sequence[Instance] = ()
) -> Dataset:
    """A Comprehensive SR with the ECG report (TID 3700): measurements, statements, interpretation.

    Raises
    ------
    core.errors.ReportError
        When the report is not an ECG report, on bad input, or a study without instances.
    """
    if report.kind is not ReportKind.ECG:
        raise ReportError(f"build_ecg_sr: report kind is {report.kind.value!r}, expected 'ecg'")
    check_report(report, study)
    referenced, evidence = _dicom.sr_evidence(study, report, source_instances, ctx=ctx)

    items = _dicom.content_preamble(report, ctx)
    measurements = list(dict.fromkeys((*report.measurements, *(m for f in report.findings for m in f.measurements))))
    global_ms = [m for m in measurements if m.site is None]
    if global_ms:
        items.append(_container(DCM.ECG_GLOBAL_MEASUREMENTS, _global_nums(global_ms), "3713"))
    leads: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.site is not None:
            leads.setdefault(m.site, []).append(m)
    for lead, ms in leads.items():
        code = ECG_LEAD_CODES.get(lead) or _local_lead_code(lead)
        lead_item = hd.sr.CodeContentItem(
            name=_dicom.hd_code(DCM.LEAD_ID), value=_dicom.hd_code(code), relationship_type=_R.CONTAINS
        )
        items.append(_container(DCM.ECG_LEAD_MEASUREMENTS, [lead_item, *(_num(m) for m in ms)], "3714"))
    coded = [_statement(f) for f in report.findings if f.concept is not None]
    free = [
        hd.sr.TextContentItem(name=_dicom.hd_code(DCM.REPORT_FINDING), value=f.text, relationship_type=_R.CONTAINS)
        for f in report.findings
        if f.concept is None
    ]
    if coded or free:
        items.append(_container(DCM.QUALITATIVE_ANALYSIS, [*coded, *free], "3717"))
    summary: list[hd.sr.ContentItem] = []
    summary.append(
        hd.sr.TextContentItem(
            name=_dicom.hd_code(DCM.CLINICAL_INTERPRETATION),
            value=conclusion_text(report),
            relationship_type=_R.CONTAINS,
        )
    )
    items.append(_container(DCM.SUMMARY, summary, "3719"))

    root = hd.sr.ContainerContentItem(name=_dicom.hd_code(DCM.ECG_REPORT), template_id="3700")
    root.ContentSequence = hd.sr.ContentSequence(items)
    schemes = {f.concept.scheme for f in report.findings if f.concept is not None}
    if any(lead not in ECG_LEAD_CODES for lead in leads):
        schemes.add("MMDX")
    if any(f.probability is not None for f in report.findings):
        schemes.add(FHIRCODES.MODEL_PROBABILITY.scheme)
    sr = _dicom.build_sr(
        hd.sr.ComprehensiveSR,
        report,
        ctx,
        PURPOSE,
        SOP_CLASS_UID,
        schemes,
        evidence=evidence,
        content=root,
        series_description="mmdx ECG report (TID 3700)",
        requested_procedures=_dicom.referenced_request(study),
        performed_procedure_codes=[_dicom.hd_code(LOINC.EKG_STUDY)],
    )
    if not referenced:  # an ECG file: no DICOM waveform exists to point the evidence at
        _dicom.drop_evidence(sr)
    return sr


def build_ecg_sr_bytes(
    report: DraftReport, study: Study, ctx: ReportContext, source_instances: Sequence[Instance] = ()
) -> bytes:
    return _dicom.to_bytes(build_ecg_sr(report, study, ctx, source_instances))
