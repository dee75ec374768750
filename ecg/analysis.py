"""The ECG analysis façade: one record in, beats, measurements and statements out.

``analyze`` runs conditioning -> quality -> QRS detection -> beat
classification -> median beats and global delineation -> measurements ->
rule-based statements, and never invents a value: a record that cannot be
measured yields an explicit technical statement and no measurements.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import threading
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from core.codes import MMDX, Code
from core.config import EcgConfig
from core.errors import EcgError
from core.records import EcgRecord, EvidenceRef, Finding, Measurement, Patient, Priority, Producer, Sex
from ecg.rules import PRODUCER, RuleInput, interpret, priority_of
from ecg.signal.atrial import (
    atrial_activity,
    diastolic_wave,
    flutter_in_tq,
    half_rr_periodicity,
    half_rr_wave,
    isoelectric_tq,
    wave_off_t,
)
from ecg.signal.beats import classify_beats
from ecg.signal.conditioning import Conditioned, condition, condition_many, needs_chunking
from ecg.signal.delineation import (
    Fiducials,
    MedianBeats,
    delineate,
    lead_qrs_bounds,
    median_beats,
    median_lead_qrs_ms,
    p_wave_consistency,
)
from ecg.signal.measurements import (
    GlobalMeasurements,
    LeadAmplitudes,
    global_measurements,
    lead_amplitudes,
    to_measurements,
)
from ecg.signal.qrs import detect_qrs, detect_qrs_many
from ecg.signal.quality import LeadProblem, LeadQuality, assess_leads, assess_leads_many, record_quality
from ecg.signal.sqi import LeadSqi, lead_sqi, record_readability

#: Shorter records cannot give a representative beat and a rate.
MIN_DURATION_S = 2.5
MIN_FS_HZ = 100.0
#: Detected 'beats' that do not resemble each other (median correlation below this) are noise.
MIN_BEAT_CONSISTENCY = 0.5
#: Whether the signal-quality-index readability gate (:mod:`ecg.signal.sqi`) runs; off only to measure its effect.
READABILITY_GATE = True
#: Detections amid artefact whose RR is below this fraction of the local RR are dropped.
ARTEFACT_EARLY = 0.5
#: A median-beat P wave counts as conducted only if this fraction of beats carries it.
P_CONSISTENCY = 0.7

_PROBLEM_CODES: dict[LeadProblem, Code] = {
    LeadProblem.FLAT: MMDX.ECG_LEAD_OFF,
    LeadProblem.MISSING: MMDX.ECG_LEAD_OFF,
    LeadProblem.SATURATED: MMDX.ECG_SATURATION,
    LeadProblem.NOISY: MMDX.ECG_NOISE,
}


@dataclass(frozen=True, slots=True)
class Beat:
    """One detected beat: sample index in the file's own rate, AAMI label, per-beat fiducials (file samples)."""

    sample: int
    label: str
    fiducials: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ConditioningInfo:
    """What conditioning did (for the report and for audit)."""

    analysis_fs: float
    source_fs: float
    highpass_hz: float
    lowpass_hz: float
    powerline_hz: float | None
    pacing_spikes: int


@dataclass(frozen=True, slots=True)
class DeviceDifference:
    """Our global value against the device's (the device is a comparison, not the truth)."""

    code: Code
    ours: float
    device: float
    unit: str

    @property
    def difference(self) -> float:
        return self.ours - self.device


@dataclass(frozen=True, slots=True)
class EcgAnalysis:
    """The result of analysing one ECG record."""

    source: str
    source_fs: float
    conditioning: ConditioningInfo | None
    beats: tuple[Beat, ...]
    fiducials_ms: tuple[tuple[str, float], ...]  #: global, ms relative to the representative QRS onset
    measurements: tuple[Measurement, ...]
    statements: tuple[Finding, ...]
    priority: Priority
    quality: tuple[LeadQuality, ...]
    excluded_leads: tuple[tuple[str, str], ...]
    device_comparison: tuple[DeviceDifference, ...]
    producer: Producer
    global_values: GlobalMeasurements | None = None

    def measurement(self, code: Code, site: str | None = None) -> Measurement | None:
        for m in self.measurements:
            if m.code == code and m.site == site:
                return m
        return None


