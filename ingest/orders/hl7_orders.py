"""HL7 v2 orders in (ORM^O01, OMI^O23) and their acknowledgements out.

Field choice follows IHE Radiology Scheduled Workflow as RIS feeds send it:
placer/filler numbers from ORC-2/3 (OBR-2/3 when ORC leaves them empty), the
procedure from OBR-4, the accession number from IPC-1 (OMI) or OBR-18 (ORM),
the modality from IPC-5 or OBR-24, the reason for exam from OBR-31 and the
clinical history from OBR-13, the scheduled time from TQ1-7, OBR-36, ORC-7.4
or OBR-6.  Delimiter escapes are undone by the parser (``hl7``), the text is
decoded by MSH-18.

A message that cannot be taken is answered AR (not an order message, no
MSH) or AE (an order with a missing or bad field, a duplicate accession
number): :class:`OrderMessageError` carries the code, the HL7 table 0357
error code and the field at fault, and never patient data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

import hl7

from core.errors import IngestError, RecordError
from core.orders import Order, OrderedProcedure, OrderSource, OrderStatus
from core.records import Patient, PatientIdentifier, Sex

#: MSH-18 character sets (HL7 table 0211) -> Python codecs; ASCII when absent.
CHARSETS: dict[str, str] = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}
SUPPORTED = {("ORM", "O01"), ("OMI", "O23")}


class OrderControl(enum.Enum):
    """What the message does to the order (ORC-1, reduced)."""

    NEW = "new"  #: NW, SC, XO and others that carry the order: store / update
    CANCEL = "cancel"  #: CA, DC, OC: cancel


class OrderMessageError(IngestError):
    """An order message that is refused: ``ack_code`` AR (reject) or AE (error), with the field at fault."""

    def __init__(self, message: str, *, ack_code: str, error_code: str, location: str = "") -> None:
        self.ack_code = ack_code
        self.error_code = error_code  #: HL7 table 0357
        self.location = location  #: ``SEG^1^field`` (ERR-2)
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class OrderMessage:
    """A parsed order message: its control ID (MSA-2), what to do, and the order."""

    control_id: str
    control: OrderControl
    order: Order


def decode(raw: bytes) -> str:
    """The message text, decoded by its MSH-18 (UTF-8 when unreadable as declared, Latin-1 as the last resort)."""
    head = raw.split(b"\r", 1)[0]
    fields = head.split(b"|")
    charset = fields[17].decode("ascii", "replace").split("^")[0].strip() if len(fields) > 17 else ""
    codec = CHARSETS.get(charset.upper(), "utf-8")
    for name in (codec, "utf-8", "latin-1"):
        try:
            return raw.decode(name)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _get(msg: hl7.Message, key: str) -> str:
    try:
        return str(msg[key]).strip()
    except (KeyError, IndexError):
        return ""


def _date(value: str, where: str) -> date | None:
    if not value:
        return None
    try:
        return datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        raise OrderMessageError(
            f"{where}: expected a date YYYYMMDD", ack_code="AE", error_code="102", location=where
        ) from None


def _datetime(value: str, where: str) -> datetime | None:
    """An HL7 TS (YYYYMMDD[HHMM[SS]][+ZZZZ]): aware when it carries an offset, local wall clock otherwise."""
    if not value:
        return None
    text = value.split("^")[0]
    offset = ""
    for sign in "+-":
        if sign in text[8:]:
            i = text.rindex(sign)
            text, offset = text[:i], text[i:]
    text = text.split(".")[0]
    fmt = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(text))
    try:
        if fmt is None:
            raise ValueError(value)
        return datetime.strptime(text + offset, fmt + ("%z" if offset else ""))
    except ValueError:
        raise OrderMessageError(
            f"{where}: expected a timestamp YYYYMMDD[HHMM[SS]][+ZZZZ]", ack_code="AE", error_code="102", location=where
        ) from None


def _patient(msg: hl7.Message) -> Patient:
    try:
        pid = msg.segment("PID")
    except KeyError:
        raise OrderMessageError(
            "PID segment missing: an order needs its patient", ack_code="AE", error_code="100", location="PID"
        ) from None
    idents: list[PatientIdentifier] = []
    repeats = len(pid[3]) if len(pid) > 3 and pid[3] else 0
    for r in range(1, repeats + 1):
        value = _get(msg, f"PID.F3.R{r}.C1")
        if value:
            idents.append(PatientIdentifier(value, _get(msg, f"PID.F3.R{r}.C4") or None))
    if not idents:
        raise OrderMessageError(
            "PID-3: expected a patient identifier (orders for unknown patients are refused)",
            ack_code="AE",
            error_code="101",
            location="PID^1^3",
        )
    family, given, middle = (_get(msg, f"PID.F5.R1.C{c}") for c in (1, 2, 3))
    name = "^".join((family, given, middle)).rstrip("^") or None
    sex = {"M": Sex.MALE, "F": Sex.FEMALE, "O": Sex.OTHER}.get(_get(msg, "PID.F8")[:1], Sex.UNKNOWN)
    return Patient(identifiers=tuple(idents), name=name, birth_date=_date(_get(msg, "PID.F7"), "PID^1^7"), sex=sex)


def _has(msg: hl7.Message, segment: str) -> bool:
    try:
        msg.segment(segment)
    except KeyError:
        return False
    return True


def _ce_text(msg: hl7.Message, field: str) -> str | None:
    """A CE/CWE's text (component 2), or its code when it has no text; repeats joined by '; '."""
    texts = []
    for r in range(1, 6):
        code, text = _get(msg, f"{field}.R{r}.C1"), _get(msg, f"{field}.R{r}.C2")
        if not (code or text):
            break
        texts.append(text or code)
    return "; ".join(texts) or None


