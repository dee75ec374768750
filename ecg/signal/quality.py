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
#: A good lead (one that may support a critical statement): HF noise at most this fraction of its ECG peak to peak,
GOOD_NOISE_RATIO = 0.05
#: ... a baseline moving less than this (mV, < 0.7 Hz; breathing moves it 0.1-0.5 mV) ...
GOOD_WANDER_MV = 1.5
#: ... and a peak to peak a human lead reaches (the tallest QRS in LVH stays under ~6 mV; a 5x gain error does not).
IMPLAUSIBLE_LEAD_PTP_MV = 8.0
#: A record whose median lead exceeds this peak to peak (mV; ~1 mV is typical) has a gain error in every lead.
IMPLAUSIBLE_MEDIAN_PTP_MV = 3.5


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
    #: baseline excursion below 0.7 Hz in the raw lead (robust peak to peak, mV)
    wander_mv: float = 0.0
    #: peak to peak of the ECG band (< 40 Hz) of the conditioned lead, mV
    signal_ptp_mv: float = 0.0

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def implausible(self) -> bool:
        """A peak to peak no human ECG lead reaches: a gain (calibration) error or an artefact."""
        return self.ptp_mv > IMPLAUSIBLE_LEAD_PTP_MV

    @property
    def limitations(self) -> tuple[str, ...]:
        """Why a usable lead is not good enough to support a critical statement (empty: good)."""
        out = []
        if self.signal_ptp_mv > 0 and self.noise_rms_mv > GOOD_NOISE_RATIO * self.signal_ptp_mv:
            out.append(f"noise {self.noise_rms_mv:.3f} mV > {GOOD_NOISE_RATIO:.0%} of the signal")
        if self.wander_mv > GOOD_WANDER_MV:
            out.append(f"baseline wander {self.wander_mv:.2f} mV > {GOOD_WANDER_MV} mV")
        if self.implausible:
            out.append(f"peak to peak {self.ptp_mv:.1f} mV > {IMPLAUSIBLE_LEAD_PTP_MV} mV (gain?)")
        if self.clip_fraction > 0.2 * CLIP_FRACTION:
            out.append(f"clipped {self.clip_fraction:.1%}")
        return tuple(out)

    @property
    def rhythm_readable(self) -> bool:
        """Usable, with noise and clipping low enough for beats and RR (baseline wander is filtered out)."""
        noisy = self.signal_ptp_mv > 0 and self.noise_rms_mv > GOOD_NOISE_RATIO * self.signal_ptp_mv
        return self.usable and not noisy and self.clip_fraction <= 0.2 * CLIP_FRACTION

    @property
    def good(self) -> bool:
        """Usable and without any limitation: may support a critical (STAT) statement."""
        return self.usable and not self.limitations


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


def _wander(raw: FloatArray, fs_raw: float) -> FloatArray:
    """Per row: robust peak to peak (1st-99th percentile) of the raw signal below 0.7 Hz (baseline wander), mV."""
    rows, n = raw.shape
    if n < int(3 * fs_raw) or fs_raw <= 2.0:
        return np.zeros(rows)
    step = max(1, int(fs_raw // 25))  # the baseline needs no more than 25 Hz
    low = sosfiltfilt(
        butter_sos(2, 0.7, "lowpass", fs_raw / step), raw[:, ::step] - raw[:, ::step].mean(axis=1)[:, None]
    )
    lo, hi = np.percentile(low, [1, 99], axis=1)
    return np.asarray(hi - lo, dtype=np.float64)


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
    raw_flat = np.nan_to_num(raw.reshape(n_rec * n_leads, raw.shape[2]))
    clips = _clip_fractions(raw_flat)
    wanders = _wander(raw_flat, fs * raw.shape[2] / n)
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
            leads.append(LeadQuality(name, problem, ptp, clip, noise, float(nan_flat[i]), float(wanders[i]), lf_ptp))
        out.append(tuple(leads))
    return out


#: A record whose beats sit in artefact this often (fraction of beats) is too poor for rhythm alarms.
POOR_ARTEFACT_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class RecordQuality:
    """The verdict on a whole record: which leads may support a critical statement, and what limits it."""

    good_leads: frozenset[str]
    #: why the record is too poor for any rhythm alarm (None: readable)
    poor: str | None
    #: why amplitudes cannot be trusted (None: plausible)
    implausible_amplitude: str | None


def record_quality(leads: tuple[LeadQuality, ...], artefact_fraction: float) -> RecordQuality:
    """Judge the record from its leads and from how many beats sit in artefact.

    A record is poor when no usable lead is free of noise and clipping, or
    when a quarter of its beats sit in artefact: the RR series and the beat
    shapes it yields are not the heart's.  Baseline wander alone (filtered
    out before detection) keeps a lead from supporting a critical statement
    but does not make the rhythm unreadable.  Amplitudes are
    implausible when the median lead or any lead exceeds what a human ECG
    reaches (a calibration error scales every lead alike).
    """
    usable = [q for q in leads if q.usable]
    good = frozenset(q.lead for q in usable if q.good)
    poor = None
    if usable and not any(q.rhythm_readable for q in usable):
        worst = max(usable, key=lambda q: len(q.limitations))
        poor = f"no lead of good quality (lead {worst.lead}: {'; '.join(worst.limitations)})"
    elif artefact_fraction >= POOR_ARTEFACT_FRACTION:
        poor = f"{artefact_fraction:.0%} of beats in artefact (>= {POOR_ARTEFACT_FRACTION:.0%})"
    implausible = None
    if usable:
        med = float(np.median([q.ptp_mv for q in usable]))
        big = [q for q in usable if q.implausible]
        if med > IMPLAUSIBLE_MEDIAN_PTP_MV:
            implausible = (
                f"median lead peak to peak {med:.1f} mV > {IMPLAUSIBLE_MEDIAN_PTP_MV} mV (about 1 mV is usual): "
                "check the recording gain"
            )
        elif big:
            implausible = (
                f"lead {big[0].lead} peak to peak {big[0].ptp_mv:.1f} mV > {IMPLAUSIBLE_LEAD_PTP_MV} mV: "
                "gain error or artefact"
            )
    return RecordQuality(good, poor, implausible)
