"""``mmdx report check-fhir``: exit 0 on a valid bundle, 1 with the problems listed on a broken one."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from app.commands import reports as report_commands

GOLDEN = Path(__file__).parent / "golden" / "chest_preliminary_bundle.json"


def _cli() -> typer.Typer:
    cli = typer.Typer()
    report_commands.register(cli)

    @cli.command()
    def version() -> None:  # a second command keeps "report" a sub-command group
        pass

    return cli


def test_check_fhir_valid_and_broken(tmp_path: Path, medplum: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(_cli(), ["report", "check-fhir", str(GOLDEN)])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output
    bundle = json.loads(GOLDEN.read_text())
    del bundle["entry"][0]["request"]
    bundle["entry"][1]["resource"]["numberOfSeries"] = "one"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(bundle))
    bad = runner.invoke(_cli(), ["report", "check-fhir", str(broken)], terminal_width=200)
    assert bad.exit_code == 1
    assert "mmdx" in bad.output and "medplum" in bad.output


def test_check_fhir_never_installs_at_run_time(monkeypatch) -> None:
    """Without the validator installed, the command says how to install it and installs nothing itself."""
    monkeypatch.setattr(report_commands, "medplum_ready", lambda: False)
    calls: list[object] = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: calls.append(a))
    result = CliRunner().invoke(_cli(), ["report", "check-fhir", str(GOLDEN)], terminal_width=200)
    assert result.exit_code == 2
    assert "make fhir-validator" in result.output and "--no-medplum" in result.output
    assert calls == []
    ok = CliRunner().invoke(_cli(), ["report", "check-fhir", "--no-medplum", str(GOLDEN)])
    assert ok.exit_code == 0, ok.output
