"""SCP receive benchmark: DCMTK storescu pushing the same files to mmdx, DCMTK storescp and Orthanc.

Run from the repository root::

    .venv/bin/python bench/bench_scp.py [--large 500] [--small 2000] [--pdu 16384] [--repeat 3]

Corpora (made once in a temp folder, distinct SOP Instance UIDs):

* large: ~0.5 MB CT slices (512x512x16 bit, from ../shared/data/dicom/ct_volume_ge_head);
* small: ~10 KB MR images (64x64x16 bit, pydicom's MR_small).

Every receiver gets the same maximum PDU length and every DCMTK tool and
Orthanc runs with ``TCP_NODELAY=1`` (without it DCMTK leaves Nagle's algorithm
on and every C-STORE waits tens of milliseconds).  Durability differs by
design, so it is reported: storescp never fsyncs; Orthanc fsyncs by default
(``SyncStorageArea``); mmdx fsyncs by default (``storage.fsync``) and indexes
every object in SQLite before it answers, with either DIMSE engine
(``scp.engine``: pynetdicom, or mmdx's lean acceptor ``fast``).  Figures are medians of ``--repeat``
runs, each into an empty store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pydicom
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "dicom"
ENV = dict(os.environ, TCP_NODELAY="1")

_CLI = (
    "import typer\n"
    "from app.commands.ingest import register\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "register(app)\n"
    "app()\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_corpus(out: Path, kind: str, n: int) -> list[Path]:
    """``n`` files with distinct UIDs made from the shared samples."""
    from pydicom.uid import generate_uid

    if kind == "large":
        sources = sorted((SHARED / "ct_volume_ge_head").glob("*.dcm"))
    else:
        sources = [SHARED / "small_basic" / "MR_small.dcm"]
    templates = [pydicom.dcmread(p) for p in sources]
    out.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    files = []
    for i in range(n):
        ds = templates[i % len(templates)]
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        path = out / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def push(files: list[Path], port: int, called: str, pdu: int) -> float:
    """Seconds for one storescu association sending every file."""
    cmd = ["storescu", "-aet", "BENCH", "-aec", called, "--max-pdu", str(pdu), "127.0.0.1", str(port)]
    start = time.perf_counter()
    r = subprocess.run([*cmd, *map(str, files)], env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"storescu failed: {r.stderr[-800:]}")
    return elapsed


# --------------------------------------------------------------------------- receivers


@contextmanager
def mmdx(work: Path, pdu: int, fsync: bool, engine: str = "pynetdicom") -> Iterator[tuple[int, str]]:
    port = free_port()
    cfg = {
        "database": {"url": f"sqlite:///{work / 'mmdx.db'}"},
        "storage": {"store_dir": str(work / "store"), "quarantine_dir": str(work / "q"), "fsync": fsync},
        "scp": {"port": port, "ae_title": "MMDX", "stable_age_s": 3600, "engine": engine},
    }
    (work / "mmdx.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI, "scp", "--config", str(work / "mmdx.yaml"), "--max-pdu", str(pdu)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield port, "MMDX"
    finally:
        stop(proc)


_BARE = """
import sys
from pathlib import Path
from pynetdicom import AE, evt, StoragePresentationContexts
out, port, pdu = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
n = 0
def store(event):
    global n
    n += 1
    (out / f"{n}.dcm").write_bytes(event.encoded_dataset())
    return 0
ae = AE("BARE")
ae.maximum_pdu_size = pdu
ae.supported_contexts = StoragePresentationContexts
ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, store)])
"""


@contextmanager
def bare_pynetdicom(work: Path, pdu: int) -> Iterator[tuple[int, str]]:
    """A pynetdicom SCP whose handler only writes the received bytes: the floor of pynetdicom's default path."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _BARE, str(work), str(port), str(pdu)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield port, "BARE"
    finally:
        stop(proc)


_FAST_NOOP = """
import sys, threading
from ingest.scp import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from ingest.dul import AcceptorConfig, UpperLayerServer
port, pdu = int(sys.argv[1]), int(sys.argv[2])
cfg = AcceptorConfig("FASTNOOP", (), frozenset(STORAGE_SOP_CLASSES), TRANSFER_SYNTAXES, pdu)
UpperLayerServer(("127.0.0.1", port), cfg, lambda data, calling, ts, uid: 0).start()
threading.Event().wait()
"""


