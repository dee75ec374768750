"""Long ECG recordings (Holter) analysed in windows: memory bounded by a window, time linear in the length.

A recording too long for whole-record analysis (``limits.max_ecg_samples``) is read the way a Holter reader
scans it: window after window (``limits.ecg_window_s``, read from disk with ``wfdb.rdrecord(sampfrom=,
sampto=)``), each padded on both sides so the filters and the QRS detector see context at its edges.  Every
window goes through the full engine (:func:`ecg.analysis.analyze`): its beats (with their N/S/V/Q labels) are
kept where they fall within the window +- a small margin, and a beat found by two neighbouring windows (the
same QRS within :data:`SAME_BEAT_S`) is counted once, so no beat is lost or doubled at a boundary.  Its
statements are the window's rhythm calls (AF/flutter burden, first time and count of each statement).  From
the beats: total, heart rate per minute (min/mean/max with their times), the longest RR (pause) and the
ectopic counts.  Representative 10 s strips (one per hour, the fastest and slowest minute, the longest pause)
go through the engine again for the 12-lead measurements and the printout.

Only WFDB can be read in windows here; a longer file of a format whose reader loads it whole stays refused by
``limits.max_ecg_samples``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import wfdb

from core.codes import LOINC, SCT, UCUM
from core.config import EcgConfig
from core.errors import EcgError, RecordError
from core.records import EcgRecord, Finding, Measurement, Patient, Presence, Priority, Producer
from ecg.analysis import EcgAnalysis, analyze
from ecg.leads import complete_leads
from ecg.readers.limits import check_sampling_rate
from ecg.readers.wfdb_reader import header_path, patient_from_comments, voltage_channels
from ecg.rules import PRODUCER, priority_of

#: Context read on each side of a window (filters settle, a QRS at the edge is seen whole).
PAD_S: Final = 2.0
#: A window keeps the beats within its span +- this margin; the neighbours' duplicates are merged.
MARGIN_S: Final = 0.1
#: Two detections closer than this, from neighbouring windows, are one beat.
SAME_BEAT_S: Final = 0.15
#: Representative strips: their length and one every this many seconds.
STRIP_S: Final = 10.0
STRIP_EVERY_S: Final = 3600.0
#: An RR at least this long counts as a pause.
PAUSE_S: Final = 2.0
#: A minute gives a heart rate only with at least this many RR intervals.
MIN_RR_PER_MINUTE: Final = 5
#: Window statements that count towards the AF/flutter burden.
AF_CONCEPTS: Final = frozenset({SCT.ATRIAL_FIBRILLATION, SCT.ATRIAL_FLUTTER})


@dataclass(frozen=True, slots=True)
class LongRecording:
    """A WFDB recording read a window at a time: its header, and which channels are ECG leads."""

    base: Path
    fs: float
    n_samples: int
    channels: tuple[int, ...]
    names: tuple[str, ...]
    factors: tuple[float, ...]
    patient: Patient
    started_at: datetime | None

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    @property
    def samples(self) -> int:
        """Samples of all its ECG leads together (what ``limits.max_ecg_samples`` bounds)."""
        return self.n_samples * len(self.channels)

    def read(self, start: int, stop: int) -> EcgRecord:
        """Samples ``[start, stop)`` as an EcgRecord in millivolts (leads completed and ordered as the reader does)."""
        try:
            rec = wfdb.rdrecord(
                str(self.base), sampfrom=start, sampto=stop, channels=list(self.channels), physical=True
            )
        except (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
            raise EcgError(f"WFDB samples {start}-{stop} could not be read: {exc}", source=str(self.base)) from None
        sig = np.asarray(rec.p_signal, dtype=np.float64).T * np.asarray(self.factors)[:, None]
        signal, names = complete_leads(np.nan_to_num(sig, nan=0.0), self.names)
        return EcgRecord(
            signal=signal,
            lead_names=names,
            sampling_rate_hz=self.fs,
            source=str(self.base),
            patient=self.patient,
            acquired_at=None if self.started_at is None else self.started_at + timedelta(seconds=start / self.fs),
        )


def long_recording(path: Path) -> LongRecording | None:
    """The recording at ``path`` if it is WFDB (base name, header or signal file) with ECG leads; else None.

    Only the header is read.  EcgError for a WFDB header that cannot be used.
    """
    hea = header_path(path)
    if hea is None:
        return None
    base = hea.with_suffix("")
    try:
        head = wfdb.rdheader(str(base))
    except (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise EcgError(f"WFDB header could not be read: {exc}", source=str(base)) from None
    if isinstance(head, wfdb.MultiRecord):  # its segments are not checked here, so it is not read in windows
        raise EcgError("only single-segment WFDB records are analysed in windows", source=str(base))
    fs = check_sampling_rate(float(head.fs or 0), "WFDB header", str(base))
    n = int(head.sig_len or 0)
    try:
        picked = voltage_channels(head)
    except (TypeError, AttributeError, ValueError) as exc:
        raise EcgError(f"WFDB header signal lines could not be used: {exc}", source=str(base)) from None
    if n < 2 or not picked:
        raise EcgError("WFDB header declares no ECG samples", source=str(base))
    _check_files(head, hea.parent, n, str(base))
    started = None
    if head.base_date is not None and head.base_time is not None:
        started = datetime.combine(head.base_date, head.base_time)
    return LongRecording(
        base=base,
        fs=fs,
        n_samples=n,
        channels=tuple(i for i, _, _ in picked),
        names=tuple(name for _, name, _ in picked),
        factors=tuple(f for _, _, f in picked),
        patient=patient_from_comments(list(head.comments or [])),
        started_at=started,
    )


#: Bytes per sample of the WFDB storage formats that can be read at an offset (FLAC formats 5xx cannot).
_BYTES_PER_SAMPLE: Final[dict[str, float]] = {
    "8": 1,
    "16": 2,
    "61": 2,
    "80": 1,
    "160": 2,
    "212": 1.5,
    "310": 4 / 3,
    "311": 4 / 3,
    "24": 3,
    "32": 4,
}


def _check_files(head: wfdb.Record, folder: Path, n: int, source: str) -> None:
    """The signal files must hold the samples the header declares (a header may declare terabytes)."""
    names, formats = getattr(head, "file_name", None), getattr(head, "fmt", None)
    if not names or not formats:
        raise EcgError("WFDB header names no signal file", source=source)
    per_file: dict[str, float] = {}
    for name, fmt in zip(names, formats, strict=False):
        size = _BYTES_PER_SAMPLE.get(str(fmt))
        if size is None:
            raise EcgError(f"WFDB format {fmt} cannot be read in windows", source=source)
        per_file[name] = per_file.get(name, 0.0) + size
    for name, frame in per_file.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise EcgError(f"WFDB signal file {name!r} missing beside the header", source=source)
        held = int(path.stat().st_size / frame)
        if held < n:
            raise EcgError(f"WFDB header declares {n} samples per signal; {name} holds {held}", source=source)


def check_length(rec: LongRecording, max_hours: float, max_samples: int) -> None:
    """EcgError when the recording is too long even for analysis in windows (``limits.max_ecg_hours``)."""
    if rec.duration_s > max_hours * 3600:
        raise EcgError(
            f"recording declares {rec.samples} samples ({rec.duration_s / 3600:.1f} h), over "
            f"limits.max_ecg_samples ({max_samples}) and over limits.max_ecg_hours ({max_hours:g} h) "
            "for analysis in windows",
            source=str(rec.base),
        )


def needs_windows(path: Path, max_samples: int) -> bool:
    """True for a WFDB recording whose ECG leads hold more than ``max_samples`` samples (all leads)."""
    try:
        rec = long_recording(path)
    except EcgError:
        return False  # the whole-record reader says what is wrong with it
    return rec is not None and rec.samples > max_samples


@dataclass(frozen=True, slots=True)
class RateAt:
    """A 1-minute average heart rate and the minute it was measured in (seconds from the start)."""

    bpm: float
    at_s: float


@dataclass(frozen=True, slots=True)
class Pause:
    """The longest RR interval and the beat it starts at (seconds from the start)."""

    seconds: float
    at_s: float


@dataclass(frozen=True, slots=True)
class StatementSpan:
    """A window statement over the recording: its first window and in how many windows it was made."""

    finding: Finding
    first_at_s: float
    windows: int


@dataclass(frozen=True, slots=True)
class Strip:
    """A representative 10 s strip analysed as a resting ECG (12-lead measurements, statements, printout)."""

    reason: str
    start_s: float
    record: EcgRecord
    analysis: EcgAnalysis


@dataclass(frozen=True, slots=True)
class HolterSummary:
    """What a Holter reader summarises: duration, beats, rate, pauses, ectopy, AF burden, statements, strips."""

    source: str
    started_at: datetime | None
    duration_s: float
    analysed_s: float
    window_s: float
    windows: int  #: windows analysed (a statement's count is out of these)
    leads: int
    fs: float
    beats: int
    ventricular: int
    supraventricular: int  #: outside windows called AF/flutter
    hr_mean_bpm: float | None
    hr_min: RateAt | None
    hr_max: RateAt | None
    longest_rr: Pause | None
    pauses: int  #: RR intervals of at least PAUSE_S
    af_burden_pct: float | None  #: share of analysed time in windows called AF or flutter
    statements: tuple[StatementSpan, ...]
    strips: tuple[Strip, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.analysed_s <= self.duration_s + 1e-6:
            raise RecordError("HolterSummary", "analysed_s", f"expected 0..{self.duration_s}, got {self.analysed_s}")
        if min(self.beats, self.ventricular, self.supraventricular, self.pauses, self.windows) < 0:
            raise RecordError("HolterSummary", "beats", "counts must not be negative")
        if self.ventricular + self.supraventricular > self.beats:
            raise RecordError("HolterSummary", "ventricular", "more ectopic beats than beats")
        if self.af_burden_pct is not None and not 0 <= self.af_burden_pct <= 100:
            raise RecordError("HolterSummary", "af_burden_pct", f"expected 0..100, got {self.af_burden_pct}")

    def when(self, at_s: float) -> str:
        """A time in the recording: the clock time where the start is known, and always the elapsed time."""
        elapsed = _hms(at_s)
        if self.started_at is None:
            return f"+{elapsed}"
        return f"{(self.started_at + timedelta(seconds=at_s)):%H:%M:%S} (+{elapsed})"

    @property
    def reference(self) -> Strip | None:
        """The strip whose 12-lead values and picture stand for the recording: the first hourly one measured.

        Chosen from the hourly strips alone, so :func:`printout_strip` finds it again without the whole pass.
        """
        return _first_measured([s for s in self.strips if s.reason == "hourly"])

    def sentences(self) -> list[str]:
        """The summary as report text, one line each."""
        hours = self.analysed_s / 3600
        out = [
            f"Long ECG recording (Holter): {_duration(self.duration_s)}, {self.leads} leads at {self.fs:g} Hz; "
            f"{_duration(self.analysed_s)} analysed in {self.window_s:g} s windows.",
        ]
        rate = f"Total beats: {self.beats:,}."
        if self.hr_mean_bpm is not None:
            rate += f" Heart rate mean {self.hr_mean_bpm:.0f} /min"
            if self.hr_min is not None and self.hr_max is not None:
                rate += (
                    f", minimum {self.hr_min.bpm:.0f} /min at {self.when(self.hr_min.at_s)}, maximum "
                    f"{self.hr_max.bpm:.0f} /min at {self.when(self.hr_max.at_s)} (1-minute averages)"
                )
            rate += "."
        out.append(rate)
        if self.longest_rr is not None:
            out.append(
                f"Longest RR interval {self.longest_rr.seconds:.2f} s at {self.when(self.longest_rr.at_s)}; "
                f"{self.pauses} pause(s) of {PAUSE_S:g} s or longer."
            )
        out.append(
            f"Ventricular ectopic beats: {_count(self.ventricular, hours)}; supraventricular "
            f"ectopic beats: {_count(self.supraventricular, hours)}."
        )
        if self.af_burden_pct is not None:
            out.append(f"Atrial fibrillation/flutter burden: {self.af_burden_pct:.1f}% of analysed time.")
        for span in self.statements:
            out.append(
                f"{span.finding.text}: first at {self.when(span.first_at_s)}, "
                f"in {span.windows} of {self.windows} windows."
            )
        ref = self.reference
        if self.strips:
            out.append(
                f"{len(self.strips)} representative {STRIP_S:g} s strip(s) analysed as 12-lead ECGs "
                f"({', '.join(sorted({s.reason for s in self.strips}))})"
                + (
                    f"; intervals from the strip at {self.when(ref.start_s)}."
                    if ref is not None and ref.analysis.measurements
                    else "."
                )
            )
        return out

    def findings(self) -> tuple[Finding, ...]:
        """One finding per statement made in any window, its text saying when it was first made and how often."""
        return tuple(
            replace(
                s.finding,
                text=f"{s.finding.text} (first at {self.when(s.first_at_s)}, in {s.windows} of {self.windows} windows)",
            )
            for s in self.statements
        )

    def priority(self) -> Priority:
        """STAT when any window made a critical statement (the rules' own priority), else routine."""
        return priority_of(self.findings())

    @property
    def producer(self) -> Producer:
        return PRODUCER

    def measurements(self) -> tuple[Measurement, ...]:
        """The reference strip's global 12-lead values, its heart rate replaced by the recording's mean."""
        ref = self.reference
        rate_codes = (LOINC.HEART_RATE, LOINC.EKG_HEART_RATE, LOINC.RR_INTERVAL)
        kept = () if ref is None else tuple(m for m in ref.analysis.measurements if m.site is None)
        out = [m for m in kept if m.code not in rate_codes]
        if self.hr_mean_bpm is not None:
            out.insert(0, Measurement(LOINC.HEART_RATE, round(self.hr_mean_bpm, 1), UCUM.BPM, method="recording mean"))
        return tuple(out)


def to_json(s: HolterSummary) -> dict[str, Any]:
    """The JSON shape of ``mmdx ecg analyze --json`` for a recording analysed in windows (times in s from start)."""

    def rate(r: RateAt | None) -> dict[str, float] | None:
        return None if r is None else {"bpm": round(r.bpm, 1), "at_s": r.at_s}

    return {
        "record": s.source,
        "holter": {
            "started_at": None if s.started_at is None else s.started_at.isoformat(),
            "duration_s": round(s.duration_s, 3),
            "analysed_s": round(s.analysed_s, 3),
            "window_s": s.window_s,
            "windows": s.windows,
            "beats": s.beats,
            "ventricular": s.ventricular,
            "supraventricular": s.supraventricular,
            "hr_mean_bpm": None if s.hr_mean_bpm is None else round(s.hr_mean_bpm, 1),
            "hr_min": rate(s.hr_min),
            "hr_max": rate(s.hr_max),
            "longest_rr": None
            if s.longest_rr is None
            else {"s": round(s.longest_rr.seconds, 3), "at_s": round(s.longest_rr.at_s, 3)},
            "pauses": s.pauses,
            "af_burden_pct": s.af_burden_pct,
            "statements": [
                {
                    **({} if f.finding.concept is None else {"code": f.finding.concept.value}),
                    "text": f.finding.text,
                    "first_at_s": f.first_at_s,
                    "windows": f.windows,
                }
                for f in s.statements
            ],
            "strips": [{"reason": x.reason, "start_s": x.start_s} for x in s.strips],
        },
        "summary": s.sentences(),
    }


def _count(n: int, hours: float) -> str:
    return f"{n:,} ({n / hours:.1f}/h)" if hours > 0 else f"{n:,}"


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _windows(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``[a, b)`` spans of about ``size`` samples covering ``[0, n)`` (the last one never a short stub)."""
    k = max(1, round(n / size))
    edges = [round(i * n / k) for i in range(k + 1)]
    yield from itertools.pairwise(edges)


@dataclass
class _Spans:
    """Statements seen so far: first window start and count, keyed by concept (or text)."""

    spans: dict[tuple[str, str], StatementSpan]

    def add(self, findings: tuple[Finding, ...], at_s: float) -> None:
        seen: set[tuple[str, str]] = set()
        for f in findings:
            if f.presence is not Presence.PRESENT:
                continue
            key = (f.concept.system, f.concept.value) if f.concept is not None else ("text", f.text)
            if key in seen:
                continue
            seen.add(key)
            held = self.spans.get(key)
            self.spans[key] = StatementSpan(f, at_s, 1) if held is None else replace(held, windows=held.windows + 1)


def analyze_holter(
    rec: LongRecording,
    config: EcgConfig | None = None,
    *,
    window_s: float = 60.0,
    patient: Patient | None = None,
    max_hours: float | None = None,
) -> HolterSummary:
    """Analyse a long recording window by window (see the module docstring); memory does not grow with length.

    EcgError when the recording is longer than ``max_hours`` or its samples cannot be read.
    """
    if max_hours is not None:
        check_length(rec, max_hours, 0)
    fs, n = rec.fs, rec.n_samples
    pad, margin = int(PAD_S * fs), int(MARGIN_S * fs)
    found: list[npt.NDArray[np.int64]] = []
    labels: list[npt.NDArray[np.str_]] = []
    windows: list[npt.NDArray[np.int64]] = []
    spans = _Spans({})
    analysed = af = 0.0
    for index, (a, b) in enumerate(_windows(n, max(int(window_s * fs), int(STRIP_S * fs)))):
        lo, hi = max(0, a - pad), min(n, b + pad)
        result = analyze(rec.read(lo, hi), config, patient=patient)
        at = np.fromiter((lo + bt.sample for bt in result.beats), dtype=np.int64, count=len(result.beats))
        keep = (at >= a - margin) & (at < b + margin)
        if at.size < 2 or not keep.any():
            continue  # nothing measurable here (noise, lead off): not analysed time
        fibrillating = any(f.concept in AF_CONCEPTS for f in result.statements if f.presence is Presence.PRESENT)
        lab = np.array([bt.label for bt in result.beats], dtype="<U1")[keep]
        if fibrillating:  # an irregular beat in AF/flutter is the rhythm, not a supraventricular ectopic
            lab[lab == "S"] = "N"
        found.append(at[keep])
        labels.append(lab)
        windows.append(np.full(int(keep.sum()), index, dtype=np.int64))
        span_s = (b - a) / fs
        analysed += span_s
        spans.add(result.statements, a / fs)
        af += span_s if fibrillating else 0.0
    beats, beat_labels, beat_windows = _merged(found, labels, windows, int(SAME_BEAT_S * fs))
    rr_valid, rr = _rr(beats, beat_labels, beat_windows, fs)
    minutes = _per_minute(beats, rr_valid, rr, fs)
    hr_min = hr_max = None
    if minutes:
        hr_min = RateAt(*min(minutes, key=lambda m: m[0]))
        hr_max = RateAt(*max(minutes, key=lambda m: m[0]))
    longest = None
    if rr_valid.any():
        i = int(np.argmax(np.where(rr_valid, rr, -1.0)))
        longest = Pause(float(rr[i]), float(beats[i] / fs))
    summary = HolterSummary(
        source=str(rec.base),
        started_at=rec.started_at,
        duration_s=rec.duration_s,
        analysed_s=analysed,
        window_s=window_s,
        windows=len(found),
        leads=len(rec.channels),
        fs=fs,
        beats=int(beats.size),
        ventricular=int(np.count_nonzero(beat_labels == "V")),
        supraventricular=int(np.count_nonzero(beat_labels == "S")),
        hr_mean_bpm=float(60.0 / rr[rr_valid].mean()) if rr_valid.any() else None,
        hr_min=hr_min,
        hr_max=hr_max,
        longest_rr=longest,
        pauses=int(np.count_nonzero(rr_valid & (rr >= PAUSE_S))),
        af_burden_pct=round(100.0 * af / analysed, 1) if analysed > 0 else None,
        statements=tuple(sorted(spans.spans.values(), key=lambda s: s.first_at_s)),
        strips=(),
    )
    return replace(summary, strips=_strips(rec, summary, config, patient))


def _merged(
    found: list[npt.NDArray[np.int64]],
    labels: list[npt.NDArray[np.str_]],
    windows: list[npt.NDArray[np.int64]],
    same: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    """All windows' beats in time order, a QRS seen by two neighbouring windows kept once (the first window's)."""
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, "<U1"), np.zeros(0, np.int64)
    beats, labs, wins = np.concatenate(found), np.concatenate(labels), np.concatenate(windows)
    order = np.argsort(beats, kind="stable")
    beats, labs, wins = beats[order], labs[order], wins[order]
    dup = np.zeros(beats.size, dtype=bool)
    dup[1:] = (np.diff(beats) < same) & (wins[1:] != wins[:-1])
    return beats[~dup], labs[~dup], wins[~dup]


def _rr(
    beats: npt.NDArray[np.int64], labels: npt.NDArray[np.str_], windows: npt.NDArray[np.int64], fs: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """RR intervals (s) after each beat, and which count: both beats classified, no unanalysed window between."""
    if beats.size < 2:
        return np.zeros(0, dtype=bool), np.zeros(0)
    rr = np.diff(beats) / fs
    valid = (labels[:-1] != "Q") & (labels[1:] != "Q") & (np.diff(windows) <= 1)
    return valid, rr


def _per_minute(
    beats: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_], rr: npt.NDArray[np.float64], fs: float
) -> list[tuple[float, float]]:
    """(rate /min, minute start s) of each clock minute with enough RR intervals, by the beat that ends each."""
    if not valid.any():
        return []
    minute = (beats[1:][valid] // int(60 * fs)).astype(np.int64)
    sums = np.bincount(minute, weights=rr[valid])
    counts = np.bincount(minute)
    good = np.flatnonzero(counts >= MIN_RR_PER_MINUTE)
    return [(60.0 * counts[m] / sums[m], float(m * 60)) for m in good]


def _first_measured(strips: list[Strip]) -> Strip | None:
    return next((s for s in strips if s.analysis.measurements), strips[0] if strips else None)


def _hourly(rec: LongRecording) -> list[tuple[str, float]]:
    last = max(0.0, rec.duration_s - STRIP_S)
    return [("hourly", h * STRIP_EVERY_S) for h in range(math.ceil(last / STRIP_EVERY_S) or 1)]


def _strip(rec: LongRecording, reason: str, start: float, config: EcgConfig | None, patient: Patient | None) -> Strip:
    a = int(start * rec.fs)
    record = rec.read(a, min(rec.n_samples, a + int(STRIP_S * rec.fs)))
    return Strip(reason, start, record, analyze(record, config, patient=patient))


def printout_strip(
    rec: LongRecording, config: EcgConfig | None = None, *, patient: Patient | None = None
) -> Strip | None:
    """The summary's reference strip (its printout), found from the hourly strips only: no pass over the windows.

    For a sign-off that redraws the report's printout (the same recording gives the same picture).
    """
    for _, start in _hourly(rec):
        strip = _strip(rec, "hourly", start, config, patient)
        if strip.analysis.measurements:
            return strip
    return _strip(rec, "hourly", 0.0, config, patient)


def _strips(
    rec: LongRecording, summary: HolterSummary, config: EcgConfig | None, patient: Patient | None
) -> tuple[Strip, ...]:
    """One strip per hour, then those of the fastest and slowest minute and of the longest pause."""
    last = max(0.0, rec.duration_s - STRIP_S)
    wanted = _hourly(rec)
    if summary.hr_max is not None:
        wanted.append(("fastest rate", summary.hr_max.at_s + 25.0))
    if summary.hr_min is not None:
        wanted.append(("slowest rate", summary.hr_min.at_s + 25.0))
    if summary.longest_rr is not None:
        wanted.append(("longest pause", summary.longest_rr.at_s + summary.longest_rr.seconds / 2 - STRIP_S / 2))
    strips: list[Strip] = []
    taken: set[int] = set()
    for reason, start in wanted:
        start = min(max(0.0, start), last)
        a = int(start * rec.fs)
        if a in taken:
            continue
        taken.add(a)
        strips.append(_strip(rec, reason, start, config, patient))
    return tuple(strips)
