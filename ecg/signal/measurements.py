"""Global intervals, QTc, frontal axes and per-lead amplitudes from the median beats.

Intervals are global (one value across leads, from ``delineation``); axes
come from net areas in I and aVF (derived from II and III when a limb lead
is excluded); amplitudes are per lead, relative to the PR-segment
isoelectric level, with the Q/R/S/R' naming of the standard nomenclature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.codes import LOINC, MDC, MMDX, UCUM, Code
from core.records import Measurement
from ecg.signal.delineation import Fiducials, MedianBeats

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: A lobe smaller than this (mV) is noise, not a named wave.
MIN_WAVE_MV = 0.02
METHOD = "median beat, global"


@dataclass(frozen=True, slots=True)
class GlobalMeasurements:
    """Global values; None where the wave was not found (never a made-up value)."""

    hr_bpm: float | None
    rr_ms: float | None
    pr_ms: float | None
    p_ms: float | None
    qrs_ms: float
    qt_ms: float | None
    qtc_bazett_ms: float | None
    qtc_fridericia_ms: float | None
    qtc_framingham_ms: float | None
    qtc_hodges_ms: float | None
    p_axis_deg: float | None
    qrs_axis_deg: float | None
    t_axis_deg: float | None


@dataclass(frozen=True, slots=True)
class LeadAmplitudes:
    """Per-lead amplitudes in mV (0.0 when the wave is absent, None when unmeasurable)."""

    lead: str
    p: float | None
    q: float
    r: float
    s: float
    r_prime: float
    st_j: float
    st_j60: float | None
    t: float | None
    #: duration of the initial negative deflection (Q wave), ms; 0 when the QRS starts upwards
    q_ms: float = 0.0
    #: R-peak time (onset of QRS to the peak of the last R or R'), ms; None without an R wave
    r_peak_ms: float | None = None
    #: mean amplitude of the last 40 ms of the QRS (terminal forces: + for a terminal R', - for a terminal S), mV
    terminal_mv: float = 0.0


def qtc(qt_ms: float, rr_ms: float) -> tuple[float, float, float, float]:
    """(Bazett, Fridericia, Framingham, Hodges) QTc in ms."""
    rr_s = rr_ms / 1000.0
    hr = 60.0 / rr_s
    return (
        qt_ms / math.sqrt(rr_s),
        qt_ms / rr_s ** (1.0 / 3.0),
        qt_ms + 154.0 * (1.0 - rr_s),
        qt_ms + 1.75 * (hr - 60.0),
    )


def _iso(m: FloatArray, fs: float, qrs_on: int) -> FloatArray:
    a, b = max(0, qrs_on - int(0.024 * fs)), max(1, qrs_on - int(0.004 * fs))
    return np.asarray(m[:, a:b].mean(axis=1), dtype=np.float64)


def _frontal_pair(
    m: FloatArray, names: tuple[str, ...], usable: npt.NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray] | None:
    """Leads I and aVF (derived from II/III when needed) of the baseline-corrected median beats."""
    ok = {n: m[i] for i, n in enumerate(names) if usable[i]}
    lead_i = ok.get("I")
    avf = ok.get("aVF")
    if lead_i is None and "II" in ok and "III" in ok:
        lead_i = ok["II"] - ok["III"]
    if avf is None and "II" in ok and "III" in ok:
        avf = 0.5 * (ok["II"] + ok["III"])
    if avf is None and "II" in ok and lead_i is not None:
        avf = ok["II"] - 0.5 * lead_i
    if lead_i is None or avf is None:
        return None
    return lead_i, avf


def _axis(pair: tuple[FloatArray, FloatArray] | None, a: int | None, b: int | None) -> float | None:
    if pair is None or a is None or b is None or b <= a:
        return None
    x = float(pair[0][a:b].sum())
    y = float(pair[1][a:b].sum())
    if math.hypot(x, y) < 1e-9:
        return None
    ang = math.degrees(math.atan2(y, x))
    return round(ang if ang > -90 else ang + 360, 1)  # conventional -90..+270 range


def global_measurements(
    mb: MedianBeats,
    fd: Fiducials,
    beats: IntArray,
    lead_names: tuple[str, ...],
    usable: npt.NDArray[np.bool_],
) -> GlobalMeasurements:
    """Global intervals, QTc and axes from the fiducials of the median beats."""
    ms = 1000.0 / mb.fs
    rr = float(np.median(np.diff(beats))) * ms if beats.size >= 2 else None
    hr = 60000.0 / float(np.mean(np.diff(beats)) * ms) if beats.size >= 2 else None
    pr = (fd.qrs_on - fd.p_on) * ms if fd.p_on is not None else None
    pd = (fd.p_off - fd.p_on) * ms if fd.p_on is not None and fd.p_off is not None else None
    qrs = (fd.qrs_off - fd.qrs_on) * ms
    qt = (fd.t_off - fd.qrs_on) * ms if fd.t_off is not None else None
    corr: tuple[float | None, ...] = (None, None, None, None)
    if qt is not None and rr is not None:
        corr = qtc(qt, rr)
    m = mb.beats - _iso(mb.beats, mb.fs, fd.qrs_on)[:, None]
    pair = _frontal_pair(m, lead_names, usable)
    return GlobalMeasurements(
        hr_bpm=hr,
        rr_ms=rr,
        pr_ms=pr,
        p_ms=pd,
        qrs_ms=qrs,
        qt_ms=qt,
        qtc_bazett_ms=corr[0],
        qtc_fridericia_ms=corr[1],
        qtc_framingham_ms=corr[2],
        qtc_hodges_ms=corr[3],
        p_axis_deg=_axis(pair, fd.p_on, fd.p_off),
        qrs_axis_deg=_axis(pair, fd.qrs_on, fd.qrs_off),
        t_axis_deg=_axis(pair, fd.qrs_off, fd.t_off),
    )


def _lobes(y: FloatArray) -> list[float]:
    """Signed extrema of successive same-sign lobes, small lobes merged away."""
    sign = np.sign(y)
    out: list[float] = []
    start = 0
    for i in range(1, y.size + 1):
        if i == y.size or sign[i] != sign[start]:
            seg = y[start:i]
            ext = float(seg[np.argmax(np.abs(seg))])
            if abs(ext) >= MIN_WAVE_MV:
                if out and np.sign(out[-1]) == np.sign(ext):
                    out[-1] = ext if abs(ext) > abs(out[-1]) else out[-1]
                else:
                    out.append(ext)
            start = i
    return out


def _qrs_timing(qrs: FloatArray, fs: float, has_q: bool, r: float, r_prime: float) -> tuple[float, float | None, float]:
    """(Q duration ms, R-peak time ms, mean of the terminal 40 ms in mV) of one lead's QRS (baseline-corrected).

    The Q duration runs from QRS onset to the first upward zero crossing; the
    R-peak time to the largest sample of the last positive lobe (R' when there
    is one): the "intrinsicoid deflection" of the bundle-branch criteria.
    """
    ms = 1000.0 / fs
    q_ms = 0.0
    if has_q and qrs.size:
        trough = int(np.argmin(qrs[: max(1, qrs.size // 2)]))
        down = np.flatnonzero(qrs[: trough + 1] >= 0.0)
        up = np.flatnonzero(qrs[trough:] >= 0.0)
        start = int(down[-1]) if down.size else 0
        q_ms = float(((trough + int(up[0])) if up.size else qrs.size) - start) * ms
    r_peak = None
    if r > 0.0:
        target = r_prime if r_prime > 0.0 else r
        hits = np.flatnonzero(np.abs(qrs - target) <= 1e-9)
        if hits.size:
            r_peak = float(hits[-1] * ms)
    n_term = max(1, round(0.04 * fs))
    terminal = float(np.mean(qrs[-n_term:])) if qrs.size else 0.0
    return q_ms, r_peak, terminal


def lead_amplitudes(
    mb: MedianBeats, fd: Fiducials, lead_names: tuple[str, ...], lead_onsets: IntArray | None = None
) -> tuple[LeadAmplitudes, ...]:
    """Amplitudes of every lead's median beat relative to its PR-segment level.

    ``lead_onsets`` (each lead's own QRS onset, -1 where it has none) start
    that lead's waves: the global onset is the earliest of all leads, and in
    a lead whose QRS starts later the baseline before it (a PR-segment dip,
    atrial repolarisation) would otherwise be read as a Q wave.
    """
    fs = mb.fs
    m = mb.beats - _iso(mb.beats, fs, fd.qrs_on)[:, None]
    j60 = fd.qrs_off + int(0.06 * fs)
    out: list[LeadAmplitudes] = []
    for i, name in enumerate(lead_names):
        y = m[i]
        start = fd.qrs_on
        if lead_onsets is not None and fd.qrs_on < lead_onsets[i] < fd.qrs_off:
            start = int(lead_onsets[i])
        lobes = _lobes(y[start : fd.qrs_off + 1])
        q = r = s = rp = 0.0
        k = 0
        if lobes and lobes[0] < 0:
            q = lobes[0]
            k = 1
        if k < len(lobes) and lobes[k] > 0:
            r = lobes[k]
            k += 1
            if k < len(lobes) and lobes[k] < 0:
                s = lobes[k]
                k += 1
                if k < len(lobes) and lobes[k] > 0:
                    rp = lobes[k]
        p = None
        if fd.p_on is not None and fd.p_off is not None and fd.p_off > fd.p_on:
            seg = y[fd.p_on : fd.p_off + 1]
            p = float(seg[np.argmax(np.abs(seg))])
        t = None
        if fd.t_off is not None and fd.t_off > fd.qrs_off + int(0.04 * fs):
            seg = y[fd.qrs_off + int(0.04 * fs) : fd.t_off + 1]
            t = float(seg[np.argmax(np.abs(seg))])
        st60 = float(y[j60]) if j60 < y.size else None
        qrs = y[start : fd.qrs_off + 1]
        out.append(
            LeadAmplitudes(name, p, q, r, s, rp, float(y[fd.qrs_off]), st60, t, *_qrs_timing(qrs, fs, q < 0, r, rp))
        )
    return tuple(out)


def _m(code: Code, value: float | None, unit: Code, site: str | None = None, ndigits: int = 0) -> list[Measurement]:
    if value is None or not math.isfinite(value):
        return []
    return [Measurement(code=code, value=round(float(value), ndigits), unit=unit, site=site, method=METHOD)]


def frontal_axis(degrees: float | None) -> float | None:
    """A frontal-plane axis in the reporting convention, -180 < axis <= 180 (230 deg is reported as -130)."""
    if degrees is None or not math.isfinite(degrees):
        return degrees
    wrapped = math.fmod(degrees, 360.0)
    if wrapped > 180.0:
        wrapped -= 360.0
    elif wrapped <= -180.0:
        wrapped += 360.0
    return wrapped


def to_measurements(g: GlobalMeasurements, amps: tuple[LeadAmplitudes, ...]) -> tuple[Measurement, ...]:
    """Coded measurements (LOINC for global values, local codes for per-lead amplitudes)."""
    out: list[Measurement] = []
    out += _m(LOINC.HEART_RATE, g.hr_bpm, UCUM.BPM)
    out += _m(LOINC.RR_INTERVAL, g.rr_ms, UCUM.MS)
    out += _m(LOINC.PR_INTERVAL, g.pr_ms, UCUM.MS)
    out += _m(MDC.P_DURATION, g.p_ms, UCUM.MS)
    out += _m(LOINC.QRS_DURATION, g.qrs_ms, UCUM.MS)
    out += _m(LOINC.QT_INTERVAL, g.qt_ms, UCUM.MS)
    out += _m(LOINC.QTC_INTERVAL, g.qtc_bazett_ms, UCUM.MS)
    out += _m(LOINC.QTC_BAZETT, g.qtc_bazett_ms, UCUM.MS)
    out += _m(LOINC.QTC_FRIDERICIA, g.qtc_fridericia_ms, UCUM.MS)
    out += _m(LOINC.QTC_FRAMINGHAM, g.qtc_framingham_ms, UCUM.MS)
    out += _m(LOINC.QTC_HODGES, g.qtc_hodges_ms, UCUM.MS)
    out += _m(LOINC.P_AXIS, frontal_axis(g.p_axis_deg), UCUM.DEG)
    out += _m(LOINC.QRS_AXIS, frontal_axis(g.qrs_axis_deg), UCUM.DEG)
    out += _m(LOINC.T_AXIS, frontal_axis(g.t_axis_deg), UCUM.DEG)
    for a in amps:
        out += _m(MMDX.ECG_P_AMPLITUDE, a.p, UCUM.MV, a.lead, 3)
        out += _m(MMDX.ECG_Q_AMPLITUDE, a.q, UCUM.MV, a.lead, 3)
        out += _m(MMDX.ECG_R_AMPLITUDE, a.r, UCUM.MV, a.lead, 3)
        out += _m(MMDX.ECG_S_AMPLITUDE, a.s, UCUM.MV, a.lead, 3)
        out += _m(MMDX.ECG_R_PRIME_AMPLITUDE, a.r_prime, UCUM.MV, a.lead, 3)
        out += _m(MMDX.ECG_ST_J, a.st_j, UCUM.MV, a.lead, 3)
        out += _m(MMDX.ECG_ST_J60, a.st_j60, UCUM.MV, a.lead, 3)
        out += _m(MMDX.ECG_T_AMPLITUDE, a.t, UCUM.MV, a.lead, 3)
    return tuple(out)
