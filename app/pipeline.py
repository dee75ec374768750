"""The one per-study pipeline that ``mmdx run``, ``mmdx worker`` and batch runs share.

load the study from the index -> plan -> ECG analysis / image models ->
DraftReport (preliminary) -> reports (FHIR, SR, SC, PDF, HL7) -> one
transaction storing the report version and its outbox rows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from app.context import AppContext
from app.models_stage import ecg_models, image_models, prefetched_study
from app.orders import order_for_study
from app.plan import Action, SeriesPlan, StudyPlan, plan_study
from core.codes import LOINC, MMDX
from core.errors import EcgError, IngestError, MmdxError
from core.records import (
    DraftReport,
    Finding,
    Image,
    Measurement,
    ModelCall,
    Presence,
    Priority,
    PriorityLevel,
    Producer,
    ReportKind,
    ReportSection,
    ReportStatus,
    Study,
)
from core.version import SOFTWARE_NAME, SOFTWARE_VERSION
from ecg.analysis import analyze
from ecg.device_check import compare as compare_with_device
from ecg.device_check import summary as device_summary
from ecg.holter import analyze_holter, long_recording, needs_windows
from ecg.readers import read_ecg
from ecg.render import render_png
from ingest.technique import series_technique
from models.orchestrate import ModelsResult
from models.safety import no_model_notice
from reports.context import ReportContext
from reports.outputs import ReportOutputs, build_outputs, publish_latest, write_outputs
from store import audit, index
from store import reports as report_store
from store.priors import prior_studies
from store.reports import ArtefactRecord
from store.serialize import report_to_json

log = logging.getLogger(__name__)

#: How many of the analysed views are sent back as Secondary Capture.
MAX_KEY_IMAGES = 2


@dataclass(frozen=True, slots=True)
class StudyOutcome:
    """What happened to one study (PHI-free: UIDs, counts, reasons)."""

    study_uid: str
    plan: StudyPlan
    report: DraftReport | None = None
    report_version: int | None = None
    artefacts: tuple[Path, ...] = ()
    problems: tuple[str, ...] = field(default=())
    model_failures: tuple[str, ...] = ()  #: "model 'X' failed: reason", also in the report text

    @property
    def summary(self) -> str:
        """One line for the study table: report status, priority and the first statements."""
        if self.report is None:
            analysed = any(p.action is not Action.SKIP for p in self.plan.series)
            return "; ".join(self.problems) if analysed and self.problems else "no report"
        head = f"{self.report.status.value} v{self.report_version}, {self.report.priority.level.name}"
        failed = "".join(f" | {f}" for f in self.model_failures)
        if not self.report.provenance:
            return f"{head}: exam and technique only, no model has read the images{failed}"
        statements = [f.text for f in self.report.findings if f.presence is Presence.PRESENT][:4]
        return f"{head}: " + ("; ".join(statements) or "no findings") + failed

    def to_json(self) -> dict[str, object]:
        """A PHI-free summary (UIDs, plan, report status, statements, artefact names)."""
        study = self.plan.study
        report = self.report
        return {
            "study_instance_uid": self.study_uid,
            "modalities": list(study.modalities),
            "series": len(study.series),
            "instances": study.instance_count,
            "plan": [
                {
                    "series_instance_uid": p.series.series_instance_uid,
                    "modality": p.series.modality,
                    "action": p.action.name.lower(),
                    "detail": p.detail,
                }
                for p in self.plan.series
            ],
            "report": None
            if report is None
            else {
                "version": self.report_version,
                "status": report.status.value,
                "priority": report.priority.level.name.lower(),
                "priority_reason": report.priority.reason,
                "statements": [f.text for f in report.findings if f.presence is Presence.PRESENT],
            },
            "artefacts": [p.name for p in self.artefacts],
            "problems": list(self.problems),
            "model_failures": list(self.model_failures),
        }


@dataclass
class _Draft:
    findings: list[Finding] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    priorities: list[Priority] = field(default_factory=list)
    producers: list[Producer] = field(default_factory=list)
    narrative: list[str] = field(default_factory=list)
    sections: list[ReportSection] = field(default_factory=list)
    key_images: list[Image] = field(default_factory=list)
    printout_png: bytes | None = None
    problems: list[str] = field(default_factory=list)
    model_calls: list[ModelCall] = field(default_factory=list)
    model_failures: list[str] = field(default_factory=list)

    def add_producer(self, producer: Producer) -> None:
        if producer not in self.producers:
            self.producers.append(producer)


def _analyse_ecgs(ctx: AppContext, study: Study, plan: StudyPlan, draft: _Draft) -> None:
    for series_plan in plan.of(Action.ECG_ANALYSIS):
        for inst in series_plan.series.instances:
            if needs_windows(inst.path, ctx.settings.limits.max_ecg_samples):
                _analyse_long_ecg(ctx, study, inst.path, inst.sop_instance_uid, draft)
                continue
            try:
                record = read_ecg(inst.path)
                analysis = analyze(record, ctx.settings.ecg, patient=study.patient)
            except (EcgError, MmdxError) as exc:
                draft.problems.append(f"ECG {inst.sop_instance_uid}: {exc}")
                continue
            draft.add_producer(analysis.producer)
            draft.findings.extend(analysis.statements)
            # global intervals/axes go in the report; per-lead amplitudes stay evidence of statements
            draft.measurements.extend(m for m in analysis.measurements if m.site is None)
            draft.priorities.append(analysis.priority)
            draft.narrative.extend(f.text for f in analysis.statements if f.presence is Presence.PRESENT)
            device = device_summary(
                compare_with_device(analysis.measurements, record.device_measurements),
                record.device_name,
                record.device_statements,
            )
            if device:  # the cart's own values beside mmdx's, differences beyond IEC 60601-2-25 said
                draft.sections.append(ReportSection(MMDX.ECG_DEVICE_VALUES, device))
            if draft.printout_png is None:
                draft.printout_png = render_png(
                    record, analysis.measurements, analysis.statements, timezone=ctx.settings.site.timezone
                )
            result = ecg_models(ctx, study, record, analysis.statements, analysis.measurements)
            if result is not None:
                _add_ecg_models(draft, result)


def _analyse_long_ecg(ctx: AppContext, study: Study, path: Path, uid: str, draft: _Draft) -> None:
    """A recording over ``limits.max_ecg_samples`` (a Holter): its windowed summary (``ecg.holter``) is the report."""
    limits = ctx.settings.limits
    try:
        rec = long_recording(path)
        if rec is None:
            raise EcgError("not a WFDB recording: only WFDB is analysed in windows", source=str(path))
        summary = analyze_holter(
            rec,
            ctx.settings.ecg,
            window_s=limits.ecg_window_s,
            patient=study.patient,
            max_hours=limits.max_ecg_hours,
        )
    except (EcgError, MmdxError) as exc:
        draft.problems.append(f"ECG {uid}: {exc}")
        return
    draft.add_producer(summary.producer)
    draft.findings.extend(summary.findings())
    draft.measurements.extend(summary.measurements())
    draft.priorities.append(summary.priority())
    draft.narrative.extend(summary.sentences())
    strip = summary.reference  # the picture a sign-off redraws (app.review.ecg_printout)
    if strip is not None and draft.printout_png is None:
        a = strip.analysis
        draft.printout_png = render_png(strip.record, a.measurements, a.statements, timezone=ctx.settings.site.timezone)


def _add_ecg_models(draft: _Draft, result: ModelsResult) -> None:
    """The ECG classifier's statements and its disagreements with the rules; a failure is said in the report."""
    draft.problems.extend(result.errors + result.notices)
    draft.model_calls.extend(result.calls)
    draft.model_failures.extend(result.errors)
    for producer in result.provenance:
        draft.add_producer(producer)
    draft.findings.extend(result.findings)
    draft.sections.extend(result.sections)
    draft.priorities.append(result.priority)
    if result.errors:
        reasons = " ".join(f"{e[0].upper()}{e[1:]}." for e in result.errors)
        draft.sections.append(
            ReportSection(LOINC.EKG_NARRATIVE, f"{reasons} The interpretation is the rule-based engine's alone.")
        )


