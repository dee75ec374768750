"""CLI command groups, one module per area; each exposes ``register(cli)``.

The areas are loaded lazily: ``mmdx --help`` lists :data:`COMMANDS` from this table without
importing any area (an area pulls pydicom, scipy, SQLAlchemy, FastAPI...), and ``mmdx NAME``
imports only the area that defines NAME. A test checks the table against what the areas register.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from app.context import AppContext

#: The ``--config`` option every command takes (one definition).
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else $MMDX_CONFIG, configs/default.yaml)")
]


def app_context(config: Path | None) -> AppContext:
    """The context every command runs in (one way to open it); a bad configuration is one line and exit 2."""
    from rich.console import Console

    from app.context import AppContext  # imported when a command runs, never for --help
    from core.errors import MmdxError

    try:
        return AppContext.create(config)
    except MmdxError as exc:
        err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


class LazyCommand(NamedTuple):
    """Where a command is defined and the one line ``mmdx --help`` shows for it."""

    area: str  #: module under app.commands
    summary: str


#: Every area command: name -> area and summary (the command's own short help), in help order.
COMMANDS: dict[str, LazyCommand] = {
    "scp": LazyCommand("ingest", "Run the Storage SCP (C-ECHO, C-STORE) until SIGINT/SIGTERM."),
    "pull": LazyCommand(
        "ingest", "Pull matching studies (and their priors) from the configured PACS into the store and index."
    ),
    "deid": LazyCommand("deid", "De-identify INPUTS into --out with the options of the ``deid`` config section."),
    "ecg": LazyCommand("ecg", "ECG analysis: beats, global measurements, rule-based statements."),
    "models": LazyCommand(
        "models", "List configured model backends: files present, sha256 matching, and what is missing."
    ),
    "label": LazyCommand(
        "models",
        "Label free-text chest radiograph reports: each label present / absent / uncertain, with its text span.",
    ),
    "report": LazyCommand("reports", "Report artefacts: validation helpers."),
    "db": LazyCommand("store", "Database schema and state."),
    "batch": LazyCommand(
        "batch",
        "Run the pipeline over every study of SOURCE into a cohort table (Parquet + CSV) and a run summary.",
    ),
    "token": LazyCommand(
        "service", "Mint a bearer token for local use (HS256 secret, or RS256 with auth.private_key)."
    ),
    "audit": LazyCommand("service", "Read the audit log, newest first (who, what, when, from where)."),
    "worklist": LazyCommand(
        "service", "Reports waiting for a clinician: stat, urgent, routine, then the longest waiting."
    ),
    "retention": LazyCommand(
        "service", "Apply storage.retention_days / output_retention_days (never what a delivery or job still needs)."
    ),
    "send": LazyCommand(
        "bridge", "Deliver queued results to the configured destinations (PACS, FHIR, MLLP, folder, webhook)."
    ),
    "outbox": LazyCommand("bridge", "Deliveries: list by state, re-queue dead items."),
    "orders": LazyCommand("orders", "Orders from the RIS/EHR: HL7, FHIR, DICOM worklist."),
}

#: Area command modules: every module of this package but this one.
_AREA_MODULES: tuple[str, ...] = tuple(
    sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_"))
)


def area_group(area: str) -> TyperGroup:
    """The click group of one area's commands (imports that area only)."""
    app = typer.Typer()
    importlib.import_module(f"app.commands.{area}").register(app)
    return typer.main.get_group(app)


class LazyGroup(TyperGroup):
    """The root group: commands defined in ``app.cli`` as usual, area commands loaded on first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._areas: dict[str, TyperGroup] = {}
        self._summaries_only = False

    # ctx/formatter are typer's own click types (typer._click, private): typed Any here
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        entry = COMMANDS.get(cmd_name)
        if cmd is not None:
            return cmd
        if entry is None:  # not in the table (a test says so): look in every area before giving up
            return None if self._summaries_only else self._search_all_areas(ctx, cmd_name)
        if self._summaries_only:  # listing for --help: the table's line, nothing imported
            return TyperCommand(cmd_name, help=entry.summary)
        if entry.area not in self._areas:
            self._areas[entry.area] = area_group(entry.area)
        return self._areas[entry.area].get_command(ctx, cmd_name)

    def _search_all_areas(self, ctx: Any, cmd_name: str) -> Any:
        for area in _AREA_MODULES:
            self._areas.setdefault(area, area_group(area))
            if (cmd := self._areas[area].get_command(ctx, cmd_name)) is not None:
                return cmd
        return None

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._summaries_only = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._summaries_only = False
