"""Stable-study dispatch: one job per content version, after the quiet period, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.errors import StoreError
from ingest.indexing import index_scan
from ingest.scan import scan
from ingest.stability import dispatch_stable
from store import index as idx
from store.db import Database
from store.schema import JobRow

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
AGE = 60.0


def _add(db: Database, files: list[Path], at: datetime) -> None:
    with db.session() as s:
        index_scan(s, scan(files), at)


def _jobs(db: Database) -> int:
    with db.session(readonly=True) as s:
        return int(s.scalar(select(func.count(JobRow.id))) or 0)


def test_dispatch_waits_for_quiet_period_then_once_per_content(db: Database, distinct_files: list[Path]) -> None:
    ct = [f for f in distinct_files if f.name.startswith("CT_small")]
    mr = [f for f in distinct_files if f.name == "MR_small.dcm"]
    _add(db, mr, T0)  # one study
    _add(db, ct[:1], T0 + timedelta(seconds=30))  # another study, later
    with db.session() as s:
        assert dispatch_stable(s, T0 + timedelta(seconds=59), AGE) == []
    with db.session() as s:
        first = dispatch_stable(s, T0 + timedelta(seconds=61), AGE)
    assert len(first) == 1  # only the MR study is quiet long enough
    with db.session() as s:
        second = dispatch_stable(s, T0 + timedelta(seconds=91), AGE)
    assert len(second) == 1 and second != first  # now the CT study
    with db.session() as s:
        assert dispatch_stable(s, T0 + timedelta(hours=5), AGE) == []  # nothing new: no new job
    assert _jobs(db) == 2


def test_new_instance_after_dispatch_makes_one_new_job(db: Database, distinct_files: list[Path]) -> None:
    ct = [f for f in distinct_files if f.name.startswith("CT_small")]
    assert len(ct) == 2  # CT_small and its JPEG-LS near-lossless re-encoding: same study, distinct UIDs
    _add(db, ct[:1], T0)
    with db.session() as s:
        (job1,) = dispatch_stable(s, T0 + timedelta(seconds=61), AGE)
        assert idx.studies_quiet_since(s, T0 + timedelta(days=1)) == []  # the current content has its job
    _add(db, ct[1:], T0 + timedelta(seconds=100))
    with db.session() as s:
        assert dispatch_stable(s, T0 + timedelta(seconds=120), AGE) == []  # not quiet yet
        (job2,) = dispatch_stable(s, T0 + timedelta(seconds=161), AGE)
    assert job2 != job1
    _add(db, ct, T0 + timedelta(seconds=200))  # a re-send: duplicates, same content
    with db.session() as s:
        assert dispatch_stable(s, T0 + timedelta(seconds=400), AGE) == []
    with db.session(readonly=True) as s:
        versions = s.scalars(select(JobRow.content_version).order_by(JobRow.id)).all()
    assert len(set(versions)) == 2


def test_naive_time_is_refused(db: Database) -> None:
    with db.session() as s, pytest.raises(StoreError, match="timezone-aware"):
        dispatch_stable(s, datetime(2026, 1, 1), AGE)
