"""The ``mmdx`` command line (Typer + Rich).

Every command listed here works; area commands (``scp``, ``deid``, ``ecg``,
``models``...) live in :mod:`app.commands` and register themselves.
"""

from __future__ import annotations

import json
import signal
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from app.commands import ConfigOption, LazyGroup, app_context
from app.logs import configure_logging
from core.errors import MmdxError
from core.version import SOFTWARE_NAME, SOFTWARE_VERSION

# The pipeline's modules load inside the commands that use them: `mmdx --help` imports none of them.
if TYPE_CHECKING:
    from rich.table import Table

    from app.context import AppContext
    from app.inputs import Collected
    from app.pipeline import StudyOutcome

cli = typer.Typer(
    cls=LazyGroup,
    name="mmdx",
    help="Multimodal diagnostic pipeline: DICOM studies and ECGs in, draft reports out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"{SOFTWARE_NAME} {SOFTWARE_VERSION}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Multimodal diagnostic pipeline: DICOM studies and ECGs in, draft reports out."""


def _study_table(ctx: AppContext, outcomes: list[StudyOutcome]) -> Table:
    from rich.table import Table

    table = Table(title="Studies", show_lines=False)
    table.add_column("Study", overflow="fold", min_width=20)
    for col in ("Modality", "Series", "Instances"):
        table.add_column(col, no_wrap=True)
    for col in ("Analysis", "Result"):
        table.add_column(col, overflow="fold")
    for outcome in outcomes:
        study = outcome.plan.study
        analysis = "; ".join(p.summary for p in outcome.plan.series)
        table.add_row(
            study.study_instance_uid,
            ", ".join(study.modalities),
            str(len(study.series)),
            str(study.instance_count),
            Text(analysis),
            Text(outcome.summary),
        )
    return table


def _print_rejected(collected: Collected) -> None:
    from rich.table import Table

    from ingest.scan import display_path

    if not collected.rejected and not collected.empty_folders:
        return
    table = Table(title="Not used", title_style="yellow")
    table.add_column("Path", overflow="fold")
    table.add_column("Reason", overflow="fold")
    for r in collected.rejected:  # Text, not markup: a file named "[/bold]" is printed as it is named
        table.add_row(Text(display_path(r.path)), Text(display_path(r.reason)))
    for folder in collected.empty_folders:
        table.add_row(Text(display_path(folder)), "empty folder: no files")
    err_console.print(table)


@cli.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders (recursive), zip archives, DICOMDIRs")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the reports and artefacts")] = Path("output"),
    config: ConfigOption = None,
    analyse: Annotated[bool, typer.Option("--analyse/--index-only", help="Run the pipeline after indexing")] = True,
) -> None:
    """Read every file under PATHS, index the studies and run the pipeline on each."""
    from app.inputs import collect
    from app.pipeline import StudyOutcome, process_study
    from app.plan import plan_study
    from ingest.scan import display_path
    from store import index

    ctx = app_context(config)
    for p in paths:
        if not p.exists():
            err_console.print(Text(f"{display_path(p)}: no such file or folder", style="red"))
    collected = collect(ctx, [p for p in paths if p.exists()])
    if analyse:  # the image models see up to max_batch of these studies at once
        from app.models_stage import prefetch_models

        prefetch_models(ctx, collected.study_uids)
    outcomes: list[StudyOutcome] = []
    for uid in collected.study_uids:
        if analyse:
            try:
                outcomes.append(process_study(ctx, uid, out))
            except Exception as exc:  # one study's failure never stops the others (the class only if unexpected)
                problem = str(exc) if isinstance(exc, MmdxError) else f"analysis failed ({type(exc).__name__})"
                with ctx.db.session() as session:
                    study = index.load_study(session, uid)
                assert study is not None
                outcomes.append(StudyOutcome(uid, plan_study(study, ctx.settings), problems=(problem,)))
        else:
            with ctx.db.session() as session:
                study = index.load_study(session, uid)
            assert study is not None
            outcomes.append(StudyOutcome(uid, plan_study(study, ctx.settings)))
    console.print(_study_table(ctx, outcomes))
    if analyse:
        out.mkdir(parents=True, exist_ok=True)
        (out / "studies.json").write_text(json.dumps([o.to_json() for o in outcomes], indent=2), encoding="utf-8")
    console.print(
        f"indexed: {collected.new} new, {collected.duplicate} already known, {collected.conflict} conflicting; "
        f"{len(collected.rejected)} not used; outputs in {display_path(out)}/",
        markup=False,
        highlight=False,
    )
    _print_rejected(collected)
    if not collected.readable:
        err_console.print("[red]nothing could be read[/red]")
        raise typer.Exit(1)


@cli.command()
def worker(
    config: ConfigOption = None,
    once: Annotated[bool, typer.Option("--once", help="Exit when no job is pending")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Artefact folder (default storage.out_dir)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log per-object detail (DEBUG)")] = False,
) -> None:
    """Claim jobs of stable studies from the database and run the pipeline on them."""
    from app.worker import run_forever

    ctx = app_context(config)
    configure_logging(service=True, verbose=verbose, json_lines=ctx.settings.service.log_format == "json")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    handled = run_forever(ctx, stop=stop, out_dir=out, once=once)
    console.print(f"worker stopped after {handled} job(s)")


@cli.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default service.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default service.port)")] = None,
    scp: Annotated[bool | None, typer.Option("--scp/--no-scp", help="Run the DICOM SCP too (service.run_scp)")] = None,
    workers: Annotated[int | None, typer.Option(help="Analysis worker threads (service.workers; 0: none)")] = None,
    send: Annotated[bool | None, typer.Option("--send/--no-send", help="Deliver results (service.run_sender)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log per-object detail (DEBUG)")] = False,
) -> None:
    """Run the HTTP service (API, pages) and, as configured, the SCP, analysis workers and outbox sender."""
    from app.supervisor import Parts, run_service

    ctx = app_context(config)
    configure_logging(service=True, verbose=verbose, json_lines=ctx.settings.service.log_format == "json")
    svc = ctx.settings.service
    parts = Parts(
        scp=svc.run_scp if scp is None else scp,
        workers=svc.workers if workers is None else workers,
        sender=svc.run_sender if send is None else send,
    )
    try:
        run_service(ctx, host=host or svc.host, port=port or svc.port, parts=parts)
    except (MmdxError, OSError) as exc:
        err_console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None


def main() -> None:
    configure_logging()  # warnings; the services raise it to INFO (and DEBUG with -v) once their config is read
    # highdicom warns on every single-component person name ("Anonymous"): not actionable for a reader
    warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent the intended person name")
    cli()
