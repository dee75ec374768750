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

Each detection is then moved to the same point of its complex in every beat
(:func:`align_fiducials`): beats are grouped by morphology and aligned to
their class template by multi-lead cross-correlation, so a notched QRS whose
taller lobe changes from beat to beat does not make a regular rhythm look
irregular.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal as sps
from scipy.ndimage import median_filter, uniform_filter1d

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
#: A beat searched for before the first or after the last beat must reach this fraction of the local beat energy.
EDGE_REF_FRACTION = 0.4
#: A candidate after the last beat, within its T-wave window and earlier than this fraction of the typical RR,
#: must pass the first pass's T-wave test.
EARLY_RR_FRACTION = 0.8
CHUNK_S = 300.0
OVERLAP_S = 4.0
#: Fiducial alignment: half-width of the window whose energy centre seeds each beat's position.
CENTROID_S = 0.08
#: Half-width of the multi-lead QRS window compared with the template, and the largest shift searched.
TEMPLATE_HALF_S = 0.10
ALIGN_LAG_S = 0.10
#: ... of which this fraction is searched for every beat, the rest only for beats that do not match yet.
ALIGN_NEAR_FRACTION = 0.3
#: Beats this alike make a class template; a beat is aligned to it if it correlates at least ALIGN_CORRELATION.
MEMBER_CORRELATION = 0.8
ALIGN_CORRELATION = 0.5
MIN_CLASS_BEATS = 3
MAX_CLASSES = 3
SEED_BEATS = 64
#: The template's apex is its reference point if it lies this close to the middle of its QRS extent ...
APEX_CENTRE_S = 0.03
#: ... the samples where the template's smoothed energy exceeds this fraction of its peak.
EXTENT_FRACTION = 0.1
#: A template whose extent reaches this is wide (the band-pass adds ~40 ms: normal QRS measure 100-115 ms).
WIDE_EXTENT_S = 0.135
EXTENT_GAP_S = 0.04
#: ... and no lobe beyond it reaches this fraction of its peak energy (else the QRS is notched or wide);
DOMINANT_FRACTION = 0.5
#: ... and then a beat keeps its own apex where that is this close to the template's.
APEX_AGREE_S = 0.01
#: A beat of no class keeps the magnitude apex within this distance of its energy centre.
FALLBACK_APEX_S = 0.04


