"""Published signal-quality indices (SQIs) per lead, and the readability verdict they give a record.

A recording buried in motion or muscle noise still yields "beats" and an
irregular RR series, which reads as atrial fibrillation or, with wide noise
bursts, as ventricular tachycardia.  The indices below decide whether the
beats are the heart's before any rhythm is interpreted.  All are computed on
the conditioned lead (baseline and mains already removed):

- bSQI (Li, Clark & Clifford 2008): agreement of two independent QRS
  detectors within 150 ms, ``matched / (n1 + n2 - matched)``; here the record's
  beats against wfdb's XQRS run on the lead alone.
- kSQI (Li & Clifford 2012; Clifford et al. 2012): kurtosis of the lead; a
  clean ECG is spiky (kurtosis > 5), Gaussian muscle noise is near 3.
- pSQI (Clifford et al. 2012): power 5-15 Hz over 5-40 Hz (QRS energy share);
  basSQI (Li & Clifford 2012): 1 - power below 1 Hz over power below 40 Hz.
- RR physiology (Orphanidou et al. 2015): rates within 30-250/min, no gap
  longer than 3 s between beats.
- flat or saturated segments: 1 s windows with no ECG (lead off) or pinned at
  the lead's extremes.

Cut-offs are the published ones (Zhao & Zhang 2018 bands: bSQI optimal
> 0.9, unqualified < 0.6; kSQI > 5; pSQI 0.5-0.8 at rates < 130/min, 0.4-0.7
above; basSQI >= 0.95 optimal, < 0.9 unqualified), not values fitted to our
files.  See :func:`lead_readability` for how they are combined.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.signal as sps
import scipy.stats as spstats
from wfdb import processing as wfdb_processing

from ecg.signal.filters import butter_sos, sosfiltfilt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Two detections of the same beat lie within this (s) of each other (Li, Clark & Clifford 2008).
MATCH_WINDOW_S = 0.15
#: bSQI bands (Zhao & Zhang 2018, their qSQI): optimal above, unqualified below.
BSQI_OPTIMAL = 0.9
BSQI_UNQUALIFIED = 0.6
#: kSQI: a clean ECG has a kurtosis above this (Li & Clifford 2012).
KSQI_CLEAN = 5.0
#: basSQI bands (Zhao & Zhang 2018).
BASSQI_OPTIMAL = 0.95
BASSQI_UNQUALIFIED = 0.9
#: physiological RR (Orphanidou et al. 2015 use 40-180/min on 10 s windows; a diagnostic ECG may show 30-250/min)
MIN_RATE_PER_MIN = 30.0
MAX_RATE_PER_MIN = 250.0
#: no gap between beats longer than this in a readable record (Orphanidou et al. 2015)
MAX_GAP_S = 3.0
#: RR intervals faster than MAX_RATE_PER_MIN in more than this fraction: detections are not beats
FAST_RR_FRACTION = 0.05
#: a 1 s window whose peak to peak stays below this (mV) carries no ECG (lead off) ...
FLAT_SEGMENT_MV = 0.03
#: ... and a lead with this fraction of such (or saturated) windows is unreadable
FLAT_SEGMENT_FRACTION = 0.2


@dataclass(frozen=True, slots=True)
class LeadSqi:
    """The indices of one lead and the verdict they give."""

    lead: str
    bsqi: float
    ksqi: float
    psqi: float
    bassqi: float
    flat_fraction: float
    #: why the lead's beats cannot be trusted for rhythm (None: readable)
    unreadable: str | None


def pan_tompkins(x: FloatArray, fs: float) -> IntArray:
    """A second, independent QRS detector (after Pan & Tompkins 1985) for bSQI: band pass, slope, integration.

    Deliberately simple and unlike :func:`ecg.signal.qrs.detect_qrs`: 5-15 Hz
    band, squared derivative, 150 ms moving integration, adaptive signal/noise
    peak levels with threshold NPKI + 0.25 (SPKI - NPKI), a 200 ms refractory
    period and the T-wave slope test; each detection is placed at the
    band-passed peak.
    """
    n = x.size
    if n < int(2 * fs) or fs < 50:
        return np.zeros(0, dtype=np.int64)
    bp = sosfiltfilt(butter_sos(2, (5.0, min(15.0, 0.45 * fs)), "bandpass", fs), np.asarray(x, dtype=np.float64))
    d = np.gradient(bp) ** 2
    w = max(1, int(0.15 * fs))
    mwi = np.convolve(d, np.ones(w) / w, mode="same")
    cand, _ = sps.find_peaks(mwi, distance=max(1, int(0.2 * fs)))
    if cand.size == 0:
        return np.zeros(0, dtype=np.int64)
    init = mwi[: int(2 * fs)]
    spki, npki = 0.25 * float(init.max()), 0.5 * float(init.mean())
    out: list[int] = []
    half = int(0.1 * fs)
    slope = np.abs(np.gradient(bp))
    last_slope = 0.0
    for c in cand:
        v = float(mwi[c])
        lo, hi = max(0, c - half), min(n, c + half)
        s = float(slope[lo:hi].max())
        # T-wave discrimination: within 360 ms of a QRS, a wave of less than half its slope is a T wave
        t_wave = bool(out) and c - out[-1] < 0.36 * fs and s < 0.5 * last_slope
        if v > npki + 0.25 * (spki - npki) and not t_wave:
            spki = 0.125 * v + 0.875 * spki
            out.append(lo + int(np.argmax(np.abs(bp[lo:hi]))))
            last_slope = s
        else:
            npki = 0.125 * v + 0.875 * npki
    return np.unique(np.asarray(out, dtype=np.int64))


def second_detector(x: FloatArray, fs: float) -> IntArray:
    """QRS detections independent of ours: wfdb's XQRS (learned Pan-Tompkins-style thresholds, PhysioNet).

    Falls back to :func:`pan_tompkins` where XQRS cannot run (too short a
    signal, or it finds no beat to learn from).
    """
    if x.size >= int(3 * fs):
        try:
            with _quiet("wfdb"):
                det = wfdb_processing.XQRS(sig=np.asarray(x, dtype=np.float64), fs=fs)
                det.detect(verbose=False)
            found = np.asarray(det.qrs_inds, dtype=np.int64)
            if found.size >= 2:
                return found
        except (ValueError, IndexError, ZeroDivisionError):
            pass
    return pan_tompkins(x, fs)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence one library's logger for the duration (XQRS logs its learning phase)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def bsqi(a: IntArray, b: IntArray, fs: float) -> float:
    """Li, Clark & Clifford (2008): beats both detectors agree on (within 150 ms) over all beats either found."""
    if a.size == 0 and b.size == 0:
        return 0.0
    if a.size == 0 or b.size == 0:
        return 0.0
    tol = MATCH_WINDOW_S * fs
    idx = np.clip(np.searchsorted(b, a), 1, b.size - 1) if b.size > 1 else np.zeros(a.size, dtype=np.int64)
    near = np.minimum(np.abs(b[idx] - a), np.abs(b[np.maximum(idx - 1, 0)] - a))
    # one-to-one: a detection of one detector matches at most one of the other
    matched = min(int(np.count_nonzero(near <= tol)), int(a.size), int(b.size))
    return matched / float(a.size + b.size - matched)


def _band_power(f: FloatArray, p: FloatArray, lo: float, hi: float) -> float:
    sel = (f >= lo) & (f <= hi)
    return float(np.trapezoid(p[sel], f[sel])) if sel.sum() > 1 else 0.0


def _flat_fraction(x: FloatArray, fs: float) -> float:
    """Fraction of 1 s windows with no ECG (peak to peak below FLAT_SEGMENT_MV) or pinned at one value."""
    w = int(fs)
    k = x.size // w
    if k == 0:
        return 0.0
    seg = x[: k * w].reshape(k, w)
    flat = np.ptp(seg, axis=1) < FLAT_SEGMENT_MV
    return float(np.mean(flat))


def lead_sqi(x: FloatArray, fs: float, beats: IntArray, name: str) -> LeadSqi:
    """The indices of one conditioned lead against the record's beats, and the lead's readability."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    second = second_detector(x, fs)
    b = bsqi(np.sort(np.asarray(beats, dtype=np.int64)), second, fs)
    ksqi = float(spstats.kurtosis(x, fisher=False)) if np.ptp(x) > 0 else 0.0
    f, p = sps.welch(x, fs=fs, nperseg=min(x.size, int(4 * fs)))
    p540 = _band_power(f, p, 5.0, 40.0)
    psqi = _band_power(f, p, 5.0, 15.0) / p540 if p540 > 0 else 0.0
    p040 = _band_power(f, p, 0.0, 40.0)
    bas = 1.0 - _band_power(f, p, 0.0, 1.0) / p040 if p040 > 0 else 0.0
    flat = _flat_fraction(x, fs)
    return LeadSqi(name, b, ksqi, psqi, bas, flat, lead_readability(b, ksqi, bas, flat, beats, fs, x.size))


