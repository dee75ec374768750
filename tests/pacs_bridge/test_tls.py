"""TLS towards every peer kind: DICOM C-STORE, HL7 v2 over MLLP and HTTPS (STOW-RS to Orthanc).

Each sender verifies the peer against the destination's ``tls.ca_certificates`` and refuses one it
cannot verify (nothing is sent; the item is retried with a reason that names the certificate);
a client certificate is presented when the peer requires one (mutual TLS).
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from pynetdicom import AE, evt

from core.identifiers import FixedClock
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.peers import free_port, require_binary, start_fhir_server, start_mllp_listener, stop_pid


def _cert(folder: Path, name: str = "pacs") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made by openssl, as a site's PKI would)."""
    openssl = require_binary("openssl")
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_cstore_over_tls_verified_by_the_configured_ca(tmp_path: Path, versions: Versions, bridge_db: Database) -> None:
    cert, key = _cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    received: list[str] = []

    def on_store(event: object) -> int:
        received.append(str(event.dataset.SOPInstanceUID))  # type: ignore[attr-defined]
        return 0x0000

    ae = AE(ae_title="TLSPACS")
    ae.add_supported_context("1.2.840.10008.5.1.4.1.1.88.22", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    ae.add_supported_context("1.2.840.10008.5.1.4.1.1.88.33", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    ae.add_supported_context("1.2.840.10008.5.1.4.1.1.88.65", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, ssl_context=server_ctx, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        base = {"type": "dicom", "host": "127.0.0.1", "port": port, "ae_title": "TLSPACS", "max_attempts": 1}
        trusted = settings_with(tmp_path, {"pacs": {**base, "tls": {"enabled": True, "ca_certificates": str(cert)}}})
        store_versions(bridge_db, versions.all[:1], {"sr": ["pacs"]})
        assert OutboxLoop(bridge_db, trusted, FixedClock(T0)).run_once().delivered == 1
        assert len(received) == 1
        # the same PACS, but mmdx trusts only the system CAs: the handshake fails, nothing is sent
        (tmp_path / "other").mkdir()
        other_db = Database.from_settings(settings_with(tmp_path / "other", {}))
        untrusted = settings_with(tmp_path / "other", {"pacs": {**base, "tls": {"enabled": True}}})
        store_versions(other_db, versions.all[:1], {"sr": ["pacs"]})
        OutboxLoop(other_db, untrusted, FixedClock(T0)).run_once()
        with other_db.session() as s:
            (item,) = outbox.list_items(s)
        other_db.dispose()
        assert item.state is OutboxState.DEAD and "certificate was not verified" in (item.last_error or "")
        assert "tls.ca_certificates" in (item.last_error or "")
        assert len(received) == 1
    finally:
        server.shutdown()


def _by_destination(db: Database) -> dict[str, outbox.OutboxItem]:
    with db.session() as s:
        return {i.destination: i for i in outbox.list_items(s)}


def test_mllp_over_tls_verified_by_the_configured_ca(tmp_path: Path, versions: Versions, bridge_db: Database) -> None:
    cert, key = _cert(tmp_path)
    ris = start_mllp_listener(tmp_path / "mllp", "AA", tls=(cert, key))
    try:
        base = {"type": "mllp", "host": "127.0.0.1", "port": ris.port, "timeout_s": 5}
        settings = settings_with(
            tmp_path,
            {
                "trusted": {**base, "tls": {"enabled": True, "ca_certificates": str(cert)}},
                # TLS on, but only the system CAs: the listener's certificate cannot be verified
                "untrusted": {**base, "tls": {"enabled": True}},
                # TLS off: a plain MLLP client talking to a TLS listener gets no ACK
                "plain": {**base, "timeout_s": 1},
            },
        )
        store_versions(bridge_db, versions.all[:1], {"oru": ["trusted", "untrusted", "plain"]})
        summary = OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
        assert (summary.delivered, summary.retried) == (1, 2), summary.errors
        items = _by_destination(bridge_db)
        assert items["trusted"].state is OutboxState.DELIVERED
        bad = items["untrusted"]
        assert bad.state is OutboxState.PENDING and bad.attempts == 1
        assert "certificate was not verified" in (bad.last_error or "")
        assert "check tls.ca_certificates" in (bad.last_error or "")
        assert items["plain"].state is OutboxState.PENDING
        # only the verified connection carried a message
        assert [g["result_status"] for g in ris.received()] == ["P"]
    finally:
        stop_pid(ris.proc)


def test_mllp_mutual_tls_presents_the_configured_client_certificate(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    cert, key = _cert(tmp_path)
    client, client_key = _cert(tmp_path, "mmdx-client")
    ris = start_mllp_listener(tmp_path / "mllp", "AA", tls=(cert, key), client_ca=client)
    try:
        base = {"type": "mllp", "host": "127.0.0.1", "port": ris.port, "timeout_s": 5}
        tls = {"enabled": True, "ca_certificates": str(cert)}
        settings = settings_with(
            tmp_path,
            {
                "with_cert": {**base, "tls": {**tls, "certificate": str(client), "private_key": str(client_key)}},
                "without_cert": {**base, "tls": tls},
            },
        )
        store_versions(bridge_db, versions.all[:1], {"oru": ["with_cert", "without_cert"]})
        summary = OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
        assert (summary.delivered, summary.retried) == (1, 1), summary.errors
        items = _by_destination(bridge_db)
        assert items["with_cert"].state is OutboxState.DELIVERED
        refused = items["without_cert"]
        assert refused.state is OutboxState.PENDING and refused.last_error
        assert len(ris.received()) == 1
    finally:
        stop_pid(ris.proc)


def test_fhir_over_https_with_mutual_tls_to_medplum(tmp_path: Path, versions: Versions, bridge_db: Database) -> None:
    cert, key = _cert(tmp_path)
    client, client_key = _cert(tmp_path, "mmdx-client")
    fhir = start_fhir_server(tmp_path / "fhir", https=(cert, key), client_cert=(client, client_key))
    try:
        assert fhir.url.startswith("https://")
        ehr = {"type": "fhir", "url": fhir.url, "timeout_s": 10}
        mine = {"certificate": str(client), "private_key": str(client_key)}
        settings = settings_with(
            tmp_path,
            {
                "trusted": {**ehr, "tls": {"enabled": True, "ca_certificates": str(cert), **mine}},
                # the server's certificate is not in the system CAs
                "untrusted": {**ehr, "tls": {"enabled": True, **mine}},
                # the server is verified, but it requires a client certificate this destination has not got
                "anonymous": {**ehr, "tls": {"enabled": True, "ca_certificates": str(cert)}},
            },
        )
        store_versions(bridge_db, versions.all[:1], {"fhir": ["trusted", "untrusted", "anonymous"]})
        summary = OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
        assert (summary.delivered, summary.retried) == (1, 2), summary.errors
        items = _by_destination(bridge_db)
        assert items["trusted"].state is OutboxState.DELIVERED
        untrusted = items["untrusted"]
        assert untrusted.state is OutboxState.PENDING and untrusted.attempts == 1
        assert "certificate was not verified" in (untrusted.last_error or "")
        anonymous = items["anonymous"]
        assert anonymous.state is OutboxState.PENDING
        assert "client certificate (tls.certificate)" in (anonymous.last_error or "")
        # exactly one report reached the server (read back over the same mutual TLS)
        assert len(fhir.search("DiagnosticReport")) == 1
        # and the server itself refuses a client without a certificate, not only mmdx's sender
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{fhir.url}/Patient", verify=ssl.create_default_context(cafile=str(cert)), timeout=5)
    finally:
        stop_pid(fhir.proc)