def _technical(
    text: str, code: Code = MMDX.ECG_TECHNICAL, lead: str | None = None, criteria: tuple[str, ...] = ()
) -> Finding:
    return Finding(
        concept=code,
        text=text,
        producer=PRODUCER,
        evidence=(EvidenceRef(lead=lead),) if lead else (),
        criteria=criteria,
    )


def _insufficient(
    record: EcgRecord, reason: str, quality: tuple[LeadQuality, ...] = (), info: ConditioningInfo | None = None
) -> EcgAnalysis:
    stmts = (
        *_lead_statements(quality),
        _technical(f"ECG insufficient for analysis: {reason}", criteria=(reason,)),
    )
    return EcgAnalysis(
        source=record.source,
        source_fs=record.sampling_rate_hz,
        conditioning=info,
        beats=(),
        fiducials_ms=(),
        measurements=(),
        statements=stmts,
        priority=Priority.routine(),
        quality=quality,
        excluded_leads=tuple((q.lead, q.problem.value) for q in quality if q.problem is not None),
        device_comparison=(),
        producer=PRODUCER,
    )


def _lead_statements(quality: tuple[LeadQuality, ...]) -> list[Finding]:
    out = []
    for q in quality:
        if q.problem is None:
            continue
        crit = (
            f"peak-to-peak {q.ptp_mv:.3f} mV, clipped {q.clip_fraction:.1%}, "
            f"HF noise {q.noise_rms_mv:.3f} mV, missing {q.nan_fraction:.1%}",
        )
        out.append(
            _technical(
                f"Lead {q.lead}: {q.problem.value}; excluded from measurements", _PROBLEM_CODES[q.problem], q.lead, crit
            )
        )
    return out


def _device_comparison(record: EcgRecord, ours: tuple[Measurement, ...]) -> tuple[DeviceDifference, ...]:
    out = []
    for d in record.device_measurements:
        if d.site is not None:
            continue
        for m in ours:
            if (
                m.site is None
                and m.code.value == d.code.value
                and m.code.scheme == d.code.scheme
                and m.unit.value == d.unit.value
            ):
                out.append(DeviceDifference(m.code, m.value, d.value, m.unit.value))
                break
    return tuple(out)


def _per_beat_fiducials(
    mb: MedianBeats, fd: Fiducials, beats: npt.NDArray[np.int64], scale: float
) -> dict[int, tuple[tuple[str, int], ...]]:
    """Global fiducials projected on every beat that built the median (aligned by its lag)."""
    out: dict[int, tuple[tuple[str, int], ...]] = {}
    keys = (("p_on", fd.p_on), ("p_off", fd.p_off), ("qrs_on", fd.qrs_on), ("qrs_off", fd.qrs_off), ("t_off", fd.t_off))
    for k, lag in zip(mb.used, mb.lags, strict=True):
        base = int(beats[k]) + int(lag) - mb.fiducial
        out[int(k)] = tuple((name, round((base + v) * scale)) for name, v in keys if v is not None)
    return out


#: Physiological ranges of global values; a value outside is withheld and flagged, never reported.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "hr_bpm": (15.0, 350.0),
    "pr_ms": (50.0, 450.0),
    "p_ms": (30.0, 250.0),
    "qrs_ms": (40.0, 250.0),
    "qt_ms": (150.0, 750.0),
}


def _plausible(g: GlobalMeasurements) -> tuple[GlobalMeasurements | None, list[Finding]]:
    """Withhold global values outside physiological ranges, with a technical statement for each."""
    flags: list[Finding] = []
    changes: dict[str, Any] = {}  # field name -> None (withheld)
    for name, (lo, hi) in PLAUSIBLE.items():
        v = getattr(g, name)
        if v is not None and not lo <= v <= hi:
            label = name.rsplit("_", 1)[0].upper()
            flags.append(
                _technical(
                    f"{label} {v:.0f} outside the physiological range {lo:g}-{hi:g}: not reported",
                    criteria=(f"{name} = {v:.1f}",),
                )
            )
            changes[name] = None
    if not changes:
        return g, flags
    if "qrs_ms" in changes:  # everything hangs on the QRS boundaries: report no interval at all
        return None, flags
    if "qt_ms" in changes:
        changes.update(qtc_bazett_ms=None, qtc_fridericia_ms=None, qtc_framingham_ms=None, qtc_hodges_ms=None)
    if "hr_bpm" in changes:
        changes["rr_ms"] = None
    return replace(g, **changes), flags


