"""HL7 v2.5.1 ORU^R01 for the RIS, and MLLP framing.

One ORU per report version: PID (+PV1), ORC, OBR with the result status
(P preliminary, F final, C corrected/amended, W withdrawn), TQ1 with the
priority (S stat, A ASAP/urgent, R routine), then OBX segments: narrative TX
lines per section, coded CWE findings with presence, NM measurements with
UCUM units, and an RP pointer to the study on DICOMweb when configured.
Text is escaped (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``) so report text can never break
the message structure.  The tests validate the output with hl7apy against
the 2.5.1 ORU_R01 structure, not only with our own reader.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime

from core.codes import FHIRCODES, LOINC, Code
from core.errors import ReportError
from core.patient_ids import HospitalIdentifier
from core.records import DraftReport, PriorityLevel, ReportKind, ReportStatus, Study
from reports._common import (
    NOT_ANALYSED,
    PRESENCE_CODES,
    STATUS_BANNER,
    check_report,
    clinical_sections,
    finding_label,
    is_analysed,
    machine_label,
    notices,
    report_code,
    split_person_name,
    unique_measurements,
)
from reports.context import ReportContext

MLLP_START = b"\x0b"
MLLP_END = b"\x1c\x0d"
SEGMENT_SEP = "\r"

RESULT_STATUS: dict[ReportStatus, str] = {
    ReportStatus.PRELIMINARY: "P",
    ReportStatus.FINAL: "F",
    ReportStatus.AMENDED: "C",
    ReportStatus.ENTERED_IN_ERROR: "W",
}
#: ORC-5 order status (table 0038) consistent with OBR-25: some results (preliminary), completed (final, corrected),
#: back in process (a withdrawn result)
ORDER_STATUS: dict[ReportStatus, str] = {
    ReportStatus.PRELIMINARY: "A",
    ReportStatus.FINAL: "CM",
    ReportStatus.AMENDED: "CM",
    ReportStatus.ENTERED_IN_ERROR: "IP",
}
PRIORITY: dict[PriorityLevel, str] = {PriorityLevel.STAT: "S", PriorityLevel.URGENT: "A", PriorityLevel.ROUTINE: "R"}
#: HL7 v2 coding system names (table 0396) for our schemes
_V2_SYSTEM = {
    "LN": "LN",
    "SCT": "SCT",
    "DCM": "DCM",
    "UCUM": "UCUM",
    "MDC": "MDC",
    "RADLEX": "RADLEX",
    "MMDX": "99MMDX",
}


def escape(text: str) -> str:
    """Escape HL7 delimiters in a text value (MSH-1/2 defaults: ``|^~\\&``); control characters become spaces."""
    out = (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )
    return "".join(c if c >= " " or c == "\t" else " " for c in out)


#: the longest OBX-5 TX value the 2.5.1 tables allow (hl7apy STRICT enforces it); longer lines continue in
#: further OBX segments of the same sub-ID, split between words
TX_MAX = 199


def _tx_chunks(text: str, limit: int = TX_MAX) -> list[str]:
    """``text`` escaped and cut into values of at most ``limit`` characters, between words where it can,
    never inside an escape sequence (the escape of a "|" stays whole)."""
    chunks: list[str] = []
    current = ""
    for word in text.split(" "):
        atoms = re.findall(r"\\[FSTRE]\\|.", escape(word), flags=re.DOTALL)
        piece = "".join(atoms)
        candidate = f"{current} {piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current)
        current = ""
        for atom in atoms:  # a word longer than a value is cut between atoms
            if len(current) + len(atom) > limit:
                chunks.append(current)
                current = ""
            current += atom
    chunks.append(current)
    return [c for c in chunks if c] or [""]


def _ts(value: datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S") + (value.strftime("%z") if value.tzinfo else "")


def _ce(code: Code) -> str:
    return "^".join((escape(code.value), escape(code.meaning), _V2_SYSTEM[code.scheme]))


def _seg(*fields: str) -> str:
    return "|".join(fields).rstrip("|")


def _cx(ident: HospitalIdentifier) -> str:
    """A CX: ID^^^authority (HD: namespace&OID&ISO)^identifier type, from the site's identifier systems."""
    s = ident.system
    authority = escape(s.hl7_namespace)
    if s.hl7_universal_id:
        authority += f"&{escape(s.hl7_universal_id)}&ISO"
    return f"{escape(ident.value)}^^^{authority}^{s.type_code}"


def _patient_id(study: Study, ctx: ReportContext) -> str:
    """PID-3: every identifier of the patient under the site's assigning authorities (core.patient_ids).

    PID-3 is required: a source with no patient identifier at all gets one scoped to the study
    (hashed to fit CX.1's 15 characters, authority MMDX-STUDY) so the RIS can hold the result.
    """
    ids = ctx.patient_ids.resolve_all(study.patient)
    if ids:
        return "~".join(_cx(i) for i in ids)
    short = "S" + hashlib.sha256(study.study_instance_uid.encode()).hexdigest()[:14].upper()
    return f"{short}^^^MMDX-STUDY^PT"


