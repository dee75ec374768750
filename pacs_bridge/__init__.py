"""mmdx pacs_bridge: delivers stored results from the outbox to PACS, RIS, EHR, shares and alert hooks.

- :mod:`pacs_bridge.outcome`: the :class:`Sender` protocol and its typed outcomes.
- one module per protocol: :mod:`~pacs_bridge.dicom_store` (C-STORE SCU), :mod:`~pacs_bridge.commitment`
  (storage commitment), :mod:`~pacs_bridge.stow` (STOW-RS), :mod:`~pacs_bridge.fhir` (FHIR transactions),
  :mod:`~pacs_bridge.mllp` (HL7 v2 over MLLP), :mod:`~pacs_bridge.folder`, :mod:`~pacs_bridge.webhook`.
- :mod:`pacs_bridge.loop`: :class:`OutboxLoop` claims due items with a lease, sends, records outcomes.
"""
