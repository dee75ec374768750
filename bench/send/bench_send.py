"""Outbound benchmark: N SR/SC objects delivered through mmdx's outbox vs DCMTK storescu sending the same files.

Run from the repository root::

    .venv/bin/python bench/send/bench_send.py [--objects 500] [--repeat 3] [--batch 100]

The corpus: half Basic Text SR (~2 KB), half Secondary Capture (256x256 8-bit, ~66 KB), distinct SOP Instance UIDs,
made once in a temp folder.  mmdx: one report version with N artefacts routed to one ``dicom`` destination,
``OutboxLoop.run_once`` until idle (claim with a lease in SQLite, sha256 check of each file against the store, file
meta read, C-STORE over one association per batch, outcomes recorded in one transaction per batch); the time starts
before the first claim and ends after the last outcome is committed.  Peer: ``storescu`` sending the same files in
one association.  Both with ``TCP_NODELAY=1``.  Receivers: Orthanc (fresh storage each run) and DCMTK ``storescp``
(bit-preserving, fresh folder each run); storescp shows the sender's own cost, Orthanc is usually the bottleneck.
Figures are medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.config import DatabaseConfig, Destination, Settings, StorageConfig  # noqa: E402
from core.identifiers import SystemClock  # noqa: E402
from core.records import DraftReport, ReportKind  # noqa: E402
from pacs_bridge.loop import OutboxLoop  # noqa: E402
from store import outbox  # noqa: E402
from store import reports as report_store  # noqa: E402
from store.db import Database  # noqa: E402
from store.reports import ArtefactRecord  # noqa: E402
from tests.peers import DCMTK_ENV, free_port, start_orthanc, stop_pid  # noqa: E402

STUDY = "2.25.314159265358979323846264338327950288"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.11"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def _base(sop_class: str, uid: str, series: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series
    ds.PatientName, ds.PatientID = "Bench^Send", "BENCH-1"
    ds.StudyDate, ds.StudyTime = "20261207", "090000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.InstanceNumber = 1
    return ds


def make_corpus(folder: Path, n: int) -> list[ArtefactRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sr_series, sc_series = generate_uid(), generate_uid()
    out = []
    for i in range(n):
        uid = generate_uid()
        if i % 2 == 0:
            ds = _base(SR_CLASS, uid, sr_series)
            ds.Modality = "SR"
            ds.ValueType = "CONTAINER"
            ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
            item = Dataset()
            item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
            item.TextValue = "Benchmark finding text. " * 40
            ds.ContentSequence = [item]
            kind = "sr"
        else:
            ds = _base(SC_CLASS, uid, sc_series)
            ds.Modality, ds.ConversionType = "OT", "WSD"
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows = ds.Columns = 256
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = rng.integers(0, 255, (256, 256), dtype=np.uint8).tobytes()
            kind = "sc"
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(ArtefactRecord(kind, path, hashlib.sha256(path.read_bytes()).hexdigest(), "application/dicom", uid))
    return out


def run_mmdx(work: Path, corpus: list[ArtefactRecord], port: int, ae: str, batch: int) -> float:
    dest = Destination(type="dicom", host="127.0.0.1", port=port, ae_title=ae)
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite:///{work / 'bench.db'}"),
        storage=StorageConfig(store_dir=work / "s", out_dir=work / "o", quarantine_dir=work / "q"),
        destinations={"pacs": dest},
        bridge={"batch_size": batch, "lease_s": 300, "poll_s": 0.1},  # type: ignore[arg-type]
    )
    db = Database.from_settings(settings)
    now = datetime.now(UTC)
    report = DraftReport(study_instance_uid=STUDY, kind=ReportKind.IMAGING, created_at=now)
    with db.session() as s:
        report_store.save_report_version(s, report, corpus, {"sr": ["pacs"], "sc": ["pacs"]}, now)
    loop = OutboxLoop(db, settings, SystemClock())
    t0 = time.perf_counter()
    while not loop.run_once().idle:
        pass
    elapsed = time.perf_counter() - t0
    loop.close()
    with db.session() as s:
        delivered = outbox.counts_by_state(s)[outbox.OutboxState.DELIVERED]
    db.dispose()
    if delivered != len(corpus):
        raise SystemExit(f"mmdx delivered {delivered} of {len(corpus)}")
    return elapsed


def run_storescu(corpus: list[ArtefactRecord], port: int, ae: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["storescu", "-aec", ae, "127.0.0.1", str(port), *[str(a.path) for a in corpus]],
        check=True,
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


class Receiver:
    def __init__(self, kind: str, work: Path) -> None:
        self.kind, self.work = kind, work

    def __enter__(self) -> tuple[int, str]:
        if self.kind == "orthanc":
            self.orthanc, self.proc = start_orthanc(self.work / "orthanc", mmdx_port=free_port())
            return self.orthanc.dicom_port, self.orthanc.ae_title
        port = free_port()
        (self.work / "scp").mkdir(parents=True)
        self.proc = subprocess.Popen(
            ["storescp", "+B", "-od", str(self.work / "scp"), "-aet", "STORESCP", str(port)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return port, "STORESCP"

    def __exit__(self, *exc: object) -> None:
        stop_pid(self.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="bridge.batch_size")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmdx-bench-send-"))
    try:
        corpus = make_corpus(tmp / "corpus", args.objects)
        size = sum(a.path.stat().st_size for a in corpus) / 1e6
        print(f"{args.objects} objects, {size:.1f} MB, batch {args.batch}, repeat {args.repeat}")
        print(f"{'receiver':10} {'mmdx obj/s':>11} {'storescu obj/s':>15} {'ratio':>6}")
        for receiver in ("storescp", "orthanc"):
            ours, theirs = [], []
            for r in range(args.repeat):
                for who in ("mmdx", "storescu"):
                    work = tmp / f"{receiver}-{who}-{r}"
                    work.mkdir()
                    with Receiver(receiver, work) as (port, ae):
                        if who == "mmdx":
                            ours.append(run_mmdx(work, corpus, port, ae, args.batch))
                        else:
                            theirs.append(run_storescu(corpus, port, ae))
                    shutil.rmtree(work, ignore_errors=True)
            m, s = statistics.median(ours), statistics.median(theirs)
            print(f"{receiver:10} {args.objects / m:11.0f} {args.objects / s:15.0f} {s / m:6.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
