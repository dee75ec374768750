"""Logging set-up for every command: one place, applied with ``force`` so a service's level is the one used.

``mmdx run`` and the one-shot commands log warnings; the services (``scp``,
``worker``, ``serve``) log at INFO what an operator needs to follow them
(associations and the objects each brought, dispatched studies, jobs done,
deliveries) and with ``-v`` every object.  ``service.log_format: json``
writes one JSON object per line for a log collector.  Lines carry AE titles,
addresses, UIDs and counts, never patient demographics: the code that logs
passes nothing else.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and the exception class if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream of the set-up.

    A command run in-process (a test's CLI runner, an embedding application) swaps ``sys.stderr`` and closes
    its copy afterwards; a handler holding that copy would fail every later record.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(*, service: bool = False, verbose: bool = False, json_lines: bool = False) -> None:
    """(Re)configure the root logger: WARNING for one-shot commands, INFO for services, DEBUG with ``verbose``.

    ``force``: a later call (a service after the CLI's start-up) replaces the handler instead of being ignored.
    """
    level = logging.DEBUG if verbose else logging.INFO if service else logging.WARNING
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("app").setLevel(min(level, logging.INFO))
    # the libraries' own per-PDU chatter stays out unless asked for
    for name in ("pynetdicom", "httpx", "httpcore", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose and name == "pynetdicom" else logging.WARNING)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)  # bound values would carry patient data
