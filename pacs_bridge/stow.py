"""STOW-RS (PS3.18 10.5): the batch's DICOM objects in one multipart/related POST per study."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx

from core.config import Destination
from pacs_bridge import _http
from pacs_bridge._artefact import read_checked
from pacs_bridge.outcome import Delivered, Failed, Outcome, Retry
from store.outbox import OutboxItem


def _multipart(parts: Sequence[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = bytearray()
    for data in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _failed_uids(response: httpx.Response) -> dict[str, str]:
    """SOP Instance UIDs in the response's FailedSOPSequence (0008,1198), with their Failure Reason."""
    try:
        body = response.json()
    except ValueError:
        return {}
    failed: dict[str, str] = {}
    for ref in (body.get("00081198") or {}).get("Value", []) if isinstance(body, dict) else []:
        uid = (ref.get("00081155") or {}).get("Value", [""])[0]
        reason = (ref.get("00081197") or {}).get("Value", [0])[0]
        failed[str(uid)] = f"0x{int(reason):04X}" if isinstance(reason, int) else str(reason)
    return failed


class StowSender:
    """POSTs to ``<url>/studies/<study UID>`` with the destination's Authorization header."""

    def __init__(self, dest: Destination) -> None:
        assert dest.url
        self.base = dest.url.rstrip("/")
        self._client = _http.client(dest)

    def send(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        by_study: dict[str, list[tuple[OutboxItem, bytes]]] = {}
        for item in items:
            data = read_checked(item)
            if isinstance(data, Failed):
                outcomes[item.id] = data
            else:
                by_study.setdefault(item.study_uid, []).append((item, data))
        for study, parts in by_study.items():
            body, ctype = _multipart([d for _, d in parts])
            what = f"STOW-RS {self.base}"
            try:
                response = self._client.post(
                    f"{self.base}/studies/{study}",
                    content=body,
                    headers={"Content-Type": ctype, "Accept": "application/dicom+json"},
                )
            except httpx.HTTPError as exc:
                outcomes.update({i.id: _http.unreachable(exc, what) for i, _ in parts})
                continue
            failed = _failed_uids(response)
            if response.status_code in (200, 202) and failed:
                # 202: some stored, some not (PS3.18 Table 10.5.3-1): judge each object
                for item, _ in parts:
                    uid = item.sop_instance_uid or ""
                    outcomes[item.id] = (
                        Failed(f"{what}: object refused, failure reason {failed[uid]}")
                        if uid in failed
                        else Delivered()
                    )
                continue
            outcome = _http.classify(response, what, response.text[:300] if response.status_code >= 400 else "")
            if isinstance(outcome, Delivered | Retry | Failed):
                outcomes.update({i.id: outcome for i, _ in parts})
        return [outcomes[i.id] for i in items]

    def close(self) -> None:
        self._client.close()
