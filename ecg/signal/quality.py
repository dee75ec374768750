"""Per-lead signal quality: flat line / lead off, saturation (clipping), high noise.

A lead that fails is excluded from measurements and reported as a technical
statement; nothing is measured on it.  Checks run on the raw millivolt signal
(clipping is only visible there) and on the conditioned one (noise).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ecg.signal.filters import butter_sos, sosfiltfilt

FloatArray = npt.NDArray[np.float64]

#: A lead whose robust peak-to-peak stays below this (mV) carries no ECG (flat line / lead off).
FLAT_PTP_MV = 0.03
#: More than this fraction of samples pinned at the lead's extreme values is saturation.
CLIP_FRACTION = 0.02
#: A lead whose NaN fraction exceeds this is unreadable.
NAN_FRACTION = 0.2
#: High-frequency (> 40 Hz) noise level (robust sigma, mV) above this is "high noise" ...
NOISE_HF_RMS_MV = 0.05
#: ... when it is also above this fraction of the lead's low-frequency (ECG) peak-to-peak.
NOISE_HF_RATIO = 0.1


class LeadProblem(enum.Enum):
    """Why a lead was excluded."""

    FLAT = "flat line or lead off"
    SATURATED = "saturated or clipped"
    NOISY = "high noise"
    MISSING = "missing samples"


@dataclass(frozen=True, slots=True)
class LeadQuality:
    """The verdict on one lead with the figures behind it."""

    lead: str
    problem: LeadProblem | None
    ptp_mv: float
    clip_fraction: float
    noise_rms_mv: float
    nan_fraction: float

    @property
    def usable(self) -> bool:
        return self.problem is None


def _clip_fractions(x: FloatArray) -> FloatArray:
    """Per row: fraction of samples sitting on the row's own min or max with runs of equal values.

    An ADC that saturates pins many consecutive samples at exactly one
    value; a genuine R peak touches its maximum once.
    """
    rows, n = x.shape
    if n < 3:
        return np.zeros(rows)
    hi, lo = x.max(axis=1, keepdims=True), x.min(axis=1, keepdims=True)
    tol = 1e-6 * np.maximum(np.maximum(np.abs(hi), np.abs(lo)), 1.0)
    at_edge = (np.abs(x - hi) <= tol) | (np.abs(x - lo) <= tol)
    at_edge[:, 1:] &= np.abs(np.diff(x, axis=1)) <= tol
    at_edge[:, 0] = False
    frac = np.count_nonzero(at_edge, axis=1) / n
    return np.where((hi - lo)[:, 0] > 0, frac, 0.0)


def assess_leads(
    raw: FloatArray,
    conditioned: FloatArray,
    fs: float,
    lead_names: tuple[str, ...],
    nan_fraction: FloatArray,
) -> tuple[LeadQuality, ...]:
    """Judge every lead; ``raw`` at any rate, ``conditioned`` at ``fs``."""
    return assess_leads_many(
        np.asarray(raw, dtype=np.float64)[None],
        np.asarray(conditioned, dtype=np.float64)[None],
        fs,
        [lead_names],
        np.asarray(nan_fraction, dtype=np.float64)[None],
    )[0]


def assess_leads_many(
    raw: FloatArray,
    conditioned: FloatArray,
    fs: float,
    lead_names: Sequence[tuple[str, ...]],
    nan_fraction: FloatArray,
) -> list[tuple[LeadQuality, ...]]:
    """:func:`assess_leads` for records x leads x samples of one shape: each check is one call for all leads."""
    n_rec, n_leads, n = conditioned.shape
    c_all = conditioned.reshape(n_rec * n_leads, n)
    p_lo, p_hi = np.percentile(c_all, [0.5, 99.5], axis=1)
    ptps = p_hi - p_lo
    noises = np.zeros(n_rec * n_leads)
    lf_ptps = ptps.copy()
    if fs > 100:
        hf_sos = butter_sos(2, 40.0, "highpass", fs)
        hf = sosfiltfilt(hf_sos, c_all)
        # robust sigma of the HF part: the median ignores the short QRS bursts
        noises = 1.4826 * np.median(np.abs(hf), axis=1)
        l_lo, l_hi = np.percentile(c_all - hf, [0.5, 99.5], axis=1)
        lf_ptps = l_hi - l_lo
    clips = _clip_fractions(np.nan_to_num(raw.reshape(n_rec * n_leads, raw.shape[2])))
    nan_flat = nan_fraction.reshape(-1)
    out: list[tuple[LeadQuality, ...]] = []
    for r in range(n_rec):
        leads: list[LeadQuality] = []
        for j, name in enumerate(lead_names[r]):
            i = r * n_leads + j
            ptp, noise, lf_ptp, clip = float(ptps[i]), float(noises[i]), float(lf_ptps[i]), float(clips[i])
            problem: LeadProblem | None = None
            if nan_flat[i] > NAN_FRACTION:
                problem = LeadProblem.MISSING
            elif ptp < FLAT_PTP_MV:
                problem = LeadProblem.FLAT
            elif clip > CLIP_FRACTION:
                problem = LeadProblem.SATURATED
            elif noise > NOISE_HF_RMS_MV and noise > NOISE_HF_RATIO * lf_ptp:
                problem = LeadProblem.NOISY
            leads.append(LeadQuality(name, problem, ptp, clip, noise, float(nan_flat[i])))
        out.append(tuple(leads))
    return out
