"""Which files make up one ECG recording."""

from __future__ import annotations

import shutil
from pathlib import Path

from ecg.readers.members import record_files

DATA = Path(__file__).parents[1] / "data" / "ecg"


def test_wfdb_record_is_header_plus_signal_file(tmp_path: Path) -> None:
    for f in (DATA / "wfdb" / "ludb_1").glob("1.*"):
        shutil.copy(f, tmp_path / f.name)
    expected = (tmp_path / "1.hea", tmp_path / "1.dat")
    assert record_files(tmp_path / "1") == expected
    assert record_files(tmp_path / "1.dat") == expected
    assert record_files(tmp_path / "1.hea") == expected


def test_single_file_formats() -> None:
    p = DATA / "dicom" / "waveform_ecg.dcm"
    assert record_files(p) == (p,)
    x = DATA / "hl7_aecg" / "subject1_0.xml"
    assert record_files(x) == (x,)
