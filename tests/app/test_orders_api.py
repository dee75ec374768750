"""Orders by FHIR: POST /api/v1/orders, polling the EHR's FHIR server (Medplum's router as the EHR),
``mmdx orders import``, and the pipeline asking the Modality Worklist (DCMTK wlmscpfs) by accession."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.service import create_app
from store import orders as order_store
from tests.ingest.test_orders import orm, service_request
from tests.peers import start_fhir_server, stop_pid

runner = CliRunner()


def test_post_service_request_and_list(workdir: Path) -> None:
    ctx = AppContext.create()
    client = TestClient(create_app(ctx))
    r = client.post("/api/v1/orders", json=service_request(), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    assert r.json() == {"orders": [{"id": 1, "created": True}]}
    again = client.post(
        "/api/v1/orders",
        json={"resourceType": "Bundle", "type": "collection", "entry": [{"resource": service_request()}]},
    )
    assert again.json() == {"orders": [{"id": 1, "created": False}]}
    bad = client.post("/api/v1/orders", json=service_request(status="bogus"))
    assert bad.status_code == 422 and "ServiceRequest.status" in bad.json()["detail"]
    listed = client.get("/api/v1/orders").json()
    assert [(o["placer"], o["accession"], o["source"]) for o in listed] == [("PL-FHIR-1", "ACC-F1", "fhir")]
    assert "Søren" not in json.dumps(listed) and "MRN9" not in json.dumps(listed)
    ctx.db.dispose()


def test_poll_service_requests_from_a_fhir_server(workdir: Path) -> None:
    server = start_fhir_server(workdir / "fhir")
    try:
        patient = httpx.post(
            f"{server.url}/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.3.6", "value": "MRN-P1"}],
                "name": [{"family": "Poll", "given": ["Anna"]}],
                "gender": "female",
                "birthDate": "1970-02-03",
            },
            timeout=30,
        ).json()
        sr = service_request(subject={"reference": f"Patient/{patient['id']}"}, contained=[])
        sr.pop("id")
        created = httpx.post(f"{server.url}/ServiceRequest", json=sr, timeout=30)
        assert created.status_code == 201, created.text
        result = runner.invoke(cli, ["orders", "poll", "--once"], env={"MMDX_ORDERS__FHIR_URL": server.url})
        assert result.exit_code == 0, result.output
        assert "1 ServiceRequest(s) stored" in result.output
        ctx = AppContext.create()
        with ctx.db.session() as session:
            order = order_store.find_by_accession(session, "ACC-F1")
        ctx.db.dispose()
        assert order is not None
        assert order.service_request_id == created.json()["id"]  # basedOn can reference it literally
        assert order.patient.identifiers[0].value == "MRN-P1" and order.patient.name == "Poll^Anna"
    finally:
        stop_pid(server.proc)


def test_import_hl7_and_fhir_files(workdir: Path) -> None:
    (workdir / "a.hl7").write_bytes(orm().replace(b"\r", b"\n") + orm(placer="PL2", accession="ACC2"))
    (workdir / "bad.hl7").write_bytes(orm(pid="", placer="PL3", accession="ACC3"))
    (workdir / "b.json").write_text(json.dumps(service_request()))
    result = runner.invoke(cli, ["orders", "import", "a.hl7", "bad.hl7", "b.json"])
    assert result.exit_code == 1  # one refused
    assert result.output.count("accepted (AA)") == 2
    assert "refused (AE)" in result.output and "PID-3" in result.output
    listed = runner.invoke(cli, ["orders", "list", "--json"])
    placers = sorted(json.loads(line)["placer"] for line in listed.output.splitlines())
    assert placers == ["PL-FHIR-1", "PL1001", "PL2"]


def test_mmdx_orders_listen_as_a_process(workdir: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from ingest.orders.mllp import send
    from tests.peers import free_port

    port = free_port()
    mmdx = str(Path(sys.executable).parent / "mmdx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMDX_")}
    proc = subprocess.Popen(
        [mmdx, "orders", "listen", "--port", str(port)], cwd=workdir, env=env, stdout=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        ack = b""
        while time.monotonic() < deadline:
            try:
                ack = send("127.0.0.1", port, orm(), timeout_s=5)
                break
            except OSError:
                time.sleep(0.2)
        assert b"MSA|AA|MSG-PL1001" in ack
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    listed = runner.invoke(cli, ["orders", "list", "--json"])
    assert json.loads(listed.output.splitlines()[0])["placer"] == "PL1001"


def test_serve_runs_the_order_listener_when_configured(workdir: Path) -> None:
    from app.supervisor import Parts, Supervisor
    from ingest.orders.mllp import send
    from tests.peers import free_port

    port = free_port()
    ctx = AppContext.create(None, orders={"run_listener": True, "mllp_port": port})
    supervisor = Supervisor(ctx, Parts(scp=False, workers=0, sender=False))
    supervisor.start()
    try:
        assert supervisor.components["orders-mllp"] is True
        assert b"MSA|AA" in send("127.0.0.1", port, orm(), timeout_s=10)
    finally:
        supervisor.stop()
        ctx.db.dispose()
    assert supervisor.components["orders-mllp"] is False
