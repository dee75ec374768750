"""``mmdx db``: bring the database schema up to date and show what the database holds.

``mmdx db migrate`` is what every service runs on start (``Database.from_settings``);
it exists on its own for deployments that migrate before starting services.
``mmdx db status`` shows counts only: no patient data is printed. ``mmdx db quarantine`` and
``mmdx db conflicts`` list what those counts stand for (inputs that were not indexed and why, re-sends
rejected for different bytes), so an operator can fix the source and send again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.commands import ConfigOption
from core.config import load_settings
from core.errors import MmdxError
from store import index, jobs, outbox
from store.db import Database
from store.schema import InstanceConflictRow, InstanceRow, QuarantineRow, ReportVersionRow, StudyRow

_T = TypeVar("_T")

db_app = typer.Typer(help="Database schema and state.", no_args_is_help=True)


def _open(config: Path | None) -> Database:
    try:
        return Database.from_settings(load_settings(config))
    except MmdxError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@db_app.command("migrate")
def migrate_command(config: ConfigOption = None) -> None:
    """Create the database if needed and upgrade its schema to the latest revision."""
    db = _open(config)
    try:
        Console().print(f"{db!r} at revision [bold]{db.current_revision()}[/bold]")
    finally:
        db.dispose()


@db_app.command("status")
def status_command(config: ConfigOption = None) -> None:
    """Counts of studies, instances, quarantine, conflicts, reports, jobs and deliveries by state."""
    db = _open(config)
    try:
        with db.session(readonly=True) as s:
            counts = {
                "studies": s.scalar(select(func.count(StudyRow.id))) or 0,
                "instances": s.scalar(select(func.count(InstanceRow.id))) or 0,
                "quarantined inputs": s.scalar(select(func.count(QuarantineRow.id))) or 0,
                "instance conflicts": s.scalar(select(func.count(InstanceConflictRow.id))) or 0,
                "report versions": s.scalar(select(func.count(ReportVersionRow.id))) or 0,
            }
            for job_state, n in jobs.counts_by_state(s).items():
                counts[f"jobs {job_state.value}"] = n
            for item_state, n in outbox.counts_by_state(s).items():
                counts[f"outbox {item_state.value}"] = n
        table = Table(title=f"{db!r} (revision {db.current_revision()})")
        table.add_column("what")
        table.add_column("count", justify="right")
        for name, n in counts.items():
            table.add_row(name, str(n))
        Console().print(table)
    finally:
        db.dispose()


@db_app.command("quarantine")
def quarantine_command(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(help="At most this many rows, newest first")] = 50,
) -> None:
    """Inputs that were not indexed, newest first: when, from where, why (the reason holds no PHI), the file."""
    entries = _read(config, lambda s: index.list_quarantine(s, limit=limit))
    rows = [(_utc(e.received_at), e.source, e.reason, str(e.path), e.study_instance_uid or "") for e in entries]
    _print_table(f"Quarantined inputs ({len(rows)} shown)", ("When (UTC)", "Source", "Reason", "File", "Study"), rows)


@db_app.command("conflicts")
def conflicts_command(
    config: ConfigOption = None,
    sop_uid: Annotated[str | None, typer.Option("--sop-uid", help="Only this SOP Instance UID")] = None,
) -> None:
    """Re-sends rejected because their SOP Instance UID was indexed with other bytes (both digests, the file)."""
    entries = _read(config, lambda s: index.list_conflicts(s, sop_instance_uid=sop_uid))
    rows = [
        (_utc(c.at), c.source, c.sop_instance_uid, c.existing_digest, c.new_digest, str(c.new_path)) for c in entries
    ]
    columns = ("When (UTC)", "Source", "SOP Instance UID", "Indexed digest", "Rejected digest", "Rejected file")
    _print_table(f"Instance conflicts ({len(rows)})", columns, rows)


def _read(config: Path | None, query: Callable[[Session], _T]) -> _T:
    """One read-only query against the configured database, which is closed afterwards."""
    db = _open(config)
    try:
        with db.session(readonly=True) as s:
            return query(s)
    finally:
        db.dispose()


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table wide enough for UIDs and digests when the output is not a terminal (piped, tests)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=None if Console().is_terminal else 250).print(table)


def register(cli: typer.Typer) -> None:
    """Add ``mmdx db migrate``, ``status``, ``quarantine`` and ``conflicts`` to the CLI."""
    cli.add_typer(db_app, name="db")
