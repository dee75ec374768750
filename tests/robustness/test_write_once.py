"""Files of a stored report version never change, and everything holding patient data is owner-only (issue 19).

A study is run, re-run unchanged, re-versioned by other settings and re-run
again; afterwards every artefact row's sha256 is that of its file, the first
version's files are byte-identical to what they were, and the database, its
WAL/SHM files, the store, the quarantine and the outputs are 0600/0700.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from store import schema
from tests.robustness import crafted

runner = CliRunner()
WFDB = crafted.REPO / "tests" / "data" / "ecg" / "wfdb" / "mitdb_100"


def _artefacts(ctx: AppContext) -> list[tuple[int, Path, str]]:
    with ctx.db.session() as s:
        rows = s.execute(
            select(schema.ReportVersionRow.version, schema.ArtefactRow.path, schema.ArtefactRow.sha256).join(
                schema.ReportVersionRow, schema.ArtefactRow.report_version_id == schema.ReportVersionRow.id
            )
        ).all()
    return [(version, Path(path), sha) for version, path, sha in rows]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rerun_and_reversion_keep_every_recorded_hash_true(workdir: Path) -> None:
    src = workdir / "in"
    shutil.copytree(WFDB, src)
    assert runner.invoke(cli, ["run", str(src), "--out", "out"]).exit_code == 0
    first = {path: _sha(path) for _, path, _ in _artefacts(AppContext.create())}
    assert first
    again = runner.invoke(cli, ["run", str(src), "--out", "out"])  # unchanged: no new version, nothing rewritten
    assert again.exit_code == 0, again.output
    changed = runner.invoke(cli, ["run", str(src), "--out", "out"], env={"MMDX_ECG__LOWPASS_HZ": "40"})
    assert changed.exit_code == 0, changed.output
    rows = _artefacts(AppContext.create())
    assert {version for version, _, _ in rows} == {1, 2}
    for _, path, sha in rows:
        assert _sha(path) == sha, path
    assert {path: _sha(path) for path in first} == first  # version 1's files are untouched
    v1 = {path.parent for version, path, _ in rows if version == 1}
    v2 = {path.parent for version, path, _ in rows if version == 2}
    assert v1.isdisjoint(v2)
    # the latest version is where it always was: <out>/<study>/<name> links to version 2's file
    (version_dir,) = v2
    bundle = version_dir.parent / "bundle.json"
    assert bundle.is_symlink() and bundle.resolve() == (version_dir / "bundle.json").resolve()


def _private(path: Path) -> bool:
    return (path.stat().st_mode & 0o077) == 0


def test_patient_data_is_owner_only(workdir: Path) -> None:
    src = workdir / "in"
    shutil.copytree(WFDB, src)
    (src / "junk.dcm").write_bytes(b"DICM" * 10)
    assert runner.invoke(cli, ["run", str(src), "--out", "out"]).exit_code == 0
    var = workdir / "var"
    for name in ("mmdx.db", "mmdx.db-wal", "mmdx.db-shm"):
        if (var / name).exists():
            assert _private(var / name), name
    assert _private(var / "mmdx.db")
    assert _private(var / "store")
    for path in (var / "store").rglob("*"):
        if path.is_file() and not path.name.startswith(".tmp-"):
            assert _private(path), path
    for _, path, _ in _artefacts(AppContext.create()):
        assert _private(path) and _private(path.parent), path
        assert stat.S_ISREG(path.stat().st_mode)
