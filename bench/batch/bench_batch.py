"""ECG-only ``mmdx batch``: records/s with 1 and 2 local workers and with Ray, against neurokit2 per record.

Usage (repository root)::

    .venv/bin/python bench/batch/bench_batch.py --records 1000 [--no-ray]

The records are copies of LUDB record 1 (10 s, 12 leads, 500 Hz; tests/data) with one extra header comment
each, so every copy is a distinct study. Each engine runs in a fresh working directory (its own SQLite file:
nothing is reused) as a subprocess, whose peak RSS (the batch process and, for the local pool, its largest
worker) and CPU time are reported. The peer: neurokit2's ``ecg_process`` on the same records, all 12 leads as
mmdx analyses them (the usual research script), and mmdx's own ECG analysis alone (``ecg.analysis.analyze``),
so the ratio separates the analysis from the report building that ``mmdx batch`` also does per record (FHIR,
SR, PDF, HL7).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.app.batch_inputs import wfdb_copies  # noqa: E402

RUN = """
import json, os, resource, sys, time
from pathlib import Path
from app.batch import BatchOptions, run_batch
from app.context import AppContext
src, out, workers, engine = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20

def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_MB
    except OSError:  # a Ray worker on another node, or gone
        return 0.0

class Sampler:
    # current RSS of the batch process and of the largest local worker, at every tenth of the run
    def start(self, total, done, failed):
        self.total, self.n, self.samples, self.pids = total, 0, [], set()
    def advance(self, ok, pid):
        self.n += 1
        self.pids.add(pid)
        if self.n % max(1, self.total // 10) == 0 or self.n == self.total:
            self.samples.append((self.n, round(rss_mb(os.getpid())), round(max(rss_mb(p) for p in self.pids))))
    def stop(self):
        pass

ctx = AppContext.create()
sampler = Sampler()
t0 = time.perf_counter()
r = run_batch(ctx, BatchOptions(src, out, workers=workers, engine=engine), reporter=sampler)
total = time.perf_counter() - t0
print(json.dumps({
    "counts": r.counts, "processing_s": r.summary["timings"]["elapsed_s"], "total_s": total,
    "rss_over_run_mb": sampler.samples,
    "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "cpu_s": sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                 for f in ("ru_utime", "ru_stime")),
}))
"""


def run_engine(src: Path, workers: int, engine: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MMDX_")}
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.run(
            [sys.executable, "-c", RUN, str(src), str(Path(tmp) / "out"), str(workers), engine],
            cwd=tmp, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"{engine} x{workers} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def peers(headers: list[Path]) -> dict:
    import neurokit2 as nk
    import numpy as np

    from ecg.analysis import analyze
    from ecg.readers import read_ecg

    t0 = time.perf_counter()
    records = [read_ecg(h) for h in headers]
    read_s = (time.perf_counter() - t0) / len(records)
    t0, c0 = time.perf_counter(), time.process_time()
    for r in records:
        for lead in np.asarray(r.signal, dtype=float):  # all 12 leads, as mmdx analyses them
            nk.ecg_process(lead, sampling_rate=int(r.sampling_rate_hz))
    nk_s, nk_cpu = (time.perf_counter() - t0) / len(records), (time.process_time() - c0) / len(records)
    t0, c0 = time.perf_counter(), time.process_time()
    for r in records:
        analyze(r)
    mmdx_s, mmdx_cpu = (time.perf_counter() - t0) / len(records), (time.process_time() - c0) / len(records)
    return {
        "neurokit2_s": nk_s, "neurokit2_cpu_s": nk_cpu, "mmdx_analyze_s": mmdx_s, "mmdx_analyze_cpu_s": mmdx_cpu,
        "read_s": read_s,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--peer-records", type=int, default=20, help="records for the per-record peer timing")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-in-") as tmp:
        src = Path(tmp) / "in"
        headers = wfdb_copies(src, args.records)
        results = {}
        for label, workers, engine in (("local x1", 1, "local"), ("local x2", 2, "local"), ("ray x2", 2, "ray")):
            if engine == "ray" and args.no_ray:
                continue
            results[label] = r = run_engine(src, workers, engine)
            print(label, json.dumps(r), flush=True)
            assert r["counts"]["done"] == args.records, r["counts"]
        peer = peers(headers[: args.peer_records])
    n = args.records
    print(f"{n} ECG records (LUDB 1 copies), {os.cpu_count()} CPUs")
    print(
        f"{'engine':10} {'records/s':>10} {'processing s':>13} {'total s':>8} {'CPU s/record':>13} "
        f"{'peak RSS MB (batch / worker)':>30}"
    )
    for label, r in results.items():
        rate = n / r["processing_s"]
        rss = f"{r['rss_self_mb']:.0f} / {r['rss_children_mb']:.0f}"
        cpu = r["cpu_s"] / n
        print(f"{label:10} {rate:10.2f} {r['processing_s']:13.1f} {r['total_s']:8.1f} {cpu:13.3f} {rss:>30}")
    one = n / results["local x1"]["processing_s"]
    two = n / results["local x2"]["processing_s"]
    print(f"2 workers / 1 worker: {two / one:.2f}x (target >= 1.7x)")
    if "ray x2" in results:
        ray = n / results["ray x2"]["processing_s"]
        print(f"ray x2 / local x2: {ray / two:.2f} (target within 20%)")
    for label, r in results.items():
        first, last = r["rss_over_run_mb"][0], r["rss_over_run_mb"][-1]
        print(
            f"{label}: RSS MB (batch / largest worker) after {first[0]} records {first[1]} / {first[2]}, "
            f"after {last[0]} {last[1]} / {last[2]} (flat memory: the end close to the start)"
        )
    per_record = results["local x1"]["processing_s"] / n
    print(
        f"per record, wall: mmdx batch x1 (analysis + all reports) {per_record * 1000:.0f} ms, "
        f"mmdx analyze {peer['mmdx_analyze_s'] * 1000:.0f} ms, neurokit2 ecg_process x 12 leads "
        f"{peer['neurokit2_s'] * 1000:.0f} ms; ratios {per_record / peer['neurokit2_s']:.2f}x and "
        f"{peer['mmdx_analyze_s'] / peer['neurokit2_s']:.2f}x neurokit2"
    )
    print(
        f"per record, decoding (read_ecg) {peer['read_s'] * 1000:.1f} ms = {peer['read_s'] / per_record:.1%} of the "
        "batch's per-record cost: the most that overlapping decode with analysis could save when a core is idle"
    )
    print(
        f"per record, CPU: mmdx analyze {peer['mmdx_analyze_cpu_s'] * 1000:.0f} ms, neurokit2 "
        f"{peer['neurokit2_cpu_s'] * 1000:.0f} ms: {peer['mmdx_analyze_cpu_s'] / peer['neurokit2_cpu_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
