"""Fixtures for the bridge: real report versions (preliminary, final, amended, withdrawn) built once.

The session fixture runs the real pipeline on the bundled DICOM ECG, then signs, amends and
withdraws it with :mod:`reports.signoff`, writing each version's artefacts as the app does.
Each test stores the versions it needs in its own fresh database with its own destinations.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.context import AppContext
from app.inputs import collect
from app.pipeline import process_study
from core.config import DatabaseConfig, Settings, StorageConfig, load_settings
from core.identifiers import FixedClock
from core.records import Clinician, DraftReport, ReportSection, Study
from core.version import SOFTWARE_NAME, SOFTWARE_VERSION
from reports.context import ReportContext
from reports.outputs import build_outputs, write_outputs
from reports.signoff import amend, sign, withdraw
from store import index
from store import reports as report_store
from store.db import Database
from store.reports import ArtefactRecord

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
DOCTOR = Clinician("Reader^Ann", "RAD-7")


@dataclass(frozen=True)
class Version:
    report: DraftReport
    artefacts: tuple[ArtefactRecord, ...]

    def of(self, kind: str) -> list[ArtefactRecord]:
        return [a for a in self.artefacts if a.kind == kind]


@dataclass(frozen=True)
class Versions:
    study: Study
    all: tuple[Version, ...]  #: v1 preliminary, v2 final, v3 amended, v4 entered-in-error


def _records(outputs: object, paths: Sequence[Path]) -> tuple[ArtefactRecord, ...]:
    return tuple(
        ArtefactRecord(a.kind, p, a.sha256, a.media_type, a.sop_instance_uid)
        for a, p in zip(outputs.artefacts, paths, strict=True)  # type: ignore[attr-defined]
    )


@pytest.fixture(scope="session")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    root = tmp_path_factory.mktemp("bridge-template")
    clock = FixedClock(T0)
    settings = load_settings(
        None,
        use_project_defaults=False,
        storage=StorageConfig(store_dir=root / "store", out_dir=root / "out", quarantine_dir=root / "q", fsync=False),
        database=DatabaseConfig(url=f"sqlite:///{root / 'template.db'}"),
    )
    ctx = AppContext(settings, Database.from_settings(settings), clock)
    (uid,) = collect(ctx, [REPO / "samples" / "ecg_dicom"]).study_uids
    first = process_study(ctx, uid, root / "out")
    assert first.report is not None
    with ctx.db.session() as s:
        study = index.load_study(s, uid)
        stored = report_store.report_history(s, uid)
    assert study is not None
    v1 = Version(
        first.report,
        tuple(ArtefactRecord(a.kind, a.path, a.sha256, a.media_type, a.sop_instance_uid) for a in stored[0].artefacts),
    )
    rctx = ReportContext(
        uid_root=settings.uid_root, software_name=SOFTWARE_NAME, software_version=SOFTWARE_VERSION, clock=clock
    )
    made = [v1]
    steps = [
        lambda r: sign(r, DOCTOR, T0 + timedelta(hours=1)),
        lambda r: amend(
            r,
            DOCTOR,
            T0 + timedelta(hours=2),
            sections=(*r.sections, ReportSection(r.sections[0].code, "Addendum: compared with the prior tracing.")),
        ),
        lambda r: withdraw(r, DOCTOR, T0 + timedelta(hours=3), "wrong patient"),
    ]
    for step in steps:
        prev = made[-1].report
        new = step(prev)
        outputs = build_outputs(new, study, rctx, previous=prev)
        paths = write_outputs(outputs, root / "out" / uid / f"v{new.version}")
        made.append(Version(new, _records(outputs, paths)))
    ctx.db.dispose()
    return Versions(study, tuple(made))


@pytest.fixture
def bridge_db(tmp_path: Path) -> Iterator[Database]:
    db = Database.from_settings(Settings(database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'bridge.db'}")))
    yield db
    db.dispose()


def store_versions(
    db: Database, chosen: Sequence[Version], routes: Mapping[str, Sequence[str]], now: datetime = T0
) -> None:
    """Store versions 1..n with outbox rows per ``routes`` (artefact kind -> destinations)."""
    for v in chosen:
        with db.session() as s:
            report_store.save_report_version(s, v.report, v.artefacts, routes, now)


def settings_with(tmp_path: Path, destinations: Mapping[str, dict[str, object]], **bridge: object) -> Settings:
    """Settings whose destinations are ``destinations`` (YAML-shaped dicts), validated like a config file."""
    import yaml

    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
                "storage": {"fsync": False},
                "destinations": {
                    k: {k2: str(v2) if isinstance(v2, Path) else v2 for k2, v2 in v.items()}
                    for k, v in destinations.items()
                },
                "bridge": {"poll_s": 0.05, **bridge},
            }
        )
    )
    return load_settings(cfg, use_project_defaults=False)
