"""The mmdx exception tree.

::

    MmdxError
     ├── ConfigError      bad or unknown configuration key / value
     ├── RecordError      a core record failed validation (also a ValueError)
     ├── StoreError       database or file-store failure
     ├── IngestError      DICOM input that cannot be read, stored or decoded
     ├── EcgError         ECG input that cannot be read or analysed
     ├── ModelError       a model backend failed or produced invalid output
     ├── ReportError      a report could not be built or failed validation
     └── BridgeError      delivery to a peer failed

Every message names the file, tag, field or value at fault and what was
expected.  Messages never contain patient names or identifiers: callers pass
paths and UIDs, never demographics.
"""

from __future__ import annotations


class MmdxError(Exception):
    """Base class of every error raised by mmdx."""


class ConfigError(MmdxError):
    """Configuration is invalid: names the key and the expected value."""


class RecordError(MmdxError, ValueError):
    """A core record was built with an invalid field value."""

    def __init__(self, record: str, field: str, message: str) -> None:
        self.record = record
        self.field = field
        super().__init__(f"{record}.{field}: {message}")


class StoreError(MmdxError):
    """The database or the file store failed."""


class IngestError(MmdxError):
    """DICOM input could not be read, stored or decoded."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class EcgError(MmdxError):
    """ECG input could not be read or analysed."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class ModelError(MmdxError):
    """A model backend failed or its output did not validate."""


class ReportError(MmdxError):
    """A report could not be built or did not validate."""


class BridgeError(MmdxError):
    """Delivery of an artefact to a peer failed."""
