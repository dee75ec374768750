"""UIDs and time: deterministic where an output is derived from an input.

A derived object's UID is a function of (UID root, software version, input
identifiers, purpose), so the same input processed by the same software gives
the same UIDs and re-runs / golden files stay stable.  The clock is injectable
for the same reason.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Protocol

from core._validate import check_uid
from core.errors import RecordError

#: UID root used when none is configured: the "2.25" UUID-derived arc needs no registration.
UUID_ROOT = "2.25"


def _as_uid(root: str, number: int) -> str:
    check_uid("uid_root", "uid_root", root)
    uid = f"{root}.{number}"
    if len(uid) > 64:
        # keep the most significant digits that fit; still deterministic
        uid = f"{root}.{str(number)[: 64 - len(root) - 1].lstrip('0') or '1'}"
    check_uid("uid", "value", uid)
    return uid


def derive_uid(root: str, *parts: str) -> str:
    """A UID that is a pure function of ``root`` and ``parts``.

    Parameters
    ----------
    root:
        The organisation's UID root (e.g. ``1.2.826.0.1.3680043.10.1234``) or ``2.25``.
    parts:
        What the derived object depends on: software version, input UIDs,
        purpose ("sr", "fhir-bundle"...).  Order matters.
    """
    if not parts:
        raise RecordError("derive_uid", "parts", "a derived UID needs at least one input part")
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    if root == UUID_ROOT:
        return _as_uid(root, uuid.UUID(bytes=digest[:16], version=5).int)
    max_digits = 64 - len(root) - 1
    if max_digits < 8:
        raise RecordError("uid_root", "uid_root", f"root {root!r} leaves fewer than 8 digits for derived UIDs")
    number = int.from_bytes(digest, "big") % (10**max_digits)
    return _as_uid(root, number or 1)


def new_uid(root: str) -> str:
    """A fresh random UID under ``root`` (for objects not derived from an input)."""
    return derive_uid(root, uuid.uuid4().hex)


class Clock(Protocol):
    """Where "now" comes from; inject a FixedClock in tests and golden-file runs."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that always returns the same instant (or advances by a step per call)."""

    def __init__(self, instant: datetime, step_s: float = 0.0) -> None:
        if instant.tzinfo is None:
            raise RecordError("FixedClock", "instant", "expected a timezone-aware datetime")
        self._instant = instant
        self._step_s = step_s

    def now(self) -> datetime:
        from datetime import timedelta

        current = self._instant
        self._instant = current + timedelta(seconds=self._step_s)
        return current
