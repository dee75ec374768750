"""``mmdx scp`` (the DICOM Storage SCP in the foreground, dispatching stable studies) and ``mmdx pull``.

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
from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.commands import ConfigOption
from core.errors import ConfigError, MmdxError
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
    config: ConfigOption = None,
    dispatch_every: Annotated[
        float, typer.Option("--dispatch-every", help="seconds between stable-study checks", min=0.1)
    ] = 5.0,
    max_pdu: Annotated[
        int | None, typer.Option("--max-pdu", help="maximum PDU length we receive, bytes (0: unlimited)", min=0)
    ] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help="DIMSE acceptor: pynetdicom or fast (default: scp.engine)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every C-STORE (DEBUG)")] = False,
) -> None:
    """Run the Storage SCP (C-ECHO, C-STORE) until SIGINT/SIGTERM."""
    from app.logs import configure_logging
    from core.config import load_settings
    from ingest.scp import StorageServer
    from store.db import Database

    err = Console(stderr=True)
    configure_logging(service=True, verbose=verbose)  # INFO now (a bare basicConfig after the CLI's is a no-op)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    # before starting: a signal during start-up stops cleanly once started (spare files removed, index closed)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        settings = load_settings(config)
        if settings.service.log_format == "json":
            configure_logging(service=True, verbose=verbose, json_lines=True)
        db = Database.from_settings(settings)
        server = StorageServer(settings, db, host=host, port=port, ae_title=ae_title, max_pdu=max_pdu, engine=engine)
        server.start()
    except MmdxError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot listen on {host or settings.scp.host}:{port or settings.scp.port}: {exc}")
        raise typer.Exit(2) from None

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


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}", param_hint=option) from None


def pull_command(
    study_uid: Annotated[str | None, typer.Option("--study-uid", help="Study Instance UID")] = None,
    accession: Annotated[str | None, typer.Option("--accession", help="accession number")] = None,
    patient_id: Annotated[str | None, typer.Option("--patient-id", help="patient ID (with --from/--to)")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="earliest study date, YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="latest study date, YYYY-MM-DD")] = None,
    via: Annotated[
        str, typer.Option("--via", help="dicomweb (QIDO/WADO) or dimse (C-FIND/C-MOVE to our running SCP)")
    ] = "auto",
    priors: Annotated[
        int | None, typer.Option("--priors", help="also pull this many prior studies (default: pull.fetch_priors)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Pull matching studies (and their priors) from the configured PACS into the store and index.

    With ``--via dimse`` the PACS sends the objects to our SCP (``scp.ae_title``), so ``mmdx scp`` must be running.
    """
    from core.config import load_settings
    from ingest.filestore import FileStore
    from ingest.pull import DicomWebPuller, DimsePuller, StudyQuery, find_priors
    from ingest.receive import Receiver
    from store import index as idx
    from store.db import Database

    err = Console(stderr=True)
    console = Console()
    try:
        settings = load_settings(config)
        query = StudyQuery(
            study_uid=study_uid,
            accession_number=accession,
            patient_id=patient_id,
            date_from=_date(date_from, "--from"),
            date_to=_date(date_to, "--to"),
        )
        route = via if via != "auto" else ("dicomweb" if settings.pull.dicomweb_url else "dimse")
        db = Database.from_settings(settings)
        receiver = Receiver(
            FileStore(settings.storage.store_dir, fsync=settings.storage.fsync), db, settings.storage.quarantine_dir
        )
        finder: DicomWebPuller | DimsePuller
        if route == "dicomweb":
            if not settings.pull.dicomweb_url:
                raise ConfigError("pull.dicomweb_url is not configured")
            finder = DicomWebPuller(settings.pull.dicomweb_url, receiver, timeout_s=settings.pull.timeout_s)
        elif route == "dimse":
            if settings.pull.dimse_peer is None:
                raise ConfigError("pull.dimse_peer is not configured")
            finder = DimsePuller(
                settings.pull.dimse_peer,
                calling_ae=settings.scp.ae_title,
                move_destination=settings.scp.ae_title,
                timeout_s=settings.pull.timeout_s,
            )
        else:
            raise typer.BadParameter(f"expected dicomweb or dimse, got {via!r}", param_hint="--via")

        def fetch(uid: str) -> str:
            if isinstance(finder, DicomWebPuller):
                r = finder.retrieve_study(uid)
                return f"{r.stored} new, {r.duplicate} already held, {r.conflict + r.rejected + r.failed} not stored"
            m = finder.move_study(uid)
            return f"{m.completed} sent to {settings.scp.ae_title}"

        matches = finder.find_studies(query)
        table = Table(title=f"Pulled via {route}")
        for col in ("Study", "Accession", "Date", "Role", "Result"):
            table.add_column(col, overflow="fold")
        want_priors = settings.pull.fetch_priors if priors is None else priors
        for match in matches:
            table.add_row(
                match.study_instance_uid, match.accession_number or "", str(match.study_date or ""), "requested",
                fetch(match.study_instance_uid),
            )  # fmt: skip
            if want_priors <= 0:
                continue
            with db.session(readonly=True) as session:
                study = idx.load_study(session, match.study_instance_uid)
            if study is None or not study.patient.identifiers or study.study_datetime is None:
                continue
            for prior in find_priors(finder, study, want_priors):
                table.add_row(
                    prior.study_instance_uid, prior.accession_number or "", str(prior.study_date or ""), "prior",
                    fetch(prior.study_instance_uid),
                )  # fmt: skip
        console.print(table)
        if not matches:
            err.print("[yellow]no matching study[/yellow]")
            raise typer.Exit(1)
    except MmdxError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def register(cli: typer.Typer) -> None:
    """Add ``mmdx scp`` and ``mmdx pull`` to the CLI."""
    cli.command("scp")(scp_command)
    cli.command("pull")(pull_command)
