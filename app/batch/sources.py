"""What a batch runs over: the items of a folder tree, a manifest, a report-text table or a PACS query.

Planning indexes the studies (through :func:`app.inputs.collect`, the same
path ``mmdx run`` takes, or ``ingest.pull`` for a PACS query by date range and modality) and
returns one :class:`store.runs.NewItem` per study, research image or report
text, in a stable order (by source path, or manifest row), so the same input
always gives the same item numbers. Unusable inputs become failed items with
their reason, so they appear in the cohort table and the summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.batch.images import is_research_image
from app.context import AppContext
from app.ecg_studies import content_sha256
from app.inputs import collect
from core.config import LimitsConfig
from core.errors import ConfigError, IngestError
from core.identifiers import derive_uid
from ecg.readers import detect_format
from ecg.readers.members import record_files
from ingest.filestore import FileStore
from ingest.pull import DicomWebPuller, DimsePuller
from ingest.receive import Receiver
from ingest.scan import DEFAULT_LIMITS, scan
from store import index
from store.runs import NewItem

#: Manifest columns naming the input (one of them is required).
PATH_COLUMNS = ("path", "file", "filename", "Path", "Image Index")
UID_COLUMNS = ("study_uid", "study_instance_uid", "StudyInstanceUID")
REPORT_COLUMNS = ("report_text", "report", "text")


@dataclass(frozen=True, slots=True)
class Plan:
    """The planned items and what kind of source they came from."""

    kind: str  #: folder, manifest, reports, pacs
    items: tuple[NewItem, ...]
    notes: tuple[str, ...] = field(default=())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            key = "unusable" if item.error is not None else item.kind
            out[key] = out.get(key, 0) + 1
        return out


def source_kind(source: str) -> str:
    if source == "pacs":
        return "pacs"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise ConfigError(
            f"batch source {source}: no such file or folder (expected a folder, a CSV/Parquet table or 'pacs')"
        )
    table = read_table(path)
    if any(c in table.column_names for c in REPORT_COLUMNS) and not any(
        c in table.column_names for c in (*PATH_COLUMNS, *UID_COLUMNS)
    ):
        return "reports"
    return "manifest"


def read_table(path: Path) -> pa.Table:
    """A manifest as an Arrow table (CSV or Parquet, by content: Parquet starts with ``PAR1``)."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic == b"PAR1":
            return pq.read_table(path)
        opts = pacsv.ConvertOptions(strings_can_be_null=False)
        table = pacsv.read_csv(path, convert_options=opts)
        return table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names]))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"manifest {path}: not a readable CSV or Parquet table ({type(exc).__name__})") from None


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: (None if v is None else str(v)) for k, v in r.items()} for r in table.to_pylist()]


def _first(row: Mapping[str, Any], names: Sequence[str]) -> str | None:
    for n in names:
        v = row.get(n)
        if v not in (None, ""):
            return str(v)
    return None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- folder


