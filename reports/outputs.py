"""One call builds every artefact of a report version; one call writes them.

``build_outputs`` is what ``app`` (``mmdx run``, the worker, sign-off in the
API) calls; ``pacs_bridge`` routes the artefacts by ``kind``:

=============  ==================================  ======================================
kind           file                                goes to
=============  ==================================  ======================================
``fhir``       ``bundle.json``                     FHIR server (transaction)
``sr``         ``sr_tid1500.dcm`` /                PACS (C-STORE / STOW-RS)
               ``sr_tid2000.dcm`` / ``sr_ecg.dcm``
``sc``         ``sc_<n>.dcm``                      PACS
``dicom-pdf``  ``report_pdf.dcm``                  PACS (Encapsulated PDF)
``sr``         ``kos_rejection.dcm``               PACS (withdrawn reports only: a Key Object
                                                   Selection document, SR family, modality KO)
``oru``        ``oru.hl7``                         RIS (MLLP)
``pdf``        ``report.pdf``                      people, EHR document
``html``       ``report.html``                     people, the app's pages
=============  ==================================  ======================================

Every DICOM artefact is validated before it is returned (pydicom re-read);
nothing is written half and nothing written is changed: ``write_outputs``
writes a version's files into a temporary folder and renames it into place
(``<study>/v<version>/``), once; ``publish_latest`` links the latest version's
files at ``<study>/<name>``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom

from core.durable import fsync_dir
from core.errors import ReportError
from core.records import DraftReport, Image, Instance, ReportKind, ReportStatus, Study
from reports import encapsulated_pdf, kos, secondary_capture, sr_ecg, sr_tid1500, sr_tid2000
from reports._common import check_report
from reports.context import ReportContext
from reports.fhir_bundle import build_bundle, bundle_json
from reports.hl7_oru import build_oru_bytes
from reports.html import render_html
from reports.pdf import render_pdf

DICOM_MEDIA_TYPE = "application/dicom"


@dataclass(frozen=True, slots=True)
class Artefact:
    """One output file: bytes plus what a sender and the store need to know about them."""

    kind: str
    name: str
    data: bytes
    media_type: str
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    series_instance_uid: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def is_dicom(self) -> bool:
        return self.sop_instance_uid is not None


@dataclass(frozen=True, slots=True)
class ReportOutputs:
    """All artefacts of one report version."""

    study_instance_uid: str
    report_version: int
    status: ReportStatus
    artefacts: tuple[Artefact, ...]

    def by_kind(self, kind: str) -> list[Artefact]:
        return [a for a in self.artefacts if a.kind == kind]

    def get(self, name: str) -> Artefact:
        for a in self.artefacts:
            if a.name == name:
                return a
        raise KeyError(name)


def _dicom_artefact(kind: str, name: str, data: bytes) -> Artefact:
    """Re-read the bytes (never hand on an object pydicom cannot read) and lift its identity."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several types
        raise ReportError(f"{name}: built DICOM object does not re-read ({exc})") from exc
    return Artefact(
        kind,
        name,
        data,
        DICOM_MEDIA_TYPE,
        str(ds.SOPInstanceUID),
        str(ds.SOPClassUID),
        str(ds.SeriesInstanceUID),
    )


def _earlier_dicom_objects(
    report: DraftReport, ctx: ReportContext, *, n_captures: int, with_narrative: bool = True
) -> list[kos.DicomRef]:
    """The DICOM objects earlier versions of this report sent (deterministic UIDs), for a rejection note.

    ``n_captures`` is the number of SC images per version (same inputs as now).
    """
    refs: list[kos.DicomRef] = []
    uid = report.study_instance_uid
    for v in range(1, report.version):
        kinds: list[tuple[str, str]] = []
        if report.kind is ReportKind.ECG:
            kinds.append((sr_ecg.PURPOSE, sr_ecg.SOP_CLASS_UID))
        else:
            kinds.append((sr_tid1500.PURPOSE, sr_tid1500.SOP_CLASS_UID))
            if with_narrative:
                kinds.append((sr_tid2000.PURPOSE, sr_tid2000.SOP_CLASS_UID))
        kinds.append((encapsulated_pdf.PURPOSE, encapsulated_pdf.SOP_CLASS_UID))
        for purpose, sop_class in kinds:
            refs.append(kos.DicomRef(sop_class, ctx.uid(uid, purpose, v), ctx.uid(uid, f"{purpose}-series")))
        for n in range(n_captures):
            refs.append(
                kos.DicomRef(
                    secondary_capture.SOP_CLASS_UID,
                    ctx.uid(uid, f"{secondary_capture.PURPOSE}-{n}", v),
                    ctx.uid(uid, f"{secondary_capture.PURPOSE}-series"),
                )
            )
    return refs