def _rr_problem(beats: IntArray, fs: float, n: int) -> str | None:
    """Orphanidou et al. (2015) feasibility: mean rate 30-250/min, no gap over 3 s, few RR faster than 250/min."""
    if beats.size < 2:
        return "fewer than 2 beats"
    rr: FloatArray = np.diff(np.sort(beats)).astype(np.float64) / fs
    rate = 60.0 / float(np.mean(rr))
    if not MIN_RATE_PER_MIN <= rate <= MAX_RATE_PER_MIN:
        return f"mean rate {rate:.0f}/min outside {MIN_RATE_PER_MIN:.0f}-{MAX_RATE_PER_MIN:.0f}/min"
    edges = np.array([beats.min() / fs, (n - beats.max()) / fs])
    gap = float(max(rr.max(), edges.max()))
    if gap > MAX_GAP_S:
        return f"{gap:.1f} s without a beat (> {MAX_GAP_S:.0f} s)"
    fast = float(np.mean(rr < 60.0 / MAX_RATE_PER_MIN))
    if fast > FAST_RR_FRACTION:
        return f"{fast:.0%} of RR intervals shorter than {60000.0 / MAX_RATE_PER_MIN:.0f} ms"
    return None


def _band_class(v: float, optimal: float, unqualified: float) -> int:
    """Zhao & Zhang (2018) grading: 2 optimal, 1 suspicious, 0 unqualified."""
    return 2 if v >= optimal else 0 if v < unqualified else 1


