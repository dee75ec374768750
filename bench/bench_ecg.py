"""ECG analysis benchmark: mmdx vs neurokit2 (and wfdb XQRS) on the same records, in one run.

Run from the repository root::

    .venv/bin/python bench/bench_ecg.py [--repeat 10] [--no-xqrs] [--delineation-only]

Prints, for each part, both tools' figures and their ratio:

1. QRS detection on MIT-BIH record 100 per ANSI/AAMI EC57 (beat annotations only, first 5 min
   excluded, 150 ms window): Se, +P and time, for mmdx, neurokit2's default detector and wfdb XQRS;
2. global intervals on the DICOM sample against its device (PR 161, QRS 75, QT 368 ms);
3. wave boundaries on LUDB record 1 against the cardiologists' marks (global = earliest onset /
   latest offset over the 12 leads), and on the HL7 aECG example against its per-beat global marks,
   mean and SD of the differences, with the IEC 60601-2-25 limits; per lead against the same lead's
   LUDB marks (every marked beat), with how much the earliest/latest reference gains from the marks'
   own scatter; the GE MUSE sample against ecgpuwave's boundaries (weak: a program, one lead); and the
   largest boundary move when one lead's gain changes x10 / x0.1; synthetic records with exact truth
   (an IEC-style set, a small late T component in few leads, the T end at fast rates: P on T);
4. end-to-end time for one 10 s, 500 Hz, 12-lead record (mmdx ``analyze``: conditioning, detection,
   delineation, measurements, statements) vs ``neurokit2.ecg_process`` on all 12 leads, and mmdx batch mode.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import neurokit2 as nk  # noqa: E402
import wfdb  # noqa: E402
from wfdb import processing  # noqa: E402

from core.codes import LOINC  # noqa: E402
from ecg.analysis import analyze, analyze_batch  # noqa: E402
from ecg.readers import read_ecg  # noqa: E402
from ecg.signal.conditioning import condition  # noqa: E402
from ecg.signal.qrs import detect_qrs  # noqa: E402
from tests.ecg._load import DICOM_ECG, LUDB_1, MITDB_100, ludb_reference  # noqa: E402

BEATS = set("NLRBAaJSVrFejnE/fQ?")
warnings.filterwarnings("ignore")


def ec57(ref_rec: Path, beats: np.ndarray, fs: float) -> tuple[float, float]:
    ann = wfdb.rdann(str(ref_rec), "atr")
    start = int(300 * fs)
    ref = np.array([s for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEATS and s >= start])
    c = processing.compare_annotations(ref, beats[beats >= start], int(0.15 * fs))
    return 100 * c.sensitivity, 100 * c.positive_predictivity


def part_detection(xqrs: bool) -> list[str]:
    rec = wfdb.rdrecord(str(MITDB_100))
    fs = float(rec.fs)
    x = rec.p_signal.T
    rows = []
    t = time.perf_counter()
    c = condition(x, fs)
    ours = np.round(detect_qrs(c.signal, c.fs) * fs / c.fs).astype(int)
    t_ours = time.perf_counter() - t
    rows.append(("mmdx (2 leads, conditioning + detection)", *ec57(MITDB_100, ours, fs), t_ours))
    t = time.perf_counter()
    _, info = nk.ecg_peaks(nk.ecg_clean(x[0], sampling_rate=int(fs)), sampling_rate=int(fs))
    t_nk = time.perf_counter() - t
    rows.append(("neurokit2 default (MLII)", *ec57(MITDB_100, np.asarray(info["ECG_R_Peaks"]), fs), t_nk))
    if xqrs:
        t = time.perf_counter()
        xq = processing.xqrs_detect(x[0], fs=fs, verbose=False)
        rows.append(("wfdb XQRS (MLII)", *ec57(MITDB_100, np.asarray(xq), fs), time.perf_counter() - t))
    out = ["### 1. QRS detection, MIT-BIH 100 (EC57: beats only, first 5 min excluded, 150 ms window)", ""]
    out += ["| detector | Se % | +P % | time s | time vs mmdx |", "|---|---|---|---|---|"]
    out += [f"| {n} | {se:.2f} | {pp:.2f} | {tt:.2f} | {tt / t_ours:.1f}x |" for n, se, pp, tt in rows]
    return out


def _nk_intervals(sig: np.ndarray, fs: int) -> tuple[dict[str, float], dict[str, Any]]:
    """neurokit2 DWT delineation on one lead: median per-beat PR, QRS, QT (ms)."""
    clean = nk.ecg_clean(sig, sampling_rate=fs)
    _, rp = nk.ecg_peaks(clean, sampling_rate=fs)
    _, w = nk.ecg_delineate(clean, rp, sampling_rate=fs, method="dwt")
    p_on = np.asarray(w["ECG_P_Onsets"], dtype=float)
    r_on = np.asarray(w["ECG_R_Onsets"], dtype=float)
    r_off = np.asarray(w["ECG_R_Offsets"], dtype=float)
    t_off = np.asarray(w["ECG_T_Offsets"], dtype=float)
    ms = 1000.0 / fs
    return {
        "PR": float(np.nanmedian(r_on - p_on) * ms),
        "QRS": float(np.nanmedian(r_off - r_on) * ms),
        "QT": float(np.nanmedian(t_off - r_on) * ms),
    }, w


def part_dicom() -> list[str]:
    rec = read_ecg(DICOM_ECG)
    a = analyze(rec)
    dev = {"PR": 161.0, "QRS": 75.0, "QT": 368.0}
    ours = {
        "PR": a.measurement(LOINC.PR_INTERVAL),
        "QRS": a.measurement(LOINC.QRS_DURATION),
        "QT": a.measurement(LOINC.QT_INTERVAL),
    }
    nk_v, _ = _nk_intervals(rec.lead("II").astype(float), int(rec.sampling_rate_hz))
    tol = {"PR": 10, "QRS": 10, "QT": 25}
    out = ["### 2. DICOM sample (Mortara, 1000 Hz) vs the device's global intervals", ""]
    out += [
        "| interval | device | mmdx | mmdx - device | neurokit2 (II, dwt) | nk - device | IEC limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in dev:
        m = ours[k]
        v = m.value if m else float("nan")
        out.append(
            f"| {k} ms | {dev[k]:.0f} | {v:.0f} | {v - dev[k]:+.0f} | {nk_v[k]:.0f} | {nk_v[k] - dev[k]:+.0f} "
            f"| ±{tol[k]} |"
        )
    return out


def part_ludb() -> list[str]:
    rec = read_ecg(LUDB_1)
    a = analyze(rec)
    ref = ludb_reference(LUDB_1)
    fs = rec.sampling_rate_hz
    ms = 1000.0 / fs
    fid = {b.sample: dict(b.fiducials) for b in a.beats}
    keys = ("p_on", "qrs_on", "qrs_off", "t_off")
    err: dict[str, list[float]] = {k: [] for k in (*keys, "PR", "QRS", "QT")}
    for i, r in enumerate(ref["r"]):
        s = min(fid, key=lambda x: abs(x - r))
        f = fid[s]
        for k in keys:
            if k in f:
                err[k].append((f[k] - ref[k][i]) * ms)
        if "p_on" in f:
            err["PR"].append(((f["qrs_on"] - f["p_on"]) - (ref["qrs_on"][i] - ref["p_on"][i])) * ms)
        err["QRS"].append(((f["qrs_off"] - f["qrs_on"]) - (ref["qrs_off"][i] - ref["qrs_on"][i])) * ms)
        if "t_off" in f:
            err["QT"].append(((f["t_off"] - f["qrs_on"]) - (ref["t_off"][i] - ref["qrs_on"][i])) * ms)
    # neurokit2 on lead II, per beat
    _, w = _nk_intervals(rec.lead("II").astype(float), int(fs))
    nk_err: dict[str, list[float]] = {k: [] for k in err}
    nk_keys = {"p_on": "ECG_P_Onsets", "qrs_on": "ECG_R_Onsets", "qrs_off": "ECG_R_Offsets", "t_off": "ECG_T_Offsets"}
    arrs = {k: np.asarray(w[v], dtype=float) for k, v in nk_keys.items()}
    for i in range(len(ref["r"])):
        j = int(np.nanargmin(np.abs(arrs["qrs_on"] - ref["qrs_on"][i])))
        f = {k: arrs[k][j] for k in keys}
        for k in keys:
            if np.isfinite(f[k]):
                nk_err[k].append((f[k] - ref[k][i]) * ms)
        nk_err["PR"].append(((f["qrs_on"] - f["p_on"]) - (ref["qrs_on"][i] - ref["p_on"][i])) * ms)
        nk_err["QRS"].append(((f["qrs_off"] - f["qrs_on"]) - (ref["qrs_off"][i] - ref["qrs_on"][i])) * ms)
        nk_err["QT"].append(((f["t_off"] - f["qrs_on"]) - (ref["t_off"][i] - ref["qrs_on"][i])) * ms)
    lim = {"PR": "±10 / 10", "QRS": "±10 / 10", "QT": "±25 / 30"}

    def fmt(v: list[float]) -> str:
        v2 = [x for x in v if np.isfinite(x)]
        return f"{np.mean(v2):+.1f} ± {np.std(v2):.1f} (n={len(v2)})" if v2 else "n/a"

    out = [
        f"### 3. LUDB record 1 vs cardiologists ({len(ref['r'])} fully annotated beats; "
        "global = earliest/latest over 12 leads)",
        "",
    ]
    out += [
        "| boundary / interval | mmdx error ms (mean ± SD) | neurokit2 (II, dwt) | IEC mean / SD limit |",
        "|---|---|---|---|",
    ]
    for k in err:
        out.append(f"| {k} | {fmt(err[k])} | {fmt(nk_err[k])} | {lim.get(k, '')} |")
    return out


def part_aecg() -> list[str]:
    from tests.ecg.test_delineation import aecg_errors

    err = aecg_errors()
    lim = {"PR": "±10 / 10", "QRS": "±10 / 10", "QT": "±25 / 30"}
    out = [
        "### 3b. HL7 aECG example (subject1_0.xml): mmdx per-beat boundaries vs the file's per-beat global marks",
        "",
    ]
    out += ["| boundary / interval | mmdx error ms (mean ± SD) | IEC mean / SD limit |", "|---|---|---|"]
    for k, v in err.items():
        out.append(f"| {k} | {np.mean(v):+.1f} ± {np.std(v):.1f} (n={len(v)}) | {lim.get(k, '')} |")
    return out


def _ludb_mark_spread() -> dict[str, tuple[float, float]]:
    """How much the earliest/latest-over-12-leads reference gains from the marks' own scatter (ms).

    For each boundary: the extreme over leads of each lead's *mean* mark (what a noise-free annotator
    would give) and the mean over beats of the per-beat extreme (the reference).  The difference is the
    order-statistic widening of an extreme of 12 independently noisy marks.
    """
    leads = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
    ref = ludb_reference(LUDB_1)
    rel: dict[str, list[list[float]]] = {"qrs_on": [], "qrs_off": [], "t_off": []}
    for lead in leads:
        a = wfdb.rdann(str(LUDB_1), lead)
        sym, smp = list(a.symbol), [int(v) for v in a.sample]
        rows: dict[str, list[float]] = {k: [] for k in rel}
        for r in ref["r"]:
            q = [j for j in range(1, len(sym) - 1) if sym[j] == "N" and abs(smp[j] - r) <= 60]
            t = [j for j in range(1, len(sym) - 1) if sym[j] == "t" and 50 <= smp[j] - r <= 400]
            rows["qrs_on"].append(smp[q[0] - 1] - r if q else np.nan)
            rows["qrs_off"].append(smp[q[0] + 1] - r if q else np.nan)
            rows["t_off"].append(smp[t[0] + 1] - r if t else np.nan)
        for k in rel:
            rel[k].append(rows[k])
    out = {}
    for k, v in rel.items():
        arr = np.asarray(v, dtype=float) * 2.0  # leads x beats, ms
        ext = np.nanmin if k == "qrs_on" else np.nanmax
        out[k] = (float(ext(np.nanmean(arr, axis=1))), float(np.nanmean(ext(arr, axis=0))))
    return out


def part_ludb_leads() -> list[str]:
    """Per-lead boundaries vs the same lead's cardiologist marks (every marked beat of every lead)."""
    from tests.ecg.test_delineation import ludb_lead_errors

    err = ludb_lead_errors()
    out = [
        "### 3c. LUDB record 1, per lead: mmdx per-lead boundaries vs the same lead's cardiologist marks",
        "",
        "| boundary | mean ± SD ms | median ms | within 20 ms | n |",
        "|---|---|---|---|---|",
    ]
    for k, v in err.items():
        a = np.asarray(v)
        out.append(
            f"| {k} | {a.mean():+.1f} ± {a.std():.1f} | {np.median(a):+.1f} | {100 * np.mean(np.abs(a) <= 20):.0f} % "
            f"| {a.size} |"
        )
    spread = _ludb_mark_spread()
    out += [
        "",
        "Reference widening by the marks' scatter (relative to lead II R; extreme over leads of each lead's mean mark"
        " vs mean over beats of the per-beat extreme):",
        "",
        "| boundary | extreme of lead means ms | mean of per-beat extremes ms | widening ms |",
        "|---|---|---|---|",
    ]
    for k, (m1, m2) in spread.items():
        out.append(f"| {k} | {m1:+.1f} | {m2:+.1f} | {abs(m2 - m1):.1f} |")
    return out


