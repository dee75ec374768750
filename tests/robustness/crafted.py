"""Inputs that once stopped ``mmdx run`` or made the SCP answer 0xA700 (issue 19), built in code.

Each builder writes one hostile or damaged input; the regression tests and
``bench/robustness`` use the same builders.
"""

from __future__ import annotations

import binascii
import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom

REPO = Path(__file__).resolve().parents[2]
GOOD_DICOM = REPO / "tests" / "data" / "dicom" / "net" / "CT_small.dcm"
PHILIPS = REPO / "tests" / "data" / "ecg" / "philips" / "1_03__129DYPRG.XML"


def dicom_with_values(instance_number: str = "77", series_number: str = "7777", tz: str | None = None) -> bytes:
    """CT_small with raw IS values (written as bytes: pydicom refuses to build "inf") and a timezone offset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(GOOD_DICOM)
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[instance_number, series_number, tz or ""])
        ds.InstanceNumber, ds.SeriesNumber = "77", "7777"
        if tz is not None:
            ds.TimezoneOffsetFromUTC = tz
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    for placeholder, value in ((b"\x02\x0077", instance_number), (b"\x04\x007777", series_number)):
        assert data.count(placeholder) == 1  # the IS element's length and value: unique in this file
        raw = value.encode("ascii")
        raw += b" " * (len(raw) % 2)
        data = data.replace(placeholder, struct.pack("<H", len(raw)) + raw)
    return data


def scp_ecg_huge(path: Path) -> Path:
    """A 1 KB SCP-ECG whose section 3 declares ~4 billion samples per lead."""
    from tests.ecg.synth_formats import write_scp

    write_scp(path, {1: np.zeros(400, dtype=np.int64), 2: np.zeros(400, dtype=np.int64)}, huffman=False)
    data = bytearray(path.read_bytes())
    pos = 6
    while pos + 16 <= len(data):
        _crc, sid, length = struct.unpack_from("<HHI", data, pos)
        if length < 16:
            break
        if sid == 3:
            body = pos + 16
            for lead in range(data[body]):
                struct.pack_into("<I", data, body + 2 + 9 * lead + 4, 0xFFFFFFF0)
            struct.pack_into("<H", data, pos, binascii.crc_hqx(bytes(data[pos + 2 : pos + length]), 0xFFFF))
        pos += length
    struct.pack_into("<H", data, 0, binascii.crc_hqx(bytes(data[2:]), 0xFFFF))
    path.write_bytes(bytes(data))
    return path


def wfdb_huge(folder: Path) -> Path:
    """A WFDB header declaring 12 x 10^12 samples beside a tiny signal file."""
    (folder / "huge.dat").write_bytes(b"\x00" * 48)
    hea = folder / "huge.hea"
    lines = ["huge 12 500 1000000000000"]
    lines += [f"huge.dat 16 200/mV 16 0 0 0 0 {name}" for name in ("I", "II", "III", "aVR", "aVL", "aVF")]
    lines += [f"huge.dat 16 200/mV 16 0 0 0 0 V{i}" for i in range(1, 7)]
    hea.write_text("\n".join(lines) + "\n")
    return hea


def muse_sample_base(path: Path, value: str = "1e308") -> Path:
    """A GE MUSE XML whose SampleBase is ``value``."""
    from tests.ecg.synth_formats import write_muse_xml

    rhythm = {name: np.zeros(5000, dtype=np.int16) for name in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")}
    write_muse_xml(path, rhythm)
    text = path.read_bytes()
    assert b"<SampleBase>500</SampleBase>" in text
    path.write_bytes(text.replace(b"<SampleBase>500</SampleBase>", f"<SampleBase>{value}</SampleBase>".encode()))
    return path


def philips_bad_xli(path: Path, seed: int = 0) -> Path:
    """The Philips sample with its parsedwaveforms payload replaced by random (valid base64) bytes."""
    import base64
    import re

    text = PHILIPS.read_bytes()
    rng = np.random.default_rng(seed)
    junk = base64.b64encode(b"XLI\x00" + rng.bytes(3000))
    patched, n = re.subn(rb"(<parsedwaveforms[^>]*>)[^<]*(</parsedwaveforms>)", rb"\g<1>" + junk + rb"\g<2>", text)
    assert n == 1
    path.write_bytes(patched)
    return path


def non_utf8_name(folder: Path, content: bytes) -> Path:
    """A file whose name is not valid UTF-8 (bytes 0xFF 0xFE)."""
    raw = os.fsencode(folder) + b"/bad-\xff\xfe-name.dcm"
    with open(raw, "wb") as fh:
        fh.write(content)
    return Path(os.fsdecode(raw))
