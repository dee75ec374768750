"""The job queue: one analysis per (study, content version), claimed atomically.

A job goes ``pending -> running -> done | failed``.  Claiming is a
conditional ``UPDATE ... WHERE id = :id AND state = 'pending'`` whose row
count says whether this worker won: correct on SQLite (where the session
already holds the write lock) and on PostgreSQL (where the candidate is
picked with ``FOR UPDATE SKIP LOCKED`` so that workers do not queue up
behind one row).  Two workers therefore never run the same job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import StoreError
from store._checks import aware
from store.index import studies_quiet_since
from store.schema import JobRow, JobState, StudyRow

__all__ = [
    "ClaimedJob",
    "JobInfo",
    "JobState",
    "claim_next",
    "complete",
    "counts_by_state",
    "enqueue",
    "enqueue_stable",
    "fail",
    "get_job",
    "heartbeat",
    "list_jobs",
    "requeue_stale",
]

#: How many candidates a worker tries before concluding that others took them all.
_CLAIM_TRIES = 8


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker now owns; ``attempts`` counts this run too."""

    id: int
    study_uid: str
    content_version: str
    attempts: int


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job's full state, for status pages and the CLI."""

    id: int
    study_uid: str
    content_version: str
    state: JobState
    attempts: int
    worker_id: str | None
    created_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