def _merge_patient(given: Patient | None, from_file: Patient) -> Patient:
    """The caller's demographics, completed by the file's where the caller's are unknown (thresholds need both)."""
    if given is None:
        return from_file
    sex = given.sex if given.sex not in (Sex.UNKNOWN, Sex.OTHER) else from_file.sex
    age = given.age_years if given.age_years is not None else from_file.age_years
    return Patient(sex=sex, age_years=age)


def analyze(record: EcgRecord, config: EcgConfig | None = None, *, patient: Patient | None = None) -> EcgAnalysis:
    """Analyse one ECG record.

    Parameters
    ----------
    record
        Leads in millivolts at any rate >= 100 Hz.
    config
        Conditioning settings (target rate, band limits, powerline).
    patient
        Demographics for sex/age-dependent thresholds (defaults to ``record.patient``).
    """
    cfg = config or EcgConfig()
    pat = _merge_patient(patient, record.patient)
    early = _unanalysable(record)
    if early is not None:
        return early
    raw = np.asarray(record.signal, dtype=np.float64)
    cond = condition(raw, record.sampling_rate_hz, **_condition_options(cfg), source=record.source)
    quality = assess_leads(raw, cond.signal, cond.fs, record.lead_names, cond.nan_fraction)
    usable = np.array([q.usable for q in quality])
    if not usable.any():
        return _insufficient(record, "no lead of acceptable quality", quality, _info(cond))
    return _from_beats(record, pat, cond, quality, usable, detect_qrs(cond.signal, cond.fs, usable=usable))


def _unanalysable(record: EcgRecord) -> EcgAnalysis | None:
    """The explicit 'insufficient' result for a record too short or too coarse to analyse, else None."""
    fs0 = record.sampling_rate_hz
    if fs0 < MIN_FS_HZ:
        return _insufficient(record, f"sampling rate {fs0:g} Hz < {MIN_FS_HZ:g} Hz")
    if record.duration_s < MIN_DURATION_S:
        return _insufficient(record, f"record is {record.duration_s:.2f} s long; at least {MIN_DURATION_S} s needed")
    return None


def _condition_options(cfg: EcgConfig) -> dict[str, Any]:
    return {
        "target_fs": cfg.target_rate_hz,
        "highpass_hz": cfg.highpass_hz,
        "lowpass_hz": cfg.lowpass_hz,
        "powerline": cfg.powerline_hz,
    }


def _info(cond: Conditioned) -> ConditioningInfo:
    return ConditioningInfo(
        cond.fs, cond.source_fs, cond.highpass_hz, cond.lowpass_hz, cond.powerline_hz, int(cond.pacing_spikes.size)
    )


