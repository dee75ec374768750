"""A lean DICOM Upper Layer acceptor for storage (the ``fast`` SCP engine), one module per protocol layer.

pynetdicom's acceptor runs two polling reactors per association (the DUL and the association loop each
sleep 1 ms when idle) and builds an object per PDU; on loopback that caps a bare pynetdicom handler at
about a third of DCMTK's ``storescp``.  This package speaks just the part of PS3.8 a storage SCP needs,
with one blocking thread per association and no polling, laid out as pynetdicom is:

* :mod:`ingest.dul.pdu` -- the PDU codec: PDU and item types, headers, A-RELEASE-RP, A-ABORT;
* :mod:`ingest.dul.acse` -- association negotiation: A-ASSOCIATE-RQ -> AC / RJ (called and calling AE
  checks, presentation contexts and transfer syntaxes, maximum PDU length), result and reason codes;
* :mod:`ingest.dul.dimse` -- DIMSE: command sets, C-ECHO and C-STORE (any other command aborts: we never
  accept a context it could use), status codes, the received dataset's file meta, the handler protocols;
* :mod:`ingest.dul.association` -- one association on its thread: ARTIM, P-DATA-TF reassembly without
  re-copying (the hot path), A-RELEASE-RQ -> RP; timeouts, malformed or non-DICOM bytes -> A-ABORT;
* :mod:`ingest.dul.server` -- the listening socket and the limits on connections.

Nothing a peer sends is unbounded (``limits``): ARTIM and idle timeouts, connections per address and in
all, a command other than C-STORE/C-ECHO refused when its command set completes (before any dataset is
buffered), and a dataset held in memory (a handler that does not stream) capped at ``max_buffered_bytes``.

Everything about *what is stored* lives in :mod:`ingest.receive`, shared with the pynetdicom engine, and
both engines run the same test-suite.
"""

from __future__ import annotations

from ingest.dul.association import AcceptorConfig, Association
from ingest.dul.dimse import StoreHandler, StoreSink, StreamingStoreHandler
from ingest.dul.pdu import ProtocolError
from ingest.dul.server import UpperLayerServer

__all__ = [
    "AcceptorConfig",
    "Association",
    "ProtocolError",
    "StoreHandler",
    "StoreSink",
    "StreamingStoreHandler",
    "UpperLayerServer",
]
