"""Folder indexing benchmark: mmdx's scan (+ index) against a bare pydicom header loop.

Run from the repository root::

    .venv/bin/python bench/bench_index.py [--files 2000] [--repeat 3]

The corpus is ``--files`` copies of pydicom's MR_small (~10 KB) with distinct
SOP Instance UIDs, read warm from the page cache.  The peer is
``pydicom.dcmread(path, stop_before_pixels=True)`` over the same files.
mmdx's scan does more per file: DICOM detection by content, a content digest of the
whole file, a Pixel Data completeness check, and core records; indexing
then adds the objects to an empty, migrated SQLite index in one transaction
(dedupe check, patient/study/series rows, multi-row instance INSERTs, content
version).  Medians of ``--repeat`` rounds, the three taking turns.
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

from ingest.indexing import index_scan
from ingest.scan import scan
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


def timed(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median seconds of each function; the functions take turns, so a change in machine load hits all alike."""
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, times in zip(fns, runs, strict=True):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [statistics.median(t) for t in runs]


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

        fresh: list[Database] = []  # an empty, migrated index per run: creating it is not indexing

        def scan_and_index() -> None:
            db = fresh.pop()
            with db.session() as session:
                counts = index_scan(session, scan([folder]), datetime.now(UTC))
            assert counts.new == len(files)
            db.dispose()

        bare()  # warm the page cache
        for _ in range(args.repeat):
            db = Database(f"sqlite:///{tmp}/idx-{len(fresh)}.db")
            db.migrate()
            fresh.append(db)
        t_bare, t_scan, t_index = timed([bare, scan_only, scan_and_index], args.repeat)
    n = len(files)
    print(f"{n} files of ~10 KB, median of {args.repeat}")
    print(f"{'work':44s} {'files/s':>9s} {'x bare':>7s}")
    for name, t in (
        ("bare pydicom dcmread(stop_before_pixels)", t_bare),
        ("mmdx scan (detect, parse, hash, records)", t_scan),
        ("mmdx scan + index_scan (SQLite, one txn)", t_index),
    ):
        print(f"{name:44s} {n / t:9.0f} {t / t_bare:7.2f}")
    print(f"overhead over bare pydicom: scan {t_scan / t_bare - 1:+.0%}, scan + index {t_index / t_bare - 1:+.0%}")


if __name__ == "__main__":
    main()
