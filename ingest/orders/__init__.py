"""Order intake: HL7 ORM/OMI over MLLP, FHIR ServiceRequest, DICOM Modality Worklist."""
