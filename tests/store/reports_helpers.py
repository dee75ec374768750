"""Report records for the store tests (every field set, so a lost field shows up in a round trip)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from core.codes import LOINC, SCT, UCUM
from core.records import (
    Clinician,
    DraftReport,
    EvidenceRef,
    Finding,
    Laterality,
    Measurement,
    Presence,
    Priority,
    PriorityLevel,
    Producer,
    ProducerKind,
    ReportKind,
    ReportSection,
    ReportStatus,
    Signature,
)

STUDY = "1.2.826.0.1.3680043.10.999.7"
CREATED = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)

MODEL = Producer(ProducerKind.MODEL, "cxr-densenet", "1.2.0", "ab" * 32)
RULES = Producer(ProducerKind.RULE_ENGINE, "ecg-rules", "0.3", "cd" * 32)


def full_report(version: int = 1, *, signed: bool = False, status: ReportStatus | None = None) -> DraftReport:
    qt = Measurement(LOINC.QT_INTERVAL, 412.5, UCUM.MS, site="II", method="median beat")
    finding = Finding(
        concept=SCT.PLEURAL_EFFUSION,
        text="Small left pleural effusion",
        producer=MODEL,
        presence=Presence.UNCERTAIN,
        site=SCT.PLEURA,
        laterality=Laterality.LEFT,
        probability=0.731,
        evidence=(EvidenceRef(sop_instance_uid="1.2.3.4.5", frame=2), EvidenceRef(lead="V2", start_s=0.5, end_s=1.25)),
        criteria=("blunted costophrenic angle", "meniscus sign"),
        measurements=(qt,),
        critical=True,
    )
    rule_finding = Finding(concept=None, text="QT within limits", producer=RULES, presence=Presence.ABSENT)
    signature = None
    if signed:
        signature = Signature(
            Clinician("Dr A Reader", "RAD-17", role="radiologist"),
            datetime(2026, 11, 26, 14, 0, tzinfo=timezone(timedelta(hours=1))),
        )
    return DraftReport(
        study_instance_uid=STUDY,
        kind=ReportKind.IMAGING,
        created_at=CREATED,
        status=status or (ReportStatus.FINAL if signed else ReportStatus.PRELIMINARY),
        version=version,
        sections=(ReportSection(LOINC.FINDINGS, "Left effusion."), ReportSection(LOINC.IMPRESSION, "Effusion.")),
        findings=(finding, rule_finding),
        measurements=(qt,),
        priority=Priority(PriorityLevel.URGENT, "effusion with critical flag"),
        provenance=(MODEL, RULES),
        signature=signature,
        replaces_version=version - 1 if version > 1 else None,
    )
