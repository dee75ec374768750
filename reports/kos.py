"""Key Object Selection rejection note for withdrawn reports (IHE IOCM style).

When a clinician withdraws a report, the DICOM objects already sent (SR, SC,
Encapsulated PDF of earlier versions) cannot be recalled; a KOS titled
"Rejected for Patient Safety Reasons" that references them tells PACS and
viewers to hide them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset

from core.codes import DCM
from core.errors import ReportError
from core.records import DraftReport, ReportStatus, Study
from reports import _dicom
from reports.context import ReportContext

PURPOSE = "kos"


@dataclass(frozen=True, slots=True)
class DicomRef:
    """A DICOM object mmdx sent earlier (what a rejection note points at)."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str


def build_rejection_note(
    report: DraftReport, study: Study, ctx: ReportContext, rejected: Sequence[DicomRef]
) -> Dataset:
    """A KOS rejecting ``rejected`` (earlier versions' DICOM objects) for a withdrawn report.

    Raises
    ------
    ReportError
        When the report is not withdrawn or there is nothing to reject.
    """
    if report.status is not ReportStatus.ENTERED_IN_ERROR:
        raise ReportError(
            f"build_rejection_note: report version {report.version} is {report.status.value}, expected entered-in-error"
        )
    if not rejected:
        raise ReportError("build_rejection_note: no earlier DICOM objects to reject")
    charset = _dicom.character_set(study, report)
    evidence = []
    for ref in rejected:
        ds = Dataset()
        if charset:
            ds.SpecificCharacterSet = charset
        _dicom.patient_module(ds, study)
        ds.StudyInstanceUID = study.study_instance_uid
        ds.SeriesInstanceUID = ref.series_instance_uid
        ds.SOPInstanceUID = ref.sop_instance_uid
        ds.SOPClassUID = ref.sop_class_uid
        evidence.append(ds)
    reason = next((s.text for s in report.sections if s.text.startswith("Withdrawn")), "Withdrawn")
    content = hd.ko.KeyObjectSelection(
        document_title=_dicom.hd_code(DCM.REJECTED_FOR_PATIENT_SAFETY),
        referenced_objects=evidence,
        description=reason[:1024],
    )
    ident = _dicom.identity(report, ctx, PURPOSE)
    ko = hd.ko.KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=ident.series_instance_uid,
        series_number=ident.series_number,
        sop_instance_uid=ident.sop_instance_uid,
        instance_number=ident.instance_number,
        manufacturer=ctx.manufacturer,
        institution_name=ctx.institution_name,
        institutional_department_name=ctx.department_name,
        series_description="mmdx rejection note",
    )
    _dicom.set_times(ko, report, ctx)
    _dicom.set_equipment(ko, ctx)
    return ko


def build_rejection_note_bytes(
    report: DraftReport, study: Study, ctx: ReportContext, rejected: Sequence[DicomRef]
) -> bytes:
    return _dicom.to_bytes(build_rejection_note(report, study, ctx, rejected))
