"""Atrial activity after QRST cancellation: dominant atrial frequency and non-conducted atrial waves.

The median beat of each lead is subtracted at every beat (average beat
subtraction).  What a conducted sinus P wave contributes is time-locked to
the QRS and cancels with it; what remains is atrial activity that is *not*
locked to the ventricles: fibrillatory waves (AF), flutter waves (a narrow
spectral peak at 4-6 Hz, 240-350/min), or P waves of AV dissociation and
blocked P waves.  Those drive the AF, flutter and AV-block statements.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg.signal.delineation import Fiducials, MedianBeats, p_wave, qrs_bounds
from ecg.signal.filters import butter_sos

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Leads where atrial activity is best seen.
ATRIAL_LEADS = ("II", "III", "aVF", "V1", "MLII", "V2")
#: T-Q intervals examined for locked flutter waves.
MAX_TQ_SEGMENTS = 40
#: Mean T-Q autocorrelation at one flutter cycle needed to call locked flutter waves.
FLUTTER_AC = 0.4
#: Flutter has no isoelectric baseline: at most this fraction of a T-Q interval may be "quiet", i.e. below
#: ISOELECTRIC_FRACTION of the interval's peak atrial-band magnitude (a sinus T-Q is mostly quiet).
ISOELECTRIC_FRACTION = 0.2
FLUTTER_MAX_QUIET = 0.25


@dataclass(frozen=True, slots=True)
class HalfRRWave:
    """How well the cycle half an RR away from the conducted P wave repeats it (2:1 conduction)."""

    correlation: float  #: multi-lead correlation with the conducted P wave (4-30 Hz band)
    amplitude_ratio: float  #: its size relative to the conducted P wave
    after_qrs_ms: float  #: where it sits, ms after QRS onset
    #: where it sits on the T wave: 0 at the T peak, 1 at the T end (> 1: after it); None without a T wave
    t_position: float | None
    #: whether the template is delineation's conducted P wave (else the wave found before the QRS)
    from_p_wave: bool = True


@dataclass(frozen=True, slots=True)
class AtrialActivity:
    """Dominant atrial frequency (Hz), its spectral concentration, and residual atrial wave times."""

    dominant_hz: float | None
    concentration: float
    residual_rms_mv: float
    waves: IntArray  #: sample indices of non-conducted atrial waves found in the residual
    locked_flutter_per_min: float | None = None  #: flutter waves surviving in the median beat (fixed conduction)
    #: a second atrial wave half an RR from the conducted one (2:1 conduction): its match to it, or None
    half_rr_wave: HalfRRWave | None = None
    #: tallest wave (mV, spatial magnitude prominence) between the previous T peak and the QRS; None: unmeasurable
    diastolic_wave_mv: float | None = None
    #: length (ms) of the flat baseline between the previous T end and the QRS; 0 when not flat, None: no T end
    isoelectric_tq_ms: float | None = None
    #: largest wave (mV) locked to the QRS between it and the next QRS that is not the T wave; None: unmeasurable
    wave_off_t_mv: float | None = None
    #: ``half_rr_wave`` with the T wave's direction removed from every lead (a blocked P wave on the T wave)
    half_rr_off_t: HalfRRWave | None = None
    #: correlation of the T-free median beat with itself half an RR later, outside the QRS (2:1 flutter)
    half_rr_periodicity: float | None = None


def residual(
    x: FloatArray, beats: IntArray, mb: MedianBeats, span: tuple[int, int] | None = None, *, taper: bool = True
) -> FloatArray:
    """Signal minus the median beat placed at every beat (QRST cancellation).

    ``span`` (start, stop) limits the subtracted part of the template to this
    beat's own waves (P onset to T end): beyond them the template holds the
    neighbouring beats' T and P, which must not be subtracted after a pause.
    The template is tapered at both ends so the cut leaves no step - unless
    ``taper`` is False: a span of exactly one RR interval cut where the heart
    is never quiet (a fast wide-QRS rhythm) must subtract every sample once,
    and the steady rhythm makes the pieces of neighbouring beats meet.
    """
    out = x.copy()
    a0, a1 = span if span is not None else (0, mb.beats.shape[1])
    a0, a1 = max(0, a0), min(mb.beats.shape[1], a1)
    tmpl = mb.beats[:, a0:a1].copy()
    n = tmpl.shape[1]
    if n >= 8 and taper:
        ramp = max(2, n // 10)
        win = np.ones(n)
        win[:ramp] = np.linspace(0.0, 1.0, ramp)
        win[-ramp:] = np.linspace(1.0, 0.0, ramp)
        tmpl = tmpl * win
    for b in beats:
        a = int(b) - mb.fiducial + a0
        lo, hi = max(0, a), min(x.shape[1], a + n)
        if hi > lo:
            out[:, lo:hi] -= tmpl[:, lo - a : hi - a]
    return out


def atrial_activity(
    x: FloatArray,
    fs: float,
    beats: IntArray,
    mb: MedianBeats,
    lead_names: tuple[str, ...],
    usable: npt.NDArray[np.bool_],
    span: tuple[int, int] | None = None,
    p_peak: int | None = None,
) -> AtrialActivity:
    """Analyse the QRST-cancelled signal of the atrial leads (``span``: see :func:`residual`)."""
    idx = [i for i, n in enumerate(lead_names) if n in ATRIAL_LEADS and usable[i]]
    if not idx:
        idx = [i for i in range(len(lead_names)) if usable[i]][:2]
    if not idx or x.shape[1] < int(2 * fs):
        return AtrialActivity(None, 0.0, 0.0, np.zeros(0, dtype=np.int64))
    q_on, q_off = qrs_bounds(mb.beats[idx], fs, mb.fiducial)
    one_cycle = False
    if span is not None and beats.size >= 2:
        # the subtracted part must stay inside this beat's own cycle: at a fast rate with no T end found
        # the default span reaches into the neighbouring beats' waves, which would then be subtracted
        # twice and leave a residual of ventricular, not atrial, waves
        rr = int(np.median(np.diff(beats)))
        if span[1] - span[0] > rr:
            # one cycle, from just before this beat's own first wave (its P wave, else its QRS)
            start = span[0] if p_peak is not None else max(span[0], q_on - int(0.04 * fs))
            span = (start, start + rr)
            one_cycle = True
    sub = MedianBeats(mb.beats[idx], mb.fs, mb.fiducial, mb.n_beats, mb.lags, mb.used)
    res = residual(x[idx], beats, sub, span, taper=not one_cycle)
    sos = butter_sos(2, (2.0, 15.0), "bandpass", fs)
    r = sps.sosfiltfilt(sos, res, axis=1)
    # blank each QRS, where cancellation is least exact: +-60 ms, or the median beat's own QRS
    # (plus 20 / 40 ms) when it is wider - a wide escape beat leaves leftovers beyond 60 ms
    before = max(int(0.06 * fs), mb.fiducial - q_on + int(0.02 * fs))
    after = max(int(0.06 * fs), q_off - mb.fiducial + int(0.04 * fs))
    keep = np.ones(r.shape[1], dtype=bool)
    for b in beats:
        keep[max(0, int(b) - before) : int(b) + after] = False
    rk = r[:, keep]
    rms = float(np.sqrt(np.mean(rk**2))) if rk.size else 0.0
    # the spectrum only over diastole - from the end of the subtracted beat (T end + 40 ms) to the next
    # QRS - where no ventricular leftover can mimic atrial waves (a large, wide QRS-T leaves some), and
    # on the zeroed signal, not on the kept parts joined end to end: joining shortens every beat and
    # moves a regular rhythm's leftovers to a made-up "atrial" frequency (4.3 Hz at 170/min)
    d0 = (span[1] if span is not None else mb.beats.shape[1]) - mb.fiducial
    dia = np.zeros(r.shape[1], dtype=bool)
    for b0, b1 in itertools.pairwise(beats):
        dia[max(0, int(b0) + d0) : max(0, int(b1) - before)] = True
    rk = r * (keep & dia)[None, :]
    nper = int(min(rk.shape[1], 4 * fs))
    dom: float | None = None
    conc = 0.0
    if nper >= int(fs) and int(dia.sum()) >= int(fs):
        f, p = sps.welch(rk, fs=fs, nperseg=nper, axis=1)
        p = p.sum(axis=0)
        band = (f >= 3.0) & (f <= 10.0)
        if band.any() and p[band].sum() > 0:
            k = np.flatnonzero(band)[np.argmax(p[band])]
            dom = float(f[k])
            near = band & (np.abs(f - dom) <= 0.5)
            conc = float(p[near].sum() / p[band].sum())
    mag = np.sqrt((r * r).sum(axis=0)) * keep
    noise = float(np.median(mag[keep])) if keep.any() else 0.0
    peaks, props = sps.find_peaks(mag, height=max(0.05, 4.0 * noise), distance=int(0.2 * fs))
    if peaks.size:
        # a P wave has little energy above 15 Hz; a missed QRS or an artefact burst has much
        hf_sos = butter_sos(2, (15.0, min(40.0, 0.45 * fs)), "bandpass", fs)
        hf = sps.sosfiltfilt(hf_sos, res, axis=1)
        hmag = np.sqrt((hf * hf).sum(axis=0))
        w = int(0.05 * fs)
        around = np.clip(peaks[:, None] + np.arange(-w, w + 1)[None, :], 0, hmag.size - 1)
        smooth = hmag[around].max(axis=1)
        keep_p = smooth < 0.5 * props["peak_heights"]
        peaks = peaks[keep_p]
        props = {k: v[keep_p] for k, v in props.items()}
    if p_peak is not None and 0 <= p_peak < mb.beats.shape[1]:
        # with a conducted P wave known, a non-conducted one must look like it in size:
        # a missed QRS or an artefact burst leaves a far larger residual
        mp = sps.sosfiltfilt(sos, mb.beats[idx], axis=1, padlen=min(mb.beats.shape[1] - 1, 60))
        ref = float(np.sqrt((mp[:, p_peak] ** 2).sum()))
        h = props["peak_heights"]
        peaks = peaks[(h >= 0.4 * ref) & (h <= 2.5 * ref)]
    return AtrialActivity(dom, conc, rms, peaks.astype(np.int64))


def flutter_in_tq(
    x: FloatArray,
    fs: float,
    beats: IntArray,
    qrs_on_offset: int,
    t_off_offset: int | None,
    usable: npt.NDArray[np.bool_],
) -> float | None:
    """Atrial rate (/min) of flutter waves in the T-Q intervals, or None.

    With fixed 2:1 / 4:1 conduction flutter waves are locked to the QRS, so
    they survive averaging and QRST cancellation.  Between the end of T and
    the next QRS a sinus rhythm shows one P wave on a flat baseline, flutter a
    continuous regular wave: its autocorrelation, averaged over the beats, is
    high at one flutter cycle (170-273 ms, 220-350/min) and negative at half a cycle,
    and no stretch of the interval is isoelectric.
    """
    if t_off_offset is None or beats.size < 3:
        return None
    leads = np.flatnonzero(usable) if usable.any() else np.arange(x.shape[0])
    sos = butter_sos(2, (2.0, 15.0), "bandpass", fs)
    lags = np.arange(int(0.17 * fs), int(0.273 * fs) + 1)
    acs: list[FloatArray] = []
    maxlag = int(lags[-1])
    # a rhythm-level property: a few dozen T-Q intervals spread over the record are enough
    ks = np.unique(np.linspace(0, beats.size - 2, min(beats.size - 1, MAX_TQ_SEGMENTS)).astype(int))
    starts = beats[ks] + t_off_offset + int(0.04 * fs)
    stops = beats[ks + 1] + qrs_on_offset - int(0.01 * fs)
    ok = (stops - starts >= int(0.36 * fs)) & (starts >= 0) & (stops <= x.shape[1])
    if ok.sum() < 2:
        return None
    lo, hi = int(starts[ok].min()), int(stops[ok].max())
    band = sps.sosfiltfilt(sos, x[leads, lo:hi], axis=1)  # one filter pass over the span
    quiet: list[float] = []
    for a, b in zip(starts[ok] - lo, stops[ok] - lo, strict=True):
        seg = band[:, a:b]
        seg = seg - seg.mean(axis=1, keepdims=True)
        energy = float((seg * seg).sum())
        if energy <= 0:
            continue
        mag = np.sqrt((seg * seg).sum(axis=0))
        quiet.append(float(np.mean(mag < ISOELECTRIC_FRACTION * mag.max())))
        n = seg.shape[1]
        spec = np.fft.rfft(seg, 2 * n, axis=1)
        raw = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : maxlag + 1].sum(axis=0)
        acs.append(raw * n / (n - np.arange(maxlag + 1)) / energy)
    if len(acs) < 2:
        return None
    if float(np.median(quiet)) > FLUTTER_MAX_QUIET:
        return None  # an isoelectric stretch between the waves: P waves, not flutter
    mean_ac = np.mean(acs, axis=0)
    k = int(lags[np.argmax(mean_ac[lags])])
    if mean_ac[k] > FLUTTER_AC and mean_ac[k // 2] < -0.2:
        return 60.0 * fs / k
    return None


#: Atrial-wave band: keeps the edges of a P or flutter wave, damps the slow T wave and the baseline.
WAVE_BAND_HZ = (4.0, 30.0)
#: The hidden wave may sit this fraction of half an RR off the exact midpoint (ventriculophasic P-P).
HALF_RR_TOLERANCE = 0.10


def _cycle_median(x: FloatArray, beats: IntArray, mb: MedianBeats, lo: int, hi: int) -> tuple[FloatArray, int]:
    """Median over the median's own (aligned) beats of samples ``lo``..``hi`` around each QRS fiducial."""
    starts = beats[mb.used] + mb.lags
    ok = (starts + lo >= 0) & (starts + hi <= x.shape[1])
    if not ok.any():
        return np.zeros((x.shape[0], hi - lo)), 0
    idx = starts[ok][:, None] + np.arange(lo, hi)[None, :]
    return np.asarray(np.median(x[:, idx], axis=1)), int(ok.sum())


