"""Rhythm and AV-conduction statements (need only the beats and atrial activity: any lead set)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from core.codes import LOINC, MMDX, SCT
from core.records import Finding, Measurement
from ecg.rules import thresholds as th
from ecg.rules.base import Rule, RuleInput, finding
from ecg.signal.atrial import AtrialActivity, HalfRRWave


def _vt_runs(ri: RuleInput) -> list[tuple[int, int, float]]:
    """(first beat, length, rate bpm) of runs of >= 3 consecutive ventricular beats faster than 100/min.

    Every beat of a run must be wide (QRS wider than the dominant beat's) and look like the beat before it
    (consistent morphology): artefact that the beat classifier takes for a run of ectopics changes shape from
    beat to beat, and a narrow early beat is no ventricular tachycardia.  Readability is gated afterwards
    (a poor record raises no rhythm alarm; see :func:`ecg.rules.gate_quality`).
    """
    labels, beats, fs = ri.labels, ri.beats, ri.fs
    wide, similar = ri.beat_wide, ri.beat_corr_prev

    def ventricular(k: int) -> bool:
        return bool(labels[k] == "V" and (wide is None or wide[k]))

    runs: list[tuple[int, int, float]] = []
    i = 0
    while i < labels.size:
        if not ventricular(i):
            i += 1
            continue
        j = i
        while (
            j + 1 < labels.size
            and ventricular(j + 1)
            and (similar is None or float(similar[j + 1]) >= th.VT_MORPHOLOGY_CORRELATION)
        ):
            j += 1
        n = j - i + 1
        if n >= th.VT_MIN_BEATS:
            rate = 60.0 * fs / float(np.mean(np.diff(beats[i : j + 1])))
            if rate > th.VT_MIN_BPM:
                runs.append((i, n, rate))
        i = j + 1
    return runs


def _conducted_rr(ri: RuleInput) -> np.ndarray:
    """RR intervals (s) between consecutive supraventricular-looking beats (ectopics excluded)."""
    b, lab = ri.beats, ri.labels
    if b.size < 3:
        return np.zeros(0)
    ok = (lab[:-1] != "V") & (lab[1:] != "V")
    return np.asarray(np.diff(b)[ok] / ri.fs, dtype=np.float64)


def _regular(rr: np.ndarray) -> bool:
    """Most RR intervals within REGULAR_CV of the median (a regular ventricular rhythm)."""
    if rr.size < 3:
        return False
    return float(np.mean(np.abs(rr / np.median(rr) - 1.0) < th.REGULAR_CV)) >= th.REGULAR_FRACTION


def _at_harmonic(hz: float, rr: np.ndarray) -> bool:
    """Whether ``hz`` is a multiple (1-4x) of a regular ventricular rate.

    QRST-cancellation leftovers repeat with every beat, so a regular rhythm
    puts residual energy at the harmonics of its rate: a spectral peak there is
    not evidence of independent atrial activity (flutter waves locked 2:1 to
    the QRS cancel and are recognised by :func:`_two_to_one` instead).
    """
    if not _regular(rr):
        return False
    fv = 1.0 / float(np.median(rr))
    k = round(hz / fv)
    return 1 <= k <= 4 and abs(hz - k * fv) <= 0.04 * hz


def _two_to_one(ri: RuleInput, rr: np.ndarray, p_present: bool) -> tuple[str, float, HalfRRWave] | None:
    """('flutter' | 'block' | 'uncertain', atrial rate /min, the hidden wave) for 2:1 AV conduction, or None.

    The conducted atrial wave repeats half an RR away (see
    ``ecg.signal.atrial.half_rr_wave``): the atria beat at twice the regular
    ventricular rate.  At 220-350/min that is flutter with 2:1 conduction; below
    200/min discrete P waves (a conducted P with constant PR) with every other
    one blocked.  A blocked P after the T wave's end is seen as it is; one
    on the T wave (its terminal half too) only once the T wave's direction is taken
    out of every lead and the copy still repeats the conducted P - a P-like
    copy that does not is "uncertain" (blocked P or T: the rhythm is named by
    the conducted P at the ventricular rate, no block claimed), and so is a
    T-free twin at a flutter rate (2:1 flutter whose wave passed as a P: no
    sinus rhythm named).
    """
    a = ri.atrial
    h = a.half_rr_wave if a is not None else None
    if h is None or not _regular(rr):
        return None
    lo, hi = th.HALF_RR_AMPLITUDE
    atrial_rate = 2.0 * 60.0 / float(np.median(rr))
    plain = h.correlation >= th.HALF_RR_CORRELATION and lo <= h.amplitude_ratio <= hi
    flutter_rate = th.FLUTTER_BPM[0] <= atrial_rate <= th.FLUTTER_BPM[1]
    if plain and flutter_rate:
        return "flutter", atrial_rate, h  # a flutter wave need not pass as a P wave
    t_free = _t_free_flutter(a) if flutter_rate else None
    if t_free is not None:
        return "flutter", atrial_rate, t_free
    if not p_present:
        return None
    if atrial_rate > th.AV_BLOCK_2TO1_MAX_ATRIAL_BPM:
        # a conducted "P" whose twin shows on the T wave once the T is removed, at a flutter rate: a flutter
        # wave can pass delineation as a P wave at a constant PR; flutter is not called from this alone (a
        # sinus P with a long PR matched it once too), but sinus is not claimed either
        off = _off_t_copy(a) if atrial_rate >= th.FLUTTER_BPM[0] else None
        return ("uncertain", atrial_rate, off) if off is not None else None
    if plain and h.from_p_wave and h.t_position is not None and h.t_position >= th.HALF_RR_T_POSITION:
        return "block", atrial_rate, h
    off = _off_t_copy(a)
    if off is not None:
        return "block", atrial_rate, off
    return ("uncertain", atrial_rate, h) if plain and h.from_p_wave else None


def _t_free_flutter(a: AtrialActivity | None) -> HalfRRWave | None:
    """The T-free half-RR copy of the wave before the QRS, when the whole T-free cycle also repeats at half an RR.

    Either alone was seen on sinus tachycardia (a P with a long PR matched a
    copy; P on T leaves some periodicity); both together only on 2:1 flutter.
    """
    h = a.half_rr_off_t if a is not None else None
    per = a.half_rr_periodicity if a is not None else None
    lo, hi = th.HALF_RR_AMPLITUDE
    if h is None or per is None or per < th.FLUTTER_HALF_RR_PERIODICITY:
        return None
    if h.correlation < th.HALF_RR_OFF_T_CORRELATION or not lo <= h.amplitude_ratio <= hi:
        return None
    return h


def _off_t_copy(a: AtrialActivity | None) -> HalfRRWave | None:
    """The half-RR copy of the conducted P wave with the T wave removed, when it matches the P wave."""
    h = a.half_rr_off_t if a is not None else None
    lo, hi = th.HALF_RR_AMPLITUDE
    if h is None or not h.from_p_wave or h.correlation < th.HALF_RR_OFF_T_CORRELATION:
        return None
    return h if lo <= h.amplitude_ratio <= hi else None


def _without_p(ri: RuleInput, rr: np.ndarray, hr: float, hr_m: tuple[Measurement, ...]) -> list[Finding]:
    """Junctional, accelerated junctional, supraventricular tachycardia or idioventricular rhythm.

    Called only for a regular rhythm with no conducted P wave, no AF or
    flutter; the absence of P waves must be shown (a hump-free diastole and a
    flat baseline before the QRS in the median beat), not just a P wave that
    delineation could not place: a P fused with the T wave at a fast sinus
    rate leaves a hump, flutter waves leave no flat baseline, and then nothing
    is said.  A narrow-QRS tachycardia also has to show nothing but the T wave
    between the complexes (no wave off the T-wave vector: a sinus P hidden on
    the T wave is one); above ~180/min, where the T runs into the next QRS and
    no flat baseline is left, that alone stands for it.
    """
    g, a = ri.g, ri.atrial
    if g is None or a is None or a.diastolic_wave_mv is None or a.diastolic_wave_mv >= th.P_ABSENT_MV:
        return []
    iso = a.isoelectric_tq_ms is not None and a.isoelectric_tq_ms >= th.ISOELECTRIC_TQ_MS
    off_t = a.wave_off_t_mv
    tachy_narrow = hr > th.TACHY_BPM and g.qrs_ms < th.IVCD_QRS_MS
    if tachy_narrow and off_t is not None and off_t >= th.WAVE_OFF_T_ABSENT_MV:
        return []  # a wave besides the T wave between the complexes: a sinus P hidden on the T, not an SVT
    t_only = tachy_narrow and off_t is not None
    if not (iso or t_only):
        return []
    if not _regular(rr) or np.mean(ri.labels == "N") < 0.9:
        return []
    no_p = f"no P wave: no discrete wave in diastole above {th.P_ABSENT_MV} mV (largest {a.diastolic_wave_mv:.3f} mV)"
    if iso:
        no_p += f", isoelectric baseline for {a.isoelectric_tq_ms:.0f} ms before the QRS"
    if t_only:
        no_p += f", nothing but the T wave between the complexes (wave off the T vector {off_t:.3f} mV)"
    regular = f"regular RR ({float(np.median(rr)) * 1000:.0f} ms)"
    qrs_m = ri.measurement(LOINC.QRS_DURATION)
    if g.qrs_ms >= th.WIDE_QRS_MS:
        if hr < th.IDIOVENTRICULAR_MAX_BPM:
            crit = [
                no_p,
                regular,
                f"wide QRS {g.qrs_ms:.0f} ms",
                f"rate {hr:.0f}/min < {th.IDIOVENTRICULAR_MAX_BPM:.0f}/min",
            ]
            return [finding(SCT.IDIOVENTRICULAR_RHYTHM, crit, hr_m + qrs_m, critical=True)]
        return []  # a wide-QRS rhythm at 50/min or more: junctional with bundle branch block or ventricular
    if g.qrs_ms >= th.IVCD_QRS_MS:
        return []  # 110-120 ms: a narrow junctional or a wide ventricular QRS measured short; not told apart
    narrow = f"narrow QRS {g.qrs_ms:.0f} ms"
    if hr < th.JUNCTIONAL_MAX_BPM:
        crit = [no_p, regular, narrow, f"rate {hr:.0f}/min < {th.JUNCTIONAL_MAX_BPM:.0f}/min"]
        return [finding(SCT.JUNCTIONAL_RHYTHM, crit, hr_m + qrs_m, text="Junctional rhythm")]
    if hr <= th.TACHY_BPM:
        crit = [no_p, regular, narrow, f"rate {hr:.0f}/min in 60-100/min"]
        return [finding(SCT.ACCELERATED_JUNCTIONAL_RHYTHM, crit, hr_m + qrs_m)]
    crit = [no_p, regular, narrow, f"rate {hr:.0f}/min > 100/min"]
    critical = hr >= th.SVT_CRITICAL_BPM
    if critical:
        crit.append(f"rate >= {th.SVT_CRITICAL_BPM:.0f}/min")
    return [finding(SCT.SUPRAVENTRICULAR_TACHYCARDIA, crit, hr_m + qrs_m, critical=critical)]


VT_DISSOCIATION_TEXT = "Ventricular tachycardia with AV dissociation"


def ventricular_rhythm(statements: list[Finding]) -> bool:
    """Whether the statements name a rhythm whose dominant beats arise in the ventricles.

    Bundle-branch, axis, hypertrophy and ST-T criteria assume supraventricular
    conduction: like paced beats, ventricular beats are not read by them (a
    run of VT among sinus beats is not: the dominant beats are sinus).
    """
    return any(
        f.concept in (MMDX.ECG_WIDE_QRS_TACHYCARDIA, SCT.IDIOVENTRICULAR_RHYTHM) or f.text == VT_DISSOCIATION_TEXT
        for f in statements
    )


def _qrs_locked(waves: np.ndarray, beats: np.ndarray, fs: float) -> np.ndarray:
    """Mask of waves at one fixed delay after the preceding QRS shared by a third of the beats (and >= 3 waves).

    What QRST cancellation leaves over repeats at the same place in most
    beats; an atrial wave that beats independently of the ventricles comes
    back to the same delay only now and then.
    """
    k = np.searchsorted(beats, waves) - 1
    ok = k >= 0
    delay = np.where(ok, waves - beats[np.clip(k, 0, None)], np.iinfo(np.int64).min // 2)
    near = ok[None, :] & ok[:, None] & (np.abs(delay[None, :] - delay[:, None]) <= 0.02 * fs)
    return np.asarray((near.sum(axis=1) >= max(3.0, beats.size / 3.0)) & ok)


def _atrial_train(t: np.ndarray) -> tuple[float, int, int] | None:
    """(cycle s, waves on it, cycles spanned) of the slowest regular train most wave times ``t`` (s) fit.

    Atrial waves falling inside a QRS are blanked, so a train may miss some:
    each wave must sit within DISSOCIATION_TOLERANCE of a cycle from an
    anchor wave.  The cycle that fits the most waves wins, the slowest among
    equals (every train also fits at half its cycle; a slower one that fits
    fewer is a coincidence of the blanked waves).
    """
    if t.size < th.DISSOCIATION_MIN_WAVES:
        return None
    ph_all = t[None, :] - t[:, None]
    best: tuple[float, int, int] | None = None
    for c in np.arange(60.0 / th.DISSOCIATION_MIN_BPM, 60.0 / th.AV_BLOCK_2TO1_MAX_ATRIAL_BPM, -0.002):
        ph = ph_all / c
        fit = np.abs(ph - np.round(ph)) <= th.DISSOCIATION_TOLERANCE
        cnt = fit.sum(axis=1)
        i = int(np.argmax(cnt))
        if cnt[i] >= max(th.DISSOCIATION_MIN_WAVES, 0.75 * t.size) and (best is None or cnt[i] > best[1]):
            n = np.round(ph[i, fit[i]])
            span = int(n.max() - n.min()) + 1
            if cnt[i] < th.DISSOCIATION_MIN_COVERAGE * span:
                continue  # a few waves far apart fit almost any slow cycle
            best = float(np.polyfit(n, t[fit[i]], 1)[0]), int(cnt[i]), span
            if best[1] == t.size:
                break  # every wave fits: no faster cycle explains more
    return best


def _av_dissociation(ri: RuleInput, vent_rate: float) -> tuple[float, int, int] | None:
    """(atrial rate /min, waves, cycles) of atrial waves beating slower than, and independently of, the ventricles."""
    a = ri.atrial
    if a is None or a.waves.size < th.DISSOCIATION_MIN_WAVES:
        return None
    b = ri.beats
    # around a beat that is not of the dominant shape the cancellation fails: its leftovers are no atrial waves
    k = np.clip(np.searchsorted(b, a.waves), 1, b.size - 1)
    odd = ri.labels != "N"
    near_odd = odd[k - 1] | odd[k] | odd[np.maximum(k - 2, 0)] | odd[np.minimum(k + 1, b.size - 1)]
    w = a.waves[~_qrs_locked(a.waves, b, ri.fs) & ~near_odd]
    train = _atrial_train(w / ri.fs)
    if train is None:
        return None
    rate = 60.0 / train[0]
    # 1:1 or 2:1 with the ventricles is conduction (or a cancellation leftover), not dissociation
    locked = any(abs(rate / (k * vent_rate) - 1.0) < 0.1 for k in (0.5, 1.0))
    if locked or rate >= th.DISSOCIATION_MAX_RATIO * vent_rate:
        return None
    return rate, train[1], train[2]


def _wide_tachycardia(ri: RuleInput, rr: np.ndarray, hr: float, hr_m: tuple[Measurement, ...]) -> list[Finding]:
    """Ventricular tachycardia (AV dissociation shown) or wide-QRS tachycardia (no P wave shown), both critical.

    A regular rhythm at >= 100/min with QRS >= 120 ms and no conducted P
    wave is ventricular tachycardia until proven otherwise (supraventricular
    tachycardia with aberrant or pre-excited conduction looks the same): the
    safe reading is "wide-QRS tachycardia", STAT.  The absence of P waves is
    shown, not assumed: no wave off the T-wave vector between the QRS and
    the next one in the median beat (a sinus P wave on the T wave is one),
    or a rate too fast for any window to remain.  Atrial waves marching
    through at their own slower rate (AV dissociation) make it ventricular
    tachycardia.  A sinus tachycardia with bundle branch block has P waves
    at a constant PR: it never reaches this rule.
    """
    g, a = ri.g, ri.atrial
    if g is None or a is None or hr < th.WIDE_TACHY_MIN_BPM or g.qrs_ms < th.WIDE_QRS_MS:
        return []
    if not _regular(rr) or np.mean(ri.labels == "N") < 0.9:
        return []
    vent_rate = 60.0 / float(np.median(rr))
    crit = [
        f"regular RR ({float(np.median(rr)) * 1000:.0f} ms)",
        f"rate {hr:.0f}/min >= {th.WIDE_TACHY_MIN_BPM:.0f}/min",
        f"wide QRS {g.qrs_ms:.0f} ms >= {th.WIDE_QRS_MS:.0f} ms",
        "no P wave at a constant PR before the QRS",
    ]
    qrs_m = ri.measurement(LOINC.QRS_DURATION)
    diss = _av_dissociation(ri, vent_rate)
    if diss is not None:
        crit.append(
            f"AV dissociation: {diss[1]} atrial waves in {diss[2]} cycles of a regular atrial rhythm at "
            f"{diss[0]:.0f}/min, slower than and independent of the ventricles"
        )
        return [finding(SCT.VENTRICULAR_TACHYCARDIA, crit, hr_m + qrs_m, critical=True, text=VT_DISSOCIATION_TEXT)]
    off_t = a.wave_off_t_mv
    # QRS end + 40 ms to the next QRS - 20 ms: the window wave_off_t looks at
    window_ms = float(np.median(rr)) * 1000.0 - g.qrs_ms - 60.0
    if off_t is not None and off_t < th.WAVE_OFF_T_ABSENT_MV:
        crit.append(
            f"no P wave: nothing but the T wave between QRS end and the next QRS (largest wave off the T vector "
            f"{off_t:.3f} mV < {th.WAVE_OFF_T_ABSENT_MV} mV)"
        )
    elif off_t is None and hr >= th.WIDE_TACHY_NO_WINDOW_BPM and window_ms < th.WIDE_TACHY_MIN_WINDOW_MS:
        crit.append(
            f"rate >= {th.WIDE_TACHY_NO_WINDOW_BPM:.0f}/min: {max(window_ms, 0.0):.0f} ms between the complexes, "
            "no room for a separate P wave"
        )
    else:
        return []  # a wave besides the T (a P wave on it?) or nothing measurable: the rhythm is not named
    crit.append("ventricular tachycardia or supraventricular tachycardia with aberrant conduction: treat as VT")
    return [finding(MMDX.ECG_WIDE_QRS_TACHYCARDIA, crit, hr_m + qrs_m, critical=True)]


def premature_atrial_beats(ri: RuleInput) -> int:
    """How many supraventricular-labelled beats are really premature atrial complexes.

    The beat label (RR < 85% of the local RR, normal QRS) also fires on
    sinus arrhythmia and at the onset of a faster rhythm.  A premature atrial
    complex comes abruptly early (at most ``PAC_PREMATURITY`` of the median of
    the 1-3 RR before it) and resets the sinus node, so a pause follows (the
    next RR at least ``PAC_PAUSE`` times its own); a gradual change does
    neither.
    """
    rr = np.diff(ri.beats).astype(np.float64)
    n = 0
    for k in np.flatnonzero(ri.labels == "S"):
        if k < 2 or k >= rr.size:
            continue  # needs an RR before its own and one after
        prev = rr[k - 1]
        before = float(np.median(rr[max(0, k - 4) : k - 1]))
        if prev <= th.PAC_PREMATURITY * before and rr[k] >= th.PAC_PAUSE * prev:
            n += 1
    return n


@dataclass(frozen=True, slots=True)
class RhythmContext:
    """What the rhythm rules share, measured once: rates, RR regularity, P waves, atrial activity, AV relation.

    ``flutter``, ``af``, ``wide`` and ``av`` are the outcomes other rules' conditions depend on (a sinus
    rhythm is not named in flutter, a rhythm without P is not named where AV dissociation was found).
    """

    hr: float
    hr_m: tuple[Measurement, ...]
    pr_m: tuple[Measurement, ...]
    paced: float
    runs: tuple[tuple[int, int, float], ...]
    rr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cv: float = 0.0
    sd: float = 0.0
    p_present: bool = False
    two: tuple[str, float, HalfRRWave] | None = None
    flutter: bool = False
    af: bool = False
    wide: Finding | None = None
    av: Finding | None = None

    @property
    def uncertain(self) -> bool:
        """A P-like wave half an RR after the P that may be the T wave: neither 2:1 block nor plain sinus claimed."""
        return self.two is not None and self.two[0] == "uncertain"


def rhythm_context(ri: RuleInput) -> RhythmContext | None:
    """The shared measures, or None where there are too few beats or no global measurements."""
    g = ri.g
    if ri.beats.size < 3 or g is None or g.hr_bpm is None:
        return None
    hr = g.hr_bpm
    hr_m = ri.measurement(LOINC.HEART_RATE)
    base = RhythmContext(hr, hr_m, ri.measurement(LOINC.PR_INTERVAL), ri.paced_fraction, tuple(_vt_runs(ri)))
    if base.paced >= th.PACED_FRACTION:
        return base  # a paced rhythm: no rule reads P waves or RR irregularity
    rr = _conducted_rr(ri)
    cv = float(np.std(rr) / np.mean(rr)) if rr.size >= 3 else 0.0
    sd = float(np.median(np.abs(np.diff(rr))) / np.median(rr)) if rr.size >= 3 else 0.0
    p_present = g.pr_ms is not None
    atrial = ri.atrial
    two = _two_to_one(ri, rr, p_present)
    locked_flutter = atrial is not None and atrial.locked_flutter_per_min is not None
    spectral_flutter = (
        atrial is not None
        and atrial.dominant_hz is not None
        and th.FLUTTER_HZ[0] <= atrial.dominant_hz <= th.FLUTTER_HZ[1]
        and atrial.concentration >= th.FLUTTER_CONCENTRATION
        and atrial.residual_rms_mv >= th.FLUTTER_MIN_RMS_MV
        and not p_present
        and not _at_harmonic(atrial.dominant_hz, rr)
    )
    flutter = locked_flutter or spectral_flutter or (two is not None and two[0] == "flutter")
    irregular = sd > th.AF_SUCCESSIVE_DIFF and cv > th.AF_RR_CV
    af = irregular and not p_present and not flutter
    wide_l = [] if (af or flutter or p_present or base.runs) else _wide_tachycardia(ri, rr, hr, hr_m)
    wide = wide_l[0] if wide_l else None
    av_l = [] if two is not None or wide is not None else _av_block(ri, rr, p_present, af or flutter)
    return replace(
        base,
        rr=rr,
        cv=cv,
        sd=sd,
        p_present=p_present,
        two=two,
        flutter=flutter,
        af=af,
        wide=wide,
        av=av_l[0] if av_l else None,
    )


def ventricular_tachycardia(ri: RuleInput, c: RhythmContext) -> Finding | None:
    if not c.runs:
        return None
    longest = max(c.runs, key=lambda r: r[1])
    crit = [
        f"{len(c.runs)} run(s) of >= 3 consecutive wide ventricular beats at > 100/min, each beat like the one "
        f"before it (correlation >= {th.VT_MORPHOLOGY_CORRELATION})",
        f"longest: {longest[1]} beats at {longest[2]:.0f}/min from t={ri.beats[longest[0]] / ri.fs:.1f} s",
    ]
    return finding(SCT.VENTRICULAR_TACHYCARDIA, crit, c.hr_m, critical=True)


def paced_rhythm(ri: RuleInput, c: RhythmContext) -> Finding | None:
    if c.paced < th.PACED_FRACTION:
        return None
    return finding(SCT.PACED_RHYTHM, [f"{c.paced:.0%} of beats preceded by a pacing spike"], c.hr_m)


def atrial_flutter(ri: RuleInput, c: RhythmContext) -> Finding | None:
    atrial = ri.atrial
    if not c.flutter or atrial is None:
        return None
    text = None
    two = c.two
    if two is not None and two[0] == "flutter":
        h = two[2]
        t_free = h is atrial.half_rr_off_t
        crit = [
            f"atrial waves at {two[1]:.0f}/min, twice the regular ventricular rate {c.hr:.0f}/min",
            ("with the T wave's direction removed from every lead, " if t_free else "")
            + f"the wave before each QRS recurs half an RR later, {h.after_qrs_ms:.0f} ms after QRS onset "
            f"(multi-lead correlation {h.correlation:.2f}, size ratio {h.amplitude_ratio:.2f})",
        ]
        if t_free:
            crit.append(
                f"the whole T-free cycle repeats every half RR (correlation {atrial.half_rr_periodicity:.2f} "
                f">= {th.FLUTTER_HALF_RR_PERIODICITY})"
            )
        crit.append("2:1 AV conduction")
        text = "Atrial flutter with 2:1 AV conduction"
    elif atrial.locked_flutter_per_min is not None:
        crit = [
            f"regular atrial (flutter) waves at {atrial.locked_flutter_per_min:.0f}/min between T and QRS",
            "fixed AV conduction: no isoelectric baseline between atrial waves",
        ]
    else:
        crit = [
            f"regular atrial activity at {(atrial.dominant_hz or 0) * 60:.0f}/min after QRST cancellation "
            f"(spectral concentration {atrial.concentration:.2f})",
            "no discrete P wave locked to the QRS",
        ]
    rvr = c.hr >= th.AF_RVR_BPM
    if rvr:
        crit.append(f"ventricular rate {c.hr:.0f}/min >= {th.AF_RVR_BPM:.0f}/min (rapid ventricular response)")
        text = text or "Atrial flutter with rapid ventricular response"
    return finding(SCT.ATRIAL_FLUTTER, crit, c.hr_m, critical=rvr, text=text)


def atrial_fibrillation(ri: RuleInput, c: RhythmContext) -> Finding | None:
    if not c.af or (c.flutter and ri.atrial is not None):
        return None
    crit = [
        f"irregularly irregular RR (median successive difference {c.sd:.2f} of RR, CV {c.cv:.2f})",
        "no P wave locked to the QRS",
    ]
    rvr = c.hr >= th.AF_RVR_BPM
    if rvr:
        crit.append(f"ventricular rate {c.hr:.0f}/min >= {th.AF_RVR_BPM:.0f}/min (rapid ventricular response)")
    text = "Atrial fibrillation with rapid ventricular response" if rvr else None
    return finding(SCT.ATRIAL_FIBRILLATION, crit, c.hr_m, critical=rvr, text=text)


def sinus_rhythm(ri: RuleInput, c: RhythmContext) -> Finding | None:
    """Sinus rhythm, bradycardia or tachycardia by the P-P rate (twice the ventricular rate in 2:1 block)."""
    g, two = ri.g, c.two
    if g is None or (c.flutter and ri.atrial is not None) or c.af or not c.p_present:
        return None
    if two is not None and two[0] == "uncertain" and two[1] > th.AV_BLOCK_2TO1_MAX_ATRIAL_BPM:
        return None
    if not (g.p_axis_deg is None or -30.0 <= g.p_axis_deg <= 105.0):
        return None
    crit = ["P wave before every QRS with constant PR"]
    crit.append(
        f"P axis {g.p_axis_deg:.0f} deg (normal atrial origin)"
        if g.p_axis_deg is not None
        else "P axis not measurable (no frontal leads)"
    )
    sure = two is not None and two[0] == "block"
    rate = two[1] if sure and two is not None else c.hr
    if sure:
        crit.append(f"P-P rate {rate:.0f}/min, every other P wave not conducted")
    elif two is not None:
        # a P-like wave on the T wave that may be the T itself: the conducted P names the rhythm, the
        # rate is the ventricular rate, and no 2:1 block is claimed (a T taken for a P is the commoner)
        crit.append(
            f"a P-like wave half an RR after the P ({two[2].after_qrs_ms:.0f} ms after QRS onset) could not "
            "be told from the T wave: no 2:1 AV block claimed"
        )
    m = c.hr_m + c.pr_m
    if rate < th.BRADY_BPM:
        return finding(SCT.SINUS_BRADYCARDIA, [*crit, f"rate {rate:.0f}/min < 60/min"], m)
    if rate > th.TACHY_BPM:
        return finding(SCT.SINUS_TACHYCARDIA, [*crit, f"rate {rate:.0f}/min > 100/min"], m)
    return finding(SCT.SINUS_RHYTHM, [*crit, f"rate {rate:.0f}/min in 60-100/min"], m)


def wide_complex_tachycardia(ri: RuleInput, c: RhythmContext) -> Finding | None:
    return c.wide


def rhythm_without_p(ri: RuleInput, c: RhythmContext) -> Finding | None:
    complete = c.av is not None and c.av.concept == SCT.COMPLETE_AV_BLOCK
    if c.af or c.flutter or c.p_present or c.wide is not None or complete:
        return None
    found = _without_p(ri, c.rr, c.hr, c.hr_m)
    return found[0] if found else None


def premature_atrial_complexes(ri: RuleInput, c: RhythmContext) -> Finding | None:
    n_s = premature_atrial_beats(ri)
    if not n_s or c.af or c.flutter or c.wide is not None:  # in a regular ventricular rhythm an early beat is no PAC
        return None
    return finding(
        SCT.PREMATURE_ATRIAL_COMPLEX,
        [
            f"{n_s} premature beat(s) with normal QRS morphology: RR <= {th.PAC_PREMATURITY:.0%} of the "
            f"preceding RR and followed by a pause (next RR >= {th.PAC_PAUSE:g} x its own)",
            "gradual RR changes (sinus arrhythmia) and the onset of a faster rhythm are not counted",
        ],
    )


def premature_ventricular_complexes(ri: RuleInput, c: RhythmContext) -> Finding | None:
    n_v = int(np.sum(ri.labels == "V"))
    if not n_v:
        return None
    return finding(
        SCT.PREMATURE_VENTRICULAR_COMPLEX,
        [f"{n_v} beat(s) with QRS morphology unlike the dominant beat (correlation < 0.8) and wide or premature"],
    )


def two_to_one_av_block(ri: RuleInput, c: RhythmContext) -> Finding | None:
    g, two, atrial = ri.g, c.two, ri.atrial
    if two is None or two[0] != "block" or g is None:
        return None
    h = two[2]
    off_t = atrial is not None and h is atrial.half_rr_off_t
    crit = [
        f"P waves at {two[1]:.0f}/min, twice the regular ventricular rate {c.hr:.0f}/min",
        f"conducted P with constant PR {g.pr_ms:.0f} ms before every QRS",
        f"a second, identical P wave half an RR later ({h.after_qrs_ms:.0f} ms after QRS onset, "
        f"multi-lead correlation {h.correlation:.2f}, size ratio {h.amplitude_ratio:.2f}"
        + (", compared with the T wave's direction removed from every lead" if off_t else "")
        + ") not followed by a QRS",
        "2:1 AV block: the level of block (nodal or infranodal) cannot be told from the surface ECG",
    ]
    return finding(SCT.SECOND_DEGREE_AV_BLOCK, crit, c.hr_m + c.pr_m, critical=True, text="2:1 AV block")


def first_degree_av_block(ri: RuleInput, c: RhythmContext) -> Finding | None:
    g, two = ri.g, c.two
    if two is not None and two[0] == "block":
        return None
    if not c.p_present or c.flutter or c.uncertain or g is None or g.pr_ms is None:
        return None
    if g.pr_ms <= th.FIRST_DEGREE_PR_MS:
        return None
    return finding(SCT.FIRST_DEGREE_AV_BLOCK, [f"PR {g.pr_ms:.0f} ms > 200 ms, every P conducted"], c.pr_m)


def av_block(ri: RuleInput, c: RhythmContext) -> Finding | None:
    return c.av


#: The rhythm rules in statement order. A paced rhythm ends the list: no rule reads P waves or RR irregularity
#: of paced beats (no AF, flutter, sinus or AV block is derived from them).
RHYTHM_RULES: tuple[Rule, ...] = (
    Rule("ventricular tachycardia", ">= 3 consecutive wide ventricular beats of consistent morphology at > 100/min",
         ventricular_tachycardia),
    Rule("paced rhythm", f">= {th.PACED_FRACTION:.0%} of beats preceded by a pacing spike", paced_rhythm),
    Rule("atrial flutter", "regular atrial waves (locked flutter waves, a spectral peak at 4-6.7 Hz without P, "
         "or waves at twice a regular ventricular rate)", atrial_flutter),
    Rule("atrial fibrillation", "irregularly irregular RR (successive differences and CV) and no P wave",
         atrial_fibrillation),
    Rule("sinus rhythm", "P before every QRS with constant PR and P axis -30 to +105 deg; <60, 60-100, >100/min",
         sinus_rhythm),
    Rule("wide-complex tachycardia", "no P, no AF/flutter: regular wide QRS >= 100/min (VT with AV dissociation)",
         wide_complex_tachycardia),
    Rule("rhythm without P", "no P, no AF/flutter, no AV dissociation: junctional, idioventricular or SVT by rate "
         "and QRS width", rhythm_without_p),
    Rule("premature atrial complexes", f"RR <= {th.PAC_PREMATURITY:.0%} of the preceding RR, a pause after, "
         "normal QRS; not in AF/flutter", premature_atrial_complexes),
    Rule("premature ventricular complexes", "QRS unlike the dominant beat, wide or premature",
         premature_ventricular_complexes),
    Rule("2:1 AV block", "a second identical P half an RR after the conducted P, not followed by a QRS",
         two_to_one_av_block),
    Rule("first-degree AV block", "PR > 200 ms, every P conducted", first_degree_av_block),
    Rule("second/third-degree AV block", "a P in a pause not conducted; or regular P faster than a regular "
         "ventricular rhythm, not locked to it (AV dissociation)", av_block),
)  # fmt: skip


def rhythm_statements(ri: RuleInput) -> list[Finding]:
    """Sinus/AF/flutter/paced/junctional/idioventricular rhythm, ectopy, VT and AV block (:data:`RHYTHM_RULES`)."""
    c = rhythm_context(ri)
    if c is None:
        return []
    out: list[Finding] = []
    for rule in RHYTHM_RULES:
        f = rule.decide(ri, c)
        if f is not None:
            out.append(f)
            if f.concept == SCT.PACED_RHYTHM:
                break
    return out


def _av_block(ri: RuleInput, rr: np.ndarray, p_present: bool, atrial_arrhythmia: bool) -> list[Finding]:
    """Second-degree (non-conducted P in a pause) and third-degree (AV dissociation) block."""
    a = ri.atrial
    if a is None or atrial_arrhythmia or a.waves.size == 0 or rr.size < 3:
        return []
    fs = ri.fs
    beats = ri.beats
    med_rr = float(np.median(np.diff(beats)))
    out: list[Finding] = []
    if p_present:
        pauses = np.flatnonzero(np.diff(beats) >= th.DROPPED_BEAT_RR * med_rr)
        blocked = 0
        for k in pauses:
            if ri.labels[k] != "N" or ri.labels[k + 1] != "N" or (k > 0 and ri.labels[k - 1] != "N"):
                continue  # a compensatory pause around an ectopic beat is not a block
            # the blocked P sits where the next conducted P was due: one RR after the last beat, PR before it
            due = beats[k] + med_rr - (ri.g.pr_ms if ri.g and ri.g.pr_ms else 160.0) * fs / 1000.0
            inside = (np.abs(a.waves - due) < 0.12 * fs) & (a.waves < beats[k + 1] - 0.1 * fs)
            blocked += int(inside.any())
        if blocked:
            out.append(
                finding(
                    SCT.SECOND_DEGREE_AV_BLOCK,
                    [
                        f"{blocked} pause(s) >= {th.DROPPED_BEAT_RR} x median RR "
                        "containing a P wave not followed by a QRS",
                        "other P waves conducted",
                    ],
                    ri.measurement(LOINC.PR_INTERVAL),
                )
            )
        return out
    if a.waves.size >= 4:
        pp = np.diff(a.waves) / fs
        atrial_rate = 60.0 / float(np.median(pp))
        vent_rate = 60.0 / float(np.median(rr))
        # regular: most intervals within REGULAR_CV of the median (a missed atrial wave may double one)
        regular_a = float(np.mean(np.abs(pp / np.median(pp) - 1) < th.REGULAR_CV)) >= 0.75
        regular_v = float(np.mean(np.abs(rr / np.median(rr) - 1) < th.REGULAR_CV)) >= 0.75
        faster = atrial_rate > vent_rate + th.AV_DISSOCIATION_EXTRA_BPM and atrial_rate < 200
        spread = _pr_spread(a.waves, beats, float(np.median(pp)) * fs) if regular_a and regular_v and faster else None
        # a P at a fixed interval before each QRS is conducted (a 2:1 or 3:1 block), not dissociated: independent
        # P waves fall anywhere in the cycle (SD about 0.29 of the P-P cycle for a uniform spread)
        if spread is not None and spread >= th.DISSOCIATION_PR_SPREAD * float(np.median(pp)) * fs:
            out.append(
                finding(
                    SCT.COMPLETE_AV_BLOCK,
                    [
                        f"regular atrial waves at {atrial_rate:.0f}/min not locked to the QRS (AV dissociation)",
                        f"regular slower ventricular rhythm at {vent_rate:.0f}/min",
                        f"P-to-QRS intervals vary (SD {spread * 1000.0 / fs:.0f} ms, "
                        f"{spread / (float(np.median(pp)) * fs):.2f} of the P-P cycle): no fixed PR",
                    ],
                    ri.measurement(LOINC.HEART_RATE),
                    critical=True,
                )
            )
    return out


def _pr_spread(waves: np.ndarray, beats: np.ndarray, pp: float) -> float | None:
    """SD (samples) of the interval from each QRS's last preceding atrial wave (within one P-P cycle) to it."""
    k = np.searchsorted(waves, beats) - 1
    ok = k >= 0
    d = beats[ok] - waves[k[ok]]
    d = d[d <= 1.05 * pp]
    return float(np.std(d)) if d.size >= 3 else None
