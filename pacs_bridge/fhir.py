"""FHIR delivery: a report's transaction Bundle, posted in dependency-ordered parts a server accepts.

Servers bound the size of a transaction that needs strict isolation (Medplum: 8 conditional
entries), and mmdx's report bundles are larger.  So the bundle is split into transactions of at
most ``max_entries`` entries, in dependency order (a resource before those that reference it);
after each part the ``urn:uuid:`` references to resources it created are rewritten to the ids the
server assigned.  Every entry is a conditional create (``ifNoneExist``) or an update to a fixed id,
so re-sending a part, or the whole bundle after a crash, creates nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from core.config import Destination
from pacs_bridge import _http
from pacs_bridge._artefact import read_checked
from pacs_bridge.outcome import Delivered, Failed, Outcome, Retry
from store.outbox import OutboxItem

#: Medplum refuses a strictly isolated transaction of more entries than this.
DEFAULT_MAX_ENTRIES = 8


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.add(value)
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def _dependency_order(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Entries with every referenced entry first (stable); None when the references form a cycle."""
    by_url = {e.get("fullUrl"): n for n, e in enumerate(entries) if e.get("fullUrl")}
    needs = [
        {by_url[r] for r in _refs(e.get("resource", {})) if r in by_url and by_url[r] != n}
        for n, e in enumerate(entries)
    ]
    done: list[int] = []
    placed: set[int] = set()
    while len(done) < len(entries):
        ready = [n for n in range(len(entries)) if n not in placed and needs[n] <= placed]
        if not ready:
            return None
        done.append(ready[0])
        placed.add(ready[0])
    return [entries[n] for n in done]


def _split_bundle(bundle: dict[str, Any], max_entries: int) -> list[list[dict[str, Any]]]:
    """The bundle's entries as consecutive parts of at most ``max_entries``, dependencies first."""
    entries = list(bundle.get("entry", []))
    ordered = _dependency_order(entries)
    if ordered is None:
        return [entries]  # a cycle must stay in one transaction
    return [ordered[i : i + max_entries] for i in range(0, len(ordered), max_entries)]


def _location(entry: dict[str, Any]) -> str | None:
    """``Type/id`` the server gave a transaction entry."""
    loc = (entry.get("response") or {}).get("location")
    if isinstance(loc, str) and loc:
        parts = loc.split("?")[0].rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            return f"{parts[-2]}/{parts[-1]}"
    res = entry.get("resource") or {}
    if res.get("resourceType") and res.get("id"):
        return f"{res['resourceType']}/{res['id']}"
    return None


def _entry_refusal(answered: list[dict[str, Any]], what: str) -> Outcome | None:
    """A 2xx transaction response whose entries say otherwise (some servers answer 200 and report per entry)."""
    for n, entry in enumerate(answered, 1):
        status = str((entry.get("response") or {}).get("status", "200")).split(" ")[0]
        if status[:1] in ("4", "5"):
            issues = ((entry.get("response") or {}).get("outcome") or {}).get("issue", [])
            text = "; ".join(
                str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code")) for i in issues
            )
            reason = f"{what}: entry {n}: HTTP {status}" + (f": {text[:300]}" if text else "")
            return Retry(reason) if status[:1] == "5" or status in ("408", "429") else Failed(reason)
    return None


def _outcome_text(response: httpx.Response) -> str:
    """The diagnostics of an OperationOutcome response (or the start of the body)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [
            str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
            for i in body.get("issue", [])
        ]
        return "; ".join(texts)[:500]
    return json.dumps(body)[:300]


class FhirSender:
    """Posts each report bundle to the FHIR base URL as dependency-ordered transactions."""

    def __init__(self, dest: Destination, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        assert dest.url
        self.base = dest.url.rstrip("/")
        self.max_entries = max_entries
        self._client = _http.client(dest)

    def send(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        return [self._one(item) for item in items]

    def _one(self, item: OutboxItem) -> Outcome:
        data = read_checked(item)
        if isinstance(data, Failed):
            return data
        try:
            bundle = json.loads(data)
        except ValueError as exc:
            return Failed(f"artefact {item.path.name} of item {item.id} is not JSON ({exc})")
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return Failed(f"artefact {item.path.name} of item {item.id}: expected a FHIR Bundle")
        ids: dict[str, str] = {}
        parts = _split_bundle(bundle, self.max_entries)
        what = f"FHIR {self.base}"
        for n, part in enumerate(parts, 1):
            body = {"resourceType": "Bundle", "type": "transaction", "entry": _rewrite(part, ids)}
            try:
                response = self._client.post(
                    self.base,
                    content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
                )
            except httpx.HTTPError as exc:
                return _http.unreachable(exc, what)
            outcome = _http.classify(response, f"{what} (part {n}/{len(parts)})", _outcome_text(response))
            if not isinstance(outcome, Delivered):
                return outcome
            try:
                answered = response.json().get("entry", [])
            except (ValueError, AttributeError):
                return Retry(f"{what}: transaction response is not a Bundle")
            refused = _entry_refusal(answered, f"{what} (part {n}/{len(parts)})")
            if refused is not None:
                return refused
            for sent, got in zip(part, answered, strict=False):
                loc = _location(got)
                if loc and sent.get("fullUrl"):
                    ids[sent["fullUrl"]] = loc
        return Delivered(f"{what}: {len(parts)} transaction(s)")

    def close(self) -> None:
        self._client.close()
