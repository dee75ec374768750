"""The hostile-input probe of issue 19 as a repeatable script: tries, crashes, hangs, lost, duplicated, rejections.

Each try puts one good DICOM file and one hostile input in a fresh folder and runs
``mmdx run --index-only`` on it in its own process (a fresh ``var/``), with a time limit:

* crash: the run exits with a traceback or a code other than 0;
* hang: it does not finish within ``--timeout``;
* lost: the good file is not indexed;
* duplicated: more instances are indexed than the inputs hold;
* rejected: the hostile input is quarantined with a reason (the expected outcome);
* indexed: it was readable after all (a valid mutation).

Classes: the crafted regression inputs of ``tests/robustness/crafted.py`` and, per seed file of
``tests/data`` (DICOM, ECG formats), random byte flips and truncations (``--mutations`` per seed,
``--seed`` for the random generator).  A second part runs ``mmdx run`` on a synthetic long Holter
(``--holter-hours``; a real beat tiled, analysed in windows by ``ecg.holter``) and reports its peak memory
(``ru_maxrss`` of the run and of its reader child), time, and whether the report's beat count and pause are right.

    .venv/bin/python bench/robustness/probe.py [--mutations 3] [--timeout 120] [--holter-hours 1 24]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from tests.robustness import crafted  # noqa: E402

RUN = "import sys; from app.cli import main; sys.argv = ['mmdx', *sys.argv[1:]]; main()"
COUNT = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
    "print(*(c.execute(f'select count(*) from {t}').fetchone()[0] for t in ('instances', 'quarantine')))"
)


def _crafted() -> dict[str, Callable[[Path], object]]:
    def fifo(folder: Path) -> None:
        os.mkfifo(folder / "pipe.dcm")

    def dev_zero(folder: Path) -> None:
        (folder / "zero.dcm").symlink_to("/dev/zero")

    def non_utf8(folder: Path) -> None:
        with open(os.fsencode(folder) + b"/junk-\xff.bin", "wb") as fh:
            fh.write(b"junk" * 100)

    def markup(folder: Path) -> None:
        (folder / "x[").mkdir()
        (folder / "x[" / "bold]\x1b[31m.txt").write_text("not an image")

    def zip_bomb(folder: Path) -> None:
        import zipfile

        with zipfile.ZipFile(folder / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.dcm", b"\x00" * (256 << 20))

    def dicom(**values: str) -> Callable[[Path], object]:
        return lambda folder: (folder / "odd.dcm").write_bytes(crafted.dicom_with_values(**values))

    return {
        "crafted SCP-ECG": lambda f: crafted.scp_ecg_huge(f / "crafted.scp"),
        "WFDB huge sample count": crafted.wfdb_huge,
        "MUSE SampleBase 1e308": lambda f: crafted.muse_sample_base(f / "muse.xml"),
        "Philips malformed XLI": lambda f: crafted.philips_bad_xli(f / "philips.xml"),
        "TimezoneOffsetFromUTC +2500": dicom(tz="+2500"),
        "IS inf": dicom(instance_number="inf"),
        "IS 1e400": dicom(series_number="1e400"),
        "FIFO": fifo,
        "symlink to /dev/zero": dev_zero,
        "non-UTF-8 name": non_utf8,
        "markup and escapes in names": markup,
        "zip bomb (256 MiB of zeros)": zip_bomb,
    }


def _seeds() -> list[Path]:
    data = REPO / "tests" / "data"
    picks = [
        data / "dicom" / "net" / "CT_small.dcm",
        data / "dicom" / "net" / "MR_small_RLE.dcm",
        data / "ecg" / "dicom" / "waveform_ecg.dcm",
        data / "ecg" / "hl7_aecg" / "minimum_aecg.xml",
        data / "ecg" / "philips" / "1_03__129DYPRG.XML",
    ]
    return [p for p in picks if p.is_file()]


def _write(name: str, data: bytes, folder: Path) -> None:
    (folder / name).write_bytes(data)


def _mutants(n: int, rng: random.Random) -> dict[str, list[Callable[[Path], object]]]:
    out: dict[str, list[Callable[[Path], object]]] = defaultdict(list)
    for seed in _seeds():
        data = seed.read_bytes()
        for _ in range(n):
            flipped = bytearray(data)
            for _ in range(rng.randint(1, 16)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            cut = data[: rng.randrange(1, len(data))]
            name = seed.name
            out[f"byte flips ({seed.suffix.lower() or 'none'})"].append(partial(_write, f"m-{name}", bytes(flipped)))
            out[f"truncation ({seed.suffix.lower() or 'none'})"].append(partial(_write, f"t-{name}", cut))
    return out


def _try(build: Callable[[Path], object], timeout: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "in"
        folder.mkdir()
        shutil.copy(crafted.GOOD_DICOM, folder / "good.dcm")
        build(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MMDX_")}
        env["PYTHONPATH"] = str(REPO)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", RUN, "run", str(folder), "--out", "out", "--index-only"],
                cwd=work, env=env, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return "hang"
        if proc.returncode != 0 or "Traceback" in proc.stderr:
            return "crash"
        db = work / "var" / "mmdx.db"
        counted = subprocess.run([sys.executable, "-c", COUNT, str(db)], capture_output=True, text=True, check=True)
        instances, quarantined = map(int, counted.stdout.split())
        if instances == 0:
            return "lost"
        if instances > 2:
            return "duplicated"
        return "rejected" if quarantined else "indexed"


def _holter(hours: float, timeout: float) -> tuple[str, float, float, float, str]:
    """Write a 12-lead 500 Hz WFDB Holter of ``hours`` and run ``mmdx run`` on it in a child.

    The recording is a real beat tiled at about 60 /min with one 3 s pause (``tests/ecg/holter_synth.py``), so
    the report's beat count and pause can be checked against what was written.
    """
    from tests.ecg.holter_synth import FS, write_holter

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        peaks = write_holter(folder / "in", hours * 3600, pause_at_s=hours * 3600 * 0.6)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MMDX_")}
        env["PYTHONPATH"] = str(REPO)
        code = (
            "import resource, sys, time; from app.cli import main; t = time.monotonic();"
            "sys.argv = ['mmdx', 'run', sys.argv[1], '--out', 'out'];"
            "\ntry: main()\nexcept SystemExit: pass\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
            " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.monotonic() - t,"
            " sum(resource.getrusage(resource.RUSAGE_SELF)[:2])"
            " + sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]), file=sys.stderr)"
        )
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, str(folder / "in")], cwd=folder, env=env, capture_output=True, text=True,
                timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return "hang", float("nan"), time.monotonic() - started, float("nan"), ""
        peak = next((line.split() for line in proc.stderr.splitlines() if line.startswith("PEAK")), None)
        peak_mb = max(float(peak[1]), float(peak[2])) / 1024 if peak else float("nan")
        cpu_s = float(peak[4]) if peak else float("nan")
        text = proc.stdout + proc.stderr
        reports = list((folder / "out").glob("*/v1/report.html"))
        check = ""
        if reports and "Long ECG recording (Holter)" in (html := reports[0].read_text()):
            outcome = "windowed"
            pause = int(np.argmax(np.diff(peaks)))
            check = (
                f"beats {'ok' if f'Total beats: {len(peaks):,}.' in html else 'WRONG'} ({len(peaks):,}), pause "
                f"{'ok' if 'Longest RR interval 3.00 s' in html else 'WRONG'} (at {peaks[pause] / FS / 3600:.2f} h)"
            )
        else:
            outcome = "analysed" if "1 new" in text else "refused" if "max_ecg_samples" in text else "other"
        return outcome, peak_mb, time.monotonic() - started, cpu_s, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutations", type=int, default=3, help="mutants per seed file and kind")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a try counts as a hang")
    parser.add_argument("--holter-hours", type=float, nargs="*", default=[1.0, 24.0])
    parser.add_argument("--holter-only", action="store_true", help="skip the hostile-input corpus")
    args = parser.parse_args()
    classes: dict[str, list[Callable[[Path], object]]] = {k: [v] for k, v in _crafted().items()}
    classes.update(_mutants(args.mutations, random.Random(args.seed)))
    if args.holter_only:
        classes = {}
    totals: Counter[str] = Counter()
    print(f"{'class':40} tries crash hang lost dup rejected indexed")
    for name, builds in classes.items():
        tally = Counter(_try(build, args.timeout) for build in builds)
        totals.update(tally)
        print(
            f"{name:40} {len(builds):5} {tally['crash']:5} {tally['hang']:4} {tally['lost']:4} {tally['duplicated']:3} "
            f"{tally['rejected']:8} {tally['indexed']:7}"
        )
    print(
        f"{'total':40} {sum(totals.values()):5} {totals['crash']:5} {totals['hang']:4} {totals['lost']:4} "
        f"{totals['duplicated']:3} {totals['rejected']:8} {totals['indexed']:7}"
    )
    for hours in args.holter_hours:
        outcome, peak_mb, seconds, cpu_s, check = _holter(hours, max(args.timeout, 3600))
        print(
            f"Holter {hours:g} h, 12 leads, 500 Hz: {outcome}, peak RSS {peak_mb:.0f} MB (mmdx run), "
            f"{seconds:.1f} s wall, {cpu_s:.1f} s CPU{', ' + check if check else ''}"
        )


if __name__ == "__main__":
    main()
