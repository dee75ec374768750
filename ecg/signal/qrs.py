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

from ecg.signal.filters import butter_sos, sosfiltfilt

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
    env, mag = envelopes_many(x[None], fs, usable[None])
    return env[0], mag[0]


def envelopes_many(x: FloatArray, fs: float, usable: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """:func:`_envelope` for records x leads x samples (``usable`` is records x leads): one filter call for all.

    Returns records x samples envelopes and magnitudes.  Leads are combined
    one at a time in lead order, so a record's envelope does not depend on
    which other records share the batch.
    """
    n_rec, n_leads, n = x.shape
    sos = butter_sos(2, BAND_HZ, "bandpass", fs)
    bp = sosfiltfilt(sos, x.reshape(n_rec * n_leads, n))
    d = np.gradient(bp, axis=1) * fs / 1000.0  # mV/ms
    e = uniform_filter1d(d * d, size=max(1, int(INTEGRATION_S * fs)), axis=1, mode="nearest")
    block = int(2 * fs)
    nb = max(1, n // block)
    if n >= block:
        blocks = e[:, : nb * block].reshape(e.shape[0], nb, block)
        bmax = blocks.max(axis=2)
        bmed = np.median(blocks, axis=2)
    else:
        bmax = e.max(axis=1, keepdims=True)
        bmed = np.median(e, axis=1, keepdims=True)
    peak_level = np.median(bmax, axis=1).reshape(n_rec, n_leads)  # typical beat energy per lead
    floor = np.median(bmed, axis=1).reshape(n_rec, n_leads)
    snr = peak_level / np.maximum(floor, 1e-12)
    alive = peak_level > 1e-10
    w = np.where(usable & alive, np.log(np.clip(snr, 1.0, 1e6)), 0.0)
    none = w.sum(axis=1) <= 0
    w[none] = np.where(alive[none], 1.0, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)  # a record with no live lead gets zeros
    norm = np.maximum(peak_level, 1e-12)
    e3, bp3 = e.reshape(n_rec, n_leads, n), bp.reshape(n_rec, n_leads, n)
    env = np.zeros((n_rec, n))
    mag = np.zeros((n_rec, n))
    for j in range(n_leads):
        env += (w[:, j] / norm[:, j])[:, None] * e3[:, j]
        mag += (w[:, j] / np.sqrt(norm[:, j]))[:, None] * np.abs(bp3[:, j])
    return env, mag


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


def detect_qrs_many(x: FloatArray, fs: float, usable: npt.NDArray[np.bool_]) -> list[IntArray]:
    """:func:`detect_qrs` for records x leads x samples of one length, one array of beats per record.

    The envelopes (the filtering, the bulk of the work) are computed in one
    call for every lead of every record; peak picking stays per record.
    Records longer than one detection chunk go through :func:`detect_qrs`.
    """
    n_rec, _, n = x.shape
    if n < int(0.5 * fs):
        return [np.zeros(0, dtype=np.int64) for _ in range(n_rec)]
    if n > int(CHUNK_S * fs) + int(OVERLAP_S * fs):
        return [detect_qrs(x[r], fs, usable=usable[r]) for r in range(n_rec)]
    mask = np.asarray(usable, dtype=bool).copy()
    mask[~mask.any(axis=1)] = True  # no usable lead: try them all, as detect_qrs does
    env, mag = envelopes_many(x, fs, mask)
    return [_detect_chunk(env[r], mag[r], fs) for r in range(n_rec)]
