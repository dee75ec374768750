"""Writers for synthetic ECG files in formats whose real samples may not be copied (GPL).

``write_muse_xml`` writes a GE MUSE ``RestingECG`` document with the structure of real MUSE
exports (learned from the GPL samples, none of their content copied): base64 little-endian
int16 ``WaveFormData`` per lead, ``LeadAmplitudeUnitsPerBit``, CRC-32, Rhythm and Median
waveforms, ``RestingECGMeasurements`` and ``Diagnosis`` statements.

``write_scp_header`` writes the smallest file that is SCP-ECG by content (CRC, length and a
section 0 tagged "SCPECG"), for detection tests.
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
