"""The content of the human-readable report, shared by the PDF and HTML renderers.

One function decides what a reader sees (sections in order, tables, banner,
signature); ``pdf`` and ``html`` only decide how it looks, so the two can
never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.codes import LOINC
from core.orders import OrderMatch
from core.records import DraftReport, Presence, ReportKind, ReportStatus, Study
from reports._common import (
    NOT_ANALYSED,
    STATUS_BANNER,
    clinical_sections,
    finding_label,
    is_analysed,
    machine_label,
    notices,
    split_person_name,
    unique_measurements,
)
from reports.context import ReportContext


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything a rendering shows, as plain strings and rows (unescaped)."""

    title: str
    banner: str
    is_draft: bool
    exam: list[tuple[str, str]]
    sections: list[tuple[str, str]]  #: (heading, text) in reading order
    findings_table: list[list[str]]  #: header row first
    measurements_table: list[list[str]]  #: header row first
    provenance_table: list[list[str]]  #: header row first
    status_lines: list[str]

    @property
    def watermark(self) -> str | None:
        return "PRELIMINARY — not verified by a clinician" if self.is_draft else None


_SECTION_ORDER = [
    ("Clinical information", LOINC.HISTORY),
    ("Technique", LOINC.TECHNIQUE),
    ("Comparison", LOINC.COMPARISON),
    ("Findings", LOINC.FINDINGS),
    ("Interpretation", LOINC.EKG_NARRATIVE),
    ("Impression", LOINC.IMPRESSION),
    ("Recommendation", LOINC.RECOMMENDATION),
]
_PRESENCE_TEXT = {Presence.PRESENT: "present", Presence.ABSENT: "absent", Presence.UNCERTAIN: "indeterminate"}


def _add_order(match: OrderMatch, exam: list[tuple[str, str]], sections: list[tuple[str, str]]) -> None:
    """The order the study answers: its numbers and procedure, the indication first, a weak/conflicting match."""
    o = match.order
    numbers = f"placer {o.placer_number}" + (f", filler {o.filler_number}" if o.filler_number else "")
    procedure = f": {o.procedure.display}" if o.procedure else ""
    exam.insert(3, ("Order", numbers + procedure))
    if o.ordering_provider:
        exam.insert(4, ("Ordered by", split_person_name(o.ordering_provider).display))
    if o.indication:
        sections.insert(0, ("Indication", o.indication))
    if match.notice:
        sections.append(("Order match", match.notice))


def build_layout(report: DraftReport, study: Study, ctx: ReportContext) -> Layout:
    """Decide the report's visible content (sections, tables, status, signature)."""
    exam = _exam(report, study, ctx)
    sections = _sections(report)
    if study.order_match is not None:
        _add_order(study.order_match, exam, sections)
    title = "ECG report" if report.kind is ReportKind.ECG else "Diagnostic imaging report"
    return Layout(
        title=f"{ctx.institution_name} — {title}",
        banner=STATUS_BANNER[report.status],
        is_draft=report.status is ReportStatus.PRELIMINARY,
        exam=exam,
        sections=sections,
        findings_table=_findings_table(report),
        measurements_table=_measurements_table(report),
        provenance_table=_provenance_table(report, ctx),
        status_lines=_status_lines(report),
    )


def _exam(report: DraftReport, study: Study, ctx: ReportContext) -> list[tuple[str, str]]:
    """The exam box: what was examined, when, for whom; "—" where the source is silent."""
    p = study.patient
    return [
        ("Examination", study.description or ("12-lead ECG" if report.kind is ReportKind.ECG else "Imaging study")),
        ("Study date", _when(study, ctx)),
        ("Accession", study.accession_number or "—"),
        ("Patient", split_person_name(p.name).display if p.name else "—"),
        ("Patient ID", ", ".join(i.value for i in p.identifiers) or "—"),
        ("Birth date / sex", f"{p.birth_date.isoformat() if p.birth_date else '—'} / {p.sex.value}"),
        ("Modalities", ", ".join(study.modalities) or "—"),
        ("Study UID", study.study_instance_uid),
        ("Priority", f"{report.priority.level.name.lower()}: {report.priority.reason}"),
    ]


