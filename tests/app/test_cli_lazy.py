"""The CLI loads an area only when one of its commands runs; the table that lists them matches the areas."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from app.cli import cli
from app.commands import _AREA_MODULES, COMMANDS, area_group

HEAVY = ("pydicom", "sqlalchemy", "scipy", "numpy", "fastapi", "torch", "app.pipeline", "store.db")


def test_the_command_table_is_what_the_areas_register() -> None:
    registered = {}
    for area in _AREA_MODULES:
        group = area_group(area)
        for name in group.list_commands(None):
            registered[name] = (area, group.get_command(None, name).get_short_help_str(limit=300))
    table = {name: (c.area, c.summary) for name, c in COMMANDS.items()}
    assert table == registered, "app.commands.COMMANDS is out of date: " + repr(
        {n: v for n, v in registered.items() if table.get(n) != v}
    )


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\nfrom app.cli import cli\n"
        f"try:\n    cli({args!r})\nexcept SystemExit:\n    pass\n"
        f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return {m for m in out.stdout.rsplit("loaded:", 1)[1].strip().split(",") if m}


def test_help_and_version_import_no_pipeline_module() -> None:
    assert _modules_after(["--help"]) == set()
    assert _modules_after(["--version"]) == set()


def test_a_command_loads_its_area_only_when_run() -> None:
    assert "pydicom" in _modules_after(["deid", "--help"])
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in COMMANDS)
