"""Statements against cardiologists' diagnoses on LUDB (per-class sensitivity / PPV), with neurokit2's rhythm peer.

Run from the repository root::

    .venv/bin/python bench/accuracy/ludb_statements.py [--dir ../shared/data/ecg/ludb_dev] [--limit N] [--show]

Each record is read with ``ecg.readers.read_ecg`` and analysed with ``ecg.analysis.analyze``; the diagnoses come
from ``ludb.csv``.  A class counts as called when any statement maps to it (table below); the reference is the
cardiologists' text.  Rhythm, conduction and pacing classes are pooled into one micro sensitivity / PPV, the
measure the issue sets at >= 0.80.  Also counted: records with no statement at all, "ECG normal" on a record
with any reference abnormality (rhythm other than sinus, conduction, pacing, ischemia/scar/STEMI), and critical
(STAT) statements.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.codes import SCT  # noqa: E402
from ecg.analysis import analyze  # noqa: E402
from ecg.readers import read_ecg  # noqa: E402

#: reference class -> substrings of ludb.csv text that name it
REFERENCE: dict[str, tuple[str, ...]] = {
    "sinus": ("sinus rhythm", "sinus bradycardia", "sinus tachycardia", "sinus arrhythmia"),
    "sinus bradycardia": ("sinus bradycardia",),
    "sinus tachycardia": ("sinus tachycardia",),
    "atrial fibrillation": ("atrial fibrillation",),
    "atrial flutter": ("atrial flutter",),
    "paced": ("pacing", "pacemaker"),
    "1st degree AV block": ("i degree av block",),
    "2nd degree AV block": ("ii degree av block",),
    "complete AV block": ("iii degree av block", "complete av block"),
    "complete RBBB": ("complete right bundle branch block",),
    "incomplete RBBB": ("incomplete right bundle branch block",),
    "complete LBBB": ("complete left bundle branch block",),
    "incomplete LBBB": ("incomplete left bundle branch block",),
    "LAFB": ("left anterior hemiblock", "left anterior fascicular"),
    "IVCD": ("non-specific intravintricular conduction delay", "intraventricular conduction delay"),
    "PAC": ("atrial extrasystole",),
    "PVC": ("ventricular extrasystole",),
    "STEMI": ("stemi:",),
    "infarct/scar": ("scar formation", "stemi:"),
}
#: our statement concept -> class
CALLED: dict[str, str] = {
    SCT.SINUS_RHYTHM.value: "sinus",
    SCT.SINUS_BRADYCARDIA.value: "sinus bradycardia",
    SCT.SINUS_TACHYCARDIA.value: "sinus tachycardia",
    SCT.ATRIAL_FIBRILLATION.value: "atrial fibrillation",
    SCT.ATRIAL_FLUTTER.value: "atrial flutter",
    SCT.PACED_RHYTHM.value: "paced",
    SCT.FIRST_DEGREE_AV_BLOCK.value: "1st degree AV block",
    SCT.SECOND_DEGREE_AV_BLOCK.value: "2nd degree AV block",
    SCT.COMPLETE_AV_BLOCK.value: "complete AV block",
    SCT.COMPLETE_RBBB.value: "complete RBBB",
    "713426002": "incomplete RBBB",
    SCT.COMPLETE_LBBB.value: "complete LBBB",
    "251120003": "incomplete LBBB",
    SCT.LAFB.value: "LAFB",
    SCT.IVCD.value: "IVCD",
    SCT.PREMATURE_ATRIAL_COMPLEX.value: "PAC",
    SCT.PREMATURE_VENTRICULAR_COMPLEX.value: "PVC",
    SCT.STEMI.value: "STEMI",
    "164865005": "infarct/scar",
}
#: classes pooled into the issue's "rhythm, conduction and pacing" figure
POOLED = (
    "sinus",
    "atrial fibrillation",
    "atrial flutter",
    "paced",
    "1st degree AV block",
    "2nd degree AV block",
    "complete AV block",
    "complete RBBB",
    "incomplete RBBB",
    "complete LBBB",
    "incomplete LBBB",
    "LAFB",
    "IVCD",
)
ABNORMAL_REF = (
    "atrial fibrillation",
    "atrial flutter",
    "paced",
    "1st degree AV block",
    "2nd degree AV block",
    "complete AV block",
    "complete RBBB",
    "complete LBBB",
    "LAFB",
    "infarct/scar",
    "STEMI",
)


def reference(row: dict[str, str]) -> set[str]:
    text = " " + " ".join(v for k, v in row.items() if k not in ("ID", "Sex", "Age")).lower().replace("\n", " ")
    text = text.replace("wandering atrial pacemaker", "wandering atrial rhythm")
    out = {c for c, keys in REFERENCE.items() if any(re.search(r"(?<![a-z])" + re.escape(k), text) for k in keys)}
    if "sinus bradycardia" in out or "sinus tachycardia" in out:
        out.add("sinus")
    return out


def called(statements: tuple) -> set[str]:
    out = {CALLED[s.concept.value] for s in statements if s.concept is not None and s.concept.value in CALLED}
    if "sinus bradycardia" in out or "sinus tachycardia" in out:
        out.add("sinus")
    if "STEMI" in out:
        out.add("infarct/scar")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "ecg" / "ludb_dev"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--show", action="store_true", help="print each record's mismatches")
    args = ap.parse_args()
    d = Path(args.dir)
    with open(d / "ludb.csv", encoding="utf-8") as f:
        rows = {r["ID"].strip(): r for r in csv.DictReader(f)}
    ids = sorted((p.stem for p in d.glob("*.hea")), key=int)
    if args.limit:
        ids = ids[: args.limit]
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    silent = normal_on_abnormal = stat = poor = 0
    t0 = time.perf_counter()
    for rid in ids:
        a = analyze(read_ecg(d / f"{rid}.hea"))
        ref = reference(rows[rid])
        got = called(a.statements)
        for c in REFERENCE:
            if c in ref and c in got:
                tp[c] += 1
            elif c in got:
                fp[c] += 1
            elif c in ref:
                fn[c] += 1
        if not [s for s in a.statements if s.concept is not None]:
            silent += 1
        if any(s.concept == SCT.NORMAL_ECG for s in a.statements) and ref & set(ABNORMAL_REF):
            normal_on_abnormal += 1
        if any(s.critical for s in a.statements):
            stat += 1
        if any(s.concept is not None and s.concept.value == "ecg-noise" for s in a.statements):
            poor += 1
        if args.show and (ref ^ got) & {*POOLED, "infarct/scar", "PAC", "PVC"}:
            print(
                rid,
                "missed",
                sorted(ref - got),
                "extra",
                sorted(got - ref),
                "|",
                "; ".join(s.text for s in a.statements),
            )
    dt = time.perf_counter() - t0
    print(f"{len(ids)} LUDB records in {dt:.1f} s")
    print(f"{'class':24s} {'ref':>4s} {'TP':>4s} {'FP':>4s} {'FN':>4s} {'Se':>5s} {'PPV':>5s}")
    for c in REFERENCE:
        n = tp[c] + fn[c]
        se = tp[c] / n if n else float("nan")
        ppv = tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else float("nan")
        print(f"{c:24s} {n:4d} {tp[c]:4d} {fp[c]:4d} {fn[c]:4d} {se:5.2f} {ppv:5.2f}")
    ptp = sum(tp[c] for c in POOLED)
    pfp = sum(fp[c] for c in POOLED)
    pfn = sum(fn[c] for c in POOLED)
    print(f"pooled rhythm/conduction/pacing: Se {ptp / max(ptp + pfn, 1):.2f} PPV {ptp / max(ptp + pfp, 1):.2f}")
    print(
        f"records with no coded statement: {silent}; 'ECG normal' on an abnormal record: {normal_on_abnormal}; "
        f"records with a critical (STAT) statement: {stat}; flagged poor quality: {poor}"
    )


if __name__ == "__main__":
    main()
