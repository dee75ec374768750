"""Signal conditioning for diagnostic ECG analysis.

The AHA/ACCF/HRS recommendations (Kligfield et al. 2007) ask for a 0.05 Hz
low-frequency limit, *or* up to 0.67 Hz when the filter is zero-phase, and a
150 Hz high-frequency limit for adults.  Everything here is zero-phase
(``sosfiltfilt``) so that wave boundaries and the ST level are not shifted.

Order matters: NaNs are filled and pacing spikes blanked at the file's own
rate *before* resampling (a polyphase resampler rings on a 1-sample spike);
then the signal is resampled to the analysis rate, the band limits applied,
the powerline fundamental (50 or 60 Hz, detected from the spectrum) notched
out, and baseline wander removed with the 0.67 Hz zero-phase high-pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from core.errors import EcgError
from ecg.signal.filters import butter_sos, sosfiltfilt

FloatArray = npt.NDArray[np.float64]

#: Zero-phase high-pass corner that removes baseline wander (AHA: allowed up to 0.67 Hz when zero-phase).
BASELINE_CORNER_HZ = 0.67
#: A powerline peak must stand this many times above the neighbouring spectrum to be notched.
POWERLINE_PEAK_RATIO = 4.0
#: Pacing spikes: the slope step must exceed this many times the 99th percentile of |slope| ...
PACING_SLOPE_FACTOR = 4.0
#: ... and at least this many millivolts per millisecond, and the spike must be over within this time.  The floor
#: keeps noise on a flat lead out; it must stay below what a spike reaches in a lead scaled to ~1 mV peak to peak
#: at 500 Hz (a 1 mV spike over two samples: 0.25 mV/ms; 0.5 missed every spike of such recordings).
PACING_MIN_SLOPE_MV_PER_MS = 0.2
PACING_MAX_WIDTH_MS = 4.0
#: Below this rate a record is band-limited (MIT-BIH: 360 Hz, 0.1-100 Hz analog band): a < 2 ms spike is smeared
#: into the recorder's impulse response, a pulse of 10-20 ms no steeper than a QRS, so the slope test cannot see it.
PACING_BAND_LIMITED_FS = 450.0
#: There a spike is found by what stays its own: energy above the ECG's band (QRS, P and T have next to none
#: above 70 Hz, which also clears 50/60 Hz mains) ...
PACING_HP_HZ = 70.0
#: ... this many robust SDs above that band's background, in at least two leads at once (an artefact of the
#: pacemaker's pulse reaches every lead at the same instant; muscle noise in one lead does not) ...
PACING_HP_FACTOR = 6.0
#: ... at most one spike per this interval (an atrial and a ventricular spike are an AV delay, >= 100 ms, apart).
PACING_MIN_GAP_S = 0.08
#: Records longer than this are conditioned in chunks with this much context on each side.
CHUNK_S = 600.0
OVERLAP_S = 10.0


@dataclass(frozen=True, slots=True)
class Conditioned:
    """A conditioned multi-lead signal and what was done to it.

    ``signal`` is leads x samples in millivolts at ``fs`` Hz; ``pacing_spikes``
    are sample indices at ``fs`` where a pacing artefact was blanked.
    """

    signal: FloatArray
    fs: float
    source_fs: float
    powerline_hz: float | None
    highpass_hz: float
    lowpass_hz: float
    pacing_spikes: npt.NDArray[np.int64]
    nan_fraction: FloatArray  #: per lead, fraction of samples that were NaN in the file


def fill_nans(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Replace NaNs by linear interpolation per lead (zeros when a lead is all NaN).

    Returns the filled copy and the per-lead NaN fraction, which quality
    checks use to declare a lead unreadable rather than measure invented data.
    """
    out = np.array(x, dtype=np.float64, copy=True)
    bad = ~np.isfinite(out)
    frac = bad.mean(axis=1) if out.shape[1] else np.zeros(out.shape[0])
    if not bad.any():
        return out, frac
    idx = np.arange(out.shape[1])
    for lead in np.flatnonzero(bad.any(axis=1)):
        good = ~bad[lead]
        if not good.any():
            out[lead] = 0.0
        else:
            out[lead, bad[lead]] = np.interp(idx[bad[lead]], idx[good], out[lead, good])
    return out, frac


