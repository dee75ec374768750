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
    evidence = [
        _dicom.evidence_dataset(study, charset, ref.series_instance_uid, ref.sop_instance_uid, ref.sop_class_uid, ctx)
        for ref in rejected
    ]
    reason = next((s.text for s in report.sections if s.text.startswith("Withdrawn")), "Withdrawn")
    content = hd.ko.KeyObjectSelection(
        document_title=_dicom.hd_code(DCM.REJECTED_FOR_PATIENT_SAFETY),
        referenced_objects=evidence,
        description=reason[:1024],
    )
    ko = hd.ko.KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        **_dicom.document_kwargs(report, ctx, PURPOSE, "mmdx rejection note"),
    )
    _dicom.set_times(ko, report, ctx)
    _dicom.set_equipment(ko, ctx)
    return ko


def build_rejection_note_bytes(
    report: DraftReport, study: Study, ctx: ReportContext, rejected: Sequence[DicomRef]
) -> bytes:
    return _dicom.to_bytes(build_rejection_note(report, study, ctx, rejected))
