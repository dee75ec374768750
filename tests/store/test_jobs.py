"""The job queue: exactly once per content, atomic claims across processes/threads, retries."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from core.errors import StoreError
from store import jobs
from store.db import Database
from store.jobs import JobState
from tests.store.conftest import T0, sha

N_JOBS = 60
N_WORKERS = 4


def _fill(db: Database, n: int = N_JOBS) -> list[int]:
    ids = []
    with db.session() as s:
        for i in range(n):
            job_id = jobs.enqueue(s, f"1.2.840.{i}", sha(str(i)), T0)
            assert job_id is not None
            ids.append(job_id)
    return ids


def _drain(db: Database, worker_id: str, start_at: float) -> list[int]:
    """Claim and complete jobs until none is left; returns the ids this worker ran."""
    while time.time() < start_at:
        time.sleep(0.001)
    got: list[int] = []
    while True:
        with db.session() as s:
            job = jobs.claim_next(s, worker_id, T0)
        if job is None:
            return got
        got.append(job.id)
        time.sleep(0.005)  # the "work", outside any session: lets other workers in
        with db.session() as s:
            jobs.complete(s, job.id, T0 + timedelta(seconds=1))


def _drain_in_process(url: str, worker_id: str, start_at: float) -> list[int]:
    db = Database(url)
    try:
        return _drain(db, worker_id, start_at)
    finally:
        db.dispose()


def _assert_each_job_ran_once(db: Database, ids: list[int], runs: list[list[int]]) -> None:
    claimed = [j for run in runs for j in run]
    dupes = [j for j, n in Counter(claimed).items() if n > 1]
    assert dupes == [], f"jobs claimed twice: {dupes}"
    assert sorted(claimed) == sorted(ids)
    assert sum(1 for run in runs if run) >= 2, "the test needs at least two workers to have competed"
    with db.session() as s:
        infos = jobs.list_jobs(s)
    assert {i.state for i in infos} == {JobState.DONE}
    assert {i.attempts for i in infos} == {1}
    owner = {j: f"w{k}" for k, run in enumerate(runs) for j in run}
    assert all(i.worker_id == owner[i.id] for i in infos)


def test_enqueue_exactly_once_per_content_version(db):
    with db.session() as s:
        first = jobs.enqueue(s, "1.2.3", sha("v1"), T0)
        assert first is not None
        assert jobs.enqueue(s, "1.2.3", sha("v1"), T0) is None
        second = jobs.enqueue(s, "1.2.3", sha("v2"), T0)  # new content, new job
        assert second is not None and second != first
    with db.session() as s:
        assert jobs.enqueue(s, "1.2.3", sha("v1"), T0 + timedelta(hours=1)) is None
        assert len(jobs.list_jobs(s, study_uid="1.2.3")) == 2


def test_concurrent_enqueue_of_same_content_makes_one_job(db):
    barrier = threading.Barrier(4)

    def go(_: int) -> int | None:
        barrier.wait()
        with db.session() as s:
            return jobs.enqueue(s, "1.2.4", sha("same"), T0)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(go, range(4)))
    assert sum(r is not None for r in results) == 1


def test_claim_order_and_lifecycle(db):
    ids = _fill(db, 3)
    with db.session() as s:
        job = jobs.claim_next(s, "w1", T0)
    assert job is not None and job.id == ids[0] and job.attempts == 1
    assert job.study_uid == "1.2.840.0" and job.content_version == sha("0")
    with db.session() as s:
        info = jobs.get_job(s, job.id)
        assert info is not None and info.state is JobState.RUNNING and info.worker_id == "w1"
        assert info.claimed_at == T0 and info.started_at == T0
        jobs.complete(s, job.id, T0 + timedelta(seconds=5))
    with db.session() as s:
        info = jobs.get_job(s, job.id)
        assert info is not None and info.state is JobState.DONE and info.finished_at == T0 + timedelta(seconds=5)
        with pytest.raises(StoreError, match=f"cannot complete job {job.id}: expected state running, it is done"):
            jobs.complete(s, job.id, T0)
        counts = jobs.counts_by_state(s)
    assert counts == {JobState.PENDING: 2, JobState.RUNNING: 0, JobState.DONE: 1, JobState.FAILED: 0}


def test_fail_retry_until_max_attempts(db):
    (job_id,) = _fill(db, 1)
    states = []
    for attempt in range(1, 4):
        with db.session() as s:
            job = jobs.claim_next(s, "w1", T0)
            assert job is not None and job.id == job_id and job.attempts == attempt
            states.append(jobs.fail(s, job_id, f"model timed out ({attempt})", T0, retry=True, max_attempts=3))
    assert states == [JobState.PENDING, JobState.PENDING, JobState.FAILED]
    with db.session() as s:
        assert jobs.claim_next(s, "w1", T0) is None
        info = jobs.get_job(s, job_id)
    assert info is not None and info.attempts == 3 and info.error == "model timed out (3)"


def test_fail_without_retry_is_final(db):
    (job_id,) = _fill(db, 1)
    with db.session() as s:
        assert jobs.claim_next(s, "w1", T0) is not None
        assert jobs.fail(s, job_id, "not an image study", T0, retry=False) is JobState.FAILED
    with db.session() as s:
        assert jobs.claim_next(s, "w2", T0) is None


def test_requeue_stale_gives_back_crashed_workers_jobs(db):
    a, b = _fill(db, 2)
    with db.session() as s:
        assert jobs.claim_next(s, "dead-worker", T0) is not None
        assert jobs.claim_next(s, "live-worker", T0) is not None
        jobs.heartbeat(s, b, T0 + timedelta(minutes=9))
    with db.session() as s:
        assert jobs.requeue_stale(s, T0 + timedelta(minutes=5)) == 1
    with db.session() as s:
        info_a, info_b = jobs.get_job(s, a), jobs.get_job(s, b)
        assert info_a is not None and info_a.state is JobState.PENDING and "dead-worker" in (info_a.error or "")
        assert info_b is not None and info_b.state is JobState.RUNNING
        again = jobs.claim_next(s, "w3", T0 + timedelta(minutes=6))
    assert again is not None and again.id == a and again.attempts == 2


def test_requeue_stale_fails_job_after_max_attempts(db):
    (job_id,) = _fill(db, 1)
    for _ in range(2):
        with db.session() as s:
            assert jobs.claim_next(s, "crashy", T0) is not None
        with db.session() as s:
            jobs.requeue_stale(s, T0, max_attempts=2)
    with db.session() as s:
        info = jobs.get_job(s, job_id)
    assert info is not None and info.state is JobState.FAILED


def test_concurrent_claims_in_processes_never_share_a_job(db, db_url):
    ids = _fill(db)
    db.dispose()  # no open connection crosses the fork
    start_at = time.time() + 0.5
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(N_WORKERS) as pool:
        runs = pool.starmap(_drain_in_process, [(db_url, f"w{k}", start_at) for k in range(N_WORKERS)])
    _assert_each_job_ran_once(db, ids, runs)


def test_concurrent_claims_in_threads_never_share_a_job(db):
    ids = _fill(db)
    start_at = time.time() + 0.2
    with ThreadPoolExecutor(N_WORKERS) as pool:
        runs = list(pool.map(lambda k: _drain(db, f"w{k}", start_at), range(N_WORKERS)))
    _assert_each_job_ran_once(db, ids, runs)


def test_concurrent_claims_on_postgresql_never_share_a_job(pg_db, pg_url):
    ids = _fill(pg_db)
    start_at = time.time() + 0.2
    with ThreadPoolExecutor(N_WORKERS) as pool:
        thread_runs = list(pool.map(lambda k: _drain(pg_db, f"w{k}", start_at), range(N_WORKERS)))
    _assert_each_job_ran_once(pg_db, ids, thread_runs)


def test_concurrent_claims_on_postgresql_processes(pg_db, pg_url):
    ids = _fill(pg_db)
    pg_db.dispose()
    start_at = time.time() + 0.5
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(N_WORKERS) as pool:
        runs = pool.starmap(_drain_in_process, [(pg_url, f"w{k}", start_at) for k in range(N_WORKERS)])
    _assert_each_job_ran_once(pg_db, ids, runs)


def test_naive_now_refused_naming_parameter(db):
    with db.session() as s, pytest.raises(StoreError, match="enqueue now: expected a timezone-aware datetime"):
        jobs.enqueue(s, "1.2.3", sha("x"), T0.replace(tzinfo=None))


def test_enqueue_stable_dispatches_quiet_studies_once(db):
    from store import index
    from tests.store.conftest import make_instance, make_series, make_study

    with db.session() as s:
        index.add_instance(s, study=make_study(), series=make_series(), instance=make_instance(1), received_at=T0)
    with db.session() as s:
        assert jobs.enqueue_stable(s, T0 - timedelta(seconds=1), T0) == []  # not quiet yet
        created = jobs.enqueue_stable(s, T0, T0 + timedelta(seconds=60))
        assert [(j.study_uid, j.state, j.attempts) for j in created] == [
            (make_study().study_instance_uid, JobState.PENDING, 0)
        ]
        assert created[0].content_version == index.content_version(s, make_study().study_instance_uid)
        assert jobs.enqueue_stable(s, T0, T0 + timedelta(seconds=61)) == []  # exactly once for this content
