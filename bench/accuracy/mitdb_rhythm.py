"""Rhythm statements on 30 s windows of the MIT-BIH development records: AF calls and false STAT alarms.

Run from the repository root::

    .venv/bin/python bench/accuracy/mitdb_rhythm.py [--dir ../shared/data/ecg/mitdb_dev] [--windows 6] [--show]

Each record gives ``--windows`` 30 s windows starting at 5 min and every 250 s after; the reference rhythm of a
window is the expert rhythm annotation (``aux_note``) in force at its start and throughout (windows where it
changes are skipped).  Counted: AF called vs annotated (Se, PPV, F1), paced rhythm called vs annotated,
critical (STAT) statements on windows the experts call normal sinus rhythm (false alarms) and on the others, and
windows flagged as poor quality.
neurokit2 has no rhythm classifier: no peer.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import wfdb  # noqa: E402

from core.codes import MMDX, SCT  # noqa: E402
from core.records import EcgRecord  # noqa: E402
from ecg.analysis import analyze  # noqa: E402

WINDOW_S = 30.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "ecg" / "mitdb_dev"))
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--show", action="store_true")
    args = ap.parse_args()
    d = Path(args.dir)
    c: Counter[str] = Counter()
    for hea in sorted(d.glob("*.hea")):
        rid = hea.stem
        ann = wfdb.rdann(str(d / rid), "atr")
        notes = zip(ann.sample, ann.aux_note, strict=True)
        changes = [(int(s), a.strip("\x00")) for s, a in notes if a.startswith("(")]
        for w in range(args.windows):
            fs = 360.0
            a0 = int((300 + 250 * w) * fs)
            a1 = a0 + int(WINDOW_S * fs)
            before = [r for s, r in changes if s <= a0]
            inside = [r for s, r in changes if a0 < s < a1]
            if inside or a1 > int(ann.sample[-1]):
                continue
            ref = before[-1] if before else "(N"
            rec = wfdb.rdrecord(str(d / rid), sampfrom=a0, sampto=a1)
            res = analyze(EcgRecord(np.asarray(rec.p_signal.T, dtype=np.float32), tuple(rec.sig_name), fs, rid))
            codes = {s.concept for s in res.statements}
            af = SCT.ATRIAL_FIBRILLATION in codes
            ref_af = ref == "(AFIB"
            c["windows"] += 1
            c["tp" if af and ref_af else "fp" if af else "fn" if ref_af else "tn"] += 1
            crit = [s.text for s in res.statements if s.critical]
            if crit:
                c["stat on normal" if ref == "(N" else "stat on other"] += 1
            if MMDX.ECG_NOISE in codes:
                c["poor"] += 1
            paced, ref_paced = SCT.PACED_RHYTHM in codes, ref == "(P"
            c["p_" + ("tp" if paced and ref_paced else "fp" if paced else "fn" if ref_paced else "tn")] += 1
            if args.show and (crit or af != ref_af or paced != ref_paced or MMDX.ECG_NOISE in codes):
                print(rid, w, ref, crit, [s.text for s in res.statements][:4])
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    se = tp / max(tp + fn, 1)
    ppv = tp / max(tp + fp, 1)
    f1 = 2 * se * ppv / max(se + ppv, 1e-9)
    print(f"{c['windows']} windows of {WINDOW_S:.0f} s; AF: TP {tp} FP {fp} FN {fn}", end="")
    print(f" -> Se {se:.2f} PPV {ppv:.2f} F1 {f1:.2f}")
    print(f"paced rhythm: TP {c['p_tp']} FP {c['p_fp']} FN {c['p_fn']} TN {c['p_tn']}")
    print(
        f"STAT on windows annotated normal sinus rhythm: {c['stat on normal']}; on other rhythms: "
        f"{c['stat on other']}; flagged poor quality: {c['poor']}"
    )


if __name__ == "__main__":
    main()
