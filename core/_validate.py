"""Small validators shared by the record constructors (highdicom style: raise naming the field)."""

from __future__ import annotations

import math
import re

from core.errors import RecordError

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def check_uid(record: str, field: str, value: str) -> None:
    """Check a DICOM UID: digits and dots, no leading zeros, at most 64 characters."""
    if not isinstance(value, str) or not value:
        raise RecordError(record, field, f"expected a DICOM UID, got {value!r}")
    if len(value) > 64 or not _UID_RE.match(value):
        raise RecordError(record, field, f"{value!r} is not a valid DICOM UID (digits and dots, <= 64 chars)")


_DIGEST_RE = re.compile(r"^(xxh3-128:[0-9a-f]{32}|sha256:[0-9a-f]{64})$")


def check_digest(record: str, field: str, value: str) -> None:
    """Check a labelled content digest: ``"xxh3-128:<32 hex>"`` or ``"sha256:<64 hex>"``."""
    if not isinstance(value, str) or not _DIGEST_RE.match(value):
        raise RecordError(record, field, f"expected 'xxh3-128:<32 hex>' or 'sha256:<64 hex>', got {value!r}")


def check_finite(record: str, field: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise RecordError(record, field, f"expected a finite number, got {value!r}")


def check_positive(record: str, field: str, value: float) -> None:
    check_finite(record, field, value)
    if value <= 0:
        raise RecordError(record, field, f"expected a positive number, got {value!r}")


def check_probability(record: str, field: str, value: float | None) -> None:
    if value is None:
        return
    check_finite(record, field, value)
    if not 0.0 <= value <= 1.0:
        raise RecordError(record, field, f"expected a probability in [0, 1], got {value!r}")


def check_nonempty(record: str, field: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RecordError(record, field, f"expected a non-empty string, got {value!r}")
