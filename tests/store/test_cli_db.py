"""``mmdx db migrate`` / ``mmdx db status`` on a real SQLite file."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import typer
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from app.commands.store import register
from store import index, jobs
from store.db import Database
from tests.store.conftest import T0, digest, make_instance, make_series, make_study, sha


def _cli() -> typer.Typer:
    cli = typer.Typer()

    @cli.callback()
    def main() -> None:
        """mmdx (test harness)."""

    register(cli)
    return cli


def test_migrate_then_status(tmp_path: Path) -> None:
    db_file = tmp_path / "v" / "mmdx.db"
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite:///{db_file}\n")
    runner = CliRunner()
    result = runner.invoke(_cli(), ["db", "migrate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    head = ScriptDirectory.from_config(Database("sqlite://").alembic_config()).get_current_head()
    assert f"at revision {head}" in " ".join(result.output.split())
    assert db_file.is_file()
    db = Database(f"sqlite:///{db_file}")
    with db.session() as s:
        jobs.enqueue(s, "1.2.3", sha("a"), T0)
        jobs.enqueue(s, "1.2.4", sha("b"), T0)
    db.dispose()
    result = runner.invoke(_cli(), ["db", "status", "--config", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {m.group(1): int(m.group(2)) for m in re.finditer(r"│ ([a-z_ ]+?) +│ +(\d+) │", result.output)}
    assert rows["jobs pending"] == 2 and rows["jobs done"] == 0 and rows["studies"] == 0
    assert rows["outbox dead"] == 0


def test_bad_config_is_a_clean_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("database:\n  url: 'nosuchdb://x'\n")
    result = CliRunner().invoke(_cli(), ["db", "status", "--config", str(config)])
    assert result.exit_code == 2
    assert "cannot create an engine" in result.output


def test_quarantine_and_conflicts_list_what_the_status_counts(tmp_path: Path) -> None:
    db_file = tmp_path / "mmdx.db"
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite:///{db_file}\n")
    db = Database(f"sqlite:///{db_file}")
    db.migrate()
    study, series = make_study(), make_series()
    with db.session() as s:
        index.add_quarantine(
            s, path="/in/broken.dcm", reason="(0028,0010) Rows: expected > 0, got 0", source="file", received_at=T0
        )
        index.add_instance(s, study=study, series=series, instance=make_instance(1), received_at=T0)
        other = make_instance(1, content="other bytes")
        index.add_instance(s, study=study, series=series, instance=other, received_at=T0 + timedelta(seconds=5))
    db.dispose()
    runner = CliRunner()
    result = runner.invoke(_cli(), ["db", "quarantine", "--config", str(config)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Quarantined inputs (1 shown)" in text and "/in/broken.dcm" in text and "Rows: expected > 0" in text
    assert "2026-11-26 12:00:00" in text
    result = runner.invoke(_cli(), ["db", "conflicts", "--config", str(config)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Instance conflicts (1)" in text
    assert digest("bytes-1") in text and digest("other bytes") in text
    result = runner.invoke(_cli(), ["db", "conflicts", "--sop-uid", "1.2.3.nothing", "--config", str(config)])
    assert result.exit_code == 0 and "Instance conflicts (0)" in result.output
