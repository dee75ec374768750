"""The issue 19 C-FIND flood against each SCP engine: how much a peer can make it buffer before it aborts.

A C-FIND-RQ with a dataset on a storage context, then dataset fragments that never end (``--mb`` of them at
most), sent as fast as the SCP reads; reported: bytes the SCP took before it aborted the association, and the
server process's RSS before and after (``limits.max_buffered_bytes`` default 64 MiB).

    .venv/bin/python bench/robustness/scp_flood.py [--mb 1500]
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _request() -> bytes:
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "FLOOD"
    primitive.called_ae_title = "MMDX"
    ctx = build_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])
    ctx.context_id = 1
    primitive.presentation_context_definition_list = [ctx]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    primitive.user_information = [max_length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _p_data(control: int, payload: bytes) -> bytes:
    pdv = struct.pack(">LBB", len(payload) + 2, 1, control) + payload
    return struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv


def _flood(engine: str, mb: int) -> tuple[float, float, float]:
    from core.config import load_settings
    from ingest.scp import StorageServer
    from store.db import Database

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        settings = load_settings(
            None,
            use_project_defaults=False,
            database={"url": f"sqlite:///{t / 'mmdx.db'}"},
            storage={"store_dir": t / "store", "out_dir": t / "out", "quarantine_dir": t / "q"},
            scp={"ae_title": "MMDX", "allowed_calling_aes": ["FLOOD"]},
        )
        db = Database.from_settings(settings)
        server = StorageServer(settings, db, port=0, engine=engine, recover=False)
        server.start()
        before = _rss_mb()
        sent = 0
        body = b"".join(
            struct.pack("<HHL", 0, el, len(v)) + v
            for el, v in [(0x0002, b"1.2.840.10008.5.1.4.1.2.2.1\x00"), (0x0100, b"\x20\x00"), (0x0800, b"\x00\x00")]
        )
        command = struct.pack("<HHLL", 0, 0, 4, len(body)) + body
        fragment = _p_data(0x00, b"\x00" * 16000)
        try:
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(_request())
                sock.settimeout(10)
                header = sock.recv(6, socket.MSG_WAITALL)
                sock.recv(struct.unpack(">L", header[2:6])[0], socket.MSG_WAITALL)
                sock.sendall(_p_data(0x03, command))
                while sent < mb << 20:
                    sock.sendall(fragment)
                    sent += len(fragment)
        except OSError:
            pass
        time.sleep(0.5)
        after = _rss_mb()
        server.stop()
        db.dispose()
        return sent / 2**20, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1500, help="most MiB of dataset fragments to send")
    args = parser.parse_args()
    for engine in ("fast", "pynetdicom"):
        sent, before, after = _flood(engine, args.mb)
        print(f"{engine:11} sent before the abort {sent:8.1f} MiB; server RSS {before:6.0f} -> {after:6.0f} MB")


if __name__ == "__main__":
    main()
