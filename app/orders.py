"""Wiring of order intake into the pipeline: which order a study answers, asking the worklist if needed.

``ingest.orders`` receives orders and ``store.orders`` keeps and matches them;
here the pipeline gets the match for a study, after asking the Modality
Worklist (``orders.worklist``) for an accession number no stored order holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from app.context import AppContext
from core.errors import IngestError, StoreError
from core.orders import OrderMatch
from core.records import Study
from ingest.orders.intake import fetch_from_worklist, receive_hl7
from store import orders as order_store


def order_for_study(ctx: AppContext, study: Study, problems: list[str]) -> OrderMatch | None:
    """The study's order (recorded with its conflicts), or None; what went wrong asking goes to ``problems``."""
    window = ctx.settings.orders.match_window_days
    with ctx.db.session() as session:
        match = order_store.match_study(session, study, ctx.clock.now(), window_days=window)
    peer = ctx.settings.orders.worklist
    if match is None and study.accession_number and peer is not None:
        try:
            found = fetch_from_worklist(
                ctx.db, peer, study.accession_number, ctx.clock.now(), calling_ae=ctx.settings.orders.calling_ae_title
            )
        except (IngestError, StoreError) as exc:
            problems.append(f"worklist: {exc}")
            return None
        if found:
            with ctx.db.session() as session:
                match = order_store.match_study(session, study, ctx.clock.now(), window_days=window)
    if match is not None and match.notice:
        problems.append(match.notice)
    return match


def with_recorded_order(ctx: AppContext, study: Study) -> Study:
    """The study with the order recorded for it (sign-off, amendments: no new matching, no worklist query)."""
    with ctx.db.session(readonly=True) as session:
        match = order_store.match_for_study(session, study.study_instance_uid)
    return study if match is None else dataclasses.replace(study, order_match=match)


def hl7_handler(ctx: AppContext) -> Callable[[bytes], bytes]:
    """The MLLP listener's handler: one order message in, its ACK out (as the site's HL7 application)."""
    hl7 = ctx.settings.site.hl7

    def handle(raw: bytes) -> bytes:
        return receive_hl7(
            ctx.db, raw, ctx.clock.now(), application=hl7.sending_application, facility=hl7.sending_facility
        )

    return handle
