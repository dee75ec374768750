"""Report labeler on a held-out split of the NegBio-labelled Indiana University reports (ChestX-ray14 labels).

Run from the repository root::

    .venv/bin/python bench/accuracy/labeler_split.py [--show LABEL] [--split train|test]

The 3,080 gold-labelled reports are split by a hash of their file name (``split_of``): "train" reports are the
only ones rules were looked at and the per-label policy was fitted on; "test" reports are scored, never read.
Prints micro/macro F1 per split for the labeler (a label is positive when ``label_report`` reads it present; and
present + uncertain) and the keyword peer (the same term table, no negation).  ``--show`` prints the train split's
errors for one label (report text excerpts stay on this machine; the reports are CC BY-NC-ND).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.bench_models import SHARED, _prf, read_iu_reports  # noqa: E402
from core.records import Presence  # noqa: E402
from models.labeler import TERMS, label_report  # noqa: E402
from models.vocabulary import BY_KEY, CHESTXRAY14  # noqa: E402


def split_of(report_id: str) -> str:
    """'train' or 'test', fixed by the report's file name (about half each)."""
    return "train" if hashlib.sha256(report_id.encode()).digest()[0] % 2 == 0 else "test"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", default="")
    ap.add_argument("--kind", default="fn", choices=("fn", "fp"))
    args = ap.parse_args()
    reports = read_iu_reports(SHARED / "NLMCXR_reports.tgz")
    with (SHARED / "negbio_openi_gld_std14.csv").open() as fh:
        gold = {row["filename"]: row for row in csv.DictReader(fh)}
    ids = sorted(i for i in gold if i in reports)
    keyword = {k: re.compile("|".join(TERMS[k])) for k in CHESTXRAY14}
    results = {i: label_report(reports[i], CHESTXRAY14) for i in ids}
    systems: dict[str, Any] = {
        "mmdx present": lambda i: {k for k, r in results[i].items() if r.presence is Presence.PRESENT},
        "present+uncertain": lambda i: {k for k, r in results[i].items() if r.presence is not Presence.ABSENT},
        "keyword peer": lambda i: {k for k, rx in keyword.items() if rx.search(reports[i].lower())},
    }
    preds = {n: {i: fn(i) for i in ids} for n, fn in systems.items()}
    for part in ("train", "test"):
        sub = [i for i in ids if split_of(i) == part]
        print(f"\n{part}: {len(sub)} reports")
        print(f"{'label':20s} {'n':>4s}  " + "  ".join(f"{n:>22s}" for n in systems))
        totals = {n: [0, 0, 0] for n in systems}
        macro: dict[str, list[float]] = {n: [] for n in systems}
        for k in CHESTXRAY14:
            col = BY_KEY[k].chestxray14
            assert col is not None
            pos = {i for i in sub if gold[i][col] == "1"}
            cells = []
            for n in systems:
                got = {i for i in sub if k in preds[n][i]}
                tp, fp, fn = len(got & pos), len(got - pos), len(pos - got)
                for j, v in enumerate((tp, fp, fn)):
                    totals[n][j] += v
                p, r, f = _prf(tp, fp, fn)
                if pos:
                    macro[n].append(f)
                cells.append(f"P{p:.2f} R{r:.2f} F{f:.2f}")
            print(f"{col:20s} {len(pos):4d}  " + "  ".join(f"{c:>22s}" for c in cells))
        print(
            f"{'micro':20s} {'':4s}  "
            + "  ".join(f"{'P{:.2f} R{:.2f} F{:.3f}'.format(*_prf(*totals[n])):>22s}" for n in systems)
        )
        cells = "  ".join(f"{sum(macro[n]) / len(macro[n]):>22.3f}" for n in systems)
        print(f"{'macro F1 (n>0)':20s} {'':4s}  " + cells)
    if args.show:
        k = args.show
        col = BY_KEY[k].chestxray14
        for i in ids:
            if split_of(i) != "train":
                continue
            g = gold[i][col] == "1"
            p = k in preds["mmdx present"][i]
            if (args.kind == "fn" and g and not p) or (args.kind == "fp" and p and not g):
                r = results[i].get(k)
                print("----", i, r.presence.name if r else None, "|", reports[i].replace("\n", " ")[:400])


if __name__ == "__main__":
    main()