SHARED_EGM = ROOT.parent / "shared" / "data" / "ecg" / "wfdb" / "egm_muse-sinus" / "muse-sinus"


def part_egm_muse() -> list[str]:
    """Weak check: per-beat boundaries vs ecgpuwave's program-made ones (lead I only) on the GE MUSE sample.

    The record and its ``.ecgpuwave`` annotations are GPL: read in place from ../shared, never copied.
    """
    head = ["### 3d. egm_muse-sinus (GE MUSE, 12 leads): mmdx vs ecgpuwave's single-lead (I) boundaries", ""]
    if not SHARED_EGM.with_suffix(".hea").exists():
        return [*head, "(../shared/data/ecg/wfdb/egm_muse-sinus not present: skipped)"]
    a = analyze(read_ecg(SHARED_EGM.with_suffix(".hea")))
    ann = wfdb.rdann(str(SHARED_EGM), "ecgpuwave")
    sym, smp = list(ann.symbol), [int(v) for v in ann.sample]
    marks: list[dict[str, int]] = []
    for j in range(1, len(sym) - 1):
        if sym[j] == "N" and sym[j - 1] == "(" and sym[j + 1] == ")":
            m = {"qrs_on": smp[j - 1], "qrs_off": smp[j + 1]}
            p = [i for i in range(1, j) if sym[i] == "p" and 0 < smp[j] - smp[i] < 300 and sym[i - 1] == "("]
            t = [i for i in range(j, len(sym) - 1) if sym[i] == "t" and 0 < smp[i] - smp[j] < 400 and sym[i + 1] == ")"]
            if p:
                m["p_on"] = smp[p[-1] - 1]
            if t:
                m["t_off"] = smp[t[0] + 1]
            marks.append(m)
    ours = [dict(b.fiducials) for b in a.beats if b.fiducials]
    err: dict[str, list[float]] = {k: [] for k in ("p_on", "qrs_on", "qrs_off", "t_off", "PR", "QRS", "QT")}
    for m in marks:
        o = min(ours, key=lambda d: abs(d["qrs_on"] - m["qrs_on"]))
        if abs(o["qrs_on"] - m["qrs_on"]) > 50:
            continue
        for k in ("p_on", "qrs_on", "qrs_off", "t_off"):
            if k in m and k in o:
                err[k].append((o[k] - m[k]) * 2.0)
        for k, (a0, a1) in {"PR": ("p_on", "qrs_on"), "QRS": ("qrs_on", "qrs_off"), "QT": ("qrs_on", "t_off")}.items():
            if all(x in m and x in o for x in (a0, a1)):
                err[k].append(((o[a1] - o[a0]) - (m[a1] - m[a0])) * 2.0)
    out = [*head, "| boundary / interval | mmdx - ecgpuwave ms (mean ± SD) |", "|---|---|"]
    for k, v in err.items():
        out.append(f"| {k} | {np.mean(v):+.1f} ± {np.std(v):.1f} (n={len(v)}) |" if v else f"| {k} | n/a |")
    return out


