"""Orders into the store: one function per way an order arrives, each one transaction.

``receive_hl7`` is the MLLP listener's handler (message in, ACK out);
``accept_service_request`` is what the API and the FHIR poller call;
``fetch_from_worklist`` asks the Modality Worklist for an accession number
no stored order holds.
"""

from __future__ import annotations

import logging
from datetime import datetime

from core.config import DicomPeer
from core.errors import IngestError, StoreError
from core.orders import Order
from ingest.orders.fhir_orders import order_from_service_request
from ingest.orders.hl7_orders import OrderControl, OrderMessageError, build_ack, parse_order_message
from ingest.orders.worklist import query_worklist
from store import orders as order_store
from store.db import Database

log = logging.getLogger(__name__)


def store_order(db: Database, order: Order, now: datetime) -> tuple[int, bool]:
    """Save (or update) one order: (id, created). Raises StoreError for a duplicate accession number."""
    with db.session() as session:
        return order_store.save_order(session, order, now)


def receive_hl7(db: Database, raw: bytes, now: datetime, *, application: str = "MMDX", facility: str = "MMDX") -> bytes:
    """Take one ORM^O01 / OMI^O23 message; the ACK (AA stored, AE refused order, AR not an order message)."""
    try:
        message = parse_order_message(raw)
        with db.session() as session:
            if message.control is OrderControl.CANCEL:
                if not order_store.cancel_order(
                    session, message.order.placer_number, message.order.placer_authority, now
                ):
                    raise OrderMessageError(
                        "ORC-2: cancel of an order that was never received",
                        ack_code="AE",
                        error_code="204",
                        location="ORC^1^2",
                    )
            else:
                order_store.save_order(session, message.order, now)
    except OrderMessageError as exc:
        log.info("order message refused (%s): %s", exc.ack_code, exc)
        return build_ack(raw, exc.ack_code, now=now, application=application, facility=facility, error=exc)
    except StoreError as exc:
        err = OrderMessageError(str(exc), ack_code="AE", error_code="205", location="OBR^1^18")
        log.info("order message refused (AE): %s", exc)
        return build_ack(raw, "AE", now=now, application=application, facility=facility, error=err)
    except Exception:  # an ACK must go back whatever happened; the peer retries on AE/AR
        log.exception("order message could not be processed")
        err = OrderMessageError("application error while storing the order", ack_code="AE", error_code="207")
        return build_ack(raw, "AE", now=now, application=application, facility=facility, error=err)
    return build_ack(raw, "AA", now=now, application=application, facility=facility)


def accept_service_request(db: Database, resource: dict[str, object], now: datetime) -> tuple[int, bool]:
    """Store the order of one FHIR ServiceRequest: (order id, created).

    Raises
    ------
    IngestError
        When the resource is not a usable ServiceRequest.
    StoreError
        When another order holds its accession number.
    """
    return store_order(db, order_from_service_request(resource), now)


def fetch_from_worklist(
    db: Database, peer: DicomPeer, accession_number: str, now: datetime, *, calling_ae: str = "MMDX"
) -> list[Order]:
    """Query the worklist by accession number and store what it answers (orders already held are updated)."""
    found = query_worklist(peer, accession_number, calling_ae=calling_ae)
    if len(found) > 1:
        raise IngestError(f"worklist {peer.ae_title}: {len(found)} entries answer one accession number; none taken")
    for order in found:
        store_order(db, order, now)
    return found
