"""A batch run from start (or resume) to its outputs.

plan the items (new run) or read them back (``--resume``) -> run the pending
ones on the engine, storing each outcome as it arrives -> export the cohort
table, NDJSON and summary from the stored items. The run's id is written to
``OUT/run.json`` so that ``--resume`` finds it; everything else about the
run lives in the database.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from app.batch import cohort, sources
from app.batch.engines import run_local, run_ray
from app.batch.progress import QuietReporter, Reporter
from app.batch.summary import build_summary, write_ndjson, write_summary
from app.batch.work import Outcome, Task, WorkConfig
from app.context import AppContext
from core.config import Settings
from core.errors import ConfigError
from store import runs
from store.schema import BatchItemState

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
#: What ``--analyses`` may name: the ECG analysis (rules + ECG models), the image models, the report labeler.
ANALYSES = ("ecg", "images", "labeler")


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """What the user asked for (stored with the run; ``--resume`` reuses it)."""

    source: str
    out: Path
    workers: int = 1
    engine: str = "local"
    address: str | None = None
    limit: int | None = None
    reports: bool = False
    deid: bool = False
    fhir: bool = True
    date_from: str | None = None  #: source ``pacs``: earliest study date (YYYY-MM-DD)
    date_to: str | None = None  #: source ``pacs``: latest study date
    modality: str | None = None  #: source ``pacs``: modality in study
    via: str = "auto"  #: source ``pacs``: dicomweb (QIDO-RS + WADO-RS), dimse (C-FIND + C-MOVE), cget, auto
    analyses: tuple[str, ...] = ANALYSES  #: which analyses run (``--analyses``)
    models: tuple[str, ...] | None = None  #: which configured models may run (``--model``); None: all

    def pacs_query(self) -> sources.PacsQuery:
        def day(value: str | None, option: str) -> date | None:
            if value is None:
                return None
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"{option}: expected YYYY-MM-DD, got {value!r}") from None

        return sources.PacsQuery(day(self.date_from, "--from"), day(self.date_to, "--to"), self.modality)

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"--engine: expected local or ray, got {self.engine!r}")
        if self.workers < 1:
            raise ConfigError(f"--workers: expected at least 1, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit: expected at least 1, got {self.limit}")
        unknown = [a for a in self.analyses if a not in ANALYSES]
        if unknown or not self.analyses:
            raise ConfigError(
                f"--analyses {', '.join(unknown) or '(empty)'}: not an analysis; expected a comma-separated "
                f"choice of {', '.join(ANALYSES)}"
            )
        if self.models is not None and not self.models:
            raise ConfigError("--model: expected at least one model name")

    def stored(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d.pop("workers")  # how a run is executed may change on resume; what it computes may not
        d.pop("engine")
        d.pop("address")
        return d


@dataclass(frozen=True, slots=True)
class BatchResult:
    run_id: str
    planned: dict[str, int]
    counts: dict[str, int]
    outputs: tuple[Path, ...] = ()
    dry_run: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


def plan(ctx: AppContext, options: BatchOptions, *, dry_run: bool = False) -> sources.Plan:
    """The items of the source; ``dry_run`` counts without indexing or pulling anything."""
    kind = sources.source_kind(options.source)
    path = Path(options.source)
    if kind == "pacs":
        return sources.plan_pacs(ctx, options.pacs_query(), limit=options.limit, pull=not dry_run, via=options.via)
    if kind == "folder":
        return sources.plan_folder(None if dry_run else ctx, path, limit=options.limit)
    if kind == "reports":
        return sources.plan_reports(path, limit=options.limit)
    return sources.plan_manifest(None if dry_run else ctx, path, limit=options.limit)


def _read_run_file(out: Path) -> str | None:
    f = out / RUN_FILE
    if not f.exists():
        return None
    try:
        return str(json.loads(f.read_text(encoding="utf-8"))["run_id"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{f}: not a run file of mmdx batch (expected JSON with run_id)") from None


def _write_run_file(out: Path, run_id: str, source: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RUN_FILE + ".tmp")
    del source  # the source lives in the database: a de-identified output folder must not name it
    tmp.write_text(json.dumps({"run_id": run_id}) + "\n", encoding="utf-8")
    os.replace(tmp, out / RUN_FILE)


def absolute_settings(settings: Settings) -> Settings:
    """The settings with the SQLite file and storage folders as absolute paths.

    Ray workers run in another working directory (on another node, on shared
    storage); a relative ``var/mmdx.db`` there would be a second, empty database.
    """
    url = make_url(settings.database.url)
    database = settings.database
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        if not path.is_absolute():
            database = database.model_copy(update={"url": str(url.set(database=str(path.resolve())))})
    storage = settings.storage.model_copy(
        update={k: Path(getattr(settings.storage, k)).resolve() for k in ("store_dir", "out_dir", "quarantine_dir")}
    )
    return settings.model_copy(update={"database": database, "storage": storage})


def configured_models(settings: Settings) -> list[str]:
    """Every model a run may name: the registry's backends and the models ``model_routing`` routes to."""
    from models.registry import Registry

    names = set(Registry.from_settings(settings).names())
    names.update(m for rule in settings.model_routing for m in rule.models)
    return sorted(names)