def detect_pacing_spikes(x: FloatArray, fs: float) -> npt.NDArray[np.int64]:
    """Find narrow, very steep artefacts (pacemaker spikes) across leads.

    A pacing spike is a step far steeper than any QRS slope that reverses
    within a few milliseconds.  The threshold is relative to the lead's own
    99th percentile slope, so the test holds for any amplitude, and absolute
    enough that noise on a flat lead never qualifies.  Needs ``fs`` >= 500 Hz
    (below that a spike is smeared into one sample and cannot be told apart).
    """
    return detect_pacing_spikes_many(np.asarray(x, dtype=np.float64)[None], fs)[0]


def detect_pacing_spikes_many(x: FloatArray, fs: float) -> list[npt.NDArray[np.int64]]:
    """:func:`detect_pacing_spikes` for records x leads x samples, one array of spikes per record.

    Vectorised over every lead of every record (one percentile call, one
    candidate test) so that a batch pays the Python overhead once.
    """
    n_rec, n_leads, n = x.shape
    empty = np.zeros(0, dtype=np.int64)
    if n < 8 or n_rec * n_leads == 0:
        return [empty] * n_rec
    if fs < PACING_BAND_LIMITED_FS:
        return [_band_limited_spikes(x[r], fs) for r in range(n_rec)]
    dt_ms = 1000.0 / fs
    d = np.diff(x.reshape(n_rec * n_leads, n), axis=1) / dt_ms  # mV/ms
    a = np.abs(d)
    m = a.shape[1]
    width = max(1, round(PACING_MAX_WIDTH_MS / dt_ms))
    thr = np.maximum(PACING_SLOPE_FACTOR * np.percentile(a, 99, axis=1), PACING_MIN_SLOPE_MV_PER_MS)
    over = a > thr[:, None]
    count = over.sum(axis=1)
    skip = (count == 0) | (count > 0.01 * m)
    if skip.all():
        return [empty] * n_rec
    over[skip] = False
    rows, cand = np.nonzero(over)
    keep = np.zeros(cand.size, dtype=bool)
    for k in range(1, width + 1):
        j = np.minimum(cand + k, m - 1)
        keep |= (np.sign(d[rows, j]) == -np.sign(d[rows, cand])) & (a[rows, j] > 0.5 * a[rows, cand])
    if not keep.any():
        return [empty] * n_rec
    rec = rows[keep] // n_leads
    key = np.unique(rec.astype(np.int64) * m + cand[keep])  # sorted by record, then sample
    rec_u, hit = key // m, key % m
    # one index per spike: merge hits of one record closer than 2 widths
    starts = np.concatenate(([True], (np.diff(hit) > 2 * width) | (np.diff(rec_u) != 0)))
    rec_s, hit_s = rec_u[starts], hit[starts].astype(np.int64)
    bounds = np.searchsorted(rec_s, np.arange(n_rec + 1))
    return [hit_s[bounds[r] : bounds[r + 1]] for r in range(n_rec)]


def _band_limited_spikes(x: FloatArray, fs: float) -> npt.NDArray[np.int64]:
    """Pacing spikes of a band-limited record (< PACING_BAND_LIMITED_FS): bursts above the ECG band in 2+ leads.

    Each lead's content above PACING_HP_HZ is scaled by its robust SD (the median absolute value: quantisation
    and mains leftovers, not the rare spikes), and a spike is a peak where the second-largest lead (the only one,
    for a single lead) exceeds PACING_HP_FACTOR.  Needs PACING_HP_HZ well below Nyquist: none below 200 Hz.
    """
    empty = np.zeros(0, dtype=np.int64)
    if fs < 200.0 or x.shape[1] < int(fs):
        return empty
    hp = sosfiltfilt(butter_sos(4, PACING_HP_HZ, "highpass", fs), x)
    sigma = 1.4826 * np.median(np.abs(hp), axis=1, keepdims=True)
    live = sigma[:, 0] > 1e-9
    if not live.any():
        return empty
    z = np.abs(hp[live]) / sigma[live]
    both = z[0] if z.shape[0] == 1 else np.sort(z, axis=0)[-2]
    peaks, _ = sps.find_peaks(both, height=PACING_HP_FACTOR, distance=max(1, int(PACING_MIN_GAP_S * fs)))
    return np.asarray(peaks, dtype=np.int64)


