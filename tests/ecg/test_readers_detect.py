"""Format detection by content, whatever the extension; unrecognised input fails cleanly."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import EcgError
from ecg.readers import EcgFormat, detect_format, read_ecg
from tests.ecg.synth_formats import MUSE_8_LEADS, write_muse_xml, write_scp_header

DATA = Path(__file__).parents[1] / "data" / "ecg"

SAMPLES = {
    "dicom/waveform_ecg.dcm": EcgFormat.DICOM_WAVEFORM,
    "hl7_aecg/subject1_0.xml": EcgFormat.HL7_AECG,
    "philips/1_03__129DYPRG.XML": EcgFormat.PHILIPS_SIERRA,
    "philips/1_04__3191723_ZZDEMOPTONLY_1-04_orig.xml": EcgFormat.PHILIPS_SIERRA,
}


@pytest.mark.parametrize(("rel", "fmt"), SAMPLES.items(), ids=list(SAMPLES))
@pytest.mark.parametrize("ext", [".txt", ".dcm", ""])
def test_detection_ignores_the_extension(tmp_path: Path, rel: str, fmt: EcgFormat, ext: str) -> None:
    p = tmp_path / f"renamed{ext}"
    shutil.copy(DATA / rel, p)
    assert detect_format(p) is fmt


def test_muse_detected_under_dcm_extension(tmp_path: Path) -> None:
    leads = {n: np.zeros(20, dtype=np.int16) for n in MUSE_8_LEADS}
    assert detect_format(write_muse_xml(tmp_path / "m.dcm", leads)) is EcgFormat.GE_MUSE


def test_wfdb_files_under_other_names(tmp_path: Path) -> None:
    for f in (DATA / "wfdb" / "ludb_1").glob("1.*"):
        shutil.copy(f, tmp_path / f.name)
    assert detect_format(tmp_path / "1") is EcgFormat.WFDB
    # the header alone, renamed, is still recognisable by its structure
    shutil.copy(tmp_path / "1.hea", tmp_path / "header.txt")
    assert detect_format(tmp_path / "header.txt") is EcgFormat.WFDB
    # an annotation file beside the header is not a signal file of the record
    assert detect_format(tmp_path / "1.i") is None


def test_scp_ecg_detected_by_crc_length_and_tag(tmp_path: Path) -> None:
    p = write_scp_header(tmp_path / "ecg.bin")
    assert detect_format(p) is EcgFormat.SCP_ECG
    with pytest.raises(EcgError, match="ecg.bin: no section 3"):
        read_ecg(p)
    # one flipped byte breaks the CRC: no longer SCP-ECG
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    assert detect_format(p) is None


def test_empty_file_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    assert detect_format(empty) is None
    with pytest.raises(EcgError, match="empty.xml: not a recognised ECG file: empty file"):
        read_ecg(empty)
    with pytest.raises(EcgError, match="a directory"):
        read_ecg(tmp_path)
    with pytest.raises(EcgError, match="no such file"):
        read_ecg(tmp_path / "missing")


def test_other_xml_is_not_an_ecg(tmp_path: Path) -> None:
    p = tmp_path / "x.xml"
    p.write_text('<?xml version="1.0"?><!-- c --><Report xmlns="urn:x"><a/></Report>')
    assert detect_format(p) is None
    with pytest.raises(EcgError, match="XML root element 'Report' in namespace 'urn:x'"):
        read_ecg(p)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_detection(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "blob"
        p.write_bytes(data)
        detect_format(p)  # never raises on arbitrary content
        with pytest.raises(EcgError):  # and reading fails cleanly, whatever it looked like
            read_ecg(p)
