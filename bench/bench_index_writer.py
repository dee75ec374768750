"""Instructions per indexed object: the in-process receive and a folder index, under valgrind callgrind.

This machine is shared and loaded, so wall-clock rates move 2x between runs; an instruction count does not.
Run each mode at two sizes and take the difference, so start-up and imports cancel out::

    for n in 100 300; do for mode in receive folder; do
      valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode.$n .venv/bin/python \\
          bench/bench_index_writer.py $mode $n
    done; done
    # per object: (Ir(300) - Ir(100)) / 200, Ir from `callgrind_annotate /tmp/cg.MODE.N | grep 'PROGRAM TOTALS'`

``receive``: ``ingest.receive.Receiver.receive`` of N objects (one study, one series, ~10 KB MR each) into a fresh
SQLite index, each indexed in its own transaction (fsync off: the kernel's work is not counted anyway).
``folder``: the same N objects written to a folder, then ``ingest.scan.scan`` + ``ingest.indexing.index_scan`` in
one transaction.  ``--wall`` prints the seconds the work took (no valgrind).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.filestore import FileStore  # noqa: E402
from ingest.indexing import index_scan  # noqa: E402
from ingest.receive import Receiver  # noqa: E402
from ingest.scan import scan  # noqa: E402
from store import index as _index  # noqa: E402, F401  (imported here, outside the measured work, in every version)
from store.db import Database  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "dicom" / "small_basic" / "MR_small.dcm"


def corpus(n: int) -> list[bytes]:
    """N copies of MR_small with distinct, deterministic SOP Instance UIDs (one study, one series)."""
    ds = pydicom.dcmread(SOURCE)
    out = []
    for i in range(n):
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def _callgrind(state: str) -> None:
    """Switch callgrind's instrumentation; the process keeps running meanwhile so that valgrind hears the request."""
    proc = subprocess.Popen(["callgrind_control", "-i", state, str(os.getpid())], stdout=subprocess.DEVNULL)
    while proc.poll() is None:  # sleeping, not spinning: the wait adds next to no instructions once on
        time.sleep(0.001)
    if proc.returncode:
        raise SystemExit(f"callgrind_control -i {state} failed (run under valgrind --tool=callgrind)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["receive", "folder"])
    parser.add_argument("n", type=int)
    parser.add_argument("--wall", action="store_true")
    parser.add_argument("--instr", action="store_true", help="switch callgrind's instrumentation on for the work only")
    args = parser.parse_args()
    objects = corpus(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/index.db")
        db.migrate()
        if args.instr:
            _callgrind("on")
        start = time.perf_counter()
        if args.mode == "receive":
            receiver = Receiver(FileStore(Path(tmp) / "store", fsync=False), db, Path(tmp) / "quarantine", lanes=False)
            for data in objects:
                receiver.receive(data, source="scp:BENCH")
            assert receiver.counts[next(iter(receiver.counts))] == args.n, receiver.counts
        else:
            folder = Path(tmp) / "in"
            folder.mkdir()
            for i, data in enumerate(objects):
                (folder / f"{i:05d}.dcm").write_bytes(data)
            with db.session() as session:
                counts = index_scan(session, scan([folder]), datetime.now(UTC))
            assert counts.new == args.n, counts
        took = time.perf_counter() - start
        if args.instr:
            _callgrind("off")
        db.dispose()
    if args.wall:
        print(f"{args.mode} {args.n}: {took:.3f} s, {args.n / took:.0f} objects/s")


if __name__ == "__main__":
    main()
