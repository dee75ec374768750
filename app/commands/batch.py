"""``mmdx batch``: a resumable cohort run over a folder, a manifest or a report-text table.

Defaults for ``--workers``, ``--engine`` and ``--address`` come from the
``batch`` config section.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.commands import ConfigOption


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, a container's cpuset), not the machine's count."""
    count = getattr(os, "process_cpu_count", None)  # Python 3.13
    if count is not None:
        return int(count() or 1)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def batch_command(
    source: Annotated[
        str,
        typer.Argument(
            help="a folder tree, a manifest (CSV/Parquet: path or study_uid column), a report table, or 'pacs' "
            "(QIDO-RS or C-FIND query by --from/--to/--modality, pulled through WADO-RS or C-MOVE)"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the cohort table, NDJSON and summary")],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            help=f"parallel workers (default: batch.workers, else the usable cores: {usable_cores()} here)",
            min=1,
        ),
    ] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="local or ray (default: batch.engine)")] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (default: batch.ray_address; none: local)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="finish the run recorded in --out")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N items of the source", min=1)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would run; index and write nothing")] = False,
    reports: Annotated[
        bool, typer.Option("--reports/--no-reports", help="also write each study's report files under OUT/studies/")
    ] = False,
    deid: Annotated[
        bool, typer.Option("--deid", help="pseudonymised outputs (project key deid.salt), dates shifted per patient")
    ] = False,
    fhir: Annotated[bool, typer.Option("--fhir/--no-fhir", help="FHIR Bulk Data NDJSON under OUT/fhir/")] = True,
    date_from: Annotated[str | None, typer.Option("--from", help="SOURCE pacs: earliest study date YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="SOURCE pacs: latest study date YYYY-MM-DD")] = None,
    modality: Annotated[str | None, typer.Option("--modality", help="SOURCE pacs: modality in study")] = None,
    via: Annotated[
        str,
        typer.Option(
            "--via",
            help="SOURCE pacs: dicomweb (QIDO-RS + WADO-RS), dimse (C-FIND + C-MOVE to mmdx scp), cget "
            "(C-FIND + C-GET, no SCP needed) or auto (dicomweb where pull.dicomweb_url is set, else dimse)",
        ),
    ] = "auto",
    analyses: Annotated[
        str,
        typer.Option("--analyses", help="comma-separated: ecg (rules + ECG models), images (image models), labeler"),
    ] = "ecg,images,labeler",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="run only this configured model (repeatable; default: every routed model)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
    config: ConfigOption = None,
) -> None:
    """Run the pipeline over every study of SOURCE into a cohort table (Parquet + CSV) and a run summary."""
    from app.batch import BatchOptions, run_batch
    from app.batch.progress import reporter_for
    from app.context import AppContext
    from core.errors import MmdxError

    console = Console()
    err = Console(stderr=True)
    logging.getLogger("mmdx.batch").setLevel(logging.INFO)
    try:
        ctx = AppContext.create(config)
        b = ctx.settings.batch
        options = BatchOptions(
            source=source,
            out=out,
            workers=workers or b.workers or usable_cores(),
            engine=engine or b.engine,
            address=address or b.ray_address,
            limit=limit,
            reports=reports,
            deid=deid,
            fhir=fhir,
            date_from=date_from,
            date_to=date_to,
            modality=modality,
            via=via,
            analyses=tuple(a.strip().lower() for a in analyses.split(",") if a.strip()),
            models=tuple(model) if model else None,
        )
        result = run_batch(
            ctx,
            options,
            resume=resume,
            dry_run=dry_run,
            reporter=reporter_for(err, quiet=quiet, every_s=b.progress_every_s),
        )
    except MmdxError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if dry_run:
        table = Table(title=f"Would run ({source})")
        table.add_column("items")
        table.add_column("count", justify="right")
        for key, n in sorted(result.planned.items()):
            table.add_row(key, str(n))
        if result.counts.get("already_finished"):
            table.add_row("already finished (--resume)", str(result.counts["already_finished"]))
        console.print(table)
        return
    c = result.counts
    console.print(
        f"batch run {result.run_id}: {c['done']} done ({c['with_report']} with a report), {c['failed']} failed, "
        f"{c['pending']} pending; outputs in {out}/ (cohort.parquet, cohort.csv, summary.md)"
    )
    reasons = result.summary.get("failures_by_reason") or {}
    if reasons:
        table = Table(title="Failed items by reason", title_style="yellow")
        table.add_column("reason", overflow="fold")
        table.add_column("count", justify="right")
        for reason, n in reasons.items():
            table.add_row(reason, str(n))
        err.print(table)
    if c["done"] == 0 and c["items"] > 0:
        raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Add ``mmdx batch`` to the CLI."""
    cli.command("batch")(batch_command)
