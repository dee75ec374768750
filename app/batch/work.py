"""One item of a batch, in a worker process (local pool or Ray): study, research image or report text.

A study goes through :func:`app.pipeline.process_study`, the one pipeline;
the worker turns its outcome into the cohort row. The worker keeps its
:class:`AppContext` (database, model registry) between items, so backends load
once per process.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.batch import cohort
from app.batch.images import image_model_input, manifest_view
from app.context import AppContext
from app.pipeline import process_study
from app.plan import Action
from core.config import Settings
from core.errors import MmdxError
from models.labeler import label_report, to_findings
from models.orchestrate import analyse_batch
from models.safety import no_model_notice
from store.db import Database


@dataclass(frozen=True, slots=True)
class WorkConfig:
    """What every worker of a run needs (sent once per process)."""

    run_id: str
    settings: Settings
    reports_dir: Path | None  #: per-study report files go here when asked (``--reports``)
    scratch_dir: Path  #: otherwise here, removed after the row is made
    deid_key: str | None = None  #: set with ``--deid``: the project key of pseudonyms and date shifts
    cwd: str | None = None  #: the driver's working directory (Ray workers resolve relative index paths there)
    analyses: frozenset[str] = frozenset({"ecg", "images", "labeler"})  #: the run's chosen analyses


@dataclass(frozen=True, slots=True)
class Task:
    item_id: int
    seq: int
    kind: str
    source_path: str | None
    study_instance_uid: str | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished item: ``row`` (done) or ``error`` (failed), never both."""

    item_id: int
    row: dict[str, Any] | None
    fhir: str | None
    error: str | None
    seconds: float
    pid: int


_STATE: dict[str, tuple[WorkConfig, AppContext]] = {}
#: The pipeline actions each ``--analyses`` name allows (imaging without a model still gets its exam-only draft).
_ACTIONS = {"ecg": (Action.ECG_ANALYSIS,), "images": (Action.IMAGE_MODELS, Action.EXAM_ONLY)}


def init_worker(config: WorkConfig) -> None:
    """Process-pool initializer: open the database and build the context once."""
    # as the CLI does: highdicom warns on every single-component person name ("Anonymous")
    warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent the intended person name")
    _context(config)


def _context(config: WorkConfig) -> AppContext:
    held = _STATE.get(config.run_id)
    if held is None:
        if config.cwd and os.path.isdir(config.cwd) and os.getcwd() != config.cwd:
            os.chdir(config.cwd)  # shared storage: the same paths on every node
        for _, old in _STATE.values():
            old.db.dispose()
        _STATE.clear()
        ctx = AppContext(settings=config.settings, db=Database.from_settings(config.settings))
        held = (config, ctx)
        _STATE[config.run_id] = held
    return held[1]


def run_task(config: WorkConfig, task: Task) -> Outcome:
    """Process one item; every failure becomes the item's PHI-free reason, never an exception."""
    ctx = _context(config)
    start = time.perf_counter()
    row: dict[str, Any] | None = None
    fhir: str | None = None
    error: str | None = None
    try:
        if task.kind == "study":
            row, fhir = _study(ctx, config, task)
        elif task.kind == "image" and "images" not in config.analyses:
            row = _not_chosen(task, "images")
        elif task.kind == "image":
            row = _image(ctx, task, labeler="labeler" in config.analyses)
        elif task.kind == "report" and "labeler" not in config.analyses:
            row = _not_chosen(task, "labeler")
        elif task.kind == "report":
            row = _report(task)
        else:
            error = f"item kind {task.kind!r} cannot be processed"
    except MmdxError as exc:
        error = str(exc)
    except Exception as exc:  # a bug or a library failure on odd data: the run goes on, the type says what
        error = f"unexpected {type(exc).__name__} while processing"
    if row is not None and config.deid_key is not None:
        from app.batch.pseudonyms import deidentify_row

        row = deidentify_row(row, config.deid_key)
        if fhir is not None:
            from app.batch.pseudonyms import deidentify_fhir

            fhir = deidentify_fhir(fhir, config.deid_key)
    return Outcome(task.item_id, row, fhir, error, round(time.perf_counter() - start, 4), os.getpid())


def _base_row(task: Task) -> dict[str, Any]:
    row = cohort.empty_row(task.seq, task.kind, task.source_path)
    cohort.fill_manifest(row, task.meta)
    row["view"] = manifest_view(task.meta)
    return row