def _detrend(a: FloatArray) -> FloatArray:
    """``a`` minus its least-squares straight line along the last axis."""
    n = a.shape[-1]
    t = np.arange(n) - (n - 1) / 2.0
    tt = float(t @ t) or 1.0
    return np.asarray(a - a.mean(axis=-1, keepdims=True) - ((a @ t) / tt)[..., None] * t)


def t_vector(m: FloatArray, fs: float, fd: Fiducials, rr_samples: float | None = None) -> FloatArray | None:
    """Unit lead-space direction of the T wave (first singular vector from QRS end + 40 ms to T end), or None.

    ``m`` holds the median beats of the leads compared.  A P wave riding on
    the T wave is far smaller than it, so it barely turns this direction.
    Without a T end (a fast rate where T runs into atrial waves) the window
    runs to 20 ms before the next QRS when ``rr_samples`` is given.
    """
    if m.shape[0] < 3:
        return None
    if fd.t_off is not None:
        b = fd.t_off
    elif rr_samples is not None:
        b = min(m.shape[1], int(fd.qrs_on + rr_samples) - int(0.02 * fs))
    else:
        return None
    a = fd.qrs_off + int(0.04 * fs)
    if b - a < int(0.05 * fs) or fd.qrs_on < int(0.03 * fs):
        return None
    iso = m[:, fd.qrs_on - int(0.024 * fs) : fd.qrs_on - int(0.004 * fs)].mean(axis=1)
    u, _, _ = np.linalg.svd(m[:, a:b] - iso[:, None], full_matrices=False)
    return np.asarray(u[:, 0])


