"""Which files make up one ECG recording (a WFDB record is a header plus signal files)."""

from __future__ import annotations

from pathlib import Path

from ecg.readers import EcgFormat, detect_format, wfdb_reader


def record_files(path: str | Path) -> tuple[Path, ...]:
    """The files of the recording ``path`` belongs to, header first; ``(path,)`` for single-file formats.

    The caller uses it to treat a WFDB header and its ``.dat`` files as one input, and to
    hash the whole recording.
    """
    p = Path(path)
    if detect_format(p) is not EcgFormat.WFDB:
        return (p,)
    hea = wfdb_reader.header_path(p)
    if hea is None:
        return (p,)
    files = [hea]
    for line in hea.read_text(encoding="ascii", errors="replace").splitlines()[1:]:
        fields = line.split()
        if not fields or line.lstrip().startswith("#"):
            continue
        candidate = hea.parent / fields[0]
        if candidate.is_file() and candidate not in files:
            files.append(candidate)
    return tuple(files)
