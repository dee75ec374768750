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

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Leads where atrial activity is best seen.
ATRIAL_LEADS = ("II", "III", "aVF", "V1", "MLII", "V2")


@dataclass(frozen=True, slots=True)
class AtrialActivity:
    """Dominant atrial frequency (Hz), its spectral concentration, and residual atrial wave times."""

    dominant_hz: float | None
    concentration: float
    residual_rms_mv: float
    waves: IntArray  #: sample indices of non-conducted atrial waves found in the residual


def residual(x: FloatArray, beats: IntArray, mb: MedianBeats) -> FloatArray:
    """Signal minus the median beat placed at every beat (QRST cancellation)."""
    out = x.copy()
    w = mb.beats.shape[1]
    for b in beats:
        a = int(b) - mb.fiducial
        lo, hi = max(0, a), min(x.shape[1], a + w)
        if hi > lo:
            out[:, lo:hi] -= mb.beats[:, lo - a : hi - a]
    return out


def atrial_activity(
    x: FloatArray,
    fs: float,
    beats: IntArray,
    mb: MedianBeats,
    lead_names: tuple[str, ...],
    usable: npt.NDArray[np.bool_],
) -> AtrialActivity:
    """Analyse the QRST-cancelled signal of the atrial leads."""
    idx = [i for i, n in enumerate(lead_names) if n in ATRIAL_LEADS and usable[i]]
    if not idx:
        idx = [i for i in range(len(lead_names)) if usable[i]][:2]
    if not idx or x.shape[1] < int(2 * fs):
        return AtrialActivity(None, 0.0, 0.0, np.zeros(0, dtype=np.int64))
    res = residual(x[idx], beats, MedianBeats(mb.beats[idx], mb.fs, mb.fiducial, mb.n_beats, mb.lags, mb.used))
    sos = sps.butter(2, (2.0, 15.0), btype="bandpass", fs=fs, output="sos")
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
    peaks, _ = sps.find_peaks(mag, height=max(0.05, 4.0 * noise), distance=int(0.2 * fs))
    return AtrialActivity(dom, conc, rms, peaks.astype(np.int64))
