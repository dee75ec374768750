"""The log handler follows sys.stderr: a command run in-process must not leave a handler on a closed stream."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from app.logs import configure_logging


def test_records_after_the_set_up_stream_is_closed_go_to_the_current_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging(service=True)
    logging.getLogger("app.test").info("while swapped")
    monkeypatch.undo()
    first.close()  # what a CLI runner does with its capture
    logging.getLogger("app.test").info("after the runner closed its stream")
    err = capsys.readouterr().err
    assert "after the runner closed its stream" in err
    assert "Logging error" not in err
    configure_logging()