def check_models(settings: Settings, models: tuple[str, ...] | None) -> None:
    """Refuse ``--model`` names that are not configured, listing the ones that are."""
    if models is None:
        return
    known = configured_models(settings)
    unknown = sorted(set(models) - set(known))
    if unknown:
        listed = ", ".join(known) if known else "none (models.backends / models.registry and model_routing are empty)"
        raise ConfigError(f"--model {', '.join(unknown)}: not a configured model; configured: {listed}")


def with_models(settings: Settings, models: tuple[str, ...] | None) -> Settings:
    """The settings with ``model_routing`` cut to ``models`` (a rule left with none is dropped)."""
    if models is None:
        return settings
    chosen = set(models)
    rules = []
    for rule in settings.model_routing:
        kept = [m for m in rule.models if m in chosen]
        if kept:
            rules.append(rule.model_copy(update={"models": kept}))
    return settings.model_copy(update={"model_routing": rules})


def _project_key(ctx: AppContext) -> str:
    key = ctx.settings.deid.salt
    if not key:
        raise ConfigError(
            "--deid needs a project key for stable pseudonyms and date shifts: set deid.salt "
            "(environment MMDX_DEID__SALT)"
        )
    return key


def run_batch(
    ctx: AppContext,
    options: BatchOptions,
    *,
    resume: bool = False,
    dry_run: bool = False,
    reporter: Reporter | None = None,
) -> BatchResult:
    """Plan (or resume) a run, process its pending items and write its outputs."""
    reporter = reporter or QuietReporter()
    out = options.out
    existing = _read_run_file(out)
    check_models(ctx.settings, options.models)
    if dry_run:
        planned = plan(ctx, options, dry_run=True).counts()
        done = 0
        if existing is not None:
            with ctx.db.session(readonly=True) as session:
                c = runs.counts(session, existing)
            done = c[BatchItemState.DONE] + c[BatchItemState.FAILED]
        return BatchResult(existing or "", planned, {"already_finished": done}, dry_run=True)

    now = ctx.clock.now()
    if resume:
        if existing is None:
            raise ConfigError(f"--resume: {out}/{RUN_FILE} does not exist (no run was started with --out {out})")
        with ctx.db.session(readonly=True) as session:
            info = runs.get_run(session, existing)
        if info is None:
            raise ConfigError(f"--resume: run {existing} named by {out}/{RUN_FILE} is not in this database")
        run_id = existing
        stored = info.options
        options = BatchOptions(
            source=stored["source"], out=out, workers=options.workers, engine=options.engine,
            address=options.address, limit=stored.get("limit"), reports=stored.get("reports", False),
            deid=stored.get("deid", False), fhir=stored.get("fhir", True), date_from=stored.get("date_from"),
            date_to=stored.get("date_to"), modality=stored.get("modality"),
            via=stored.get("via", "auto"), analyses=tuple(stored.get("analyses") or ANALYSES),
            models=None if stored.get("models") is None else tuple(stored["models"]),
        )  # fmt: skip
        planned_counts: dict[str, int] = {}
    else:
        if existing is not None:
            raise ConfigError(
                f"{out} already holds batch run {existing}: add --resume to finish it, or choose another --out"
            )
        if options.deid:
            _project_key(ctx)  # refused before anything is indexed
        the_plan = plan(ctx, options)
        planned_counts = the_plan.counts()
        run_id = str(uuid.uuid4())
        with ctx.db.session() as session:
            runs.create_run(session, run_id, options.source, str(out), options.stored(), now)
            runs.add_items(session, run_id, the_plan.items, now)
        _write_run_file(out, run_id, options.source)

    config = WorkConfig(
        run_id=run_id,
        settings=with_models(absolute_settings(ctx.settings), options.models),
        analyses=frozenset(options.analyses),
        reports_dir=(out / "studies").resolve() if options.reports else None,
        scratch_dir=Path(ctx.settings.storage.out_dir).resolve() / "batch" / run_id,
        deid_key=_project_key(ctx) if options.deid else None,
        cwd=os.getcwd(),
    )
    start = time.perf_counter()
    with ctx.db.session(readonly=True) as session:
        c = runs.counts(session, run_id)
        pending = list(runs.items(session, run_id, BatchItemState.PENDING))
    total = sum(c.values())
    reporter.start(total, c[BatchItemState.DONE], c[BatchItemState.FAILED])

    def store_outcome(o: Outcome) -> None:
        with ctx.db.session() as session:
            runs.finish_item(
                session, o.item_id, row=o.row if o.error is None else None, fhir=o.fhir, error=o.error,
                seconds=o.seconds, now=ctx.clock.now(),
            )  # fmt: skip
        reporter.advance(o.error is None, o.pid)

    tasks: Iterator[Task] = (Task(i.id, i.seq, i.kind, i.source_path, i.study_instance_uid, i.meta) for i in pending)
    try:
        if pending:
            in_flight = ctx.settings.batch.in_flight_per_worker
            if options.engine == "ray":
                address = options.address or ctx.settings.batch.ray_address
                gpus = ctx.settings.batch.ray_gpus_per_worker
                given = run_ray(
                    tasks, config, options.workers, store_outcome, address, in_flight=in_flight, gpus_per_worker=gpus
                )
                log.info("ray: %d worker actor(s), GPUs given: %s", len(given), given)
            else:
                run_local(tasks, config, options.workers, store_outcome, in_flight=in_flight)
    finally:
        reporter.stop()
        shutil.rmtree(config.scratch_dir, ignore_errors=True)
    elapsed = time.perf_counter() - start
    return export(ctx, run_id, options, elapsed_s=elapsed, planned=planned_counts)


