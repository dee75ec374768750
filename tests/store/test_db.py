"""Database setup, sessions, and Alembic migrations against the ORM metadata."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from core.config import DatabaseConfig, Settings
from core.errors import StoreError
from store import jobs
from store.db import SQLITE_BUSY_TIMEOUT_MS, Database
from store.schema import Base, SeriesRow
from tests.store.conftest import T0, make_instance, make_series, make_study, sha


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_migrated_sqlite_schema_matches_metadata(db):
    assert db.current_revision() is not None
    assert _diff(db) == []
    names = set(inspect(db.engine).get_table_names())
    assert {"patients", "studies", "series", "instances", "jobs", "report_versions", "outbox", "audit"} <= names


def test_migrated_postgresql_schema_matches_metadata(pg_db):
    assert _diff(pg_db) == []


def test_downgrade_to_base_and_up_again(db):
    head = db.current_revision()
    from alembic import command

    cfg = db.alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.migrate()
    assert db.current_revision() == head and _diff(db) == []


def _head(db: Database) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(db.alembic_config()).get_current_head()


def _migrate_to(db: Database, revision: str, *, down: bool) -> None:
    from alembic import command

    cfg = db.alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_0002_labels_the_sha256_digests_it_finds_and_refuses_to_drop_others(db):
    from dataclasses import replace

    from store import index

    study, series = make_study(), make_series()
    old = replace(make_instance(1), content_digest="sha256:" + sha("one"))
    with db.session() as s:
        index.add_instance(s, study=study, series=series, instance=old, received_at=T0)
        index.add_instance(
            s, study=study, series=series, instance=replace(old, content_digest="sha256:" + sha("two")), received_at=T0
        )  # a conflict row, both digests sha256
    _migrate_to(db, "0001", down=True)  # what a 0001 database holds: bare sha256 hex
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT sha256 FROM instances")).scalar_one() == sha("one")
        assert conn.execute(text("SELECT existing_sha256, new_sha256 FROM instance_conflicts")).one() == (
            sha("one"),
            sha("two"),
        )
    _migrate_to(db, "head", down=False)
    assert _diff(db) == []
    with db.session() as s:
        assert index.load_study(s, study.study_instance_uid).series[0].instances[0].content_digest == "sha256:" + sha(
            "one"
        )
        assert [(c.existing_digest, c.new_digest) for c in index.list_conflicts(s)] == [
            ("sha256:" + sha("one"), "sha256:" + sha("two"))
        ]
        index.add_instance(s, study=study, series=series, instance=make_instance(2), received_at=T0)  # xxh3-128
    with pytest.raises(RuntimeError, match=r"1 row\(s\) of instances.content_digest hold digests other than sha256"):
        _migrate_to(db, "0001", down=True)
    assert db.current_revision() == _head(db)  # the refused downgrade changed nothing
    with db.session() as s:
        assert index.count_instances(s, study.study_instance_uid) == 2


def test_sqlite_connection_is_set_up_like_the_pool_and_reused(db):
    with db.sqlite_connection() as first:
        pragmas = [first.execute(f"PRAGMA {p}").fetchone()[0] for p in ("journal_mode", "foreign_keys", "busy_timeout")]
        assert pragmas == ["wal", 1, SQLITE_BUSY_TIMEOUT_MS]
        with db.sqlite_connection() as second:  # one in use is never handed out twice
            assert second is not first
    with db.sqlite_connection() as again:
        assert again in (first, second)
    with pytest.raises(sqlite3.IntegrityError), db.sqlite_connection() as conn:  # foreign keys are enforced
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO series (series_instance_uid, study_id, modality) VALUES ('1.2', 999, 'CT')")
    with db.sqlite_connection() as conn:
        assert conn is not None
    assert not conn.in_transaction
    with pytest.raises(sqlite3.ProgrammingError):  # the one left mid-transaction above was closed, not kept
        next(c for c in (first, second) if c is not conn).execute("SELECT 1")
    db.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")


def test_sqlite_connection_needs_a_sqlite_file():
    memory = Database("sqlite://")
    with pytest.raises(StoreError, match="needs a SQLite file database"), memory.sqlite_connection():
        pass


def test_from_settings_creates_folder_and_sets_pragmas(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'mmdx.db'}"
    db = Database.from_settings(Settings(database=DatabaseConfig(url=url)))
    try:
        assert (tmp_path / "deep" / "er" / "mmdx.db").is_file()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
    finally:
        db.dispose()


def test_foreign_keys_enforced(db):
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(SeriesRow(series_instance_uid="1.2.3", study_id=12345, modality="CT"))
        s.flush()


def test_session_commits_or_rolls_back(db):
    with pytest.raises(ValueError), db.session() as s:
        jobs.enqueue(s, "1.2.3", sha("a"), T0)
        raise ValueError("boom")
    with db.session() as s:
        assert jobs.list_jobs(s) == []
        jobs.enqueue(s, "1.2.3", sha("a"), T0)
    with db.session(readonly=True) as s:
        assert len(jobs.list_jobs(s)) == 1


def test_in_memory_database_is_shared_across_sessions():
    db = Database("sqlite://")
    db.migrate()
    with db.session() as s:
        jobs.enqueue(s, "1.2.3", sha("a"), T0)
    with db.session() as s:
        assert len(jobs.list_jobs(s)) == 1
    db.dispose()


def test_bad_url_is_a_store_error():
    with pytest.raises(StoreError, match="database.url: not a valid SQLAlchemy URL"):
        Database("not a url at all")
    with pytest.raises(StoreError, match="cannot create an engine for backend 'nosuchdb'"):
        Database("nosuchdb://x/y")


def _migrate(url: str) -> str | None:
    db = Database(url)
    try:
        db.migrate()
        return db.current_revision()
    finally:
        db.dispose()


def test_concurrent_first_start_migrates_once(tmp_path):
    """The SCP and a worker starting together on a fresh file both come up (one migrates, one waits)."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        revisions = pool.map(_migrate, [url] * 3)
    assert len(set(revisions)) == 1 and revisions[0] is not None


