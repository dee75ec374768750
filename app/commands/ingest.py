"""``mmdx scp``: the DICOM Storage SCP in the foreground, dispatching stable studies.

It receives objects (each one durable and indexed before it is acknowledged),
and every few seconds enqueues one job per study whose content has been quiet
for ``scp.stable_age_s``; ``mmdx worker`` processes the jobs.  SIGINT or
SIGTERM stops it cleanly (open associations are closed; an object whose
response was not sent is not acknowledged, so the sender retries it).
Log lines carry AE titles, addresses and UIDs, never patient demographics.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from core.errors import MmdxError
from core.identifiers import SystemClock

if TYPE_CHECKING:
    from store.db import Database

log = logging.getLogger("mmdx.scp")


def _dispatch(db: Database, stable_age_s: float) -> int:
    from ingest.stability import dispatch_stable

    with db.session() as session:
        return len(dispatch_stable(session, SystemClock().now(), stable_age_s))


def scp_command(
    host: Annotated[str | None, typer.Option("--host", help="address to listen on (default: scp.host)")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="TCP port (default: scp.port)")] = None,
    ae_title: Annotated[
        str | None, typer.Option("--ae-title", "-a", help="our AE title (default: scp.ae_title)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (else $MMDX_CONFIG, configs/default.yaml)")
    ] = None,
    dispatch_every: Annotated[
        float, typer.Option("--dispatch-every", help="seconds between stable-study checks", min=0.1)
    ] = 5.0,
    max_pdu: Annotated[
        int | None, typer.Option("--max-pdu", help="maximum PDU length we receive, bytes (0: unlimited)", min=0)
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every C-STORE")] = False,
) -> None:
    """Run the Storage SCP (C-ECHO, C-STORE) until SIGINT/SIGTERM."""
    from core.config import load_settings
    from ingest.scp import StorageServer
    from store.db import Database

    err = Console(stderr=True)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    try:
        settings = load_settings(config)
        db = Database.from_settings(settings)
        server = StorageServer(settings, db, host=host, port=port, ae_title=ae_title, max_pdu=max_pdu)
        server.start()
    except MmdxError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot listen on {host or settings.scp.host}:{port or settings.scp.port}: {exc}")
        raise typer.Exit(2) from None

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    err.print(
        f"mmdx scp: {server.ae_title} on {server.host}:{server.port}, storing in {settings.storage.store_dir} "
        f"(stable after {settings.scp.stable_age_s:g} s)"
    )
    try:
        while not stop.wait(dispatch_every):
            try:
                created = _dispatch(db, settings.scp.stable_age_s)
            except Exception as exc:  # the database may be busy or down: keep receiving, retry next tick
                log.error("stable-study dispatch failed: %s", type(exc).__name__)
                continue
            if created:
                log.info("dispatched %d stable stud%s", created, "y" if created == 1 else "ies")
    finally:
        server.stop()
        db.dispose()
        counts = ", ".join(f"{k.value} {v}" for k, v in server.receiver.counts.items())
        log.info("received: %s", counts)


def register(cli: typer.Typer) -> None:
    """Add ``mmdx scp`` to the CLI."""
    cli.command("scp")(scp_command)