def blank_spikes(x: FloatArray, spikes: npt.NDArray[np.int64], fs: float) -> FloatArray:
    """Replace a short window around each spike by a straight line on every lead."""
    if spikes.size == 0:
        return x
    out = x.copy()
    half = max(2, round(0.006 * fs))
    n = x.shape[1]
    for s in spikes:
        a, b = max(0, int(s) - half // 2), min(n - 1, int(s) + half)
        t = np.linspace(0.0, 1.0, b - a + 1)
        out[:, a : b + 1] = out[:, [a]] + (out[:, [b]] - out[:, [a]]) * t
    return out


def resample(x: FloatArray, fs: float, target_fs: float) -> FloatArray:
    """Polyphase resampling (anti-aliased) to ``target_fs`` along the sample axis."""
    if abs(fs - target_fs) < 1e-9:
        return x
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return np.asarray(sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=1), dtype=np.float64)


def detect_powerline(x: FloatArray, fs: float) -> float | None:
    """Return 50.0 or 60.0 when that powerline peak stands out of the spectrum, else None.

    Welch spectrum summed over leads; the peak power in +-0.5 Hz of each
    candidate is compared with the 90th-percentile power 2-6 Hz to either side
    (the QRS's own harmonic lines sit there too, so a periodic ECG does not pass).  The
    stronger candidate wins when it passes ``POWERLINE_PEAK_RATIO``.
    """
    return detect_powerline_many(np.asarray(x, dtype=np.float64)[None], fs)[0]


def detect_powerline_many(x: FloatArray, fs: float) -> list[float | None]:
    """:func:`detect_powerline` for records x leads x samples: one Welch call for all of them."""
    n_rec = x.shape[0]
    if fs < 130 or x.shape[2] < int(fs):
        return [None] * n_rec
    nper = int(min(x.shape[2], 4 * fs))
    f, p = sps.welch(x, fs=fs, nperseg=nper, axis=-1)
    p = p.sum(axis=1)  # records x frequencies
    best: list[tuple[float, float] | None] = [None] * n_rec
    for f0 in (50.0, 60.0):
        if f0 >= fs / 2 - 2:
            continue
        in_peak = (f >= f0 - 0.5) & (f <= f0 + 0.5)
        in_side = ((f >= f0 - 6) & (f <= f0 - 2)) | ((f >= f0 + 2) & (f <= f0 + 6))
        if not in_peak.any() or not in_side.any():
            continue
        # against the upper side-band level: an ECG's own harmonic lines must not pass for mains
        ratios = p[:, in_peak].max(axis=1) / np.maximum(np.percentile(p[:, in_side], 90, axis=1), 1e-20)
        for r in range(n_rec):
            ratio = float(ratios[r])
            cur = best[r]
            if ratio >= POWERLINE_PEAK_RATIO and (cur is None or ratio > cur[1]):
                best[r] = (f0, ratio)
    return [b[0] if b else None for b in best]


def notch(x: FloatArray, fs: float, f0: float, *, quality: float = 30.0, harmonics: bool = True) -> FloatArray:
    """Zero-phase IIR notch at ``f0`` (and its harmonics below Nyquist when asked)."""
    out = x
    k = 1
    while k * f0 < fs / 2 - 1:
        b, a = sps.iirnotch(k * f0, quality, fs=fs)
        out = sps.filtfilt(b, a, out, axis=1, padlen=min(out.shape[1] - 1, 3 * max(len(a), len(b))))
        if not harmonics:
            break
        k += 1
    return np.asarray(out, dtype=np.float64)


