"""Writers for synthetic ECG files in formats whose real samples may not be copied (GPL).

``write_muse_xml`` writes a GE MUSE ``RestingECG`` document with the structure of real MUSE
exports (learned from the GPL samples, none of their content copied): base64 little-endian
int16 ``WaveFormData`` per lead, ``LeadAmplitudeUnitsPerBit``, CRC-32, Rhythm and Median
waveforms, ``RestingECGMeasurements`` and ``Diagnosis`` statements.

``write_scp`` writes an SCP-ECG file (sections 0, 1, 2, 3, 6, 7, 8) with the default
Huffman table and first/second differences, or plain int16; ``write_scp_header`` the
smallest file that is SCP-ECG by content (CRC, length and a section 0 tagged "SCPECG").
The GPL SCP samples were used only to check the reader by hand, never as test data.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

MUSE_8_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _waveform(root: ET.Element, kind: str, leads: Mapping[str, np.ndarray], fs: int, per_bit: float, crc: bool) -> None:
    wf = _sub(root, "Waveform")
    _sub(wf, "WaveformType", kind)
    _sub(wf, "WaveformStartTime", 0)
    _sub(wf, "NumberofLeads", len(leads))
    _sub(wf, "SampleType", "CONTINUOUS_SAMPLES")
    _sub(wf, "SampleBase", fs)
    _sub(wf, "SampleExponent", 0)
    for name, counts in leads.items():
        raw = np.asarray(counts, dtype="<i2").tobytes()
        ld = _sub(wf, "LeadData")
        _sub(ld, "LeadByteCountTotal", len(raw))
        _sub(ld, "LeadTimeOffset", 0)
        _sub(ld, "LeadSampleCountTotal", len(raw) // 2)
        _sub(ld, "LeadAmplitudeUnitsPerBit", per_bit)
        _sub(ld, "LeadAmplitudeUnits", "MICROVOLTS")
        _sub(ld, "LeadHighLimit", 32767)
        _sub(ld, "LeadLowLimit", -32768)
        _sub(ld, "LeadID", name)
        _sub(ld, "LeadOffsetFirstSample", 0)
        _sub(ld, "FirstSampleBaseline", 0)
        _sub(ld, "LeadSampleSize", 2)
        _sub(ld, "LeadOff", "FALSE")
        _sub(ld, "BaselineSway", "FALSE")
        if crc:
            _sub(ld, "LeadDataCRC32", zlib.crc32(raw))
        b64 = base64.b64encode(raw).decode()
        # MUSE wraps the base64 text in lines of 76 characters
        _sub(ld, "WaveFormData", "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)))


def muse_document(
    rhythm: Mapping[str, np.ndarray],
    *,
    fs: int = 500,
    units_per_bit: float = 4.88,
    median: Mapping[str, np.ndarray] | None = None,
    measurements: Mapping[str, object] | None = None,
    statements: Sequence[tuple[str, bool]] = (),
    age: int | None = None,
    gender: str | None = None,
    acquired: tuple[str, str] | None = ("04-29-2023", "22:41:16"),
    crc: bool = True,
    demographics: Mapping[str, str] | None = None,
) -> ET.Element:
    """Build a MUSE ``RestingECG`` element; ``statements`` are (text, ends_line) pairs."""
    root = ET.Element("RestingECG")
    _sub(_sub(root, "MuseInfo"), "MuseVersion", "9.0.0.00000")
    demo = _sub(root, "PatientDemographics")
    _sub(demo, "PatientID", "SYNTH-0001")
    if age is not None:
        _sub(demo, "PatientAge", age)
        _sub(demo, "AgeUnits", "YEARS")
    if gender is not None:
        _sub(demo, "Gender", gender)
    _sub(demo, "PatientLastName", "SYNTHETIC")
    for tag, text in (demographics or {}).items():
        _sub(demo, tag, text)
    test = _sub(root, "TestDemographics")
    _sub(test, "DataType", "RESTING")
    _sub(test, "AcquisitionDevice", "MAC5500")
    if acquired is not None:
        _sub(test, "AcquisitionTime", acquired[1])
        _sub(test, "AcquisitionDate", acquired[0])
    if measurements:
        meas = _sub(root, "RestingECGMeasurements")
        for tag, value in measurements.items():
            _sub(meas, tag, value)
    if statements:
        diag = _sub(root, "Diagnosis")
        _sub(diag, "Modality", "RESTING")
        for text, ends in statements:
            st = _sub(diag, "DiagnosisStatement")
            if ends:
                _sub(st, "StmtFlag", "ENDSLINE")
            _sub(st, "StmtText", text)
    if median is not None:
        _waveform(root, "Median", median, fs, units_per_bit, crc)
    _waveform(root, "Rhythm", rhythm, fs, units_per_bit, crc)
    return root


def write_muse_xml(path: Path, rhythm: Mapping[str, np.ndarray], **kwargs: object) -> Path:
    """Write a synthetic MUSE XML file (ISO-8859-1 with the restecg.dtd DOCTYPE, as MUSE does)."""
    root = muse_document(rhythm, **kwargs)  # type: ignore[arg-type]
    body = ET.tostring(root, encoding="unicode")
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n' + body
    path.write_bytes(text.encode("iso-8859-1"))
    return path


def huffman_default_encode(values: Sequence[int]) -> bytes:
    """Encode with SCP-ECG's default Huffman table (MSB first, zero-padded to a byte)."""
    parts = []
    for v in values:
        v = int(v)
        if v == 0:
            parts.append("0")
        elif -8 <= v <= 8:
            parts.append("1" * abs(v) + "0" + ("1" if v < 0 else "0"))
        elif -128 <= v <= 127:
            parts.append("1111111110" + format(v & 0xFF, "08b"))
        elif -32768 <= v <= 32767:
            parts.append("1111111111" + format(v & 0xFFFF, "016b"))
        else:
            raise ValueError(f"{v} does not fit 16 bits")
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def _differences(x: np.ndarray, order: int) -> np.ndarray:
    x = x.astype(np.int64)
    d = x.copy()
    if order == 1:
        d[1:] = x[1:] - x[:-1]
    elif order == 2:
        d[2:] = x[2:] - 2 * x[1:-1] + x[:-2]
    return d


