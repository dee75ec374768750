"""Batched vs one-by-one through `mmdx worker` (run_batch): per-study latency, throughput, pipeline overhead.

The whole service path runs: index (`mmdx run --index-only`), jobs claimed by the worker, pixels decoded,
the models stage, every output written and stored.  The model is a small random Gemma 3 (MedGemma
architecture) built offline and loaded through the production transformers path; every answer is forced to
the same length (``min_new_tokens``) so both runs do the same work.  The "peer" is mmdx itself one study at a
time (``max_batch: 1``), which is what `mmdx worker` did before batching.

    .venv/bin/python bench/models/bench_worker.py --studies 8 --batch 8 --hidden 256 --layers 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _studies(dest: Path, n: int, size: int) -> None:
    """``n`` one-image DX chest studies, uncompressed ``size`` x ``size`` (a radiograph-like random image)."""
    import numpy as np
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = next((REPO / "samples" / "chest_cr").glob("*.dcm"))
    rng = np.random.default_rng(0)
    dest.mkdir(parents=True)
    for i in range(n):
        ds = pydicom.dcmread(src)
        ds.decompress() if ds.file_meta.TransferSyntaxUID.is_compressed else None
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(dest / f"{i}.dcm", enforce_file_format=True)


def _run(root: Path, folder: Path, model: Path, batch: int, n: int, new_tokens: int) -> dict[str, float]:
    from typer.testing import CliRunner

    from app.cli import cli
    from app.context import AppContext
    from app.worker import run_batch, warm_up
    from core.identifiers import FixedClock

    work = root / f"batch{batch}"
    work.mkdir()
    os.chdir(work)
    cfg = work / "site.yaml"
    spec = {
        "backend": "local_vlm",
        "family": "gemma3",
        "path": str(model),
        "max_batch": batch,
        "max_new_tokens": new_tokens,
        "options": {"constrained": False, "min_new_tokens": new_tokens, "escalate": "always"},
    }
    cfg.write_text(
        json.dumps({"models": {"backends": {"vlm": spec}}, "model_routing": [{"modality": "CR", "models": ["vlm"]}]})
    )
    res = CliRunner().invoke(cli, ["run", str(folder), "--index-only", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    base = AppContext.create(cfg)
    from datetime import UTC, datetime

    late = AppContext(base.settings, base.db, FixedClock(datetime(2099, 1, 1, tzinfo=UTC)))
    warm_up(base)  # what `mmdx worker` does at start (models loaded, outputs' first-use costs): not per study
    late.registry._backends = base.registry._backends
    t0 = time.perf_counter()
    done, model_s = 0, 0.0
    while results := run_batch(late, out_dir=work / "out", size=batch):
        for r in results:
            assert r.outcome is not None and r.outcome.report is not None, r.error
            model_s += sum(c.seconds for c in r.outcome.report.model_calls)
            done += 1
    wall = time.perf_counter() - t0
    assert done == n
    return {"wall_s": wall, "per_study_s": wall / n, "studies_per_s": n / wall, "model_s": model_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--image", type=int, default=512, help="image side in pixels")
    args = ap.parse_args()

    import torch

    from tests.models.tiny import build_tiny_gemma3

    root = Path(tempfile.mkdtemp(prefix="mmdx-bench-worker-"))
    folder = root / "in"
    _studies(folder, args.studies, args.image)
    model = build_tiny_gemma3(root / "gemma3", hidden=args.hidden, layers=args.layers)
    one = _run(root, folder, model, 1, args.studies, args.new_tokens)
    batched = _run(root, folder, model, args.batch, args.studies, args.new_tokens)
    print(
        f"{args.studies} studies, random Gemma 3 (hidden {args.hidden}, {args.layers} layers), "
        f"{args.new_tokens} new tokens each, {args.image}^2 images, CPU threads {torch.get_num_threads()}"
    )
    for name, r in (("one by one (max_batch 1)", one), (f"batched (max_batch {args.batch})", batched)):
        overhead = 1 - r["model_s"] / r["wall_s"]
        print(
            f"{name:26s}: {r['wall_s']:7.2f} s, {r['per_study_s']:6.3f} s/study, {r['studies_per_s']:6.2f} studies/s, "
            f"model {r['model_s']:6.2f} s, pipeline overhead {100 * overhead:4.1f} %"
        )
    print(f"batching speed-up through the worker: {one['wall_s'] / batched['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
