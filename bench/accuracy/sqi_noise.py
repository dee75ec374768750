"""The signal-quality readability gate on clean and synthetically noisy single-lead 30 s recordings at 300 Hz.

Run from the repository root::

    .venv/bin/python bench/accuracy/sqi_noise.py [--dir ../shared/data/ecg/mitdb_dev] [--windows 8] \\
        [--noisy-every 3] [--seed 0]

Clean windows: up to ``--windows`` 30 s windows of the first channel of each MIT-BIH development record,
starting at 1 min and every 210 s after (every 30 s inside atrial fibrillation: only 201 and 202 have it),
resampled 360 -> 300 Hz; the reference is AF when the expert rhythm annotation is "(AFIB" throughout (windows
where it changes are skipped); windows with ventricular, bundle-branch-block or paced beats (V, L, R, E, F,
paced rhythm) are counted apart.  Noisy windows: every ``--noisy-every``-th clean window plus one synthetic
noise at a signal-to-noise ratio
(power of the clean window over power of the noise) of 12, 6, 0 and -6 dB:

- ``em``: electrode motion-like, a band-limited (0.5-20 Hz) random walk plus sharp spikes (most of its power
  lies below 2 Hz, which conditioning removes: the SNR after filtering is far higher than the nominal one);
- ``band``: motion artefact in the QRS band, 1-25 Hz noise plus sharp spikes (filtering cannot remove it);
- ``ma``: muscle, white noise 20-150 Hz;
- ``bw``: baseline wander, 0.05-0.7 Hz random drift plus a breathing sinusoid;
- ``off``: lead off, flat segments over 30-50 % of the window plus ``em`` noise at the SNR on the rest.

A noisy window counts as non-AF whatever its source (the CinC 2017 rule "noisy counted as non-AF").  Each window
is analysed with the gate off (before) and on (after); counted: flagged unreadable, AF and VT/VF/wide-QRS
tachycardia called.  neurokit2's ``ecg_quality`` (Zhao 2018) is run on the same windows as the peer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import scipy.signal as sps

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import wfdb  # noqa: E402

import ecg.analysis as analysis  # noqa: E402
from core.codes import MMDX, SCT  # noqa: E402
from core.records import EcgRecord  # noqa: E402

WINDOW_S = 30.0
FS = 300.0
SNRS = (12, 6, 0, -6)
KINDS = ("em", "band", "ma", "bw", "off")
VT = {SCT.VENTRICULAR_TACHYCARDIA, MMDX.ECG_WIDE_QRS_TACHYCARDIA}
ECTOPIC = set("VLREF")


def _band(x: np.ndarray, lo: float, hi: float, fs: float) -> np.ndarray:
    sos = sps.butter(2, (lo, min(hi, 0.49 * fs)), "bandpass", fs=fs, output="sos")
    return np.asarray(sps.sosfiltfilt(sos, x))


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """One unit-power noise of the named kind, n samples at FS."""
    if kind == "band":
        v = _band(rng.normal(size=n), 1.0, 25.0, FS)
        spikes = np.zeros(n)
        at = rng.choice(n, size=int(rng.integers(3, 15)), replace=False)
        spikes[at] = rng.normal(0.0, 8.0 * v.std(), at.size)
        v = v + np.convolve(spikes, np.hanning(int(0.03 * FS)), mode="same")
    elif kind == "em":
        walk = _band(np.cumsum(rng.normal(size=n)), 0.5, 20.0, FS)
        spikes = np.zeros(n)
        at = rng.choice(n, size=int(rng.integers(3, 15)), replace=False)
        spikes[at] = rng.normal(0.0, 8.0 * walk.std(), at.size)
        v = walk + np.convolve(spikes, np.hanning(int(0.03 * FS)), mode="same")
    elif kind == "ma":
        v = sps.sosfiltfilt(sps.butter(4, 20.0, "highpass", fs=FS, output="sos"), rng.normal(size=n))
    elif kind == "bw":
        t = np.arange(n) / FS
        drift = sps.sosfiltfilt(sps.butter(2, 0.7, "lowpass", fs=FS, output="sos"), np.cumsum(rng.normal(size=n)))
        v = drift / drift.std() + np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t)
    else:
        v = noise("em", n, rng)
    u: np.ndarray = np.asarray(v, dtype=np.float64)
    out: np.ndarray = u / u.std()
    return out


def add_noise(x: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    p = float(np.mean((x - x.mean()) ** 2))
    y: np.ndarray = x + noise(kind, x.size, rng) * np.sqrt(p / 10 ** (snr_db / 10.0))
    if kind == "off":  # flat segments (lead off: the amplifier holds a constant)
        n_off = int(rng.uniform(0.3, 0.5) * x.size)
        pieces = int(rng.integers(1, 4))
        for k in range(pieces):
            ln = n_off // pieces
            s = int(rng.integers(0, x.size - ln))
            y[s : s + ln] = y[s] if k % 2 == 0 else 0.0
    return y


def windows(d: Path, per_record: int) -> list[tuple[str, np.ndarray, bool, bool]]:
    out = []
    for hea in sorted(d.glob("*.hea")):
        rid = hea.stem
        ann = wfdb.rdann(str(d / rid), "atr")
        changes = [
            (int(s), a.strip("\x00")) for s, a in zip(ann.sample, ann.aux_note, strict=True) if a.startswith("(")
        ]
        kept = 0
        for w in range(70):
            fs = 360.0
            a0 = int((60 + 30 * w) * fs)
            a1 = a0 + int(WINDOW_S * fs)
            if any(a0 < s < a1 for s, _ in changes) or a1 > int(ann.sample[-1]):
                continue
            af = ([r for s, r in changes if s <= a0] or ["(N"])[-1] == "(AFIB"
            if not af and (kept >= per_record or w % 7):  # every AF window, other windows 210 s apart
                continue
            kept += not af
            before = [r for s, r in changes if s <= a0]
            ref = before[-1] if before else "(N"
            sym = {str(c) for s, c in zip(ann.sample, ann.symbol, strict=True) if a0 <= s < a1}
            rec = wfdb.rdrecord(str(d / rid), sampfrom=a0, sampto=a1, channels=[0])
            x = sps.resample_poly(np.nan_to_num(rec.p_signal[:, 0]), 5, 6)
            out.append((f"{rid}@{w}", x, ref == "(AFIB", bool(sym & ECTOPIC) or ref == "(P"))
    return out


def run(x: np.ndarray, gate: bool) -> set[object]:
    analysis.READABILITY_GATE = gate
    a = analysis.analyze(EcgRecord(x[None].astype(np.float32), ("II",), FS, "bench"))
    codes: set[object] = {s.concept for s in a.statements}
    if any("insufficient" in s.text.lower() or "no consistent qrs" in " ".join(s.criteria) for s in a.statements):
        codes.add("insufficient")
    return codes


def _unreadable(codes: set[object]) -> bool:
    return MMDX.ECG_NOISE in codes or "insufficient" in codes


def _nk_unacceptable(x: np.ndarray) -> bool:
    import neurokit2 as nk

    try:
        clean = nk.ecg_clean(x, sampling_rate=int(FS))
        return str(nk.ecg_quality(clean, sampling_rate=int(FS), method="zhao2018")) == "Unacceptable"
    except Exception:  # a failing peer counts as "unacceptable": it could not read the window
        return True


def _f1(c: Counter[str], k: str) -> str:
    tp, fp, fn = c[k + "tp"], c[k + "fp"], c[k + "fn"]
    se, ppv = tp / max(tp + fn, 1), tp / max(tp + fp, 1)
    return f"Se {se:.2f} PPV {ppv:.2f} F1 {2 * se * ppv / max(se + ppv, 1e-9):.2f} (TP {tp} FP {fp} FN {fn})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "ecg" / "mitdb_dev"))
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--noisy-every", type=int, default=3, help="noisy variants of every n-th clean window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    wins = windows(Path(args.dir), args.windows)
    clean: Counter[str] = Counter()
    noisy: dict[str, Counter[str]] = defaultdict(Counter)
    mixed: Counter[str] = Counter()  # all windows, noisy counted as non-AF
    for i, (name, x, ref_af, ectopic) in enumerate(wins):
        for gate in (False, True):
            tag = "after_" if gate else "before_"
            codes = run(x, gate)
            af = SCT.ATRIAL_FIBRILLATION in codes
            clean[tag + "n"] += 1
            clean[tag + "unreadable"] += _unreadable(codes)
            clean[tag + "unreadable_ectopic"] += _unreadable(codes) and ectopic
            clean[tag + ("tp" if af and ref_af else "fp" if af else "fn" if ref_af else "tn")] += 1
            mixed[tag + ("tp" if af and ref_af else "fp" if af else "fn" if ref_af else "tn")] += 1
            clean[tag + "vt"] += bool(codes & VT)
            if args.show and gate and (_unreadable(codes) or af != ref_af):
                print("clean", name, "AF" if ref_af else "", sorted(str(getattr(c, "code", c)) for c in codes))
        clean["ectopic"] += ectopic
        clean["nk_unacceptable"] += _nk_unacceptable(x)
        for kind in KINDS if i % args.noisy_every == 0 else ():
            for snr in SNRS:
                y = add_noise(x, kind, snr, rng)
                key = f"{kind} {snr:+d} dB"
                noisy[key]["n"] += 1
                noisy[key]["n_af"] += ref_af
                noisy[key]["nk"] += _nk_unacceptable(y)
                for gate in (False, True):
                    tag = "after_" if gate else "before_"
                    codes = run(y, gate)
                    af = SCT.ATRIAL_FIBRILLATION in codes
                    noisy[key][tag + "unreadable"] += _unreadable(codes)
                    noisy[key][tag + ("af_on_af" if ref_af else "af")] += af
                    noisy[key][tag + "vt"] += bool(codes & VT)
                    if snr <= 0:  # the noisy class: counted as non-AF
                        mixed[tag + ("fp" if af else "tn")] += 1
    n = len(wins)
    print(
        f"{n} clean windows ({clean['ectopic']} with ventricular/BBB/paced beats), "
        f"{sum(c['n'] for c in noisy.values())} noisy; {time.perf_counter() - t0:.0f} s"
    )
    for tag in ("before_", "after_"):
        print(
            f"clean {tag[:-1]:6s}: unreadable {clean[tag + 'unreadable']}/{n} "
            f"(ectopic/BBB {clean[tag + 'unreadable_ectopic']}/{clean['ectopic']}), VT {clean[tag + 'vt']}, "
            f"AF {_f1(clean, tag)}"
        )
    print(f"clean neurokit2 zhao2018 'Unacceptable': {clean['nk_unacceptable']}/{n}")
    print(
        "| noise | SNR | n | unreadable before | after | neurokit2 Unacceptable "
        "| false AF before | after | AF kept on AF windows before | after | VT before | after |"
    )
    for key, c in noisy.items():
        kind, level, _ = key.split()
        print(
            f"| {kind} | {level} dB | {c['n']} ({c['n_af']} AF) | {c['before_unreadable']} | "
            f"{c['after_unreadable']} | {c['nk']} | "
            f"{c['before_af']} | {c['after_af']} | {c['before_af_on_af']} | {c['after_af_on_af']} | "
            f"{c['before_vt']} | {c['after_vt']} |"
        )
    for tag in ("before_", "after_"):
        print(f"AF with the 0 and -6 dB windows counted as non-AF, {tag[:-1]}: {_f1(mixed, tag)}")


if __name__ == "__main__":
    main()
