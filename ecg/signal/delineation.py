"""Representative (median) beats and global wave boundaries across leads.

A certified cart measures intervals once, globally, on the representative
beats of all leads together: the QRS starts at the earliest onset in any
lead and ends at the latest offset, which single-lead delineators miss.
Here:

* **median beat per lead** — dominant-class beats aligned by cross-correlation
  of their QRS, sample-wise median (rejects ectopics and noise);
* **QRS onset/offset** — on the spatial velocity (root sum of squared slopes
  over the usable leads), where it leaves / returns to the isoelectric level
  for at least 10 ms, threshold relative to the QRS peak velocity;
* **T offset** — Zhang's trapezium-area method on the T-wave spatial
  magnitude (a tangent-like construction that is robust to noise and to the
  T-wave's shape), which follows the latest-ending leads;
* **P onset/offset** — the same area method, backward and forward from the
  P peak of the atrial spatial magnitude, with a detection test (the P must
  stand above the baseline noise) so that an absent P yields no P values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg.signal.filters import butter_sos

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PRE_S = 0.45
POST_S = 0.70
ALIGN_MAX_S = 0.02
#: Beats aligned per block, and at most this many in the median (memory on Holter records).
ALIGN_BLOCK = 2000
MAX_MEDIAN_BEATS = 600
#: QRS boundaries: fraction of (peak - floor) spatial velocity, and the quiet time required beyond it.
QRS_ON_FRACTION = 0.04
QRS_OFF_FRACTION = 0.06
QRS_QUIET_S = 0.010
#: P detection: peak spatial magnitude above baseline must exceed this (mV) and this multiple of noise.
P_MIN_MV = 0.03
P_MIN_SNR = 3.0
VELOCITY_LOWPASS_HZ = 50.0
WAVE_LOWPASS_HZ = 25.0


@dataclass(frozen=True, slots=True)
class MedianBeats:
    """Median beats (leads x samples at ``fs``); sample ``fiducial`` is the QRS detection point."""

    beats: FloatArray
    fs: float
    fiducial: int
    n_beats: int
    lags: IntArray  #: per source beat used, the alignment shift in samples
    used: IntArray  #: indices (into the detected beats) of the beats that built the median


@dataclass(frozen=True, slots=True)
class Fiducials:
    """Global boundaries as sample indices within the median beat (None when not found)."""

    p_on: int | None
    p_off: int | None
    qrs_on: int
    qrs_off: int
    t_off: int | None
    t_peak: int | None
    p_peak: int | None


def median_beats(
    x: FloatArray,
    fs: float,
    beats: IntArray,
    labels: npt.NDArray[np.str_],
    *,
    usable: npt.NDArray[np.bool_] | None = None,
) -> MedianBeats | None:
    """Build the representative beat of every lead from the dominant beats.

    Beats labelled N (or, if fewer than 3, all beats) whose window lies inside
    the record are aligned on their QRS by cross-correlation (+-20 ms) with a
    first median, then the sample-wise median is taken.  Returns None when
    there are no complete beats.
    """
    mask = np.ones(x.shape[0], dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    pre, post = int(PRE_S * fs), int(POST_S * fs)
    if beats.size >= 2:
        rr = float(np.median(np.diff(beats)))
        post = min(post, int(0.95 * rr))
        pre = min(pre, int(0.75 * rr))
    maxlag = int(ALIGN_MAX_S * fs)
    ok = (beats - pre - maxlag >= 0) & (beats + post + maxlag < x.shape[1])
    chosen = np.flatnonzero(ok & (labels == "N"))
    if chosen.size < 3:
        chosen = np.flatnonzero(ok & (labels != "V"))
    if chosen.size < 1:
        chosen = np.flatnonzero(ok)
    if chosen.size < 1:
        return None
    b = beats[chosen]
    leads = np.flatnonzero(mask) if mask.any() else np.arange(x.shape[0])
    # alignment on the QRS region of the usable leads: one gather, then slide within it
    qa = int(0.08 * fs)
    offs = np.arange(-qa - maxlag, qa + maxlag)
    lags = np.zeros(b.size, dtype=np.int64)
    if b.size >= 3:
        best = np.full(b.size, -np.inf)
        for start in range(0, b.size, ALIGN_BLOCK):  # bounded memory on Holter-length records
            bb = b[start : start + ALIGN_BLOCK]
            wide = x[leads][:, bb[:, None] + offs[None, :]]  # L x B x (W + 2 maxlag)
            if start == 0:
                core = wide[:, :, maxlag : maxlag + 2 * qa]
                ref = np.median(core, axis=1)
                ref = ref - ref.mean(axis=1, keepdims=True)
            for lag in range(-maxlag, maxlag + 1):
                seg = wide[:, :, maxlag + lag : maxlag + lag + 2 * qa]
                seg = seg - seg.mean(axis=2, keepdims=True)
                score = np.einsum("lbw,lw->b", seg, ref)
                sl = slice(start, start + bb.size)
                better = score > best[sl]
                best[sl] = np.where(better, score, best[sl])
                lags[sl] = np.where(better, lag, lags[sl])
    win = np.arange(-pre, post)
    pick = np.arange(b.size)
    if b.size > MAX_MEDIAN_BEATS:  # a median over a few hundred beats is as stable as over thousands
        pick = np.unique(np.linspace(0, b.size - 1, MAX_MEDIAN_BEATS).astype(int))
    idx = b[pick, None] + lags[pick, None] + win[None, :]
    med = np.median(x[:, idx], axis=1)  # leads x W
    return MedianBeats(np.asarray(med), fs, pre, int(b.size), lags, chosen.astype(np.int64))


def _lowpass(m: FloatArray, fs: float, fc: float) -> FloatArray:
    if m.shape[-1] < 20 or fc >= fs / 2:
        return m
    sos = butter_sos(2, fc, "lowpass", fs)
    return np.asarray(sps.sosfiltfilt(sos, m, axis=-1, padlen=min(m.shape[-1] - 1, 30)))


def spatial_velocity(m: FloatArray, fs: float) -> FloatArray:
    """Root sum of squared slopes over leads (mV/ms): large inside QRS, small on isoelectric segments."""
    sm = _lowpass(m, fs, VELOCITY_LOWPASS_HZ)
    d = np.gradient(sm, axis=1) * fs / 1000.0
    return np.asarray(np.sqrt((d * d).sum(axis=0)))


def _quiet_run(below: npt.NDArray[np.bool_], start: int, step: int, run: int) -> int | None:
    """First index from ``start`` going by ``step`` where ``below`` holds for ``run`` samples."""
    i = start
    n = below.size
    count = 0
    first = None
    while 0 <= i < n:
        if below[i]:
            if count == 0:
                first = i
            count += 1
            if count >= run:
                return first
        else:
            count = 0
        i += step
    return None


def qrs_bounds(m: FloatArray, fs: float, fiducial: int) -> tuple[int, int]:
    """Global QRS onset and offset on the spatial velocity of the median beats."""
    sv = spatial_velocity(m, fs)
    half = int(0.07 * fs)
    lo, hi = max(0, fiducial - half), min(sv.size, fiducial + half)
    peak_i = lo + int(np.argmax(sv[lo:hi]))
    peak = float(sv[peak_i])
    floor = float(np.percentile(sv, 10))
    run = max(2, int(QRS_QUIET_S * fs))
    on_thr = floor + QRS_ON_FRACTION * (peak - floor)
    off_thr = floor + QRS_OFF_FRACTION * (peak - floor)
    on = _quiet_run(sv < on_thr, peak_i, -1, run)
    off = _quiet_run(sv < off_thr, peak_i, +1, run)
    on_i = on if on is not None else max(0, peak_i - int(0.06 * fs))
    off_i = off if off is not None else min(sv.size - 1, peak_i + int(0.08 * fs))
    # cap implausible widths (a very wide QRS is reported, an unbounded one is not)
    on_i = max(on_i, peak_i - int(0.12 * fs))
    off_i = min(off_i, peak_i + int(0.20 * fs))
    return int(on_i), int(off_i)


def _trapezium(s: FloatArray, i_m: int, i_r: int) -> int:
    """Zhang et al. (2005) trapezium-area boundary between the max-slope point ``i_m`` and ``i_r``.

    The boundary maximises A(t) = 0.5 * (s[i_m] - s[t]) * (|i_r - t| + |i_r - i_m|): a tangent-like
    construction that uses the whole decaying limb instead of one noisy slope.
    """
    step = 1 if i_r >= i_m else -1
    t = np.arange(i_m, i_r + step, step)
    if t.size < 2:
        return i_m
    area = 0.5 * (s[i_m] - s[t]) * (np.abs(i_r - t) + abs(i_r - i_m))
    return int(t[int(np.argmax(area))])


def _isoelectric(m: FloatArray, fs: float, qrs_on: int) -> FloatArray:
    """Per-lead isoelectric level: mean of the 20 ms ending 4 ms before QRS onset (PR segment)."""
    a, b = max(0, qrs_on - int(0.024 * fs)), max(1, qrs_on - int(0.004 * fs))
    return np.asarray(m[:, a:b].mean(axis=1) if b > a else m[:, max(0, qrs_on - 1)], dtype=np.float64)


def t_wave_end(m: FloatArray, fs: float, qrs_on: int, qrs_off: int) -> tuple[int | None, int | None]:
    """(T peak, T end) on the spatial magnitude of the baseline-corrected median beats."""
    iso = _isoelectric(m, fs, qrs_on)
    sm = _lowpass(m - iso[:, None], fs, WAVE_LOWPASS_HZ)
    mag = np.sqrt((sm * sm).sum(axis=0))
    a = qrs_off + int(0.06 * fs)
    b = min(m.shape[1] - 1, qrs_on + int(0.68 * fs))
    if b - a < int(0.08 * fs):
        return None, None
    # T peak: largest magnitude in the early part of the window (T rarely peaks > 450 ms after QRS onset)
    b_peak = min(b, qrs_on + int(0.45 * fs))
    tp = a + int(np.argmax(mag[a:b_peak]))
    if mag[tp] < 0.03:
        return None, None
    slope = np.gradient(mag)
    c = min(b, tp + int(0.20 * fs))
    if c <= tp + 1:
        return tp, None
    i_m = tp + int(np.argmin(slope[tp:c]))
    i_r = min(b, i_m + int(0.15 * fs))
    return tp, _trapezium(mag, i_m, i_r)


def p_wave(
    m: FloatArray, fs: float, qrs_on: int, rr_samples: float | None, t_off: int | None = None
) -> tuple[int | None, int | None, int | None]:
    """(P onset, P peak, P offset) or Nones when no P wave stands out of the baseline.

    The search starts after the previous beat's T wave (this beat's T end one RR
    earlier) so that a fast rate does not turn the preceding T into a P.
    """
    back = int(0.32 * fs)
    if rr_samples:
        back = min(back, int(0.5 * rr_samples))
    a = max(0, qrs_on - back)
    if rr_samples and t_off is not None:
        a = max(a, int(t_off - rr_samples + 0.02 * fs))
    b = qrs_on - int(0.03 * fs)
    if b - a < int(0.05 * fs):
        return None, None, None
    # baseline: a straight line from the T-P level at the window start to the PR level before the QRS;
    # the T-P and PR levels differ (high-pass after-effect of the QRS-T, atrial repolarisation), and an
    # offset between them would shift the P boundaries found on the magnitude
    iso = _isoelectric(m, fs, qrs_on)
    w0 = max(2, int(0.01 * fs))
    start_level = m[:, a : a + w0].mean(axis=1)
    end_i = max(a + 1, qrs_on - int(0.014 * fs))
    t = np.clip((np.arange(m.shape[1]) - a) / (end_i - a), 0.0, 1.0)
    base = start_level[:, None] + (iso - start_level)[:, None] * t[None, :]
    sm = _lowpass(m - base, fs, WAVE_LOWPASS_HZ)
    mag = np.sqrt((sm * sm).sum(axis=0))
    pp = a + int(np.argmax(mag[a:b]))
    # noise: the quietest 40 ms stretch of the window's magnitude slope-free part
    w = max(2, int(0.04 * fs))
    seg = mag[max(0, a - int(0.1 * fs)) : b]
    noise = float(np.min(np.convolve(seg, np.ones(w) / w, mode="valid"))) if seg.size > w else 0.0
    floor = max(noise, float(mag[b]))
    height = float(mag[pp]) - min(noise, float(mag[b]))
    if height < P_MIN_MV or mag[pp] < P_MIN_SNR * max(floor, 0.005):
        return None, None, None
    slope = np.gradient(mag)
    lo = max(0, pp - int(0.10 * fs))
    i_up = lo + int(np.argmax(slope[lo : pp + 1])) if pp > lo else pp
    on = _trapezium(mag, i_up, max(0, i_up - int(0.10 * fs)))
    hi = min(b + int(0.02 * fs), pp + int(0.10 * fs))
    i_dn = pp + int(np.argmin(slope[pp:hi])) if hi > pp else pp
    off = _trapezium(mag, i_dn, min(qrs_on - 1, i_dn + int(0.08 * fs)))
    if not (on < pp < off < qrs_on):
        return None, None, None
    return on, pp, off


def delineate(
    mb: MedianBeats, *, rr_samples: float | None = None, usable: npt.NDArray[np.bool_] | None = None
) -> Fiducials:
    """Global fiducials of the median beats over the usable leads."""
    m = mb.beats if usable is None or not np.any(usable) else mb.beats[np.asarray(usable, dtype=bool)]
    qon, qoff = qrs_bounds(m, mb.fs, mb.fiducial)
    tp, toff = t_wave_end(m, mb.fs, qon, qoff)
    pon, ppk, poff = p_wave(m, mb.fs, qon, rr_samples, toff)
    return Fiducials(pon, poff, qon, qoff, toff, tp, ppk)


def p_wave_consistency(
    x: FloatArray, beats: IntArray, mb: MedianBeats, fd: Fiducials, usable: npt.NDArray[np.bool_] | None = None
) -> float:
    """Fraction of the median's beats whose own P segment matches the median P (correlation > 0.6).

    A P wave in the median beat means "P before every QRS with constant PR" only
    if the beats carry it individually; unlocked atrial waves (AV dissociation)
    can leave a bump in the median without being conducted.
    """
    if fd.p_on is None or fd.p_off is None:
        return 0.0
    fs = mb.fs
    leads = np.flatnonzero(usable) if usable is not None and np.any(usable) else np.arange(x.shape[0])
    a, b = max(0, fd.p_on - int(0.02 * fs)), min(mb.beats.shape[1], fd.p_off + int(0.02 * fs))
    ref = mb.beats[leads, a:b]
    ref = ref - ref.mean(axis=1, keepdims=True)
    starts = beats[mb.used] + mb.lags - mb.fiducial + a
    ok = (starts >= 0) & (starts + (b - a) <= x.shape[1])
    if not ok.any():
        return 0.0
    idx = starts[ok][:, None] + np.arange(b - a)[None, :]
    seg = x[leads][:, idx]  # L x B x W
    seg = seg - seg.mean(axis=2, keepdims=True)
    num = np.einsum("lbw,lw->b", seg, ref)
    den = np.sqrt(np.einsum("lbw,lbw->b", seg, seg) * float((ref * ref).sum()))
    corr = num / np.maximum(den, 1e-12)
    return float(np.mean(corr > 0.6))