def _ei(number: str, authority: str | None) -> str:
    return f"{escape(number)}^{escape(authority)}" if authority else escape(number)


def _order_ids(study: Study, ctx: ReportContext, code: Code) -> tuple[str, str, str]:
    """ORC/OBR-2 placer and -3 filler numbers (EI) and OBR-4: the order's own when the study answers one.

    Without an order the accession number stands in for the placer number and mmdx fills the filler number.
    """
    own_filler = _ei(ctx.uid(study.study_instance_uid, "fhir-diagnostic-report")[-22:], ctx.sending_application)
    order = study.order_match.order if study.order_match else None
    if order is None:
        return escape(study.accession_number or ""), own_filler, _ce(code)
    filler = _ei(order.filler_number, order.filler_authority) if order.filler_number else own_filler
    service = _ce(code)
    if order.procedure is not None:
        proc = order.procedure
        service = "^".join(escape(v or "") for v in (proc.code, proc.text, proc.system)).rstrip("^")
    return _ei(order.placer_number, order.placer_authority), filler, service


def _order_context(obr: list[str], study: Study) -> None:
    """OBR-13 relevant clinical information and OBR-31 reason for study, echoed from the order."""
    order = study.order_match.order if study.order_match else None
    if order is None:
        return
    if order.clinical_history:
        obr[13] = escape(" ".join(order.clinical_history.split()))[:300]
    if order.reason:
        obr += [""] * (31 - len(obr))
        obr.append("^" + escape(order.reason)[:199])


def _xcn(identifier: str, name: str) -> str:
    n = split_person_name(name)
    return "^".join((escape(identifier), escape(n.family), escape(" ".join(n.given[:1]))))


def _obx_lines(report: DraftReport) -> Iterator[tuple[str, Code, str, str, str]]:
    """(value type, OBX-3 code, sub-id, OBX-5 value, OBX-6 units) in message order."""
    sub = 0
    for s in clinical_sections(report):  # processing notes go to NTE, never to an OBX
        sub += 1
        for line in (ln for ln in s.text.splitlines() if ln.strip()):
            for chunk in _tx_chunks(line):
                yield "TX", s.code, str(sub), chunk, ""
    for f in report.findings:
        sub += 1
        if f.concept is not None:
            yield "CWE", f.concept, str(sub), _ce(PRESENCE_CODES[f.presence]), ""
        else:
            narrative = LOINC.EKG_NARRATIVE if report.kind is ReportKind.ECG else LOINC.RADIOLOGY_NARRATIVE
            for chunk in _tx_chunks(f"{finding_label(f)} ({f.presence.value})"):
                yield "TX", narrative, str(sub), chunk, ""
        if f.probability is not None:
            yield "NM", FHIRCODES.MODEL_PROBABILITY, str(sub), f"{f.probability:.4g}", "1^no units^UCUM"
    for m, _ in unique_measurements(report):
        sub += 1
        unit = "^".join((escape(m.unit.value), escape(m.unit.meaning), "UCUM"))
        yield "NM", m.code, str(sub), f"{m.value:.6g}", unit


def _control_id(study: Study, ctx: ReportContext, version: int) -> str:
    """MSH-10: derived from the software, study and version, so a resend of the same version has the same id."""
    key = f"{ctx.software_version}|{study.study_instance_uid}|{version}|oru"
    return hashlib.sha256(key.encode()).hexdigest()[:20].upper()


def _msh(ctx: ReportContext, now: datetime, control: str) -> str:
    """MSH: the sender/receiver, ORU^R01 v2.5.1, acknowledgements AL/NE and UTF-8 (MSH-18)."""
    fields = ["^~\\&", escape(ctx.sending_application), escape(ctx.sending_facility)]
    fields += [escape(ctx.receiving_application), escape(ctx.receiving_facility), _ts(ctx.local(now)), ""]
    fields += ["ORU^R01^ORU_R01", control, "P", "2.5.1", "", "", "AL", "NE", "", "UNICODE UTF-8"]
    return _seg("MSH", *fields)


def _pid(study: Study, ctx: ReportContext) -> str:
    """PID: identifiers, name (``""`` when known to be absent), birth date and administrative sex."""
    p = study.patient
    name = split_person_name(p.name) if p.name else None
    xpn = f"{escape(name.family)}^{escape(' '.join(name.given))}" if name else '""'
    birth = p.birth_date.strftime("%Y%m%d") if p.birth_date else ""
    sex = p.sex.value if p.sex.value in ("M", "F", "O", "U") else "U"
    return _seg("PID", "1", "", _patient_id(study, ctx), "", xpn, "", birth, sex)