def half_rr_wave(
    x: FloatArray,
    fs: float,
    beats: IntArray,
    mb: MedianBeats,
    fd: Fiducials,
    usable: npt.NDArray[np.bool_],
    *,
    remove_t: bool = False,
) -> HalfRRWave | None:
    """Look for a copy of the conducted P wave half an RR away from it (2:1 AV block or 2:1 flutter).

    With 2:1 conduction the atria beat at exactly twice the ventricular rate,
    so the non-conducted atrial wave is locked to the QRS as well: it survives
    in the median beat (QRST cancellation removes it together with the T wave)
    at half an RR from the conducted one, on the T wave or after it.  It comes
    from the same atrial activation, so it must repeat the conducted wave's
    shape *across leads* (the atrial vector), which a T or U wave - another
    vector, another width - does not.  Both are compared in a 4-30 Hz band that
    keeps a P wave's edges and damps the broad T wave.  None when there is no
    conducted P wave to compare with or too few regular beats.
    """
    conducted = fd.p_on is not None and fd.p_off is not None
    p_on, p_off = fd.p_on, fd.p_off
    if not conducted and beats.size >= 2:
        # no P wave passed delineation's checks (a flutter wave is no P wave): the atrial wave standing
        # out before the QRS, searched without the T-end limit, is the template
        u = usable if usable.any() else np.ones(mb.beats.shape[0], dtype=bool)
        p_on, _, p_off = p_wave(mb.beats[u], fs, fd.qrs_on, float(np.median(np.diff(beats))), None)
    if p_on is None or p_off is None or beats.size < 4:
        return None
    rr = np.diff(beats).astype(np.float64)
    med = float(np.median(rr))
    if np.mean(np.abs(rr / med - 1.0) < 0.1) < 0.8:
        return None  # 2:1 conduction is a regular ventricular rhythm
    leads = np.flatnonzero(usable) if usable.any() else np.arange(x.shape[0])
    f = mb.fiducial
    m = int(0.02 * fs)
    a0, a1 = p_on - f - m, p_off - f + m  # conducted wave, samples from the QRS fiducial
    half = med / 2.0
    qrs_lo, qrs_hi = fd.qrs_on - f - int(0.01 * fs), fd.qrs_off - f + int(0.01 * fs)
    # at fast rates only the part of the wave whose copy lands after the QRS can be compared
    a0 = max(a0, int(qrs_hi - half + 1))
    a1 = min(a1, qrs_lo)
    if a1 - a0 < int(0.05 * fs):
        return None
    sh = max(1, int(HALF_RR_TOLERANCE * half))
    pad = int(0.3 * fs)
    lo, hi = a0 - pad, int(a1 + half) + sh + pad
    if mb.n_beats < 4:
        return None
    edge = int(0.2 * fs)  # enough for the band-pass to settle
    if a0 - edge + f >= 0 and int(a1 + half) + sh + edge + f <= mb.beats.shape[1]:
        lo, hi = max(lo, -f), min(hi, mb.beats.shape[1] - f)
        cyc = mb.beats[leads, lo + f : hi + f]  # the median beat already spans both waves
    else:
        cyc, n_used = _cycle_median(x[leads], beats, mb, lo, hi)
        if n_used < 4:
            return None
    if remove_t:
        # a blocked P wave on the T wave: compare both waves with the T wave's direction taken out of every
        # lead - the T wave (one vector) vanishes, the P waves keep their part across it (another vector)
        tv = t_vector(mb.beats[leads], fs, fd, med)
        if tv is None:
            return None
        cyc = cyc - np.outer(tv, tv @ cyc)
    cyc = sps.sosfiltfilt(butter_sos(2, WAVE_BAND_HZ, "bandpass", fs), cyc, axis=1)
    t0 = a0 - lo
    # each window minus its least-squares line: a P wave riding on the slope of a T wave keeps its shape
    tmpl = _detrend(cyc[:, t0 : t0 + a1 - a0])
    e_t = float((tmpl * tmpl).sum())
    if e_t <= 0:
        return None
    w = a1 - a0
    starts = round(a0 + half) + np.arange(-sh, sh + 1)  # candidate starts, samples from the fiducial
    starts = starts[(starts >= qrs_hi) | (starts + w <= qrs_lo)]  # inside the QRS nothing atrial can be seen
    if starts.size == 0:
        return None
    cand = _detrend(np.lib.stride_tricks.sliding_window_view(cyc, w, axis=1)[:, starts - lo, :])  # L x S x W
    e_c = np.einsum("lsw,lsw->s", cand, cand)
    num = np.einsum("lsw,lw->s", cand, tmpl)
    ok = e_c > 0
    if not ok.any():
        return None
    corr = np.where(ok, num / np.sqrt(e_t * np.maximum(e_c, 1e-30)), -np.inf)
    k = int(np.argmax(corr))
    best = (float(corr[k]), float(np.sqrt(e_c[k] / e_t)), int(starts[k]))
    r, ratio, b0 = best
    centre = b0 + (a1 - a0) // 2 + f
    after_ms = 1000.0 * (centre - fd.qrs_on) / fs
    t_pos = None
    if fd.t_off is not None and fd.t_peak is not None and fd.t_off > fd.t_peak:
        t_pos = round((centre - fd.t_peak) / (fd.t_off - fd.t_peak), 2)
    return HalfRRWave(round(r, 3), round(ratio, 3), round(after_ms, 1), t_pos, conducted)


