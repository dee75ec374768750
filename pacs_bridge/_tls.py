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


def tls_failure(exc: BaseException) -> str | None:
    """A plain reason when ``exc`` (or what caused it) is a TLS failure, else None.

    HTTP clients wrap the ``ssl`` error twice; the operator needs to know it was the certificate,
    not the network, and which setting to look at.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return (
                f"TLS: the peer's certificate was not verified ({cur.verify_message or cur.reason}); "
                "check tls.ca_certificates"
            )
        if isinstance(cur, ssl.SSLError):
            hint = (
                "; the peer wants a client certificate (tls.certificate)" if "CERTIFICATE_REQUIRED" in str(cur) else ""
            )
            return f"TLS handshake failed ({cur.reason or cur}){hint}"
        cur = cur.__cause__ or cur.__context__
    return None
