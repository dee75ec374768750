"""Urgent-result notification: one JSON POST per report version to an alerting endpoint.

Routed like any artefact (usually ``html``); the pipeline queues it only for versions at or
above the destination's ``min_priority``, so it rides the outbox: durable, retried, sent once.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from core.config import Destination
from pacs_bridge import _http
from pacs_bridge.outcome import Outcome
from store.outbox import OutboxItem


def payload(item: OutboxItem, base_url: str | None) -> dict[str, object]:
    """What the alert says (PHI-free: UIDs, priority, reason, where to read the report)."""
    link = f"{base_url.rstrip('/')}/studies/{item.study_uid}" if base_url else str(item.path)
    return {
        "event": "mmdx.result",
        "study_instance_uid": item.study_uid,
        "report_version": item.report_version,
        "status": item.report_status.value,
        "priority": item.priority.name.lower(),
        "reason": item.priority_reason,
        "link": link,
        "idempotency_key": f"{item.study_uid}/v{item.report_version}/{item.destination}",
    }


class WebhookSender:
    """POSTs :func:`payload` to the destination's URL."""

    def __init__(self, dest: Destination, *, base_url: str | None) -> None:
        assert dest.url
        self.url = dest.url
        self.base_url = base_url
        self._client = _http.client(dest)

    def send(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        out: list[Outcome] = []
        for item in items:
            body = payload(item, self.base_url)
            try:
                response = self._client.post(
                    self.url, json=body, headers={"Idempotency-Key": str(body["idempotency_key"])}
                )
            except httpx.HTTPError as exc:
                out.append(_http.unreachable(exc, f"webhook {self.url}"))
                continue
            out.append(_http.classify(response, f"webhook {self.url}", response.text[:200]))
        return out

    def close(self) -> None:
        self._client.close()