def diastolic_wave(mb: MedianBeats, fd: Fiducials, rr_samples: float, usable: npt.NDArray[np.bool_]) -> float | None:
    """Tallest wave (mV) between the previous beat's T peak and this QRS in the median beat, or None.

    The evidence for "no P wave": any atrial wave - a P wave fused with the
    T wave at a fast rate, a flutter wave, a retrograde P - stands out of the
    decaying T wave as a separate hump of the spatial magnitude; a junctional
    or ventricular rhythm leaves a hump-free diastole.  None when the window
    is too short to tell.
    """
    fs = mb.fs
    m = mb.beats[usable] if usable.any() else mb.beats
    a = 0 if fd.t_peak is None else max(0, int(fd.t_peak - rr_samples))
    b = fd.qrs_on - int(0.01 * fs)
    if b - a < int(0.06 * fs) or fd.qrs_on < int(0.03 * fs):
        return None
    iso = m[:, fd.qrs_on - int(0.024 * fs) : fd.qrs_on - int(0.004 * fs)].mean(axis=1)
    sm = sps.sosfiltfilt(butter_sos(2, 25.0, "lowpass", fs), m - iso[:, None], axis=1)
    mag = np.sqrt((sm * sm).sum(axis=0))[a:b]
    _, props = sps.find_peaks(mag, prominence=0.0)
    return float(props["prominences"].max()) if props["prominences"].size else 0.0


