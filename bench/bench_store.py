"""Store benchmark: mmdx's index and job queue against plain sqlite3 doing the minimal same work.

Run from the repository root::

    .venv/bin/python bench/bench_store.py [--instances 3000] [--jobs 1000]

Both sides use one SQLite file in WAL mode with one transaction per
instance / per claim (what the SCP and the workers do).  The peer writes the
same instance rows with raw SQL, without dedupe checks, patient upserts or a
content version; the ratio is the price of those guarantees plus the ORM.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from core.records import Instance, Patient, PatientIdentifier, Series, Study
from store import index, jobs
from store.db import Database

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
STUDY = "1.2.826.0.1.3680043.10.999.1"
SERIES = STUDY + ".1"


def _instance(n: int) -> Instance:
    return Instance(
        sop_instance_uid=f"{SERIES}.{n}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        series_instance_uid=SERIES,
        study_instance_uid=STUDY,
        path=Path(f"/var/store/{n}.dcm"),
        content_digest="sha256:" + hashlib.sha256(str(n).encode()).hexdigest(),
        instance_number=n,
        source="scp:CT",
    )


def bench_mmdx_index(path: Path, n: int) -> float:
    db = Database(f"sqlite:///{path}")
    db.migrate()
    study = Study(STUDY, patient=Patient(identifiers=(PatientIdentifier("P1", "H"),)))
    series = Series(SERIES, STUDY, "CT")
    instances = [_instance(i) for i in range(n)]
    t = time.perf_counter()
    for inst in instances:
        with db.session() as s:
            index.add_instance(s, study=study, series=series, instance=inst, received_at=T0, size_bytes=1)
    elapsed = time.perf_counter() - t
    db.dispose()
    return elapsed


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def bench_raw_index(path: Path, n: int) -> float:
    conn = _raw(path)
    conn.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, uid TEXT UNIQUE, last_received_at TEXT)")
    conn.execute(
        "CREATE TABLE instances (id INTEGER PRIMARY KEY, uid TEXT UNIQUE, series_uid TEXT, sop_class TEXT, "
        "path TEXT, content_digest TEXT, number INTEGER, source TEXT, received_at TEXT)"
    )
    conn.execute("INSERT INTO studies (uid, last_received_at) VALUES (?, ?)", (STUDY, T0.isoformat()))
    instances = [_instance(i) for i in range(n)]
    t = time.perf_counter()
    for inst in instances:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO instances (uid, series_uid, sop_class, path, content_digest, number, source, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                inst.sop_instance_uid,
                SERIES,
                inst.sop_class_uid,
                str(inst.path),
                inst.content_digest,
                inst.instance_number,
                inst.source,
                T0.isoformat(),
            ),
        )
        conn.execute("UPDATE studies SET last_received_at = ? WHERE uid = ?", (T0.isoformat(), STUDY))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


def bench_mmdx_claims(path: Path, n: int) -> float:
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.session() as s:
        for i in range(n):
            jobs.enqueue(s, f"1.2.{i}", f"{i:064x}", T0)
    t = time.perf_counter()
    while True:
        with db.session() as s:
            job = jobs.claim_next(s, "w1", T0)
        if job is None:
            break
        with db.session() as s:
            jobs.complete(s, job.id, T0)
    elapsed = time.perf_counter() - t
    db.dispose()
    return elapsed


def bench_raw_claims(path: Path, n: int) -> float:
    conn = _raw(path)
    conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT, worker TEXT)")
    conn.executemany("INSERT INTO jobs (state) VALUES ('pending')", [()] * n)
    t = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT id FROM jobs WHERE state = 'pending' ORDER BY id LIMIT 1").fetchone()
        if row is None:
            conn.execute("COMMIT")
            break
        conn.execute("UPDATE jobs SET state = 'running', worker = 'w1' WHERE id = ? AND state = 'pending'", row)
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE jobs SET state = 'done' WHERE id = ?", row)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rows = [
            (
                "index: add_instance, 1 txn each",
                args.instances,
                bench_mmdx_index(d / "a.db", args.instances),
                bench_raw_index(d / "b.db", args.instances),
            ),
            (
                "jobs: claim_next + complete",
                args.jobs,
                bench_mmdx_claims(d / "c.db", args.jobs),
                bench_raw_claims(d / "d.db", args.jobs),
            ),
        ]
    print(f"{'work':34} {'n':>6} {'mmdx ms/op':>11} {'sqlite3 ms/op':>14} {'ratio':>7}")
    for name, n, ours, peer in rows:
        print(f"{name:34} {n:>6} {ours / n * 1e3:>11.3f} {peer / n * 1e3:>14.3f} {ours / peer:>7.1f}")


if __name__ == "__main__":
    main()
