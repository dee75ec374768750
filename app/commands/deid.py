"""``mmdx deid``: de-identify DICOM files and folders for a research export (PS3.15 Basic Profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.commands import ConfigOption
from core.config import load_settings
from core.errors import MmdxError
from ingest.deid import deidentify_files

_ACTION_NAMES = {
    "X": "removed (X)",
    "Z": "emptied or pseudonymised (Z)",
    "D": "replaced by dummy (D)",
    "U": "UIDs replaced (U)",
    "C": "cleaned (C)",
    "K": "kept and processed (K)",
}


def deid_command(
    inputs: Annotated[list[Path], typer.Argument(help="DICOM files or folders (recursive)", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (<study>/<series>/<instance>.dcm)")],
    config: ConfigOption = None,
) -> None:
    """De-identify INPUTS into --out with the options of the ``deid`` config section."""
    console = Console()
    err = Console(stderr=True)
    try:
        settings = load_settings(config)
        report = deidentify_files(inputs, out, settings)
    except MmdxError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(title="De-identification (DICOM PS3.15 Basic Profile)")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files in", str(report.files_in))
    table.add_row("written", str(report.written))
    table.add_row("failed", str(len(report.failed)))
    table.add_row("refused: burned-in annotation", str(len(report.refused_burned_in)))
    table.add_row("marked: burned-in annotation", str(len(report.marked_burned_in)))
    table.add_row("distinct UIDs replaced", str(report.uids_replaced))
    for code, name in _ACTION_NAMES.items():
        table.add_row(f"attributes {name}", str(report.actions.get(code, 0)))
    console.print(table)
    for path, reason in report.failed:
        err.print(
            f"[yellow]skipped[/yellow] {reason}" if path in reason else f"[yellow]skipped[/yellow] {path}: {reason}"
        )
    if report.salt_is_random:
        err.print("[yellow]note:[/yellow] deid.salt is not set: replacement UIDs will differ on a re-run")
    if report.mapping_path is not None:
        console.print(f"mapping table (contains identifiers, keep it secret): {report.mapping_path}")
    if report.failed and report.written == 0:
        raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Add ``mmdx deid`` to the CLI."""
    cli.command("deid")(deid_command)