def build_outputs(
    report: DraftReport,
    study: Study,
    ctx: ReportContext,
    *,
    images: Sequence[Image] = (),
    ecg_printout_png: bytes | None = None,
    source_instances: Sequence[Instance] = (),
    previous: DraftReport | None = None,
) -> ReportOutputs:
    """Build every artefact of one report version (pure: same inputs, same bytes).

    Parameters
    ----------
    report, study:
        The report version and the indexed study.
    images:
        Key images to send as Secondary Capture with the AI banner.
    ecg_printout_png:
        The rendered ECG (``ecg`` package), shown in PDF/HTML and sent as SC.
    source_instances:
        The instances the findings refer to (SR evidence); default: all of the study.
    previous:
        The version this one replaces (from the store): FHIR observations it had and this
        version dropped are retracted (entered-in-error).

    Raises
    ------
    ReportError
        On bad input, before anything is built (no partial outputs).
    """
    check_report(report, study)
    arts: list[Artefact] = []
    pdf = render_pdf(report, study, ctx, ecg_printout_png=ecg_printout_png)
    html = render_html(report, study, ctx, ecg_printout_png=ecg_printout_png)
    arts.append(
        Artefact(
            "fhir",
            "bundle.json",
            bundle_json(build_bundle(report, study, ctx, pdf=pdf, html=html, previous=previous)),
            "application/fhir+json",
        )
    )
    arts.append(Artefact("oru", "oru.hl7", build_oru_bytes(report, study, ctx), "x-application/hl7-v2+er7"))
    n_captures = len(images) + (1 if ecg_printout_png is not None else 0)
    if report.status is ReportStatus.ENTERED_IN_ERROR:
        refs = _earlier_dicom_objects(report, ctx, n_captures=n_captures)
        if refs:
            arts.append(
                _dicom_artefact("sr", "kos_rejection.dcm", kos.build_rejection_note_bytes(report, study, ctx, refs))
            )
    else:
        if report.kind is ReportKind.ECG:
            arts.append(
                _dicom_artefact("sr", "sr_ecg.dcm", sr_ecg.build_ecg_sr_bytes(report, study, ctx, source_instances))
            )
        else:
            if sr_tid1500.has_coded_content(report):
                sr = sr_tid1500.build_tid1500_bytes(report, study, ctx, source_instances)
                arts.append(_dicom_artefact("sr", "sr_tid1500.dcm", sr))
            arts.append(
                _dicom_artefact(
                    "sr", "sr_tid2000.dcm", sr_tid2000.build_tid2000_bytes(report, study, ctx, source_instances)
                )
            )
        if n_captures:
            scs = secondary_capture.build_secondary_capture_bytes(
                report, study, ctx, images=images, ecg_printout_png=ecg_printout_png
            )
            arts += [_dicom_artefact("sc", f"sc_{n + 1}.dcm", b) for n, b in enumerate(scs)]
        arts.append(
            _dicom_artefact(
                "dicom-pdf", "report_pdf.dcm", encapsulated_pdf.build_encapsulated_pdf_bytes(report, study, ctx, pdf)
            )
        )
    arts.append(Artefact("pdf", "report.pdf", pdf, "application/pdf"))
    arts.append(Artefact("html", "report.html", html, "text/html; charset=utf-8"))
    return ReportOutputs(study.study_instance_uid, report.version, report.status, tuple(arts))


def write_outputs(outputs: ReportOutputs, out_dir: Path, *, exclusive: bool = True) -> list[Path]:
    """Write every artefact into the version folder ``out_dir``, once; returns the paths.

    Files of a stored version never change, so the database's hashes stay true:
    the artefacts are written (0600, fsynced) into a new temporary folder (0700)
    that is then renamed to ``out_dir`` in one step.  Where ``out_dir`` is
    already there (a re-run of unchanged content, a concurrent run, a crash
    before the database commit):

    * ``exclusive`` (a version about to be stored): this version's files go
      to a new sibling ``<out_dir>-<n>``, so the paths returned always hold
      exactly these bytes;
    * not ``exclusive`` (nothing will be stored): the files there are kept as
      they are and their paths returned; a name missing there is added.

    Raises
    ------
    ReportError
        When the folder cannot be written (names the folder, never patient data).
    """
    out_dir = Path(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(out_dir))
        out_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if out_dir.is_dir() and not exclusive:
            return _complete(outputs, out_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))  # created 0700
        try:
            for a in outputs.artefacts:
                _write_new(staging / a.name, a.data)
            fsync_dir(staging)
            target = _place_folder(staging, out_dir, exclusive)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if target is None:  # another writer placed out_dir first and we keep its files
            shutil.rmtree(staging, ignore_errors=True)
            return _complete(outputs, out_dir)
        fsync_dir(target.parent)
    except OSError as exc:
        raise ReportError(f"write_outputs: cannot write into {out_dir}: {exc.strerror}") from exc
    return [target / a.name for a in outputs.artefacts]


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (owner-only: reports hold patient data) with ``data``, durably; never replaces a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _place_folder(staging: Path, out_dir: Path, exclusive: bool) -> Path | None:
    """Rename the staged folder to ``out_dir`` (or, exclusive, a free ``<out_dir>-<n>``); None: taken, not exclusive."""
    for n in range(1000):
        target = out_dir if n == 0 else out_dir.with_name(f"{out_dir.name}-{n}")
        if target.exists():
            if not exclusive:
                return None
            continue
        try:
            os.rename(staging, target)  # an existing non-empty folder is never replaced (ENOTEMPTY)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not exclusive:
                return None
            continue
        return target
    raise OSError(errno.EEXIST, "no free version folder name", str(out_dir))


def _complete(outputs: ReportOutputs, out_dir: Path) -> list[Path]:
    """The artefact paths in an existing version folder; names it lacks are added, nothing is replaced."""
    paths = []
    for a in outputs.artefacts:
        path = out_dir / a.name
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                _write_new(path, a.data)
        paths.append(path)
    return paths


def publish_latest(version_dir: Path, study_dir: Path) -> None:
    """Point ``<study_dir>/<name>`` at each file of ``version_dir`` (relative symbolic links, swapped atomically).

    The latest version is found where it always was, while every version's own
    files stay where the database recorded them; a regular file already at a
    name (written before versions had folders) is left as it is.
    """
    try:
        for path in sorted(version_dir.iterdir()):
            link = study_dir / path.name
            if link.exists() and not link.is_symlink():
                continue
            tmp = study_dir / f".{path.name}.link-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            os.symlink(Path(version_dir.name) / path.name, tmp)
            os.replace(tmp, link)
    except OSError as exc:
        raise ReportError(f"publish_latest: cannot link into {study_dir}: {exc.strerror}") from exc
