"""Representative (median) beats and global wave boundaries across leads.

A certified cart measures intervals once, globally, on the representative
beats of all leads together; cardiologists mark a wave's onset at the
earliest onset in any lead and its end at the latest end in any lead.  A
single-lead delineator misses that, and a method that weights leads by
amplitude lets large leads drown the small early or late deflections of
the others (and depends on each lead's gain).  Here:

* **median beat per lead** — dominant-class beats aligned by cross-correlation
  of their QRS, sample-wise median (rejects ectopics and noise);
* **gain normalisation** — for the all-lead (spatial) estimates every lead is
  scaled to a common QRS slope (at least a multiple of its own noise), so no
  boundary depends on a lead's gain;
* **QRS onset/offset** — per lead, on that lead's own slope: the span of its
  significant slope lobes, ended where the slope falls below a fraction of the
  first / last lobe (or its noise) for 10 ms, or at the knee of a sloping ST;
  globally the earliest onset / latest offset that a second lead confirms
  within 6 ms (a lone lead is more often noise than an early wave), or the
  spatial velocity's (root sum of squared slopes, which pools the leads'
  noise) where that is wider;
* **T offset** — Zhang's trapezium-area method on the T-wave spatial magnitude
  (decides there is a T and gives its peak) and on every lead whose T stands
  out of its noise; globally the later of the spatial end and the latest lead
  end confirmed by three leads within 10 ms;
* **P onset/offset** — the same area method, backward and forward from the
  P peak of the atrial spatial magnitude, with a detection test (the P must
  stand above the baseline noise) so that an absent P yields no P values;
  leads with a clear P of their own (20 x noise, confirmed by three leads)
  may widen it by up to 20 ms.
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
QRS_ON_FRACTION = 0.05
QRS_OFF_FRACTION = 0.06
QRS_QUIET_S = 0.010
#: P detection: peak spatial magnitude above baseline must exceed this (mV) and this multiple of noise.
P_MIN_MV = 0.03
P_MIN_SNR = 3.0
#: ... and at least this many times the magnitude 30 ms before the QRS (where the search window ends).
P_OVER_PR_END = 1.5
VELOCITY_LOWPASS_HZ = 50.0
#: Per-lead QRS boundaries: low-pass of the slope, lobe significance and boundary fractions of the lead's
#: own slopes, the noise floor (multiple of the lead's slope noise) and the SNR a lead needs to count.
LEAD_LOWPASS_HZ = 120.0
LEAD_LOBE_FRACTION = 0.05
LEAD_ON_FRACTION = 0.08
LEAD_OFF_FRACTION = 0.12
LEAD_NOISE_FACTOR = 8.0
LEAD_LOBE_SNR = 10.0
#: ... and the knee: a QRS offset is at the latest the first minimum of |slope| below this fraction of the lobe.
LEAD_KNEE_FRACTION = 0.25
LEAD_MIN_SNR = 8.0
#: Per-lead T end: a lead's T must reach this fraction of its QRS amplitude and this multiple of its noise.
LEAD_T_MIN_REL = 0.05
LEAD_T_MIN_SNR = 5.0
#: ... and may end at most this long after the T end of all leads together.
LEAD_T_MAX_LATE_S = 0.05
#: A lead's T peak lies at most this long before the all-lead T peak (its largest deflection earlier is
#: an ST deviation, not its T wave: a lead nearly perpendicular to the T axis has a small, late T).
LEAD_T_PEAK_SPREAD_S = 0.08
#: A lead whose T stands this many times above its own noise and above any activity in its diastole
#: (P, flutter or U waves, drift) gives the global T end alone (the reference is the latest end in any
#: lead, often a lead with a small, late T); weaker leads need confirmation by others.  Such a lone
#: lead extends the global end by at most this multiple of its T peak's delay after the all-lead T peak
#: (a late repolarisation component is late as a whole, and broader), plus ``CONFIRM_T_S``.
T_SOLO_SNR = 10.0
T_SOLO_LAG_FACTOR = 1.5
#: At fast rates: the T end is seen only if the T has fallen below this fraction of its peak magnitude
#: before the next P wave; without a P wave found, the T must end this long before the next QRS (the
#: shortest normal PR interval: a conducted P wave would otherwise be inside the apparent T wave).
T_RETURN_REL = 0.2
T_Q_MIN_WITHOUT_P_S = 0.12
#: A wave riding on the T (see ``_wave_after_t``): prominence relative to the lead's ST-T and QRS.
FUSED_WAVE_REL = 0.3
FUSED_WAVE_QRS = 0.03
#: A global extreme counts when this many leads share it within this time: two for the sharp QRS
#: boundaries, three for the smooth, noisier T ends.
CONFIRM_QRS_S = 0.006
CONFIRM_QRS_LEADS = 2
CONFIRM_T_S = 0.010
CONFIRM_T_LEADS = 3
#: Per-lead P boundaries (confirmed like the T ends) widen the all-lead P; a lead's P must stand this
#: many times above its own noise.
PER_LEAD_P = True
LEAD_P_MIN_SNR = 20.0
CONFIRM_P_S = 0.010
LEAD_P_MAX_EXT_S = 0.02
#: All-lead (spatial) estimates run on leads scaled to a common QRS slope (gain-invariant); a lead's
#: scale is at least this multiple of its slope noise.
NORMALISE_SPATIAL = True
NORMALISE_MIN_SNR = 20.0
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
    #: why the T end was not measured although there is a T wave (a technical statement for the reader)
    t_note: str | None = None


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
                # every lead weighs the same whatever its gain: scale by its median QRS, or by its
                # beat-to-beat noise where that is larger (a lead without a QRS does not steer)
                resid = core - core.mean(axis=2, keepdims=True) - ref[:, None, :]
                level = np.maximum(np.sqrt((ref * ref).mean(axis=1)), np.sqrt((resid * resid).mean(axis=(1, 2))))
                ref = ref / np.where(level > 0, level, 1.0)[:, None] ** 2
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


def _lead_slopes(m: FloatArray, fs: float) -> tuple[FloatArray, FloatArray]:
    """Per-lead |slope| (mV/ms) of the low-passed median beats and each lead's slope noise level.

    The noise is the 10th percentile of the 20 ms moving RMS of the slope: the
    quietest stretches of the beat (PR, ST, TP), which the median has already
    cleaned of beat-to-beat noise.
    """
    sm = _lowpass(m, fs, LEAD_LOWPASS_HZ)
    ad = np.abs(np.gradient(sm, axis=1)) * fs / 1000.0
    w = max(2, int(0.02 * fs))
    c = np.cumsum(np.pad(ad * ad, ((0, 0), (1, 0))), axis=1)
    rms = np.sqrt(np.maximum(c[:, w:] - c[:, :-w], 0.0) / w)
    return ad, np.asarray(np.percentile(rms, 10, axis=1), dtype=np.float64)


def lead_qrs_bounds(
    m: FloatArray, fs: float, fiducial: int, slopes: tuple[FloatArray, FloatArray] | None = None
) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
    """QRS onset and offset in every lead, each with thresholds relative to that lead alone.

    In each lead the QRS is the span of its significant slope lobes (local
    maxima of |slope| above ``LEAD_LOBE_FRACTION`` of the lead's largest QRS
    slope).  The onset is where |slope| falls, going back from the first lobe,
    below ``LEAD_ON_FRACTION`` of that lobe's slope (or a noise floor) for
    ``QRS_QUIET_S``; the offset likewise after the last lobe.  Being relative
    to the lead's own slopes, the result does not depend on the lead's gain,
    and a small early q or late terminal wave in a low-amplitude lead counts as
    much as in a large one (Martinez et al. 2004, single lead; Laguna et al.
    1994, multilead).  Returns (onsets, offsets, valid) per lead.  ``slopes``
    is ``_lead_slopes`` of ``m`` (or of ``m`` with any per-lead gain) when the
    caller has it.
    """
    ad, noise = _lead_slopes(m, fs) if slopes is None else slopes
    n_leads, n = ad.shape
    half = int(0.07 * fs)
    lo, hi = max(1, fiducial - half), min(n - 1, fiducial + half)
    wlo, whi = max(1, fiducial - int(0.12 * fs)), min(n - 1, fiducial + int(0.18 * fs))
    run = max(2, int(QRS_QUIET_S * fs))
    ons = np.zeros(n_leads, dtype=np.int64)
    offs = np.zeros(n_leads, dtype=np.int64)
    valid = np.zeros(n_leads, dtype=bool)
    for i in range(n_leads):
        a = ad[i]
        peak = float(a[lo:hi].max())
        if peak <= LEAD_MIN_SNR * noise[i] or peak <= 0.0:
            continue  # no QRS standing out of this lead's noise
        seg = a[wlo:whi]
        floor = LEAD_NOISE_FACTOR * noise[i]
        lobe_min = max(LEAD_LOBE_FRACTION * peak, LEAD_LOBE_SNR * noise[i])
        is_max = (seg[1:-1] >= seg[:-2]) & (seg[1:-1] > seg[2:]) & (seg[1:-1] > lobe_min)
        lobes = wlo + 1 + np.flatnonzero(is_max)
        # lobes must belong to this QRS: chained to the main one without a long quiet gap
        main = lo + int(np.argmax(a[lo:hi]))
        first, last = main, main
        for j in lobes[::-1]:
            gap = max(LEAD_ON_FRACTION * min(a[j], a[first]), floor)
            if j < first and not np.any(np.convolve(a[j:first] < gap, np.ones(run), "valid") >= run):
                first = int(j)
        for j in lobes:
            gap = max(LEAD_OFF_FRACTION * min(a[j], a[last]), floor)
            if j > last and not np.any(np.convolve(a[last:j] < gap, np.ones(run), "valid") >= run):
                last = int(j)
        on_thr = max(LEAD_ON_FRACTION * a[first], floor)
        off_thr = max(LEAD_OFF_FRACTION * a[last], floor)
        on = _quiet_run(a < on_thr, first, -1, run)
        off = _quiet_run(a < off_thr, last, +1, run)
        # a sloping ST segment never gets quiet: the knee (first minimum of |slope| well below the lobe)
        off = _first_minimum(a, last, +1, LEAD_KNEE_FRACTION * a[last], off)
        if on is None or off is None:
            continue
        ons[i], offs[i], valid[i] = on, off, True
    return ons, offs, valid


def _first_minimum(a: FloatArray, start: int, step: int, below: float, limit: int | None) -> int | None:
    """First local minimum of ``a`` from ``start`` by ``step`` with a value under ``below``, at most ``limit``."""
    i = start + step
    while 0 < i < a.size - 1:
        if limit is not None and (i - limit) * step > 0:
            return limit
        if a[i] < below and a[i] <= a[i - 1] and a[i] <= a[i + 1]:
            return i
        i += step
    return limit


def robust_extreme(
    values: IntArray, valid: npt.NDArray[np.bool_], *, latest: bool, within: int, leads: int = 2
) -> int | None:
    """Earliest (or latest) value that ``leads`` leads in all share within ``within`` samples, else None.

    The cardiologists' global boundary is the earliest onset / latest offset in
    any lead; a lone lead far outside the others is more often noise than an
    early wave, so the extreme must be seen by more than one lead.  None (the
    caller keeps its all-lead estimate) when too few valid leads agree.
    """
    v = np.sort(values[valid])
    if latest:
        v = v[::-1]
    k = max(1, leads) - 1
    if v.size <= k:
        return None
    ok = np.flatnonzero(np.abs(v[k:] - v[:-k] if k else np.zeros(v.size)) <= within)
    return int(v[ok[0]]) if ok.size else None


def _normalised(
    m: FloatArray, fs: float, fiducial: int, slopes: tuple[FloatArray, FloatArray] | None = None
) -> FloatArray:
    """Leads scaled to a common peak QRS slope, so that the all-lead (spatial) estimates are gain-invariant.

    A lead's scale is its largest QRS slope, but at least ``NORMALISE_MIN_SNR``
    times its own slope noise: a lead that sees the QRS edge-on (isoelectric
    complex) is not blown up into pure noise.  Both terms scale with the
    lead's gain, so the result does not depend on it; the common level is the
    median lead's, which keeps millivolt-like units for the absolute checks.
    """
    ad, noise = _lead_slopes(m, fs) if slopes is None else slopes
    half = int(0.07 * fs)
    lo, hi = max(0, fiducial - half), min(m.shape[1], fiducial + half)
    peak = ad[:, lo:hi].max(axis=1)
    scale = np.maximum(peak, NORMALISE_MIN_SNR * noise)
    ok = scale > 0
    if not ok.any():
        return m
    scale = np.where(ok, scale, 1.0)
    return np.asarray(m / scale[:, None] * float(np.median(scale[ok])))


def spatial_qrs_bounds(m: FloatArray, fs: float, fiducial: int) -> tuple[int, int, int]:
    """QRS onset, offset and peak index on the spatial velocity (see ``delineate`` for the lead weights)."""
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
    return int(on_i), int(off_i), peak_i


#: The global QRS boundaries reach at most this far (s) beyond the median lead's onset and offset ...
MEDIAN_LEAD_REACH_S = 0.03
#: ... when at least this many leads have their own boundaries.
MEDIAN_LEAD_MIN_LEADS = 6


def qrs_bounds(
    m: FloatArray, fs: float, fiducial: int, slopes: tuple[FloatArray, FloatArray] | None = None
) -> tuple[int, int]:
    """Global QRS onset and offset: union of the confirmed per-lead extremes and the spatial span.

    ``m`` are gain-normalised median beats.  The per-lead boundaries follow the
    cardiologists' convention (earliest onset / latest offset in any lead, here
    seen by two leads); the spatial velocity pools the leads' noise and still
    sees a small initial wave that each noisy lead alone loses under its noise
    floor.  The span is capped to physiological widths.
    """
    s_on, s_off, peak_i = spatial_qrs_bounds(m, fs, fiducial)
    ons, offs, valid = lead_qrs_bounds(m, fs, fiducial, slopes)
    within = max(0, round(CONFIRM_QRS_S * fs))
    p_on = robust_extreme(ons, valid, latest=False, within=within, leads=CONFIRM_QRS_LEADS)
    p_off = robust_extreme(offs, valid, latest=True, within=within, leads=CONFIRM_QRS_LEADS)
    on_i = s_on if p_on is None else min(s_on, p_on)
    off_i = s_off if p_off is None else max(s_off, p_off)
    if int(valid.sum()) >= MEDIAN_LEAD_MIN_LEADS:
        # the union reaches beyond the typical lead by a few q / terminal-wave milliseconds, not by a whole
        # wave: a boundary far outside where most leads start or end is one lead's wobble (QT +50-90 ms)
        reach = round(MEDIAN_LEAD_REACH_S * fs)
        on_i = max(on_i, int(np.median(ons[valid])) - reach)
        off_i = min(off_i, int(np.median(offs[valid])) + reach)
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


def _t_end_on(
    mag: FloatArray, fs: float, a: int, b: int, b_peak: int, c_max: int | None = None
) -> tuple[int, int | None]:
    """(T peak, T end) of a non-negative T-wave trace: trapezium from the steepest descent after the peak."""
    tp = a + int(np.argmax(mag[a:b_peak]))
    slope = np.gradient(mag)
    c = min(b if c_max is None else c_max, tp + int(0.20 * fs))
    # the steepest descent is on the T's own descending limb: it ends at the first trough well below
    # the peak (beyond it a fast rate's next P wave may descend more steeply)
    seg = mag[tp:c]
    trough = np.flatnonzero((seg[1:-1] <= seg[:-2]) & (seg[1:-1] < seg[2:]) & (seg[1:-1] < 0.5 * mag[tp]))
    if trough.size:
        c = tp + 2 + int(trough[0])
    if c <= tp + 1:
        return tp, None
    i_m = tp + int(np.argmin(slope[tp:c]))
    i_r = min(b, i_m + int(0.15 * fs))
    return tp, _trapezium(mag, i_m, i_r)


def lead_t_ends(
    m: FloatArray,
    fs: float,
    qrs_on: int,
    qrs_off: int,
    spatial_end: int | None = None,
    smoothed: FloatArray | None = None,
    window_end: int | None = None,
    t_peak: int | None = None,
) -> tuple[IntArray, npt.NDArray[np.bool_], FloatArray, IntArray]:
    """T end in every lead whose T wave stands out of that lead's own noise and QRS (gain-invariant).

    Each lead's T (baseline-corrected, sign-folded so that its largest lobe is
    positive) gets the trapezium end.  A lead counts when its T amplitude is at
    least ``LEAD_T_MIN_REL`` of its own QRS amplitude and ``LEAD_T_MIN_SNR``
    times the noise of its TP/ST stretch; a flat T has no measurable end.
    With ``spatial_end`` (the T end of all leads together) a lead's T peak is
    sought before it and its steepest descent within 50 ms after it, so that
    the next beat's P wave at fast rates is not taken for a lead's T.
    ``smoothed`` is the baseline-corrected, low-passed ``m`` when the caller has it;
    ``window_end`` the end of the T search window when the caller has shortened it.
    """
    iso = _isoelectric(m, fs, qrs_on)
    sm = _lowpass(m - iso[:, None], fs, WAVE_LOWPASS_HZ) if smoothed is None else smoothed
    n_leads, n = m.shape
    a = qrs_off + int(0.06 * fs)
    b = min(n - 1, qrs_on + int(0.68 * fs)) if window_end is None else window_end
    b_peak = min(b, qrs_on + int(0.45 * fs))
    c_max = b
    if spatial_end is not None:
        b_peak = min(b_peak, spatial_end)
        c_max = min(b, spatial_end + int(0.05 * fs))
    ends = np.zeros(n_leads, dtype=np.int64)
    valid = np.zeros(n_leads, dtype=bool)
    snr = np.zeros(n_leads)
    peaks = np.zeros(n_leads, dtype=np.int64)
    lo_peak = a if t_peak is None else min(b_peak - 1, max(a, t_peak - int(LEAD_T_PEAK_SPREAD_S * fs)))
    if b - a < int(0.08 * fs) or b_peak <= a:
        return ends, valid, snr, peaks
    w = max(2, int(0.02 * fs))
    # diastolic activity after the T (P, flutter or U waves, residual drift: whatever a lone lead's end
    # could be following), per lead: the detrended spread of the 100 ms from 50 ms after the all-lead end
    activity = np.full(n_leads, np.inf)
    if spatial_end is not None:
        d0, d1 = spatial_end + int(0.05 * fs), min(b, spatial_end + int(0.15 * fs))
        if d1 - d0 >= int(0.04 * fs):
            seg = sm[:, d0:d1] - sm[:, d0:d1].mean(axis=1, keepdims=True)
            tt = np.arange(d1 - d0) - (d1 - d0 - 1) / 2.0
            seg = seg - ((seg @ tt) / float(tt @ tt))[:, None] * tt[None, :]
            activity = seg.std(axis=1)
    for i in range(n_leads):
        y = sm[i]
        k = lo_peak + int(np.argmax(np.abs(y[lo_peak:b_peak])))
        amp = abs(float(y[k]))
        qrs_amp = float(np.ptp(sm[i, qrs_on : qrs_off + 1])) if qrs_off > qrs_on else 0.0
        raw = m[i] - iso[i]
        noise = float(np.std(raw[max(0, b - 4 * w) : b] - y[max(0, b - 4 * w) : b])) if b > 4 * w else 0.0
        if amp < LEAD_T_MIN_REL * qrs_amp or amp <= LEAD_T_MIN_SNR * noise or amp <= 0.0:
            continue
        _, te = _t_end_on(np.sign(y[k]) * y, fs, lo_peak, b, b_peak, c_max)
        if te is not None:
            ends[i], valid[i] = te, True
            snr[i] = amp / max(noise, float(activity[i]), 1e-9)
            peaks[i] = k
    return ends, valid, snr, peaks


def t_wave_end(
    m: FloatArray, fs: float, qrs_on: int, qrs_off: int, window_end: int | None = None
) -> tuple[int | None, int | None]:
    """(T peak, T end): the latest confirmed per-lead T end, guarded by the spatial-magnitude T end.

    The spatial magnitude (Zhang's trapezium on the root-sum-square of the
    baseline-corrected leads) decides whether there is a T wave at all and
    gives the peak; the global end is the later of its end and the latest
    per-lead end that ``CONFIRM_T_LEADS`` leads share within ``CONFIRM_T_S``,
    or of any lead whose T stands ``T_SOLO_SNR`` times above its noise.
    ``window_end`` bounds the search (the next beat's P wave or QRS); when the
    T has not returned to its baseline there (below ``T_RETURN_REL`` of its
    peak) its end is hidden and (peak, None) is returned.
    """
    iso = _isoelectric(m, fs, qrs_on)
    sm = _lowpass(m - iso[:, None], fs, WAVE_LOWPASS_HZ)
    mag = np.sqrt((sm * sm).sum(axis=0))
    a = qrs_off + int(0.06 * fs)
    b = min(m.shape[1] - 1, qrs_on + int(0.68 * fs))
    if window_end is not None:
        b = min(b, window_end)
    if b - a < int(0.08 * fs):
        return None, None
    # T peak: largest magnitude in the early part of the window (T rarely peaks > 450 ms after QRS onset)
    b_peak = min(b, qrs_on + int(0.45 * fs))
    tp, te = _t_end_on(mag, fs, a, b, b_peak)
    if mag[tp] < 0.03 or te is None:
        return (tp if mag[tp] >= 0.03 else None), None
    if window_end is not None and b == window_end and float(mag[tp : b + 1].min()) > T_RETURN_REL * mag[tp]:
        # the T never falls back towards the baseline before the bound: it runs into the next beat's P wave
        # or QRS and its end is not seen (the minimum, not the last sample: with irregular RR the median
        # beat's tail carries the earlier next QRS complexes of the shorter cycles)
        return tp, None
    ends, valid, snr, peaks = lead_t_ends(m, fs, qrs_on, qrs_off, te, sm, b, tp)
    # a lead ending far after all leads together is following something else (next P, U wave, drift)
    valid &= ends <= te + int(LEAD_T_MAX_LATE_S * fs)
    within_t = max(0, round(CONFIRM_T_S * fs))
    late = robust_extreme(ends, valid, latest=True, within=within_t, leads=CONFIRM_T_LEADS)
    base = te if late is None else max(te, late)
    # a lone lead ends later when its whole T wave is late (a late repolarisation component that the
    # other leads do not see): it may extend the global end in proportion to its T peak's delay; a late
    # end after a synchronous peak is a distorted tail (noise, residual atrial waves, drift)
    reach = base + T_SOLO_LAG_FACTOR * np.maximum(peaks - tp, 0) + within_t
    solo = valid & (snr >= T_SOLO_SNR) & (ends <= reach)
    return tp, max(base, int(ends[solo].max())) if solo.any() else base


def p_wave(
    m: FloatArray, fs: float, qrs_on: int, rr_samples: float | None, t_off: int | None = None
) -> tuple[int | None, int | None, int | None]:
    """(P onset, P peak, P offset) or Nones when no P wave stands out of the baseline.

    The search starts after the previous beat's T wave (this beat's T end one RR
    earlier) so that a fast rate does not turn the preceding T into a P.  The
    boundaries come from the all-lead magnitude; leads whose own P is clear
    (``LEAD_P_MIN_SNR``) may widen them by up to ``LEAD_P_MAX_EXT_S`` when
    ``CONFIRM_T_LEADS`` of them agree (earliest onset / latest offset).
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
    height = float(mag[pp]) - min(noise, float(mag[b]))
    # a P wave stands out of the baseline noise, and falls back toward the PR segment: a short PR segment
    # leaves part of the P at the window's end, so the end level is held to a hump ratio, not the noise ratio
    if height < P_MIN_MV or mag[pp] < P_MIN_SNR * max(noise, 0.005) or mag[pp] < P_OVER_PR_END * float(mag[b]):
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
    if PER_LEAD_P:
        ons, offs, valid = _lead_p_bounds(m - base, sm, fs, a, on, off, qrs_on)
        # a lead's P may widen the all-lead P a little, not run into the PR segment or the T-P baseline
        ext = int(LEAD_P_MAX_EXT_S * fs)
        valid &= (ons >= on - ext) & (offs <= off + ext)
        within = max(0, round(CONFIRM_P_S * fs))
        early = robust_extreme(ons, valid, latest=False, within=within, leads=CONFIRM_T_LEADS)
        late = robust_extreme(offs, valid, latest=True, within=within, leads=CONFIRM_T_LEADS)
        on = on if early is None else min(on, early)
        off = off if late is None else max(off, late)
    return on, pp, off


