"""``mmdx orders``: receive orders (HL7 listener, files, FHIR polling, worklist) and list them.

``listen`` runs the MLLP listener (ORM^O01 / OMI^O23, answered AA/AE/AR);
``import`` takes HL7 messages or FHIR ServiceRequests (a resource or a Bundle)
from files; ``poll`` asks the configured FHIR server for ServiceRequests;
``worklist`` asks the Modality Worklist for one accession number; ``list``
shows the stored orders and the study each was matched to.  Nothing here
prints patient data: orders are shown by their numbers, procedure and state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from app.commands import ConfigOption, app_context
from app.orders import hl7_handler
from core.errors import IngestError, StoreError
from core.orders import OrderStatus
from ingest.orders.fhir_orders import poll_service_requests
from ingest.orders.intake import accept_service_request, fetch_from_worklist, receive_hl7, store_order
from ingest.orders.mllp import MllpServer, split_frames
from store import orders as order_store

console = Console()
err_console = Console(stderr=True)

orders_app = typer.Typer(help="Orders from the RIS/EHR: HL7, FHIR, DICOM worklist.", no_args_is_help=True)


@orders_app.command("listen")
def listen(
    host: Annotated[str | None, typer.Option(help="bind address (default orders.mllp_host)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default orders.mllp_port)")] = None,
    config: ConfigOption = None,
) -> None:
    """Receive HL7 ORM^O01 / OMI^O23 orders over MLLP until interrupted."""
    ctx = app_context(config)
    settings = ctx.settings.orders
    server = MllpServer((host or settings.mllp_host, port or settings.mllp_port), hl7_handler(ctx))
    console.print(f"listening for HL7 orders on {host or settings.mllp_host}:{server.port} (MLLP)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        ctx.db.dispose()


def _hl7_messages(data: bytes) -> list[bytes]:
    if data.startswith(b"\x0b"):
        return split_frames(bytearray(data))
    text = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    parts = [b"MSH" + p for p in text.split(b"MSH") if p.strip(b"\r ")]
    return [p.rstrip(b"\r") + b"\r" for p in parts]


def _service_requests(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc.get("resourceType") == "Bundle":
        return [e["resource"] for e in doc.get("entry", []) if (e.get("resource") or {}).get("resourceType")]
    return [doc]


@orders_app.command("import")
def import_files(
    paths: Annotated[list[Path], typer.Argument(help="HL7 v2 files (ER7 or MLLP-framed) or FHIR JSON")],
    config: ConfigOption = None,
) -> None:
    """Store the orders in HL7 or FHIR files; refused ones are listed with their reason (exit 1)."""
    ctx = app_context(config)
    refused = 0
    try:
        for path in paths:
            data = path.read_bytes()
            if data.lstrip()[:1] == b"{":
                for resource in _service_requests(json.loads(data)):
                    try:
                        _, created = accept_service_request(ctx.db, resource, ctx.clock.now())
                        console.print(f"{path.name}: ServiceRequest {'stored' if created else 'updated'}")
                    except (IngestError, StoreError) as exc:
                        refused += 1
                        err_console.print(f"[red]{path.name}[/red]: {exc}")
                continue
            for message in _hl7_messages(data):
                ack = receive_hl7(ctx.db, message, ctx.clock.now()).decode("utf-8")
                segments = {s.split("|", 1)[0]: s.split("|") for s in ack.split("\r") if s}
                code = segments["MSA"][1]
                if code == "AA":
                    console.print(f"{path.name}: order message {segments['MSA'][2]} accepted (AA)")
                else:
                    refused += 1
                    reason = segments.get("ERR", [""] * 9)[-1]
                    err_console.print(f"[red]{path.name}[/red]: refused ({code}) {reason}")
    finally:
        ctx.db.dispose()
    if refused:
        raise typer.Exit(1)


@orders_app.command("poll")
def poll(
    once: Annotated[bool, typer.Option("--once", help="one search, then exit")] = False,
    config: ConfigOption = None,
) -> None:
    """Poll the FHIR server (``orders.fhir_url``) for ServiceRequests and store them."""
    ctx = app_context(config)
    settings = ctx.settings.orders
    if not settings.fhir_url:
        err_console.print("[red]error:[/red] orders.fhir_url is not configured")
        raise typer.Exit(2)
    headers = {"Authorization": settings.fhir_authorization} if settings.fhir_authorization else {}
    since: str | None = None
    try:
        with httpx.Client(headers={"Accept": "application/fhir+json", **headers}) as client:
            while True:
                try:
                    found, since = poll_service_requests(client, settings.fhir_url, since=since)
                except IngestError as exc:
                    err_console.print(f"[red]error:[/red] {exc}")
                    found = []
                stored = 0
                for item in found:
                    if isinstance(item, IngestError):
                        err_console.print(f"[yellow]skipped[/yellow] {item}")
                        continue
                    try:
                        store_order(ctx.db, item, ctx.clock.now())
                        stored += 1
                    except StoreError as exc:
                        err_console.print(f"[yellow]skipped[/yellow] ServiceRequest/{item.service_request_id}: {exc}")
                console.print(f"{stored} ServiceRequest(s) stored")
                if once:
                    return
                time.sleep(settings.poll_interval_s)
    finally:
        ctx.db.dispose()


@orders_app.command("worklist")
def worklist(
    accession: Annotated[str, typer.Argument(help="accession number to look up")],
    config: ConfigOption = None,
) -> None:
    """Ask the Modality Worklist (``orders.worklist``) for one accession number and store the order."""
    ctx = app_context(config)
    peer = ctx.settings.orders.worklist
    if peer is None:
        err_console.print("[red]error:[/red] orders.worklist is not configured")
        raise typer.Exit(2)
    try:
        found = fetch_from_worklist(
            ctx.db, peer, accession, ctx.clock.now(), calling_ae=ctx.settings.orders.calling_ae_title
        )
    except (IngestError, StoreError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        ctx.db.dispose()
    if not found:
        err_console.print("no worklist entry for that accession number")
        raise typer.Exit(1)
    console.print(f"stored the order for placer number {found[0].placer_number}")


@orders_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option(help="only this status: scheduled, in-progress, ...")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per order, a line each")] = False,
    config: ConfigOption = None,
) -> None:
    """Stored orders, newest first, with the matched study, match strength and conflicts (no patient data)."""
    ctx = app_context(config)
    try:
        wanted = OrderStatus(status) if status else None
    except ValueError:
        err_console.print(f"[red]error:[/red] --status: expected one of {[s.value for s in OrderStatus]}")
        raise typer.Exit(2) from None
    try:
        with ctx.db.session(readonly=True) as session:
            stored = order_store.list_orders(session, limit=limit, status=wanted)
    finally:
        ctx.db.dispose()
    rows = [
        {
            "placer": s.order.placer_number,
            "filler": s.order.filler_number,
            "accession": s.order.accession_number,
            "procedure": s.order.procedure.display if s.order.procedure else None,
            "modality": s.order.modality,
            "status": s.order.status.value,
            "source": s.order.source.value,
            "study_instance_uid": s.study_instance_uid,
            "match": s.strength.value if s.strength else None,
            "conflicts": list(s.conflicts),
        }
        for s in stored
    ]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} order(s)")
    for col in ("placer", "filler", "accession", "procedure", "status", "source", "study", "match", "conflicts"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            str(row["placer"]),
            str(row["filler"] or ""),
            str(row["accession"] or ""),
            str(row["procedure"] or ""),
            str(row["status"]),
            str(row["source"]),
            str(row["study_instance_uid"] or ""),
            str(row["match"] or ""),
            ", ".join(row["conflicts"]),  # type: ignore[arg-type]
        )
    console.print(table)


def register(cli: typer.Typer) -> None:
    """Add the ``orders`` command group to the CLI."""
    cli.add_typer(orders_app, name="orders")
