"""Association negotiation (PS3.8 section 7.1, PS3.7 annex D): A-ASSOCIATE-RQ read, AC or RJ answered.

Presentation contexts are accepted for Verification and the configured storage SOP classes in the
configured transfer syntaxes; the result, source and reason codes are named here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from core.identifiers import derive_uid
from core.version import SOFTWARE_VERSION
from ingest.dul.pdu import (
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    ABSTRACT_SYNTAX_ITEM,
    APPLICATION_CONTEXT_ITEM,
    IMPLEMENTATION_CLASS_UID_ITEM,
    IMPLEMENTATION_VERSION_NAME_ITEM,
    ITEM_HEADER,
    MAXIMUM_LENGTH_ITEM,
    PDU_HEADER,
    PRESENTATION_CONTEXT_AC_ITEM,
    TRANSFER_SYNTAX_ITEM,
    USER_INFORMATION_ITEM,
    item,
    pad_ae,
)

APPLICATION_CONTEXT: Final = "1.2.840.10008.3.1.1.1"
VERIFICATION: Final = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
IMPLEMENTATION_CLASS_UID: Final = derive_uid("2.25", "mmdx", "implementation-class", SOFTWARE_VERSION)
IMPLEMENTATION_VERSION: Final = f"MMDX_{SOFTWARE_VERSION}"[:16]

#: Bytes before the first variable item of an A-ASSOCIATE-RQ body: version, reserved, AE titles, reserved.
ASSOCIATE_RQ_FIXED_LENGTH: Final = 68

# Presentation context results in the A-ASSOCIATE-AC (PS3.8 table 9-18)
CONTEXT_ACCEPTED: Final = 0
CONTEXT_ABSTRACT_SYNTAX_NOT_SUPPORTED: Final = 3
CONTEXT_TRANSFER_SYNTAXES_NOT_SUPPORTED: Final = 4

# A-ASSOCIATE-RJ result, source and reason (PS3.8 table 9-21)
REJECTED_PERMANENT: Final = 0x01
REJECTED_TRANSIENT: Final = 0x02
SOURCE_SERVICE_USER: Final = 0x01
SOURCE_SERVICE_PROVIDER_PRESENTATION: Final = 0x03
REASON_CALLING_AE_NOT_RECOGNIZED: Final = 0x03  #: source: service user
REASON_CALLED_AE_NOT_RECOGNIZED: Final = 0x07  #: source: service user
REASON_LOCAL_LIMIT_EXCEEDED: Final = 0x02  #: source: service provider (presentation)


@dataclass(slots=True)
class Context:
    """An accepted presentation context."""

    abstract_syntax: str
    transfer_syntax: str


#: A proposed presentation context: ID, abstract syntax, transfer syntaxes in the requestor's order.
Proposal = tuple[int, str, list[str]]


def parse_presentation_context(payload: memoryview) -> Proposal:
    """A presentation context item (0x20) of an A-ASSOCIATE-RQ."""
    context_id = payload[0]
    abstract, syntaxes = "", []
    pos = 4
    while pos + 4 <= len(payload):
        item_type, _, length = ITEM_HEADER.unpack_from(payload, pos)
        value = bytes(payload[pos + 4 : pos + 4 + length]).decode("ascii", "replace").strip(" \x00")
        pos += 4 + length
        if item_type == ABSTRACT_SYNTAX_ITEM:
            abstract = value
        elif item_type == TRANSFER_SYNTAX_ITEM:
            syntaxes.append(value)
    return context_id, abstract, syntaxes


def maximum_length(payload: memoryview) -> int | None:
    """The maximum PDU length the requestor receives, from its user information item (0x50); None if absent."""
    found = None
    pos = 0
    while pos + 4 <= len(payload):
        item_type, _, length = ITEM_HEADER.unpack_from(payload, pos)
        if item_type == MAXIMUM_LENGTH_ITEM and length == 4:
            found = struct.unpack_from(">L", payload, pos + 4)[0]
        pos += 4 + length
    return found


def _choose_contexts(
    proposals: list[Proposal], storage_sop_classes: frozenset[str], transfer_syntaxes: tuple[str, ...]
) -> list[tuple[int, str, int, str | None, list[str]]]:
    """Each proposal's answer: (context ID, abstract syntax, result, chosen transfer syntax or None, proposed)."""
    out = []
    for context_id, abstract, syntaxes in proposals:
        supported = abstract == VERIFICATION or abstract in storage_sop_classes
        # the requestor's order (its first compressed choice keeps the object as encoded), except that
        # explicit VR little endian beats implicit VR, and big endian is the last resort
        usable = [ts for ts in syntaxes if ts in transfer_syntaxes]
        usable.sort(key=lambda ts: (ts == EXPLICIT_VR_BIG_ENDIAN, ts == IMPLICIT_VR_LITTLE_ENDIAN))
        chosen = usable[0] if usable else None
        if abstract == VERIFICATION and chosen is None and IMPLICIT_VR_LITTLE_ENDIAN in syntaxes:
            chosen = IMPLICIT_VR_LITTLE_ENDIAN
        if supported and chosen:
            result = CONTEXT_ACCEPTED
        else:
            result = CONTEXT_ABSTRACT_SYNTAX_NOT_SUPPORTED if not supported else CONTEXT_TRANSFER_SYNTAXES_NOT_SUPPORTED
        out.append((context_id, abstract, result, chosen, syntaxes))
    return out


def accept(
    proposals: list[Proposal],
    storage_sop_classes: frozenset[str],
    transfer_syntaxes: tuple[str, ...],
    called: str,
    calling: str,
    max_pdu: int,
) -> tuple[bytes, dict[int, Context]]:
    """The A-ASSOCIATE-AC answering ``proposals``, and the contexts it accepts by ID."""
    contexts: dict[int, Context] = {}
    items = [item(APPLICATION_CONTEXT_ITEM, APPLICATION_CONTEXT.encode())]
    answers = _choose_contexts(proposals, storage_sop_classes, transfer_syntaxes)
    for context_id, abstract, result, chosen, syntaxes in answers:
        if result == CONTEXT_ACCEPTED and chosen is not None:
            contexts[context_id] = Context(abstract, chosen)
        ts_item = item(
            TRANSFER_SYNTAX_ITEM, (chosen or syntaxes[0] if syntaxes else IMPLICIT_VR_LITTLE_ENDIAN).encode()
        )
        items.append(item(PRESENTATION_CONTEXT_AC_ITEM, bytes([context_id, 0, result, 0]) + ts_item))
    user = item(MAXIMUM_LENGTH_ITEM, struct.pack(">L", max_pdu))
    user += item(IMPLEMENTATION_CLASS_UID_ITEM, IMPLEMENTATION_CLASS_UID.encode())
    user += item(IMPLEMENTATION_VERSION_NAME_ITEM, IMPLEMENTATION_VERSION.encode())
    items.append(item(USER_INFORMATION_ITEM, user))
    header = struct.pack(">HH", 1, 0) + pad_ae(called) + pad_ae(calling) + bytes(32)
    body = header + b"".join(items)
    return PDU_HEADER.pack(A_ASSOCIATE_AC, 0, len(body)) + body, contexts


def reject(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ."""
    return PDU_HEADER.pack(A_ASSOCIATE_RJ, 0, 4) + bytes([0, result, source, reason])
