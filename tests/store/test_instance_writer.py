"""The one index writer: its SQLite fast path writes exactly what its Core path writes (SQLite and PostgreSQL);
its cache of committed study and series ids survives other writers and deleted studies."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from store import index
from store.db import Database
from store.index import IndexResult
from store.index_writer import IndexWriter
from tests.store.conftest import STUDY_UID, T0, make_instance, make_series, make_study

_TABLES = ("patients", "patient_identifiers", "studies", "series", "instances", "instance_conflicts")


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the index tables as SQLite holds them (the stored text of instants included)."""
    con = sqlite3.connect(path)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in _TABLES}
    finally:
        con.close()


def _studies():
    base = make_study()
    bare = replace(base, accession_number=None, description=None, study_datetime=None, referring_physician=None)
    return [
        replace(base, study_instance_uid=f"{STUDY_UID}.0"),
        replace(bare, study_instance_uid=f"{STUDY_UID}.1"),  # its values filled by a later object that has them
        replace(base, study_instance_uid=f"{STUDY_UID}.1", accession_number="ACC-LATER"),
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=hst.lists(
        hst.tuples(
            hst.integers(1, 8),  # object number (repeats: duplicates and conflicts)
            hst.sampled_from(["a", "b"]),  # content
            hst.integers(0, 2),  # which study record it comes with
            hst.integers(-30, 30),  # received, seconds from T0 (an earlier one must not move the clock back)
            hst.booleans(),  # size known, or read from the file
        ),
        min_size=1,
        max_size=25,
    )
)
def test_fast_path_writes_the_orm_rows(tmp_path_factory, plan):
    studies = _studies()
    results, dumps = [], []
    for mode in ("orm", "fast"):
        folder = tmp_path_factory.mktemp(mode)
        path = folder / "i.db"
        db = Database(f"sqlite:///{path}")
        db.migrate()
        writer = IndexWriter(db)
        assert writer.fast
        got = []
        for n, content, k, dt, sized in plan:
            study = studies[k]
            series = make_series(study_uid=study.study_instance_uid, uid=f"{study.study_instance_uid}.{n % 2}")
            inst = make_instance(
                n, study_uid=study.study_instance_uid, series_uid=series.series_instance_uid, content=f"{content}{n}"
            )
            file = folder / f"{n}-{content}.dcm"
            file.write_bytes(b"x" * (n + len(content)))
            inst = replace(inst, path=file)
            at = T0 + timedelta(seconds=dt)
            size = 100 + n if sized else None
            if mode == "orm":
                with db.session() as s:
                    got.append(
                        index.add_instance(
                            s, study=study, series=series, instance=inst, received_at=at, size_bytes=size
                        )
                    )
            else:
                got.append(writer.add(study=study, series=series, instance=inst, received_at=at, size_bytes=size))
        with db.session() as s:
            for st in {x.study_instance_uid for x in studies}:
                if index.load_study(s, st) is not None:
                    assert index.content_version(s, st) == index.recompute_content_version(s, st)
        db.dispose()
        results.append(got)
        dump = _dump(path)
        for rows in dump.values():  # the objects' own folders differ between the two runs
            rows[:] = [tuple(str(v).replace(str(folder), "F") for v in r) for r in rows]
        dumps.append(dump)
    assert results[0] == results[1]
    for table in _TABLES:
        assert dumps[0][table] == dumps[1][table], table


