"""``mmdx send`` delivers the outbox; ``mmdx outbox`` shows it and re-queues dead items.

``mmdx worker`` and ``mmdx serve`` drain the outbox too; ``mmdx send`` is for a sender on its
own (another host, or a catch-up run with ``--once``).  Listings show UIDs, destinations and
PHI-free errors only.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.commands import ConfigOption
from core.config import Settings, load_settings
from core.errors import MmdxError
from core.identifiers import SystemClock
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database

console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)

outbox_app = typer.Typer(help="Deliveries: list by state, re-queue dead items.", invoke_without_command=True)


def _open(config: Path | None) -> tuple[Database, Settings]:
    try:
        settings = load_settings(config)
        return Database.from_settings(settings), settings
    except MmdxError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def send_command(
    config: ConfigOption = None,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit")] = False,
) -> None:
    """Deliver queued results to the configured destinations (PACS, FHIR, MLLP, folder, webhook)."""
    db, settings = _open(config)
    loop = OutboxLoop(db, settings, SystemClock())
    try:
        if once:
            total = 0
            failed = 0
            while True:
                summary = loop.run_once()
                if summary.idle:
                    break
                total += summary.delivered + summary.awaiting_commitment
                failed += summary.retried + summary.dead
                console.print(summary.line())
                for error in summary.errors[:5]:
                    err_console.print(f"  [yellow]{error}[/yellow]")
                if summary.delivered + summary.awaiting_commitment + summary.skipped + summary.dead == 0:
                    break  # only retries left: they wait for their backoff
            console.print(f"sent: {total} delivered or awaiting commitment, {failed} failed tries")
            if failed:
                raise typer.Exit(1)
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        loop.run_forever(stop)
    finally:
        loop.close()
        db.dispose()


_STATE_STYLE = {
    outbox.OutboxState.DELIVERED: "green",
    outbox.OutboxState.DEAD: "red",
    outbox.OutboxState.PENDING: "yellow",
    outbox.OutboxState.AWAITING_COMMITMENT: "cyan",
    outbox.OutboxState.SUPERSEDED: "dim",
}


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    config: ConfigOption = None,
    state: Annotated[
        str | None, typer.Option(help="Only this state: " + ", ".join(s.value for s in outbox.OutboxState))
    ] = None,
    study: Annotated[str | None, typer.Option(help="Only this Study Instance UID")] = None,
    destination: Annotated[str | None, typer.Option(help="Only this destination")] = None,
    limit: Annotated[int, typer.Option(help="Newest N items")] = 50,
) -> None:
    """Outbox items, newest first, with attempts and the last error; counts by state."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        wanted = outbox.OutboxState(state) if state else None
    except ValueError:
        err_console.print(f"[red]--state {state!r}: expected one of {[s.value for s in outbox.OutboxState]}[/red]")
        raise typer.Exit(2) from None
    db, _ = _open(config)
    try:
        with db.session(readonly=True) as session:
            items = outbox.list_items(session, state=wanted, study_uid=study, destination=destination, limit=limit)
            counts = outbox.counts_by_state(session)
    finally:
        db.dispose()
    table = Table(title="Outbox")
    for col in ("ID", "Destination", "Kind", "Study", "Version", "State", "Attempts", "Next try / updated"):
        table.add_column(col, overflow="fold")
    table.add_column("Last error", overflow="fold", max_width=60)
    for i in items:
        when = i.next_attempt_at if i.state is outbox.OutboxState.PENDING else i.updated_at
        table.add_row(
            str(i.id),
            i.destination,
            i.kind,
            i.study_uid,
            f"v{i.report_version} {i.report_status.value}",
            f"[{_STATE_STYLE[i.state]}]{i.state.value}[/]",
            str(i.attempts),
            f"{when:%Y-%m-%d %H:%M:%S}",
            i.last_error or "",
        )
    console.print(table)
    console.print(", ".join(f"{s.value}: {n}" for s, n in counts.items()))


@outbox_app.command("retry")
def outbox_retry(
    item_id: Annotated[int | None, typer.Argument(help="Outbox item to re-queue")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Re-queue every dead item")] = False,
    destination: Annotated[str | None, typer.Option(help="With --dead: only this destination")] = None,
    config: ConfigOption = None,
) -> None:
    """Re-queue a dead item (or all of them) for delivery now, attempts from zero; superseded drafts stay skipped."""
    if (item_id is None) == (not dead):
        err_console.print("[red]give an item ID or --dead (not both)[/red]")
        raise typer.Exit(2)
    db, _ = _open(config)
    clock = SystemClock()
    try:
        with db.session() as session:
            if dead:
                n = outbox.retry_all_dead(session, clock.now(), destination=destination)
            else:
                assert item_id is not None
                outbox.retry_dead(session, item_id, clock.now())
                n = 1
    except MmdxError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    console.print(f"re-queued {n} item(s)")


def register(cli: typer.Typer) -> None:
    cli.command("send")(send_command)
    cli.add_typer(outbox_app, name="outbox")
