"""Pixel decoding and volume building: mmdx vs plain pydicom on the same files, in one run.

Part 1 (2D): decode every file of a mixed corpus with ``ingest.pixels.load_image``
versus the floor ``pydicom.dcmread(f).pixel_array`` + ``apply_modality_lut``.
Part 2 (3D): a 100-slice 512x512 CT series (built in a temp folder from one real
slice, positions written regularly along z, files shuffled) to a float32 HU
volume with ``ingest.volume.load_volume`` versus pydicom read + sort by
position + stack + rescale, and versus MONAI ``LoadImage(reader="PydicomReader")``
when MONAI is installed (the bench may import it; ``ingest`` never does).

Run::

    .venv/bin/python bench/bench_pixels.py [--repeat 5] [--shared ../shared/data/dicom]

Prints the median CPU time (process_time: steadier than wall time on a shared machine) of each side,
run alternately, and the ratio mmdx / pydicom (lower is better).
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import generate_uid

from ingest.pixels import load_image
from ingest.volume import load_volume

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parent.parent / "shared" / "data" / "dicom"
CORPUS_DIRS = ("ct_volume_ge_head", "mr_volume_t1w_every8th", "transfer_syntax_matrix", "compressed", "cr_dx")


def _paired_medians(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median times of ``a`` and ``b`` run alternately, so that load from other processes hits both alike."""
    a()
    b()  # warm the page cache and imports
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeat):
        for fn, times in ((a, ta), (b, tb)):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
    return statistics.median(ta), statistics.median(tb)


def _decodable(files: list[Path]) -> list[Path]:
    ok = []
    for f in files:
        try:
            load_image(f)
            pydicom.dcmread(f).pixel_array  # noqa: B018
            ok.append(f)
        except Exception:  # the documented broken files are not part of a speed comparison
            continue
    return ok


def bench_2d(shared: Path, repeat: int) -> tuple[int, float, float]:
    files = sorted(f for d in CORPUS_DIRS for f in (shared / d).glob("*") if f.is_file())
    files = _decodable(files)

    def mmdx() -> None:
        for f in files:
            load_image(f)

    def floor() -> None:
        for f in files:
            ds = pydicom.dcmread(f)
            arr = ds.pixel_array
            if ds.get("SamplesPerPixel", 1) == 1:
                apply_modality_lut(arr, ds)

    return len(files), *_paired_medians(mmdx, floor, repeat)


def _make_series(src: Path, out: Path, n: int = 100) -> list[Path]:
    base = pydicom.dcmread(src)
    series = generate_uid()
    paths = []
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-160.0, -160.0, 1.25 * k]
        ds.InstanceNumber = n - k
        path = out / f"{random.random():.12f}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def bench_volume(shared: Path, repeat: int) -> tuple[int, float, float, float | None]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = _make_series(shared / "small_basic" / "693_UNCR.dcm", Path(tmp))
        t_monai = _monai_time(Path(tmp), repeat)

        def mmdx() -> None:
            load_volume(paths)

        def floor() -> None:
            dss = [pydicom.dcmread(p) for p in paths]
            dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
            vol = np.stack([d.pixel_array for d in dss]).astype(np.float32)
            vol *= np.float32(dss[0].RescaleSlope)
            vol += np.float32(dss[0].RescaleIntercept)

        return len(paths), *_paired_medians(mmdx, floor, repeat), t_monai


def _monai_time(folder: Path, repeat: int) -> float | None:
    """MONAI ``LoadImage(reader="PydicomReader")`` on the same folder, when MONAI is installed (bench only)."""
    try:
        from monai.transforms.io.array import LoadImage
    except ImportError:
        return None
    loader = LoadImage(reader="PydicomReader", image_only=True)
    loader(str(folder))
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        loader(str(folder))
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    n, t_mmdx, t_floor = bench_2d(args.shared, args.repeat)
    print(
        f"2D decode, {n} files: mmdx load_image {t_mmdx * 1000:.1f} ms, "
        f"pydicom pixel_array+modality LUT {t_floor * 1000:.1f} ms, ratio {t_mmdx / t_floor:.2f}"
    )
    n, t_mmdx, t_floor, t_monai = bench_volume(args.shared, args.repeat)
    print(
        f"volume, {n} slices 512x512: mmdx load_volume {t_mmdx * 1000:.1f} ms, "
        f"pydicom read+sort+stack+rescale {t_floor * 1000:.1f} ms, ratio {t_mmdx / t_floor:.2f}"
    )
    if t_monai is not None:
        print(
            f"volume, MONAI LoadImage(PydicomReader) {t_monai * 1000:.1f} ms, ratio mmdx/MONAI {t_mmdx / t_monai:.2f}"
        )


if __name__ == "__main__":
    main()
