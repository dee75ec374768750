"""Decode coverage: every object with Pixel Data in the shared sample corpus, decoded or failed with a reason.

Run::

    .venv/bin/python bench/decode_coverage.py [--shared ../shared/data/dicom] [--verbose]

Every file under the corpus is read; objects without (7FE0,0010) Pixel Data
(SR, RT plans, DICOMDIR, text) are counted apart.  Each object with pixel data
goes through ``ingest.pixels.load_images`` (all frames); a failure must be an
``IngestError`` whose message names the file and what is wrong — anything else
is a bug and is reported as such.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from pydicom import dcmread

from core.errors import IngestError
from ingest.pixels import load_images

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parent.parent / "shared" / "data" / "dicom"


def _has_pixel_data(path: Path) -> bool | None:
    """True/False when the header parses, None when the file is not DICOM at all.

    A file with a File Meta header whose data set parses to nothing (truncated)
    counts as an object with pixel data: it must fail with a reason, not vanish.
    """
    try:
        ds = dcmread(path, force=True)
    except Exception:
        return None
    if len(ds) == 0 and len(getattr(ds, "file_meta", None) or []) > 0:
        return True
    return "PixelData" in ds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--verbose", action="store_true", help="list every decoded object too")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    files = sorted(p for p in args.shared.rglob("*") if p.is_file())
    decoded, failed, bugs, no_pixels, not_dicom = [], [], [], 0, 0
    for path in files:
        has = _has_pixel_data(path)
        if has is None:
            not_dicom += 1
            continue
        if not has:
            no_pixels += 1
            continue
        try:
            images = load_images(path)
            decoded.append((path, len(images)))
        except IngestError as exc:
            failed.append((path, str(exc)))
        except Exception as exc:  # a clear IngestError was expected
            bugs.append((path, f"{type(exc).__name__}: {exc}"))
    root = args.shared
    if args.verbose:
        for path, frames in decoded:
            print(f"decoded  {path.relative_to(root)}  ({frames} frame(s))")
    for path, reason in failed:
        print(f"FAILED   {path.relative_to(root)}: {reason.replace(str(path) + ': ', '')}")
    for path, reason in bugs:
        print(f"BUG      {path.relative_to(root)}: {reason}")
    total = len(decoded) + len(failed) + len(bugs)
    print(
        f"\n{len(decoded)} of {total} objects with Pixel Data decode "
        f"({len(failed)} fail with a clear IngestError, {len(bugs)} unexpected errors); "
        f"{no_pixels} objects without pixel data, {not_dicom} non-DICOM files skipped"
    )
    return 1 if bugs else 0


if __name__ == "__main__":
    raise SystemExit(main())
