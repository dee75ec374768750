"""The file-side limits, each hit through ``mmdx run``: object size, zip expansion ratio and total (issue 19)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from store import schema
from tests.robustness import crafted

runner = CliRunner()


def _state() -> tuple[int, dict[str, str]]:
    ctx = AppContext.create()
    with ctx.db.session() as s:
        instances = len(list(s.scalars(select(schema.InstanceRow))))
        quarantine = {row.path: row.reason for row in s.scalars(select(schema.QuarantineRow))}
    return instances, quarantine


def test_zip_bomb_is_refused_by_its_declared_sizes(workdir: Path) -> None:
    archive = workdir / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\x00" * (64 << 20))  # 64 MiB of zeros: ~1000-fold
        zf.write(crafted.GOOD_DICOM, "good.dcm")
    assert archive.stat().st_size < 1 << 20
    result = runner.invoke(cli, ["run", str(archive), "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    instances, quarantine = _state()
    assert instances == 1
    (reason,) = [r for p, r in quarantine.items() if p.endswith("zeros.dcm")]
    assert "over limits.max_archive_ratio" in reason


def test_archive_total_is_capped(workdir: Path) -> None:
    archive = workdir / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.write(crafted.GOOD_DICOM, f"{i}.dcm")
    size = crafted.GOOD_DICOM.stat().st_size
    env = {"MMDX_LIMITS__MAX_ARCHIVE_BYTES": str(2 * size + 10)}
    result = runner.invoke(cli, ["run", str(archive), "--out", "out", "--index-only"], env=env)
    assert result.exit_code == 0, result.output
    _, quarantine = _state()
    (reason,) = [r for p, r in quarantine.items() if p.endswith("2.dcm")]
    assert "limits.max_archive_bytes" in reason


def test_file_over_max_object_bytes_is_not_read(workdir: Path) -> None:
    folder = workdir / "in"
    folder.mkdir()
    shutil.copy(crafted.GOOD_DICOM, folder / "big.dcm")
    (folder / "small.txt").write_text("x")
    env = {"MMDX_LIMITS__MAX_OBJECT_BYTES": "4096"}
    result = runner.invoke(cli, ["run", str(folder), "--out", "out", "--index-only"], env=env)
    _, quarantine = _state()
    assert "exceeds limits.max_object_bytes (4096)" in quarantine[str(folder / "big.dcm")]
    assert result.exit_code == 1  # nothing readable left
