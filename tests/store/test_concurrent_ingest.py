"""Several receivers indexing one new study at the same time (SCP + pull, or several associations)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from store import index
from store.db import Database
from store.index import IndexResult
from store.schema import InstanceRow, PatientRow, SeriesRow, StudyRow
from tests.store.conftest import STUDY_UID, T0, make_instance, make_series, make_study

PER_WORKER = 15
WORKERS = 4


def _ingest(db: Database, worker: int, start_at: float) -> list[IndexResult]:
    """Every worker sends its own instances plus instance 0, which all of them share."""
    while time.time() < start_at:
        time.sleep(0.001)
    results = []
    numbers = [0] + [1000 * (worker + 1) + k for k in range(PER_WORKER)]
    for n in numbers:
        with db.session() as s:
            results.append(
                index.add_instance(
                    s, study=make_study(), series=make_series(), instance=make_instance(n), received_at=T0
                )
            )
    return results


def _ingest_in_process(url: str, worker: int, start_at: float) -> list[IndexResult]:
    db = Database(url)
    try:
        return _ingest(db, worker, start_at)
    finally:
        db.dispose()


def _check(db: Database, runs: list[list[IndexResult]]) -> None:
    results = Counter(r for run in runs for r in run)
    assert results == {IndexResult.NEW: WORKERS * PER_WORKER + 1, IndexResult.DUPLICATE: WORKERS - 1}
    with db.session() as s:
        assert s.scalar(select(func.count(StudyRow.id))) == 1
        assert s.scalar(select(func.count(SeriesRow.id))) == 1
        assert s.scalar(select(func.count(PatientRow.id))) == 1
        assert s.scalar(select(func.count(InstanceRow.id))) == WORKERS * PER_WORKER + 1
        # no lost update: the running content version covers every committed instance
        assert index.content_version(s, STUDY_UID) == index.recompute_content_version(s, STUDY_UID)


def test_processes_index_one_study_on_sqlite(db: Database, db_url: str) -> None:
    db.dispose()
    start_at = time.time() + 0.5
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        runs = pool.starmap(_ingest_in_process, [(db_url, w, start_at) for w in range(WORKERS)])
    _check(db, runs)


def test_threads_index_one_study_on_postgresql(pg_db: Database) -> None:
    start_at = time.time() + 0.3
    barrier = threading.Barrier(WORKERS)

    def go(w: int) -> list[IndexResult]:
        barrier.wait()
        return _ingest(pg_db, w, start_at)

    with ThreadPoolExecutor(WORKERS) as pool:
        runs = list(pool.map(go, range(WORKERS)))
    _check(pg_db, runs)