#: A T-Q baseline is flat when no lead moves more than this (mV) over it (median beat, 20 ms moving average).
ISOELECTRIC_MV = 0.04
#: ... and drifts less than this (mV/s; a flutter wave's slow limb slopes at >= 1 mV/s).
ISOELECTRIC_SLOPE = 0.5
#: Only the last part of the T-Q interval is examined (a long diastole may drift).
ISOELECTRIC_WINDOW_S = 0.15


def isoelectric_tq(mb: MedianBeats, fd: Fiducials, rr_samples: float, usable: npt.NDArray[np.bool_]) -> float | None:
    """Length (ms) of the flat baseline before the QRS after the previous T wave has ended; 0 if it is not flat.

    A junctional rhythm or an AV-nodal re-entry leaves the baseline between
    T and QRS isoelectric; flutter waves, or a P wave fused with the T wave at
    a fast sinus rate, leave no such stretch (the T wave seems to run into the
    next QRS).  None without a T end to start from.
    """
    if fd.t_off is None:
        return None
    fs = mb.fs
    b = fd.qrs_on - int(0.03 * fs)  # clear of the QRS onset (measured onsets are a few ms late)
    c = max(0, int(fd.t_off - rr_samples + 0.01 * fs), b - int(ISOELECTRIC_WINDOW_S * fs))
    if b - c < int(0.02 * fs):
        return 0.0
    m = mb.beats[usable] if usable.any() else mb.beats
    # a 20 ms moving average inside the window keeps any P or flutter wave, damps the noise left in
    # a median of few beats, and (unlike a filter over the whole beat) takes nothing from the QRS
    w = max(1, int(0.02 * fs))
    seg = m[:, c:b]
    sm = np.cumsum(np.pad(seg, ((0, 0), (1, 0))), axis=1)
    sm = (sm[:, w:] - sm[:, :-w]) / w
    # flat: little excursion, and no steady drift either (a short window on a flutter wave's slow limb
    # moves little in total but keeps sloping)
    t = (np.arange(sm.shape[1]) - (sm.shape[1] - 1) / 2.0) / fs
    slope = (sm @ t) / max(float(t @ t), 1e-12)  # mV/s, least squares per lead
    flat = float(np.ptp(sm, axis=1).max()) < ISOELECTRIC_MV and float(np.abs(slope).max()) < ISOELECTRIC_SLOPE
    return round(1000.0 * (b - c) / fs, 1) if flat else 0.0


