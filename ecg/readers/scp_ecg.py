"""SCP-ECG (EN 1064 / ISO 11073-91064) detection.

mmdx recognises SCP-ECG files by content (file CRC, the length field, and section 0's
"SCPECG" tag) so that they are routed and reported clearly, but does not decode them yet:
the only samples at hand are GPL-licensed and cannot serve as test data, and a decoder
without real test files (Huffman tables, reference-beat subtraction, bimodal compression)
would not be solid.  :func:`read` therefore raises an :class:`EcgError` that says so.
"""

from __future__ import annotations

import binascii
import struct
from pathlib import Path

from core.errors import EcgError
from ecg.readers._common import EcgFile

_HEADER = 6  # CRC (2) + file length (4)
_SECTION_ID = b"SCPECG"


def crc_ccitt(data: bytes) -> int:
    """CRC-CCITT (polynomial 0x1021, initial 0xFFFF) as SCP-ECG uses for files and sections."""
    return binascii.crc_hqx(data, 0xFFFF)


def looks_like_scp(head: bytes, file_size: int) -> bool:
    """Cheap check on the first bytes: the length field equals the file size and section 0 is tagged."""
    if len(head) < _HEADER + 16:
        return False
    (length,) = struct.unpack_from("<I", head, 2)
    (section_id,) = struct.unpack_from("<H", head, _HEADER + 2)
    return length == file_size and section_id == 0 and head[_HEADER + 10 : _HEADER + 16] == _SECTION_ID


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


def read(path: Path) -> EcgFile:
    """Not supported: raises EcgError naming the file and the format."""
    raise EcgError(
        "SCP-ECG file recognised, but mmdx does not decode SCP-ECG yet; export the ECG as DICOM waveform, "
        "HL7 aECG or vendor XML",
        source=str(path),
    )
