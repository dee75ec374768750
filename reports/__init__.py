"""mmdx reports: a study's DraftReport out as FHIR, DICOM, HL7 v2, PDF and HTML.

Public face (everything else is a builder detail):

- :class:`reports.context.ReportContext`: UID root, software identity, clock, site names.
- :func:`reports.outputs.build_outputs` / :func:`reports.outputs.write_outputs`: every artefact of
  one report version (``ReportOutputs`` of ``Artefact``: kind, name, bytes, media type, sha256, UIDs).
- :mod:`reports.signoff`: ``edit``, ``sign``, ``amend``, ``withdraw`` -> new DraftReport versions.
- :mod:`reports.fhir_validate`: ``check_bundle`` (project rules) and ``validate_with_medplum``
  (Medplum's R4 validator, ``reports/_js``; ``npm ci`` there installs it).
- :mod:`reports.hl7_oru`: ``mllp_frame`` / ``mllp_unframe`` for the MLLP sender.

Builders are pure (records in, bytes out) and deterministic: UIDs derive from
(uid_root, software version, study UID, purpose, report version) and times
come from the report and the context clock.
"""
