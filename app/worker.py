"""Service mode: claim jobs of stable studies from the database and run the pipeline."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from app.context import AppContext
from app.pipeline import StudyOutcome, process_study
from core.errors import MmdxError
from ingest.stability import dispatch_stable
from store import jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkResult:
    job_id: int
    outcome: StudyOutcome | None
    error: str | None = None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_one(ctx: AppContext, *, out_dir: Path | None = None, me: str | None = None) -> WorkResult | None:
    """Dispatch studies that became stable, claim one job and run it; None when nothing is pending."""
    now = ctx.clock.now()
    with ctx.db.session() as session:
        dispatch_stable(session, now, ctx.settings.scp.stable_age_s)
    with ctx.db.session() as session:
        job = jobs.claim_next(session, me or worker_id(), now)
    if job is None:
        return None
    try:
        outcome = process_study(ctx, job.study_uid, out_dir)
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
    with ctx.db.session() as session:
        jobs.complete(session, job.id, ctx.clock.now())
    return WorkResult(job.id, outcome)


def run_forever(ctx: AppContext, *, stop: threading.Event, out_dir: Path | None = None, once: bool = False) -> int:
    """Work until ``stop`` is set (or, with ``once``, until no job is pending). Returns jobs handled."""
    handled = 0
    poll = timedelta(seconds=ctx.settings.service.worker_poll_s).total_seconds()
    while not stop.is_set():
        result = run_one(ctx, out_dir=out_dir)
        if result is None:
            if once:
                break
            stop.wait(poll)
            continue
        handled += 1
    return handled
