"""ECG file readers and the printout: mmdx vs the floor of each format's own library, in one run.

For each format, mmdx's ``read_ecg`` (content detection + decoding + scaling to mV + lead
derivation + device measurements) is timed against the minimal read a script would do with
the peer library (no detection, no device data):

- DICOM waveform: ``pydicom.dcmread`` + ``Dataset.waveform_array(0)``
- WFDB: ``wfdb.rdrecord`` (physical)
- Philips Sierra XLI: ``sierraecg.read_file``
- HL7 aECG: ``ElementTree.parse`` + digits of every sequence to float arrays
- GE MUSE (synthetic file): ``ElementTree.parse`` + base64 decode of every lead
- SCP-ECG (synthetic, default Huffman + 2nd differences): no Python peer; mmdx alone

and the printout (``render_png`` at 150 dpi, ``render_array`` at 100 dpi) alone.

Run::

    .venv/bin/python bench/bench_ecg_readers.py [--repeat 7]

Prints the median milliseconds of each side and the ratio mmdx / peer (lower is better).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import sierraecg
import wfdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ecg.readers import read_ecg  # noqa: E402
from ecg.render import render_array, render_png  # noqa: E402
from tests.ecg.synth_formats import MUSE_8_LEADS, write_muse_xml, write_scp  # noqa: E402

DATA = HERE.parent / "tests" / "data" / "ecg"


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and imports
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def _aecg_floor(path: Path) -> list[np.ndarray]:
    root = ET.parse(path).getroot()
    return [np.array((d.text or "").split(), dtype=float) for d in root.iter("{urn:hl7-org:v3}digits")]


def _muse_floor(path: Path) -> list[np.ndarray]:
    root = ET.parse(path).getroot()
    return [np.frombuffer(base64.b64decode(el.text or ""), dtype="<i2") for el in root.iter("WaveFormData")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        muse = write_muse_xml(
            Path(tmp) / "muse.xml",
            {n: rng.integers(-500, 500, 5000).astype(np.int16) for n in MUSE_8_LEADS},
            median={n: rng.integers(-500, 500, 600).astype(np.int16) for n in MUSE_8_LEADS},
        )
        scp = write_scp(Path(tmp) / "ecg.scp", {i: rng.integers(-300, 300, 5000).astype(np.int16) for i in range(1, 9)})
        dcm = DATA / "dicom" / "waveform_ecg.dcm"
        ludb = DATA / "wfdb" / "ludb_1" / "1"
        mit = DATA / "wfdb" / "mitdb_100" / "100"
        xli = DATA / "philips" / "1_04__3191723_ZZDEMOPTONLY_1-04_orig.xml"
        aecg = DATA / "hl7_aecg" / "subject1_0.xml"
        rows: list[tuple[str, float, float | None]] = [
            (
                "DICOM 12-lead 10 s 1 kHz",
                _median_ms(lambda: read_ecg(dcm), args.repeat),
                _median_ms(lambda: pydicom.dcmread(dcm).waveform_array(0), args.repeat),
            ),
            (
                "WFDB LUDB 12-lead 10 s",
                _median_ms(lambda: read_ecg(ludb), args.repeat),
                _median_ms(lambda: wfdb.rdrecord(str(ludb)), args.repeat),
            ),
            (
                "WFDB MIT-BIH 100 30 min 2-lead",
                _median_ms(lambda: read_ecg(mit), max(3, args.repeat // 2)),
                _median_ms(lambda: wfdb.rdrecord(str(mit)), max(3, args.repeat // 2)),
            ),
            (
                "Philips XLI 1.04",
                _median_ms(lambda: read_ecg(xli), args.repeat),
                _median_ms(lambda: sierraecg.read_file(str(xli)), args.repeat),
            ),
            (
                "HL7 aECG (rhythm + median)",
                _median_ms(lambda: read_ecg(aecg), args.repeat),
                _median_ms(lambda: _aecg_floor(aecg), args.repeat),
            ),
            (
                "GE MUSE (synthetic, 8 leads)",
                _median_ms(lambda: read_ecg(muse), args.repeat),
                _median_ms(lambda: _muse_floor(muse), args.repeat),
            ),
            ("SCP-ECG Huffman (synthetic)", _median_ms(lambda: read_ecg(scp), args.repeat), None),
        ]
        rec = read_ecg(dcm)
        rows.append(("render_png 150 dpi", _median_ms(lambda: render_png(rec, dpi=150), args.repeat), None))
        rows.append(("render_array 100 dpi", _median_ms(lambda: render_array(rec, dpi=100), args.repeat), None))
    print(f"{'work':34s} {'mmdx ms':>9s} {'peer ms':>9s} {'ratio':>7s}")
    for name, ours, peer in rows:
        if peer is None:
            print(f"{name:34s} {ours:9.1f} {'-':>9s} {'-':>7s}")
        else:
            print(f"{name:34s} {ours:9.1f} {peer:9.1f} {ours / peer:7.2f}")


if __name__ == "__main__":
    main()
