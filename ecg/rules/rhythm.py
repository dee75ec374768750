"""Rhythm and AV-conduction statements (need only the beats and atrial activity: any lead set)."""

from __future__ import annotations

import numpy as np

from core.codes import LOINC, SCT
from core.records import Finding
from ecg.rules import thresholds as th
from ecg.rules.base import RuleInput, finding


def _vt_runs(labels: np.ndarray, beats: np.ndarray, fs: float) -> list[tuple[int, int, float]]:
    """(first beat, length, rate bpm) of runs of >= 3 consecutive ventricular beats faster than 100/min."""
    runs: list[tuple[int, int, float]] = []
    i = 0
    while i < labels.size:
        if labels[i] != "V":
            i += 1
            continue
        j = i
        while j + 1 < labels.size and labels[j + 1] == "V":
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


def rhythm_statements(ri: RuleInput) -> list[Finding]:
    """Sinus/AF/flutter/paced rhythm, ectopy, VT and AV block."""
    out: list[Finding] = []
    g = ri.g
    hr_m = ri.measurement(LOINC.HEART_RATE)
    n = ri.beats.size
    if n < 3 or g is None or g.hr_bpm is None:
        return out
    hr = g.hr_bpm
    paced = ri.paced_fraction
    runs = _vt_runs(ri.labels, ri.beats, ri.fs)
    if runs:
        longest = max(runs, key=lambda r: r[1])
        crit = [
            f"{len(runs)} run(s) of >= 3 consecutive ventricular beats at > 100/min",
            f"longest: {longest[1]} beats at {longest[2]:.0f}/min from t={ri.beats[longest[0]] / ri.fs:.1f} s",
        ]
        out.append(finding(SCT.VENTRICULAR_TACHYCARDIA, crit, hr_m, critical=True))
    if paced >= th.PACED_FRACTION:
        out.append(finding(SCT.PACED_RHYTHM, [f"{paced:.0%} of beats preceded by a pacing spike"], hr_m))
        return out
    rr = _conducted_rr(ri)
    cv = float(np.std(rr) / np.mean(rr)) if rr.size >= 3 else 0.0
    sd = float(np.median(np.abs(np.diff(rr))) / np.median(rr)) if rr.size >= 3 else 0.0
    p_present = g.pr_ms is not None
    atrial = ri.atrial
    locked_flutter = atrial is not None and atrial.locked_flutter_per_min is not None
    flutter = locked_flutter or (
        atrial is not None
        and atrial.dominant_hz is not None
        and th.FLUTTER_HZ[0] <= atrial.dominant_hz <= th.FLUTTER_HZ[1]
        and atrial.concentration >= th.FLUTTER_CONCENTRATION
        and not p_present
    )
    irregular = sd > th.AF_SUCCESSIVE_DIFF and cv > th.AF_RR_CV
    af = irregular and not p_present and not flutter
    pr_m = ri.measurement(LOINC.PR_INTERVAL)
    if flutter and atrial is not None:
        if atrial.locked_flutter_per_min is not None:
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
        out.append(finding(SCT.ATRIAL_FLUTTER, crit, hr_m))
    elif af:
        crit = [
            f"irregularly irregular RR (median successive difference {sd:.2f} of RR, CV {cv:.2f})",
            "no P wave locked to the QRS",
        ]
        rvr = hr >= th.AF_RVR_BPM
        if rvr:
            crit.append(f"ventricular rate {hr:.0f}/min >= {th.AF_RVR_BPM:.0f}/min (rapid ventricular response)")
        out.append(
            finding(
                SCT.ATRIAL_FIBRILLATION,
                crit,
                hr_m,
                critical=rvr,
                text="Atrial fibrillation with rapid ventricular response" if rvr else None,
            )
        )
    elif p_present:
        p_axis_ok = g.p_axis_deg is None or -30.0 <= g.p_axis_deg <= 105.0
        if p_axis_ok:
            crit = ["P wave before every QRS with constant PR"]
            crit.append(
                f"P axis {g.p_axis_deg:.0f} deg (normal atrial origin)"
                if g.p_axis_deg is not None
                else "P axis not measurable (no frontal leads)"
            )
            if hr < th.BRADY_BPM:
                out.append(finding(SCT.SINUS_BRADYCARDIA, [*crit, f"rate {hr:.0f}/min < 60/min"], hr_m + pr_m))
            elif hr > th.TACHY_BPM:
                out.append(finding(SCT.SINUS_TACHYCARDIA, [*crit, f"rate {hr:.0f}/min > 100/min"], hr_m + pr_m))
            else:
                out.append(finding(SCT.SINUS_RHYTHM, [*crit, f"rate {hr:.0f}/min in 60-100/min"], hr_m + pr_m))
    n_s = int(np.sum(ri.labels == "S"))
    n_v = int(np.sum(ri.labels == "V"))
    if n_s and not af and not flutter:
        out.append(
            finding(
                SCT.PREMATURE_ATRIAL_COMPLEX,
                [f"{n_s} premature beat(s) (RR < 85% of local RR) with normal QRS morphology"],
            )
        )
    if n_v:
        out.append(
            finding(
                SCT.PREMATURE_VENTRICULAR_COMPLEX,
                [
                    f"{n_v} beat(s) with QRS morphology unlike the dominant beat "
                    "(correlation < 0.8) and wide or premature"
                ],
            )
        )
    if p_present and g.pr_ms is not None and g.pr_ms > th.FIRST_DEGREE_PR_MS:
        out.append(finding(SCT.FIRST_DEGREE_AV_BLOCK, [f"PR {g.pr_ms:.0f} ms > 200 ms, every P conducted"], pr_m))
    out += _av_block(ri, rr, p_present, af or flutter)
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
        if regular_a and regular_v and atrial_rate > vent_rate + th.AV_DISSOCIATION_EXTRA_BPM and atrial_rate < 200:
            out.append(
                finding(
                    SCT.COMPLETE_AV_BLOCK,
                    [
                        f"regular atrial waves at {atrial_rate:.0f}/min not locked to the QRS (AV dissociation)",
                        f"regular slower ventricular rhythm at {vent_rate:.0f}/min",
                    ],
                    ri.measurement(LOINC.HEART_RATE),
                    critical=True,
                )
            )
    return out
