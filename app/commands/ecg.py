"""``mmdx ecg analyze PATH... [--json] [--printout DIR]``: analyse ECG files (any supported format).

``--printout DIR`` also writes each record's cart-style printout (``DIR/<file name>.pdf``).

With ``--json`` one JSON object per record is printed, a line each (the
stable shape of :func:`ecg.analysis.to_json`), in the order of the paths; a
file that cannot be read or analysed prints ``{"record": ..., "error": ...}``
and the command exits 1 at the end.  Files are analysed with
:func:`ecg.analysis.analyze_batch`, up to ``BATCH`` at a time.  A WFDB recording over
``limits.max_ecg_samples`` (a Holter) is analysed in windows (:mod:`ecg.holter`) and printed first, as its
summary (JSON: :func:`ecg.holter.to_json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from app.commands import ConfigOption
from core.config import Settings, load_settings
from core.errors import EcgError, MmdxError
from core.records import EcgRecord
from ecg.analysis import EcgAnalysis, analyze_batch, to_json
from ecg.holter import analyze_holter, long_recording, needs_windows
from ecg.holter import to_json as holter_json
from ecg.readers import read_ecg
from ecg.render import render_pdf

console = Console()
err_console = Console(stderr=True)

#: Files read and analysed per batch call (bounds memory on long path lists; output still streams per batch).
BATCH = 32


def _table(a: EcgAnalysis) -> Table:
    t = Table(title=f"{a.source} ({a.source_fs:g} Hz, {len(a.beats)} beats, priority {a.priority.level.name})")
    t.add_column("Measurement")
    t.add_column("Value", justify="right")
    for m in a.measurements:
        if m.site is None:
            t.add_row(m.code.meaning, f"{m.value:g} {m.unit.value}")
    for s in a.statements:
        t.add_row(("[red]CRITICAL[/red] " if s.critical else "") + s.text, "; ".join(s.criteria)[:80])
    return t


def _read(path: Path) -> EcgRecord | MmdxError:
    try:
        return read_ecg(path)
    except MmdxError as exc:
        return exc


def _write_printout(folder: Path, path: Path, record: EcgRecord, analysis: EcgAnalysis, timezone: str) -> Path:
    """``<folder>/<file name>.pdf``: the cart-style printout with mmdx's and the device's values."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{path.name}.pdf"
    target.write_bytes(render_pdf(record, analysis.measurements, analysis.statements, timezone=timezone))
    return target


def _holter(path: Path, settings: Settings, as_json: bool) -> bool:
    """Analyse a recording over ``limits.max_ecg_samples`` in windows and print its summary; False on failure."""
    limits = settings.limits
    try:
        rec = long_recording(path)
        if rec is None:
            raise EcgError("not a WFDB recording", source=str(path))
        summary = analyze_holter(rec, settings.ecg, window_s=limits.ecg_window_s, max_hours=limits.max_ecg_hours)
    except MmdxError as exc:
        if as_json:
            print(json.dumps({"record": str(path), "error": str(exc)}), flush=True)
        else:
            err_console.print(f"[red]{escape(str(path))}[/red]: {escape(str(exc))}")
        return False
    if as_json:
        print(json.dumps(holter_json(summary), allow_nan=False), flush=True)
    else:
        console.print(Text(f"{path}\n" + "\n".join(summary.sentences())))
    return True


def register(cli: typer.Typer) -> None:
    """Add the ``ecg`` command group to the CLI."""
    group = typer.Typer(help="ECG analysis: beats, global measurements, rule-based statements.", no_args_is_help=True)

    @group.command("analyze")
    def analyze_cmd(
        paths: Annotated[list[Path], typer.Argument(help="ECG files (a WFDB record by its path without extension)")],
        as_json: Annotated[bool, typer.Option("--json", help="one JSON object per record, a line each")] = False,
        printout: Annotated[
            Path | None, typer.Option("--printout", help="also write each record's 12-lead printout (PDF) here")
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Analyse each ECG file and print the result."""
        try:
            settings = load_settings(config)
        except MmdxError as exc:
            err_console.print(f"configuration error: {exc}")
            raise typer.Exit(2) from None
        failed = 0
        long = [p for p in paths if needs_windows(p, settings.limits.max_ecg_samples)]
        for p in long:  # a Holter: analysed in windows (ecg.holter), its summary printed
            failed += not _holter(p, settings, as_json)
        paths = [p for p in paths if p not in long]
        for start in range(0, len(paths), BATCH):
            chunk = paths[start : start + BATCH]
            read = [_read(p) for p in chunk]
            analysed = iter(analyze_batch([r for r in read if isinstance(r, EcgRecord)], settings.ecg))
            results = [next(analysed) if isinstance(r, EcgRecord) else r for r in read]
            for p, record, result in zip(chunk, read, results, strict=True):
                if printout is not None and isinstance(record, EcgRecord) and not isinstance(result, MmdxError):
                    _write_printout(printout, p, record, result, settings.site.timezone)
                if isinstance(result, MmdxError):
                    failed += 1
                    if as_json:
                        print(json.dumps({"record": str(p), "error": str(result)}), flush=True)
                    else:
                        err_console.print(f"[red]{p}[/red]: {result}")
                elif as_json:
                    print(json.dumps(to_json(result), allow_nan=False), flush=True)
                else:
                    console.print(_table(result))
        if failed:
            raise typer.Exit(1)

    cli.add_typer(group, name="ecg")