def _info(row: JobRow) -> JobInfo:
    return JobInfo(
        id=row.id,
        study_uid=row.study_instance_uid,
        content_version=row.content_version,
        state=row.state,
        attempts=row.attempts,
        worker_id=row.worker_id,
        created_at=row.created_at,
        claimed_at=row.claimed_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
    )


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _enqueue_row(session: Session, study_uid: str, content_version: str, now: datetime) -> JobRow | None:
    aware("enqueue now", now)
    if not content_version:
        raise StoreError(f"job for study {study_uid}: expected a content version, got an empty one")
    found = session.scalars(
        select(JobRow.id).where(JobRow.study_instance_uid == study_uid, JobRow.content_version == content_version)
    ).first()
    if found is not None:
        return None
    row = JobRow(
        study_instance_uid=study_uid,
        content_version=content_version,
        state=JobState.PENDING,
        attempts=0,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


def enqueue(session: Session, study_uid: str, content_version: str, now: datetime) -> int | None:
    """Queue an analysis of this content of the study; None when this content already has a job.

    Exactly once per content: the UNIQUE(study, content version) constraint
    decides, so two dispatchers racing on the same study enqueue one job.
    """
    row = _enqueue_row(session, study_uid, content_version, now)
    return None if row is None else row.id


def enqueue_stable(session: Session, cutoff: datetime, now: datetime) -> list[JobInfo]:
    """Enqueue every study quiet since ``cutoff`` whose current content has no job; returns the new jobs.

    The dispatcher's whole step, with ``cutoff = now - scp.stable_age_s``.
    """
    created: list[JobInfo] = []
    for uid in studies_quiet_since(session, cutoff):
        version = session.scalars(select(StudyRow.content_version).where(StudyRow.study_instance_uid == uid)).one()
        row = _enqueue_row(session, uid, version, now)
        if row is not None:
            created.append(_info(row))
    return created


def claim_next(session: Session, worker_id: str, now: datetime) -> ClaimedJob | None:
    """Take the oldest pending job for ``worker_id``; None when there is none.

    The caller's session must be committed promptly (the ``db.session()``
    block ends) so that other workers see the claim.
    """
    aware("claim_next now", now)
    if not worker_id:
        raise StoreError("claim_next: expected a non-empty worker_id")
    for _ in range(_CLAIM_TRIES):
        candidate = session.scalars(
            select(JobRow.id)
            .where(JobRow.state == JobState.PENDING)
            .order_by(JobRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if candidate is None:
            return None
        result = session.execute(
            update(JobRow)
            .where(JobRow.id == candidate, JobRow.state == JobState.PENDING)
            .values(
                state=JobState.RUNNING,
                worker_id=worker_id,
                claimed_at=now,
                started_at=now,
                finished_at=None,
                attempts=JobRow.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) == 1:
            row = session.get(JobRow, candidate, populate_existing=True)
            assert row is not None
            return ClaimedJob(row.id, row.study_instance_uid, row.content_version, row.attempts)
    return None


def _running(session: Session, job_id: int, action: str, worker_id: str | None = None) -> JobRow:
    row = session.get(JobRow, job_id, populate_existing=True, with_for_update=True)
    if row is None:
        raise StoreError(f"job {job_id} does not exist")
    if row.state is not JobState.RUNNING:
        raise StoreError(f"cannot {action} job {job_id}: expected state running, it is {row.state.value}")
    if worker_id is not None and row.worker_id != worker_id:
        # the lease ran out and another worker took the job: this worker's result must not count
        raise StoreError(f"cannot {action} job {job_id}: it is now held by worker {row.worker_id}, not {worker_id}")
    return row


def complete(
    session: Session, job_id: int, now: datetime, *, failed_steps: str | None = None, worker_id: str | None = None
) -> None:
    """Mark a running job done (its report version is stored in the same unit of work).

    ``failed_steps`` (PHI-free) names steps that failed although a report was
    stored, e.g. ``model 'X' failed: reason`` (the study got its fallback draft).

    With ``worker_id``, refuses (StoreError) when the job is no longer this
    worker's, which rolls back the report version stored in the same unit.
    """
    aware("complete now", now)
    row = _running(session, job_id, "complete", worker_id)
    row.state = JobState.DONE
    row.finished_at = now
    row.error = failed_steps or None
    session.flush()


def fail(session: Session, job_id: int, reason: str, now: datetime, *, retry: bool, max_attempts: int = 3) -> JobState:
    """Record a failure of a running job; returns the job's new state.

    With ``retry=True`` the job goes back to pending while it has been tried
    fewer than ``max_attempts`` times; otherwise (or with ``retry=False``,
    for input that can never succeed) it ends failed with ``reason``, which
    must be PHI-free.
    """
    aware("fail now", now)
    if max_attempts < 1:
        raise StoreError(f"fail: expected max_attempts >= 1, got {max_attempts}")
    row = _running(session, job_id, "fail")
    row.error = reason
    row.finished_at = now
    if retry and row.attempts < max_attempts:
        row.state = JobState.PENDING
        row.worker_id = None
    else:
        row.state = JobState.FAILED
    session.flush()
    return row.state


def heartbeat(session: Session, job_id: int, now: datetime, *, worker_id: str | None = None) -> None:
    """Refresh a running job's ``claimed_at`` so that :func:`requeue_stale` leaves a long run alone."""
    _running(session, job_id, "heartbeat", worker_id).claimed_at = now
    session.flush()


def requeue_stale(session: Session, older_than: datetime, *, max_attempts: int = 3) -> int:
    """Give back jobs of crashed workers (running, claimed at or before ``older_than``); returns how many.

    A job that has used up ``max_attempts`` ends failed instead of looping
    through crashing workers forever.
    """
    aware("requeue_stale older_than", older_than)
    rows = session.scalars(
        select(JobRow).where(JobRow.state == JobState.RUNNING, JobRow.claimed_at <= older_than).with_for_update()
    ).all()
    for row in rows:
        reason = f"worker {row.worker_id} stopped responding (claimed {row.claimed_at})"
        row.error = reason
        if row.attempts < max_attempts:
            row.state = JobState.PENDING
            row.worker_id = None
        else:
            row.state = JobState.FAILED
    session.flush()
    return len(rows)


def get_job(session: Session, job_id: int) -> JobInfo | None:
    """One job's state (None when it does not exist)."""
    row = session.get(JobRow, job_id, populate_existing=True)
    return None if row is None else _info(row)


def list_jobs(
    session: Session, *, state: JobState | None = None, study_uid: str | None = None, limit: int | None = None
) -> list[JobInfo]:
    """Jobs, newest first, optionally of one state and/or one study."""
    stmt = select(JobRow).order_by(JobRow.id.desc())
    if state is not None:
        stmt = stmt.where(JobRow.state == state)
    if study_uid is not None:
        stmt = stmt.where(JobRow.study_instance_uid == study_uid)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_info(r) for r in session.scalars(stmt)]


def counts_by_state(session: Session) -> dict[JobState, int]:
    """How many jobs are in each state (every state present, zero when none)."""
    counts = dict.fromkeys(JobState, 0)
    for state, n in session.execute(select(JobRow.state, func.count(JobRow.id)).group_by(JobRow.state)):
        counts[state] = int(n)
    return counts