def _run_image_models(ctx: AppContext, study: Study, plan: StudyPlan, draft: _Draft) -> None:
    plans = plan.of(Action.IMAGE_MODELS)
    if not plans:
        return
    models = image_models(ctx, study, plans, draft.problems)  # batched with the next studies where prefetched
    if models is None:
        return
    inp, result = models
    draft.problems.extend(result.errors)
    draft.problems.extend(result.notices)
    draft.model_calls.extend(result.calls)
    draft.model_failures.extend(result.errors)
    if result.errors:
        # a failed model is said in the report itself; without any model text the study gets its fallback
        if not result.findings and not result.sections:
            _technique_sections(ctx, study, plans, draft)
        reasons = " ".join(f"{e[0].upper()}{e[1:]}." for e in result.errors)
        draft.sections.append(
            ReportSection(MMDX.PROCESSING_NOTE, f"{reasons} No AI reading from it; a radiologist must read the images.")
        )
    if not result.findings and not result.sections:
        return
    for producer in result.provenance:
        draft.add_producer(producer)
    draft.findings.extend(result.findings)
    draft.sections.extend(result.sections)
    draft.priorities.append(result.priority)
    # the views the draft was written from go back to the PACS as bannered secondary captures
    draft.key_images.extend(inp.images[:MAX_KEY_IMAGES])


