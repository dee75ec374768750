"""Atrial activity after QRST cancellation: dominant atrial frequency and non-conducted atrial waves.

The median beat of each lead is subtracted at every beat (average beat
subtraction).  What a conducted sinus P wave contributes is time-locked to
the QRS and cancels with it; what remains is atrial activity that is *not*
locked to the ventricles: fibrillatory waves (AF), flutter waves (a narrow
spectral peak at 4-6 Hz, 240-350/min), or P waves of AV dissociation and
blocked P waves.  Those drive the AF, flutter and AV-block statements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg.signal.delineation import MedianBeats
from ecg.signal.filters import butter_sos

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Leads where atrial activity is best seen.
ATRIAL_LEADS = ("II", "III", "aVF", "V1", "MLII", "V2")
#: T-Q intervals examined for locked flutter waves.
MAX_TQ_SEGMENTS = 40
#: Mean T-Q autocorrelation at one flutter cycle needed to call locked flutter waves.
FLUTTER_AC = 0.4


@dataclass(frozen=True, slots=True)
class AtrialActivity:
    """Dominant atrial frequency (Hz), its spectral concentration, and residual atrial wave times."""

    dominant_hz: float | None
    concentration: float
    residual_rms_mv: float
    waves: IntArray  #: sample indices of non-conducted atrial waves found in the residual
    locked_flutter_per_min: float | None = None  #: flutter waves surviving in the median beat (fixed conduction)


def residual(x: FloatArray, beats: IntArray, mb: MedianBeats, span: tuple[int, int] | None = None) -> FloatArray:
    """Signal minus the median beat placed at every beat (QRST cancellation).

    ``span`` (start, stop) limits the subtracted part of the template to this
    beat's own waves (P onset to T end): beyond them the template holds the
    neighbouring beats' T and P, which must not be subtracted after a pause.
    The template is tapered at both ends so the cut leaves no step.
    """
    out = x.copy()
    a0, a1 = span if span is not None else (0, mb.beats.shape[1])
    a0, a1 = max(0, a0), min(mb.beats.shape[1], a1)
    tmpl = mb.beats[:, a0:a1].copy()
    n = tmpl.shape[1]
    if n >= 8:
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
    res = residual(x[idx], beats, MedianBeats(mb.beats[idx], mb.fs, mb.fiducial, mb.n_beats, mb.lags, mb.used), span)
    sos = butter_sos(2, (2.0, 15.0), "bandpass", fs)
    r = sps.sosfiltfilt(sos, res, axis=1)
    # blank +-60 ms around each QRS, where cancellation is least exact
    keep = np.ones(r.shape[1], dtype=bool)
    half = int(0.06 * fs)
    for b in beats:
        keep[max(0, int(b) - half) : int(b) + half] = False
    rk = r[:, keep]
    rms = float(np.sqrt(np.mean(rk**2))) if rk.size else 0.0
    nper = int(min(rk.shape[1], 4 * fs))
    dom: float | None = None
    conc = 0.0
    if nper >= int(fs):
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
    high at one flutter cycle (170-273 ms, 220-350/min) and negative at half a cycle.
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
    for a, b in zip(starts[ok] - lo, stops[ok] - lo, strict=True):
        seg = band[:, a:b]
        seg = seg - seg.mean(axis=1, keepdims=True)
        energy = float((seg * seg).sum())
        if energy <= 0:
            continue
        n = seg.shape[1]
        spec = np.fft.rfft(seg, 2 * n, axis=1)
        raw = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : maxlag + 1].sum(axis=0)
        acs.append(raw * n / (n - np.arange(maxlag + 1)) / energy)
    if len(acs) < 2:
        return None
    mean_ac = np.mean(acs, axis=0)
    k = int(lags[np.argmax(mean_ac[lags])])
    if mean_ac[k] > FLUTTER_AC and mean_ac[k // 2] < -0.2:
        return 60.0 * fs / k
    return None