def export(
    ctx: AppContext, run_id: str, options: BatchOptions, *, elapsed_s: float, planned: dict[str, int]
) -> BatchResult:
    """Write the cohort table, NDJSON and summary of the run from its stored items."""
    out = options.out
    with ctx.db.session(readonly=True) as session:
        items = list(runs.items(session, run_id))
    rows = []
    for item in items:
        if item.state is BatchItemState.DONE and item.row is not None:
            rows.append(item.row)
        else:
            row = cohort.empty_row(item.seq, item.kind, item.source_path)
            cohort.fill_manifest(row, item.meta)
            row["study_instance_uid"] = item.study_instance_uid
            row["status"] = item.state.value
            row["errors"] = item.error or ""
            if options.deid:
                from app.batch.pseudonyms import deidentify_row

                row = deidentify_row(row, ctx.settings.deid.salt or "")
            rows.append(row)
    table = cohort.cohort_table(rows)
    outputs: list[Path] = list(cohort.write_cohort(table, out))
    ndjson = write_ndjson(items, out) if options.fhir else {}
    if ndjson:
        outputs.extend(sorted((out / "fhir").glob("*.ndjson")))
    failed_items = items
    if options.deid:
        from app.batch.pseudonyms import deidentify_items

        failed_items = deidentify_items(items, ctx.settings.deid.salt or "")
    summary = build_summary(
        run_id, "(de-identified run)" if options.deid else options.source, options.stored(), failed_items,
        elapsed_s=elapsed_s, ndjson=ndjson, outputs=[str(p.relative_to(out)) for p in outputs],
    )  # fmt: skip
    if options.deid:
        summary["options"].pop("source", None)
        summary["options"].pop("out", None)
    outputs.extend(write_summary(summary, out))
    with ctx.db.session() as session:
        still = runs.counts(session, run_id)[BatchItemState.PENDING]
        runs.set_run_state(session, run_id, "finished" if still == 0 else "running", ctx.clock.now())
    return BatchResult(run_id, planned, summary["counts"], tuple(outputs), summary=summary)
