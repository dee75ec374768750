"""ECG file readers: detect a file's format by content and read it into ``core.EcgRecord``.

Public face::

    detect_format(path) -> EcgFormat | None
    read_ecg(path) -> EcgRecord            # the rhythm record, millivolts, standard lead names
    read_ecg_file(path) -> EcgFile         # + the device's representative beat and fiducials

Formats: WFDB, DICOM 12-lead/General/Ambulatory ECG waveform, HL7 aECG, GE MUSE XML,
Philips Sierra XML, SCP-ECG (default Huffman table; no reference-beat subtraction).  Detection looks at content,
never at the extension: XML root element and namespace, the DICM preamble and SOP class,
the WFDB header's structure, the SCP-ECG length field, section tag and CRC.  Every failure
is an :class:`core.errors.EcgError` naming the file and what was expected.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from core.errors import EcgError
from core.records import EcgRecord
from ecg.readers import dicom_waveform, ge_muse, hl7_aecg, philips_sierra, scp_ecg, wfdb_reader
from ecg.readers._common import DeviceFiducial, DeviceQuantity, EcgFile

__all__ = ["DeviceFiducial", "DeviceQuantity", "EcgFile", "EcgFormat", "detect_format", "read_ecg", "read_ecg_file"]

_HEAD_BYTES: Final = 4096


class EcgFormat(enum.Enum):
    """ECG file formats mmdx recognises."""

    WFDB = "wfdb"  #: PhysioNet WFDB record (header + signal files)
    DICOM_WAVEFORM = "dicom-waveform"  #: DICOM 12-lead / General / Ambulatory ECG waveform object
    HL7_AECG = "hl7-aecg"  #: HL7 v3 annotated ECG (FDA)
    GE_MUSE = "ge-muse-xml"  #: GE MUSE RestingECG XML
    PHILIPS_SIERRA = "philips-sierra-xml"  #: Philips Sierra / PhilipsECG XML
    SCP_ECG = "scp-ecg"  #: SCP-ECG binary (EN 1064)


_READERS: Final[dict[EcgFormat, Callable[[Path], EcgFile]]] = {
    EcgFormat.WFDB: wfdb_reader.read,
    EcgFormat.DICOM_WAVEFORM: dicom_waveform.read,
    EcgFormat.HL7_AECG: hl7_aecg.read,
    EcgFormat.GE_MUSE: ge_muse.read,
    EcgFormat.PHILIPS_SIERRA: philips_sierra.read,
    EcgFormat.SCP_ECG: scp_ecg.read,
}

_XML_DECL = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?")
_XML_SKIP = re.compile(rb"^(?:<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*|<\?[^>]*\?>\s*)*", re.DOTALL)
_XML_ROOT = re.compile(rb"^<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)([^>]*)>", re.DOTALL)


def _as_utf8(head: bytes) -> bytes:
    """The first bytes re-encoded as UTF-8 when they are UTF-16 (Philips writes UTF-16 with a BOM)."""
    if head.startswith(b"\xff\xfe") or (head[:2] == b"<\x00"):
        return head.removeprefix(b"\xff\xfe").decode("utf-16-le", errors="ignore").encode()
    if head.startswith(b"\xfe\xff") or (head[:2] == b"\x00<"):
        return head.removeprefix(b"\xfe\xff").decode("utf-16-be", errors="ignore").encode()
    return head


def _xml_root(head: bytes) -> tuple[str, str] | None:
    """(local name, namespace) of the root element from the first bytes, without parsing the file."""
    head = _as_utf8(head)
    rest = head[_XML_DECL.match(head).end() :]  # type: ignore[union-attr]
    rest = rest[_XML_SKIP.match(rest).end() :]  # type: ignore[union-attr]
    m = _XML_ROOT.match(rest)
    if not m:
        return None
    prefix = (m.group(1) or b"").rstrip(b":").decode("ascii", "replace")
    attr = rf"xmlns{':' + prefix if prefix else ''}\s*=\s*[\"']([^\"']*)[\"']".encode()
    ns = re.search(attr, m.group(3))
    return m.group(2).decode("ascii", "replace"), (ns.group(1).decode("utf-8", "replace") if ns else "")


def _xml_format(head: bytes) -> EcgFormat | None:
    root = _xml_root(head)
    if root is None:
        return None
    name, ns = root
    tag = f"{{{ns}}}{name}" if ns else name
    if hl7_aecg.is_aecg_root(tag):
        return EcgFormat.HL7_AECG
    if ge_muse.is_muse_root(tag):
        return EcgFormat.GE_MUSE
    if philips_sierra.is_sierra_root(tag):
        return EcgFormat.PHILIPS_SIERRA
    return None


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(_HEAD_BYTES)
    except (IsADirectoryError, FileNotFoundError):
        return b""
    except OSError as exc:
        raise EcgError(f"cannot read file ({exc.strerror})", source=str(path)) from None


def detect_format(path: str | Path) -> EcgFormat | None:
    """The ECG format of a file by its content, or None when it is not a recognised ECG.

    A WFDB record may be named by its base name (no such file; ``<name>.hea`` exists), its
    header, or one of the signal files its header lists.
    """
    p = Path(path)
    head = _head(p) if p.is_file() else b""
    if head:
        if dicom_waveform.is_ecg_dicom(p, head):
            return EcgFormat.DICOM_WAVEFORM
        fmt = _xml_format(head)
        if fmt is not None:
            return fmt
        if scp_ecg.is_scp(p, head):
            return EcgFormat.SCP_ECG
    if wfdb_reader.is_wfdb(p, head):
        return EcgFormat.WFDB
    return None


def _why_not(path: Path) -> str:
    """What the content looked like, for the error message."""
    if not path.exists():
        hea = wfdb_reader.header_path(path)
        if hea is None:
            return "no such file (and no WFDB header beside it)"
        return f"{hea.name} is not a WFDB header (expected a record line, then one line per signal)"
    if path.is_dir():
        return "a directory, expected an ECG file"
    head = _head(path)
    if not head:
        return "empty file"
    root = _xml_root(head)
    if root is not None:
        name, ns = root
        return (
            f"XML root element {name!r} in namespace {ns or '(none)'!r}; expected AnnotatedECG in urn:hl7-org:v3 "
            "(HL7 aECG), RestingECG (GE MUSE) or restingecgdata (Philips)"
        )
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "a DICOM file whose SOP class is not an ECG waveform class"
    return "content matches no ECG format (DICOM waveform, WFDB, HL7 aECG, GE MUSE, Philips Sierra, SCP-ECG)"


def read_ecg_file(path: str | Path) -> EcgFile:
    """Read any supported ECG file: rhythm record plus the device's median beat and fiducials."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt is None:
        raise EcgError(f"not a recognised ECG file: {_why_not(p)}", source=str(p))
    return _READERS[fmt](p)


def read_ecg(path: str | Path) -> EcgRecord:
    """Read any supported ECG file into an EcgRecord (float32 mV, leads x samples)."""
    return read_ecg_file(path).record
