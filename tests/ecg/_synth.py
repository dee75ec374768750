"""Synthetic multi-lead ECG with exactly known wave boundaries (test helper).

Each wave is built from raised-cosine (Hann) lobes with finite support, so
P onset/offset, QRS onset/offset and T offset are exact sample positions —
unlike Gaussian waves, which never end.  Each lead sees every wave with its
own gain and sign (a random projection, as leads see the heart vector), so
amplitudes and polarities vary across leads like in a real 12-lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

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


# ----------------------------------------------------------------- rhythms from a heart-vector model
#
# The rhythm generators above give each lead a random gain per wave.  Rhythm rules that compare an
# atrial wave with the T wave need a harder, more physiological test: here every wave is a heart
# vector (x: left, y: inferior, z: anterior) projected on the lead vectors, so P, T and U waves have
# the correlated lead patterns of a real ECG (P and T both upright in II, for example), the limb leads
# obey Einthoven's law, and flutter waves are one continuous sawtooth over the whole record.

#: Lead vectors; limb leads from I = (1, 0) and II = (cos 60, sin 60) by Einthoven and Goldberger.
LEAD_VECTORS: dict[str, tuple[float, float, float]] = {
    "I": (1.0, 0.0, 0.0),
    "II": (0.5, 0.866, 0.0),
    "III": (-0.5, 0.866, 0.0),
    "aVR": (-0.75, -0.433, 0.0),
    "aVL": (0.75, -0.433, 0.0),
    "aVF": (0.0, 0.866, 0.0),
    "V1": (-0.35, 0.15, 1.1),
    "V2": (-0.05, 0.2, 1.4),
    "V3": (0.35, 0.25, 1.3),
    "V4": (0.8, 0.3, 1.0),
    "V5": (1.1, 0.3, 0.6),
    "V6": (1.1, 0.3, 0.25),
    "MLII": (0.5, 0.866, 0.0),
}


def _unit(v: tuple[float, float, float] | FloatArray) -> FloatArray:
    a = np.asarray(v, dtype=np.float64)
    return np.asarray(a / max(float(np.linalg.norm(a)), 1e-9))


def _frontal(deg: float, z: float) -> FloatArray:
    r = np.deg2rad(deg)
    return _unit((np.cos(r), np.sin(r), z))


@dataclass(frozen=True)
class CardiacTruth:
    """What was generated: atrial wave onsets and QRS onsets (seconds), the R sample of each QRS."""

    fs: float
    atrial_s: tuple[float, ...]
    qrs_s: tuple[float, ...]
    r_peaks: npt.NDArray[np.int64]
    atrial_kind: str
    wide: bool


def synth_cardiac(
    rng: np.random.Generator,
    *,
    qrs_s: Sequence[float] | FloatArray,
    atrial_s: Sequence[float] | FloatArray = (),
    atrial_kind: str = "p",
    duration_s: float = 10.0,
    fs: float = 500.0,
    leads: tuple[str, ...] = LEADS_12,
    wide: bool = False,
    qrs_ms: float | None = None,
    qt_ms: float | None = None,
    p_ms: float = 100.0,
    p_mv: float = 0.15,
    t_mv: float = 0.4,
    u_mv: float = 0.0,
    flutter_mv: float = 0.2,
    noise_mv: float = 0.01,
    wander_mv: float = 0.0,
) -> tuple[FloatArray, CardiacTruth]:
    """ECG from atrial and ventricular event times with heart-vector waves.

    ``atrial_kind`` 'p': a P wave (right then left atrial lobe, biphasic in V1) starts at each
    ``atrial_s``; 'flutter': a continuous sawtooth whose cycles start at ``atrial_s`` (typical
    counter-clockwise flutter: negative in II, III, aVF, positive in V1); 'none': no atrial wave.
    Each QRS starts at ``qrs_s``; narrow beats have a septal, main and terminal vector, ``wide``
    beats (ventricular origin) a 160 ms QRS and a discordant T.  ``qt_ms`` defaults to a QTc
    (Fridericia) of 400 ms at the median RR; the U wave follows the T wave's direction.  Wave axes
    are drawn per record within normal limits.
    """
    n = int(duration_s * fs)
    qrs_t = np.asarray(qrs_s, dtype=np.float64)
    rr = float(np.median(np.diff(qrs_t))) if qrs_t.size > 1 else 1.0
    qd = (qrs_ms or (160.0 if wide else 80.0)) / 1000.0
    qt = (qt_ms or 400.0 * rr ** (1.0 / 3.0) + (60.0 if wide else 0.0)) / 1000.0
    lv = np.array([LEAD_VECTORS[name] for name in leads])  # L x 3
    a_qrs = rng.uniform(10.0, 70.0)
    p1 = _frontal(rng.uniform(60.0, 85.0), 0.6)  # right atrium: inferior, anterior
    p2 = _frontal(rng.uniform(20.0, 50.0), -0.5)  # left atrium: leftward, posterior
    if wide:
        # a broad, notched complex (slow cell-to-cell spread), then a terminal deflection
        main = _frontal(rng.uniform(-40.0, 100.0), rng.choice([-1.2, 1.0]))
        notch = _unit(main + 0.5 * _frontal(rng.uniform(0.0, 360.0), 0.0))
        lobes = [(0.0, 0.5, 1.2, main), (0.35, 0.45, 1.0, notch), (0.72, 0.28, -0.6, main)]
        t_dir, t_amp = -main, 0.6
    else:
        lobes = [
            (0.0, 0.3, 0.2, _unit((-0.4, 0.1, 0.8))),
            (0.15, 0.55, 1.3, _frontal(a_qrs, -0.35)),
            (0.6, 0.4, 0.35, _unit((-0.5, -0.6, -0.5))),
        ]
        t_dir, t_amp = _frontal(a_qrs + rng.uniform(-20.0, 20.0), 0.55), t_mv
    sig = np.zeros((len(leads), n))

    def add(vec: FloatArray, wave: FloatArray) -> None:
        sig[:] += (lv @ vec)[:, None] * wave[None, :]

    r_idx = []
    for q0 in qrs_t:
        for start, dur, amp, vec in lobes:
            add(vec, _lobe(n, q0 + start * qd, dur * qd, amp, fs))
        t0 = q0 + qd + 0.06
        add(t_dir, _lobe(n, t0, q0 + qt - t0, t_amp, fs, skew=0.62))
        if u_mv:
            add(t_dir, _lobe(n, q0 + qt + 0.03, 0.16, u_mv, fs))
        r_idx.append(round((q0 + (0.3 if wide else 0.425) * qd) * fs))
    a_t = np.asarray(atrial_s, dtype=np.float64)
    if atrial_kind == "p":
        for a0 in a_t:
            add(p1, _lobe(n, a0, 0.6 * p_ms / 1000, p_mv, fs))
            add(p2, _lobe(n, a0 + 0.35 * p_ms / 1000, 0.65 * p_ms / 1000, p_mv, fs))
    elif atrial_kind == "flutter" and a_t.size > 1:
        # phase 0..1 within each cycle: a quick upstroke (first 30 %) and a slow descent, smoothed
        t = np.arange(n) / fs
        k = np.clip(np.searchsorted(a_t, t, side="right") - 1, 0, a_t.size - 2)
        cl = np.diff(a_t)[k]
        ph = np.clip((t - a_t[k]) / cl, 0.0, 1.0)
        saw = np.where(ph < 0.3, -1.0 + 2.0 * ph / 0.3, 1.0 - 2.0 * (ph - 0.3) / 0.7)
        saw[(t < a_t[0]) | (t > a_t[-1])] = 0.0
        sos = sps.butter(2, 30.0, btype="lowpass", fs=fs, output="sos")
        add(_unit((0.15, -1.0, 0.55)), flutter_mv * sps.sosfiltfilt(sos, saw))
    tt = np.arange(n) / fs
    if wander_mv:
        sig += wander_mv * np.sin(2 * np.pi * 0.25 * tt + rng.uniform(0, 6.28, size=(len(leads), 1)))
    if noise_mv:
        sig += noise_mv * rng.standard_normal(sig.shape)
    truth = CardiacTruth(fs, tuple(a_t.tolist()), tuple(qrs_t.tolist()), np.asarray(r_idx, dtype=np.int64),
                         atrial_kind, wide)  # fmt: skip
    return sig, truth


def _regular(rng: np.random.Generator, start: float, stop: float, period: float, jitter: float) -> FloatArray:
    """Event times from ``start`` to ``stop`` every ``period`` s with a small relative jitter (not cumulative drift)."""
    t = np.arange(start, stop, period)
    return np.asarray(t + jitter * period * rng.standard_normal(t.size))


def sinus(
    rng: np.random.Generator, hr_bpm: float, *, pr_ms: float = 160.0, duration_s: float = 10.0, **kw: object
) -> tuple[FloatArray, CardiacTruth]:
    """Sinus rhythm: a P wave, then a QRS after a constant PR, at ``hr_bpm``."""
    p = _regular(rng, 0.3, duration_s - 0.9, 60.0 / hr_bpm, 0.01)
    return synth_cardiac(rng, atrial_s=p, qrs_s=p + pr_ms / 1000.0, duration_s=duration_s, **kw)  # type: ignore[arg-type]


def av_block_2to1(
    rng: np.random.Generator, atrial_bpm: float, *, pr_ms: float = 180.0, duration_s: float = 10.0, **kw: object
) -> tuple[FloatArray, CardiacTruth]:
    """Sinus P waves at ``atrial_bpm``; every other one conducted after a constant PR (2:1 AV block)."""
    p = _regular(rng, 0.3, duration_s - 0.9, 60.0 / atrial_bpm, 0.005)
    q = p[1::2] + pr_ms / 1000.0
    return synth_cardiac(rng, atrial_s=p, qrs_s=q, duration_s=duration_s, **kw)  # type: ignore[arg-type]


def flutter_2to1(
    rng: np.random.Generator,
    atrial_bpm: float = 300.0,
    *,
    fr_ms: float | None = None,
    duration_s: float = 10.0,
    **kw: object,
) -> tuple[FloatArray, CardiacTruth]:
    """Atrial flutter at ``atrial_bpm``, every other wave conducted after ``fr_ms`` (random when None)."""
    cl = 60.0 / atrial_bpm
    a = np.arange(0.05 + rng.uniform(0, cl), duration_s + cl, cl)
    fr = (fr_ms if fr_ms is not None else rng.uniform(180.0, 300.0)) / 1000.0
    q = a[1::2] + fr
    q = q[q < duration_s - 0.6]
    return synth_cardiac(rng, atrial_s=a, atrial_kind="flutter", qrs_s=q, duration_s=duration_s, **kw)  # type: ignore[arg-type]


def escape(
    rng: np.random.Generator, hr_bpm: float, *, duration_s: float = 10.0, wide: bool = False, **kw: object
) -> tuple[FloatArray, CardiacTruth]:
    """A regular rhythm without atrial activity: junctional (narrow) or idioventricular (``wide``)."""
    q = _regular(rng, 0.4, duration_s - 0.9, 60.0 / hr_bpm, 0.005)
    return synth_cardiac(rng, qrs_s=q, atrial_kind="none", duration_s=duration_s, wide=wide, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LateTTruth:
    """A heart-vector sinus record whose T loop opens late: ``t_off_s`` per beat is the latest T end in any lead."""

    cardiac: CardiacTruth
    qrs_on_s: tuple[float, ...]
    t_off_s: tuple[float, ...]
    main_t_off_s: tuple[float, ...]


def sinus_late_t(
    rng: np.random.Generator,
    hr_bpm: float,
    *,
    late_ms: float = 40.0,
    late_mv: float = 0.08,
    late_dur_ms: float = 140.0,
    duration_s: float = 10.0,
    fs: float = 500.0,
    noise_mv: float = 0.01,
    t_mv: float = 0.4,
    **kw: object,
) -> tuple[FloatArray, LateTTruth]:
    """Sinus rhythm whose repolarisation ends in different leads at different times (a broad, late T component).

    A real T loop is not a line: repolarisation of the last regions ends while the main T vector has
    already returned, so leads nearly perpendicular to the main T axis (aVF when the T axis is near 0
    deg, for example) show a small, broad T that ends ``late_ms`` after the others — the lead whose
    end cardiologists take as the global T end.  Here a second T lobe of ``late_mv`` (``late_dur_ms``
    long, ending ``late_ms`` after the main T) points perpendicular to the main T axis in the frontal
    plane.  Truth: the global T end is the late lobe's end (it is in every lead that projects on it).
    """
    p = _regular(rng, 0.3, duration_s - 0.9, 60.0 / hr_bpm, 0.01)
    q = p + 0.16
    rr = 60.0 / hr_bpm
    qt = 400.0 * rr ** (1.0 / 3.0) / 1000.0
    sig, truth = synth_cardiac(
        rng,
        atrial_s=p,
        qrs_s=q,
        duration_s=duration_s,
        fs=fs,
        noise_mv=noise_mv,
        t_mv=t_mv,
        qt_ms=qt * 1000.0,
        **kw,  # type: ignore[arg-type]
    )
    # main T axis: synth_cardiac draws it near the QRS axis; estimate it from the generated leads instead
    # of re-deriving the draw: the late lobe points perpendicular to lead I's and aVF's T-weighted sum
    n = sig.shape[1]
    lv = np.array([LEAD_VECTORS[name] for name in LEADS_12])
    tw = [round((q0 + qt - 0.08) * fs) for q0 in q if round((q0 + qt) * fs) < n]
    t_amp = sig[:, tw].mean(axis=1)  # per-lead T amplitude near its peak
    axis = np.linalg.lstsq(lv, t_amp, rcond=None)[0]
    perp = _unit((-axis[1], axis[0], 0.3 * rng.standard_normal()))
    ends = []
    for q0 in q:
        end = q0 + qt + late_ms / 1000.0
        sig += (lv @ perp)[:, None] * _lobe(n, end - late_dur_ms / 1000.0, late_dur_ms / 1000.0, late_mv, fs, 0.5)[
            None, :
        ]
        ends.append(end)
    return sig, LateTTruth(truth, tuple(q.tolist()), tuple(ends), tuple((q + qt).tolist()))


def fibrillation(
    rng: np.random.Generator,
    hr_bpm: float,
    *,
    f_mv: float = 0.05,
    rr_spread: float = 0.25,
    duration_s: float = 10.0,
    fs: float = 500.0,
    **kw: object,
) -> tuple[FloatArray, CardiacTruth, float]:
    """Atrial fibrillation: irregular narrow QRS (RR uniformly within +-``rr_spread``), no P waves, f-waves.

    The f-waves are band-limited noise (4-9 Hz, 240-540/min) from one atrial source, scaled per lead
    (0.3-1 x ``f_mv`` RMS); they are not locked to the QRS, so a median beat keeps only a residue of
    them - the residue that can distort one lead's T tail.  Returns (signal, truth, QT ms of every beat).
    """
    rr = 60.0 / hr_bpm
    q = [0.4]
    while q[-1] < duration_s - 0.8:
        q.append(q[-1] + rr * rng.uniform(1.0 - rr_spread, 1.0 + rr_spread))
    qt_ms = 400.0 * rr ** (1.0 / 3.0)
    sig, truth = synth_cardiac(
        rng,
        qrs_s=np.asarray(q[:-1]),
        atrial_kind="none",
        qt_ms=qt_ms,
        duration_s=duration_s,
        fs=fs,
        **kw,  # type: ignore[arg-type]
    )
    sos = sps.butter(2, (4.0, 9.0), btype="bandpass", fs=fs, output="sos")
    f = sps.sosfiltfilt(sos, rng.standard_normal(sig.shape[1]))
    sig += f_mv * (f / max(float(f.std()), 1e-12))[None, :] * rng.uniform(0.3, 1.0, (sig.shape[0], 1))
    return sig, truth, qt_ms


def variable_lobes(
    rng: np.random.Generator,
    hr_bpm: float,
    *,
    n_beats: int = 12,
    wide: bool = True,
    lobe_spread: float = 0.3,
    notch_ratio: float = 0.85,
    gain: float = 1.0,
    fs: float = 500.0,
    leads: tuple[str, ...] = LEADS_12,
    noise_mv: float = 0.01,
    rr_jitter: float = 0.005,
) -> tuple[FloatArray, CardiacTruth]:
    """A regular P-less rhythm whose QRS lobes change height from beat to beat (the notched-QRS fiducial test).

    Each beat is a heart-vector QRS like :func:`synth_cardiac`'s: ``wide`` a 160 ms complex with
    a main lobe, a notch lobe (``notch_ratio`` of the main lobe's height, on another axis) and a
    terminal deflection; otherwise a narrow 80 ms septal-main-terminal complex.  Every lobe's
    height is multiplied per beat by U(1 - ``lobe_spread``, 1 + ``lobe_spread``), so with a notch
    ratio near 1 the tallest lobe changes from beat to beat, as in real notched complexes under
    noise and respiration.  ``gain`` scales (and with a negative sign inverts) every lead.  The
    record holds exactly ``n_beats`` beats, the first 0.4 s from its start, the last 0.7 s (or
    its QT + 0.1 s) from its end: no pause at either end.  Truth: QRS onsets in ``qrs_s``.
    """
    rr = 60.0 / hr_bpm
    q = 0.4 + rr * np.arange(n_beats) + rr_jitter * rr * rng.standard_normal(n_beats)
    q[0] = 0.4
    qd = (160.0 if wide else 80.0) / 1000.0
    qt = min((400.0 * rr ** (1.0 / 3.0) + (60.0 if wide else 0.0)) / 1000.0, rr - 0.02)  # T ends before the next QRS
    duration_s = float(q[-1]) + max(0.7, qt + 0.1)
    n = int(duration_s * fs)
    lv = np.array([LEAD_VECTORS[name] for name in leads])
    if wide:
        main = _frontal(rng.uniform(-40.0, 100.0), float(rng.choice([-1.2, 1.0])))
        notch = _unit(main + 0.5 * _frontal(rng.uniform(0.0, 360.0), 0.0))
        lobes = [(0.0, 0.5, 1.2, main), (0.35, 0.45, 1.2 * notch_ratio, notch), (0.72, 0.28, -0.6, main)]
        t_dir, t_amp = -main, 0.6
    else:
        a_qrs = rng.uniform(10.0, 70.0)
        lobes = [
            (0.0, 0.3, 0.2, _unit((-0.4, 0.1, 0.8))),
            (0.15, 0.55, 1.3, _frontal(a_qrs, -0.35)),
            (0.6, 0.4, 0.35, _unit((-0.5, -0.6, -0.5))),
        ]
        t_dir, t_amp = _frontal(a_qrs + rng.uniform(-20.0, 20.0), 0.55), 0.4
    sig = np.zeros((len(leads), n))
    r_idx = []
    for q0 in q:
        for start, dur, amp, vec in lobes:
            k = rng.uniform(1.0 - lobe_spread, 1.0 + lobe_spread)
            sig += (lv @ vec)[:, None] * _lobe(n, q0 + start * qd, dur * qd, k * amp, fs)[None, :]
        t0 = q0 + qd + 0.06
        sig += (lv @ t_dir)[:, None] * _lobe(n, t0, q0 + qt - t0, t_amp, fs, skew=0.62)[None, :]
        r_idx.append(round((q0 + (0.3 if wide else 0.425) * qd) * fs))
    sig = gain * sig
    if noise_mv:
        sig += noise_mv * rng.standard_normal(sig.shape)
    truth = CardiacTruth(fs, (), tuple(q.tolist()), np.asarray(r_idx, dtype=np.int64), "none", wide)
    return sig, truth