def bandlimit(x: FloatArray, fs: float, highpass_hz: float, lowpass_hz: float) -> FloatArray:
    """Zero-phase Butterworth band limits (2nd-order sections, filtered forward and back)."""
    nyq = fs / 2
    pad = min(x.shape[1] - 1, int(fs * 2))
    # remove each lead's median first: a large DC offset otherwise rings through the pad
    out = x - np.median(x, axis=1, keepdims=True) if highpass_hz > 0 else x
    low_ok = lowpass_hz < nyq * 0.98
    if low_ok and highpass_hz > 0:
        sos = butter_sos(2, (highpass_hz, lowpass_hz), "bandpass", fs)
    elif low_ok:
        sos = butter_sos(2, lowpass_hz, "lowpass", fs)
    elif highpass_hz > 0:
        sos = butter_sos(2, highpass_hz, "highpass", fs)
    else:
        return np.asarray(out, dtype=np.float64)
    out = sosfiltfilt(sos, out, padlen=pad)
    return np.asarray(out, dtype=np.float64)


def _chunking(fs: float, target_fs: float, chunk_s: float) -> tuple[int, int]:
    """Chunk and overlap lengths in source samples; chunk edges map to whole samples at ``target_fs``."""
    step = Fraction(target_fs / fs).limit_denominator(1000).denominator
    return int(chunk_s * fs) // step * step, int(OVERLAP_S * fs) // step * step


def needs_chunking(n_samples: int, fs: float, target_fs: float = 500.0, chunk_s: float = CHUNK_S) -> bool:
    """Whether :func:`condition` conditions a record of this length in chunks (then not via :func:`condition_many`)."""
    chunk, overlap = _chunking(fs, target_fs, chunk_s)
    step = Fraction(target_fs / fs).limit_denominator(1000).denominator
    return n_samples > chunk + 2 * overlap and step * 1000 < chunk