#: The window examined by :func:`wave_off_t` must hold at least this much (s) between QRS end and next QRS.
OFF_T_MIN_WINDOW_S = 0.1


def wave_off_t(mb: MedianBeats, fd: Fiducials, rr_samples: float, usable: npt.NDArray[np.bool_]) -> float | None:
    """Largest wave (mV) that the median beat holds between the QRS and the next QRS besides the T wave, or None.

    The evidence for "no P wave" where there is no diastole to look at: in a
    fast wide-QRS rhythm the T wave runs into the next QRS, and a sinus P
    wave - locked to the QRS, so kept by the median - sits on it.  The T
    wave is one repolarisation vector with one time course (rank one over
    the leads); a P wave comes from another vector at another time, so what
    the best rank-one fit of the window leaves over (its spatial magnitude)
    is the P wave, while a ventricular rhythm leaves little but noise.
    Window: QRS end + 40 ms to the next QRS onset - 20 ms, 25 Hz low-pass,
    levels taken from just before the next QRS (a T wave that has not ended
    there stays rank one).  None when the window is shorter than
    ``OFF_T_MIN_WINDOW_S``, the median beat does not reach the next QRS, or
    fewer than 3 leads are usable (in one lead every wave is "the T vector";
    in two a P wave's projection may be parallel to the T wave's).
    """
    fs = mb.fs
    a = fd.qrs_off + int(0.04 * fs)
    e = int(fd.qrs_on + rr_samples) - int(0.02 * fs)
    m = mb.beats[usable] if usable.any() else mb.beats
    if m.shape[0] < 3 or e > mb.beats.shape[1] or e - a < int(OFF_T_MIN_WINDOW_S * fs):
        return None
    sm = sps.sosfiltfilt(butter_sos(2, 25.0, "lowpass", fs), m, axis=1)
    seg = sm[:, a:e] - sm[:, e - 1 : e]
    u, sv, vt = np.linalg.svd(seg, full_matrices=False)
    rest = seg - sv[0] * np.outer(u[:, 0], vt[0])
    return round(float(np.sqrt((rest * rest).sum(axis=0)).max()), 4)


