"""Inputs for the batch tests and bench: copies of the sample ECGs with distinct content (hence UIDs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom

from core.identifiers import derive_uid

DATA = Path(__file__).resolve().parents[1] / "data"
LUDB = DATA / "ecg" / "wfdb" / "ludb_1"
DICOM_ECG = DATA / "ecg" / "dicom" / "waveform_ecg.dcm"


def wfdb_copies(dest: Path, n: int, *, start: int = 0) -> list[Path]:
    """``n`` copies of LUDB record 1, each in its own folder with one extra header comment (distinct hash)."""
    out = []
    for i in range(start, start + n):
        folder = dest / f"wfdb_{i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        header = (LUDB / "1.hea").read_text(encoding="ascii")
        (folder / "1.hea").write_text(header.rstrip("\n") + f"\n#copy {i}\n", encoding="ascii")
        try:
            os.link(LUDB / "1.dat", folder / "1.dat")
        except OSError:
            shutil.copyfile(LUDB / "1.dat", folder / "1.dat")
        out.append(folder / "1.hea")
    return out


def dicom_ecg_copies(dest: Path, n: int, *, start: int = 0, patient: tuple[str, str, str] | None = None) -> list[Path]:
    """``n`` copies of the DICOM ECG with new study/series/instance UIDs; ``patient`` = (name, ID, birth date)."""
    ds = pydicom.dcmread(DICOM_ECG)
    out = []
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        ds.StudyInstanceUID = derive_uid("2.25", "batch-test", "study", str(i))
        ds.SeriesInstanceUID = derive_uid("2.25", "batch-test", "series", str(i))
        ds.SOPInstanceUID = derive_uid("2.25", "batch-test", "instance", str(i))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if patient is not None:
            ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient
        path = dest / f"ecg_{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out
