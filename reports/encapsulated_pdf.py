"""The human-readable PDF as a DICOM Encapsulated PDF in the study (new series).

So that the PACS viewer shows the same page the EHR gets; built with pydicom
(highdicom has no builder for it) and checked by dciodvfy in the tests.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from core.errors import ReportError
from core.records import DraftReport, Study
from reports import _dicom
from reports._common import report_code
from reports.context import ReportContext

PURPOSE = "pdf"
SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage


def build_encapsulated_pdf(report: DraftReport, study: Study, ctx: ReportContext, pdf: bytes) -> Dataset:
    """Wrap ``pdf`` (from :func:`reports.pdf.render_pdf`) as an Encapsulated PDF instance.

    Raises
    ------
    ReportError
        When ``pdf`` is not a PDF document.
    """
    if not pdf.startswith(b"%PDF-"):
        raise ReportError("build_encapsulated_pdf: the document does not start with %PDF-")
    ident = _dicom.identity(report, ctx, PURPOSE)
    title = f"{report_code(report).meaning} report v{report.version} ({report.status.value})"
    charset = _dicom.character_set(study, report)
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = SOP_CLASS_UID
    ds.SOPInstanceUID = ident.sop_instance_uid
    _dicom.patient_module(ds, study, ctx)
    ds.StudyInstanceUID = study.study_instance_uid
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = ident.series_instance_uid
    ds.SeriesNumber = ident.series_number
    ds.SeriesDescription = "mmdx report (PDF)"
    ds.InstanceNumber = ident.instance_number
    ds.ConversionType = "WSD"
    _dicom.set_equipment(ds, ctx)
    _dicom.set_times(ds, report, ctx)
    ds.AcquisitionDateTime = _dicom.dicom_dt(report.created_at)
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title[:64]
    code = report_code(report)
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    ds.ConceptNameCodeSequence = DicomSequence([item])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def build_encapsulated_pdf_bytes(report: DraftReport, study: Study, ctx: ReportContext, pdf: bytes) -> bytes:
    return _dicom.to_bytes(build_encapsulated_pdf(report, study, ctx, pdf))
