"""``mmdx token``, ``mmdx audit``, ``mmdx worklist``: the service's side on the terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.api.auth import AuthError, Role, mint_token
from app.commands import ConfigOption, app_context
from core.records import PriorityLevel, ReportStatus
from store import audit
from store.worklist import worklist

console = Console(width=None if Console().is_terminal else 200)
err = Console(stderr=True)


def _waited(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"


def token_command(
    subject: Annotated[str, typer.Argument(help="User id (the token's 'sub'; the audit's who)")],
    role: Annotated[
        list[Role], typer.Option("--role", "-r", help="clinician, technologist, integrator, admin (repeatable)")
    ],
    name: Annotated[str | None, typer.Option(help="Display name (signs reports)")] = None,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds (default auth.token_ttl_s)")] = None,
    config: ConfigOption = None,
) -> None:
    """Mint a bearer token for local use (HS256 secret, or RS256 with auth.private_key)."""
    ctx = app_context(config)
    try:
        print(mint_token(ctx.settings.auth, subject, role, name=name, now=datetime.now(UTC), ttl_s=ttl))
    except AuthError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def audit_command(
    study: Annotated[str | None, typer.Option(help="Only this Study Instance UID")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (user:<id>, mmdx, scp:<AE>...)")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action ('report.' for a prefix)")] = None,
    hours: Annotated[float | None, typer.Option(help="Only the last N hours")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows")] = 100,
    config: ConfigOption = None,
) -> None:
    """Read the audit log, newest first (who, what, when, from where)."""
    ctx = app_context(config)
    since = ctx.clock.now() - timedelta(hours=hours) if hours else None
    with ctx.db.session(readonly=True) as session:
        rows = audit.search(session, actor=actor, action=action, study_uid=study, since=since, limit=limit)
    table = Table(title=f"Audit ({len(rows)})")
    for col in ("When (UTC)", "Who", "Action", "Study", "Detail", "From"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r.at.strftime("%Y-%m-%d %H:%M:%S"), r.actor, r.action, r.study_uid or "", r.detail, r.origin or ""
        )
    console.print(table)


def worklist_command(
    all_statuses: Annotated[bool, typer.Option("--all", help="Signed and withdrawn reports too")] = False,
    modality: Annotated[str | None, typer.Option(help="Only studies with this modality")] = None,
    priority: Annotated[str | None, typer.Option(help="stat, urgent or routine")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows")] = 100,
    config: ConfigOption = None,
) -> None:
    """Reports waiting for a clinician: stat, urgent, routine, then the longest waiting."""
    ctx = app_context(config)
    level = None
    if priority is not None:
        try:
            level = PriorityLevel[priority.upper()]
        except KeyError:
            err.print(f"[red]--priority: expected stat, urgent or routine, got {priority!r}[/red]")
            raise typer.Exit(2) from None
    now = ctx.clock.now()
    with ctx.db.session(readonly=True) as session:
        rows = worklist(
            session,
            now,
            statuses=None if all_statuses else (ReportStatus.PRELIMINARY,),
            modality=modality,
            priority=level,
            limit=limit,
        )
    table = Table(title=f"Worklist ({len(rows)})")
    for col in ("Priority", "Reason", "AI", "Study", "Modality", "Body part", "Waiting", "Status", "Open by"):
        table.add_column(col, overflow="fold")
    styles = {PriorityLevel.STAT: "bold red", PriorityLevel.URGENT: "yellow", PriorityLevel.ROUTINE: ""}
    for r in rows:
        table.add_row(
            r.priority.name.lower(),
            r.priority_reason,
            "failed: " + "; ".join(r.model_errors) if r.model_errors else "",
            r.study_uid,
            ", ".join(r.modalities),
            ", ".join(r.body_parts),
            _waited(r.waiting_s(now)),
            f"{r.status.value} v{r.version}",
            r.opened_by or "",
            style=styles[r.priority],
        )
    console.print(table)


def retention_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go, delete nothing")] = False,
    config: ConfigOption = None,
) -> None:
    """Apply storage.retention_days / output_retention_days (never what a delivery or job still needs)."""
    from app.retention import apply_retention

    ctx = app_context(config)
    storage = ctx.settings.storage
    if storage.retention_days is None and storage.output_retention_days is None:
        err.print("no retention policy: set storage.retention_days and/or storage.output_retention_days")
        raise typer.Exit(2)
    result = apply_retention(ctx, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for uid in result.studies:
        console.print(f"{verb} study {uid}")
    console.print(
        f"{verb}: {len(result.studies)} stud(ies), {result.object_files} received object file(s), "
        f"{result.output_files} output file(s)"
    )


def register(cli: typer.Typer) -> None:
    """Add the service commands (one function each, so each can be read and tested on its own)."""
    cli.command("token")(token_command)
    cli.command("audit")(audit_command)
    cli.command("worklist")(worklist_command)
    cli.command("retention")(retention_command)