def _section(sid: int, body: bytes, version: int = 20) -> bytes:
    body += b"\0" * (len(body) % 2)  # sections have an even length
    length = 16 + len(body)
    rest = struct.pack("<HIBB6s", sid, length, version, version, b"SCPECG" if sid == 0 else b"\0" * 6) + body
    return struct.pack("<H", binascii.crc_hqx(rest, 0xFFFF)) + rest


def write_scp(
    path: Path,
    leads: Mapping[int, np.ndarray],
    *,
    avm_nv: int = 5000,
    interval_us: int = 2000,
    huffman: bool = True,
    difference: int = 2,
    age_years: int | None = None,
    sex: int | None = None,
    acquired: tuple[int, int, int, int, int, int] | None = None,
    boundaries_ms: tuple[int, int, int, int, int] | None = None,
    axes: tuple[int, int, int] = (999, 999, 999),
    statements: Sequence[str] = (),
    reference_beat_subtraction: bool = False,
    bimodal: bool = False,
    patient_tags: bytes = b"",
) -> Path:
    """Write an SCP-ECG file; ``leads`` maps SCP lead ids (1 = I, 2 = II, 3 = V1 ...) to int16 samples."""
    ids = list(leads)
    n = len(next(iter(leads.values())))
    sections: dict[int, bytes] = {}
    tags = b""
    if age_years is not None:
        tags += struct.pack("<BHHB", 4, 3, age_years, 1)
    if sex is not None:
        tags += struct.pack("<BHB", 8, 1, sex)
    if acquired is not None:
        year, month, day, hour, minute, second = acquired
        tags += struct.pack("<BHHBB", 25, 4, year, month, day) + struct.pack("<BHBBB", 26, 3, hour, minute, second)
    # section 1 tags as (tag, length, value); without patient_tags an empty patient ID tag, then the end tag
    tags += patient_tags or struct.pack("<BHB", 2, 1, 0)
    tags += struct.pack("<BH", 255, 0)
    sections[1] = tags
    if huffman:
        sections[2] = struct.pack("<H", 19999)
    flags = (len(ids) << 3) | 0x04 | (0x01 if reference_beat_subtraction else 0)
    sections[3] = bytes([len(ids), flags & 0xFF]) + b"".join(struct.pack("<IIB", 1, n, i) for i in ids)
    streams = []
    for i in ids:
        d = _differences(np.asarray(leads[i]), difference if huffman else 0)
        streams.append(huffman_default_encode(d.tolist()) if huffman else d.astype("<i2").tobytes())
    body6 = struct.pack("<HHBB", avm_nv, interval_us, difference if huffman else 0, int(bimodal))
    body6 += b"".join(struct.pack("<H", len(s)) for s in streams) + b"".join(streams)
    sections[6] = body6
    if boundaries_ms is not None:
        sections[7] = struct.pack("<BBHH", 1, 0, 29999, 29999) + struct.pack("<5H3h", *boundaries_ms, *axes)
    if statements:
        body8 = struct.pack("<BHBBBBB", 0, 2024, 1, 2, 3, 4, 5) + bytes([len(statements)])
        for k, text in enumerate(statements, 1):
            raw = text.encode("latin-1") + b"\0"
            body8 += struct.pack("<BH", k, len(raw)) + raw
        sections[8] = body8
    encoded = {sid: _section(sid, body) for sid, body in sections.items()}
    pointer_count = 12
    s0_len = 16 + 10 * pointer_count
    offset = 6 + s0_len
    pointers = b""
    layout = []
    for sid in range(pointer_count):
        if sid == 0:
            pointers += struct.pack("<HII", 0, s0_len, 7)
        elif sid in encoded:
            pointers += struct.pack("<HII", sid, len(encoded[sid]), offset + 1)
            layout.append(encoded[sid])
            offset += len(encoded[sid])
        else:
            pointers += struct.pack("<HII", sid, 0, 0)
    body = _section(0, pointers) + b"".join(layout)
    total = 6 + len(body)
    rest = struct.pack("<I", total) + body
    path.write_bytes(struct.pack("<H", binascii.crc_hqx(rest, 0xFFFF)) + rest)
    return path


def write_scp_header(path: Path) -> Path:
    """The smallest SCP-ECG file by content: file CRC, length, section 0 header tagged SCPECG."""
    section0_body = b"\x00" * 10  # no pointers: enough for detection, not a decodable record
    section_len = 16 + len(section0_body)
    section = struct.pack("<HHIBB6s", 0, 0, section_len, 20, 20, b"SCPECG") + section0_body
    section = struct.pack("<H", binascii.crc_hqx(section[2:], 0xFFFF)) + section[2:]
    length = 6 + len(section)
    body = struct.pack("<I", length) + section
    path.write_bytes(struct.pack("<H", binascii.crc_hqx(body, 0xFFFF)) + body)
    return path
