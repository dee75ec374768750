"""Reading an item's artefact file back, checked against the digest stored with it."""

from __future__ import annotations

import hashlib

from pacs_bridge.outcome import Failed
from store.outbox import OutboxItem


def read_checked(item: OutboxItem) -> bytes | Failed:
    """The artefact's bytes, or a permanent failure when the file is gone or is not what was stored."""
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        return Failed(f"artefact {item.path.name} of item {item.id} cannot be read ({exc.strerror or exc})")
    if hashlib.sha256(data).hexdigest() != item.sha256:
        return Failed(f"artefact {item.path.name} of item {item.id} changed since it was stored (sha256 differs)")
    return data
