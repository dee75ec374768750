"""A clinician's action on a report (edit, sign, amend, withdraw) as one stored, audited, delivered version.

:mod:`reports.signoff` makes the new version (pure); this module rebuilds
every artefact of it (FHIR, SR, PDF, HL7...), writes them under
``<out>/<study>/v<version>/``, and stores version + artefacts + outbox rows +
the audit entry in one unit of work, so a signature can never be stored
without its deliveries queued.  The API and the pages both call
:func:`apply_action`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.context import AppContext
from app.models_stage import image_input
from app.orders import with_recorded_order
from app.pipeline import MAX_KEY_IMAGES, destinations_for
from app.plan import Action, plan_study
from core.codes import LOINC, Code
from core.errors import EcgError, IngestError, MmdxError, ReportError, StoreError
from core.records import Clinician, DraftReport, Image, ReportKind, ReportSection, ReportStatus, Study
from core.version import SOFTWARE_NAME, SOFTWARE_VERSION
from ecg.analysis import analyze
from ecg.holter import long_recording, needs_windows, printout_strip
from ecg.readers import read_ecg
from ecg.render import render_png
from reports import signoff
from reports.context import ReportContext
from reports.outputs import build_outputs, write_outputs
from store import audit, index, outbox
from store import orders as order_store
from store import reports as report_store
from store.outbox import OutboxItem
from store.reports import ArtefactRecord

log = logging.getLogger(__name__)

#: Section codes a clinician may add to a draft (others are kept as the pipeline wrote them).
EDITABLE_SECTIONS: dict[str, Code] = {
    c.value: c
    for c in (
        LOINC.FINDINGS,
        LOINC.IMPRESSION,
        LOINC.RECOMMENDATION,
        LOINC.COMPARISON,
        LOINC.TECHNIQUE,
        LOINC.EKG_NARRATIVE,
        LOINC.RADIOLOGY_NARRATIVE,
    )
}


class ReviewAction(enum.StrEnum):
    """What a clinician does to the newest version (audit action ``report.<value>``)."""

    EDIT = "edit"
    SIGN = "sign"
    AMEND = "amend"
    WITHDRAW = "withdraw"


class ReviewConflict(MmdxError):
    """The report changed since the caller read it (another user acted first): HTTP 409."""


class NoReport(MmdxError):
    """The study has no report (yet): HTTP 404."""


@dataclass(frozen=True, slots=True)
class ReviewResult:
    report: DraftReport
    artefacts: tuple[Path, ...]
    outbox_rows: int


def _revised_sections(report: DraftReport, texts: Mapping[str, str]) -> tuple[ReportSection, ...]:
    """The report's sections with ``texts`` (LOINC code -> text) applied; an empty text removes a section.

    Raises
    ------
    ReportError
        A code that is neither in the report nor an editable section code.
    """
    sections = list(report.sections)
    for code_value, text in texts.items():
        existing = [i for i, s in enumerate(sections) if s.code.value == code_value]
        if not existing and code_value not in EDITABLE_SECTIONS:
            raise ReportError(
                f"edit: section code {code_value!r} is not in the report and not one of {sorted(EDITABLE_SECTIONS)}"
            )
        if existing:
            i = existing[0]
            if text.strip():
                sections[i] = ReportSection(sections[i].code, text.strip())
            else:
                del sections[i]
        elif text.strip():
            sections.append(ReportSection(EDITABLE_SECTIONS[code_value], text.strip()))
    return tuple(sections)


def _transition(
    report: DraftReport,
    action: ReviewAction,
    clinician: Clinician,
    ctx: AppContext,
    sections: Mapping[str, str] | None,
    reason: str | None,
) -> DraftReport:
    now = ctx.clock.now()
    if action is ReviewAction.EDIT:
        return signoff.edit(report, now, sections=_revised_sections(report, sections or {}))
    if action is ReviewAction.SIGN:
        if sections:  # "edit and sign" in one step: the edit is its own preliminary version first
            report = signoff.edit(report, now, sections=_revised_sections(report, sections))
        return signoff.sign(report, clinician, now)
    if action is ReviewAction.AMEND:
        return signoff.amend(report, clinician, now, sections=_revised_sections(report, sections or {}))
    return signoff.withdraw(report, clinician, now, reason or "")


def ecg_printout(ctx: AppContext, study: Study) -> bytes | None:
    """The ECG printout the pipeline drew (same recording, same settings, same picture)."""
    for series_plan in plan_study(study, ctx.settings).of(Action.ECG_ANALYSIS):
        for inst in series_plan.series.instances:
            try:
                if needs_windows(inst.path, ctx.settings.limits.max_ecg_samples):  # a Holter: its reference strip
                    rec = long_recording(inst.path)
                    strip = None if rec is None else printout_strip(rec, ctx.settings.ecg, patient=study.patient)
                    if strip is None:
                        continue
                    record, analysis = strip.record, strip.analysis
                else:
                    record = read_ecg(inst.path)
                    analysis = analyze(record, ctx.settings.ecg, patient=study.patient)
            except (EcgError, MmdxError):
                continue
            return render_png(record, analysis.measurements, analysis.statements, timezone=ctx.settings.site.timezone)
    return None


def _key_images(ctx: AppContext, study: Study, report: DraftReport) -> list[Image]:
    if report.kind is not ReportKind.IMAGING or not report.is_ai_generated:
        return []
    problems: list[str] = []
    try:
        inp = image_input(study, plan_study(study, ctx.settings).of(Action.IMAGE_MODELS), problems)
    except IngestError:
        return []
    return list(inp.images[:MAX_KEY_IMAGES]) if inp is not None else []


def apply_action(
    ctx: AppContext,
    study_uid: str,
    action: ReviewAction,
    clinician: Clinician,
    *,
    actor: str,
    origin: str | None = None,
    sections: Mapping[str, str] | None = None,
    reason: str | None = None,
    expected_version: int | None = None,
    out_dir: Path | None = None,
) -> ReviewResult:
    """Make, build, store and audit the next version of the study's report.

    Raises
    ------
    NoReport
        The study has no report.
    ReviewConflict
        ``expected_version`` is not the newest version, or another user stored one meanwhile.
    ReportError
        The transition is not allowed (signing a signed report, an empty edit...).
    """
    latest, study = _newest(ctx, study_uid, expected_version)
    new = _transition(latest, action, clinician, ctx, sections, reason)
    if new.version != latest.version + 1:  # edit-and-sign stores the edit inside the signed version's history
        new = _renumber(new, latest)
    rctx = ReportContext.from_site(  # the same site profile as the draft: same patient systems, zone, MSH
        ctx.settings.site,
        uid_root=ctx.settings.uid_root,
        software_name=SOFTWARE_NAME,
        software_version=SOFTWARE_VERSION,
        clock=ctx.clock,
    )
    printout = ecg_printout(ctx, study) if new.kind is ReportKind.ECG else None
    outputs = build_outputs(
        new, study, rctx, ecg_printout_png=printout, previous=latest, images=_key_images(ctx, study, new)
    )
    target = (out_dir or Path(ctx.settings.storage.out_dir)) / study_uid / f"v{new.version}"
    paths = tuple(write_outputs(outputs, target))
    routes = destinations_for(ctx, new.kind, new)
    artefacts = [
        ArtefactRecord(a.kind, p, a.sha256, a.media_type, a.sop_instance_uid)
        for a, p in zip(outputs.artefacts, paths, strict=True)
    ]
    _store(ctx, new, artefacts, routes, action, actor=actor, origin=origin, reason=reason)
    queued = sum(len(routes.get(a.kind, ())) for a in outputs.artefacts)
    log.info("study %s report %s -> version %d by %s", study_uid, action.value, new.version, actor)
    return ReviewResult(new, paths, queued)


def _newest(ctx: AppContext, study_uid: str, expected_version: int | None) -> tuple[DraftReport, Study]:
    """The newest version and its study (with the order the first version answered); a conflict when the user
    acted on an older version than the newest."""
    with ctx.db.session(readonly=True) as session:
        latest = report_store.latest_report(session, study_uid)
        study = index.load_study(session, study_uid)
    if latest is None or study is None:
        raise NoReport(f"study {study_uid} has no report")
    study = with_recorded_order(ctx, study)  # every version carries the order the first one answered
    if expected_version is not None and expected_version != latest.version:
        raise ReviewConflict(
            f"report of study {study_uid}: you acted on version {expected_version}, the newest is {latest.version}"
        )
    return latest, study


def _store(
    ctx: AppContext,
    new: DraftReport,
    artefacts: list[ArtefactRecord],
    routes: Mapping[str, Sequence[str]],
    action: ReviewAction,
    *,
    actor: str,
    origin: str | None,
    reason: str | None,
) -> None:
    """Store the version, complete the order when signed, and audit it, in one transaction; a version stored by
    another user meanwhile is a conflict. The audit says a reason was given, never its text (it may hold PHI)."""
    study_uid = new.study_instance_uid
    try:
        with ctx.db.session() as session:
            report_store.save_report_version(session, new, artefacts, routes, ctx.clock.now())
            if new.status in (ReportStatus.FINAL, ReportStatus.AMENDED):
                order_store.complete_for_study(session, study_uid, ctx.clock.now())
            detail = f"version {new.version} ({new.status.value})"
            if reason:
                detail += f"; reason given ({len(reason.strip())} characters)"
            audit.record(
                session,
                actor=actor,
                action=f"report.{action.value}",
                study_uid=study_uid,
                detail=detail,
                at=ctx.clock.now(),
                origin=origin,
            )
    except StoreError as exc:
        raise ReviewConflict(f"report of study {study_uid} changed meanwhile: {exc}") from None


def _renumber(report: DraftReport, latest: DraftReport) -> DraftReport:
    """Edit-and-sign as one stored version: the signed content, replacing the version the clinician read."""
    from dataclasses import replace

    return replace(report, version=latest.version + 1, replaces_version=latest.version)


def retry_delivery(ctx: AppContext, item_id: int, *, actor: str, origin: str | None) -> OutboxItem | None:
    """Re-queue a dead outbox item for delivery now, audited; None when there is no such item.

    Raises ``StoreError`` when the item is not dead (a delivery in flight is never re-queued).
    """
    now = ctx.clock.now()
    with ctx.db.session() as session:
        item = outbox.get_item(session, item_id)
        if item is None:
            return None
        outbox.retry_dead(session, item_id, now)
        audit.record(
            session,
            actor=actor,
            action="outbox.retry",
            study_uid=item.study_uid,
            detail=f"item {item_id} to {item.destination}",
            at=now,
            origin=origin,
        )
    return item
