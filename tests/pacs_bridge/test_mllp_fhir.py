"""HL7 v2 over MLLP (a listener answering AA/AE/AR/nothing) and FHIR transactions against Medplum's FHIR router."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.identifiers import FixedClock
from pacs_bridge.fhir import _split_bundle
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.peers import FhirServer, MllpListener, start_fhir_server, start_mllp_listener, stop_pid


@pytest.fixture
def listener_factory(tmp_path: Path) -> Iterator[object]:
    started: list[MllpListener] = []

    def start(mode: str) -> MllpListener:
        listener = start_mllp_listener(tmp_path / "mllp", mode)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        stop_pid(listener.proc)


def _only(db: Database) -> outbox.OutboxItem:
    with db.session() as s:
        (item,) = outbox.list_items(s)
    return item


def test_mllp_aa_delivers_each_version_in_order(
    tmp_path: Path, versions: Versions, bridge_db: Database, listener_factory: object
) -> None:
    ris = listener_factory("AA")  # type: ignore[operator]
    settings = settings_with(
        tmp_path, {"ris": {"type": "mllp", "host": "127.0.0.1", "port": ris.port, "skip_superseded": False}}
    )
    store_versions(bridge_db, versions.all, {"oru": ["ris"]})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    while not loop.run_once().idle:
        pass
    with bridge_db.session() as s:
        assert {i.state for i in outbox.list_items(s)} == {OutboxState.DELIVERED}
    got = ris.received()
    # preliminary, final, corrected (amended), and the withdrawal: in version order, once each
    assert [g["result_status"] for g in got] == ["P", "F", "C", "W"]
    assert all(g["type"].startswith("ORU^R01") for g in got)


@pytest.mark.parametrize(
    ("mode", "state", "text"),
    [
        ("AE", OutboxState.PENDING, "application error AE: interface engine busy"),
        ("AR", OutboxState.DEAD, "rejected AR: unknown observation code"),
        ("none", OutboxState.PENDING, "no ACK within"),
    ],
)
def test_mllp_ae_is_retried_ar_is_permanent_and_silence_is_retried(
    tmp_path: Path,
    versions: Versions,
    bridge_db: Database,
    listener_factory: object,
    mode: str,
    state: OutboxState,
    text: str,
) -> None:
    ris = listener_factory(mode)  # type: ignore[operator]
    settings = settings_with(
        tmp_path, {"ris": {"type": "mllp", "host": "127.0.0.1", "port": ris.port, "timeout_s": 1, "base_delay_s": 5}}
    )
    store_versions(bridge_db, versions.all[:1], {"oru": ["ris"]})
    OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
    item = _only(bridge_db)
    assert item.state is state and item.attempts == 1
    assert text in (item.last_error or "")
    assert len(ris.received()) == 1


@pytest.fixture
def fhir(tmp_path: Path) -> Iterator[FhirServer]:
    server = start_fhir_server(tmp_path / "fhir", token="s3cret")
    yield server
    stop_pid(server.proc)


def test_report_bundles_exceed_a_strict_transaction_and_are_split_in_dependency_order(versions: Versions) -> None:
    bundle = json.loads(next(a for a in versions.all[0].artefacts if a.kind == "fhir").path.read_bytes())
    parts = _split_bundle(bundle, 8)
    assert sum(len(p) for p in parts) == len(bundle["entry"])
    assert all(len(p) <= 8 for p in parts)
    seen: set[str] = set()
    for part in parts:
        here = {e["fullUrl"] for e in part}
        for e in part:
            refs = {r for r in json.dumps(e["resource"]).split('"') if r.startswith("urn:uuid:")} - {e["fullUrl"]}
            assert refs <= seen | here  # nothing refers forward to a later part
        seen |= here


def test_fhir_delivery_to_medplum_creates_one_of_each_and_a_resend_creates_nothing(
    tmp_path: Path, versions: Versions, bridge_db: Database, fhir: FhirServer
) -> None:
    dest = {"type": "fhir", "url": fhir.url, "authorization": "Bearer s3cret", "skip_superseded": False}
    settings = settings_with(tmp_path, {"ehr": dest})
    store_versions(bridge_db, versions.all, {"fhir": ["ehr"]})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    while not loop.run_once().idle:
        pass
    with bridge_db.session() as s:
        items = outbox.list_items(s)
    assert {i.state for i in items} == {OutboxState.DELIVERED}, [i.last_error for i in items]

    def snapshot() -> dict[str, int]:
        return {
            t: len(fhir.search(t)) for t in ("Patient", "DiagnosticReport", "Observation", "ImagingStudy", "Device")
        }

    first = snapshot()
    assert first["Patient"] == 1 and first["ImagingStudy"] == 1
    reports = fhir.search("DiagnosticReport")
    assert first["DiagnosticReport"] >= 1
    # one DiagnosticReport per report identifier, whatever the number of versions sent
    ids = Counter(json.dumps(r.get("identifier")) for r in reports)
    assert max(ids.values()) == 1
    statuses = {r["status"] for r in reports}
    assert statuses & {"entered-in-error", "final", "amended", "corrected"}, statuses
    # the same bundles again (a crash after sending, before recording): nothing new on the server
    (tmp_path / "again").mkdir()
    again = Database.from_settings(settings_with(tmp_path / "again", {"ehr": dest}))
    try:
        store_versions(again, versions.all, {"fhir": ["ehr"]})
        resend = OutboxLoop(again, settings, FixedClock(T0))
        while not resend.run_once().idle:
            pass
    finally:
        again.dispose()
    assert snapshot() == first


def test_fhir_refusals_keep_the_servers_words(
    tmp_path: Path, versions: Versions, bridge_db: Database, fhir: FhirServer
) -> None:
    settings = settings_with(
        tmp_path,
        {"ehr": {"type": "fhir", "url": fhir.url, "authorization": "Bearer wrong", "max_attempts": 1}},
    )
    store_versions(bridge_db, versions.all[:1], {"fhir": ["ehr"]})
    OutboxLoop(bridge_db, settings, FixedClock(T0 + timedelta(seconds=1))).run_once()
    item = _only(bridge_db)
    assert item.state is OutboxState.DEAD
    assert "HTTP 401" in (item.last_error or "") and "Unauthorized" in (item.last_error or "")


def test_an_entry_refused_inside_a_200_transaction_response_is_not_delivered(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answer = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {
                "response": {
                    "status": "422 Unprocessable Entity",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"diagnostics": "Patient.gender invalid"}],
                    },
                }
            }
        ],
    }

    class Handler(BaseHTTPRequestHandler):  # a server that answers 200 and reports per entry
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        settings = settings_with(tmp_path, {"ehr": {"type": "fhir", "url": url}})
        store_versions(bridge_db, versions.all[:1], {"fhir": ["ehr"]})
        assert OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once().dead == 1
        item = _only(bridge_db)
        assert "entry 1: HTTP 422" in (item.last_error or "") and "Patient.gender invalid" in (item.last_error or "")
    finally:
        server.shutdown()
