"""Folder indexing benchmark: mmdx's scan (+ index) against a bare pydicom header loop.

Run from the repository root::

    .venv/bin/python bench/bench_index.py [--files 2000] [--repeat 3]

The corpus is ``--files`` copies of pydicom's MR_small (~10 KB) with distinct
SOP Instance UIDs, read warm from the page cache.  The peer is
``pydicom.dcmread(path, stop_before_pixels=True)`` over the same files.
mmdx's scan does more per file: DICOM detection by content, a sha256 of the
whole file, a Pixel Data completeness check, and core records; indexing
then adds one SQLite row set per object (dedupe check, patient upsert,
content version).  Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from ingest.files import index_scan, scan
from store.db import Database

SOURCE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dicom" / "small_basic" / "MR_small.dcm"


def make_corpus(out: Path, n: int) -> list[Path]:
    ds = pydicom.dcmread(SOURCE)
    files = []
    for i in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = out / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        files = make_corpus(folder, args.files)

        def bare() -> None:
            for f in files:
                pydicom.dcmread(f, stop_before_pixels=True)

        def scan_only() -> None:
            result = scan([folder])
            assert len(result.dicom) == len(files)

        def scan_and_index() -> None:
            db = Database(f"sqlite:///{tmp}/idx-{time.monotonic_ns()}.db")
            db.migrate()
            with db.session() as session:
                counts = index_scan(session, scan([folder]), datetime.now(UTC))
            assert counts.new == len(files)
            db.dispose()

        bare()  # warm the page cache
        t_bare = timed(bare, args.repeat)
        t_scan = timed(scan_only, args.repeat)
        t_index = timed(scan_and_index, args.repeat)
    n = len(files)
    print(f"{n} files of ~10 KB, median of {args.repeat}")
    print(f"{'work':44s} {'files/s':>9s} {'x bare':>7s}")
    for name, t in (
        ("bare pydicom dcmread(stop_before_pixels)", t_bare),
        ("mmdx scan (detect, parse, hash, records)", t_scan),
        ("mmdx scan + index_scan (SQLite, one txn)", t_index),
    ):
        print(f"{name:44s} {n / t:9.0f} {t / t_bare:7.2f}")
    print(f"scan overhead over bare pydicom: {t_scan / t_bare - 1:+.0%}")


if __name__ == "__main__":
    main()
