"""Long recordings analysed in windows (``ecg.holter``): every beat once, the pause at its time, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import EcgError
from ecg.holter import AF_CONCEPTS, analyze_holter, check_length, long_recording, needs_windows, printout_strip

from .holter_synth import FS, write_holter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def holter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """25 minutes of a real 12-lead beat tiled at about 60 /min, a 3 s pause at 15 min."""
    folder = tmp_path_factory.mktemp("holter")
    peaks = write_holter(folder, 25 * 60, pause_at_s=15 * 60)
    return folder / "holter", peaks


@pytest.mark.parametrize("window_s", [60.0, 47.0])
def test_every_beat_once_and_the_pause_at_its_time(holter: tuple[Path, np.ndarray], window_s: float) -> None:
    """Window edges (47 s ones fall mid-beat) neither lose nor double a beat; the pause is found where it was put."""
    base, peaks = holter
    summary = analyze_holter(long_recording(base), window_s=window_s)  # type: ignore[arg-type]
    assert summary.beats == len(peaks)
    assert summary.analysed_s == pytest.approx(25 * 60, abs=1)
    pause = int(np.argmax(np.diff(peaks)))
    assert summary.longest_rr is not None
    assert summary.longest_rr.seconds == pytest.approx((peaks[pause + 1] - peaks[pause]) / FS, abs=0.03)
    assert summary.longest_rr.at_s == pytest.approx(peaks[pause] / FS, abs=0.03)
    assert 15 * 60 <= summary.longest_rr.at_s < 15 * 60 + 2
    assert summary.pauses == 1
    assert summary.hr_mean_bpm == pytest.approx(60.0, abs=2)
    assert summary.hr_min is not None and summary.hr_min.at_s == 15 * 60  # the pause's minute is the slowest
    assert summary.ventricular == 0 and summary.af_burden_pct == 0.0
    reasons = {s.reason for s in summary.strips}
    assert {"hourly", "longest pause", "slowest rate", "fastest rate"} <= reasons
    assert (
        summary.reference is not None and summary.reference.start_s == 0.0 and summary.reference.analysis.measurements
    )
    again = printout_strip(long_recording(base))  # type: ignore[arg-type]  # without the pass: the same strip
    assert again is not None and again.start_s == summary.reference.start_s
    assert np.array_equal(again.record.signal, summary.reference.record.signal)
    text = "\n".join(summary.sentences())
    assert f"Total beats: {len(peaks):,}." in text
    assert "Longest RR interval 3.00 s at +0:15:0" in text


def test_ventricular_ectopics_are_counted_once_across_windows(tmp_path: Path) -> None:
    """Every 10th beat a premature ventricular one: the engine's V labels, summed over 47 s windows, match."""
    labels: list[str] = []
    peaks = write_holter(tmp_path, 10 * 60, pvc_every=10, labels=labels)
    summary = analyze_holter(long_recording(tmp_path / "holter"), window_s=47)  # type: ignore[arg-type]
    assert summary.beats == len(peaks)
    assert summary.ventricular == labels.count("V") == len(peaks) // 10
    [pvc] = [s for s in summary.statements if s.finding.text == "Premature ventricular contraction"]
    assert pvc.first_at_s == 0.0 and pvc.windows == summary.windows
    assert f"Ventricular ectopic beats: {labels.count('V')} (" in "\n".join(summary.sentences())


def test_af_burden_is_the_share_of_windows_in_af(tmp_path: Path) -> None:
    """4 of 10 minutes in atrial fibrillation (no P wave, f waves, irregular RR) starting at a window edge."""
    peaks = write_holter(tmp_path, 10 * 60, af_between_s=(240, 480))
    summary = analyze_holter(long_recording(tmp_path / "holter"), window_s=60)  # type: ignore[arg-type]
    assert summary.beats == len(peaks)
    assert summary.af_burden_pct is not None and 30 <= summary.af_burden_pct <= 50
    af = [s for s in summary.statements if s.finding.concept in AF_CONCEPTS]
    assert af and min(s.first_at_s for s in af) == 240
    assert summary.supraventricular < 5  # the irregular beats of AF are not counted as ectopics


def test_only_long_wfdb_recordings_go_windowed(holter: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    base, _ = holter
    samples = 12 * 25 * 60 * FS
    assert needs_windows(base, samples - 1)
    assert not needs_windows(base, samples)
    ludb = REPO / "tests" / "data" / "ecg" / "wfdb" / "ludb_1" / "1"  # 12 x 5,000 samples
    assert needs_windows(ludb, 59_999) and not needs_windows(ludb, 60_000)
    assert not needs_windows(REPO / "tests" / "data" / "dicom" / "net" / "CT_small.dcm", 1000)  # not WFDB
    rec = long_recording(base)
    assert rec is not None
    with pytest.raises(EcgError, match=r"over limits.max_ecg_hours \(0.25 h\)"):
        check_length(rec, 0.25, 1000)
    # a header declaring more samples than its signal file holds is not read in windows
    (tmp_path / "short.dat").write_bytes(b"\0" * 48)
    (tmp_path / "short.hea").write_text("short 1 500 1000000000\nshort.dat 16 200/mV 16 0 0 0 0 II\n")
    with pytest.raises(EcgError, match="holds 24"):
        long_recording(tmp_path / "short")
    # nor a multi-segment record (its segments are not checked): the whole-record reader refuses it by its size
    (tmp_path / "multi.hea").write_text("multi/2 2 500 1000000000\nseg1 500000000\nseg2 500000000\n")
    with pytest.raises(EcgError, match="single-segment"):
        long_recording(tmp_path / "multi")
    assert not needs_windows(tmp_path / "multi", 1000) and not needs_windows(tmp_path / "short", 1000)


_CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from ecg.holter import AF_CONCEPTS, analyze_holter, long_recording
from tests.ecg.holter_synth import write_holter
folder = Path(sys.argv[2])
write_holter(folder, float(sys.argv[3]), pause_at_s=60)
start = time.process_time()
summary = analyze_holter(long_recording(folder / "holter"), window_s=60)
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "cpu_s": time.process_time() - start, "beats": summary.beats}))
"""


def _measure(folder: Path, seconds: float) -> dict[str, float]:
    folder.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(REPO), str(folder), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_memory_does_not_grow_and_time_is_linear_in_length(tmp_path: Path) -> None:
    """Peak RSS of a 4x longer recording stays within a few MB; its CPU time is about 4x, far from 16x."""
    short = _measure(tmp_path / "short", 4 * 60)
    long = _measure(tmp_path / "long", 16 * 60)
    assert long["beats"] > 3.9 * short["beats"]
    assert long["rss_kb"] - short["rss_kb"] < 40 * 1024
    assert 2.5 * short["cpu_s"] < long["cpu_s"] < 6.5 * short["cpu_s"]