def _from_beats(
    record: EcgRecord,
    pat: Patient,
    cond: Conditioned,
    quality: tuple[LeadQuality, ...],
    usable: npt.NDArray[np.bool_],
    beats: npt.NDArray[np.int64],
) -> EcgAnalysis:
    """Everything after QRS detection (per record): classification, median beats, delineation, rules."""
    fs0 = record.sampling_rate_hz
    info = _info(cond)
    x = cond.signal
    fs = cond.fs
    if beats.size < 2:
        return _insufficient(record, f"{beats.size} QRS complex(es) detected", quality, info)
    labels, feat = classify_beats(x, fs, beats, usable=usable, pacing_spikes=cond.pacing_spikes)
    if feat.artefact is not None and feat.artefact.any():
        # a detection inside an artefact burst, far earlier than any plausible beat, is the artefact itself
        spurious = feat.artefact & (feat.rr_prev_ms < ARTEFACT_EARLY * feat.rr_local_ms)
        if spurious.any() and (~spurious).sum() >= 2:
            beats = beats[~spurious]
            labels, feat = classify_beats(x, fs, beats, usable=usable, pacing_spikes=cond.pacing_spikes)
    artefact_fraction = float(np.mean(feat.artefact)) if feat.artefact is not None and feat.artefact.size else 0.0
    rq = record_quality(quality, artefact_fraction)
    if rq.poor is None and READABILITY_GATE:
        # published signal-quality indices per usable lead: beats the detectors disagree on are not the heart's
        # (a record is readable while one lead is: stop at the first readable lead)
        sqis: list[LeadSqi] = []
        for i, q in enumerate(quality):
            if q.usable and (not sqis or sqis[-1].unreadable is not None):
                sqis.append(lead_sqi(x[i], fs, beats, q.lead))
        rq = replace(rq, poor=record_readability(tuple(sqis)))
    consistency = float(np.median(feat.correlation))
    if consistency < MIN_BEAT_CONSISTENCY:
        return _insufficient(
            record,
            f"no consistent QRS complexes (median beat correlation {consistency:.2f}): noise or artefact",
            quality,
            info,
        )
    mb = median_beats(x, fs, beats, labels, usable=usable)
    scale = fs0 / fs
    stmts: list[Finding] = _lead_statements(quality)
    measurements: tuple[Measurement, ...] = ()
    g = None
    fid_ms: tuple[tuple[str, float], ...] = ()
    per_beat: dict[int, tuple[tuple[str, int], ...]] = {}
    atrial = None
    qrs_lead_ms: float | None = None
    amps: tuple[LeadAmplitudes, ...] = ()
    if mb is not None:
        rr = float(np.median(np.diff(beats)))
        fd = delineate(mb, rr_samples=rr, usable=usable)
        if fd.t_note:  # the T end was withheld (e.g. a P wave fused with the T): say why QT is missing
            stmts.append(_technical(f"QT not measured: {fd.t_note}", criteria=(fd.t_note,)))
        flutter_rate = flutter_in_tq(
            x, fs, beats, fd.qrs_on - mb.fiducial, None if fd.t_off is None else fd.t_off - mb.fiducial, usable
        )
        p_consistency = p_wave_consistency(x, beats, mb, fd, usable)
        if flutter_rate is not None or p_consistency < P_CONSISTENCY:
            # flutter waves or unlocked atrial waves are not a conducted P wave: no P values, no PR
            fd = replace(fd, p_on=None, p_off=None, p_peak=None)
        names_used = tuple(n for n, u in zip(record.lead_names, usable, strict=True) if u)
        mb_used = MedianBeats(mb.beats[usable], mb.fs, mb.fiducial, mb.n_beats, mb.lags, mb.used)
        g_raw = global_measurements(mb_used, fd, beats, names_used, np.ones(len(names_used), dtype=bool))
        g, implausible = _plausible(g_raw)
        stmts.extend(implausible)
        if g is not None and g.pr_ms is None and fd.p_on is not None:
            fd = replace(fd, p_on=None, p_off=None, p_peak=None)  # P withheld
        if g is not None and g.qt_ms is None and fd.t_off is not None:
            fd = replace(fd, t_off=None)  # T withheld
        if g is not None:
            l_on, l_off, l_ok = lead_qrs_bounds(mb_used.beats, mb_used.fs, mb.fiducial)
            amps = lead_amplitudes(mb_used, fd, names_used, np.where(l_ok, l_on, -1))
            measurements = to_measurements(g, amps)
            qrs_lead_ms = median_lead_qrs_ms(l_on, l_off, l_ok, mb_used.fs)
        ms = 1000.0 / fs
        fid_ms = tuple(
            (k, round((v - fd.qrs_on) * ms, 1))
            for k, v in (
                ("p_on", fd.p_on),
                ("p_off", fd.p_off),
                ("qrs_on", fd.qrs_on),
                ("qrs_off", fd.qrs_off),
                ("t_off", fd.t_off),
            )
            if v is not None and g is not None
        )
        per_beat = _per_beat_fiducials(mb, fd, beats, scale) if g is not None else {}
        span = (
            (fd.p_on - int(0.04 * fs)) if fd.p_on is not None else mb.fiducial - int(0.30 * fs),
            (fd.t_off + int(0.04 * fs)) if fd.t_off is not None else mb.fiducial + int(0.45 * fs),
        )
        atrial = atrial_activity(x, fs, beats, mb, record.lead_names, usable, span, fd.p_peak)
        if flutter_rate is not None:
            atrial = replace(atrial, locked_flutter_per_min=flutter_rate)
        # waves locked to the QRS (2:1 conduction) and the evidence for absent P waves
        atrial = replace(
            atrial,
            half_rr_wave=half_rr_wave(x, fs, beats, mb, fd, usable),
            diastolic_wave_mv=diastolic_wave(mb, fd, rr, usable),
            isoelectric_tq_ms=isoelectric_tq(mb, fd, rr, usable),
            wave_off_t_mv=wave_off_t(mb, fd, rr, usable),
            half_rr_off_t=half_rr_wave(x, fs, beats, mb, fd, usable, remove_t=True),
            half_rr_periodicity=half_rr_periodicity(mb, fd, rr, usable),
        )
    else:
        stmts.append(_technical("No complete beat for a representative beat: intervals not measured"))
    twelve = record.has_standard_12_leads and all(
        q.usable for q in quality if q.lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    )
    if record.has_standard_12_leads and not twelve:
        stmts.append(_technical("12-lead statements withheld: a key lead is excluded"))
    ri = RuleInput(
        fs=fs,
        duration_s=record.duration_s,
        beats=beats,
        labels=labels,
        g=g,
        amps=amps,
        atrial=atrial,
        twelve_lead=twelve,
        patient=pat,
        measurements=measurements,
        paced_fraction=float(np.mean(feat.paced)) if feat.paced is not None and feat.paced.size else 0.0,
        beat_wide=feat.wide,
        beat_corr_prev=feat.corr_prev,
        qrs_lead_median_ms=qrs_lead_ms,
        good_leads=rq.good_leads,
        quality_poor=rq.poor,
        implausible_amplitude=rq.implausible_amplitude,
    )
    stmts += list(interpret(ri))
    statements = tuple(stmts)
    out_beats = tuple(
        Beat(round(int(b) * scale), str(lab), per_beat.get(i, ()))
        for i, (b, lab) in enumerate(zip(beats, labels, strict=True))
    )
    return EcgAnalysis(
        source=record.source,
        source_fs=fs0,
        conditioning=info,
        beats=out_beats,
        fiducials_ms=fid_ms,
        measurements=measurements,
        statements=statements,
        priority=priority_of(statements),
        quality=quality,
        excluded_leads=tuple((q.lead, q.problem.value) for q in quality if q.problem is not None),
        device_comparison=_device_comparison(record, measurements),
        producer=PRODUCER,
        global_values=g,
    )


