"""The software name and version stamped on every output (UIDs derive from it)."""

from __future__ import annotations

from importlib import metadata

SOFTWARE_NAME = "mmdx"

try:
    SOFTWARE_VERSION: str = metadata.version("mmdx")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    SOFTWARE_VERSION = "0.1.0"
