"""SCP-ECG (EN 1064 / ISO 11073-91064), sections 0, 1, 2 (default Huffman table), 3, 6, 7, 8.

A file is CRC (2) + length (4) + sections; each section starts with a 16-byte header
(CRC, id, length, version, protocol version, 6 reserved bytes; section 0 tags them "SCPECG").
Section 0 points to the others (1-based byte offsets).  The rhythm data of section 6 are
per-lead byte streams, Huffman-encoded with the standard's default table when section 2
says 19999 (plain little-endian int16 when section 2 is absent), optionally as first or
second differences; amplitude = value x AVM nanovolts.

Not decoded (a clear :class:`EcgError` instead of a wrong signal): reference-beat
subtraction (section 3 flag, needs sections 4/5), bimodal compression, and custom Huffman
tables.  Section 7's first measurement block (P/QRS/T boundaries and axes of the dominant
beat) and section 8's statements are kept as device data.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from datetime import date as date_type
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np

from core.errors import EcgError, RecordError
from core.records import EcgRecord, Measurement, Patient, Sex
from ecg.leads import complete_leads
from ecg.readers._common import (
    SCP_LEAD_NAMES,
    DeviceQuantity,
    EcgFile,
    device_measurement,
    patient_of,
    person_name,
    utc_offset,
)
from ecg.readers.limits import check_declared_samples

_HEADER = 6  # file CRC (2) + file length (4)
_SECTION_HEADER = 16
_SECTION_TAG = b"SCPECG"
DEFAULT_HUFFMAN_TABLE: Final = 19999
UNDEFINED: Final = 29999  #: SCP's "not computed" value for intervals
_AGE_UNITS: Final[dict[int, float]] = {1: 1.0, 2: 12.0, 3: 52.18, 4: 365.25, 5: 8766.0}


def crc_ccitt(data: bytes) -> int:
    """CRC-CCITT (polynomial 0x1021, initial 0xFFFF) as SCP-ECG uses for files and sections."""
    return binascii.crc_hqx(data, 0xFFFF)


def looks_like_scp(head: bytes, file_size: int) -> bool:
    """Cheap check on the first bytes: the length field equals the file size and section 0 is tagged."""
    if len(head) < _HEADER + _SECTION_HEADER:
        return False
    (length,) = struct.unpack_from("<I", head, 2)
    (section_id,) = struct.unpack_from("<H", head, _HEADER + 2)
    return length == file_size and section_id == 0 and head[_HEADER + 10 : _HEADER + 16] == _SECTION_TAG


def is_scp(path: Path, head: bytes) -> bool:
    """SCP-ECG by content: length field, section 0 tag and the whole-file CRC."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if not looks_like_scp(head, size):
        return False
    data = path.read_bytes()
    stored: int = struct.unpack_from("<H", data, 0)[0]
    return crc_ccitt(data[2:]) == stored


@dataclass(frozen=True, slots=True)
class _Sections:
    data: bytes
    bodies: dict[int, bytes]
    version: int


def _sections(data: bytes, source: str) -> _Sections:
    if len(data) < _HEADER + _SECTION_HEADER:
        raise EcgError(f"{len(data)} bytes; too short for an SCP-ECG file", source=source)
    s0_len: int = struct.unpack_from("<I", data, _HEADER + 4)[0]
    version = data[_HEADER + 8]
    if s0_len < _SECTION_HEADER or _HEADER + s0_len > len(data):
        raise EcgError(f"section 0 length {s0_len} does not fit the file", source=source)
    bodies: dict[int, bytes] = {}
    for off in range(_HEADER + _SECTION_HEADER, _HEADER + s0_len - 9, 10):
        sid, length, index = struct.unpack_from("<HII", data, off)
        if length == 0 or sid == 0:
            continue
        start = index - 1
        if start < 0 or start + length > len(data) or length < _SECTION_HEADER:
            raise EcgError(
                f"section {sid} pointer (offset {index}, length {length}) is outside the file", source=source
            )
        crc, got_id = struct.unpack_from("<HH", data, start)
        if got_id != sid:
            raise EcgError(f"section 0 points to section {sid} but finds section {got_id}", source=source)
        if crc_ccitt(data[start + 2 : start + length]) != crc:
            raise EcgError(f"section {sid} CRC mismatch (corrupt data)", source=source)
        bodies[sid] = data[start + _SECTION_HEADER : start + length]
    return _Sections(data, bodies, version)