def _exam_only(ctx: AppContext, study: Study, plan: StudyPlan, draft: _Draft) -> None:
    """Without an image model the draft still says what was done and plainly that nobody has read it."""
    plans = plan.of(Action.EXAM_ONLY)
    if not plans:
        return
    _technique_sections(ctx, study, plans, draft)
    notice = no_model_notice("imaging", ctx.registry.describe_all())
    if notice:
        draft.sections.append(ReportSection(MMDX.PROCESSING_NOTE, notice))  # a note, never a finding


def _technique_sections(ctx: AppContext, study: Study, plans: Sequence[SeriesPlan], draft: _Draft) -> None:
    """Exam, technique and comparison: the draft every imaging study gets, read by a model or not."""
    sentences = []
    for series_plan in plans:
        try:
            sentences.append(series_technique([i.path for i in series_plan.series.instances]).sentence())
        except IngestError as exc:
            draft.problems.append(f"series {series_plan.series.series_instance_uid}: {exc}")
    exam = study.description or ", ".join(study.modalities)
    draft.sections.append(ReportSection(LOINC.TECHNIQUE, f"Exam: {exam}. Technique: " + " ".join(sentences)))
    with ctx.db.session() as session:
        priors = prior_studies(session, study.study_instance_uid)
    if priors:
        listed = "; ".join(
            f"{p.study_datetime:%Y-%m-%d} {', '.join(p.modalities)}" + (f" ({p.description})" if p.description else "")
            for p in priors
            if p.study_datetime is not None
        )
        comparison = f"Prior studies available for comparison: {listed}."
    else:
        comparison = "No prior study of this patient in the index."
    draft.sections.append(ReportSection(LOINC.COMPARISON, comparison))


def _report_kind(plan: StudyPlan) -> ReportKind:
    return ReportKind.ECG if plan.of(Action.ECG_ANALYSIS) else ReportKind.IMAGING


def _with_failures(priority: Priority, failures: list[str]) -> Priority:
    """A routine draft whose model failed says so in its priority reason (the worklist shows it)."""
    if not failures or priority.level is not PriorityLevel.ROUTINE:
        return priority
    return Priority(priority.level, f"{'; '.join(failures)[:300]}; read without AI")