def _not_chosen(task: Task, analysis: str) -> dict[str, Any]:
    row = _base_row(task)
    row["status"] = "not chosen"
    row["errors"] = f"analysis {analysis!r} is not among the run's --analyses"
    return row


def _labels(row: dict[str, Any], text: str) -> None:
    results = label_report(text)
    row["labels"] = json.dumps({k: v.presence.value for k, v in sorted(results.items())}, sort_keys=True)


def _study(ctx: AppContext, config: WorkConfig, task: Task) -> tuple[dict[str, Any], str | None]:
    uid = task.study_instance_uid
    if uid is None:
        raise MmdxError(f"item {task.seq}: no study UID")
    deid_reports = config.reports_dir is not None and config.deid_key is not None
    # de-identified report files are built again from pseudonymised records: the pipeline's go to scratch
    root = (None if deid_reports else config.reports_dir) or (config.scratch_dir / str(os.getpid()))
    # an earlier, interrupted try may have left part of this study's files: they are discarded
    shutil.rmtree(root / uid, ignore_errors=True)
    actions = {a for name, acts in _ACTIONS.items() if name in config.analyses for a in acts}
    outcome = process_study(ctx, uid, root, actions=frozenset(actions))
    row = _base_row(task)
    cohort.fill_study(row, outcome.plan.study)
    fhir = None
    if outcome.report is not None:
        cohort.fill_report(row, outcome.report)
        row["status"] = "done"
        bundle = next((p for p in outcome.artefacts if p.name == "bundle.json"), None)
        if bundle is not None:
            fhir = bundle.read_text(encoding="utf-8")
    else:
        row["status"] = "no report"
    row["errors"] = "; ".join(outcome.problems)
    if (text := task.meta.get("report_text")) and "labeler" in config.analyses:
        _labels(row, str(text))
    if deid_reports and outcome.report is not None and config.reports_dir and config.deid_key:
        from app.batch.deid_reports import write_deid_reports
        from app.batch.pseudonyms import patient_key

        write_deid_reports(
            ctx.settings, ctx.clock, outcome.plan.study, outcome.report, config.reports_dir,
            key=config.deid_key, patient_key=patient_key(row),
        )  # fmt: skip
    if config.reports_dir is None or deid_reports:
        shutil.rmtree(root / uid, ignore_errors=True)
    return row, fhir


def _image(ctx: AppContext, task: Task, *, labeler: bool) -> dict[str, Any]:
    path = Path(str(task.meta.get("path") or task.source_path))
    inp = image_model_input(path, task.meta, ctx.settings.uid_root)
    row = _base_row(task)
    row["study_instance_uid"] = inp.study_instance_uid
    row["modality"] = inp.modality
    row["view"] = inp.images[0].view_position
    row["patient_id"] = task.meta.get("patient") or task.meta.get("patient_id") or task.meta.get("Patient ID")
    row["patient_sex"] = inp.context.patient_sex or "U"
    row["patient_age_years"] = inp.context.patient_age_years
    row["acquisition_date"] = task.meta.get("study_date") or task.meta.get("acquisition_date")
    (result,) = analyse_batch([inp], ctx.registry, ctx.settings.model_routing)
    cohort.fill_findings(row, result.findings)
    cohort.fill_producers(row, result.provenance)
    row["priority"] = result.priority.level.name.lower()
    row["priority_reason"] = result.priority.reason
    problems = [*result.errors, *result.notices]
    if not result.findings and not result.calls:
        problems.append(no_model_notice("imaging", ctx.registry.describe_all()) or "no image model was routed")
    row["errors"] = "; ".join(problems)
    row["status"] = "done"
    if (text := task.meta.get("report_text")) and labeler:
        _labels(row, str(text))
    return row


def _report(task: Task) -> dict[str, Any]:
    text = str(task.meta.get("report_text") or "")
    row = _base_row(task)
    results = label_report(text)
    cohort.fill_findings(row, to_findings(results))
    from models.labeler import LABELER_PRODUCER

    cohort.fill_producers(row, (LABELER_PRODUCER,))
    row["labels"] = json.dumps({k: v.presence.value for k, v in sorted(results.items())}, sort_keys=True)
    row["patient_id"] = task.meta.get("patient") or task.meta.get("patient_id")
    row["status"] = "done"
    return row