def _scp_text(value: bytes) -> str | None:
    """A section 1 text tag: NUL-terminated, ASCII or Latin-1 (SCP-ECG's 1-byte character sets)."""
    text = value.split(b"\0", 1)[0].decode("latin-1").strip()
    return text or None


def _patient_and_time(body: bytes | None) -> tuple[Patient, datetime | None]:
    """Section 1 tags: 0 last name, 1 first name, 2 patient ID, 4 age, 5 date of birth, 8 sex,
    25 acquisition date, 26 acquisition time, 34 time zone (minutes from UTC; 0x7FFF unknown)."""
    if not body:
        return Patient(), None
    age: float | None = None
    sex = Sex.UNKNOWN
    date: tuple[int, int, int] | None = None
    birth: date_type | None = None
    time = (0, 0, 0)
    texts: dict[int, str | None] = {}
    zone_minutes: int | None = None
    pos = 0
    while pos + 3 <= len(body):
        tag = body[pos]
        (length,) = struct.unpack_from("<H", body, pos + 1)
        value = body[pos + 3 : pos + 3 + length]
        pos += 3 + length
        if tag == 255:
            break
        if tag in (0, 1, 2):
            texts[tag] = _scp_text(value)
        elif tag == 4 and len(value) >= 3:
            amount, unit = struct.unpack_from("<HB", value)
            if unit in _AGE_UNITS and amount:
                years = amount / _AGE_UNITS[unit]
                age = years if years < 150 else None
        elif tag == 5 and len(value) >= 4:
            year, month, day = struct.unpack_from("<HBB", value)
            try:
                birth = date_type(year, month, day) if year else None
            except ValueError:
                birth = None
        elif tag == 8 and value:
            sex = {1: Sex.MALE, 2: Sex.FEMALE}.get(value[0], Sex.UNKNOWN)
        elif tag == 25 and len(value) >= 4:
            date = struct.unpack_from("<HBB", value)
        elif tag == 26 and len(value) >= 3:
            time = (value[0], value[1], value[2])
        elif tag == 34 and len(value) >= 2:
            (minutes,) = struct.unpack_from("<h", value)
            zone_minutes = None if minutes == 0x7FFF else minutes
    acquired = None
    if date is not None:
        try:
            acquired = datetime(date[0], date[1], date[2], *time, tzinfo=utc_offset(zone_minutes))
        except ValueError:
            acquired = None
    patient = patient_of(
        identifier=texts.get(2),
        name=person_name(texts.get(0), texts.get(1)),
        birth_date=birth,
        sex=sex,
        age_years=age,
        acquired=acquired.replace(tzinfo=None) if acquired is not None else None,
    )
    return patient, acquired


def decode_default_huffman(stream: bytes, count: int) -> np.ndarray:
    """Decode ``count`` values with the SCP-ECG default Huffman table (MSB first).

    Codes: "0" -> 0; n ones, a zero, a sign bit -> +/-n (n = 1..8); nine ones and a zero ->
    the next 8 bits as a signed value; ten ones -> the next 16 bits as a signed value.
    """
    if count > 8 * len(stream):  # every value takes at least one bit: refuse before allocating
        raise ValueError(f"{len(stream)} bytes cannot hold {count} values")
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8)).tobytes().translate(bytes.maketrans(b"\0\1", b"01"))
    text = bits.decode("ascii")
    out = np.empty(count, dtype=np.int64)
    pos, n_bits = 0, len(text)
    for i in range(count):
        if pos >= n_bits:
            raise ValueError(f"stream ends after {i} of {count} values")
        zero = text.find("0", pos, pos + 10)
        ones = (zero - pos) if zero >= 0 else 10
        if ones == 0:
            out[i] = 0
            pos += 1
        elif ones <= 8:
            sign = text[pos + ones + 1 : pos + ones + 2]
            if not sign:
                raise ValueError(f"stream ends inside value {i}")
            out[i] = -ones if sign == "1" else ones
            pos += ones + 2
        else:
            width = 8 if ones == 9 else 16
            start = pos + 10
            raw = text[start : start + width]
            if len(raw) < width:
                raise ValueError(f"stream ends inside value {i}")
            v = int(raw, 2)
            out[i] = v - (1 << width) if v >= 1 << (width - 1) else v
            pos = start + width
    return out


