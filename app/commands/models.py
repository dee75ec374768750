"""``mmdx models`` (configured backends, files, hashes, what is missing) and ``mmdx label`` (report labeler)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.commands import ConfigOption
from core.config import load_settings
from core.errors import MmdxError
from models.labeler import as_json, label_report, label_sets, no_finding
from models.registry import Registry, summary
from models.routing import ecg_models_for
from models.safety import no_model_notice

console = Console()
err_console = Console(stderr=True)

_TEXT_COLUMNS = ("report", "reports", "report_text", "text", "findings")  # report_text: as `mmdx batch` reads


def _reports(source: str) -> Iterator[tuple[str, str]]:
    """(id, text) per report: ``-`` (stdin), a text file, a folder of .txt, or a CSV with a report column."""
    if source == "-":
        yield "stdin", sys.stdin.read()
        return
    path = Path(source)
    if path.is_dir():
        for p in sorted(path.glob("*.txt")):
            yield p.name, p.read_text(encoding="utf-8", errors="replace")
        return
    if not path.is_file():
        raise typer.BadParameter(f"{source}: no such file or folder")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() != ".csv":
        yield path.name, text
        return
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    lower = [h.strip().lower() for h in header]
    col = next((lower.index(c) for c in _TEXT_COLUMNS if c in lower), None)
    if col is None:  # a headerless CSV of reports (as CheXpert's sample_reports.csv)
        col = 0
        reader = csv.reader(io.StringIO(text))
    for n, row in enumerate(reader, 1):
        if row and len(row) > col:
            yield f"{path.name}:{n}", row[col]


def register(cli: typer.Typer) -> None:
    @cli.command("models")
    def models_command(
        as_json_out: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
        probe: Annotated[
            bool, typer.Option("--probe", help="with --check: one tiny forward pass (local) or one request (remote)")
        ] = False,
        check: Annotated[
            bool,
            typer.Option(
                "--check",
                help="load what is checked (config, tokenizer/processor, weights header and shapes, label count, "
                "hash format) and exit 1 when a configured backend cannot run",
            ),
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """List configured model backends: files present, sha256 matching, and what is missing."""
        try:
            settings = load_settings(config)
            registry = Registry.from_settings(settings)
            if check or probe:
                from models.check import check_all

                results = check_all(registry, probe=probe)
                infos = [dataclasses.replace(r.info, missing=r.problems) for r in results]
            else:
                infos = registry.describe_all()
        except MmdxError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        if as_json_out:
            print(json.dumps(summary(infos), indent=2))
        else:
            table = Table(title="Model backends")
            for col in ("name", "backend", "family", "location", "sha256", "status"):
                table.add_column(col, overflow="fold")
            for info in infos:
                ready = "[green]ready[/green]" + (" (checked)" if check or probe else "")
                status = ready if info.available else "[red]" + "; ".join(info.missing) + "[/red]"
                table.add_row(
                    info.name, info.backend, info.family, info.location or "-", info.weights_sha256 or "-", status
                )
            console.print(table)
            ecg_names = set(ecg_models_for(settings.model_routing, registry.specs))
            for kind in ("imaging", "ecg"):
                of_kind = (
                    infos if kind == "imaging" else [i for i in infos if i.backend == "ecg_cnn" or i.name in ecg_names]
                )
                if notice := no_model_notice(kind, of_kind):
                    console.print(f"[yellow]{kind}:[/yellow] {notice}")
        if (check or probe) and any(not i.available for i in infos):
            raise typer.Exit(1)

    @cli.command("label")
    def label_command(
        source: Annotated[
            str, typer.Argument(help="a report text file, a folder of .txt, a CSV with a report column, or - for stdin")
        ],
        as_json_out: Annotated[bool, typer.Option("--json", help="one JSON object per report, a line each")] = False,
        labels: Annotated[
            str, typer.Option("--labels", help="label set: chestxray14 (NegBio), chexpert (its own definitions) or all")
        ] = "all",
    ) -> None:
        """Label free-text chest radiograph reports: each label present / absent / uncertain, with its text span."""
        sets = label_sets()
        if labels not in sets:
            err_console.print(f"[red]error:[/red] --labels must be one of {sorted(sets)}, got {labels!r}")
            raise typer.Exit(2)
        chexpert = labels == "chexpert"
        try:
            for report_id, text in _reports(source):
                if as_json_out:
                    print(json.dumps(as_json(report_id, text, sets[labels], chexpert=chexpert)), flush=True)
                    continue
                table = Table(title=report_id)
                for col in ("label", "presence", "text", "trigger"):
                    table.add_column(col)
                results = label_report(text, sets[labels], chexpert=chexpert)
                for key, res in sorted(results.items()):
                    m = res.decisive
                    table.add_row(key, res.presence.value, m.text, m.trigger or "")
                table.caption = "No Finding" if no_finding(results, text) else "findings reported"
                console.print(table)
        except (OSError, UnicodeError) as exc:
            err_console.print(f"[red]error:[/red] {source}: {exc}")
            raise typer.Exit(2) from None