def _sections(report: DraftReport) -> list[tuple[str, str]]:
    """Sections in the reader's order, then other clinical sections and notes; Technique and Comparison always."""
    sections: list[tuple[str, str]] = []
    known = {c for _, c in _SECTION_ORDER}
    for heading, code in _SECTION_ORDER:
        s = report.section(code)
        if s is not None:
            sections.append((heading, s.text))
    for s in clinical_sections(report):
        if s.code not in known:
            sections.append((s.code.meaning, s.text))
    for note in notices(report):  # shown to the reader, under its own heading: never a finding
        sections.append(("Note", note))
    if not any(h == "Technique" for h, _ in sections):
        sections.insert(0, ("Technique", "Not stated."))
    if not any(h == "Comparison" for h, _ in sections):
        sections.insert(1, ("Comparison", "None."))
    return sections


def _findings_table(report: DraftReport) -> list[list[str]]:
    """One row per finding; a row saying why there are none (not analysed, or nothing found)."""
    findings = [["Finding", "Code", "Presence", "Site", "Probability", "Source"]]
    for f in report.findings:
        coded = f"{f.concept.scheme} {f.concept.value}" if f.concept else "uncoded"
        site = f.site.meaning if f.site else "—"
        if f.site and f.laterality.value in ("left", "right", "bilateral"):
            site = f"{f.laterality.value} {site}"
        prob = f"{f.probability:.2f}" if f.probability is not None else "—"
        findings.append([finding_label(f), coded, _PRESENCE_TEXT[f.presence], site, prob, f.producer.name])
    if len(findings) == 1:
        findings.append([NOT_ANALYSED if not is_analysed(report) else "No findings reported", "", "", "", "", ""])
    return findings


def _measurements_table(report: DraftReport) -> list[list[str]]:
    """One row per distinct measurement, with its unit and code."""
    measurements = [["Measurement", "Value", "Unit", "Site / lead", "Code"]]
    for m, _ in unique_measurements(report):
        measurements.append(
            [m.code.meaning, f"{m.value:g}", m.unit.value, m.site or "—", f"{m.code.scheme} {m.code.value}"]
        )
    return measurements


def _provenance_table(report: DraftReport, ctx: ReportContext) -> list[list[str]]:
    """Every producer with its version and weights digest, then this software."""
    provenance = [["Producer", "Kind", "Version", "SHA-256 of weights / rules"]]
    for prod in report.provenance:
        provenance.append([prod.name, prod.kind.value.replace("_", " "), prod.version, prod.digest or "—"])
    provenance.append([ctx.software_name, "report software", ctx.software_version, "—"])
    return provenance


def _status_lines(report: DraftReport) -> list[str]:
    """Status and version, the machine label (or not analysed), who signed or withdrew it, what it replaces."""
    status = [f"Status: {report.status.value} (version {report.version})", STATUS_BANNER[report.status]]
    label = machine_label(report)
    if label:
        status.append(label)
    elif not is_analysed(report):
        status.append(NOT_ANALYSED)
    if report.signature is not None:
        who = split_person_name(report.signature.clinician.name).display
        verb = "Withdrawn by" if report.status is ReportStatus.ENTERED_IN_ERROR else "Electronically signed by"
        status.append(
            f"{verb} {who} ({report.signature.clinician.role}, {report.signature.clinician.identifier}) "
            f"at {report.signature.signed_at.isoformat()}"
        )
    else:
        status.append("Not signed: to be reviewed by a clinician before any clinical use.")
    if report.replaces_version is not None:
        status.append(f"Replaces version {report.replaces_version}.")
    return status


def _when(study: Study, ctx: ReportContext) -> str:
    """The acquisition time on its own wall clock, with its UTC offset (2024-02-03 09:34+01:00)."""
    if study.study_datetime is None:
        return "unknown"
    return ctx.aware(study.study_datetime).isoformat(sep=" ", timespec="minutes")