def parse_order_message(raw: bytes) -> OrderMessage:
    """Parse one ORM^O01 / OMI^O23 message (unframed bytes).

    Raises
    ------
    OrderMessageError
        AR for what is not an order message, AE for an order with a missing or bad field.
    """
    msg = _read_header(raw)
    if not _has(msg, "ORC") or not _has(msg, "OBR"):
        raise OrderMessageError(
            "expected ORC and OBR segments in an order message", ack_code="AE", error_code="100", location="ORC"
        )
    control = _get(msg, "ORC.F1").upper()
    action = OrderControl.CANCEL if control in ("CA", "DC", "OC", "OD", "CR") else OrderControl.NEW
    return OrderMessage(_get(msg, "MSH.F10"), action, _order(msg))


def _read_header(raw: bytes) -> hl7.Message:
    """The parsed message once MSH says it is an order with a control ID (else AR: the sender must not resend)."""
    text = decode(raw).replace("\r\n", "\r").replace("\n", "\r").strip("\r\x00 ")
    if not text.startswith("MSH"):
        raise OrderMessageError(
            "expected an HL7 v2 message starting with MSH", ack_code="AR", error_code="100", location="MSH"
        )
    try:
        msg = hl7.parse(text)
    except Exception as exc:  # hl7 raises several types on broken encoding characters
        raise OrderMessageError(
            f"unreadable HL7 message ({type(exc).__name__})", ack_code="AR", error_code="100", location="MSH"
        ) from exc
    kind = (_get(msg, "MSH.F9.R1.C1"), _get(msg, "MSH.F9.R1.C2"))
    if kind not in SUPPORTED:
        raise OrderMessageError(
            f"MSH-9: message type {'^'.join(kind)} is not an order; expected ORM^O01 or OMI^O23",
            ack_code="AR",
            error_code="200",
            location="MSH^1^9",
        )
    if not _get(msg, "MSH.F10"):
        raise OrderMessageError(
            "MSH-10: message control ID is empty", ack_code="AR", error_code="101", location="MSH^1^10"
        )
    return msg


