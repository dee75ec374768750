"""CLI command groups, one module per area; each exposes ``register(cli)``."""

from __future__ import annotations

import importlib

import typer

#: Area command modules, registered in this order.
AREAS: tuple[str, ...] = ("ingest", "deid", "ecg", "models", "reports", "store", "batch", "service", "bridge", "orders")


def register_all(cli: typer.Typer) -> None:
    for name in AREAS:
        importlib.import_module(f"app.commands.{name}").register(cli)
