"""QRS detection on the MIT-BIH development records per ANSI/AAMI EC57, mmdx beside neurokit2.

Run from the repository root::

    .venv/bin/python bench/accuracy/mitdb_ec57.py [--dir ../shared/data/ecg/mitdb_dev] [--records 100,102]

EC57 rules: beat annotations only, the first 5 minutes excluded, a detection within 150 ms of a reference beat
matches it.  Gross sensitivity and positive predictivity pool every record's counts; the records with the lowest
Se and +P are listed.  mmdx: conditioning + ``detect_qrs`` on both leads; neurokit2: ``ecg_clean`` +
``ecg_peaks`` (its default method) on the first lead (MLII), as its users run it.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import neurokit2 as nk  # noqa: E402
import wfdb  # noqa: E402
from wfdb import processing  # noqa: E402

from ecg.signal.conditioning import condition  # noqa: E402
from ecg.signal.qrs import detect_qrs  # noqa: E402

BEATS = set("NLRBAaJSVrFejnE/fQ?")
warnings.filterwarnings("ignore")


def counts(ref: np.ndarray, found: np.ndarray, fs: float) -> tuple[int, int, int]:
    """(TP, FN, FP) with EC57's 150 ms window."""
    c = processing.compare_annotations(ref, found, int(0.15 * fs))
    return int(c.tp), int(c.fn), int(c.fp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "ecg" / "mitdb_dev"))
    ap.add_argument("--records", default="")
    args = ap.parse_args()
    d = Path(args.dir)
    ids = args.records.split(",") if args.records else sorted(p.stem for p in d.glob("*.hea"))
    tot = {"mmdx": np.zeros(3, int), "neurokit2": np.zeros(3, int)}
    per: list[tuple[str, str, float, float]] = []
    t_used = {"mmdx": 0.0, "neurokit2": 0.0}
    for rid in ids:
        rec = wfdb.rdrecord(str(d / rid))
        ann = wfdb.rdann(str(d / rid), "atr")
        fs = float(rec.fs)
        start = int(300 * fs)
        ref = np.array([s for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEATS and s >= start])
        x = np.nan_to_num(rec.p_signal.T)
        t = time.perf_counter()
        c = condition(x, fs)
        ours = np.round(detect_qrs(c.signal, c.fs) * fs / c.fs).astype(int)
        t_used["mmdx"] += time.perf_counter() - t
        t = time.perf_counter()
        _, info = nk.ecg_peaks(nk.ecg_clean(x[0], sampling_rate=int(fs)), sampling_rate=int(fs))
        t_used["neurokit2"] += time.perf_counter() - t
        theirs = np.asarray(info["ECG_R_Peaks"])
        for name, found in (("mmdx", ours), ("neurokit2", theirs)):
            tp, fn, fp = counts(ref, found[found >= start], fs)
            tot[name] += (tp, fn, fp)
            per.append((name, rid, 100 * tp / max(tp + fn, 1), 100 * tp / max(tp + fp, 1)))
    print(f"{len(ids)} MIT-BIH records (EC57: beats only, first 5 min excluded, 150 ms window)")
    for name, (tp, fn, fp) in tot.items():
        print(
            f"{name:10s} gross Se {100 * tp / (tp + fn):6.2f}%  +P {100 * tp / (tp + fp):6.2f}%  "
            f"(TP {tp}, FN {fn}, FP {fp}; {t_used[name]:.1f} s)"
        )
        mine = [p for p in per if p[0] == name]
        worst_se = sorted(mine, key=lambda p: p[2])[:3]
        worst_pp = sorted(mine, key=lambda p: p[3])[:3]
        print("   lowest Se: " + ", ".join(f"{r} {s:.2f}" for _, r, s, _ in worst_se))
        print("   lowest +P: " + ", ".join(f"{r} {p:.2f}" for _, r, _, p in worst_pp))


if __name__ == "__main__":
    main()
