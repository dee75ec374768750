"""``mmdx send --once``, ``mmdx outbox`` and ``mmdx outbox retry`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import cli
from core.config import load_settings
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import Versions, store_versions
from tests.peers import free_port

runner = CliRunner()


def test_send_once_then_outbox_lists_states_and_retry_requeues_dead(
    tmp_path: Path, versions: Versions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'cli.db'}"},
                "destinations": {
                    "share": {"type": "folder", "path": str(tmp_path / "share")},
                    "ris": {"type": "mllp", "host": "127.0.0.1", "port": free_port(), "max_attempts": 1},
                },
            }
        )
    )
    db = Database.from_settings(load_settings(cfg, use_project_defaults=False))
    store_versions(db, versions.all[:1], {"sr": ["share"], "oru": ["ris"]})
    env = {"MMDX_CONFIG": ""}
    sent = runner.invoke(cli, ["send", "--once", "-c", str(cfg)], env=env)
    assert sent.exit_code == 1, sent.output  # one destination refused: the command says so
    assert "1 delivered" in sent.output and "1 dead" in sent.output
    listed = runner.invoke(cli, ["outbox", "-c", str(cfg)], env=env)
    assert listed.exit_code == 0, listed.output
    assert "delivered: 1" in listed.output and "dead: 1" in listed.output
    assert "refused" in listed.output.lower()
    only_dead = runner.invoke(cli, ["outbox", "-c", str(cfg), "--state", "dead"], env=env)
    assert "ris" in only_dead.output and "share" not in only_dead.output
    bad = runner.invoke(cli, ["outbox", "-c", str(cfg), "--state", "lost"], env=env)
    assert bad.exit_code == 2 and "expected one of" in bad.output
    retried = runner.invoke(cli, ["outbox", "retry", "--dead", "-c", str(cfg)], env=env)
    assert retried.exit_code == 0 and "re-queued 1" in retried.output, retried.output
    with db.session() as s:
        (ris,) = outbox.list_items(s, destination="ris")
    assert ris.state is OutboxState.PENDING and ris.attempts == 0
    again = runner.invoke(cli, ["outbox", "retry", str(ris.id), "-c", str(cfg)], env=env)
    assert again.exit_code == 1 and "it is pending, expected dead" in again.output
    db.dispose()


def test_a_superseded_preliminary_is_listed_as_such_and_never_requeued(
    tmp_path: Path, versions: Versions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    share = tmp_path / "share"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'cli.db'}"},
                "destinations": {"share": {"type": "folder", "path": str(share)}},  # skip_superseded: true
            }
        )
    )
    db = Database.from_settings(load_settings(cfg, use_project_defaults=False))
    store_versions(db, versions.all[:2], {"sr": ["share"]})  # the preliminary, then its final, neither sent yet
    env = {"MMDX_CONFIG": ""}
    sent = runner.invoke(cli, ["send", "--once", "-c", str(cfg)], env=env)
    assert sent.exit_code == 0, sent.output  # a skipped draft is not a failure
    assert "1 skipped" in sent.output and "0 dead" in sent.output
    listed = runner.invoke(cli, ["outbox", "-c", str(cfg)], env=env)
    assert "delivered: 1" in listed.output and "dead: 0" in listed.output and "superseded: 1" in listed.output
    retried = runner.invoke(cli, ["outbox", "retry", "--dead", "-c", str(cfg)], env=env)
    assert retried.exit_code == 0 and "re-queued 0" in retried.output, retried.output
    with db.session() as s:
        (draft,) = outbox.list_items(s, state=OutboxState.SUPERSEDED)
    assert draft.report_version == 1
    one = runner.invoke(cli, ["outbox", "retry", str(draft.id), "-c", str(cfg)], env=env)
    assert one.exit_code == 1 and "it is superseded, expected dead" in one.output
    # only the final reached the share (<share>/<study>/v<N>/<file>)
    assert sorted(p.parent.name for p in share.rglob("*") if p.is_file()) == ["v2"]
    db.dispose()
