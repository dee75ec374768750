"""Instructions per received object in the fast engine's network layer alone, under valgrind callgrind.

One process, one thread: a pre-built byte stream (A-ASSOCIATE-RQ, N C-STORE requests of a ~10 KB MR in 16 KB
P-DATA-TF PDUs, A-RELEASE-RQ) is served by the acceptor's ``Association`` from an in-memory socket (each read
returns what the buffer asks for, as a loaded sender's socket does), with a streaming handler that stores
nothing: only PDU reading, DIMSE reassembly and the answers are counted, the same every run.
Run at two sizes and take the difference, so start-up and imports cancel out::

    for n in 200 600; do
      PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.dul.$n \
          .venv/bin/python bench/bench_dul.py $n --instr
    done
    # per object: (Ir(600) - Ir(200)) / 400, Ir from `callgrind_annotate /tmp/cg.dul.N | grep 'PROGRAM TOTALS'`
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.scp import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES  # noqa: E402

try:
    from ingest.dul import AcceptorConfig, Association
except ImportError:  # the single-module layout before issue 18, for the baseline
    from ingest.ul_acceptor import AcceptorConfig, Association  # type: ignore[no-redef,import-not-found,unused-ignore]

SOURCE = ROOT.parent / "shared" / "data" / "dicom" / "small_basic" / "MR_small.dcm"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
PDU = 16384


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _uid(uid: str) -> bytes:
    raw = uid.encode()
    return raw + b"\x00" if len(raw) % 2 else raw


def _associate_rq() -> bytes:
    pc = _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, MR.encode()) + _item(0x40, EXPLICIT_LE.encode()))
    user = _item(0x50, _item(0x51, struct.pack(">L", PDU)))
    body = struct.pack(">HH", 1, 0) + b"BENCH".ljust(16) + b"SCU".ljust(16) + bytes(32)
    body += _item(0x10, b"1.2.840.10008.3.1.1.1") + pc + user
    return struct.pack(">BBL", 1, 0, len(body)) + body


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<HHL", 0, el, len(v)) + v for el, v in elements)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def _p_data(control: int, payload: bytes) -> bytes:
    return struct.pack(">BBLLBB", 4, 0, len(payload) + 6, len(payload) + 2, 1, control) + payload


def stream(n: int, dataset: bytes) -> bytes:
    """The whole association, as an SCU would send it."""
    out = [_associate_rq()]
    step = PDU - 6
    for i in range(n):
        uid = f"1.2.826.0.1.3680043.8.498.78.{i + 1}"
        cmd = _command(
            [
                (0x0002, _uid(MR)),
                (0x0100, struct.pack("<H", 0x0001)),
                (0x0110, struct.pack("<H", i + 1)),
                (0x0700, struct.pack("<H", 0)),
                (0x0800, struct.pack("<H", 0)),
                (0x1000, _uid(uid)),
            ]
        )
        out.append(_p_data(0x03, cmd))
        for pos in range(0, len(dataset), step):
            out.append(_p_data(0x02 if pos + step >= len(dataset) else 0x00, dataset[pos : pos + step]))
    out.append(struct.pack(">BBL", 5, 0, 4) + bytes(4))
    return b"".join(out)


class _Sink:
    def add(self, piece: memoryview, last: bool) -> None:
        pass

    def add_many(self, pieces: list[memoryview], last: bool) -> None:
        pass

    def finish(self) -> int:
        return 0

    def abort(self) -> None:
        pass


def _callgrind(state: str) -> None:
    """Switch callgrind's instrumentation (as ``bench_index_writer.py`` does): only the served stream is counted."""
    proc = subprocess.Popen(["callgrind_control", "-i", state, str(os.getpid())], stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        time.sleep(0.001)
    if proc.returncode:
        raise SystemExit(f"callgrind_control -i {state} failed (run under valgrind --tool=callgrind)")


class _Socket:
    """The peer's bytes already queued: ``recv_into`` fills the buffer, ``sendall`` keeps the answers."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = memoryview(data), 0
        self.sent: list[bytes] = []

    def recv_into(self, buffer: memoryview) -> int:
        n = min(len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def settimeout(self, value: float | None) -> None:
        pass


class _Handler:
    def begin(self, head: bytes, calling: str, transfer_syntax: str, sop_instance_uid: str) -> _Sink:
        return _Sink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--instr", action="store_true", help="switch callgrind's instrumentation on for the work only")
    args = parser.parse_args()
    import pydicom

    ds = pydicom.dcmread(SOURCE)
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True)  # the dataset alone, explicit VR little endian
    data = stream(args.n, buf.getvalue())
    sock = _Socket(data)
    config = AcceptorConfig("BENCH", (), frozenset(STORAGE_SOP_CLASSES), TRANSFER_SYNTAXES, PDU)
    if args.instr:
        _callgrind("on")
    assoc = Association(sock, config, _Handler())  # type: ignore[arg-type]
    assert assoc.negotiate()
    assoc.serve()
    if args.instr:
        _callgrind("off")
    assert len(sock.sent) == args.n + 2, len(sock.sent)  # AC, one C-STORE-RSP per object, RP
    assert assoc.statuses == {0: args.n}, assoc.statuses


if __name__ == "__main__":
    main()