def test_alembic_ini_ships_in_the_package_and_cli_works(tmp_path):
    ini = resources.files("store") / "alembic.ini"
    assert ini.is_file() and (resources.files("store") / "migrations" / "env.py").is_file()
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "-x", f"url={url}", "upgrade", "head"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    db = Database(url)
    try:
        assert _diff(db) == []
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
    finally:
        db.dispose()
    assert Path(tmp_path / "cli.db").is_file()


def test_database_errors_do_not_quote_bound_values(db: Database) -> None:
    """A constraint error's message must not carry the row's values (they can be patient identifiers)."""
    from store.schema import PatientIdentifierRow, PatientRow

    with pytest.raises(IntegrityError) as err, db.session() as s:
        p = PatientRow(name="Secret^Name", created_at=T0)
        p.identifiers.append(PatientIdentifierRow(value="MRN-SECRET-42", issuer="H"))
        p.identifiers.append(PatientIdentifierRow(value="MRN-SECRET-42", issuer="H"))
        s.add(p)
        s.flush()
    assert "SECRET" not in str(err.value) and "Secret" not in str(err.value)


@pytest.mark.parametrize("which", ["db", "pg_db"])
def test_0010_moves_superseded_dead_letters_to_their_own_state_and_back(which, request):
    from store import outbox
    from store.reports import ArtefactRecord, save_report_version
    from store.schema import OutboxState
    from tests.store.reports_helpers import full_report

    db = request.getfixturevalue(which)
    art = [
        ArtefactRecord(k, Path(f"/out/{k}"), sha(k), "application/octet-stream")
        for k in ("sr", "sc", "pdf", "dicom-pdf")
    ]
    with db.session() as s:
        save_report_version(s, full_report(1), art, {"sr": ["a"], "sc": ["b"], "pdf": ["c"], "dicom-pdf": ["d"]}, T0)
    _migrate_to(db, "0009", down=True)
    with db.engine.begin() as conn:  # what a 0009 database could hold
        set_state = text("UPDATE outbox SET state = :state, last_error = :error WHERE destination = :dest")
        conn.execute(set_state, {"dest": "a", "state": "dead", "error": "skipped: superseded by version 2 before it"})
        conn.execute(set_state, {"dest": "b", "state": "dead", "error": "gave up after 10 attempts: timeout"})
        conn.execute(set_state, {"dest": "c", "state": "sent", "error": None})
    _migrate_to(db, "head", down=False)
    with db.session() as s:
        states = {i.destination: i.state for i in outbox.list_items(s)}
    assert states == {
        "a": OutboxState.SUPERSEDED,
        "b": OutboxState.DEAD,
        "c": OutboxState.PENDING,
        "d": OutboxState.PENDING,
    }
    with pytest.raises(IntegrityError), db.engine.begin() as conn:  # the CHECK constraint no longer takes 'sent'
        conn.execute(text("UPDATE outbox SET state = 'sent' WHERE destination = 'd'"))
    _migrate_to(db, "0009", down=True)
    with db.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT destination, state FROM outbox")).tuples().all())
    assert rows == {"a": "dead", "b": "dead", "c": "pending", "d": "pending"}
    _migrate_to(db, "head", down=False)