#: Records conditioned together in one array.  Small on purpose: the stacked steps are bound by the numeric
#: kernels, not by call overhead, and 4 x 12 leads x 10 s at 500 Hz (2 MB a copy) still sits in cache for the
#: per-record steps that follow; larger groups measured no faster here (bench/bench_ecg.py, part 4).
GROUP_SIZE = 4


def analyze_batch(
    records: Sequence[EcgRecord],
    config: EcgConfig | None = None,
    *,
    patients: Sequence[Patient | None] | None = None,
    workers: int | None = None,
    group_size: int = GROUP_SIZE,
) -> list[EcgAnalysis | EcgError]:
    """Analyse many records in one call; results in input order, each equal to :func:`analyze`'s.

    Records of the same rate, length and lead count are stacked as one
    (records x leads) x samples array and conditioned, quality-checked and
    QRS-filtered together: every one of those steps works lead by lead, so a
    record gets what :func:`analyze` gives it while the per-call cost of each
    scipy/numpy step is paid once per group instead of once per record.  Beat
    classification, delineation, measurements and rules stay per record.
    That saving is small (the filters, medians and FFTs themselves dominate,
    and they cost the same stacked or not); real throughput gains come from
    ``workers`` on a machine with idle cores.

    A record that cannot be analysed does not stop the others: where
    :func:`analyze` returns an 'insufficient' result the batch returns the same,
    and where it would raise, the batch returns the :class:`EcgError` in that
    record's place.

    Parameters
    ----------
    records
        Any mix of rates, lengths and lead sets.
    config
        Conditioning settings, as for :func:`analyze`.
    patients
        Demographics per record (``None`` entries use the record's own).
    workers
        Processes to analyse chunks of records in.  ``None`` (the default):
        one per CPU when the batch is large enough to pay for them (at least
        :data:`RECORDS_PER_WORKER` records each) and this process can fork
        cheaply (it runs no other thread); else this process alone.
    group_size
        At most this many records are stacked into one array.
    """
    cfg = config or EcgConfig()
    pats: list[Patient | None] = list(patients) if patients is not None else [None] * len(records)
    if len(pats) != len(records):
        raise EcgError(f"{len(pats)} patients given for {len(records)} records; expected one per record")
    if workers is None:
        workers = min(os.cpu_count() or 1, len(records) // RECORDS_PER_WORKER) if _can_fork() else 1
    if workers > 1 and len(records) > group_size:
        return _analyze_in_processes(list(records), cfg, pats, workers, group_size)
    return _analyze_many(records, cfg, pats, max(1, group_size))


#: A forked worker costs ~20 ms to start and ~1 ms per result to send back: worth it from this many records up.
RECORDS_PER_WORKER = 8


def _can_fork() -> bool:
    """Forking is safe only while no other thread could hold a lock the child would inherit."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def _failure(record: EcgRecord, exc: Exception) -> EcgError:
    """The error a batch returns in a failed record's place (what :func:`analyze` would have raised)."""
    if isinstance(exc, EcgError):
        return exc
    err = EcgError(f"analysis failed: {type(exc).__name__}: {exc}", source=record.source)
    err.__cause__ = exc
    return err


def _analyze_one(record: EcgRecord, cfg: EcgConfig, patient: Patient | None) -> EcgAnalysis | EcgError:
    try:
        return analyze(record, cfg, patient=patient)
    except Exception as exc:  # one bad record must not take down the batch
        return _failure(record, exc)


def _analyze_many(
    records: Sequence[EcgRecord], cfg: EcgConfig, pats: Sequence[Patient | None], group_size: int
) -> list[EcgAnalysis | EcgError]:
    out: list[EcgAnalysis | EcgError | None] = [None] * len(records)
    groups: dict[tuple[float, int, int], list[int]] = {}
    for i, rec in enumerate(records):
        try:
            early = _unanalysable(rec)
            shape = np.shape(rec.signal)
            fs = float(rec.sampling_rate_hz)
            if early is not None:
                out[i] = early
            elif len(shape) != 2 or needs_chunking(shape[1], fs, cfg.target_rate_hz):
                out[i] = _analyze_one(rec, cfg, pats[i])  # Holter-length or malformed: the single-record path
            else:
                groups.setdefault((fs, shape[0], shape[1]), []).append(i)
        except Exception as exc:
            out[i] = _failure(rec, exc)
    for members in groups.values():
        for k in range(0, len(members), group_size):
            idx = members[k : k + group_size]
            try:
                results = _analyze_group([records[i] for i in idx], cfg, [pats[i] for i in idx])
            except Exception:  # a group step failed: fall back to one record at a time, each on its own
                results = [_analyze_one(records[i], cfg, pats[i]) for i in idx]
            for i, r in zip(idx, results, strict=True):
                out[i] = r
    return [r for r in out if r is not None]


def _analyze_group(
    records: Sequence[EcgRecord], cfg: EcgConfig, pats: Sequence[Patient | None]
) -> list[EcgAnalysis | EcgError]:
    """Records of one rate, lead count and length: shared conditioning, quality and QRS filtering."""
    fs0 = records[0].sampling_rate_hz
    raw = np.stack([np.asarray(r.signal, dtype=np.float64) for r in records])
    conds = condition_many(raw, fs0, **_condition_options(cfg))
    qualities = assess_leads_many(
        raw,
        np.stack([c.signal for c in conds]),
        conds[0].fs,
        [r.lead_names for r in records],
        np.stack([c.nan_fraction for c in conds]),
    )
    usable = np.array([[q.usable for q in qs] for qs in qualities], dtype=bool)
    live = np.flatnonzero(usable.any(axis=1))
    beats: dict[int, npt.NDArray[np.int64]] = {}
    if live.size:
        found = detect_qrs_many(np.stack([conds[i].signal for i in live]), conds[0].fs, usable[live])
        beats = dict(zip(live.tolist(), found, strict=True))
    out: list[EcgAnalysis | EcgError] = []
    for i, rec in enumerate(records):
        try:
            pat = _merge_patient(pats[i], rec.patient)
            if i not in beats:
                out.append(_insufficient(rec, "no lead of acceptable quality", qualities[i], _info(conds[i])))
            else:
                out.append(_from_beats(rec, pat, conds[i], qualities[i], usable[i], beats[i]))
        except Exception as exc:
            out.append(_failure(rec, exc))
    return out


def _analyze_chunk(args: tuple[list[EcgRecord], EcgConfig, list[Patient | None], int]) -> list[EcgAnalysis | EcgError]:
    """Worker-process entry point (module level so that it pickles)."""
    records, cfg, pats, group_size = args
    return _analyze_many(records, cfg, pats, group_size)


def _analyze_in_processes(
    records: list[EcgRecord], cfg: EcgConfig, pats: list[Patient | None], workers: int, group_size: int
) -> list[EcgAnalysis | EcgError]:
    """Contiguous chunks of records to spawned worker processes; results reassembled in input order."""
    size = max(group_size, -(-len(records) // (2 * workers)))
    chunks = [(records[k : k + size], cfg, pats[k : k + size], group_size) for k in range(0, len(records), size)]
    # fork starts a worker in milliseconds, spawn in a second or two (it re-imports numpy, scipy...); fork only
    # while this process runs a single thread (a lock held by another thread would stay held in the child)
    ctx = multiprocessing.get_context("fork" if _can_fork() else "spawn")
    out: list[EcgAnalysis | EcgError] = []
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as pool:
            for part in pool.map(_analyze_chunk, chunks):
                out.extend(part)
    except (BrokenExecutor, OSError, pickle.PicklingError):  # no worker processes here: analyse in this one
        return _analyze_many(records, cfg, pats, group_size)
    return out


def _code(c: Code) -> dict[str, str]:
    return {"code": c.value, "system": c.system, "display": c.meaning}


def to_json(a: EcgAnalysis) -> dict[str, Any]:
    """The stable JSON shape of ``mmdx ecg analyze --json`` (field names are a contract)."""

    def num(v: float) -> float | None:
        return v if math.isfinite(v) else None

    return {
        "record": a.source,
        "fs": a.source_fs,
        "beats": [{"sample": b.sample, "label": b.label, **dict(b.fiducials)} for b in a.beats],
        "fiducials": dict(a.fiducials_ms),
        "measurements": [
            {
                "name": m.code.meaning,
                "value": num(m.value),
                "unit": m.unit.value,
                "code": m.code.value,
                "system": m.code.system,
                **({"lead": m.site} if m.site else {}),
            }
            for m in a.measurements
        ],
        "statements": [
            {
                **(_code(s.concept) if s.concept else {}),
                "text": s.text,
                "criteria": list(s.criteria),
                "critical": s.critical,
                **({"lead": s.evidence[0].lead} if s.evidence and s.evidence[0].lead else {}),
            }
            for s in a.statements
        ],
        "priority": {"level": a.priority.level.name, "reason": a.priority.reason},
        "quality": {
            q.lead: {
                "usable": q.usable,
                "problem": q.problem.value if q.problem else None,
                "ptp_mv": round(q.ptp_mv, 3),
                "noise_rms_mv": round(q.noise_rms_mv, 4),
                "clip_fraction": round(q.clip_fraction, 4),
            }
            for q in a.quality
        },
        "conditioning": None
        if a.conditioning is None
        else {
            "analysis_fs": a.conditioning.analysis_fs,
            "highpass_hz": a.conditioning.highpass_hz,
            "lowpass_hz": a.conditioning.lowpass_hz,
            "powerline_hz": a.conditioning.powerline_hz,
            "pacing_spikes": a.conditioning.pacing_spikes,
        },
        "device_comparison": [
            {
                "code": d.code.value,
                "name": d.code.meaning,
                "ours": d.ours,
                "device": d.device,
                "difference": round(d.difference, 1),
                "unit": d.unit,
            }
            for d in a.device_comparison
        ],
        "producer": {"name": a.producer.name, "version": a.producer.version, "digest": a.producer.digest},
    }
