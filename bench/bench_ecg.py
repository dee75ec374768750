"""ECG analysis benchmark: mmdx vs neurokit2 (and wfdb XQRS) on the same records, in one run.

Run from the repository root::

    .venv/bin/python bench/bench_ecg.py [--repeat 10] [--no-xqrs]

Prints, for each part, both tools' figures and their ratio:

1. QRS detection on MIT-BIH record 100 per ANSI/AAMI EC57 (beat annotations only, first 5 min
   excluded, 150 ms window): Se, +P and time, for mmdx, neurokit2's default detector and wfdb XQRS;
2. global intervals on the DICOM sample against its device (PR 161, QRS 75, QT 368 ms);
3. wave boundaries on LUDB record 1 against the cardiologists' marks (global = earliest onset /
   latest offset over the 12 leads), and on the HL7 aECG example against its per-beat global marks,
   mean and SD of the differences, with the IEC 60601-2-25 limits;
4. end-to-end time for one 10 s, 500 Hz, 12-lead record (mmdx ``analyze``: conditioning, detection,
   delineation, measurements, statements) vs ``neurokit2.ecg_process`` on all 12 leads, and mmdx batch mode.
"""

from __future__ import annotations

import argparse
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


def part_speed(repeat: int) -> list[str]:
    rec = read_ecg(LUDB_1)
    analyze(rec)
    t = time.perf_counter()
    for _ in range(repeat):
        analyze(rec)
    t_ours = (time.perf_counter() - t) / repeat
    sig = np.asarray(rec.signal, dtype=float)
    t = time.perf_counter()
    for _ in range(max(1, repeat // 3)):
        for lead in sig:
            nk.ecg_process(lead, sampling_rate=int(rec.sampling_rate_hz))
    t_nk = (time.perf_counter() - t) / max(1, repeat // 3)
    batch = [rec] * 20
    t = time.perf_counter()
    analyze_batch(batch)
    t_batch = (time.perf_counter() - t) / len(batch)
    out = ["### 4. End to end, one 10 s 500 Hz 12-lead record (LUDB 1)", ""]
    out += ["| tool | s / record | neurokit2 / tool |", "|---|---|---|"]
    out.append(
        f"| mmdx analyze (conditioning, detection, delineation, measurements, statements) "
        f"| {t_ours:.4f} | {t_nk / t_ours:.1f}x |"
    )
    out.append(f"| mmdx analyze_batch (20 records) | {t_batch:.4f} | {t_nk / t_batch:.1f}x |")
    out.append(f"| neurokit2 ecg_process x 12 leads | {t_nk:.4f} | 1.0x |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--no-xqrs", action="store_true", help="skip wfdb XQRS on the 30-min record (slow)")
    args = ap.parse_args()
    lines: list[str] = []
    parts: list[Callable[[], list[str]]] = [
        lambda: part_detection(not args.no_xqrs),
        part_dicom,
        part_ludb,
        part_aecg,
        lambda: part_speed(args.repeat),
    ]
    for part in parts:
        lines += [*part(), ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
