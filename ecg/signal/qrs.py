"""Multi-lead QRS detection.

A Pan-Tompkins-style energy detector made lead-agnostic: every lead is
band-passed (5-18 Hz, where QRS energy dominates P, T and baseline), its
squared slope integrated over 100 ms, and *normalised by its own typical
beat energy*, so amplitude and polarity do not matter and a lead with a tiny
QRS counts as much as one with a large QRS.  Leads are averaged with weights
from their beat-to-background ratio, so a noisy lead cannot swamp clean ones.

Peaks of the combined envelope are accepted against an adaptive threshold
(a fraction of the local median beat energy over ~10 s); T waves close to a
beat with much less slope energy are rejected; long gaps are searched back
at half threshold.  Everything is vectorised over the whole record, processed
in chunks of a few minutes so that Holter-length records stay in memory.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal as sps
from scipy.ndimage import uniform_filter1d

from ecg.signal.filters import butter_sos

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BAND_HZ = (5.0, 18.0)
INTEGRATION_S = 0.10
REFRACTORY_S = 0.20
T_WAVE_WINDOW_S = 0.36
T_WAVE_RATIO = 0.4
#: Within the T-wave window a candidate must also reach this fraction of the local typical beat energy.
T_WAVE_REF_FRACTION = 0.6
THRESHOLD_FRACTION = 0.25
#: Block maxima are capped at this multiple of the record's median block maximum.
REFERENCE_CAP = 2.0
SEARCHBACK_RR_FACTOR = 1.6
SEARCHBACK_FRACTION = 0.5
SEARCHBACK_PASSES = 3
CHUNK_S = 300.0
OVERLAP_S = 4.0


def _envelope(x: FloatArray, fs: float, usable: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Combined normalised QRS energy envelope and the combined band-passed magnitude."""
    sos = butter_sos(2, BAND_HZ, "bandpass", fs)
    bp = sps.sosfiltfilt(sos, x, axis=1)
    d = np.gradient(bp, axis=1) * fs / 1000.0  # mV/ms
    e = uniform_filter1d(d * d, size=max(1, int(INTEGRATION_S * fs)), axis=1, mode="nearest")
    block = int(2 * fs)
    n = e.shape[1]
    nb = max(1, n // block)
    if n >= block:
        bmax = e[:, : nb * block].reshape(e.shape[0], nb, block).max(axis=2)
        bmed = np.median(e[:, : nb * block].reshape(e.shape[0], nb, block), axis=2)
    else:
        bmax = e.max(axis=1, keepdims=True)
        bmed = np.median(e, axis=1, keepdims=True)
    peak_level = np.median(bmax, axis=1)  # typical beat energy per lead
    floor = np.median(bmed, axis=1)
    snr = peak_level / np.maximum(floor, 1e-12)
    w = np.where(usable & (peak_level > 1e-10), np.log(np.clip(snr, 1.0, 1e6)), 0.0)
    if w.sum() <= 0:
        w = np.where(peak_level > 1e-10, 1.0, 0.0)
    if w.sum() <= 0:
        return np.zeros(n), np.zeros(n)
    w = w / w.sum()
    norm = np.maximum(peak_level, 1e-12)[:, None]
    env = np.tensordot(w, e / norm, axes=1)
    mag = np.tensordot(w, np.abs(bp) / np.sqrt(norm), axes=1)
    return np.asarray(env), np.asarray(mag)


def _local_reference(env: FloatArray, fs: float, at: IntArray) -> FloatArray:
    """Typical beat-energy level around each index: running median of 2 s block maxima over ~14 s."""
    block = int(2 * fs)
    n = env.size
    nb = max(1, int(np.ceil(n / block)))
    padded = np.full(nb * block, np.nan)
    padded[:n] = env
    bmax = np.nanmax(padded.reshape(nb, block), axis=1)
    # artefact bursts must not raise the reference over a whole neighbourhood: cap them first
    bmax = np.minimum(bmax, REFERENCE_CAP * float(np.median(bmax)))
    k = min(7, nb if nb % 2 else max(1, nb - 1))
    ref = sps.medfilt(bmax, kernel_size=k) if k > 1 else bmax
    return np.asarray(ref[np.minimum(at // block, nb - 1)], dtype=np.float64)


def _detect_chunk(env: FloatArray, mag: FloatArray, fs: float) -> IntArray:
    dist = max(1, int(REFRACTORY_S * fs))
    cand, props = sps.find_peaks(env, distance=dist, height=1e-6)
    if cand.size == 0:
        return np.zeros(0, dtype=np.int64)
    h = props["peak_heights"]
    ref = _local_reference(env, fs, cand)
    thr = THRESHOLD_FRACTION * ref
    accepted: list[int] = []
    acc_h: list[float] = []
    tw = int(T_WAVE_WINDOW_S * fs)
    strong = h >= thr
    for i in np.flatnonzero(strong):
        p = int(cand[i])
        if (
            accepted
            and p - accepted[-1] < tw
            and (h[i] < T_WAVE_RATIO * acc_h[-1] or h[i] < T_WAVE_REF_FRACTION * ref[i])
        ):
            continue  # a T wave (or noise) right after a beat: far less slope energy than a typical beat
        if accepted and p - accepted[-1] < dist:
            if h[i] > acc_h[-1]:
                accepted[-1], acc_h[-1] = p, float(h[i])
            continue
        accepted.append(p)
        acc_h.append(float(h[i]))
    beats = np.asarray(accepted, dtype=np.int64)
    # search back in gaps much longer than the local RR (repeated: a gap may hide several beats)
    for _ in range(SEARCHBACK_PASSES):
        if beats.size < 3:
            break
        rr = np.diff(beats)
        med_rr = sps.medfilt(rr.astype(np.float64), kernel_size=min(9, rr.size if rr.size % 2 else rr.size - 1))
        extra: list[int] = []
        for j in np.flatnonzero(rr > SEARCHBACK_RR_FACTOR * med_rr):
            lo, hi = beats[j] + dist, beats[j + 1] - dist
            sel = (cand > lo) & (cand < hi) & (h >= SEARCHBACK_FRACTION * thr)
            if sel.any():
                k = np.flatnonzero(sel)[np.argmax(h[sel])]
                extra.append(int(cand[k]))
        if not extra:
            break
        beats = np.unique(np.concatenate([beats, np.asarray(extra, dtype=np.int64)]))
    # refine to the peak of the combined band-passed magnitude (the R/S apex region)
    half = int(0.06 * fs)
    if beats.size:
        offs = np.arange(-half, half + 1)
        idx = np.clip(beats[:, None] + offs[None, :], 0, mag.size - 1)
        beats = idx[np.arange(beats.size), np.argmax(mag[idx], axis=1)]
        beats = np.unique(beats)
    return np.asarray(beats, dtype=np.int64)


def detect_qrs(
    x: FloatArray,
    fs: float,
    *,
    usable: npt.NDArray[np.bool_] | None = None,
) -> IntArray:
    """QRS fiducial sample indices (at ``fs``) from a leads x samples array.

    ``usable`` masks leads excluded by quality checks; if none is usable, all
    are tried.  Works for any number of leads and any length.
    """
    arr = np.atleast_2d(np.asarray(x, dtype=np.float64))
    mask = np.ones(arr.shape[0], dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    if not mask.any():
        mask = np.ones(arr.shape[0], dtype=bool)
    n = arr.shape[1]
    if n < int(0.5 * fs):
        return np.zeros(0, dtype=np.int64)
    chunk = int(CHUNK_S * fs)
    ov = int(OVERLAP_S * fs)
    if n <= chunk + ov:
        env, mag = _envelope(arr, fs, mask)
        return _detect_chunk(env, mag, fs)
    out: list[IntArray] = []
    start = 0
    while start < n:
        a, b = max(0, start - ov), min(n, start + chunk + ov)
        env, mag = _envelope(arr[:, a:b], fs, mask)
        beats = _detect_chunk(env, mag, fs) + a
        keep_lo = start
        keep_hi = start + chunk
        out.append(beats[(beats >= keep_lo) & (beats < keep_hi)])
        start += chunk
    allb = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    # a beat straddling a chunk edge may be found twice, a few samples apart
    if allb.size > 1:
        keep = np.concatenate(([True], np.diff(allb) > int(REFRACTORY_S * fs)))
        allb = allb[keep]
    return allb.astype(np.int64)