def _lead_p_bounds(
    raw: FloatArray, sm: FloatArray, fs: float, a: int, on: int, off: int, qrs_on: int
) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
    """P onset and offset in every lead whose P stands out of its own noise (gain-invariant).

    ``raw`` and ``sm`` are the baseline-corrected leads, unfiltered and low-passed; the lead's P is its
    largest deflection inside the all-lead P, sign-folded, and its ends come from the trapezium.
    """
    n_leads = sm.shape[0]
    ons = np.zeros(n_leads, dtype=np.int64)
    offs = np.zeros(n_leads, dtype=np.int64)
    valid = np.zeros(n_leads, dtype=bool)
    lo_w, hi_w = max(0, a - int(0.05 * fs)), qrs_on
    for i in range(n_leads):
        y = sm[i]
        k = on + int(np.argmax(np.abs(y[on : off + 1])))
        noise = float(np.std(raw[i, lo_w:hi_w] - y[lo_w:hi_w]))
        if abs(float(y[k])) <= LEAD_P_MIN_SNR * noise or y[k] == 0.0:
            continue
        f = np.sign(y[k]) * y
        slope = np.gradient(f)
        lo = max(a, k - int(0.10 * fs))
        i_up = lo + int(np.argmax(slope[lo : k + 1])) if k > lo else k
        hi = min(qrs_on - 1, k + int(0.10 * fs))
        i_dn = k + int(np.argmin(slope[k:hi])) if hi > k else k
        p_on = _trapezium(f, i_up, max(0, i_up - int(0.10 * fs)))
        p_off = _trapezium(f, i_dn, min(qrs_on - 1, i_dn + int(0.08 * fs)))
        if p_on < k < p_off < qrs_on:
            ons[i], offs[i], valid[i] = p_on, p_off, True
    return ons, offs, valid


