"""Sign-off workflow: every clinician action makes a NEW report version.

Pure functions over :class:`core.records.DraftReport`: the previous version is
never changed (the store keeps all versions; ``replaces_version`` links them),
so FHIR Provenance, SR predecessor references and the ORU result status can
all be derived from the version alone.

::

    preliminary ──edit──▶ preliminary
    preliminary ──sign──▶ final ──amend──▶ amended ──amend──▶ amended ...
         │                  │                 │
         └──────────────withdraw (entered-in-error)──────────┘
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from core.codes import LOINC
from core.errors import ReportError
from core.records import Clinician, DraftReport, Finding, Measurement, ReportSection, ReportStatus, Signature


def _check_time(report: DraftReport, at: datetime, action: str) -> None:
    if at.tzinfo is None:
        raise ReportError(f"{action}: 'at' must be timezone-aware, got a naive datetime")
    if at < report.created_at:
        raise ReportError(
            f"{action}: 'at' ({at.isoformat()}) is before version {report.version} was created "
            f"({report.created_at.isoformat()})"
        )


def _next_version(report: DraftReport, at: datetime, **changes: Any) -> DraftReport:
    """The version after ``report``, created ``at`` and replacing it, with ``changes`` applied."""
    return replace(report, version=report.version + 1, created_at=at, replaces_version=report.version, **changes)


def _revise_content(
    report: DraftReport,
    at: datetime,
    action: str,
    what: str,
    sections: Sequence[ReportSection] | None,
    findings: Sequence[Finding] | None,
    measurements: Sequence[Measurement] | None,
    **changes: Any,
) -> DraftReport:
    """The next version with new content (``None`` keeps the previous); refuses a revision that changes nothing."""
    new = _next_version(
        report,
        at,
        sections=tuple(sections) if sections is not None else report.sections,
        findings=tuple(findings) if findings is not None else report.findings,
        measurements=tuple(measurements) if measurements is not None else report.measurements,
        **changes,
    )
    if (new.sections, new.findings, new.measurements) == (report.sections, report.findings, report.measurements):
        raise ReportError(f"{action}: {what} changes nothing (sections, findings and measurements are the same)")
    return new


def edit(
    report: DraftReport,
    at: datetime,
    *,
    sections: Sequence[ReportSection] | None = None,
    findings: Sequence[Finding] | None = None,
    measurements: Sequence[Measurement] | None = None,
) -> DraftReport:
    """A clinician edits the unsigned draft: a new ``preliminary`` version (the old one may have been sent).

    Raises
    ------
    ReportError
        When the report is not preliminary (signed content changes only by :func:`amend`) or nothing changed.
    """
    if report.status is not ReportStatus.PRELIMINARY:
        raise ReportError(f"edit: version {report.version} is {report.status.value}; use amend() after signing")
    _check_time(report, at, "edit")
    return _revise_content(report, at, "edit", "the edit", sections, findings, measurements)


def sign(report: DraftReport, clinician: Clinician, at: datetime) -> DraftReport:
    """The clinician signs the draft: a new ``final`` version with the signature.

    Raises
    ------
    ReportError
        When the report is not a preliminary draft.
    """
    if report.status is not ReportStatus.PRELIMINARY:
        raise ReportError(
            f"sign: only a preliminary draft can be signed, version {report.version} is {report.status.value}"
        )
    _check_time(report, at, "sign")
    return _next_version(report, at, status=ReportStatus.FINAL, signature=Signature(clinician, at))


def amend(
    report: DraftReport,
    clinician: Clinician,
    at: datetime,
    *,
    sections: Sequence[ReportSection] | None = None,
    findings: Sequence[Finding] | None = None,
    measurements: Sequence[Measurement] | None = None,
) -> DraftReport:
    """A signed report is corrected: a new ``amended`` version, signed by ``clinician``.

    Parameters
    ----------
    sections, findings, measurements:
        Replacements; ``None`` keeps the previous version's content.

    Raises
    ------
    ReportError
        When the report is not final/amended, or nothing changed.
    """
    if report.status not in (ReportStatus.FINAL, ReportStatus.AMENDED):
        raise ReportError(
            f"amend: only a signed report can be amended, version {report.version} is {report.status.value}"
        )
    _check_time(report, at, "amend")
    return _revise_content(
        report,
        at,
        "amend",
        "the amendment",
        sections,
        findings,
        measurements,
        status=ReportStatus.AMENDED,
        signature=Signature(clinician, at),
    )


def withdraw(report: DraftReport, clinician: Clinician, at: datetime, reason: str) -> DraftReport:
    """Reject a draft or retract a signed report: a new ``entered-in-error`` version.

    The signature records who withdrew it; the reason becomes the only section
    of the new version so every output says why.

    Raises
    ------
    ReportError
        When the report is already withdrawn or the reason is empty.
    """
    if report.status is ReportStatus.ENTERED_IN_ERROR:
        raise ReportError(f"withdraw: version {report.version} is already withdrawn")
    if not reason.strip():
        raise ReportError("withdraw: a reason is required")
    _check_time(report, at, "withdraw")
    note = ReportSection(LOINC.IMPRESSION, f"Withdrawn: {reason.strip()}")
    kept = tuple(s for s in report.sections if s.code != LOINC.IMPRESSION)
    return _next_version(
        report, at, status=ReportStatus.ENTERED_IN_ERROR, signature=Signature(clinician, at), sections=(*kept, note)
    )