@contextmanager
def fast_noop(work: Path, pdu: int) -> Iterator[tuple[int, str]]:
    """mmdx's fast DIMSE engine with a handler that stores nothing: the network layer's own ceiling."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _FAST_NOOP, str(port), str(pdu)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield port, "FASTNOOP"
    finally:
        stop(proc)


@contextmanager
def storescp(work: Path, pdu: int) -> Iterator[tuple[int, str]]:
    port = free_port()
    (work / "out").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "--max-pdu", str(pdu), "-od", str(work / "out"), str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield port, "STORESCP"
    finally:
        stop(proc)


@contextmanager
def orthanc(work: Path, pdu: int, fsync: bool) -> Iterator[tuple[int, str]]:
    port, http = free_port(), free_port()
    config = {
        "Name": "BENCH",
        "StorageDirectory": str(work / "db"),
        "IndexDirectory": str(work / "db"),
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAet": "ORTHANC",
        "DicomPort": port,
        "DicomAlwaysAllowStore": True,
        "MaximumPduLength": pdu,
        "SyncStorageArea": fsync,
        "StorageCompression": False,
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        ["/usr/sbin/Orthanc", str(work / "orthanc.json")],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http}/system", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield port, "ORTHANC"
    finally:
        stop(proc)


def run_once(files: list[Path], receiver: Callable[[Path], object], pdu: int) -> float:
    """files/s of one storescu association into a fresh store."""
    with (
        tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp,
        receiver(Path(tmp)) as (port, aet),  # type: ignore[attr-defined]
    ):
        return len(files) / push(files, port, aet, pdu)


def measure_all(
    files: list[Path], receivers: dict[str, Callable[[Path], object]], pdu: int, repeat: int
) -> dict[str, float]:
    """Median files/s per receiver; the runs are interleaved (every receiver once per round), so a slow spell of
    the machine (file creation on this disk varies several-fold over minutes) touches every receiver alike."""
    rates: dict[str, list[float]] = {name: [] for name in receivers}
    for _ in range(repeat):
        for name, receiver in receivers.items():
            rates[name].append(run_once(files, receiver, pdu))
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=500)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--pdu", type=int, default=16384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="receivers to run (default: all)")
    args = parser.parse_args()
    for exe in ("storescu", "storescp", "/usr/sbin/Orthanc"):
        if not shutil.which(exe) and not Path(exe).exists():
            sys.exit(f"{exe} is required")
    pdu = args.pdu
    receivers: dict[str, Callable[[Path], object]] = {
        "storescp (no fsync)": lambda w: storescp(w, pdu),
        "Orthanc (fsync)": lambda w: orthanc(w, pdu, True),
        "Orthanc (no fsync)": lambda w: orthanc(w, pdu, False),
        "pynetdicom bare (no fsync)": lambda w: bare_pynetdicom(w, pdu),
        "fast engine, no-op handler": lambda w: fast_noop(w, pdu),
        "mmdx pynetdicom (fsync)": lambda w: mmdx(w, pdu, True),
        "mmdx pynetdicom (no fsync)": lambda w: mmdx(w, pdu, False),
        "mmdx fast (fsync)": lambda w: mmdx(w, pdu, True, "fast"),
        "mmdx fast (no fsync)": lambda w: mmdx(w, pdu, False, "fast"),
    }
    if args.only:
        receivers = {k: v for k, v in receivers.items() if any(o.lower() in k.lower() for o in args.only)}
    with tempfile.TemporaryDirectory() as corpus_dir:
        corpora = {
            f"large ({args.large} x ~0.5 MB)": make_corpus(Path(corpus_dir) / "large", "large", args.large),
            f"small ({args.small} x ~10 KB)": make_corpus(Path(corpus_dir) / "small", "small", args.small),
        }
        print(f"max PDU {pdu} bytes, median of {args.repeat}, TCP_NODELAY=1 for DCMTK and Orthanc")
        for corpus, files in corpora.items():
            rates = measure_all(files, receivers, pdu, args.repeat)
            base = rates.get("storescp (no fsync)")
            print(f"\n{corpus}")
            print(f"{'receiver':28s} {'files/s':>9s} {'x storescp':>11s}")
            for name, rate in rates.items():
                ratio = f"{rate / base:.2f}" if base else "-"
                print(f"{name:28s} {rate:9.0f} {ratio:>11s}")
            fs_orthanc = rates.get("Orthanc (fsync)")
            for engine in ("pynetdicom", "fast"):
                fs_mmdx = rates.get(f"mmdx {engine} (fsync)")
                if fs_mmdx and fs_orthanc:
                    print(f"mmdx {engine} / Orthanc, both with fsync: {fs_mmdx / fs_orthanc:.2f}")


if __name__ == "__main__":
    main()
