"""Per-lead signal quality: flat line / lead off, saturation (clipping), high noise.

A lead that fails is excluded from measurements and reported as a technical
statement; nothing is measured on it.  Checks run on the raw millivolt signal
(clipping is only visible there) and on the conditioned one (noise).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg.signal.filters import butter_sos

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


def _clip_fraction(x: FloatArray) -> float:
    """Fraction of samples sitting on the lead's own min or max with runs of equal values.

    An ADC that saturates pins many consecutive samples at exactly one
    value; a genuine R peak touches its maximum once.
    """
    if x.size < 3:
        return 0.0
    hi, lo = float(x.max()), float(x.min())
    if hi - lo <= 0:
        return 0.0
    tol = 1e-6 * max(abs(hi), abs(lo), 1.0)
    at_edge = (np.abs(x - hi) <= tol) | (np.abs(x - lo) <= tol)
    flat_run = np.concatenate(([False], np.abs(np.diff(x)) <= tol))
    return float(np.mean(at_edge & flat_run))


def assess_leads(
    raw: FloatArray,
    conditioned: FloatArray,
    fs: float,
    lead_names: tuple[str, ...],
    nan_fraction: FloatArray,
) -> tuple[LeadQuality, ...]:
    """Judge every lead; ``raw`` at any rate, ``conditioned`` at ``fs``."""
    out: list[LeadQuality] = []
    c_all = np.asarray(conditioned, dtype=np.float64)
    p_lo, p_hi = np.percentile(c_all, [0.5, 99.5], axis=1)
    ptps = p_hi - p_lo
    noises = np.zeros(len(lead_names))
    lf_ptps = ptps.copy()
    if fs > 100:
        hf_sos = butter_sos(2, 40.0, "highpass", fs)
        hf = sps.sosfiltfilt(hf_sos, c_all, axis=1)
        # robust sigma of the HF part: the median ignores the short QRS bursts
        noises = 1.4826 * np.median(np.abs(hf), axis=1)
        l_lo, l_hi = np.percentile(c_all - hf, [0.5, 99.5], axis=1)
        lf_ptps = l_hi - l_lo
    for i, name in enumerate(lead_names):
        r = np.nan_to_num(np.asarray(raw[i], dtype=np.float64))
        ptp, noise, lf_ptp = float(ptps[i]), float(noises[i]), float(lf_ptps[i])
        clip = _clip_fraction(r)
        problem: LeadProblem | None = None
        if nan_fraction[i] > NAN_FRACTION:
            problem = LeadProblem.MISSING
        elif ptp < FLAT_PTP_MV:
            problem = LeadProblem.FLAT
        elif clip > CLIP_FRACTION:
            problem = LeadProblem.SATURATED
        elif noise > NOISE_HF_RMS_MV and noise > NOISE_HF_RATIO * lf_ptp:
            problem = LeadProblem.NOISY
        out.append(LeadQuality(name, problem, ptp, clip, noise, float(nan_fraction[i])))
    return tuple(out)