def _same_content(a: DraftReport, b: DraftReport) -> bool:
    ja, jb = report_to_json(a), report_to_json(b)
    for j in (ja, jb):
        j.pop("created_at", None)
        j.pop("version", None)
        for call in j.get("model_calls", []):  # how long a model took does not change what it said
            call.pop("seconds", None)
    return ja == jb


def process_study(
    ctx: AppContext,
    study_uid: str,
    out_dir: Path | None = None,
    *,
    finish: Callable[[Session, StudyOutcome], None] | None = None,
    actions: frozenset[Action] | None = None,
) -> StudyOutcome:
    """Analyse one indexed study and store (and write) its preliminary report.

    Re-running on unchanged content stores no new report version and enqueues
    nothing twice.  ``finish`` (the worker's job completion) runs in the
    transaction that stores the report version, or in its own when nothing is
    stored: a job is done exactly when its result is, and a refused ``finish``
    (the job went to another worker) stores nothing. ``actions`` (a batch run's chosen analyses):
    series planned for another action are skipped.

    Steps: load (with its order) -> plan -> analyse (ECG, image models, exam-only) -> draft -> version
    (an unchanged draft keeps the stored one) -> write the outputs -> store, audit and finish in one transaction.
    """
    draft = _Draft()
    study = _load(ctx, study_uid, draft)
    plan = plan_study(study, ctx.settings)
    if actions is not None:
        plan = plan.only(actions)
    _analyse_ecgs(ctx, study, plan, draft)
    _run_image_models(ctx, study, plan, draft)
    _exam_only(ctx, study, plan, draft)
    for skipped in plan.of(Action.SKIP):
        draft.problems.append(skipped.summary)
    if not draft.producers and not draft.sections:
        empty = StudyOutcome(study_uid, plan, problems=tuple(draft.problems))
        if finish is not None:
            with ctx.db.session() as session:
                finish(session, empty)
        return empty
    kind = _report_kind(plan)
    for failure in draft.model_failures:
        log.warning("study %s: %s", study_uid, failure)
    report, latest, stored = _versioned(ctx, _draft_report(ctx, study_uid, kind, draft))
    # a new version names the one it replaces, so the EHR retracts observations it dropped
    previous = latest if stored and latest is not None else None
    outputs = build_outputs(
        report,
        study,
        _report_context(ctx),
        ecg_printout_png=draft.printout_png,
        previous=previous,
        images=draft.key_images,
    )
    # one folder per version, written once: a stored version's files never change (their hashes stay true)
    target = (out_dir or Path(ctx.settings.storage.out_dir)) / study_uid / f"v{report.version}"
    paths = tuple(write_outputs(outputs, target, exclusive=stored))
    publish_latest(paths[0].parent if paths else target, target.parent)
    outcome = StudyOutcome(
        study_uid,
        plan,
        report,
        report.version,
        paths,
        tuple(draft.problems),
        model_failures=tuple(draft.model_failures),
    )
    if stored or finish is not None:
        with ctx.db.session() as session:
            if stored:
                _store(ctx, session, report, kind, outputs, paths, draft.model_failures)
            if finish is not None:
                finish(session, outcome)
    return outcome


def _load(ctx: AppContext, study_uid: str, draft: _Draft) -> Study:
    """The indexed study with its matched order (results carry it; its indication reaches the models)."""
    prefetched = prefetched_study(study_uid)  # loaded, its order matched, by the models' read-ahead
    if prefetched is not None:
        study, asked = prefetched
        draft.problems.extend(asked)
        return study
    with ctx.db.session() as session:
        loaded = index.load_study(session, study_uid)
    if loaded is None:
        raise MmdxError(f"study {study_uid} is not in the index")
    match = order_for_study(ctx, loaded, draft.problems)
    return loaded if match is None else dataclasses.replace(loaded, order_match=match)