def _obr(report: DraftReport, study: Study, ctx: ReportContext, ids: tuple[str, str, str], status: str) -> str:
    """OBR: order ids, study time (OBR-7), result time (OBR-22), section, status, order context, interpreter."""
    placer, filler, service = ids
    obr = ["OBR", "1", placer, filler, service, "", ""]
    obr.append(_ts(ctx.aware(study.study_datetime)) if study.study_datetime else "")
    obr += [""] * (22 - len(obr))  # up to OBR-21
    obr += [_ts(ctx.local(report.created_at)), "", "EC" if report.kind is ReportKind.ECG else "RAD", status]
    _order_context(obr, study)
    if report.signature is not None and report.status is not ReportStatus.ENTERED_IN_ERROR:
        c = report.signature.clinician
        cn = split_person_name(c.name)
        obr += [""] * (32 - len(obr))
        obr.append(f"{escape(c.identifier)}&{escape(cn.family)}&{escape(' '.join(cn.given[:1]))}")
    return _seg(*obr)


def _ntes(report: DraftReport, study: Study) -> list[str]:
    """NTE: the status banner, then (v2 has no AI label) the labelling rule's words
    (reports._common.machine_label), the notices, and a weak or conflicting order match for the RIS user."""
    notes = [STATUS_BANNER[report.status], machine_label(report), *notices(report)]
    notes.append(None if is_analysed(report) else NOT_ANALYSED)
    notes.append(study.order_match.notice if study.order_match else None)
    return [_seg("NTE", str(i), "L", escape(note)) for i, note in enumerate((n for n in notes if n), start=1)]


def _obxs(report: DraftReport, study: Study, ctx: ReportContext, status: str) -> list[str]:
    """OBX: one per narrative line, finding and measurement, then the DICOMweb pointer when configured."""
    observer = ""
    if report.signature is not None:
        observer = _xcn(report.signature.clinician.identifier, report.signature.clinician.name)
    devices = "~".join(escape(f"{p.name} {p.version}"[:199]) for p in report.provenance)  # OBX-18 repeats
    observed = _ts(ctx.local(report.created_at))
    segs: list[str] = []
    for vtype, obs_code, sub, value, units in _obx_lines(report):
        tail = ["", "", "", "", status, "", "", observed, "", observer, "", devices]
        segs.append(_seg("OBX", str(len(segs) + 1), vtype, _ce(obs_code), sub, value, units, *tail))
    if ctx.dicomweb_base_url:
        url = f"{ctx.dicomweb_base_url.rstrip('/')}/studies/{study.study_instance_uid}"
        value = f"{escape(url)}^^Application^DICOM"
        rp = [str(len(segs) + 1), "RP", _ce(FHIRCODES.DICOMWEB_STUDY), "", value, "", "", "", "", "", status]
        segs.append(_seg("OBX", *rp))
    return segs


def build_oru(report: DraftReport, study: Study, ctx: ReportContext) -> str:
    """The ORU^R01 message (segments separated by CR, no MLLP framing).

    Raises
    ------
    core.errors.ReportError
        On bad input (see ``reports._common.check_report``).
    """
    check_report(report, study)
    status = RESULT_STATUS[report.status]
    ids = _order_ids(study, ctx, report_code(report))
    segs = [
        _msh(ctx, ctx.now(), _control_id(study, ctx, report.version)),
        _pid(study, ctx),
        _seg("PV1", "1", "U"),
        _seg("ORC", "RE", ids[0], ids[1], "", ORDER_STATUS[report.status]),
        _obr(report, study, ctx, ids, status),
        *_ntes(report, study),
        _seg("TQ1", "1", "", "", "", "", "", "", "", PRIORITY[report.priority.level]),
        *_obxs(report, study, ctx, status),
    ]
    return SEGMENT_SEP.join(segs) + SEGMENT_SEP


def build_oru_bytes(report: DraftReport, study: Study, ctx: ReportContext) -> bytes:
    """The ORU as UTF-8 bytes (MSH-18 says UNICODE UTF-8), unframed."""
    return build_oru(report, study, ctx).encode("utf-8")


def mllp_frame(message: bytes) -> bytes:
    """Wrap one message in MLLP framing (0x0B ... 0x1C 0x0D)."""
    if MLLP_START in message or b"\x1c" in message:
        raise ReportError("mllp_frame: message contains an MLLP framing byte")
    return MLLP_START + message + MLLP_END


def mllp_unframe(stream: bytes) -> list[bytes]:
    """Split a byte stream of MLLP-framed messages.

    Raises
    ------
    ReportError
        When the stream has bytes outside frames or an unterminated frame.
    """
    out: list[bytes] = []
    i = 0
    while i < len(stream):
        if stream[i : i + 1] != MLLP_START:
            raise ReportError(f"mllp_unframe: expected 0x0B at byte {i}, got {stream[i : i + 1]!r}")
        end = stream.find(MLLP_END, i + 1)
        if end < 0:
            raise ReportError(f"mllp_unframe: frame starting at byte {i} has no 0x1C 0x0D terminator")
        out.append(stream[i + 1 : end])
        i = end + len(MLLP_END)
    return out
