"""Report labeler on the CheXpert labels, held-out split of the Indiana University reports.

Run from the repository root::

    .venv/bin/python bench/accuracy/labeler_chexpert.py [--show LABEL [--kind fn|fp]]

Gold.  The IU reports carry MeSH "major" codes assigned by human indexers from the report text (Demner-Fushman
et al., JAMIA 2016); :data:`GOLD_MESH` maps them onto the CheXpert labels, following CheXpert's own definitions
(Irvin et al. 2019: congestion and heart failure are Edema, scarring and interstitial markings Lung Opacity, pleural
thickening / scarring and fibrosis Pleural Other; "No Finding" is a report with no finding at all, the indexers'
``normal``).  The codes list findings a report affirms, with no negated or uncertain class, so a CheXpert label is
scored as positive (CheXpert 1 = mmdx *present*; and 1 or -1 = present or *uncertain*) against "coded".  CheXpert's
four values map as 1 -> present, 0 -> absent, -1 -> uncertain, blank -> not mentioned (:data:`CHEXPERT_VALUE`);
that four-way mapping is checked on the CheXpert labeler's own labelled sample reports (``chexpert_labeled_reports
.csv``), all four values, beside the split.

Split.  Reports split by a hash of their id, as ``labeler_split.py`` does (the same function): rules were changed only
from errors seen on "train"; "test" is scored, never read.  ``--show`` prints train errors only.

Peer.  A naive keyword + NegEx labeler in the same run: the same term table, a mention is negated when a negation cue
("no", "not", "without", "negative for", "free of", "absence of") precedes it within six words of its sentence.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.accuracy.labeler_split import split_of  # noqa: E402
from bench.bench_models import SHARED, _prf  # noqa: E402
from core.records import Presence  # noqa: E402
from models.labeler import CHEXPERT_TERMS, OTHER_FINDINGS, TERMS, chexpert_values  # noqa: E402
from models.labeler_nlp import OTHER_FINDING  # noqa: E402
from models.vocabulary import BY_KEY, CHEXPERT  # noqa: E402

NO_FINDING = "No Finding"
#: CheXpert's values and what the labeler calls them.
CHEXPERT_VALUE = {"1.0": Presence.PRESENT, "0.0": Presence.ABSENT, "-1.0": Presence.UNCERTAIN, "": None}

#: CheXpert label -> (MeSH major heading, qualifier regex or "" for any) pairs that code it.
GOLD_MESH: dict[str, tuple[tuple[str, str], ...]] = {
    "Enlarged Cardiomediastinum": (("Mediastinum", r"prominent|widened|enlarged"),),
    "Cardiomegaly": (("Cardiomegaly", ""), ("Cardiac Shadow", r"enlarged")),
    # the indexers code a nodular opacity or density by its shape ("Opacity/.../round"): CheXpert's lung lesion
    "Lung Lesion": (
        ("Nodule", ""),
        ("Mass", ""),
        ("Neoplasms", ""),
        ("Lung Neoplasms", ""),
        ("Opacity", r"round"),
        ("Density", r"round"),
    ),
    "Lung Opacity": (
        ("Opacity", ""),
        ("Airspace Disease", ""),
        ("Infiltrate", ""),
        ("Density", r"lung"),
        ("Markings", r"interstitial"),
        ("Lung", r"interstitial"),
        ("Cicatrix", r"lung"),
        ("Lung Diseases, Interstitial", ""),
    ),
    "Edema": (("Pulmonary Edema", ""), ("Edema", ""), ("Pulmonary Congestion", ""), ("Heart Failure", "")),
    "Consolidation": (("Consolidation", ""),),
    "Pneumonia": (("Pneumonia", ""),),
    "Atelectasis": (("Pulmonary Atelectasis", ""),),
    "Pneumothorax": (("Pneumothorax", ""), ("Hydropneumothorax", ""), ("Hemopneumothorax", "")),
    "Pleural Effusion": (("Pleural Effusion", ""), ("Hydropneumothorax", "")),
    "Pleural Other": (
        ("Thickening", r"pleura"),
        ("Cicatrix", r"pleura"),
        ("Calcinosis", r"pleura"),
        ("Pulmonary Fibrosis", ""),
    ),
    "Fracture": (("Fractures, Bone", ""),),
    "Support Devices": (
        ("Catheters, Indwelling", ""),
        ("Implanted Medical Device", ""),
        ("Tube, Inserted", ""),
        ("Medical Device", ""),
    ),
}

_NEG_CUE = re.compile(r"\b(?:no|not|without|negative for|free of|absence of)\b")
_SENT = re.compile(r"[^.\n]+")


def read_iu(tgz: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """CXR<n> -> (FINDINGS + IMPRESSION text, [(MeSH major heading, qualifiers)]), in memory only."""
    out = {}
    with tarfile.open(tgz) as tf:
        for member in tf:
            if not member.name.endswith(".xml"):
                continue
            fh = tf.extractfile(member)
            assert fh is not None
            root = ET.fromstring(fh.read())
            text = "\n".join(
                (el.text or "").strip()
                for el in root.iter("AbstractText")
                if el.get("Label") in ("FINDINGS", "IMPRESSION") and el.text
            )
            codes = []
            for el in root.iter("major"):
                head, _, quals = (el.text or "").partition("/")
                codes.append((head.strip(), quals.strip().lower()))
            # "No Indexing": the indexers skipped the report, its labels are unknown
            if text.strip() and codes and codes[0][0] != "No Indexing":
                out["CXR" + Path(member.name).stem] = (text, codes)
    return out


#: Codes that are no finding in CheXpert's sense: devices (its "No Finding" ignores support devices) and image quality.
NOT_FINDINGS = frozenset(
    {
        "normal",
        "Technical Quality of Image Unsatisfactory",
        "Catheters, Indwelling",
        "Implanted Medical Device",
        "Tube, Inserted",
        "Medical Device",
        "Surgical Instruments",
        "Stents",
        "Sutures",
    }
)


def gold_labels(codes: list[tuple[str, str]]) -> set[str]:
    """The CheXpert labels the indexers' codes name (No Finding: nothing coded but devices and image quality)."""
    got = {NO_FINDING} if all(h in NOT_FINDINGS for h, _ in codes) else set()
    for label, pairs in GOLD_MESH.items():
        if any(h == head and (not q or re.search(q, quals)) for h, quals in codes for head, q in pairs):
            got.add(label)
    return got