def _walk_sorted(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` lazily, in path order (a folder's entries by name, subfolders where they sort).

    An empty or unreadable folder is yielded itself (the scan gives its reason); symbolic links to
    folders are not followed, as :func:`ingest.scan.scan` does not follow them.
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        yield folder
        return
    if not entries:
        yield folder
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=False)
            if not is_dir and e.is_symlink() and e.is_dir():
                continue
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk_sorted(Path(e.path))
        else:
            yield Path(e.path)


def _record_of(path: Path) -> tuple[Path, ...] | None:
    """The files of the ECG recording ``path`` is (or is a member of, as WFDB's ``.dat`` of its ``.hea``)."""
    if detect_format(path) is not None:
        return tuple(record_files(path))
    # the header beside it, by name (no listing: a folder may hold a million files)
    for sibling in (path.with_suffix(".hea"), path.with_suffix(".HEA")):
        if sibling != path and sibling.is_file() and detect_format(sibling) is not None:
            files = tuple(record_files(sibling))
            if path in files:
                return files
    return None


def first_items(folder: Path, limit: int, limits: LimitsConfig = DEFAULT_LIMITS) -> list[Path]:
    """The files of the first ``limit`` items under ``folder``, found without reading the rest of the tree.

    The walk stops at the first file of item ``limit + 1``, so ``--limit 10`` on an archive of a million
    files reads a few folders, not the archive. A study whose files are spread over folders far apart
    is taken with the files met before the walk stopped.
    """
    keys: set[str] = set()
    selected: list[Path] = []
    consumed: set[Path] = set()
    for path in _walk_sorted(folder):
        if path in consumed:
            continue
        found: list[str] = []
        files: tuple[Path, ...] = (path,)
        if path.is_dir():
            found = [f"folder:{path}"]
        else:
            result = scan([path], limits)
            found = [s.study.study_instance_uid for s in result.dicom]
            if not found:
                record = None if is_research_image(path) else _record_of(path)
                if record is not None:
                    files = record
                    consumed.update(record)
                    found = [f"ecg:{record[0]}"]
                else:
                    found = [f"file:{path}"]
        new = [k for k in found if k not in keys]
        if new and len(keys) >= limit:
            break
        keys.update(new)
        selected.extend(files)
    return selected


def plan_folder(ctx: AppContext | None, folder: Path, *, limit: int | None = None) -> Plan:
    """Every study (DICOM or ECG file) and research image under ``folder``; ``ctx`` None: count only, index nothing.

    With ``limit`` only the files of the first items are scanned and indexed (:func:`first_items`).
    """
    limits = ctx.settings.limits if ctx is not None else DEFAULT_LIMITS
    paths = first_items(folder, limit, limits) if limit else [folder]
    result = scan(paths, limits)
    images = sorted({r.path for r in result.rejected if not r.dicom and is_research_image(r.path)})
    first_path: dict[str, Path] = {}
    for s in result.dicom:
        uid = s.study.study_instance_uid
        if uid not in first_path or s.path < first_path[uid]:
            first_path[uid] = s.path
    entries: list[tuple[str, str, dict[str, Any]]] = []  # (source path, kind, fields)
    ecg_files: dict[str, Path] = {}  # derived study UID -> the recording's main file (as app.ecg_studies names it)
    consumed: set[Path] = set()
    for path in result.other_files:
        if path in images or path in consumed or detect_format(path) is None:
            continue
        files = record_files(path)
        consumed.update(files)
        if ctx is not None:
            uid = derive_uid(ctx.settings.uid_root, "ecg-file", "study", content_sha256(files))
            ecg_files.setdefault(uid, files[0])
        else:
            ecg_files[str(files[0])] = files[0]
    if ctx is None:
        for uid, p in first_path.items():
            entries.append((_rel(p, folder), "study", {"study_instance_uid": uid}))
        for p in ecg_files.values():
            entries.append((_rel(p, folder), "study", {}))
        for path in result.other_files:
            if path not in consumed and path not in images:
                entries.append((_rel(path, folder), "file", {"error": "not DICOM, nor a known ECG format"}))
        for r in result.rejected:
            if r.dicom:
                entries.append((_rel(r.path, folder), "file", {"error": _reason(r.reason, r.path)}))
    else:
        first_path.update(ecg_files)
        collected = collect(ctx, paths)
        with ctx.db.session(readonly=True) as session:
            for uid in collected.study_uids:
                found = first_path.get(uid)
                if found is None:
                    study = index.load_study(session, uid)
                    inst = study.series[0].instances[0] if study and study.series else None
                    found = inst.path if inst is not None else Path(uid)
                entries.append((_rel(found, folder), "study", {"study_instance_uid": uid}))
        for r in collected.rejected:
            if r.path in images:
                continue
            entries.append((_rel(r.path, folder), "file", {"error": _reason(r.reason, r.path)}))
        for f in collected.empty_folders:
            entries.append((_rel(f, folder), "file", {"error": "empty folder: no files"}))
    entries.extend((_rel(p, folder), "image", {}) for p in images)
    # path order by parts, the order of the walk that --limit stops early: the first N items of a run with
    # --limit N are the first N of the whole run
    entries.sort(key=lambda e: (Path(e[0]).parts, e[1]))
    items = []
    for seq, (src, kind, extra) in enumerate(entries[:limit] if limit else entries):
        study_uid: str | None = extra.get("study_instance_uid")
        key = study_uid if kind == "study" and study_uid else f"{kind}:{src}"
        meta = {"path": str(folder / src)} if kind == "image" else {}
        items.append(NewItem(seq, key, kind, src, study_uid, meta, extra.get("error")))
    return Plan("folder", tuple(items))


def _reason(reason: str, path: Path) -> str:
    """The reason without the path it often starts with (the path is its own column)."""
    text = str(reason)
    for prefix in (f"{path}: ", f"{path.name}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


# --------------------------------------------------------------------------- manifest


def plan_manifest(ctx: AppContext | None, manifest: Path, *, limit: int | None = None) -> Plan:
    """One item per manifest row: a path (DICOM, ECG or PNG/JPEG) or a study UID, the other columns as metadata."""
    table = read_table(manifest)
    path_col = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    uid_col = next((c for c in UID_COLUMNS if c in table.column_names), None)
    if path_col is None and uid_col is None:
        raise ConfigError(
            f"manifest {manifest}: expected a column {PATH_COLUMNS[0]!r} or {UID_COLUMNS[0]!r}, "
            f"found {', '.join(table.column_names) or 'none'}"
        )
    root = manifest.parent
    rows = _rows(table.slice(0, limit) if limit else table)
    items: list[NewItem] = []
    seen: set[str] = set()
    for seq, row in enumerate(rows):
        meta = dict(row)
        raw = row.get(path_col) if path_col else None
        uid = row.get(uid_col) if uid_col else None
        if raw:
            path = Path(raw) if Path(raw).is_absolute() else root / raw
            items.append(_manifest_path_item(ctx, seq, raw, path, meta, seen))
        elif uid:
            items.append(_manifest_uid_item(ctx, seq, uid, meta, seen))
        else:
            items.append(
                NewItem(seq, f"row:{seq}", "file", None, None, meta, f"manifest row {seq + 1}: no path or UID")
            )
    return Plan("manifest", tuple(items))


def _unique(key: str, seen: set[str], seq: int) -> str:
    if key in seen:
        key = f"{key}#row{seq}"
    seen.add(key)
    return key


def _manifest_path_item(
    ctx: AppContext | None, seq: int, raw: str, path: Path, meta: dict[str, Any], seen: set[str]
) -> NewItem:
    if not path.exists():
        return NewItem(seq, _unique(f"file:{raw}", seen, seq), "file", raw, None, meta, "no such file")
    if is_research_image(path):
        meta["path"] = str(path)
        return NewItem(seq, _unique(f"image:{raw}", seen, seq), "image", raw, None, meta)
    if ctx is None:
        return NewItem(seq, _unique(f"study:{raw}", seen, seq), "study", raw, None, meta)
    collected = collect(ctx, [path])
    if not collected.study_uids:
        reason = "; ".join(_reason(r.reason, r.path) for r in collected.rejected) or "no study found"
        return NewItem(seq, _unique(f"file:{raw}", seen, seq), "file", raw, None, meta, reason)
    uid = collected.study_uids[0]
    return NewItem(seq, _unique(uid, seen, seq), "study", raw, uid, meta)


def _manifest_uid_item(ctx: AppContext | None, seq: int, uid: str, meta: dict[str, Any], seen: set[str]) -> NewItem:
    if ctx is not None:
        with ctx.db.session(readonly=True) as session:
            known = index.load_study(session, uid) is not None
        if not known:
            reason = "study is not in the index (pull it first, or give a path column)"
            return NewItem(seq, _unique(f"uid:{uid}", seen, seq), "file", None, uid, meta, reason)
    return NewItem(seq, _unique(uid, seen, seq), "study", None, uid, meta)


# --------------------------------------------------------------------------- report texts


def plan_reports(table_path: Path, *, limit: int | None = None) -> Plan:
    """One labeler-only item per report text (column ``report_text``; ``id`` names it when present)."""
    table = read_table(table_path)
    text_col = next(c for c in REPORT_COLUMNS if c in table.column_names)
    rows = _rows(table.slice(0, limit) if limit else table)
    items = []
    for seq, row in enumerate(rows):
        rid = _first(row, ("id", "report_id", "accession")) or f"row{seq + 1}"
        text = row.get(text_col) or ""
        meta = {k: v for k, v in row.items() if k != text_col}
        meta["report_text"] = text
        error = None if text.strip() else "empty report text"
        items.append(NewItem(seq, f"report:{rid}#{seq}", "report", f"{table_path.name}#{rid}", None, meta, error))
    return Plan("reports", tuple(items))


# --------------------------------------------------------------------------- PACS


@dataclass(frozen=True, slots=True)
class PacsQuery:
    """A cohort query against the configured PACS (``pull.dicomweb_url``): study date range and modality."""

    date_from: date | None = None
    date_to: date | None = None
    modality: str | None = None

    def filters(self) -> dict[str, str]:
        out = {}
        if self.date_from or self.date_to:
            lo = self.date_from.strftime("%Y%m%d") if self.date_from else ""
            hi = self.date_to.strftime("%Y%m%d") if self.date_to else ""
            out["StudyDate"] = f"{lo}-{hi}"
        if self.modality:
            out["ModalitiesInStudy"] = self.modality.upper()
        return out


#: How a PACS source is queried and pulled (``--via``).
PACS_ROUTES = ("auto", "dicomweb", "dimse", "cget")


def pacs_route(ctx: AppContext, via: str = "auto") -> str:
    """``dicomweb`` (QIDO-RS + WADO-RS), ``dimse`` (C-FIND + C-MOVE) or ``cget`` (C-FIND + C-GET); ``auto``:
    DICOMweb where configured, else C-MOVE."""
    pull = ctx.settings.pull
    if via not in PACS_ROUTES:
        raise ConfigError(f"--via: expected one of {', '.join(PACS_ROUTES)}, got {via!r}")
    if via == "auto":
        via = "dicomweb" if pull.dicomweb_url else "dimse"
    if via == "dicomweb" and not pull.dicomweb_url:
        raise ConfigError("batch source 'pacs' via dicomweb needs pull.dicomweb_url (QIDO-RS / WADO-RS of the PACS)")
    if via in ("dimse", "cget") and pull.dimse_peer is None:
        raise ConfigError(
            "batch source 'pacs' needs pull.dicomweb_url (QIDO-RS / WADO-RS) or pull.dimse_peer (C-FIND / C-MOVE)"
        )
    return via


def _dimse_puller(ctx: AppContext) -> DimsePuller:
    settings = ctx.settings
    peer = settings.pull.dimse_peer
    if peer is None:
        raise ConfigError("batch source 'pacs' via dimse needs pull.dimse_peer")
    # the PACS sends the studies to our SCP (scp.ae_title), as `mmdx pull --via dimse` has it
    return DimsePuller(
        peer,
        calling_ae=settings.scp.ae_title,
        move_destination=settings.scp.ae_title,
        timeout_s=settings.pull.timeout_s,
    )


def _receiver(ctx: AppContext) -> Receiver:
    storage = ctx.settings.storage
    return Receiver(FileStore(storage.store_dir, fsync=storage.fsync), ctx.db, storage.quarantine_dir)


def _pacs_puller(ctx: AppContext) -> DicomWebPuller:
    settings = ctx.settings
    if not settings.pull.dicomweb_url:
        raise ConfigError("batch source 'pacs' via dicomweb needs pull.dicomweb_url (QIDO-RS / WADO-RS of the PACS)")
    return DicomWebPuller(settings.pull.dicomweb_url, _receiver(ctx), timeout_s=settings.pull.timeout_s)


#: QIDO-RS page size of a cohort query.
QIDO_PAGE = 500


def pacs_study_uids(ctx: AppContext, query: PacsQuery, *, limit: int | None = None, via: str = "auto") -> list[str]:
    """QIDO-RS ``/studies`` (or C-FIND at study level) by date range and modality: the matching UIDs, sorted.

    QIDO-RS is paged by hand (``limit``/``offset``): a page that brings nothing new ends the search, so a server
    that ignores ``offset`` cannot make it loop. With ``limit`` the paging stops once that many are found.
    """
    if pacs_route(ctx, via) in ("dimse", "cget"):
        matches = _dimse_puller(ctx).find_cohort(query.filters().get("StudyDate"), query.modality)
        return sorted({m.study_instance_uid for m in matches})
    puller = _pacs_puller(ctx)
    uids: set[str] = set()
    offset = 0
    while True:
        try:
            page = puller.client.search_for_studies(
                search_filters=query.filters(), fields=["StudyInstanceUID"], limit=QIDO_PAGE, offset=offset
            )
        except Exception as exc:  # dicomweb-client raises requests/HTTP errors of several kinds
            raise IngestError(f"QIDO-RS search at {puller.url} failed: {type(exc).__name__}") from None
        found = {str(item.get("0020000D", {}).get("Value", [""])[0]) for item in page} - {""}
        if not found - uids:
            break
        uids |= found
        if len(page) < QIDO_PAGE or (limit and len(uids) >= limit):
            break
        offset += len(page)
    return sorted(uids)


def _move_into_index(ctx: AppContext, puller: DimsePuller, uid: str) -> str | None:
    """C-MOVE one study to our SCP; None once it is in the index, else why not."""
    result = puller.move_study(uid)
    with ctx.db.session(readonly=True) as session:
        if index.load_study(session, uid) is not None:
            return None
    ae = ctx.settings.scp.ae_title
    return f"C-MOVE sent {result.completed} object(s) but the study is not in the index: is mmdx scp running as {ae}?"


def plan_pacs(
    ctx: AppContext, query: PacsQuery, *, limit: int | None = None, pull: bool = True, via: str = "auto"
) -> Plan:
    """The studies matching ``query``, each pulled through ``ingest.pull`` into the store and index.

    ``via`` dicomweb: QIDO-RS + WADO-RS by the batch itself; dimse: C-FIND + C-MOVE, the PACS sending the
    study to our SCP (``mmdx scp``, as ``mmdx pull --via dimse``), which indexes it before the move ends;
    cget: C-FIND + C-GET, the objects coming back on the batch's own association (no SCP needed).
    """
    route = pacs_route(ctx, via)
    uids = pacs_study_uids(ctx, query, limit=limit, via=route)
    if limit:
        uids = uids[:limit]
    items = []
    web = _pacs_puller(ctx) if pull and route == "dicomweb" else None
    dimse = _dimse_puller(ctx) if pull and route in ("dimse", "cget") else None
    receiver = _receiver(ctx) if dimse is not None and route == "cget" else None
    for seq, uid in enumerate(uids):
        reason: str | None = None
        try:
            result = None
            if web is not None:
                result = web.retrieve_study(uid)
            elif dimse is not None and receiver is not None:
                result = dimse.get_study(uid, receiver)
            elif dimse is not None:
                reason = _move_into_index(ctx, dimse, uid)
            if result is not None and result.stored + result.duplicate == 0:
                reason = f"pull brought no usable object ({result.rejected + result.failed} refused)"
        except IngestError as exc:
            reason = f"pull failed: {exc}"
        if reason is not None:
            items.append(NewItem(seq, f"uid:{uid}", "file", f"pacs:{uid}", uid, {}, reason))
            continue
        items.append(NewItem(seq, uid, "study", f"pacs:{uid}", uid, {}))
    return Plan("pacs", tuple(items), notes=(f"{len(uids)} stud{'y' if len(uids) == 1 else 'ies'} matched",))
