"""Helpers shared by the builders: report checks, names, sections, measurements.

Kept private: the builders' public faces are in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.codes import LOINC, MMDX, SCT, Code
from core.errors import ReportError
from core.records import (
    DraftReport,
    Finding,
    Laterality,
    Measurement,
    Presence,
    Producer,
    ProducerKind,
    ReportKind,
    ReportSection,
    ReportStatus,
    Study,
)

#: Coding schemes a finding concept may come from (anything else is refused before any output is built).
FINDING_SCHEMES = frozenset({"SCT", "RADLEX", "MMDX", "DCM", "LN"})
#: Coding schemes an anatomic site may come from.
SITE_SCHEMES = frozenset({"SCT", "RADLEX", "DCM", "MMDX"})
#: Coding schemes a measurement concept may come from.
MEASUREMENT_SCHEMES = frozenset({"LN", "SCT", "DCM", "MDC", "MMDX"})

STATUS_BANNER: dict[ReportStatus, str] = {
    ReportStatus.PRELIMINARY: "PRELIMINARY — draft, not verified by a clinician",
    ReportStatus.FINAL: "FINAL — signed",
    ReportStatus.AMENDED: "AMENDED — signed correction of an earlier final report",
    ReportStatus.ENTERED_IN_ERROR: "WITHDRAWN — entered in error, do not use",
}

#: SNOMED CT value of a finding's presence (SR qualitative evaluation, FHIR/HL7 observation value).
PRESENCE_CODES: dict[Presence, Code] = {
    Presence.PRESENT: SCT.PRESENT,
    Presence.ABSENT: SCT.ABSENT,
    Presence.UNCERTAIN: SCT.UNCERTAIN,
}
#: SNOMED CT laterality qualifier of a finding site (unknown/none has no code).
LATERALITY_CODES: dict[Laterality, Code] = {
    Laterality.LEFT: SCT.LEFT,
    Laterality.RIGHT: SCT.RIGHT,
    Laterality.BILATERAL: SCT.BILATERAL,
}


def check_report(report: DraftReport, study: Study) -> None:
    """Refuse inputs that would give an invalid or misleading object, before building anything.

    Raises
    ------
    ReportError
        Naming the field at fault (never patient data).
    """
    if report.study_instance_uid != study.study_instance_uid:
        raise ReportError(
            f"DraftReport.study_instance_uid {report.study_instance_uid} does not match "
            f"Study.study_instance_uid {study.study_instance_uid}"
        )
    for i, f in enumerate(report.findings):
        if f.concept is not None and f.concept.scheme not in FINDING_SCHEMES:
            raise ReportError(
                f"DraftReport.findings[{i}].concept: scheme {f.concept.scheme!r} is not a finding terminology; "
                f"expected one of {sorted(FINDING_SCHEMES)}"
            )
        if f.site is not None and f.site.scheme not in SITE_SCHEMES:
            raise ReportError(
                f"DraftReport.findings[{i}].site: scheme {f.site.scheme!r} is not an anatomy terminology; "
                f"expected one of {sorted(SITE_SCHEMES)}"
            )
    for i, (m, _) in enumerate(unique_measurements(report)):
        if m.code.scheme not in MEASUREMENT_SCHEMES:
            raise ReportError(
                f"DraftReport.measurements[{i}].code: scheme {m.code.scheme!r} is not a measurement terminology; "
                f"expected one of {sorted(MEASUREMENT_SCHEMES)}"
            )


def unique_measurements(report: DraftReport) -> list[tuple[Measurement, Producer | None]]:
    """Report-level measurements, then those only attached to findings, each once, with its producer."""
    out: list[tuple[Measurement, Producer | None]] = []
    seen: set[Measurement] = set()
    owner: dict[Measurement, Producer] = {}
    for f in report.findings:
        for m in f.measurements:
            owner.setdefault(m, f.producer)
    for m in (*report.measurements, *(m for f in report.findings for m in f.measurements)):
        if m not in seen:
            seen.add(m)
            out.append((m, owner.get(m)))
    return out


def section_text(report: DraftReport, *codes: Code) -> str | None:
    """Text of the first section present among ``codes``."""
    for code in codes:
        s = report.section(code)
        if s is not None:
            return s.text
    return None


#: What every output says of a study that no model, rule engine or clinician has read: never a finding,
#: never a normal conclusion.
NOT_ANALYSED = "Not analysed: no model or rule engine has read this study; a clinician must read it."
_PRODUCER_KIND_TEXT = {
    ProducerKind.MODEL: "AI model",
    ProducerKind.RULE_ENGINE: "rule engine",
    ProducerKind.DEVICE: "acquisition device",
    ProducerKind.CLINICIAN: "clinician",
}


def is_analysed(report: DraftReport) -> bool:
    """True when a model, a rule engine or a signing clinician has read the study."""
    return bool(report.machine_producers) or report.signature is not None


def machine_label(report: DraftReport) -> str | None:
    """The one label of machine-generated content, the same words in SR, FHIR, HL7 and PDF/HTML.

    The rule: a report holding anything a model, rule engine or device produced says so, names
    each producer with its version and kind, and says whether a clinician has verified it.  FHIR
    adds its coded form (``meta.security`` AIAST and a Provenance naming each producer's Device).
    """
    producers = report.machine_producers
    if not producers:
        return None
    names = ", ".join(f"{p.name} {p.version} ({_PRODUCER_KIND_TEXT[p.kind]})" for p in producers)
    verified = report.signature is not None and report.status in (ReportStatus.FINAL, ReportStatus.AMENDED)
    state = "verified by a clinician" if verified else "not verified by a clinician"
    return f"Machine-generated content ({names}), {state}."


def notices(report: DraftReport) -> list[str]:
    """Processing notes (no model configured, a model failed...): presentation, never findings."""
    return [s.text for s in report.sections if s.code == MMDX.PROCESSING_NOTE]


def clinical_sections(report: DraftReport) -> list[ReportSection]:
    """The report's sections without processing notes."""
    return [s for s in report.sections if s.code != MMDX.PROCESSING_NOTE]


def conclusion_text(report: DraftReport) -> str:
    """The report's conclusion: the impression (imaging), the EKG narrative (ECG), else the findings.

    A study nobody read says :data:`NOT_ANALYSED`; "No findings reported." only ever follows an analysis.
    """
    text = section_text(report, LOINC.IMPRESSION, LOINC.EKG_NARRATIVE)
    if text:
        return text
    if not is_analysed(report):
        return NOT_ANALYSED
    present = [f.text or (f.concept.meaning if f.concept else "") for f in report.findings]
    return "; ".join(p for p in present if p) or "No findings reported."


def report_code(report: DraftReport) -> Code:
    return LOINC.EKG_STUDY if report.kind is ReportKind.ECG else LOINC.IMAGING_STUDY


def finding_label(f: Finding) -> str:
    return f.text or (f.concept.meaning if f.concept else "finding")


@dataclass(frozen=True, slots=True)
class PersonNameParts:
    family: str
    given: tuple[str, ...]
    prefix: str | None
    suffix: str | None

    @property
    def display(self) -> str:
        return " ".join(p for p in (self.prefix, *self.given, self.family, self.suffix) if p)


def split_person_name(name: str) -> PersonNameParts:
    """Split a DICOM PN (``Family^Given^Middle^Prefix^Suffix``) or a plain "Given Family" string."""
    if "^" in name:
        parts = [*name.split("=")[0].split("^"), "", "", "", ""][:5]
        given = tuple(p for p in (parts[1], parts[2]) if p)
        return PersonNameParts(parts[0], given, parts[3] or None, parts[4] or None)
    words = name.split()
    if len(words) <= 1:
        return PersonNameParts(name.strip(), (), None, None)
    return PersonNameParts(words[-1], tuple(words[:-1]), None, None)


def to_dicom_pn(name: str) -> str:
    """A name as DICOM PN: PN input is kept, "Given Family" becomes ``Family^Given``."""
    if "^" in name:
        return name
    p = split_person_name(name)
    return "^".join([p.family, " ".join(p.given)]).rstrip("^")
