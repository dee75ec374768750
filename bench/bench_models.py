"""Benchmarks of the models package.

``labeler``: the report labeler (spaCy + negspacy NegEx, our uncertainty rules) against NegBio's gold standard
(ChestX-ray14 labels) on the Indiana University reports, read from
``../shared/data/reports`` (CC BY-NC-ND: read in place, never copied).
Prints per-label precision/recall/F1 and micro/macro averages, scoring
"present" and "present or uncertain" as positive.  Peer: a bare keyword
matcher (a label is positive when its term appears at all), the floor any
negation handling must beat.

``vlm``: generation throughput of the same random model batched vs one by
one, through the production path (``models.local_vlm``), on CUDA when
present else CPU, plus the pipeline overhead per study (prompt building,
image preparation, parsing) measured apart from model time.  ``--wide``
builds a small-but-wide random Gemma 3 (a few hundred million parameters)
for GPU runs.

    .venv/bin/python bench/bench_models.py labeler
    .venv/bin/python bench/bench_models.py vlm [--wide] [--studies 16] [--batch 8] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import re
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "reports"


def read_iu_reports(tgz: Path) -> dict[str, str]:
    """CXR<n> -> FINDINGS + IMPRESSION text of the Indiana University reports (in memory only)."""
    out = {}
    with tarfile.open(tgz) as tf:
        for member in tf:
            if not member.name.endswith(".xml"):
                continue
            fh = tf.extractfile(member)
            assert fh is not None
            root = ET.fromstring(fh.read())
            parts = [
                (el.text or "").strip()
                for el in root.iter("AbstractText")
                if el.get("Label") in ("FINDINGS", "IMPRESSION") and el.text
            ]
            out["CXR" + Path(member.name).stem] = "\n".join(parts)
    return out


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def bench_labeler() -> None:
    from core.records import Presence
    from models.labeler import TERMS, label_report
    from models.vocabulary import BY_KEY, CHESTXRAY14

    reports = read_iu_reports(SHARED / "NLMCXR_reports.tgz")
    with (SHARED / "negbio_openi_gld_std14.csv").open() as fh:
        gold = {row["filename"]: row for row in csv.DictReader(fh)}
    ids = [i for i in gold if i in reports]
    keyword = {k: re.compile("|".join(TERMS[k])) for k in CHESTXRAY14}
    systems: dict[str, Any] = {
        "mmdx present": lambda t: {
            k for k, r in label_report(t, CHESTXRAY14).items() if r.presence is Presence.PRESENT
        },
        "mmdx present+uncertain": lambda t: {
            k for k, r in label_report(t, CHESTXRAY14).items() if r.presence is not Presence.ABSENT
        },
        "keyword peer": lambda t: {k for k, rx in keyword.items() if rx.search(t.lower())},
    }
    t0 = time.perf_counter()
    preds = {name: {i: fn(reports[i]) for i in ids} for name, fn in systems.items()}
    elapsed = time.perf_counter() - t0
    print(f"{len(ids)} reports with gold labels; labelling all three ways took {elapsed:.2f} s")
    print(f"{'label':20s} {'n':>5s}  " + "  ".join(f"{n:>24s}" for n in systems))
    totals = {n: [0, 0, 0] for n in systems}
    macro: dict[str, list[float]] = {n: [] for n in systems}
    for k in CHESTXRAY14:
        col = BY_KEY[k].chestxray14
        assert col is not None
        pos = {i for i in ids if gold[i][col] == "1"}
        cells = []
        for n in systems:
            got = {i for i in ids if k in preds[n][i]}
            tp, fp, fn = len(got & pos), len(got - pos), len(pos - got)
            for j, v in enumerate((tp, fp, fn)):
                totals[n][j] += v
            p, r, f = _prf(tp, fp, fn)
            if pos:  # a label without gold positives has no recall: left out of the macro average
                macro[n].append(f)
            cells.append(f"P{p:.2f} R{r:.2f} F{f:.2f}")
        print(f"{col:20s} {len(pos):5d}  " + "  ".join(f"{c:>24s}" for c in cells))
    print(
        f"{'micro':20s} {'':5s}  "
        + "  ".join(f"{'P{:.2f} R{:.2f} F{:.3f}'.format(*_prf(*totals[n])):>24s}" for n in systems)
    )
    print(f"{'macro F1 (n>0)':20s} {'':5s}  " + "  ".join(f"{sum(macro[n]) / len(macro[n]):>24.3f}" for n in systems))


def bench_vlm(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from core.config import ModelSpec
    from core.errors import ModelError
    from core.records import Image
    from models.local_vlm import LocalVlmBackend
    from models.prompts import build_prompt
    from models.protocol import ClinicalContext, ModelInput
    from models.structured import parse_draft
    from tests.models.tiny import build_tiny_gemma3

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tmp = Path(tempfile.mkdtemp(prefix="mmdx-bench-"))
    hidden, layers = (1536, 16) if args.wide else (args.hidden, args.layers)
    folder = build_tiny_gemma3(tmp / "gemma3", hidden=hidden, layers=layers)
    spec = ModelSpec(
        backend="local_vlm",
        family="gemma3",
        path=folder,
        max_batch=args.batch,
        max_new_tokens=args.new_tokens,
        options={"min_new_tokens": args.new_tokens, "constrained": False},
    )
    be = LocalVlmBackend("bench", spec)
    be.load()
    n_params = sum(p.numel() for p in be._model.parameters())
    rng = np.random.default_rng(0)
    studies = [
        ModelInput(
            study_instance_uid=f"1.2.826.0.9.{i}",
            modality="DX",
            body_part="CHEST",
            images=(Image(rng.integers(0, 4096, (512, 512)).astype(np.uint16), view_position="PA"),),
            context=ClinicalContext(indication="cough" + " x" * (i % 5)),
        )
        for i in range(args.studies)
    ]

    def run(batch_size: int) -> float:
        be.spec = spec.model_copy(update={"max_batch": batch_size})
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for k in range(0, len(studies), batch_size):
            be.generate_texts(studies[k : k + batch_size])
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    run(args.batch)  # warm-up (kernels, allocator)
    one = min(run(1) for _ in range(args.repeats))
    batched = min(run(args.batch) for _ in range(args.repeats))
    # overhead: everything predict() does besides generate (prompt, images, parsing), per study
    t = time.perf_counter()
    for s in studies:
        p = build_prompt(s)
        be._conversation(p.messages, p.images)
        with contextlib.suppress(ModelError):
            parse_draft('{"findings": [], "impression": "x", "recommendation": ""}')
    overhead = (time.perf_counter() - t) / len(studies)
    model_per_study = batched / len(studies)
    print(
        f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}), "
        f"model {n_params / 1e6:.1f} M params, "
        f"{args.studies} studies, {args.new_tokens} new tokens each"
    )
    print(f"one by one   : {one:8.3f} s  ({args.studies / one:7.2f} studies/s)")
    print(f"batch of {args.batch:<3d} : {batched:8.3f} s  ({args.studies / batched:7.2f} studies/s)")
    print(f"batching speed-up: {one / batched:.2f}x")
    print(
        f"pipeline overhead per study (prompt+images+parse): {overhead * 1e3:.2f} ms = "
        f"{100 * overhead / (model_per_study + overhead):.1f} % of batched study time"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("labeler")
    v = sub.add_parser("vlm")
    v.add_argument("--wide", action="store_true", help="a few hundred million parameters (for GPUs)")
    v.add_argument("--hidden", type=int, default=32, help="text model width (ignored with --wide: 1536)")
    v.add_argument("--layers", type=int, default=2, help="text model depth (ignored with --wide: 16)")
    v.add_argument("--studies", type=int, default=16)
    v.add_argument("--batch", type=int, default=8)
    v.add_argument("--new-tokens", type=int, default=32)
    v.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "labeler":
        bench_labeler()
    else:
        bench_vlm(args)


if __name__ == "__main__":
    main()
