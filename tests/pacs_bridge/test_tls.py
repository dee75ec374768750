"""DICOM TLS: the C-STORE requestor verifies the PACS against the configured CA, and refuses one it cannot verify."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from pynetdicom import AE, evt

from core.identifiers import FixedClock
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.peers import free_port, require_binary


def _cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made by openssl, as a site's PKI would)."""
    openssl = require_binary("openssl")
    key, cert = folder / "pacs.key", folder / "pacs.pem"
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
        assert item.state is OutboxState.DEAD and "CERTIFICATE_VERIFY_FAILED" in (item.last_error or "")
        assert len(received) == 1
    finally:
        server.shutdown()
