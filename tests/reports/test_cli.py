"""``mmdx report check-fhir``: exit 0 on a valid bundle, 1 with the problems listed on a broken one."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_check_fhir_never_installs_at_run_time(tmp_path: Path) -> None:
    """Without node on PATH the validator is not ready: the command says how to install it, and installs nothing."""
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}  # no node, no npm
    cmd = [sys.executable, "-c", "from app.cli import main; main()", "report", "check-fhir"]
    result = subprocess.run([*cmd, str(GOLDEN)], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "make fhir-validator" in " ".join(result.stderr.split()) and "--no-medplum" in result.stderr
    ok = subprocess.run([*cmd, "--no-medplum", str(GOLDEN)], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
