"""Service mode: claim jobs of stable studies from the database, run the pipeline, deliver the outbox.

A claimed job is leased: a heartbeat thread refreshes its claim while the pipeline runs, and
every worker gives back jobs whose claim is older than ``service.job_lease_s`` (their worker
died) before claiming.  A worker whose job was given away meanwhile cannot complete it: the
completion is checked against its worker id in the transaction that stores the report
version, so the version is not stored twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydicom.uid import DigitalXRayImageStorageForPresentation
from sqlalchemy.orm import Session

from app.context import AppContext
from app.models_stage import batch_size, batched_models
from app.pipeline import StudyOutcome, process_study
from core.codes import LOINC
from core.errors import MmdxError, StoreError
from core.identifiers import derive_uid
from core.records import DraftReport, Instance, ReportKind, ReportSection, Series, Study
from core.version import SOFTWARE_NAME, SOFTWARE_VERSION
from ingest.stability import dispatch_stable
from pacs_bridge.loop import OutboxLoop
from reports.context import ReportContext
from reports.outputs import build_outputs
from store import jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkResult:
    job_id: int
    outcome: StudyOutcome | None
    error: str | None = None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class _Heartbeat:
    """Refreshes a running job's claim every third of the lease until the block ends."""

    def __init__(self, ctx: AppContext, job_id: int, me: str) -> None:
        self.ctx, self.job_id, self.me = ctx, job_id, me
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        every = self.ctx.settings.service.job_lease_s / 3
        while not self._stop.wait(every):
            try:
                with self.ctx.db.session() as session:
                    jobs.heartbeat(session, self.job_id, self.ctx.clock.now(), worker_id=self.me)
            except StoreError as exc:  # the job went to another worker: nothing left to keep alive
                log.warning("job %s: heartbeat stopped: %s", self.job_id, exc)
                return
            except Exception:
                log.exception("job %s: heartbeat failed; retrying", self.job_id)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def requeue_stale(ctx: AppContext) -> int:
    """Give back the jobs of workers that stopped heartbeating (claim older than ``service.job_lease_s``)."""
    older_than = ctx.clock.now() - timedelta(seconds=ctx.settings.service.job_lease_s)
    with ctx.db.session() as session:
        n = jobs.requeue_stale(session, older_than)
    if n:
        log.warning("requeued %d job(s) of workers that stopped responding", n)
    return n


def _claim(ctx: AppContext, me: str, size: int) -> list[jobs.ClaimedJob]:
    """Requeue stale jobs, dispatch studies that became stable, and claim up to ``size`` jobs."""
    requeue_stale(ctx)
    now = ctx.clock.now()
    with ctx.db.session() as session:
        dispatch_stable(session, now, ctx.settings.scp.stable_age_s)
    claimed: list[jobs.ClaimedJob] = []
    while len(claimed) < size:
        with ctx.db.session() as session:
            job = jobs.claim_next(session, me, now)
        if job is None:
            break
        claimed.append(job)
    return claimed


def run_one(ctx: AppContext, *, out_dir: Path | None = None, me: str | None = None) -> WorkResult | None:
    """Requeue stale jobs, dispatch studies that became stable, claim one job and run it.

    None when nothing is pending.
    """
    me = me or worker_id()
    claimed = _claim(ctx, me, 1)
    return _run_claimed(ctx, claimed[0], out_dir, me) if claimed else None


def run_batch(
    ctx: AppContext, *, out_dir: Path | None = None, me: str | None = None, size: int | None = None
) -> list[WorkResult]:
    """Claim up to ``size`` jobs (default: the largest ``max_batch`` of a configured model) and run them.

    Their image models run together (each model sees up to its ``max_batch``
    studies at once); each job still completes or fails on its own.
    """
    me = me or worker_id()
    claimed = _claim(ctx, me, size or batch_size(ctx))
    if not claimed:
        return []
    with ExitStack() as stack:
        for job in claimed:  # every claimed job stays leased while the batch runs
            stack.enter_context(_Heartbeat(ctx, job.id, me))
        with batched_models(ctx, [job.study_uid for job in claimed]):
            return [_run_claimed(ctx, job, out_dir, me) for job in claimed]


