"""Engine, sessions and migrations: one :class:`Database` per process.

SQLite is the default and several processes (the SCP, workers, the web app)
share one file, so the connection is set up for that:

* WAL journal, so readers never block the writer and the writer never blocks readers;
* ``foreign_keys=ON`` (SQLite leaves them off by default);
* ``busy_timeout``, so a writer waits for the lock instead of failing at once;
* the driver's own transaction handling is switched off and every session
  starts with ``BEGIN IMMEDIATE`` (read-only sessions: plain ``BEGIN``).  With
  pysqlite's default, a read followed by a write in the same transaction can
  fail with "database is locked" once another process has written in between
  (a stale WAL snapshot cannot be upgraded to a writer); taking the write lock
  at the start makes each session a serialisable unit of work instead.

PostgreSQL works by URL (``postgresql+psycopg://...``) with its default READ
COMMITTED isolation; the repositories lock rows where they must.

Keep sessions short: on SQLite a write session holds the database's write lock
until it ends, so never keep one open while a model runs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from core.errors import StoreError

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

#: How long a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_BEGIN_OPTION = "mmdx_sqlite_begin"


def _owner_only(path: Path) -> None:
    """The SQLite file (names, IDs, birth dates) readable by its owner only, created so before SQLite opens it.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode; existing ones are tightened too.
    """
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if name.exists():
                os.chmod(name, 0o600)
    except OSError:
        pass  # a read-only or foreign-owned database: SQLite reports what matters when it opens it


def _is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _configure_sqlite(dbapi_connection: Any, *, memory: bool) -> None:
    """Set up a new SQLite connection: the pool's and :meth:`Database.sqlite_connection`'s alike."""
    # Hand transaction control to the caller: the "begin" hook below (SQLAlchemy's documented pysqlite recipe),
    # or the explicit BEGIN of a raw connection's user.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode except on power loss mid-checkpoint
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _install_sqlite_pragmas(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        _configure_sqlite(dbapi_connection, memory=memory)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")


class Database:
    """The database of one mmdx installation.

    Parameters
    ----------
    url:
        SQLAlchemy URL: ``sqlite:///var/mmdx.db`` (default setup) or
        ``postgresql+psycopg://user:pass@host/db``.
    echo:
        Log every SQL statement (debugging only; bound parameters, which can
        hold PHI, are never logged nor put into exception messages).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            self.url = make_url(url)
        except SQLAlchemyError as exc:
            raise StoreError(f"database.url: not a valid SQLAlchemy URL ({exc.__class__.__name__})") from None
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # hide_parameters: bound values (patient names, identifiers) never reach exception messages or echo logs
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            memory = _is_memory(self.url)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            if memory:
                kwargs["poolclass"] = StaticPool  # one shared connection, else each checkout sees an empty database
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(
                f"database.url: cannot create an engine for backend {self.url.get_backend_name()!r} ({exc})"
            ) from None
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine, memory=_is_memory(self.url))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"}), expire_on_commit=False
        )
        self._raw_free: list[sqlite3.Connection] = []  # idle connections of sqlite_connection()
        self._raw_pid = os.getpid()
        self._raw_file = self.url.database if self.is_sqlite and not _is_memory(self.url) else None
        if self._raw_file:
            _owner_only(Path(self._raw_file).expanduser())

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Open the configured database, creating the SQLite file's folder, and migrate it to the latest schema."""
        url = make_url(settings.database.url)
        if url.get_backend_name() == "sqlite" and not _is_memory(url) and url.database:
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        db = cls(settings.database.url, echo=settings.database.echo)
        db.migrate()
        return db

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls back if it raises.

        ``readonly=True`` does not take SQLite's write lock at the start (use it
        for pages and listings); writing in such a session may then fail with
        "database is locked" when another process wrote meanwhile.
        """
        factory = self._read_sessions if readonly else self._sessions
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def alembic_config(self) -> Config:
        """The Alembic configuration of the installed package (works from a wheel too)."""
        pkg = resources.files("store")
        cfg = Config(str(pkg / "alembic.ini"))
        cfg.set_main_option("script_location", str(pkg / "migrations"))
        cfg.set_main_option("sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%"))
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (Alembic ``upgrade``), safely when several processes start at once.

        The whole upgrade runs in one transaction: on SQLite ``BEGIN IMMEDIATE``
        serialises concurrent starters, on PostgreSQL an advisory lock does.
        """
        cfg = self.alembic_config()
        try:
            with self.engine.begin() as conn:
                if self.url.get_backend_name() == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except SQLAlchemyError as exc:
            raise StoreError(f"database migration to {revision!r} failed: {exc.__class__.__name__}: {exc}") from exc

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at (None before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def sqlite_connection(self) -> Iterator[sqlite3.Connection]:
        """A connection to the SQLite file, outside SQLAlchemy's pool, set up like the pool's.

        For a hot path that runs its own statements (``store.index_writer``):
        the pool's checkout and return (events, reset, a condition variable)
        cost more than a one-row transaction.  The connection is in autocommit
        mode (the caller issues BEGIN and COMMIT or ROLLBACK); one given back
        idle is kept for the next call, from any thread, until :meth:`dispose`
        (one left mid-transaction is closed).  A forked child never reuses its
        parent's.
        """
        if not self._raw_file:
            raise StoreError(f"{self!r}: sqlite_connection() needs a SQLite file database")
        if self._raw_pid != os.getpid():
            self._raw_free, self._raw_pid = [], os.getpid()
        try:
            conn = self._raw_free.pop()
        except IndexError:
            conn = sqlite3.connect(self._raw_file, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            _configure_sqlite(conn, memory=False)
        try:
            yield conn
        finally:
            if conn.in_transaction:  # left mid-transaction (a failed ROLLBACK): not for reuse
                conn.close()
            else:
                self._raw_free.append(conn)

    def dispose(self) -> None:
        """Close pooled connections (end of process, or before forking)."""
        self.engine.dispose()
        free, self._raw_free = self._raw_free, []
        for conn in free:
            conn.close()
