"""Folder delivery for sites that pick results up from a share: atomic write, never a half file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.durable import atomic_write
from pacs_bridge._artefact import read_checked
from pacs_bridge.outcome import Delivered, Failed, Outcome, Retry
from store.outbox import OutboxItem


def _target_path(root: Path, item: OutboxItem) -> Path:
    """``<root>/<study UID>/v<version>/<file name>``: versions side by side, a re-send overwrites its own file."""
    return root / item.study_uid / f"v{item.report_version}" / item.path.name


class FolderSender:
    """Writes each artefact under ``root`` via a temporary file, fsync and rename."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync

    def send(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        return [self._one(item) for item in items]

    def _one(self, item: OutboxItem) -> Outcome:
        data = read_checked(item)
        if isinstance(data, Failed):
            return data
        target = _target_path(self.root, item)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(target, fsync=self.fsync) as fh:
                fh.write(data)
        except OSError as exc:
            # a full or unmounted share comes back; retry with backoff
            return Retry(f"cannot write to folder {self.root}: {exc.strerror or exc}")
        return Delivered(str(target))

    def close(self) -> None:
        return None
