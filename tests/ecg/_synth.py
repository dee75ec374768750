"""Synthetic multi-lead ECG with exactly known wave boundaries (test helper).

Each wave is built from raised-cosine (Hann) lobes with finite support, so
P onset/offset, QRS onset/offset and T offset are exact sample positions —
unlike Gaussian waves, which never end.  Each lead sees every wave with its
own gain and sign (a random projection, as leads see the heart vector), so
amplitudes and polarities vary across leads like in a real 12-lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class SynthTruth:
    """Ground truth in samples at ``fs``: one entry per beat."""

    fs: float
    r_peaks: npt.NDArray[np.int64]
    p_on: npt.NDArray[np.int64]
    p_off: npt.NDArray[np.int64]
    qrs_on: npt.NDArray[np.int64]
    qrs_off: npt.NDArray[np.int64]
    t_off: npt.NDArray[np.int64]
    pr_ms: float
    p_ms: float
    qrs_ms: float
    qt_ms: float
    hr_bpm: float


def _lobe(n: int, t0: float, dur: float, amp: float, fs: float, skew: float = 0.5) -> FloatArray:
    """A raised-cosine lobe from t0 to t0+dur seconds; ``skew`` is where the peak sits (0..1)."""
    out = np.zeros(n)
    a, b = round(t0 * fs), round((t0 + dur) * fs)
    if b <= a:
        return out
    t = (np.arange(a, b) - a) / max(b - a, 1)
    pk = min(max(skew, 0.05), 0.95)
    phase = np.where(t < pk, 0.5 * t / pk, 0.5 + 0.5 * (t - pk) / (1 - pk))
    w = 0.5 - 0.5 * np.cos(2 * np.pi * phase)
    lo, hi = max(a, 0), min(b, n)
    if hi > lo:
        out[lo:hi] = amp * w[lo - a : hi - a]
    return out


def synth_ecg(
    rng: np.random.Generator,
    *,
    fs: float = 500.0,
    duration_s: float = 10.0,
    hr_bpm: float = 70.0,
    n_leads: int = 12,
    pr_ms: float = 160.0,
    p_ms: float = 100.0,
    qrs_ms: float = 90.0,
    qt_ms: float = 380.0,
    noise_mv: float = 0.01,
    wander_mv: float = 0.0,
    powerline_hz: float | None = None,
    powerline_mv: float = 0.05,
    scale: float = 1.0,
    rr_jitter: float = 0.02,
) -> tuple[FloatArray, SynthTruth]:
    """Return (leads x samples in mV, truth)."""
    n = int(duration_s * fs)
    rr = 60.0 / hr_bpm
    gains = rng.uniform(0.4, 1.2, size=(n_leads, 4)) * rng.choice([-1.0, 1.0], size=(n_leads, 4), p=[0.3, 0.7])
    gains[:, 1] = np.abs(gains[:, 1]) * rng.choice([-1.0, 1.0], size=n_leads, p=[0.25, 0.75])
    gains[:, 0] = np.abs(gains[:, 0]) * np.sign(gains[:, 1])  # small q before R, same lead sign
    sig = np.zeros((n_leads, n))
    t_qrs = 0.35
    r_list, pon, poff, qon, qoff, toff = [], [], [], [], [], []
    while t_qrs + qt_ms / 1000 + 0.05 < duration_s:
        q0 = t_qrs
        qd = qrs_ms / 1000
        p0 = q0 - pr_ms / 1000
        pd = p_ms / 1000
        t_end = q0 + qt_ms / 1000
        t_start = q0 + qd + 0.06
        for lead in range(n_leads):
            g = gains[lead]
            s = _lobe(n, p0, pd, 0.15 * g[3] / abs(g[3]) * abs(g[1]) if g[3] else 0.1, fs)
            s += _lobe(n, q0, 0.25 * qd, -0.15 * g[0], fs)
            s += _lobe(n, q0 + 0.2 * qd, 0.55 * qd, 1.2 * g[1], fs)
            s += _lobe(n, q0 + 0.65 * qd, 0.35 * qd, -0.4 * abs(g[0]) * np.sign(g[1]), fs)
            s += _lobe(n, t_start, t_end - t_start, 0.35 * g[2], fs, skew=0.62)
            sig[lead] += s
        r_list.append(round((q0 + 0.475 * qd) * fs))
        pon.append(round(p0 * fs))
        poff.append(round((p0 + pd) * fs))
        qon.append(round(q0 * fs))
        qoff.append(round((q0 + qd) * fs))
        toff.append(round(t_end * fs))
        t_qrs += rr * (1 + rr_jitter * rng.standard_normal())
    t = np.arange(n) / fs
    sig *= scale
    if wander_mv:
        sig += wander_mv * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6.28, size=(n_leads, 1)))
    if powerline_hz:
        sig += powerline_mv * np.sin(2 * np.pi * powerline_hz * t + rng.uniform(0, 6.28, size=(n_leads, 1)))
    if noise_mv:
        sig += noise_mv * rng.standard_normal(sig.shape)
    truth = SynthTruth(
        fs,
        np.asarray(r_list),
        np.asarray(pon),
        np.asarray(poff),
        np.asarray(qon),
        np.asarray(qoff),
        np.asarray(toff),
        pr_ms,
        p_ms,
        qrs_ms,
        qt_ms,
        hr_bpm,
    )
    return sig, truth


def synth_rhythm(
    rng: np.random.Generator,
    kinds: str,
    *,
    fs: float = 500.0,
    rr_s: float = 0.85,
    n_leads: int = 12,
    pr_ms: float = 160.0,
    qrs_ms: float = 90.0,
    qt_ms: float = 380.0,
    noise_mv: float = 0.01,
    p_waves: bool = True,
    rr_list: list[float] | None = None,
    extra_p_times: list[float] | None = None,
) -> tuple[FloatArray, npt.NDArray[np.int64], list[str]]:
    """A rhythm strip from a string of beat kinds: 'N' normal, 'S' premature normal-looking, 'V' premature wide.

    S beats come at 65% of the RR and V beats at 60% with a compensatory pause;
    V beats are 160 ms wide, of opposite polarity, without a P wave.  Returns
    (signal, R sample per beat, labels).  ``rr_list`` overrides the timing;
    ``extra_p_times`` adds non-conducted P waves (seconds).
    """
    gains = rng.uniform(0.5, 1.2, size=(n_leads, 3)) * rng.choice([-1.0, 1.0], size=(n_leads, 3), p=[0.25, 0.75])
    times: list[float] = []
    t = 0.5
    for i, k in enumerate(kinds):
        if rr_list is not None:
            t = 0.5 + float(np.sum(rr_list[:i]))
        elif i:
            prev = kinds[i - 1]
            step = rr_s * (0.65 if k == "S" else 0.6 if k == "V" else 1.0)
            if prev == "V":
                step = rr_s * 1.4
            elif prev == "S":
                step = rr_s * 1.1
            t += step
        times.append(t)
    dur = times[-1] + 1.0
    n = int(dur * fs)
    sig = np.zeros((n_leads, n))
    r_idx = []
    for t0, k in zip(times, kinds, strict=True):
        wide = k == "V"
        qd = (160.0 if wide else qrs_ms) / 1000
        pol = -1.0 if wide else 1.0
        for lead in range(n_leads):
            g = gains[lead]
            s = np.zeros(n)
            if p_waves and not wide:
                s += _lobe(n, t0 - pr_ms / 1000, 0.1, 0.12 * abs(g[0]), fs)
            s += _lobe(n, t0, 0.6 * qd, pol * 1.2 * g[1], fs)
            s += _lobe(n, t0 + 0.55 * qd, 0.45 * qd, -pol * 0.4 * g[1], fs)
            s += _lobe(
                n, t0 + qd + 0.06, qt_ms / 1000 - qd - 0.06, (-1.5 if wide else 0.35) * g[2] * pol, fs, skew=0.62
            )
            sig[lead] += s
        r_idx.append(round((t0 + 0.3 * qd) * fs))
    for tp in extra_p_times or []:
        for lead in range(n_leads):
            sig[lead] += _lobe(n, tp, 0.1, 0.12 * abs(gains[lead, 0]), fs)
    sig += noise_mv * rng.standard_normal(sig.shape)
    return sig, np.asarray(r_idx, dtype=np.int64), list(kinds)
