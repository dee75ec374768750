"""What a sender returns for one outbox item, and the protocol every sender follows.

A sender never touches the database: it gets :class:`store.outbox.OutboxItem` records and returns one
outcome per item; :class:`pacs_bridge.loop.OutboxLoop` records the outcomes.  Exceptions are not outcomes:
a sender turns every failure it can classify into :class:`Retry` or :class:`Failed` with a PHI-free reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.errors import BridgeError
from store.outbox import OutboxItem

__all__ = ["AwaitingCommitment", "Delivered", "Failed", "Outcome", "Retry", "Sender"]


@dataclass(frozen=True, slots=True)
class Delivered:
    """The peer confirmed it has the artefact (C-STORE success or warning, HTTP 2xx, MLLP AA, file renamed)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class AwaitingCommitment:
    """Stored; a storage commitment was requested under ``transaction_uid`` and its report is awaited."""

    transaction_uid: str

    def __post_init__(self) -> None:
        if not self.transaction_uid:
            raise BridgeError("AwaitingCommitment.transaction_uid: expected a UID, got an empty string")


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure (peer down, timeout, busy, MLLP AE): try again after the backoff."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason:
            raise BridgeError("Retry.reason: expected a reason, got an empty string")


@dataclass(frozen=True, slots=True)
class Failed:
    """The peer refused the artefact for good (bad request, AR, refused SOP class): dead-letter it."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason:
            raise BridgeError("Failed.reason: expected a reason, got an empty string")


Outcome = Delivered | AwaitingCommitment | Retry | Failed


class Sender(Protocol):
    """Delivers items to one destination.

    ``send`` gets a batch of items for this destination, in delivery order, and returns one outcome per
    item, in the same order (a DICOM sender sends the whole batch over one association).  ``close``
    releases whatever the sender keeps open between batches.
    """

    def send(self, items: Sequence[OutboxItem]) -> list[Outcome]: ...

    def close(self) -> None: ...


@runtime_checkable
class ReadsAhead(Protocol):
    """A sender with per-item work that needs no peer (reading a file's header, say).

    The loop calls ``read_ahead`` on its claim thread with a batch claimed while the previous one is on the
    wire, so that work overlaps the network instead of delaying the next association.  ``send`` must not
    depend on it having run.
    """

    def read_ahead(self, items: Sequence[OutboxItem]) -> None: ...


@runtime_checkable
class KeepsOpen(Protocol):
    """A sender that keeps a connection open from one batch to the next (a DICOM association).

    The loop calls ``release_idle`` when a burst ends (a pass with a batch that was not full, or an idle
    pass), so that nothing stays open at the peer between bursts; the sender stays usable.
    """

    def release_idle(self) -> None: ...
