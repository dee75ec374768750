"""``mmdx report``: check FHIR bundles with the project checker and Medplum's R4 validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.commands import ConfigOption
from core.config import load_settings
from core.errors import MmdxError
from reports.fhir_validate import JS_DIR, BundleIssue, check_bundle, medplum_ready, validate_with_medplum

report_app = typer.Typer(help="Report artefacts: validation helpers.", no_args_is_help=True)


@report_app.command("check-fhir")
def check_fhir_command(
    bundles: Annotated[list[Path], typer.Argument(help="FHIR transaction bundles (JSON)", exists=True)],
    stage: Annotated[
        str | None, typer.Option("--stage", help="draft | signed | withdrawn: statuses allowed at that stage")
    ] = None,
    medplum: Annotated[bool, typer.Option(help="also run Medplum's R4 validator (node, reports/_js)")] = True,
    config: ConfigOption = None,
) -> None:
    """Validate BUNDLES with the project checker and (by default) Medplum's structural validator."""
    console = Console()
    err = Console(stderr=True)
    try:
        load_settings(config)
        if medplum and not medplum_ready():
            # installed at set-up time (make test / make fhir-validator), never by a running command
            err.print(
                f"[red]error:[/red] Medplum's FHIR validator is not installed in {JS_DIR}: run `make fhir-validator`"
                " (npm ci there, versions from package-lock.json), or pass --no-medplum"
            )
            raise typer.Exit(2)
        failed = 0
        table = Table(title="FHIR bundle validation")
        for col in ("bundle", "validator", "where", "problem"):
            table.add_column(col)
        for path in bundles:
            raw = path.read_bytes()
            issues: list[BundleIssue] = check_bundle(json.loads(raw), stage=stage)
            if medplum:
                issues += validate_with_medplum(raw)
            failed += bool(issues)
            for i in issues:
                table.add_row(path.name, i.source, i.path, i.message)
            if not issues:
                table.add_row(path.name, "all", "", "[green]valid[/green]")
        console.print(table)
    except (MmdxError, OSError, json.JSONDecodeError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if failed:
        raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Add ``mmdx report ...`` to the CLI."""
    cli.add_typer(report_app, name="report")