def part_gain() -> list[str]:
    """Gain invariance: each LUDB lead scaled x10 and x0.1 in turn; the largest move of any per-beat boundary."""
    from dataclasses import replace

    rec = read_ecg(LUDB_1)
    base = {b.sample: dict(b.fiducials) for b in analyze(rec).beats if b.fiducials}
    worst = {k: 0.0 for k in ("p_on", "p_off", "qrs_on", "qrs_off", "t_off")}
    sig = np.asarray(rec.signal, dtype=np.float64)
    for lead in range(sig.shape[0]):
        for gain in (10.0, 0.1):
            x = sig.copy()
            x[lead] *= gain
            a = analyze(replace(rec, signal=x.astype(np.float32)))
            for b in a.beats:
                ref = base.get(b.sample)
                for k, v in dict(b.fiducials).items():
                    if ref is not None and k in ref:
                        worst[k] = max(worst[k], abs(v - ref[k]) * 1000.0 / rec.sampling_rate_hz)
    return [
        "### 3e. Gain invariance (LUDB 1, each lead x10 and x0.1 in turn, 24 analyses)",
        "",
        "| boundary | largest move ms |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in worst.items()],
    ]


def part_synthetic() -> list[str]:
    """Exact truth: the IEC set, a small late T in few leads, and the T end at fast rates (P on T)."""
    from tests.ecg._synth import escape, sinus
    from tests.ecg.test_delineation import _case, _delineate, _late_t_error_ms

    def fmt(v: list[float]) -> str:
        return f"{np.mean(v):+.1f} ± {np.std(v):.1f} (n={len(v)})"

    iec = [_case(s, hr) for s, hr in zip(range(24), np.linspace(40, 110, 24), strict=True)]
    out = ["### 3f. Synthetic records with exact truth", ""]
    out += ["| set | interval | mmdx error ms (mean ± SD) | IEC mean / SD limit |", "|---|---|---|---|"]
    for k, lim in (("PR", "±10 / 10"), ("QRS", "±10 / 10"), ("QT", "±25 / 30")):
        out.append(f"| 24 records, 12 leads, 40-110/min, wander + mains | {k} | {fmt([e[k] for e in iec])} | {lim} |")
    hrs = np.linspace(45, 100, 8)
    for late_ms, late_mv in ((30.0, 0.05), (40.0, 0.08), (50.0, 0.1)):
        e = [_late_t_error_ms(s, hr, late_ms, late_mv) for s, hr in zip(range(8), hrs, strict=True)]
        out.append(
            f"| late T component ({late_mv:g} mV, ends {late_ms:.0f} ms after the main T; 8 records) | QT "
            f"| {fmt(e)} | ±25 / 30 |"
        )
    out += ["", "T end at fast rates (3 records each; truth QT; sinus PR 160 ms, P 100 ms):", ""]
    out += [
        "| rhythm | rate /min | truth QT ms | next P onset ms | mmdx QT ms (or withheld) |",
        "|---|---|---|---|---|",
    ]
    for kind, gen in (("sinus", sinus), ("junctional", escape)):
        for hr in (100.0, 130.0, 150.0, 170.0):
            got, truth_qt, next_p = [], 0.0, 0.0
            for seed in range(3):
                x, tr = gen(np.random.default_rng(seed), hr)
                rr = float(np.median(np.diff(np.asarray(tr.qrs_s))))
                truth_qt, next_p = 400.0 * rr ** (1.0 / 3.0), 1000.0 * rr - 160.0
                fd, ms = _delineate(x, 500.0)
                got.append("withheld" if fd.t_off is None else f"{(fd.t_off - fd.qrs_on) * ms:.0f}")
            nxt = f"{next_p:.0f}" if kind == "sinus" else "-"
            out.append(f"| {kind} | {hr:.0f} | {truth_qt:.0f} | {nxt} | {', '.join(got)} |")
    return out