def lead_readability(
    b: float, ksqi: float, bassqi: float, flat: float, beats: IntArray, fs: float, n: int
) -> str | None:
    """Why a lead's beats are not the heart's (None: readable).

    Unreadable when a flat / lead-off part covers a fifth of it; when the two
    detectors disagree outright (bSQI < 0.6, "unqualified"); when they
    disagree (bSQI below optimal, < 0.9) and a second index is below optimal
    too (kSQI, basSQI, or an RR series no heart makes) -- stricter than Zhao &
    Zhang's fusion, because a rhythm alarm rests on every beat; or by Zhao &
    Zhang's (2018) simple heuristic fusion -- two indices unqualified, or one
    unqualified and two suspicious -- over bSQI, kSQI and basSQI.  pSQI, their
    third index, is reported but left out of the fusion: a wide QRS (bundle
    branch block, ventricular or paced beats) moves it out of its band on a
    clean lead; bSQI takes its place.
    """
    if flat >= FLAT_SEGMENT_FRACTION:
        return f"flat or lead-off in {flat:.0%} of the recording"
    crit = f"bSQI {b:.2f} (two QRS detectors agree on {min(b, 1.0):.0%} of beats)"
    if b < BSQI_UNQUALIFIED:
        return f"{crit} < {BSQI_UNQUALIFIED} (unqualified, Zhao & Zhang 2018)"
    rr = _rr_problem(beats, fs, n) if b < BSQI_OPTIMAL else None
    grades = {
        crit: _band_class(b, BSQI_OPTIMAL, BSQI_UNQUALIFIED),
        f"kSQI {ksqi:.1f} (clean > {KSQI_CLEAN:.0f})": 2 if ksqi > KSQI_CLEAN else 0,
        f"basSQI {bassqi:.2f} (optimal >= {BASSQI_OPTIMAL}, unqualified < {BASSQI_UNQUALIFIED})": _band_class(
            bassqi, BASSQI_OPTIMAL, BASSQI_UNQUALIFIED
        ),
        f"RR not physiological (Orphanidou et al. 2015): {rr}": 0 if rr else 2,
    }
    if b < BSQI_OPTIMAL and any(v < 2 for k, v in grades.items() if k != crit):
        # the beats are in doubt and a second index says noise: no rhythm can rest on them
        return f"{crit} < {BSQI_OPTIMAL} and " + "; ".join(k for k, v in grades.items() if k != crit and v < 2)
    unq = [k for k, v in grades.items() if v == 0]
    sus = [k for k, v in grades.items() if v == 1]
    if len(unq) >= 2 or (len(unq) == 1 and len(sus) == 2):
        return "Zhao & Zhang (2018) fusion unacceptable: " + "; ".join(
            [*(k + " unqualified" for k in unq), *(k + " suspicious" for k in sus)]
        )
    return None


def record_readability(sqis: tuple[LeadSqi, ...]) -> str | None:
    """A record is unreadable for rhythm when none of its leads is readable; the reason names the best lead."""
    if not sqis or any(s.unreadable is None for s in sqis):
        return None
    best = max(sqis, key=lambda s: s.bsqi)
    return f"unreadable (lead {best.lead}: {best.unreadable})"
