"""cProfile of studies through `mmdx worker` (run_batch) with a tiny random model: where the pipeline's time goes.

The first study runs unprofiled after the worker's warm-up (as a running worker's would); the next ``--studies``
run one at a time under cProfile.  Printed: the time per study inside the model call (``analyse_batch``) and
outside it (the pipeline overhead), then the pipeline's functions by cumulative time, the model's left out.

    .venv/bin/python bench/models/profile_worker.py --studies 4 --hidden 64 --layers 1 --new-tokens 4
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=4, help="profiled studies (after one unprofiled)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--image", type=int, default=256)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()

    import bench_worker

    import app.worker
    from tests.models.tiny import build_tiny_gemma3

    root = Path(tempfile.mkdtemp(prefix="mmdx-profile-worker-"))
    n = args.studies + 1
    bench_worker._studies(root / "in", n, args.image)
    model = build_tiny_gemma3(root / "gemma3", hidden=args.hidden, layers=args.layers)

    prof = cProfile.Profile()
    real = app.worker.run_batch
    calls = [0]

    def profiled(*a: object, **kw: object) -> object:
        calls[0] += 1
        if calls[0] == 1:  # the first study: unprofiled
            return real(*a, **kw)  # type: ignore[arg-type]
        prof.enable()
        try:
            return real(*a, **kw)  # type: ignore[arg-type]
        finally:
            prof.disable()

    app.worker.run_batch = profiled  # type: ignore[assignment]
    bench_worker._run(root, root / "in", model, 1, n, args.new_tokens)
    stats = pstats.Stats(prof)
    total = sum(t for (_, _, _), (_, _, t, _, _) in stats.stats.items())  # type: ignore[attr-defined]
    model_s = max(
        (ct for (f, _, name), (_, _, _, ct, _) in stats.stats.items() if name == "analyse_batch"),  # type: ignore[attr-defined]
        default=0.0,
    )
    print(
        f"{args.studies} studies profiled: {total / args.studies * 1000:.0f} ms/study under cProfile, "
        f"model call {model_s / args.studies * 1000:.0f} ms, pipeline {(total - model_s) / args.studies * 1000:.0f} ms"
    )
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(r"/(app|reports|store|ingest)/", args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