def test_concurrent_writers_keep_the_content_version(tmp_path):
    """Threads indexing into one study: every object once, and the version equals the one recomputed."""
    db = Database(f"sqlite:///{tmp_path / 'i.db'}")
    db.migrate()
    writer = IndexWriter(db)
    study, series = make_study(), make_series()
    assert writer.add(study=study, series=series, instance=make_instance(0), received_at=T0) is IndexResult.NEW
    errors: list[BaseException] = []

    def work(start: int) -> None:
        try:
            for n in range(start, start + 40):
                assert writer.add(study=study, series=series, instance=make_instance(n), received_at=T0, size_bytes=1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(1 + 40 * k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.session() as s:
        assert index.content_version(s, STUDY_UID) == index.recompute_content_version(s, STUDY_UID)
        assert index.load_study(s, STUDY_UID).instance_count == 161


def test_in_memory_database_takes_the_orm_path():
    db = Database("sqlite://")
    db.migrate()
    writer = IndexWriter(db)
    assert not writer.fast
    assert writer.add(study=make_study(), series=make_series(), instance=make_instance(1), received_at=T0) is (
        IndexResult.NEW
    )
    with db.session() as s:
        assert index.load_study(s, STUDY_UID).instance_count == 1


def test_naive_received_time_is_refused(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'i.db'}")
    db.migrate()
    with pytest.raises(Exception, match="timezone-aware"):
        IndexWriter(db).add(
            study=make_study(), series=make_series(), instance=make_instance(1), received_at=T0.replace(tzinfo=None)
        )


def _logical(db: Database, folder: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the index tables read through the ORM's column types (instants as aware datetimes)."""
    from sqlalchemy import select

    from store.schema import Base

    out = {}
    with db.engine.connect() as conn:
        for t in _TABLES:
            rows = conn.execute(select(Base.metadata.tables[t])).all()
            out[t] = sorted((tuple(str(v).replace(str(folder), "F") for v in r) for r in rows), key=repr)
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=hst.lists(
        hst.tuples(hst.integers(1, 6), hst.sampled_from(["a", "b"]), hst.integers(0, 2), hst.integers(-30, 30)),
        min_size=1,
        max_size=15,
    )
)
def test_fast_path_writes_the_postgresql_rows(tmp_path_factory, pg_db, plan):
    """The same objects through the SQLite fast path and through the Core path on PostgreSQL: the same rows."""
    from sqlalchemy import text

    with pg_db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE"))
    folder = tmp_path_factory.mktemp("objects")
    lite = Database(f"sqlite:///{folder / 'i.db'}")
    lite.migrate()
    studies = _studies()
    results, dumps = [], []
    for db in (lite, pg_db):
        writer = IndexWriter(db)
        assert writer.fast is (db is lite)
        got = []
        for n, content, k, dt in plan:
            study = studies[k]
            series = make_series(study_uid=study.study_instance_uid, uid=f"{study.study_instance_uid}.{n % 2}")
            inst = make_instance(
                n, study_uid=study.study_instance_uid, series_uid=series.series_instance_uid, content=f"{content}{n}"
            )
            at = T0 + timedelta(seconds=dt)
            got.append(writer.add(study=study, series=series, instance=inst, received_at=at, size_bytes=n))
        results.append(got)
        dumps.append(_logical(db, folder))
    lite.dispose()
    assert results[0] == results[1]
    for table in _TABLES:
        assert dumps[0][table] == dumps[1][table], table


def test_writers_on_two_engines_keep_the_content_version(tmp_path):
    """Each writer's cached content version is stale every other object: the conditional UPDATE reads it again."""
    url = f"sqlite:///{tmp_path / 'i.db'}"
    one, two = Database(url), Database(url)
    one.migrate()
    writers = (IndexWriter(one), IndexWriter(two))
    study, series = make_study(), make_series()
    for n in range(1, 9):
        assert writers[n % 2].add(study=study, series=series, instance=make_instance(n), received_at=T0) is (
            IndexResult.NEW
        )
    with one.session() as s:
        assert index.content_version(s, STUDY_UID) == index.recompute_content_version(s, STUDY_UID)
        assert index.load_study(s, STUDY_UID).instance_count == 8
    one.dispose()
    two.dispose()


@pytest.mark.parametrize("fast", [True, False])
def test_a_study_deleted_since_it_was_cached_is_indexed_again(tmp_path, fast):
    """Retention deletes a study the receiver's writer has cached: the next object creates it again, no error."""
    from sqlalchemy import select

    from store.schema import StudyRow

    db = Database(f"sqlite:///{tmp_path / 'i.db'}")
    db.migrate()
    writer = IndexWriter(db)
    writer.fast = fast
    study, series = make_study(), make_series()
    assert writer.add(study=study, series=series, instance=make_instance(1), received_at=T0) is IndexResult.NEW
    with db.session() as s:
        s.delete(s.scalars(select(StudyRow)).one())
    assert writer.add(study=study, series=series, instance=make_instance(2), received_at=T0) is IndexResult.NEW
    assert writer.add(study=study, series=series, instance=make_instance(3), received_at=T0) is IndexResult.NEW
    with db.session() as s:
        assert index.load_study(s, STUDY_UID).instance_count == 2
        assert index.content_version(s, STUDY_UID) == index.recompute_content_version(s, STUDY_UID)
    db.dispose()


def test_threads_share_one_writer_on_postgresql(pg_db):
    """A receiver's lanes on PostgreSQL: one writer, its cache shared, every object once, no lost version update."""
    writer = IndexWriter(pg_db)
    study, series = make_study(), make_series()
    barrier = threading.Barrier(4)
    results: list[IndexResult] = []
    errors: list[BaseException] = []

    def work(start: int) -> None:
        barrier.wait()
        try:
            for n in [0, *range(start, start + 10)]:
                results.append(writer.add(study=study, series=series, instance=make_instance(n), received_at=T0))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(1 + 10 * k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results.count(IndexResult.NEW) == 41 and results.count(IndexResult.DUPLICATE) == 3
    with pg_db.session() as s:
        assert index.content_version(s, STUDY_UID) == index.recompute_content_version(s, STUDY_UID)
        assert index.load_study(s, STUDY_UID).instance_count == 41


def test_writer_refuses_a_series_under_another_study_and_follows_a_study_indexed_again(tmp_path):
    """A series claimed by a second study is refused by name; a study deleted and indexed again by another writer
    (new row id) is followed, not refused, by a writer that had cached its old id."""
    from sqlalchemy import select

    from core.errors import StoreError
    from store.schema import StudyRow

    db = Database(f"sqlite:///{tmp_path / 'i.db'}")
    db.migrate()
    writer, other = IndexWriter(db), IndexWriter(db)
    study, series = make_study(), make_series()
    assert writer.add(study=study, series=series, instance=make_instance(1), received_at=T0) is IndexResult.NEW
    moved_study = make_study(uid=STUDY_UID + ".9")
    moved = replace(series, study_instance_uid=moved_study.study_instance_uid)
    inst = make_instance(2, study_uid=moved_study.study_instance_uid, series_uid=series.series_instance_uid)
    with pytest.raises(StoreError, match="already indexed under another study"):
        writer.add(study=moved_study, series=moved, instance=inst, received_at=T0)
    second = make_study(uid=STUDY_UID + ".8")  # a later row id, so the study indexed again gets a new one
    second_series = make_series(study_uid=second.study_instance_uid, uid=second.study_instance_uid + ".1")
    inst = make_instance(5, study_uid=second.study_instance_uid, series_uid=second_series.series_instance_uid)
    assert other.add(study=second, series=second_series, instance=inst, received_at=T0) is IndexResult.NEW
    with db.session() as s:  # retention removes the study; another receiver indexes it again under a new row id
        s.delete(s.scalars(select(StudyRow).where(StudyRow.study_instance_uid == STUDY_UID)).one())
    assert other.add(study=study, series=series, instance=make_instance(3), received_at=T0) is IndexResult.NEW
    assert writer.add(study=study, series=series, instance=make_instance(4), received_at=T0) is IndexResult.NEW
    with db.session() as s:
        assert s.scalar(select(StudyRow.id).where(StudyRow.study_instance_uid == STUDY_UID)) == 3
        assert index.load_study(s, STUDY_UID).instance_count == 2
        assert index.content_version(s, STUDY_UID) == index.recompute_content_version(s, STUDY_UID)
    db.dispose()
