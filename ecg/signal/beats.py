"""Beat classification: normal (N), supraventricular premature (S), ventricular (V), paced/unclassified (Q).

AAMI EC57 classes from two kinds of evidence a cardiologist uses:

* **morphology** — correlation of the beat's multi-lead QRS with the
  dominant (median) template, and its QRS width relative to the template's;
  a ventricular beat looks different and is usually wider;
* **timing** — prematurity, the RR before the beat against the local
  median RR; a supraventricular premature beat is early but looks normal.

Beats preceded by a pacing spike are paced (AAMI class Q).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WINDOW_S = (-0.10, 0.14)
#: Beats are compared with the template at the best shift within +-40 ms.
ALIGN_S = 0.04
PREMATURE_RATIO = 0.85
V_CORRELATION = 0.80
V_WIDTH_RATIO = 1.35
V_WIDTH_MIN_EXTRA_MS = 25.0
PACED_SPIKE_WINDOW_S = (-0.12, 0.02)
#: A beat's surroundings this many times noisier than the lead's typical beat are artefact.
ARTEFACT_RATIO = 4.0


@dataclass(frozen=True, slots=True)
class BeatFeatures:
    """Per-beat evidence behind the labels (arrays aligned with the beats)."""

    correlation: FloatArray
    width_ms: FloatArray
    template_width_ms: float
    rr_prev_ms: FloatArray
    rr_local_ms: FloatArray
    paced: npt.NDArray[np.bool_] | None = None  #: preceded by a pacing spike
    artefact: npt.NDArray[np.bool_] | None = None  #: surrounded by artefact (unclassifiable)
    #: QRS wider than the dominant beat's (V_WIDTH_RATIO and V_WIDTH_MIN_EXTRA_MS)
    wide: npt.NDArray[np.bool_] | None = None
    #: correlation with the preceding beat (best shift), for ventricular beats after a ventricular beat; else NaN
    corr_prev: FloatArray | None = None


def _snippets(x: FloatArray, fs: float, beats: IntArray, usable: npt.NDArray[np.bool_], ext: int = 0) -> FloatArray:
    a, b = int(WINDOW_S[0] * fs) - ext, int(WINDOW_S[1] * fs) + ext
    offs = np.arange(a, b)
    idx = np.clip(beats[:, None] + offs[None, :], 0, x.shape[1] - 1)
    leads = x[usable] if usable.any() else x
    snip = leads[:, idx]  # leads x beats x window
    snip = snip - snip[:, :, :1]  # baseline at window start
    return np.transpose(snip, (1, 0, 2))  # beats x leads x window


def _effective_width_ms(snip: FloatArray, fs: float) -> FloatArray:
    """Width of the slope energy: energy area over its peak (robust, amplitude-free)."""
    d = np.diff(snip, axis=2)
    e = (d * d).sum(axis=1)  # beats x window
    return np.asarray(e.sum(axis=1) / np.maximum(e.max(axis=1), 1e-12) * 1000.0 / fs, dtype=np.float64)


def classify_beats(
    x: FloatArray,
    fs: float,
    beats: IntArray,
    *,
    usable: npt.NDArray[np.bool_] | None = None,
    pacing_spikes: IntArray | None = None,
) -> tuple[npt.NDArray[np.str_], BeatFeatures]:
    """Label each beat N, S, V or Q and return the features behind the labels."""
    n = beats.size
    mask = np.ones(x.shape[0], dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    labels = np.full(n, "N", dtype="<U1")
    if n == 0:
        empty = np.zeros(0)
        return labels, BeatFeatures(empty, empty, float("nan"), empty, empty)
    ext = int(ALIGN_S * fs)
    wide_snip = _snippets(x, fs, beats, mask, ext)  # beats x leads x (W + 2 ext)
    w = wide_snip.shape[2] - 2 * ext
    snip = wide_snip[:, :, ext : ext + w]
    template = np.median(snip.reshape(n, -1), axis=0)

    def corr_with(t: FloatArray) -> tuple[FloatArray, IntArray]:
        """Best correlation over +-ALIGN_S shifts: the detector's fiducial may sit on R or on S."""
        tc = t - t.mean()
        tn = np.linalg.norm(tc)

        def at(k: int, rows: IntArray) -> FloatArray:
            f = wide_snip[rows, :, ext + k : ext + k + w].reshape(rows.size, -1)
            fc = f - f.mean(axis=1, keepdims=True)
            return np.asarray(fc @ tc / np.maximum(np.linalg.norm(fc, axis=1) * tn, 1e-12))

        best = at(0, np.arange(n))
        lag = np.zeros(n, dtype=np.int64)
        rows = np.flatnonzero(best < 0.95)  # only beats that do not already match need the shift search
        if rows.size:
            for k in range(-ext, ext + 1, max(1, ext // 10)):
                c = at(k, rows)
                better = c > best[rows]
                best[rows[better]] = c[better]
                lag[rows[better]] = k
        return np.asarray(best, dtype=np.float64), lag

    corr, lags = corr_with(template)
    core_beats = corr > 0.9
    if core_beats.sum() >= max(3, n // 4):
        aligned = np.stack([wide_snip[i, :, ext + lags[i] : ext + lags[i] + w] for i in np.flatnonzero(core_beats)])
        template = np.median(aligned.reshape(aligned.shape[0], -1), axis=0)
        corr, lags = corr_with(template)
    width = _effective_width_ms(snip, fs)
    twidth = float(np.median(width[corr > 0.9])) if (corr > 0.9).any() else float(np.median(width))

    rr = np.diff(beats) * 1000.0 / fs
    rr_prev = np.concatenate(([np.nan], rr))
    # local reference RR: median of up to 8 preceding intervals (the beat's own excluded)
    rr_local = np.full(n, np.nan)
    if rr.size:
        padded = np.concatenate((np.full(8, np.nan), rr))
        win = np.lib.stride_tricks.sliding_window_view(padded, 8)[: rr.size]  # window ending before each interval
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            loc = np.nanmedian(np.where(np.isfinite(win), win, np.nan), axis=1)
        loc = np.where(np.isfinite(loc), loc, np.median(rr))
        rr_local[1:] = loc
    premature = np.isfinite(rr_prev) & (rr_prev < PREMATURE_RATIO * rr_local)
    wide = width > np.maximum(V_WIDTH_RATIO * twidth, twidth + V_WIDTH_MIN_EXTRA_MS)
    # different AND wide; or very different AND early (a narrow fascicular PVC). Different alone is not enough:
    # alternans, lead switching and noise change correlation without making a beat ventricular.
    ventricular = ((corr < V_CORRELATION) & wide) | ((corr < 0.5) & premature)
    labels[premature] = "S"
    labels[ventricular] = "V"
    artefact = _artefact_beats(x[mask] if mask.any() else x, fs, beats)
    labels[artefact] = "Q"
    paced = np.zeros(n, dtype=bool)
    if pacing_spikes is not None and pacing_spikes.size:
        lo, hi = int(PACED_SPIKE_WINDOW_S[0] * fs), int(PACED_SPIKE_WINDOW_S[1] * fs)
        pos = np.searchsorted(pacing_spikes, beats + lo)
        has = (pos < pacing_spikes.size) & (pacing_spikes[np.minimum(pos, pacing_spikes.size - 1)] <= beats + hi)
        labels[has] = "Q"
        paced = has
    corr_prev = np.full(n, np.nan)
    pairs = np.flatnonzero((labels[1:] == "V") & (labels[:-1] == "V")) + 1
    for i in pairs:
        corr_prev[i] = _best_correlation(wide_snip[i - 1, :, ext : ext + w], wide_snip[i], ext)
    return labels, BeatFeatures(corr, width, twidth, rr_prev, rr_local, paced, artefact, wide, corr_prev)


def _best_correlation(ref: FloatArray, wide: FloatArray, ext: int) -> float:
    """Correlation of a beat (``wide``: leads x window + 2 ext) with ``ref`` (leads x window) at its best shift."""
    w = ref.shape[1]
    rc = (ref - ref.mean()).ravel()
    rn = float(np.linalg.norm(rc))
    best = -1.0
    for k in range(0, 2 * ext + 1, max(1, ext // 10)):
        f = wide[:, k : k + w].ravel()
        fc = f - f.mean()
        best = max(best, float(fc @ rc) / max(float(np.linalg.norm(fc)) * rn, 1e-12))
    return best


def _artefact_beats(x: FloatArray, fs: float, beats: IntArray) -> npt.NDArray[np.bool_]:
    """Beats whose surroundings carry artefact in at least half of the leads (AAMI Q: unclassifiable).

    The high-frequency activity (second difference) outside the QRS core, ±250 ms
    around the beat, is compared with the lead's median over all beats: motion
    and EMG bursts raise it many-fold, a normal or ectopic beat does not.
    """
    n = beats.size
    if n < 5:
        return np.zeros(n, dtype=bool)
    d2 = np.abs(np.diff(x, n=2, axis=1))
    half, core = int(0.25 * fs), int(0.08 * fs)
    offs = np.concatenate((np.arange(-half, -core), np.arange(core + int(0.04 * fs), half)))
    idx = np.clip(beats[:, None] + offs[None, :], 0, d2.shape[1] - 1)
    level = d2[:, idx].mean(axis=2)  # leads x beats
    ref = np.median(level, axis=1, keepdims=True)
    noisy = level > ARTEFACT_RATIO * np.maximum(ref, 1e-9)
    return np.asarray(noisy.mean(axis=0) >= 0.5, dtype=bool)


def rr_irregularity(beats: IntArray, fs: float) -> tuple[float, float]:
    """Irregularity of RR: (coefficient of variation, median |successive difference| / median RR).

    Atrial fibrillation is irregularly irregular: high successive differences
    without a repeating pattern; sinus arrhythmia varies slowly.
    """
    if beats.size < 4:
        return float("nan"), float("nan")
    rr = np.diff(beats) / fs
    med = float(np.median(rr))
    cv = float(np.std(rr) / max(float(np.mean(rr)), 1e-9))
    dd = float(np.median(np.abs(np.diff(rr)))) / max(med, 1e-9)
    return cv, dd


__all__ = ["BeatFeatures", "classify_beats", "rr_irregularity"]