def undo_differences(d: np.ndarray, order: int) -> np.ndarray:
    """Invert SCP's first (x[n] = d[n] + x[n-1]) or second (x[n] = d[n] + 2x[n-1] - x[n-2]) differences."""
    x = d.astype(np.int64)
    if order == 0 or x.size == 0:
        return x
    if order == 1:
        return np.cumsum(x)
    if order == 2:
        y = x.copy()
        if y.size > 1:
            y[1] -= 2 * y[0]  # x1 is stored as is; make it a first difference of the first differences
        return np.cumsum(np.cumsum(y))
    raise ValueError(f"difference order {order}")


def _leads(body: bytes, source: str) -> tuple[list[str], int]:
    """Section 3: lead names and samples per lead; refuses reference-beat subtraction."""
    if len(body) < 2:
        raise EcgError("section 3 (lead definition) is empty", source=source)
    n_leads, flags = body[0], body[1]
    if flags & 0x01:
        raise EcgError(
            "SCP-ECG with reference beat subtraction (section 3 flag) is not decoded; expected plain rhythm data",
            source=source,
        )
    names: list[str] = []
    lengths: set[int] = set()
    for i in range(n_leads):
        off = 2 + 9 * i
        if off + 9 > len(body):
            raise EcgError(f"section 3 declares {n_leads} leads but holds {i}", source=source)
        first, last, lead_id = struct.unpack_from("<IIB", body, off)
        # sample numbers are 1-based and inclusive; some v1.x writers start at 0 with an exclusive end
        lengths.add(last - first + 1 if first >= 1 else last - first)
        name = SCP_LEAD_NAMES.get(lead_id, f"ch{i + 1}")
        names.append(name if name not in names else f"{name}#{i + 1}")
    if len(lengths) != 1 or min(lengths) < 2:
        raise EcgError(
            f"leads have sample ranges of lengths {sorted(lengths)}; expected one length >= 2", source=source
        )
    n = lengths.pop()
    check_declared_samples(n * len(names), "section 3 (lead definition)", source)  # before any allocation
    return names, n


def _rhythm(body: bytes, names: list[str], n: int, huffman: bool, source: str) -> tuple[np.ndarray, float]:
    if len(body) < 6 + 2 * len(names):
        raise EcgError("section 6 (rhythm data) is shorter than its header", source=source)
    avm_nv, interval_us, diff, bimodal = struct.unpack_from("<HHBB", body)
    if bimodal:
        raise EcgError("SCP-ECG bimodal compression is not decoded", source=source)
    if avm_nv == 0 or interval_us == 0:
        raise EcgError(
            f"section 6: amplitude multiplier {avm_nv} nV and interval {interval_us} us must be > 0", source=source
        )
    if diff not in (0, 1, 2):
        raise EcgError(f"section 6: difference encoding {diff}; expected 0, 1 or 2", source=source)
    sizes = struct.unpack_from(f"<{len(names)}H", body, 6)
    pos = 6 + 2 * len(names)
    rows = []
    for name, size in zip(names, sizes, strict=True):
        stream = body[pos : pos + size]
        pos += size
        if len(stream) < size:
            raise EcgError(f"section 6: lead {name} data truncated ({len(stream)} of {size} bytes)", source=source)
        try:
            if huffman:
                values = decode_default_huffman(stream, n)
            else:
                if size < 2 * n:
                    raise ValueError(f"{size} bytes for {n} int16 samples")
                values = np.frombuffer(stream[: 2 * n], dtype="<i2").astype(np.int64)
        except ValueError as exc:
            raise EcgError(f"section 6: lead {name} cannot be decoded ({exc})", source=source) from None
        rows.append(undo_differences(values, diff) * (avm_nv / 1e6))
    return np.vstack(rows), 1e6 / interval_us