def _wave_after_t(m: FloatArray, fs: float, qrs_on: int, qrs_off: int, t_peak: int, stop: int) -> bool:
    """True when some lead shows a separate wave after the T peak and before ``stop`` (the apparent T end).

    A P wave fused with the T wave of the previous beat (fast sinus rates) keeps its own lobe in
    the leads where it is large and the T is small (the P and T axes differ), and the apparent T
    end is that P's end; a junctional rhythm's T wave falls to the baseline in one lobe.  Only the
    stretch up to the apparent T end is examined: after it, an irregular rhythm's median beat carries
    the earlier next QRS complexes of its shorter cycles.  A lobe counts when its prominence is at least
    ``FUSED_WAVE_REL`` of the lead's largest ST-T deflection, ``FUSED_WAVE_QRS`` of its QRS and
    ``LEAD_T_MIN_SNR`` times its noise.
    """
    iso = _isoelectric(m, fs, qrs_on)
    sm = _lowpass(m - iso[:, None], fs, WAVE_LOWPASS_HZ)
    a = qrs_off + int(0.06 * fs)
    first = t_peak + int(0.02 * fs)
    if stop - first < int(0.03 * fs) or first <= a:
        return False
    for i in range(sm.shape[0]):
        y = sm[i, a:stop]
        amp = float(np.abs(y).max())
        qrs_amp = float(np.ptp(sm[i, qrs_on : qrs_off + 1]))
        noise = float(np.std(m[i, a:stop] - iso[i] - y))
        floor = max(FUSED_WAVE_REL * amp, FUSED_WAVE_QRS * qrs_amp, LEAD_T_MIN_SNR * noise)
        for sign in (1.0, -1.0):
            peaks, _ = sps.find_peaks(sign * y, prominence=floor)
            if np.any(peaks + a >= first):
                return True
    return False


