"""Coded imaging findings as a Comprehensive 3D SR, TID 1500 (IHE AI Results).

One TID 1501 measurement group per coded finding: Finding, Finding Site (with
laterality), Presence, Algorithm Name/Version (TID 4019), the model's
probability and any size measurements, and the source images.  Built with
highdicom, whose constructors validate the template structure.  Uncoded
(free-text) findings are not forced into codes: they travel in the TID 2000
narrative SR.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from core.codes import DCM, FHIRCODES, LOINC, SCT, UCUM, Code
from core.errors import ReportError
from core.records import DraftReport, Finding, Instance, Study
from reports import _dicom
from reports._common import LATERALITY_CODES, PRESENCE_CODES, check_report, finding_label
from reports._dicom import observation_context
from reports.context import ReportContext

PURPOSE = "sr-tid1500"
SOP_CLASS_UID = _dicom.SOP_COMPREHENSIVE_3D_SR


def procedure_code(study: Study) -> Code:
    """The procedure reported (CID 100 style): chest radiograph / chest CT when the index says so."""
    body = {(s.body_part or "").upper() for s in study.series}
    mods = set(study.modalities)
    if "CHEST" in body and mods & {"CR", "DX"}:
        return LOINC.CHEST_XRAY_SINGLE_VIEW if study.instance_count == 1 else LOINC.CHEST_XRAY
    if "CHEST" in body and "CT" in mods:
        return LOINC.CHEST_CT
    return LOINC.IMAGING_STUDY


def _source_images(f: Finding, by_uid: dict[str, Instance]) -> list[hd.sr.SourceImageForMeasurementGroup]:
    out = []
    seen = set()
    for ev in f.evidence:
        inst = by_uid.get(ev.sop_instance_uid or "")
        if inst is None or inst.sop_instance_uid in seen:
            continue
        seen.add(inst.sop_instance_uid)
        frames = [ev.frame + 1] if ev.frame is not None and inst.number_of_frames > 1 else None
        out.append(
            hd.sr.SourceImageForMeasurementGroup(
                referenced_sop_class_uid=inst.sop_class_uid,
                referenced_sop_instance_uid=inst.sop_instance_uid,
                referenced_frame_numbers=frames,
            )
        )
    return out


def _group(
    i: int, f: Finding, report: DraftReport, ctx: ReportContext, by_uid: dict[str, Instance]
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    assert f.concept is not None
    algo = hd.sr.AlgorithmIdentification(
        name=f.producer.name[:64],
        version=f.producer.version[:64],
        parameters=[f"sha256:{f.producer.digest}"] if f.producer.digest else None,
        family=_dicom.hd_code(DCM.ARTIFICIAL_INTELLIGENCE) if f.producer.is_ai else None,
    )
    sites = None
    if f.site is not None:
        lat = LATERALITY_CODES.get(f.laterality)
        sites = [hd.sr.FindingSite(_dicom.hd_code(f.site), laterality=_dicom.hd_code(lat) if lat else None)]
    measurements = [
        hd.sr.Measurement(
            name=_dicom.hd_code(m.code),
            value=float(m.value),
            unit=_dicom.hd_code(m.unit),
            algorithm_id=algo,
        )
        for m in f.measurements
    ]
    if f.probability is not None:
        measurements.append(
            hd.sr.Measurement(
                name=_dicom.hd_code(FHIRCODES.MODEL_PROBABILITY),
                value=round(float(f.probability), 4),
                unit=_dicom.hd_code(UCUM.RATIO),
                algorithm_id=algo,
            )
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=ctx.uid(report.study_instance_uid, f"tracking-finding-{i}"),
            identifier=f"Finding {i + 1}: {finding_label(f)}"[:64],
        ),
        finding_type=_dicom.hd_code(f.concept),
        algorithm_id=algo,
        finding_sites=sites,
        measurements=measurements or None,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(_dicom.hd_code(SCT.PRESENCE), _dicom.hd_code(PRESENCE_CODES[f.presence]))
        ],
        source_images=_source_images(f, by_uid) or None,
    )


def build_tid1500(
    report: DraftReport, study: Study, ctx: ReportContext, source_instances: Sequence[Instance] = ()
) -> Dataset:
    """A Comprehensive 3D SR (TID 1500) with one measurement group per coded finding.

    Parameters
    ----------
    source_instances:
        The images the findings were made on; defaults to every instance of ``study``.

    Raises
    ------
    core.errors.ReportError
        Bad input (see ``reports._common.check_report``) or a study without instances.
    """
    check_report(report, study)
    instances, evidence = _dicom.sr_evidence(study, report, source_instances, ctx=ctx)
    by_uid = {i.sop_instance_uid: i for i in instances}
    groups = [_group(i, f, report, ctx, by_uid) for i, f in enumerate(report.findings) if f.concept is not None]
    loose = [m for m in report.measurements if not any(m in f.measurements for f in report.findings)]
    if loose:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=ctx.uid(report.study_instance_uid, "tracking-measurements"), identifier="Measurements"
                ),
                measurements=[
                    hd.sr.Measurement(_dicom.hd_code(m.code), float(m.value), _dicom.hd_code(m.unit)) for m in loose
                ],
            )
        )
    if not groups:
        raise ReportError(
            "build_tid1500: the report has no coded finding and no measurement; TID 1500 needs at least one "
            "measurement group (the narrative goes in the TID 2000 SR)"
        )
    content = hd.sr.MeasurementReport(
        observation_context=observation_context(report, ctx),
        procedure_reported=_dicom.hd_code(procedure_code(study)),
        imaging_measurements=groups,
    )
    return _dicom.build_sr(
        hd.sr.Comprehensive3DSR,
        report,
        ctx,
        PURPOSE,
        SOP_CLASS_UID,
        _used_schemes(report),
        evidence=evidence,
        content=content,
        series_description="mmdx AI findings (TID 1500)",
        requested_procedures=_dicom.referenced_request(study),
    )


def has_coded_content(report: DraftReport) -> bool:
    """Whether a TID 1500 SR has anything to say (a coded finding or a measurement)."""
    return any(f.concept is not None for f in report.findings) or bool(report.measurements)


def _used_schemes(report: DraftReport) -> set[str]:
    schemes = {f.concept.scheme for f in report.findings if f.concept is not None}
    schemes |= {f.site.scheme for f in report.findings if f.site is not None}
    if any(f.probability is not None for f in report.findings):
        schemes.add(FHIRCODES.MODEL_PROBABILITY.scheme)
    return schemes


def build_tid1500_bytes(
    report: DraftReport, study: Study, ctx: ReportContext, source_instances: Sequence[Instance] = ()
) -> bytes:
    return _dicom.to_bytes(build_tid1500(report, study, ctx, source_instances))
