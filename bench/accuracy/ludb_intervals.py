"""Global PR, QRS and QT against the LUDB cardiologists' marks (IEC 60601-2-25 style: mean and SD of differences).

Run from the repository root::

    .venv/bin/python bench/accuracy/ludb_intervals.py [--dir ../shared/data/ecg/ludb_dev] [--limit N]

The reference for each record is the median over its marked beats of the global boundaries (earliest onset,
latest offset over the 12 leads: ``tests.ecg._load.ludb_reference``); ours is ``analyze``'s global value.
IEC 60601-2-25 limits: PR and QRS mean within +-10 ms, SD <= 10 ms; QT mean within +-25 ms, SD <= 30 ms.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ecg.analysis import analyze  # noqa: E402
from ecg.readers import read_ecg  # noqa: E402
from tests.ecg._load import ludb_reference  # noqa: E402

LIMITS = {"PR": (10.0, 10.0), "QRS": (10.0, 10.0), "QT": (25.0, 30.0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "ecg" / "ludb_dev"))
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    d = Path(args.dir)
    ids = sorted((p.stem for p in d.glob("*.hea")), key=int)[: args.limit or None]
    diffs: dict[str, list[float]] = {k: [] for k in LIMITS}
    for rid in ids:
        try:
            ref = ludb_reference(d / rid)
        except Exception:
            continue
        if ref["qrs_on"].size == 0:
            continue
        ms = 2.0  # LUDB is 500 Hz
        want = {
            "PR": float(np.median(ref["qrs_on"] - ref["p_on"])) * ms,
            "QRS": float(np.median(ref["qrs_off"] - ref["qrs_on"])) * ms,
            "QT": float(np.median(ref["t_off"] - ref["qrs_on"])) * ms,
        }
        g = analyze(read_ecg(d / f"{rid}.hea")).global_values
        if g is None:
            continue
        got = {"PR": g.pr_ms, "QRS": g.qrs_ms, "QT": g.qt_ms}
        for k in LIMITS:
            v = got[k]
            if v is not None:
                diffs[k].append(v - want[k])
    print(f"{len(ids)} LUDB records; mmdx global intervals minus the cardiologists' global marks")
    for k, (lim_mean, lim_sd) in LIMITS.items():
        a = np.asarray(diffs[k])
        ok = abs(a.mean()) <= lim_mean and a.std() <= lim_sd
        print(
            f"{k:4s} n={a.size:3d} mean {a.mean():+6.1f} ms SD {a.std():5.1f} ms  median {np.median(a):+6.1f}  "
            f"|d|>25 ms: {int(np.sum(np.abs(a) > 25)):3d}  IEC (mean +-{lim_mean:.0f}, SD <= {lim_sd:.0f}): "
            f"{'pass' if ok else 'fail'}"
        )


if __name__ == "__main__":
    main()
