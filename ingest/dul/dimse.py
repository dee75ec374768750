"""DIMSE messages of the fast engine (PS3.7 section 9 and annex E): command sets, C-STORE and C-ECHO.

A command set is group 0000 in implicit VR little endian; it is parsed into raw values by tag (the
element number: the group is 0) and answered with a response command set.  The received dataset becomes
a DICOM file by putting a preamble and file meta in front of it (:func:`file_head`); the handler
protocols say who takes it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Final, Protocol

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from ingest.dul.acse import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from ingest.dul.pdu import ProtocolError

# Command set elements (group 0000; PS3.7 table E.1-1)
AFFECTED_SOP_CLASS_UID: Final = 0x0002
COMMAND_FIELD: Final = 0x0100
MESSAGE_ID: Final = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO: Final = 0x0120
COMMAND_DATA_SET_TYPE: Final = 0x0800
STATUS: Final = 0x0900
AFFECTED_SOP_INSTANCE_UID: Final = 0x1000

# Command Field values
C_STORE_RQ: Final = 0x0001
C_STORE_RSP: Final = 0x8001
C_ECHO_RQ: Final = 0x0030
C_ECHO_RSP: Final = 0x8030
#: The commands this acceptor answers; any other is refused when its command set completes.
SUPPORTED_COMMANDS: Final = (C_STORE_RQ, C_ECHO_RQ)

#: Command Data Set Type: no dataset follows the command set.
NO_DATASET: Final = 0x0101
#: Status: success.
SUCCESS: Final = 0x0000

#: A command set is a few hundred bytes; more is not DIMSE.
MAX_COMMAND_BYTES: Final = 64 << 10

_ELEMENT = struct.Struct("<HHL")

#: A store handler: (file bytes, calling AE, transfer syntax, affected SOP instance UID) -> DIMSE status.
StoreHandler = Callable[[bytes, str, str, str], int]


class StoreSink(Protocol):
    """Where one C-STORE's dataset goes while it arrives."""

    def add(self, piece: memoryview, last: bool) -> None:
        """The next dataset fragment (a view into a received PDU, not copied); ``last``: the final one."""

    def add_many(self, pieces: list[memoryview], last: bool) -> None:
        """Several fragments in order, as :meth:`add` would take them one by one."""

    def finish(self) -> int:
        """The dataset is complete: the DIMSE status to answer."""

    def abort(self) -> None:
        """The association ended before the dataset was complete."""


class StreamingStoreHandler(Protocol):
    """A store handler that takes each dataset as it arrives instead of as one ``bytes`` at the end."""

    def begin(self, head: bytes, calling: str, transfer_syntax: str, sop_instance_uid: str) -> StoreSink:
        """A C-STORE request arrived; ``head`` is the preamble and file meta the stored file starts with."""


# --------------------------------------------------------------------------- command sets


def parse_command(data: bytes) -> dict[int, bytes]:
    """Implicit VR little endian group 0000 elements: tag -> raw value."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        group, elem, length = _ELEMENT.unpack_from(data, pos)
        pos += 8
        if pos + length > end:
            raise ProtocolError("command set element runs past the end of the command")
        out[(group << 16) | elem] = data[pos : pos + length]
        pos += length
    if pos != end:
        raise ProtocolError("trailing bytes in the command set")
    return out


def us_value(fields: dict[int, bytes], tag: int) -> int | None:
    """An US element of a parsed command set; None when absent or short."""
    raw = fields.get(tag)
    return struct.unpack("<H", raw[:2])[0] if raw is not None and len(raw) >= 2 else None


def ui_value(fields: dict[int, bytes], tag: int) -> str:
    """An UI element of a parsed command set as text ('' when absent)."""
    return fields.get(tag, b"").decode("ascii", "replace").strip(" \x00")


def _uid_bytes(uid: str) -> bytes:
    """A UID value padded to even length."""
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _encode_command(elements: Sequence[tuple[int, bytes]]) -> bytes:
    """A command set from (element, raw value) pairs, its group length first."""
    body = b"".join(_ELEMENT.pack(0, el, len(v)) + v for el, v in elements)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def encode_response(
    command_field: int, message_id: int, sop_class: str, sop_instance: str | None, status: int
) -> bytes:
    """A C-STORE-RSP or C-ECHO-RSP command set (no dataset follows)."""
    elements = [(AFFECTED_SOP_CLASS_UID, _uid_bytes(sop_class)), (COMMAND_FIELD, struct.pack("<H", command_field))]
    elements.append((MESSAGE_ID_BEING_RESPONDED_TO, struct.pack("<H", message_id)))
    elements.append((COMMAND_DATA_SET_TYPE, struct.pack("<H", NO_DATASET)))
    elements.append((STATUS, struct.pack("<H", status)))
    if sop_instance:
        elements.append((AFFECTED_SOP_INSTANCE_UID, _uid_bytes(sop_instance)))
    return _encode_command(elements)


# --------------------------------------------------------------------------- the received object as a file


def _meta_element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HH", 0x0002, element) + vr + struct.pack("<H", len(value)) + value


def file_bytes(sop_class: str, sop_instance: str, ts: str, calling: str, fragments: list[memoryview]) -> bytes:
    """DICOM file format around the received dataset (as pynetdicom's ``encoded_dataset`` builds it)."""
    return b"".join((file_head(sop_class, sop_instance, ts, calling), *fragments))


def file_head(sop_class: str, sop_instance: str, ts: str, calling: str) -> bytes:
    """Preamble, ``DICM`` and the group 0002 file meta of a received object.

    Encoded here directly (explicit VR little endian, the same bytes as pydicom's ``write_file_meta_info``),
    which costs a fraction of building a ``FileMetaDataset`` per object.
    """
    if not (sop_class.isascii() and sop_instance.isascii() and ts.isascii() and calling.isascii()):
        return _file_bytes_pydicom(sop_class, sop_instance, ts, calling, [])
    body = b"".join(
        (
            struct.pack("<HH", 0x0002, 0x0001) + b"OB\x00\x00" + struct.pack("<L", 2) + b"\x00\x01",
            _meta_element(0x0002, b"UI", sop_class.encode("ascii"), b"\x00"),
            _meta_element(0x0003, b"UI", sop_instance.encode("ascii"), b"\x00"),
            _meta_element(0x0010, b"UI", ts.encode("ascii"), b"\x00"),
            _meta_element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\x00"),
            _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION.encode("ascii"), b" "),
            _meta_element(0x0016, b"AE", calling.encode("ascii"), b" ") if calling else b"",
        )
    )
    group_length = struct.pack("<HH", 0x0002, 0x0000) + b"UL" + struct.pack("<HL", 4, len(body))
    return b"".join((b"\x00" * 128, b"DICM", group_length, body))


def _file_bytes_pydicom(sop_class: str, sop_instance: str, ts: str, calling: str, fragments: list[memoryview]) -> bytes:
    """The reference encoding with pydicom (used when a value is not plain ASCII, and by the tests)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if calling:
        meta.SourceApplicationEntityTitle = calling
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    out = BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    out.write(buf.getvalue())
    for f in fragments:
        out.write(f)
    return out.getvalue()
