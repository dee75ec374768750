"""HTTP status classes shared by the STOW-RS, FHIR and webhook senders."""

from __future__ import annotations

import httpx

from core.config import Destination
from pacs_bridge._tls import client_context, tls_failure
from pacs_bridge.outcome import Delivered, Failed, Outcome, Retry

#: Statuses worth another try: timeouts, throttling, a server briefly down.
_RETRY_STATUSES = {408, 425, 429}


def client(dest: Destination) -> httpx.Client:
    """An HTTP client for one destination: its timeout, TLS settings and Authorization header."""
    tls = client_context(dest.tls)
    headers = {"Authorization": dest.authorization} if dest.authorization else {}
    return httpx.Client(timeout=dest.timeout_s, verify=tls if tls is not None else True, headers=headers)


def classify(response: httpx.Response, what: str, detail: str = "") -> Outcome:
    """2xx delivered; 408/425/429/5xx retried; other 4xx permanent, with the peer's explanation."""
    code = response.status_code
    if 200 <= code < 300:
        return Delivered(f"{what}: HTTP {code}")
    reason = f"{what}: HTTP {code}" + (f": {detail}" if detail else "")
    if code in _RETRY_STATUSES or code >= 500:
        return Retry(reason)
    return Failed(reason)


def unreachable(exc: httpx.HTTPError, what: str) -> Retry:
    """A try that never got an HTTP answer (refused, timed out, TLS refused): retried."""
    return Retry(f"{what}: {tls_failure(exc) or f'{type(exc).__name__}: {exc}'}")
