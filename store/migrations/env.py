"""Alembic environment of mmdx.

``Database.migrate()`` hands over an open connection (inside its own
transaction and lock) through ``config.attributes["connection"]``; the
command line opens one from ``-x url=...``, ``$MMDX_DATABASE__URL`` or the ini.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

from store.schema import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render UtcDateTime as its plain DDL type so that migrations never import the live schema."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite has no ALTER for most changes
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "MMDX_DATABASE__URL", config.get_main_option("sqlalchemy.url") or ""
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from store.db import Database  # the same connection setup (WAL, foreign keys) as the application

    db = Database(_url())
    try:
        with db.engine.begin() as conn:
            _run(conn)
    finally:
        db.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