def _measurements(body: bytes | None) -> list[Measurement]:
    """Section 7: average RR, and the first (dominant) beat's boundaries (ms) and axes (deg)."""
    if not body or len(body) < 6 + 16:
        return []
    rr: int = struct.unpack_from("<H", body, 2)[0]
    p_on, p_off, qrs_on, qrs_off, t_off = struct.unpack_from("<5H", body, 6)
    p_axis, qrs_axis, t_axis = struct.unpack_from("<3h", body, 16)
    out: list[Measurement | None] = []
    if rr != UNDEFINED:
        out.append(device_measurement(DeviceQuantity.RR, rr))
    if UNDEFINED not in (p_on, qrs_on):
        out.append(device_measurement(DeviceQuantity.PR, qrs_on - p_on))
    if UNDEFINED not in (p_on, p_off):
        out.append(device_measurement(DeviceQuantity.P_DURATION, p_off - p_on))
    if UNDEFINED not in (qrs_on, qrs_off):
        out.append(device_measurement(DeviceQuantity.QRS, qrs_off - qrs_on))
    if UNDEFINED not in (qrs_on, t_off):
        out.append(device_measurement(DeviceQuantity.QT, t_off - qrs_on))
    for quantity, angle in (
        (DeviceQuantity.P_AXIS, p_axis),
        (DeviceQuantity.QRS_AXIS, qrs_axis),
        (DeviceQuantity.T_AXIS, t_axis),
    ):
        if -180 <= angle <= 360:  # 999 / 29999: undefined
            out.append(device_measurement(quantity, angle))
    return [m for m in out if m is not None]


def _statements(body: bytes | None) -> tuple[str, ...]:
    """Section 8: confirmed flag, date, time, then numbered, length-prefixed statements."""
    if not body or len(body) < 9:
        return ()
    count = body[8]
    pos = 9
    out = []
    for _ in range(count):
        if pos + 3 > len(body):
            break
        (length,) = struct.unpack_from("<H", body, pos + 1)
        text = body[pos + 3 : pos + 3 + length].split(b"\0", 1)[0].decode("latin-1").strip()
        pos += 3 + length
        if text:
            out.append(text)
    return tuple(out)


def read(path: Path) -> EcgFile:
    """Read an SCP-ECG file's rhythm data, patient age/sex, acquisition time and device data."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EcgError(f"cannot read file ({exc.strerror})", source=source) from None
    if not is_scp(path, data[:64]):
        raise EcgError("not an SCP-ECG file (length field, section 0 tag or file CRC wrong)", source=source)
    sections = _sections(data, source)
    for sid in (3, 6):
        if sid not in sections.bodies:
            raise EcgError(f"no section {sid}; expected sections 3 (leads) and 6 (rhythm data)", source=source)
    huffman = False
    if 2 in sections.bodies:
        body2 = sections.bodies[2]
        table = struct.unpack_from("<H", body2)[0] if len(body2) >= 2 else None
        if table != DEFAULT_HUFFMAN_TABLE:
            raise EcgError(f"custom Huffman tables (section 2 says {table}) are not decoded", source=source)
        huffman = True
    names, n = _leads(sections.bodies[3], source)
    signal, fs = _rhythm(sections.bodies[6], names, n, huffman, source)
    signal, names_t = complete_leads(signal, names)
    patient, acquired = _patient_and_time(sections.bodies.get(1))
    try:
        record = EcgRecord(
            signal=signal,
            lead_names=names_t,
            sampling_rate_hz=fs,
            source=source,
            patient=patient,
            acquired_at=acquired,
            device_measurements=tuple(_measurements(sections.bodies.get(7))),
            device_statements=_statements(sections.bodies.get(8)),
            device_name=f"SCP-ECG v{sections.version / 10:.1f} device",
        )
    except RecordError as exc:
        raise EcgError(f"rhythm data do not form a valid ECG record ({exc})", source=source) from None
    return EcgFile(record=record)
