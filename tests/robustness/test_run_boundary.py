"""`mmdx run` indexes every good input whatever sits beside it (issue 19 regression inputs).

Each hostile input once stopped the whole run (or hung it); here each one sits
in a folder beside a good DICOM file and the run must index the good file,
quarantine the bad one with a PHI-free reason, and exit 0.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from store import schema
from tests.robustness import crafted

runner = CliRunner()


def _quarantine(ctx: AppContext) -> dict[str, str]:
    with ctx.db.session() as s:
        return {row.path: row.reason for row in s.scalars(select(schema.QuarantineRow))}


def _instances(ctx: AppContext) -> int:
    with ctx.db.session() as s:
        return len(list(s.scalars(select(schema.InstanceRow))))


def _bad_scp(folder: Path) -> None:
    crafted.scp_ecg_huge(folder / "crafted.scp")


def _bad_wfdb(folder: Path) -> None:
    crafted.wfdb_huge(folder)


def _bad_muse(folder: Path) -> None:
    crafted.muse_sample_base(folder / "muse.xml")


def _bad_philips(folder: Path) -> None:
    crafted.philips_bad_xli(folder / "philips.xml")


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "pipe.dcm")


def _dev_zero(folder: Path) -> None:
    (folder / "zero.dcm").symlink_to("/dev/zero")


def _non_utf8_junk(folder: Path) -> None:
    raw = os.fsencode(folder) + b"/junk-\xff.bin"
    with open(raw, "wb") as fh:
        fh.write(b"\x00junk" * 50)


BAD_INPUTS: dict[str, Callable[[Path], None]] = {
    "crafted SCP-ECG": _bad_scp,
    "WFDB huge sample count": _bad_wfdb,
    "MUSE SampleBase 1e308": _bad_muse,
    "Philips malformed XLI": _bad_philips,
    "FIFO": _fifo,
    "symlink to /dev/zero": _dev_zero,
    "non-UTF-8 file name": _non_utf8_junk,
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_one_bad_input_never_blocks_the_good_one(workdir: Path, kind: str) -> None:
    folder = workdir / "in"
    folder.mkdir()
    shutil.copy(crafted.GOOD_DICOM, folder / "good.dcm")
    BAD_INPUTS[kind](folder)
    result = runner.invoke(cli, ["run", str(folder), "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    ctx = AppContext.create()
    assert _instances(ctx) == 1
    quarantined = _quarantine(ctx)
    assert len(quarantined) >= 1, result.output
    for path, reason in quarantined.items():
        path.encode("utf-8")  # the database took it: always valid text
        assert reason and "SYNTH" not in reason and "Traceback" not in reason
    # the rerun is idempotent: nothing new, nothing quarantined twice
    again = runner.invoke(cli, ["run", str(folder), "--out", "out", "--index-only"])
    assert again.exit_code == 0, again.output
    assert _quarantine(AppContext.create()) == quarantined


def test_refused_inputs_name_the_reason(workdir: Path) -> None:
    folder = workdir / "in"
    folder.mkdir()
    shutil.copy(crafted.GOOD_DICOM, folder / "good.dcm")
    _fifo(folder)
    _dev_zero(folder)
    _bad_wfdb(folder)
    result = runner.invoke(cli, ["run", str(folder), "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    reasons = _quarantine(AppContext.create())
    assert reasons[str(folder / "pipe.dcm")] == "not read: a FIFO, expected a regular file"
    assert reasons[str(folder / "zero.dcm")] == "not read: a character device, expected a regular file"
    assert "over limits.max_ecg_samples" in reasons[str(folder / "huge.hea")]


@pytest.mark.parametrize(
    "values",
    [{"instance_number": "inf"}, {"series_number": "1e400"}, {"tz": "+2500"}, {"instance_number": "9" * 30}],
    ids=["IS inf", "IS 1e400", "TimezoneOffsetFromUTC +2500", "IS beyond 2^31"],
)
def test_unparseable_header_values_are_indexed_without_them(workdir: Path, values: dict[str, str]) -> None:
    folder = workdir / "in"
    folder.mkdir()
    (folder / "odd.dcm").write_bytes(crafted.dicom_with_values(**values))
    result = runner.invoke(cli, ["run", str(folder), "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    assert _instances(AppContext.create()) == 1


def test_non_utf8_name_of_a_good_file_is_indexed_from_the_store(workdir: Path) -> None:
    folder = workdir / "in"
    folder.mkdir()
    crafted.non_utf8_name(folder, crafted.GOOD_DICOM.read_bytes())
    result = runner.invoke(cli, ["run", str(folder), "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    assert _instances(AppContext.create()) == 1
    assert "\\xff\\xfe" in result.output or "1 new" in result.output


def test_markup_and_escape_sequences_in_names_are_printed_as_text(workdir: Path) -> None:
    folder = workdir / "in"
    folder.mkdir()
    (folder / "x[").mkdir()  # the path holds "[/bold]": a closing tag Rich cannot match
    shutil.copy(crafted.GOOD_DICOM, folder / "x[" / "bold]good.dcm")
    (folder / "x[" / "bold]junk.txt").write_text("not an image")
    (folder / "\x1b[31mred.txt").write_text("not an image")
    result = runner.invoke(cli, ["run", str(folder), "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    assert _instances(AppContext.create()) == 1
    assert "[/bold]" in result.output  # printed as named, not taken for markup
    assert "\x1b" not in result.output and "\\x1b" in result.output
    paths = set(_quarantine(AppContext.create()))
    assert str(folder / "x[" / "bold]junk.txt") in paths and str(folder / "\\x1b[31mred.txt") in paths


def test_ecg_files_are_copied_into_the_store(workdir: Path) -> None:
    src = workdir / "in"
    shutil.copytree(crafted.REPO / "tests" / "data" / "ecg" / "wfdb" / "mitdb_100", src)
    result = runner.invoke(cli, ["run", str(src), "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    shutil.rmtree(src)  # the source goes away: the study still reads from the store
    ctx = AppContext.create()
    with ctx.db.session() as s:
        (row,) = s.scalars(select(schema.InstanceRow))
    stored = Path(row.path)
    assert stored.is_file() and stored.resolve().is_relative_to(Path(ctx.settings.storage.store_dir).resolve())
    assert {p.name for p in stored.parent.iterdir()} >= {"100.hea", "100.dat"}
    assert (stored.stat().st_mode & 0o077) == 0
