"""Argument checks shared by the repositories (errors name the function and parameter)."""

from __future__ import annotations

from datetime import datetime

from core.errors import StoreError


def aware(where: str, value: datetime) -> datetime:
    """Refuse naive datetimes up front: the database stores instants in UTC and cannot guess a zone."""
    if not isinstance(value, datetime):
        raise StoreError(f"{where}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{where}: expected a timezone-aware datetime, got naive {value.isoformat()}")
    return value