def _draft_report(ctx: AppContext, study_uid: str, kind: ReportKind, draft: _Draft) -> DraftReport:
    """The unversioned draft from what the analyses found (a failed model lifts the priority and says so)."""
    narrative_code = LOINC.EKG_NARRATIVE if kind is ReportKind.ECG else LOINC.FINDINGS
    sections = tuple(draft.sections)
    if draft.narrative:
        sections = (ReportSection(narrative_code, "\n".join(draft.narrative)), *sections)
    return DraftReport(
        study_instance_uid=study_uid,
        kind=kind,
        created_at=ctx.clock.now(),
        sections=sections,
        findings=tuple(draft.findings),
        measurements=tuple(draft.measurements),
        priority=_with_failures(Priority.highest(draft.priorities), draft.model_failures),
        provenance=tuple(draft.producers),
        model_calls=tuple(draft.model_calls),
    )


def _versioned(ctx: AppContext, report: DraftReport) -> tuple[DraftReport, DraftReport | None, bool]:
    """(the report to publish, the latest stored one, whether it is a new version): the stored version when
    the content is unchanged, else the next version replacing it."""
    with ctx.db.session() as session:
        latest = report_store.latest_report(session, report.study_instance_uid)
    if latest is not None and _same_content(latest, report):
        return latest, latest, False
    version = 1 if latest is None else latest.version + 1
    replaces = None if latest is None else latest.version
    return dataclasses.replace(report, version=version, replaces_version=replaces), latest, True


def _report_context(ctx: AppContext) -> ReportContext:
    return ReportContext.from_site(
        ctx.settings.site,
        uid_root=ctx.settings.uid_root,
        software_name=SOFTWARE_NAME,
        software_version=SOFTWARE_VERSION,
        clock=ctx.clock,
    )


def _store(
    ctx: AppContext,
    session: Session,
    report: DraftReport,
    kind: ReportKind,
    outputs: ReportOutputs,
    paths: Sequence[Path],
    model_failures: Sequence[str],
) -> None:
    """The new version, its artefacts queued for their destinations, and its audit rows (one per failed model)."""
    study_uid, version = report.study_instance_uid, report.version
    report_store.save_report_version(
        session,
        report,
        [
            ArtefactRecord(a.kind, p, a.sha256, a.media_type, a.sop_instance_uid)
            for a, p in zip(outputs.artefacts, paths, strict=True)
        ],
        destinations_for(ctx, kind, report),
        ctx.clock.now(),
        model_errors=list(model_failures),
    )
    audit.record(
        session,
        actor=SOFTWARE_NAME,
        action="report.preliminary",
        study_uid=study_uid,
        detail=f"version {version}, priority {report.priority.level.name}",
        at=ctx.clock.now(),
    )
    for failure in model_failures:
        audit.record(
            session,
            actor=SOFTWARE_NAME,
            action="model.failed",
            study_uid=study_uid,
            detail=f"version {version}: {failure}"[:2000],
            at=ctx.clock.now(),
        )


def destinations_for(ctx: AppContext, kind: ReportKind, report: DraftReport | None = None) -> dict[str, list[str]]:
    """Artefact kind -> destination names, from ``delivery_routing`` and each destination's ``artefacts``.

    With ``report``: a destination with ``send_preliminary: false`` gets no unsigned draft, and a
    webhook only versions at or above its ``min_priority``.
    """
    pairs: list[tuple[str, str]] = []
    for rule in ctx.settings.delivery_routing:
        if rule.kind is not None and rule.kind != kind.value:
            continue
        pairs += [(artefact, dest) for artefact in rule.artefacts for dest in rule.destinations]
    for name, dest in ctx.settings.destinations.items():
        pairs += [(artefact, name) for artefact in dest.artefacts]
    routes: dict[str, list[str]] = {}
    for artefact, name in pairs:
        dest = ctx.settings.destinations[name]
        if report is not None:
            if report.status is ReportStatus.PRELIMINARY and not dest.send_preliminary:
                continue
            if dest.type == "webhook" and report.priority.level > PriorityLevel[dest.min_priority.upper()]:
                continue
        if name not in routes.setdefault(artefact, []):
            routes[artefact].append(name)
    return routes