def delineate(
    mb: MedianBeats, *, rr_samples: float | None = None, usable: npt.NDArray[np.bool_] | None = None
) -> Fiducials:
    """Global fiducials of the median beats over the usable leads."""
    m = mb.beats if usable is None or not np.any(usable) else mb.beats[np.asarray(usable, dtype=bool)]
    slopes = _lead_slopes(m, mb.fs)  # per-lead results are gain-invariant: computed once, before scaling
    if NORMALISE_SPATIAL:
        m = _normalised(m, mb.fs, mb.fiducial, slopes)
    qon, qoff = qrs_bounds(m, mb.fs, mb.fiducial, slopes)
    fs = mb.fs
    # the T end lies before the next QRS, and before the next beat's P wave where there is one
    next_q = None if not rr_samples else qon + int(rr_samples) - int(0.02 * fs)
    tp, toff = t_wave_end(m, fs, qon, qoff, next_q)
    pon, ppk, poff = p_wave(m, fs, qon, rr_samples, toff)
    note = None
    if rr_samples and toff is not None and tp is not None:
        rr = int(rr_samples)
        bound = pon
        if pon is None and _wave_after_t(m, fs, qon, qoff, tp, toff):
            # no P wave found, yet a separate wave rides on the T in some lead (the P and T axes differ):
            # a P wave fused with the T at a fast rate, or hidden from the P search because the T end was
            # placed inside it.  Without room for a P and PR segment (>= 120 ms) between T end and QRS the
            # apparent T end is that wave's end; otherwise look for it in the usual window before the QRS.
            if qon + rr - toff < T_Q_MIN_WITHOUT_P_S * fs:
                toff = None
                note = (
                    f"T wave end not measured: less than {T_Q_MIN_WITHOUT_P_S * 1000:.0f} ms from the T wave "
                    "to the next QRS and an atrial wave fused with the T wave (P on T)"
                )
            else:
                bound = p_wave(m, fs, qon, rr_samples, None)[0]
                # a wave starting on the previous T's upstroke or peak is that T, not a P wave riding on it
                if bound is not None and bound < tp - rr + int(0.04 * fs):
                    bound = None
        if toff is not None and bound is not None and toff > bound + rr:
            # the search ran into the next P wave (P on T): the T end must come before it, or stays unseen
            tp, toff = t_wave_end(m, fs, qon, qoff, bound + rr)
            if toff is None:
                note = "T wave end not measured: the next P wave begins before the T wave has ended (P on T)"
    if toff is None and note is None and next_q is not None and (tp is not None or next_q - qoff < int(0.14 * fs)):
        note = "T wave end not measured: the T wave does not end before the next QRS complex"
        pon = poff = ppk = None  # no room for a P wave between T and QRS: whatever the P search found is not one
    return Fiducials(pon, poff, qon, qoff, toff, tp, ppk, note)


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


def median_lead_qrs_ms(ons: IntArray, offs: IntArray, valid: npt.NDArray[np.bool_], fs: float) -> float | None:
    """The QRS duration of the median lead from :func:`lead_qrs_bounds` (ms); None under 3 leads.

    The global QRS (earliest onset to latest offset) is the standard's
    interval, but one lead's late tail or early wobble stretches it; the width
    most leads show is what tells a conduction block from a measurement artefact.
    """
    if int(valid.sum()) < 3:
        return None
    return float(np.median((offs - ons)[valid])) * 1000.0 / fs
