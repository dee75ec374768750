"""Client TLS contexts from a destination's ``tls`` section (shared by the DICOM, HTTP and MLLP senders)."""

from __future__ import annotations

import ssl

from core.config import ClientTlsConfig


def client_context(tls: ClientTlsConfig) -> ssl.SSLContext | None:
    """A verifying client context, or None when TLS is off for the destination."""
    if not tls.enabled:
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca_certificates) if tls.ca_certificates else None)
    if tls.certificate is not None and tls.private_key is not None:
        ctx.load_cert_chain(str(tls.certificate), str(tls.private_key))
    return ctx