def half_rr_periodicity(
    mb: MedianBeats, fd: Fiducials, rr_samples: float, usable: npt.NDArray[np.bool_]
) -> float | None:
    """Correlation of the T-free median beat with itself half an RR later, QRS complexes left out; or None.

    With 2:1 flutter the atria beat continuously at exactly twice the
    ventricular rate: once the T wave's direction is taken out of every lead,
    what is left of the cycle repeats every half RR.  A sinus rhythm leaves a
    single P wave per RR on an otherwise quiet T-free trace, which does not.
    4-30 Hz band like :func:`half_rr_wave`; None with fewer than 3 leads, no
    T direction, or less than 100 ms of the beat clear of the QRS at both ends
    of the lag.
    """
    fs = mb.fs
    m = mb.beats[usable] if usable.any() else mb.beats
    tv = t_vector(m, fs, fd, rr_samples)
    if tv is None:
        return None
    r = sps.sosfiltfilt(butter_sos(2, WAVE_BAND_HZ, "bandpass", fs), m - np.outer(tv, tv @ m), axis=1)
    half = round(rr_samples / 2.0)
    n = m.shape[1]
    clear = np.ones(n, dtype=bool)
    lo, hi = fd.qrs_on - int(0.02 * fs), fd.qrs_off + int(0.02 * fs)
    for k in (-1, 0, 1):  # this QRS and the neighbours' inside the median beat's window
        a, b = round(lo + k * rr_samples), round(hi + k * rr_samples)
        clear[max(0, a) : max(0, min(n, b))] = False
    t = np.arange(max(0, n - half))
    t = t[clear[t] & clear[t + half]]
    if t.size < int(0.1 * fs):
        return None
    u, v = r[:, t], r[:, t + half]
    u = u - u.mean(axis=1, keepdims=True)
    v = v - v.mean(axis=1, keepdims=True)
    den = float(np.sqrt((u * u).sum() * (v * v).sum()))
    return round(float((u * v).sum()) / den, 3) if den > 0 else None