def _speed_records(n: int, seed: int = 0) -> list[Any]:
    """``n`` 10 s, 500 Hz, 12-lead records: LUDB 1 and the DICOM sample resampled to 500 Hz, each copy with its own
    noise (and every fourth with 50 Hz mains) so that no cache can serve one record's work to another."""
    from dataclasses import replace

    from ecg.signal.conditioning import resample

    rng = np.random.default_rng(seed)
    ludb, dcm = read_ecg(LUDB_1), read_ecg(DICOM_ECG)
    dcm_500 = resample(np.asarray(dcm.signal, dtype=np.float64), dcm.sampling_rate_hz, 500.0)[:, :5000]
    bases = [np.asarray(ludb.signal, dtype=np.float64), dcm_500]
    t = np.arange(5000) / 500.0
    out = []
    for i in range(n):
        x = bases[i % 2] + rng.normal(0.0, 0.015, (12, 5000))
        if i % 4 == 3:
            x = x + 0.08 * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 6.3))
        out.append(replace(ludb, signal=x.astype(np.float32), source=f"speed-{i}", sampling_rate_hz=500.0))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds and this process's CPU seconds (CPU time is what load from others distorts least)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def part_speed(repeat: int, n_records: int, nk_records: int, workers: int) -> list[str]:
    """Per-record time: ``analyze`` one by one, ``analyze_batch`` in one call, neurokit2 on all 12 leads.

    Single and batch runs alternate ``repeat`` times over the same records and the medians are
    reported (wall and CPU time of this process), so that load from other processes hits both alike.
    """
    from ecg.analysis import to_json

    recs = _speed_records(n_records)
    n = len(recs)
    for r in recs[:4]:  # warm-up (imports, filter designs)
        analyze(r)
    analyze_batch(recs[:4])
    rounds: list[tuple[float, float, float, float, float]] = []
    single: list[Any] = []
    batch: list[Any] = []
    for _ in range(repeat):
        single, ws, cs = _timed(lambda: [analyze(r) for r in recs])
        batch, wb, cb = _timed(lambda: analyze_batch(recs, workers=1))
        auto, wa, _ = _timed(lambda: analyze_batch(recs))
        rounds.append((ws / n, cs / n, wb / n, cb / n, wa / n))
    same = sum(isinstance(b, type(a)) and to_json(b) == to_json(a) for a, b in zip(single, batch, strict=True))
    same_auto = sum(isinstance(b, type(a)) and to_json(b) == to_json(a) for a, b in zip(single, auto, strict=True))
    ws, cs, wb, cb, wa = (float(np.median([r[k] for r in rounds])) for k in range(5))
    ww = cw = float("nan")
    if workers > 1:
        _, ww, cw = _timed(lambda: analyze_batch(recs, workers=workers))
        ww, cw = ww / n, cw / n
    _, wn, cn = _timed(
        lambda: [
            nk.ecg_process(lead, sampling_rate=int(r.sampling_rate_hz))
            for r in recs[:nk_records]
            for lead in np.asarray(r.signal, dtype=float)
        ]
    )
    wn, cn = wn / nk_records, cn / nk_records
    out = [
        f"### 4. End to end, 10 s 500 Hz 12-lead records ({n} records: LUDB 1 and the DICOM sample resampled "
        "to 500 Hz, each copy with its own noise, every 4th with 50 Hz mains)",
        "",
        f"Median of {repeat} alternating rounds (one-by-one, batch in this process, batch by default); neurokit2 "
        f"on the first {nk_records} records. Batch results identical to one-by-one `analyze` (`to_json` equal): "
        f"{same}/{n} in this process, {same_auto}/{n} by default ({os.cpu_count()} CPUs here).",
        "",
        "| tool | wall ms / record | CPU ms / record | neurokit2 / tool (wall) | vs analyze one by one (wall, CPU) |",
        "|---|---|---|---|---|",
        f"| mmdx `analyze`, one record per call (conditioning, detection, delineation, measurements, statements) "
        f"| {1000 * ws:.1f} | {1000 * cs:.1f} | {wn / ws:.1f}x | 1.00x, 1.00x |",
        f"| mmdx `analyze_batch(workers=1)`, {n} records in one call, this process | {1000 * wb:.1f} "
        f"| {1000 * cb:.1f} | {wn / wb:.1f}x | {ws / wb:.2f}x, {cs / cb:.2f}x |",
        f"| mmdx `analyze_batch`, {n} records in one call, default (forked workers, one per CPU; start-up "
        f"included) | {1000 * wa:.1f} | - | {wn / wa:.1f}x | {ws / wa:.2f}x, - |",
    ]
    if workers > 1:
        out.append(
            f"| mmdx `analyze_batch(workers={workers})` (start-up included; CPU = parent only) "
            f"| {1000 * ww:.1f} | {1000 * cw:.1f} | {wn / ww:.1f}x | {ws / ww:.2f}x, - |"
        )
    out.append(f"| neurokit2 `ecg_process` x 12 leads | {1000 * wn:.1f} | {1000 * cn:.1f} | 1.0x | - |")
    # how much of a record's time does not grow with its samples (what stacking records could at most remove):
    # the same records analysed at a quarter of the rate, t = fixed + per_sample * n
    from dataclasses import replace

    from core.config import EcgConfig
    from ecg.signal.conditioning import resample

    quarter = [
        replace(r, signal=resample(np.asarray(r.signal, dtype=float), 500.0, 125.0).astype(np.float32),
                sampling_rate_hz=125.0)
        for r in recs[:16]
    ]  # fmt: skip
    cfg_q = EcgConfig(target_rate_hz=125.0)
    _, _, c_q = _timed(lambda: [analyze(r, cfg_q) for r in quarter])
    _, _, c_f = _timed(lambda: [analyze(r) for r in recs[:16]])
    c_q, c_f = c_q / 16, c_f / 16
    fixed = (4 * c_q - c_f) / 3
    out += [
        "",
        f"Size-independent part of one record's CPU time: {1000 * fixed:.1f} of {1000 * c_f:.1f} ms "
        f"(the same records at 125 Hz, a quarter of the samples, take {1000 * c_q:.1f} ms; "
        "t = fixed + per-sample x n). Stacking records can at most remove the fixed part of the stacked steps.",
    ]
    out += [
        "",
        "Rounds, ms / record (one-by-one wall/CPU | batch wall/CPU): "
        + "; ".join(f"{1e3 * a:.1f}/{1e3 * b:.1f} | {1e3 * c:.1f}/{1e3 * d:.1f}" for a, b, c, d, _ in rounds),
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="alternating single/batch rounds in part 4")
    ap.add_argument("--records", type=int, default=64, help="records in the part-4 batch")
    ap.add_argument("--nk-records", type=int, default=3, help="records neurokit2 is timed on (0.6 s+ each)")
    ap.add_argument("--workers", type=int, default=0, help="also time analyze_batch(workers=N) when N > 1")
    ap.add_argument("--speed-only", action="store_true", help="run part 4 only")
    ap.add_argument("--delineation-only", action="store_true", help="run parts 2-3f (wave boundaries) only")
    ap.add_argument("--no-xqrs", action="store_true", help="skip wfdb XQRS on the 30-min record (slow)")
    args = ap.parse_args()
    lines: list[str] = []

    def speed() -> list[str]:
        return part_speed(args.repeat, args.records, args.nk_records, args.workers)

    parts: list[Callable[[], list[str]]] = [
        lambda: part_detection(not args.no_xqrs),
        part_dicom,
        part_ludb,
        part_aecg,
        part_ludb_leads,
        part_egm_muse,
        part_gain,
        part_synthetic,
        speed,
    ]
    if args.delineation_only:
        parts = parts[1:-1]
    for part in [speed] if args.speed_only else parts:
        lines += [*part(), ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