def condition(
    x: npt.ArrayLike,
    fs: float,
    *,
    target_fs: float = 500.0,
    highpass_hz: float = 0.05,
    lowpass_hz: float = 150.0,
    powerline: Literal["auto", "50", "60", "off"] = "auto",
    remove_baseline: bool = True,
    source: str | None = None,
    chunk_s: float = CHUNK_S,
) -> Conditioned:
    """Condition a leads x samples millivolt array for measurement.

    Parameters
    ----------
    x, fs
        The raw signal and its sampling rate.
    target_fs
        Analysis rate; measurements are in this time base.
    highpass_hz, lowpass_hz
        Diagnostic band limits (AHA: 0.05-150 Hz).
    powerline
        "auto" detects 50/60 Hz from the spectrum; "off" leaves it.
    remove_baseline
        Apply the 0.67 Hz zero-phase high-pass (AHA-compatible for zero-phase filters).
    chunk_s
        Longer records are conditioned in chunks of this length (bounded memory).
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise EcgError(f"expected a leads x samples array, got shape {arr.shape}", source=source)
    if not np.isfinite(fs) or fs < 100:
        raise EcgError(f"sampling rate {fs!r} Hz is too low for diagnostic ECG (expected >= 100 Hz)", source=source)
    if arr.shape[1] < int(fs):
        raise EcgError(f"record is {arr.shape[1] / fs:.2f} s long; at least 1 s is needed", source=source)
    opts = {"target_fs": target_fs, "highpass_hz": highpass_hz, "lowpass_hz": lowpass_hz}
    chunk, overlap = _chunking(fs, target_fs, chunk_s)
    if needs_chunking(arr.shape[1], fs, target_fs, chunk_s):
        return _condition_chunked(arr, fs, chunk, overlap, powerline, remove_baseline, source, opts)
    return condition_many(arr[None], fs, powerline=powerline, remove_baseline=remove_baseline, **opts)[0]


def condition_many(
    x: FloatArray,
    fs: float,
    *,
    target_fs: float = 500.0,
    highpass_hz: float = 0.05,
    lowpass_hz: float = 150.0,
    powerline: Literal["auto", "50", "60", "off"] = "auto",
    remove_baseline: bool = True,
) -> list[Conditioned]:
    """Condition records x leads x samples of one rate and length together, one result per record.

    Every step filters each lead on its own, so stacking the records' leads as
    rows of one array gives each record exactly what :func:`condition` gives
    it, while each scipy call (resampling, Welch, band limits, notch) is made
    once for the batch instead of once per record.  No chunking: callers pass
    records shorter than ``CHUNK_S`` (see :func:`condition`); inputs are assumed
    validated.
    """
    n_rec, n_leads, n = x.shape
    filled, nan_frac = fill_nans(x.reshape(n_rec * n_leads, n))
    spikes_src = detect_pacing_spikes_many(filled.reshape(n_rec, n_leads, n), fs)
    for r, sp in enumerate(spikes_src):
        # a band-limited record's spike is a 10-20 ms pulse, wider than the blanking window: it is not blanked
        if sp.size and fs >= PACING_BAND_LIMITED_FS:
            rows = slice(r * n_leads, (r + 1) * n_leads)
            filled[rows] = blank_spikes(filled[rows], sp, fs)
    sig = resample(filled, fs, target_fs)
    m = sig.shape[1]
    pls: list[float | None]
    if powerline == "auto":
        pls = detect_powerline_many(sig.reshape(n_rec, n_leads, m), target_fs)
    elif powerline == "off":
        pls = [None] * n_rec
    else:
        pls = [float(powerline)] * n_rec
    hp = max(highpass_hz, BASELINE_CORNER_HZ) if remove_baseline else highpass_hz
    lp = min(lowpass_hz, 0.45 * fs)  # never pretend to have bandwidth the file did not record
    sig = bandlimit(sig, target_fs, hp, lp).reshape(n_rec, n_leads, m)
    for f0 in {pl for pl in pls if pl is not None}:
        recs = [r for r, pl in enumerate(pls) if pl == f0]
        sig[recs] = notch(sig[recs].reshape(len(recs) * n_leads, m), target_fs, f0).reshape(len(recs), n_leads, m)
    nan_frac = nan_frac.reshape(n_rec, n_leads)
    return [
        Conditioned(
            signal=sig[r],
            fs=float(target_fs),
            source_fs=float(fs),
            powerline_hz=pls[r],
            highpass_hz=hp,
            lowpass_hz=lp,
            pacing_spikes=np.unique(np.round(spikes_src[r] * (target_fs / fs)).astype(np.int64)),
            nan_fraction=np.asarray(nan_frac[r], dtype=np.float64),
        )
        for r in range(n_rec)
    ]


def _condition_chunked(
    arr: FloatArray,
    fs: float,
    chunk: int,
    overlap: int,
    powerline: Literal["auto", "50", "60", "off"],
    remove_baseline: bool,
    source: str | None,
    opts: dict[str, float],
) -> Conditioned:
    """Condition a long (Holter-length) record in overlapping chunks to bound memory.

    The zero-phase filters settle within a few seconds, so each chunk is
    conditioned with ``OVERLAP_S`` of context on both sides and only its
    central part is kept; the powerline frequency is decided once, on the
    first chunk, so that every chunk is filtered the same way.
    """
    n = arr.shape[1]
    target = opts["target_fs"]
    first = condition(arr[:, :chunk], fs, powerline=powerline, remove_baseline=remove_baseline, source=source, **opts)
    fixed: Literal["auto", "50", "60", "off"]
    fixed = "off" if first.powerline_hz is None else ("50" if first.powerline_hz == 50.0 else "60")
    ratio = target / fs
    pieces: list[FloatArray] = []
    spikes: list[npt.NDArray[np.int64]] = []
    start = 0
    while start < n:
        a, b = max(0, start - overlap), min(n, start + chunk + overlap)
        c = condition(arr[:, a:b], fs, powerline=fixed, remove_baseline=remove_baseline, source=source, **opts)
        ta = round((start - a) * ratio)
        tb = ta + round((min(start + chunk, n) - start) * ratio)
        pieces.append(c.signal[:, ta:tb])
        sp = c.pacing_spikes
        spikes.append(sp[(sp >= ta) & (sp < tb)] - ta + round(start * ratio))
        start += chunk
    _, nan_frac = fill_nans(arr)
    return Conditioned(
        signal=np.concatenate(pieces, axis=1),
        fs=float(target),
        source_fs=float(fs),
        powerline_hz=first.powerline_hz,
        highpass_hz=first.highpass_hz,
        lowpass_hz=first.lowpass_hz,
        pacing_spikes=np.concatenate(spikes).astype(np.int64),
        nan_fraction=np.asarray(nan_frac, dtype=np.float64),
    )
