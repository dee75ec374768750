"""What every command and worker needs: settings, database, clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.identifiers import Clock, SystemClock
from store.db import Database


@dataclass
class AppContext:
    """Settings + database + clock, built once per process."""

    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def create(cls, config: Path | None = None, *, clock: Clock | None = None, **overrides: Any) -> AppContext:
        """Load the configuration, open (and migrate) the database."""
        settings = load_settings(config, **overrides)
        for folder in (settings.storage.store_dir, settings.storage.out_dir, settings.storage.quarantine_dir):
            Path(folder).mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, db=Database.from_settings(settings), clock=clock or SystemClock())
