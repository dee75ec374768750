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


def _pvc(beat: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A ventricular beat made from the sinus one: no P wave, its QRS-T widened 1.6x and inverted (R at BEFORE)."""
    tail = beat[BEFORE - 20 :]
    at = np.linspace(0, tail.shape[0] - 1, int(tail.shape[0] * 1.6))
    wide = np.stack([np.interp(at, np.arange(tail.shape[0]), -1.2 * tail[:, k]) for k in range(beat.shape[1])], 1)
    return np.concatenate([np.zeros((BEFORE - 20, beat.shape[1])), wide])


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
    pvc_every: int | None = None,
    labels: list[str] | None = None,
    af_between_s: tuple[float, float] | None = None,
) -> npt.NDArray[np.int64]:
    """Write ``folder/name.hea`` + ``.dat`` (12 leads, 500 Hz, format 16); the R peak sample of every beat.

    The cycle that starts at the first beat at or after ``pause_at_s`` lasts ``pause_s``: the RR from that beat
    to the next is the pause.  With ``pvc_every`` every such beat is a premature ventricular one (coupling
    0.8 RR, compensatory pause); ``labels`` (when given) receives "N" or "V" per beat.  Cycles that start within
    ``af_between_s`` are atrial fibrillation: no P wave, fibrillatory waves (4.7-7.9 Hz), RR 0.45-1.15 x ``rr_s``.
    """
    rng = np.random.default_rng(seed)
    beat = _template()
    pvc = _pvc(beat)
    fade = np.linspace(1.0, 0.0, 40)[:, None]
    no_p = beat.copy()
    no_p[: BEFORE - 40] = 0.0
    f_leads = np.array([0.5, 1, 0.8, -0.7, 0.3, 0.9, 1.5, 1.2, 0.8, 0.6, 0.5, 0.4])
    n = int(seconds * FS)
    peaks: list[int] = []
    block: list[npt.NDArray[np.int16]] = []
    held = 0
    at = 0
    paused = pause_at_s is None
    with (folder / f"{name}.dat").open("wb") as fh:
        while at < n:
            rr = round((rr_s + rng.uniform(-rr_jitter_s, rr_jitter_s)) * FS)
            ventricular = pvc_every is not None and len(peaks) % pvc_every == pvc_every - 1
            early = pvc_every is not None and len(peaks) % pvc_every == pvc_every - 2
            if not paused and at + BEFORE >= pause_at_s * FS and not (ventricular or early):  # type: ignore[operator]
                rr, paused = int(pause_s * FS), True
            elif early:  # the beat before a PVC: its cycle cut short at the PVC's coupling interval
                rr = round(0.8 * rr_s * FS)
            elif ventricular:
                rr = round(1.2 * rr_s * FS)  # the compensatory pause
            af = af_between_s is not None and af_between_s[0] * FS <= at < af_between_s[1] * FS
            if af:
                rr = round(rng.uniform(0.45, 1.15) * rr_s * FS)
            shape = pvc if ventricular else no_p if af else beat
            cycle = rng.normal(0.0, 0.004, size=(rr, len(NAMES)))
            cycle[: shape.shape[0]] += shape[:rr]
            if af:
                t = (at + np.arange(rr)) / FS
                waves = 0.06 * np.sin(2 * np.pi * 6.1 * t) + 0.04 * np.sin(2 * np.pi * 4.7 * t + 1)
                cycle += (waves + 0.03 * np.sin(2 * np.pi * 7.9 * t + 2))[:, None] * f_leads[None, :]
            if rr < shape.shape[0]:
                cycle[rr - len(fade) : rr] *= fade
            if labels is not None and at + BEFORE < n:
                labels.append("V" if ventricular else "N")
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
