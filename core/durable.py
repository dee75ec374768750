"""Durable file writes: a file is complete or absent, and a new name survives a power cut.

One definition for every writer that hands files to someone else (de-identified objects and their mapping
table, artefacts dropped into a delivery folder, report folders, the object store): write a temporary file
beside the target, fsync it, rename it over the target, and fsync the folder when the new name must last.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a new or renamed file) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(
    path: Path, *, text: bool = False, fsync: bool = True, prefix: str = ".", suffix: str = ".part"
) -> Iterator[IO[Any]]:
    """A file object whose content replaces ``path`` in one rename when the block ends without error.

    The temporary file is created owner-only (0600) in ``path``'s folder (so the rename stays on one
    filesystem) and removed if the block fails; ``text`` opens it as UTF-8 text with no newline translation
    (CSV). Readers see the old file or the whole new one, never a part.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") if text else os.fdopen(fd, "wb") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
