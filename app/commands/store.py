"""``mmdx db``: bring the database schema up to date and show what the database holds.

``mmdx db migrate`` is what every service runs on start (``Database.from_settings``);
it exists on its own for deployments that migrate before starting services.
``mmdx db status`` shows counts only: no patient data is printed.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from app.commands import ConfigOption
from core.config import load_settings
from core.errors import MmdxError
from store import jobs, outbox
from store.db import Database
from store.schema import InstanceConflictRow, InstanceRow, QuarantineRow, ReportVersionRow, StudyRow

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


def register(cli: typer.Typer) -> None:
    """Add ``mmdx db migrate`` and ``mmdx db status`` to the CLI."""
    cli.add_typer(db_app, name="db")