def _run_claimed(ctx: AppContext, job: jobs.ClaimedJob, out_dir: Path | None, me: str) -> WorkResult:
    def finish(session: Session, outcome: StudyOutcome) -> None:
        failed_steps = "; ".join(outcome.model_failures) or None
        jobs.complete(session, job.id, ctx.clock.now(), failed_steps=failed_steps, worker_id=me)

    try:
        with _Heartbeat(ctx, job.id, me):
            outcome = process_study(ctx, job.study_uid, out_dir, finish=finish)
    except StoreError as exc:
        # most often: the lease ran out and the job is another worker's now; its result stands
        log.warning("job %s for study %s not completed: %s", job.id, job.study_uid, exc)
        return WorkResult(job.id, None, str(exc))
    except MmdxError as exc:
        # a bad study fails its job with a PHI-free reason; the worker keeps going
        log.warning("job %s for study %s failed: %s", job.id, job.study_uid, exc)
        with ctx.db.session() as session:
            jobs.fail(session, job.id, str(exc), ctx.clock.now(), retry=False)
        return WorkResult(job.id, None, str(exc))
    except Exception as exc:
        log.exception("job %s for study %s crashed", job.id, job.study_uid)
        with ctx.db.session() as session:
            jobs.fail(session, job.id, f"{type(exc).__name__}: {exc}", ctx.clock.now(), retry=True)
        return WorkResult(job.id, None, f"{type(exc).__name__}: {exc}")
    log.info("job %s for study %s done: report version %s", job.id, job.study_uid, outcome.report_version)
    return WorkResult(job.id, outcome, "; ".join(outcome.model_failures) or None)


def warm_up(ctx: AppContext) -> None:
    """Pay a worker's one-time costs at start, not in its first study's latency.

    Loads every configured in-process model (a failed load is logged; the studies routed to it
    fail on their own with the reason) and builds the outputs of a synthetic study once, in
    memory: the DICOM standard tables highdicom reads on first use, the PDF fonts, the FHIR model
    validators (about a second of CPU that the first study would otherwise pay).
    """
    t0 = time.perf_counter()
    for name in ctx.registry.names():
        backend = ctx.registry.backend(name) if ctx.registry.describe(name).available else None
        load = getattr(backend, "load", None)
        if callable(load):
            try:
                load()
            except Exception as exc:  # the model's own studies report it; the worker keeps going
                log.warning("warm-up: model %r did not load: %s", name, exc)
    try:
        build_outputs(*_synthetic_report(ctx))
    except Exception as exc:  # a warm-up never stops the worker: the first study pays the cost instead
        log.warning("warm-up: outputs of a synthetic study not built: %s: %s", type(exc).__name__, exc)
    log.info("warm-up done in %.1f s", time.perf_counter() - t0)


def _synthetic_report(ctx: AppContext) -> tuple[DraftReport, Study, ReportContext]:
    uid = derive_uid(ctx.settings.uid_root, "warm-up", "study")
    series_uid = derive_uid(ctx.settings.uid_root, "warm-up", "series")
    inst = Instance(
        sop_instance_uid=derive_uid(ctx.settings.uid_root, "warm-up", "instance"),
        sop_class_uid=DigitalXRayImageStorageForPresentation,
        series_instance_uid=series_uid,
        study_instance_uid=uid,
        path=Path("warm-up.dcm"),
        content_digest="xxh3-128:" + "0" * 32,
    )
    study = Study(uid, series=(Series(series_uid, uid, "DX", instances=(inst,)),))
    report = DraftReport(
        uid, ReportKind.IMAGING, ctx.clock.now(), sections=(ReportSection(LOINC.FINDINGS, "Warm-up."),)
    )
    rctx = ReportContext.from_site(
        ctx.settings.site,
        uid_root=ctx.settings.uid_root,
        software_name=SOFTWARE_NAME,
        software_version=SOFTWARE_VERSION,
        clock=ctx.clock,
    )
    return report, study, rctx


def run_forever(
    ctx: AppContext, *, stop: threading.Event, out_dir: Path | None = None, once: bool = False, send: bool = True
) -> int:
    """Work until ``stop`` is set (or, with ``once``, until no job is pending and the outbox is idle).

    With ``send`` (and destinations configured) each round also makes one outbox pass, so
    results leave as soon as they are stored.  Returns jobs handled.
    """
    handled = 0
    warm_up(ctx)
    poll = timedelta(seconds=ctx.settings.service.worker_poll_s).total_seconds()
    sender = OutboxLoop(ctx.db, ctx.settings, ctx.clock) if send and ctx.settings.destinations else None
    try:
        while not stop.is_set():
            results = run_batch(ctx, out_dir=out_dir)
            sent_idle = True
            if sender is not None:
                try:
                    passed = sender.run_once()
                    sent_idle = passed.idle
                    if not sent_idle:
                        log.info("outbox: %s", passed.line())
                except Exception:
                    log.exception("outbox pass failed")
            if not results:
                if once and sent_idle:
                    break
                if sent_idle:
                    stop.wait(poll)
                continue
            handled += len(results)
    finally:
        if sender is not None:
            sender.close()
    return handled
