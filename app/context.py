"""What every command and worker needs: settings, database, clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.identifiers import Clock, SystemClock
from models.registry import Registry
from store.db import Database


@dataclass
class AppContext:
    """Settings + database + clock, built once per process."""

    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    _registry: Registry | None = field(default=None, init=False, repr=False)

    @property
    def registry(self) -> Registry:
        """The model registry, built on first use (loading a backend is left to the backend)."""
        if self._registry is None:
            self._registry = Registry.from_settings(self.settings)
        return self._registry

    @classmethod
    def create(cls, config: Path | None = None, *, clock: Clock | None = None, **overrides: Any) -> AppContext:
        """Load the configuration, open (and migrate) the database."""
        settings = load_settings(config, **overrides)
        for folder in (settings.storage.store_dir, settings.storage.out_dir, settings.storage.quarantine_dir):
            Path(folder).mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, db=Database.from_settings(settings), clock=clock or SystemClock())