def _order(msg: hl7.Message) -> Order:
    """The order from ORC/OBR (IPC and TQ1 first where an OMI has them); a bad field is an AE naming it."""
    patient = _patient(msg)
    placer = _get(msg, "ORC.F2.R1.C1") or _get(msg, "OBR.F2.R1.C1")
    placer_ns = _get(msg, "ORC.F2.R1.C2") or _get(msg, "OBR.F2.R1.C2")
    if not placer:
        raise OrderMessageError(
            "ORC-2 / OBR-2: expected a placer order number", ack_code="AE", error_code="101", location="ORC^1^2"
        )
    filler = _get(msg, "ORC.F3.R1.C1") or _get(msg, "OBR.F3.R1.C1")
    filler_ns = _get(msg, "ORC.F3.R1.C2") or _get(msg, "OBR.F3.R1.C2")
    ipc = _has(msg, "IPC")
    accession = (_get(msg, "IPC.F1.R1.C1") if ipc else "") or _get(msg, "OBR.F18")
    modality = (_get(msg, "IPC.F5") if ipc else "") or _get(msg, "OBR.F24")
    code, proc_text, system = (_get(msg, f"OBR.F4.R1.C{c}") for c in (1, 2, 3))
    scheduled_raw = (
        (_get(msg, "TQ1.F7") if _has(msg, "TQ1") else "")
        or _get(msg, "OBR.F36")
        or _get(msg, "ORC.F7.R1.C4")
        or _get(msg, "OBR.F6")
    )
    provider = "^".join(_get(msg, f"ORC.F12.R1.C{c}") for c in (2, 3)).strip("^") or "^".join(
        _get(msg, f"OBR.F16.R1.C{c}") for c in (2, 3)
    ).strip("^")
    try:
        return Order(
            placer_number=placer,
            placer_authority=placer_ns or None,
            patient=patient,
            source=OrderSource.HL7,
            filler_number=filler or None,
            filler_authority=filler_ns or None,
            accession_number=accession or None,
            procedure=OrderedProcedure(code or None, system or None, proc_text or None) if code or proc_text else None,
            modality=modality or None,
            reason=_ce_text(msg, "OBR.F31"),
            clinical_history=_get(msg, "OBR.F13") or None,
            ordering_provider=provider or None,
            scheduled_at=_datetime(scheduled_raw, "TQ1^1^7"),
            status=OrderStatus.SCHEDULED,
            requested_procedure_id=(_get(msg, "IPC.F2") if ipc else "") or _get(msg, "OBR.F19") or None,
            study_instance_uid=(_get(msg, "IPC.F3") if ipc else "") or None,
        )
    except RecordError as exc:
        raise OrderMessageError(
            f"order field {exc.field}: {str(exc).split(': ', 1)[-1]}", ack_code="AE", error_code="102", location="ORC"
        ) from exc


def _escape(text: str) -> str:
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return "".join(c if c >= " " else " " for c in out.replace("~", "\\R\\"))


def build_ack(
    raw: bytes,
    code: str,
    *,
    now: datetime,
    application: str = "MMDX",
    facility: str = "MMDX",
    error: OrderMessageError | None = None,
) -> bytes:
    """The ACK answering ``raw``: MSA-1 ``code`` (AA, AE, AR), MSA-2 its control ID, ERR when refused.

    Works on messages that did not parse: what can be read of MSH is echoed, the rest left empty.
    """
    text = decode(raw)
    head = text.split("\r", 1)[0].replace("\n", "")
    f = head.split("|") if head.startswith("MSH") else ["MSH", "^~\\&"]
    f += [""] * (20 - len(f))
    trigger = f[8].split("^")[1] if "^" in f[8] else ""
    msh = [
        "MSH",
        "^~\\&",
        _escape(application),
        _escape(facility),
        f[2],
        f[3],
        now.strftime("%Y%m%d%H%M%S") + (now.strftime("%z") if now.tzinfo else ""),
        "",
        f"ACK^{trigger}^ACK" if trigger else "ACK",
        f"ACK{now.strftime('%Y%m%d%H%M%S%f')}"[:20],
        f[10] or "P",
        f[11] or "2.5.1",
        "",
        "",
        "",
        "",
        "",
        "UNICODE UTF-8",
    ]
    segs = ["|".join(msh), "|".join(["MSA", code, f[9]])]
    if error is not None:
        segs.append(
            "|".join(
                ["ERR", "", error.location, f"{error.error_code}^^HL70357", "E", "", "", "", _escape(str(error))[:250]]
            )
        )
    return ("\r".join(segs) + "\r").encode("utf-8")
