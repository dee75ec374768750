"""A synthetic long 12-lead WFDB recording: one real beat of ``tests/data`` (LUDB record 1) tiled at a known rhythm.

Each cycle is the beat (0.3 s before to 0.62 s after its R peak, its ends brought to zero) then baseline up to
the cycle's RR, with a small RR variation and, where asked, one long pause; the R peak positions are returned,
so a test knows every beat and the pause.  Written in blocks: the memory used does not grow with the length
(``bench/robustness/probe.py --holter-hours`` writes 24 hours with it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import wfdb

SOURCE = Path(__file__).resolve().parents[1] / "data" / "ecg" / "wfdb" / "ludb_1" / "1"
FS = 500
#: The R peak of a clean beat of LUDB record 1 (sample index), and the cut around it.
R_AT, BEFORE, AFTER = 2002, 150, 310
GAIN = 1000.0  # adu per mV
NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _template() -> npt.NDArray[np.float64]:
    rec = wfdb.rdrecord(str(SOURCE), physical=True)
    beat = np.asarray(rec.p_signal[R_AT - BEFORE : R_AT + AFTER, :], dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, beat.shape[0])[:, None]
    return beat - (beat[:1] * (1 - ramp) + beat[-1:] * ramp)  # both ends at 0 mV: cycles join without a step


def write_holter(
    folder: Path,
    seconds: float,
    *,
    name: str = "holter",
    rr_s: float = 1.0,
    rr_jitter_s: float = 0.05,
    pause_at_s: float | None = None,
    pause_s: float = 3.0,
    seed: int = 19,
) -> npt.NDArray[np.int64]:
    """Write ``folder/name.hea`` + ``.dat`` (12 leads, 500 Hz, format 16); the R peak sample of every beat.

    The cycle that starts at the first beat at or after ``pause_at_s`` lasts ``pause_s``: the RR from that beat
    to the next is the pause.
    """
    rng = np.random.default_rng(seed)
    beat = _template()
    n = int(seconds * FS)
    peaks: list[int] = []
    block: list[npt.NDArray[np.int16]] = []
    held = 0
    at = 0
    paused = pause_at_s is None
    with (folder / f"{name}.dat").open("wb") as fh:
        while at < n:
            rr = round((rr_s + rng.uniform(-rr_jitter_s, rr_jitter_s)) * FS)
            if not paused and at + BEFORE >= pause_at_s * FS:  # type: ignore[operator]
                rr, paused = int(pause_s * FS), True
            cycle = rng.normal(0.0, 0.004, size=(rr, len(NAMES)))
            cycle[: beat.shape[0]] += beat[:rr]
            take = min(rr, n - at)
            if at + BEFORE < n:
                peaks.append(at + BEFORE)
            block.append(np.round(cycle[:take] * GAIN).astype("<i2"))
            held += take
            at += take
            if held > 1 << 18:
                fh.write(np.concatenate(block).tobytes())
                block, held = [], 0
        if block:
            fh.write(np.concatenate(block).tobytes())
    lines = [f"{name} {len(NAMES)} {FS} {n}"]
    lines += [f"{name}.dat 16 {GAIN:g}/mV 16 0 0 0 0 {lead}" for lead in NAMES]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return np.asarray(peaks, dtype=np.int64)
