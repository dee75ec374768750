"""PDU codec of the fast engine's upper layer (PS3.8 section 9.3): PDU and item types, headers, fixed PDUs.

Only what a storage acceptor reads and writes.  The types are plain ``int`` constants, not an ``IntEnum``:
the per-PDU receive loop compares against them, and a module constant costs what the literal did.
"""

from __future__ import annotations

import struct
from typing import Final

# PDU types (PS3.8 table 9-11 and following)
A_ASSOCIATE_RQ: Final = 0x01
A_ASSOCIATE_AC: Final = 0x02
A_ASSOCIATE_RJ: Final = 0x03
P_DATA_TF: Final = 0x04
A_RELEASE_RQ: Final = 0x05
A_RELEASE_RP: Final = 0x06
A_ABORT: Final = 0x07
#: Every PDU type PS3.8 defines; anything else on the wire is not DICOM.
PDU_TYPES: Final = frozenset(range(A_ASSOCIATE_RQ, A_ABORT + 1))

# Item types of A-ASSOCIATE-RQ/AC (PS3.8 sections 9.3.2-9.3.3, annex D)
APPLICATION_CONTEXT_ITEM: Final = 0x10
PRESENTATION_CONTEXT_RQ_ITEM: Final = 0x20
PRESENTATION_CONTEXT_AC_ITEM: Final = 0x21
ABSTRACT_SYNTAX_ITEM: Final = 0x30
TRANSFER_SYNTAX_ITEM: Final = 0x40
USER_INFORMATION_ITEM: Final = 0x50
MAXIMUM_LENGTH_ITEM: Final = 0x51
IMPLEMENTATION_CLASS_UID_ITEM: Final = 0x52
IMPLEMENTATION_VERSION_NAME_ITEM: Final = 0x55

# PDV message control header bits (PS3.8 annex E.2)
PDV_COMMAND: Final = 0x01  #: set: a command fragment; clear: a dataset fragment
PDV_LAST: Final = 0x02  #: set: the last fragment of the command or dataset

# A-ABORT source and reason (PS3.8 table 9-26)
ABORT_SOURCE_SERVICE_PROVIDER: Final = 2
ABORT_REASON_NOT_SPECIFIED: Final = 0

#: Type, reserved, PDU length.
PDU_HEADER: Final = struct.Struct(">BBL")
#: A P-DATA-TF header with its first PDV item header: type, reserved, PDU length, PDV length, context, control.
DATA_PDU: Final = struct.Struct(">BBLLBB")
#: A PDV item header: item length, presentation context ID, message control header.
PDV_HEADER: Final = struct.Struct(">LBB")
#: An item header in A-ASSOCIATE PDUs: type, reserved, item length.
ITEM_HEADER: Final = struct.Struct(">BBH")

#: An A-ASSOCIATE-RQ longer than this is not a storage SCU's.
MAX_ASSOCIATE_RQ_LENGTH: Final = 1 << 20
#: Whatever was negotiated, refuse to allocate more than this for one PDU.
UNLIMITED_PDU_CAP: Final = 1 << 26

#: The A-RELEASE-RP, always the same bytes.
RELEASE_RP: Final = PDU_HEADER.pack(A_RELEASE_RP, 0, 4) + bytes(4)


class ProtocolError(Exception):
    """The peer broke PS3.8; the association is aborted."""


def ae_title(value: bytes | memoryview) -> str:
    """An AE title field as text (padding dropped)."""
    return bytes(value).decode("ascii", "replace").strip(" \x00")


def pad_ae(title: str) -> bytes:
    """An AE title as the 16-byte field of an A-ASSOCIATE PDU."""
    return title.encode("ascii", "replace")[:16].ljust(16, b" ")


def item(item_type: int, payload: bytes) -> bytes:
    """One variable item: header and payload."""
    return ITEM_HEADER.pack(item_type, 0, len(payload)) + payload


def p_data(context_id: int, command: bytes) -> bytes:
    """A P-DATA-TF holding one complete command set as its only PDV."""
    pdv = PDV_HEADER.pack(len(command) + 2, context_id, PDV_COMMAND | PDV_LAST) + command
    return PDU_HEADER.pack(P_DATA_TF, 0, len(pdv)) + pdv


def abort(reason: int = ABORT_REASON_NOT_SPECIFIED) -> bytes:
    """An A-ABORT from the service provider."""
    return PDU_HEADER.pack(A_ABORT, 0, 4) + bytes([0, 0, ABORT_SOURCE_SERVICE_PROVIDER, reason])