def _envelope(x: FloatArray, fs: float, usable: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Combined normalised QRS energy envelope, combined band-passed magnitude, weighted band-passed leads."""
    env, mag, leads = _envelopes(x[None], fs, usable[None])
    return env[0], mag[0], leads[0]


def envelopes_many(x: FloatArray, fs: float, usable: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Combined QRS energy envelopes and band-passed magnitudes for records x leads x samples.

    ``usable`` is records x leads; one filter call serves every lead of every
    record.  Returns records x samples envelopes and magnitudes.  Leads are
    combined one at a time in lead order, so a record's envelope does not
    depend on which other records share the batch.
    """
    env, mag, _ = _envelopes(x, fs, usable)
    return env, mag


def _envelopes(x: FloatArray, fs: float, usable: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`envelopes_many` plus the signed band-passed leads, each scaled like its share of the magnitude.

    The signed leads (records x leads x samples, zero for leads that do not
    count) keep the polarity and timing of every lobe: what template alignment
    of the fiducials needs and the rectified magnitude has lost.
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
    lead_w = w / np.sqrt(norm)
    for j in range(n_leads):
        env += (w[:, j] / norm[:, j])[:, None] * e3[:, j]
        mag += lead_w[:, j, None] * np.abs(bp3[:, j])
    bp3 *= lead_w[:, :, None]  # in place: bp is not used again
    return env, mag, bp3


def _local_reference(env: FloatArray, fs: float, at: IntArray) -> FloatArray:
    """Typical beat-energy level around each index: running median of 2 s block maxima over ~14 s."""
    block = int(2 * fs)
    nb = max(1, env.size // block)
    # a short tail joins the last full block: alone, its maximum is often no beat at all, and the
    # zero-padded median below would then give the record's end a threshold that noise passes
    bmax = np.maximum.reduceat(env, np.arange(nb) * block)
    # artefact bursts must not raise the reference over a whole neighbourhood: cap them first
    bmax = np.minimum(bmax, REFERENCE_CAP * float(np.median(bmax)))
    k = min(7, nb if nb % 2 else max(1, nb - 1))
    # mirrored at the ends: zero padding would lower the reference of the first and last blocks, and a
    # slow rhythm's beat-free last block would then let noise through
    ref = median_filter(bmax, size=k, mode="mirror") if k > 1 else bmax
    return np.asarray(ref[np.minimum(at // block, nb - 1)], dtype=np.float64)


def _detect_chunk(env: FloatArray, mag: FloatArray, fs: float, leads: FloatArray) -> IntArray:
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
        gaps = [
            (int(beats[j]) + dist, int(beats[j + 1]) - dist, 0.0)
            for j in np.flatnonzero(rr > SEARCHBACK_RR_FACTOR * med_rr)
        ]
        # the record's head and tail too (a beat missed after the last one found has no later beat to bound
        # it), where a candidate must also stand clear of the neighbouring beat's T (or P) wave and of the
        # local beat energy: no beat on its other side shows that a wave there is not a T wave
        typical_rr = float(np.median(rr))
        if beats[0] > SEARCHBACK_RR_FACTOR * typical_rr:
            gaps.append((0, int(beats[0]) - dist, T_WAVE_RATIO * float(env[beats[0]])))
        if env.size - 1 - beats[-1] > SEARCHBACK_RR_FACTOR * typical_rr:
            gaps.append((int(beats[-1]) + dist, env.size, T_WAVE_RATIO * float(env[beats[-1]])))
        for lo, hi, floor in gaps:
            sel = (cand > lo) & (cand < hi) & (h >= SEARCHBACK_FRACTION * thr)
            if floor > 0:
                sel &= (h >= floor) & (h >= EDGE_REF_FRACTION * ref)
            if lo > 0:
                # a lower threshold, not a blind one: within the T-wave window of the beat before it a candidate
                # needs T_WAVE_RATIO of that beat's energy (Pan-Tompkins' T-wave test applies in search-back too)
                prev = beats[np.clip(np.searchsorted(beats, cand) - 1, 0, beats.size - 1)]
                gap = cand - prev
                sel &= (gap >= tw) | (h >= T_WAVE_RATIO * env[prev])
                if floor > 0:
                    # after the last beat nothing later shows a wave is no T wave: one earlier than the rhythm
                    # predicts must pass the first pass's whole test (else a fast rhythm's last T wave, as steep
                    # as its QRS in the band, became a beat)
                    sel &= (gap >= tw) | (gap >= EARLY_RR_FRACTION * typical_rr) | (h >= T_WAVE_REF_FRACTION * ref)
            if sel.any():
                k = np.flatnonzero(sel)[np.argmax(h[sel])]
                extra.append(int(cand[k]))
        if not extra:
            break
        beats = np.unique(np.concatenate([beats, np.asarray(extra, dtype=np.int64)]))
        # a beat found now may be the one the first pass took for a T wave, and the weaker wave right after it
        # that the first pass accepted (nothing before it any more) is then its T wave: the same test drops it
        found = np.searchsorted(beats, np.asarray(extra, dtype=np.int64))
        nxt = found + 1
        ok = nxt < beats.size
        found, nxt = found[ok], nxt[ok]
        e_found, e_next = env[beats[found]], env[beats[nxt]]
        ref_next = _local_reference(env, fs, beats[nxt])
        drop = (beats[nxt] - beats[found] < tw) & (e_next < e_found) & (e_next < T_WAVE_REF_FRACTION * ref_next)
        beats = np.delete(beats, nxt[drop])
    return align_fiducials(leads, mag, beats, fs)


def _centroids(mag: FloatArray, beats: IntArray, fs: float) -> IntArray:
    """Centre of the squared QRS magnitude around each beat (two mean-shift steps).

    Unlike the tallest sample, a centre of mass moves continuously with the
    lobe heights: it cannot jump from one lobe of a notched QRS to the other.
    """
    offs = np.arange(-int(CENTROID_S * fs), int(CENTROID_S * fs) + 1)
    c = beats.astype(np.int64)
    for _ in range(2):
        idx = np.clip(c[:, None] + offs[None, :], 0, mag.size - 1)
        m2 = mag[idx] ** 2
        total = m2.sum(axis=1)
        shift = (m2 * offs[None, :]).sum(axis=1) / np.where(total > 0, total, 1.0)
        c = np.clip(c + np.round(shift).astype(np.int64), 0, mag.size - 1)
    return c


def _best_lags(g: FloatArray, rows: IntArray, tmpl: FloatArray, margin: int) -> tuple[FloatArray, IntArray]:
    """Best normalised cross-correlation of each row's multi-lead snippet with the template, and its shift.

    ``g`` holds ``margin`` extra samples on either side of the template's width.
    Shifts up to ALIGN_NEAR_S are tried for every beat, the full +-``margin``
    only for beats that do not match yet (a start on the wrong lobe): most
    beats need no long search, which keeps Holter records fast.
    """
    near = min(margin, max(1, int(ALIGN_NEAR_FRACTION * margin)))
    best, at = _lag_search(g, rows, tmpl, margin, near)
    # a best shift at the end of the near range is no maximum: the correlation may still rise beyond it
    poor = np.flatnonzero((best < MEMBER_CORRELATION) | ((np.abs(at) == near) & (near < margin)))
    if poor.size:
        b2, a2 = _lag_search(g, rows[poor], tmpl, margin, margin)
        better = b2 > best[poor]
        best[poor[better]] = b2[better]
        at[poor[better]] = a2[better]
    return best, at


def _lag_search(
    g: FloatArray, rows: IntArray, tmpl: FloatArray, margin: int, reach: int
) -> tuple[FloatArray, IntArray]:
    w = tmpl.shape[1]
    tn = float(np.linalg.norm(tmpl))
    best = np.full(rows.size, -np.inf)
    at = np.zeros(rows.size, dtype=np.int64)
    sub = g[:, rows]  # leads x rows x (w + 2 margin)
    for k in range(-reach, reach + 1):
        seg = sub[:, :, margin + k : margin + k + w]
        num = np.einsum("lbw,lw->b", seg, tmpl)
        den = np.sqrt(np.einsum("lbw,lbw->b", seg, seg)) * tn
        c = num / np.maximum(den, 1e-12)
        better = c > best
        best = np.where(better, c, best)
        at = np.where(better, k, at)
    return best, at


def align_fiducials(leads: FloatArray, mag: FloatArray, beats: IntArray, fs: float) -> IntArray:
    """Move every detected beat to the same point of its complex: its morphology template's reference point.

    The tallest sample of a beat is not a stable landmark: in a notched or
    bifid QRS with two lobes of similar size, noise decides which lobe wins,
    and the fiducial jumps by the notch interval (~90 ms) from beat to beat,
    which makes a regular rhythm look irregular.  Certified programs align
    every beat with a template instead.  Here each beat starts at the centre
    of its QRS energy (continuous in the lobe heights); beats are grouped into
    morphology classes around a most typical beat (median beat of its look-
    alikes), each beat of a class is aligned to the class template by
    multi-lead signed cross-correlation (amplitude-free, so neither lobe size
    nor a global gain or polarity change matters), and its fiducial is put on
    the template's reference point (:func:`_reference_point`: its apex in a
    narrow QRS, where a beat's own apex within 10 ms of it is kept as the
    more precise time, else its energy centre).  Beats that match no class of
    at least three (a single ectopic, an artefact) keep the apex of their own
    magnitude near their energy centre.

    ``leads`` is leads x samples of band-passed, weight-scaled signals (zero
    rows for leads that do not count), ``mag`` their combined magnitude.
    """
    if beats.size == 0:
        return np.asarray(beats, dtype=np.int64)
    c = _centroids(mag, beats, fs)
    fid = _apex_each(mag, c, int(FALLBACK_APEX_S * fs))
    if beats.size < MIN_CLASS_BEATS:
        return np.unique(fid)
    live = np.flatnonzero(np.abs(leads[:, c]).max(axis=1) > 0)
    if live.size == 0:
        return np.unique(fid)
    half, lag = int(TEMPLATE_HALF_S * fs), int(ALIGN_LAG_S * fs)
    offs = np.arange(-half - lag, half + lag + 1)
    g = leads[live][:, np.clip(c[:, None] + offs[None, :], 0, mag.size - 1)]  # leads x beats x (W + 2 lag)
    w = 2 * half + 1
    remaining = np.arange(beats.size)
    for _ in range(MAX_CLASSES):
        if remaining.size < MIN_CLASS_BEATS:
            break
        tmpl = _seed_template(g[:, remaining, lag : lag + w])
        corr, at = _best_lags(g, remaining, tmpl, lag)
        members = corr >= MEMBER_CORRELATION
        if members.sum() < MIN_CLASS_BEATS:
            break
        rows = remaining[members]
        aligned = np.stack([g[:, r, lag + k : lag + k + w] for r, k in zip(rows, at[members], strict=True)], axis=1)
        tmpl = np.median(aligned, axis=1)
        corr, at = _best_lags(g, remaining, tmpl, lag)
        # a best shift at the end of the searched range is no maximum: search on from there
        edge = np.flatnonzero(np.abs(at) == lag)
        if edge.size:
            moved = c[remaining[edge]] + at[edge]
            g2 = leads[live][:, np.clip(moved[:, None] + offs[None, :], 0, mag.size - 1)]
            c2, a2 = _best_lags(g2, np.arange(edge.size), tmpl, lag)
            better = c2 > corr[edge]
            corr[edge[better]] = c2[better]
            at[edge[better]] += a2[better]
        members = corr >= ALIGN_CORRELATION
        ref, on_apex = _reference_point(tmpl, fs)
        rows = remaining[members]
        pred = c[rows] - half + at[members] + ref
        # on a clear apex, a beat's own apex is the more precise time where it agrees with the template's
        own = on_apex & (np.abs(fid[rows] - pred) <= int(APEX_AGREE_S * fs))
        fid[rows] = np.where(own, fid[rows], pred)
        remaining = remaining[~members]
    return np.unique(np.clip(fid, 0, mag.size - 1)).astype(np.int64)


def _reference_point(tmpl: FloatArray, fs: float) -> tuple[int, bool]:
    """The template's reference sample, and whether it is the template's apex.

    The apex (peak multi-lead band-passed magnitude) of a narrow QRS when it
    lies near the middle of the template's QRS extent (where its energy
    exceeds a tenth of its peak), as with one dominant R or S; otherwise - a
    wide complex, or one whose steepest lobe is off-centre - the middle of
    the extent itself: the fiducial then sits mid-QRS, within the
    delineation's reach of the onset and the offset alike, and whichever
    lobe of a notched complex is tallest does not matter.  An extent that
    reaches an end of the window was cut off by it (a wide complex at a fast
    rate, the window seeded on one of its lobes, or its T wave as steep as
    the QRS): its middle and width are then the window's, not the complex's,
    and the energy centre of the run, which the QRS dominates, is taken.
    """
    e = uniform_filter1d((tmpl * tmpl).sum(axis=0), size=max(1, int(0.02 * fs)))
    above = np.flatnonzero(e >= EXTENT_FRACTION * e.max())
    if above.size == 0:
        return e.size // 2, False
    # the run around the energy peak, across dips shorter than EXTENT_GAP_S (between the lobes of one
    # complex) but not across an ST segment (a T wave in the window at fast rates is not part of the QRS)
    breaks = np.flatnonzero(np.diff(above) > EXTENT_GAP_S * fs)
    starts = np.concatenate(([above[0]], above[breaks + 1]))
    ends = np.concatenate((above[breaks], [above[-1]]))
    k = int(np.searchsorted(ends, int(np.argmax(e))))
    lo, hi = int(starts[k]), int(ends[k])
    if lo == 0 or hi == e.size - 1:
        run = e[lo : hi + 1]
        return lo + round(float((run * np.arange(run.size)).sum() / run.sum())), False
    mid = (lo + hi) // 2
    apex = int(np.argmax(np.abs(tmpl).sum(axis=0)))
    # one dominant R or S: no lobe outside the run as strong (two alike lobes are a notched or wide complex
    # whose dip split the run, and noise decides which lobe a beat's own apex is on)
    outside = np.concatenate((e[: max(0, lo - int(EXTENT_GAP_S * fs))], e[hi + int(EXTENT_GAP_S * fs) + 1 :]))
    dominant = outside.size == 0 or float(outside.max()) < DOMINANT_FRACTION * float(e.max())
    if hi - lo < WIDE_EXTENT_S * fs and abs(apex - mid) <= int(APEX_CENTRE_S * fs) and dominant:
        return apex, True
    return mid, False


def _apex_each(mag: FloatArray, around: IntArray, half: int) -> IntArray:
    """Peak of the combined band-passed magnitude within +-``half`` of each beat (the R/S apex region)."""
    offs = np.arange(-half, half + 1)
    idx = np.clip(around[:, None] + offs[None, :], 0, mag.size - 1)
    return np.asarray(idx[np.arange(around.size), np.argmax(mag[idx], axis=1)], dtype=np.int64)


def _seed_template(snips: FloatArray) -> FloatArray:
    """Median of the beats most like the most typical beat (leads x window), from at most 64 beats.

    A median over all beats would blend two morphologies in bigeminy; the
    medoid's look-alikes are one morphology.
    """
    n = snips.shape[1]
    pick = np.unique(np.linspace(0, n - 1, min(n, SEED_BEATS)).astype(np.int64))
    f = snips[:, pick].transpose(1, 0, 2).reshape(pick.size, -1)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    medoid = int(np.argmax(np.median(sim, axis=1)))
    alike = pick[sim[medoid] >= MEMBER_CORRELATION]
    return np.asarray(np.median(snips[:, alike], axis=1), dtype=np.float64)


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
        env, mag, leads = _envelope(arr, fs, mask)
        return _detect_chunk(env, mag, fs, leads)
    out: list[IntArray] = []
    start = 0
    while start < n:
        a, b = max(0, start - ov), min(n, start + chunk + ov)
        env, mag, leads = _envelope(arr[:, a:b], fs, mask)
        beats = _detect_chunk(env, mag, fs, leads) + a
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
    env, mag, leads = _envelopes(x, fs, mask)
    return [_detect_chunk(env[r], mag[r], fs, leads[r]) for r in range(n_rec)]
