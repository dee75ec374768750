"""Global PR, QRS and QT against the LUDB cardiologists' marks (IEC 60601-2-25 style: mean and SD of differences).

Run from the repository root::

    .venv/bin/python bench/accuracy/ludb_intervals.py [--dir ../shared/data/ecg/ludb_dev] [--limit N]

The reference for each record is the median over its marked beats of the global boundaries (earliest onset,
latest offset over the 12 leads: ``tests.ecg._load.ludb_reference``); ours is ``analyze``'s global value.
Peer (``--peer``): neurokit2 ``ecg_peaks`` + ``ecg_delineate(method="dwt")`` on lead II, the median over beats of
R onset - P onset, R offset - R onset and T offset - R onset (neurokit2 has no multi-lead global boundaries).
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
    ap.add_argument("--peer", action="store_true", help="also score neurokit2 (slower)")
    args = ap.parse_args()
    d = Path(args.dir)
    ids = sorted((p.stem for p in d.glob("*.hea")), key=int)[: args.limit or None]
    diffs: dict[str, list[float]] = {k: [] for k in LIMITS}
    peer: dict[str, list[float]] = {k: [] for k in LIMITS}
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
        rec = read_ecg(d / f"{rid}.hea")
        if args.peer:
            for k, v in _neurokit(rec).items():
                if v is not None:
                    peer[k].append(v - want[k])
        g = analyze(rec).global_values
        if g is None:
            continue
        got = {"PR": g.pr_ms, "QRS": g.qrs_ms, "QT": g.qt_ms}
        for k in LIMITS:
            v = got[k]
            if v is not None:
                diffs[k].append(v - want[k])
    print(f"{len(ids)} LUDB records; global intervals minus the cardiologists' global marks")
    _report("mmdx", diffs)
    if args.peer:
        _report("neurokit2", peer)


def _neurokit(rec: object) -> dict[str, float | None]:
    """neurokit2's PR, QRS and QT (ms) on lead II: the median over its delineated beats."""
    import warnings

    import neurokit2 as nk

    warnings.filterwarnings("ignore")
    out: dict[str, float | None] = dict.fromkeys(LIMITS)
    names = list(rec.lead_names)  # type: ignore[attr-defined]
    fs = int(rec.sampling_rate_hz)  # type: ignore[attr-defined]
    x = np.asarray(rec.signal[names.index("II") if "II" in names else 0], dtype=float)  # type: ignore[attr-defined]
    try:
        clean = nk.ecg_clean(x, sampling_rate=fs)
        _, info = nk.ecg_peaks(clean, sampling_rate=fs)
        _, w = nk.ecg_delineate(clean, info, sampling_rate=fs, method="dwt")
    except Exception:
        return out
    ms = 1000.0 / fs

    def med(a: str, b: str) -> float | None:
        d = np.asarray(w[b], dtype=float) - np.asarray(w[a], dtype=float)
        d = d[np.isfinite(d)]
        return float(np.median(d)) * ms if d.size else None

    out["PR"] = med("ECG_P_Onsets", "ECG_R_Onsets")
    out["QRS"] = med("ECG_R_Onsets", "ECG_R_Offsets")
    out["QT"] = med("ECG_R_Onsets", "ECG_T_Offsets")
    return out


def _report(name: str, diffs: dict[str, list[float]]) -> None:
    print(name)
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