def keyword_negex(text: str) -> dict[str, Presence]:
    """The naive peer: the same term tables, a keyword negated by a cue up to six words before it in its sentence."""
    out: dict[str, Presence] = {}
    for sent in _SENT.findall(text.lower()):
        for key in (*CHEXPERT, OTHER_FINDING):
            pats = OTHER_FINDINGS if key == OTHER_FINDING else (*TERMS[key], *CHEXPERT_TERMS.get(key, ()))
            for m in re.finditer("|".join(pats), sent):
                window = " ".join(sent[: m.start()].split()[-6:])
                p = Presence.ABSENT if _NEG_CUE.search(window) else Presence.PRESENT
                if out.get(key) is not Presence.PRESENT:
                    out[key] = p
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", default="")
    ap.add_argument("--kind", default="fn", choices=("fn", "fp"))
    args = ap.parse_args()
    data = read_iu(SHARED / "NLMCXR_reports.tgz")
    ids = sorted(data)
    gold = {i: gold_labels(data[i][1]) for i in ids}
    names = {k: str(BY_KEY[k].chexpert) for k in CHEXPERT}
    values = {i: chexpert_values(data[i][0]) for i in ids}
    peer = {i: keyword_negex(data[i][0]) for i in ids}

    def peer_set(i: str) -> set[str]:
        got = {names.get(k, k) for k, p in peer[i].items() if p is Presence.PRESENT}
        return (got - {OTHER_FINDING}) | ({NO_FINDING} if not got - {"Support Devices"} else set())

    systems: dict[str, Callable[[str], set[str]]] = {
        "mmdx present (1)": lambda i: {n for n, v in values[i].items() if v == 1},
        "mmdx 1 or -1": lambda i: {n for n, v in values[i].items() if v in (1, -1)},
        "keyword+NegEx peer": peer_set,
    }
    preds = {n: {i: fn(i) for i in ids} for n, fn in systems.items()}
    labels = [*names.values(), NO_FINDING]
    for part in ("train", "test") if not args.show else ("train",):
        sub = [i for i in ids if split_of(i) == part]
        print(f"\n{part}: {len(sub)} reports")
        print(f"{'label':27s} {'n':>4s}  " + "  ".join(f"{n:>22s}" for n in systems))
        totals = {n: [0, 0, 0] for n in systems}
        for col in labels:
            if col == NO_FINDING:  # the 13 labels' micro first, then with No Finding
                print(
                    f"{'micro (13 labels)':27s} {'':4s}  "
                    + "  ".join(f"{'P{:.2f} R{:.2f} F{:.3f}'.format(*_prf(*totals[n])):>22s}" for n in systems)
                )
            pos = {i for i in sub if col in gold[i]}
            cells = []
            for n in systems:
                got = {i for i in sub if col in preds[n][i]}
                tp, fp, fn = len(got & pos), len(got - pos), len(pos - got)
                for j, v in enumerate((tp, fp, fn)):
                    totals[n][j] += v
                p, r, f = _prf(tp, fp, fn)
                cells.append(f"P{p:.2f} R{r:.2f} F{f:.2f}")
            print(f"{col:27s} {len(pos):4d}  " + "  ".join(f"{c:>22s}" for c in cells))
        print(
            f"{'micro (with No Finding)':27s} {'':4s}  "
            + "  ".join(f"{'P{:.2f} R{:.2f} F{:.3f}'.format(*_prf(*totals[n])):>22s}" for n in systems)
        )
    # the CheXpert labeler's own labelled samples: all four values
    agree = total = 0
    with (SHARED / "chexpert_labeled_reports.csv").open() as fh:
        for row in csv.DictReader(fh):
            vals = chexpert_values(row["Reports"])
            for col in labels:
                want = CHEXPERT_VALUE[row[col]]
                val = vals[col]
                have = None if val is None else {1: Presence.PRESENT, 0: Presence.ABSENT, -1: Presence.UNCERTAIN}[val]
                total += 1
                agree += want is have
                if want is not have:
                    print(f"  sample disagreement: {col}: CheXpert {row[col] or 'blank'}, mmdx {val}")
    print(f"\nCheXpert labelled samples: {agree}/{total} label values agree (1/0/-1/blank)")
    if args.show:
        for i in ids:
            if split_of(i) != "train":
                continue
            g, p = args.show in gold[i], args.show in preds["mmdx present (1)"][i]
            if (args.kind == "fn" and g and not p) or (args.kind == "fp" and p and not g):
                codes = ";".join(h + "/" + q for h, q in data[i][1])
                print("----", i, values[i].get(args.show), "|", codes[:150], "|", data[i][0].replace("\n", " ")[:400])


if __name__ == "__main__":
    main()
