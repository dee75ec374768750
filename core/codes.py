"""Coded concepts: every code mmdx emits lives here, with its display text.

Call sites refer to these constants (``LOINC.QT_INTERVAL``), never to inline
strings, so that one table can be reviewed against the terminologies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.errors import RecordError

#: Coding scheme designators (DICOM PS3.16 style) mapped to FHIR system URIs.
SYSTEM_URIS: Final[dict[str, str]] = {
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    "MDC": "urn:iso:std:iso:11073:10101",
    "RADLEX": "http://radlex.org",
    "HL7V2-0074": "http://terminology.hl7.org/CodeSystem/v2-0074",
    "HL7V2-0203": "http://terminology.hl7.org/CodeSystem/v2-0203",
    "V3-OBSVALUE": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "OBS-CATEGORY": "http://terminology.hl7.org/CodeSystem/observation-category",
    "MMDX": "urn:mmdx:codes",
    "PROV-PARTICIPANT": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
    "V3-DATAOPERATION": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
}


@dataclass(frozen=True, slots=True)
class Code:
    """A coded concept: value, coding scheme designator and display text."""

    value: str
    scheme: str
    meaning: str

    def __post_init__(self) -> None:
        if not self.value or not self.value.strip():
            raise RecordError("Code", "value", "expected a non-empty code value")
        if self.scheme not in SYSTEM_URIS:
            raise RecordError(
                "Code", "scheme", f"unknown scheme {self.scheme!r}; expected one of {sorted(SYSTEM_URIS)}"
            )
        if not self.meaning:
            raise RecordError("Code", "meaning", f"code {self.value} needs a display text")

    @property
    def system(self) -> str:
        """The FHIR ``system`` URI of this code's scheme."""
        return SYSTEM_URIS[self.scheme]

    def __str__(self) -> str:
        return f"({self.value}, {self.scheme}, {self.meaning!r})"


def _ln(value: str, meaning: str) -> Code:
    return Code(value, "LN", meaning)


def _sct(value: str, meaning: str) -> Code:
    return Code(value, "SCT", meaning)


def _dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


def _ucum(value: str, meaning: str) -> Code:
    return Code(value, "UCUM", meaning)


class LOINC:
    """LOINC codes (reports, sections, ECG measurements)."""

    IMAGING_STUDY: Final = _ln("18748-4", "Diagnostic imaging study")
    EKG_STUDY: Final = _ln("11524-6", "EKG study")
    FINDINGS: Final = _ln("59776-5", "Procedure Findings")
    IMPRESSION: Final = _ln("19005-8", "Radiology Imaging study [Impression] (narrative)")
    RECOMMENDATION: Final = _ln("18783-1", "Radiology Study recommendation (narrative)")
    TECHNIQUE: Final = _ln("55111-9", "Current imaging procedure descriptions")
    COMPARISON: Final = _ln("18834-2", "Radiology Comparison study (narrative)")
    HISTORY: Final = _ln("55115-0", "Requested imaging studies information")
    RADIOLOGY_NARRATIVE: Final = _ln("18782-3", "Radiology Study observation (narrative)")
    EKG_NARRATIVE: Final = _ln("18810-2", "EKG study (narrative)")
    CHEST_XRAY: Final = _ln("36643-5", "XR Chest 2 Views")
    CHEST_XRAY_SINGLE_VIEW: Final = _ln("36554-4", "XR Chest Single view")
    CHEST_CT: Final = _ln("24627-2", "CT Chest")
    HEART_RATE: Final = _ln("8867-4", "Heart rate")
    EKG_HEART_RATE: Final = _ln("76282-3", "Heart rate.beat-to-beat by EKG")
    RR_INTERVAL: Final = _ln("8637-1", "R-R interval by EKG")
    PR_INTERVAL: Final = _ln("8625-6", "P-R Interval")
    QRS_DURATION: Final = _ln("8633-0", "QRS duration")
    QT_INTERVAL: Final = _ln("8634-8", "Q-T interval")
    QTC_INTERVAL: Final = _ln("8636-3", "Q-T interval corrected")
    QTC_BAZETT: Final = _ln("76635-2", "Q-T interval corrected based on Bazett formula")
    QTC_FRIDERICIA: Final = _ln("76634-5", "Q-T interval corrected based on Fridericia formula")
    QTC_FRAMINGHAM: Final = _ln("76636-0", "Q-T interval corrected based on Framingham formula")
    QTC_HODGES: Final = _ln("76637-8", "Q-T interval corrected based on Hodges formula")
    P_AXIS: Final = _ln("8626-4", "P wave axis")
    QRS_AXIS: Final = _ln("8632-2", "QRS axis")
    T_AXIS: Final = _ln("8638-9", "T wave axis")


class SCT:
    """SNOMED CT concepts (findings, ECG statements, sites, presence)."""

    # presence / laterality / sites
    PRESENT: Final = _sct("52101004", "Present")
    ABSENT: Final = _sct("272519000", "Absent")
    UNCERTAIN: Final = _sct("82334004", "Indeterminate")
    FINDING_SITE: Final = _sct("363698007", "Finding Site")
    PRESENCE: Final = _sct("705057003", "Presence")
    LEFT: Final = _sct("7771000", "Left")
    RIGHT: Final = _sct("24028007", "Right")
    BILATERAL: Final = _sct("51440002", "Right and left")
    LUNG: Final = _sct("39607008", "Lung")
    HEART: Final = _sct("80891009", "Heart")
    PLEURA: Final = _sct("3120008", "Pleural membrane structure")
    CHEST: Final = _sct("51185008", "Thorax")
    # chest radiograph findings
    ATELECTASIS: Final = _sct("46621007", "Atelectasis")
    CARDIOMEGALY: Final = _sct("8186001", "Cardiomegaly")
    PLEURAL_EFFUSION: Final = _sct("60046008", "Pleural effusion")
    INFILTRATE: Final = _sct("409609008", "Radiologic infiltrate of lung")
    MASS: Final = _sct("126713003", "Mass of lung")
    NODULE: Final = _sct("786838002", "Pulmonary nodule")
    PNEUMONIA: Final = _sct("233604007", "Pneumonia")
    PNEUMOTHORAX: Final = _sct("36118008", "Pneumothorax")
    CONSOLIDATION: Final = _sct("95436008", "Lung consolidation")
    EDEMA: Final = _sct("19242006", "Pulmonary edema")
    EMPHYSEMA: Final = _sct("87433001", "Pulmonary emphysema")
    FIBROSIS: Final = _sct("51615001", "Fibrosis of lung")
    PLEURAL_THICKENING: Final = _sct("44608003", "Pleural thickening")
    HERNIA: Final = _sct("84089009", "Hiatal hernia")
    FRACTURE: Final = _sct("125605004", "Fracture of bone")
    NO_ACUTE_FINDING: Final = _sct("281900007", "No abnormality detected")
    LONG_AXIS: Final = _sct("103339001", "Long Axis")  # TID 1410 lesion size
    # ECG statements (AHA/ACCF/HRS standardized list mapped to SNOMED CT)
    SINUS_RHYTHM: Final = _sct("426783006", "Sinus rhythm")
    SINUS_BRADYCARDIA: Final = _sct("426177001", "Sinus bradycardia")
    SINUS_TACHYCARDIA: Final = _sct("427084000", "Sinus tachycardia")
    ATRIAL_FIBRILLATION: Final = _sct("164889003", "Atrial fibrillation")
    ATRIAL_FLUTTER: Final = _sct("164890007", "Atrial flutter")
    PREMATURE_ATRIAL_COMPLEX: Final = _sct("284470004", "Premature atrial contraction")
    PREMATURE_VENTRICULAR_COMPLEX: Final = _sct("427172004", "Premature ventricular contraction")
    PACED_RHYTHM: Final = _sct("10370003", "Rhythm from artificial pacing")
    VENTRICULAR_TACHYCARDIA: Final = _sct("164895002", "Ventricular tachycardia")
    FIRST_DEGREE_AV_BLOCK: Final = _sct("270492004", "First degree atrioventricular block")
    SECOND_DEGREE_AV_BLOCK: Final = _sct("195042002", "Second degree atrioventricular block")
    COMPLETE_AV_BLOCK: Final = _sct("27885002", "Complete atrioventricular block")
    # escape / ectopic rhythms without P waves (SNOMED CT as mapped in the PhysioNet/CinC 2020-21 ECG labels)
    JUNCTIONAL_RHYTHM: Final = _sct("29320008", "Atrioventricular junctional rhythm")
    ACCELERATED_JUNCTIONAL_RHYTHM: Final = _sct("426664006", "Accelerated junctional rhythm")
    SUPRAVENTRICULAR_TACHYCARDIA: Final = _sct("426761007", "Supraventricular tachycardia")
    IDIOVENTRICULAR_RHYTHM: Final = _sct("49260003", "Idioventricular rhythm")
    LBBB: Final = _sct("164909002", "Left bundle branch block")
    COMPLETE_LBBB: Final = _sct("733534002", "Complete left bundle branch block")
    RBBB: Final = _sct("59118001", "Right bundle branch block")
    COMPLETE_RBBB: Final = _sct("713427006", "Complete right bundle branch block")
    IVCD: Final = _sct("698252002", "Nonspecific intraventricular conduction delay")
    INCOMPLETE_RBBB: Final = _sct("713426002", "Incomplete right bundle branch block")
    INCOMPLETE_LBBB: Final = _sct("251120003", "Incomplete left bundle branch block")
    LAFB: Final = _sct("445118002", "Left anterior fascicular block")
    LPFB: Final = _sct("445211001", "Left posterior fascicular block")
    LEFT_AXIS_DEVIATION: Final = _sct("39732003", "Left axis deviation")
    RIGHT_AXIS_DEVIATION: Final = _sct("47665007", "Right axis deviation")
    LOW_QRS_VOLTAGE: Final = _sct("251146004", "Low QRS voltages")
    LVH: Final = _sct("164873001", "Left ventricular hypertrophy")
    ST_ELEVATION: Final = _sct("164931005", "ST elevation")
    STEMI: Final = _sct("401303003", "Acute ST segment elevation myocardial infarction")
    # infarct statements (SNOMED CT as mapped in the PhysioNet/CinC 2020-21 ECG labels, dx_mapping)
    MYOCARDIAL_INFARCTION: Final = _sct("164865005", "Myocardial infarction")
    Q_WAVE_ABNORMAL: Final = _sct("164917005", "Abnormal Q wave")
    POOR_R_PROGRESSION: Final = _sct("365413008", "Poor R wave progression")
    ST_DEPRESSION: Final = _sct("429622005", "ST depression")
    T_WAVE_INVERSION: Final = _sct("59931005", "Inverted T wave")
    PROLONGED_QT: Final = _sct("111975006", "Prolonged QT interval")
    NORMAL_ECG: Final = _sct("164854000", "Electrocardiogram normal")
    ABNORMAL_ECG: Final = _sct("102594003", "Electrocardiogram abnormal")


class DCM:
    """DICOM controlled terminology (PS3.16) used in SR and provenance."""

    IMAGING_MEASUREMENT_REPORT: Final = _dcm("126000", "Imaging Measurement Report")
    IMAGING_MEASUREMENTS: Final = _dcm("126010", "Imaging Measurements")
    MEASUREMENT_GROUP: Final = _dcm("125007", "Measurement Group")
    FINDING: Final = _dcm("121071", "Finding")
    FINDINGS: Final = _dcm("121070", "Findings")
    IMPRESSIONS: Final = _dcm("121072", "Impressions")
    RECOMMENDATION: Final = _dcm("121075", "Recommendation")
    NARRATIVE_SUMMARY: Final = _dcm("111412", "Narrative Summary")
    ALGORITHM_NAME: Final = _dcm("111001", "Algorithm Name")
    ALGORITHM_VERSION: Final = _dcm("111003", "Algorithm Version")
    SOURCE_OF_MEASUREMENT: Final = _dcm("121112", "Source of Measurement")
    DEVICE_OBSERVER: Final = _dcm("121007", "Device")
    PERSON_OBSERVER: Final = _dcm("121006", "Person")
    ARTIFICIAL_INTELLIGENCE: Final = _dcm("123110", "Artificial Intelligence")
    PROCESSING_EQUIPMENT: Final = _dcm("109102", "Processing Equipment")
    ECG_REPORT: Final = _ln("28010-7", "EKG Report")
    # CID 7050 De-identification Method (PS3.15 Annex E profile and options)
    BASIC_CONFIDENTIALITY_PROFILE: Final = _dcm("113100", "Basic Application Confidentiality Profile")
    CLEAN_STRUCTURED_CONTENT_OPTION: Final = _dcm("113104", "Clean Structured Content Option")
    CLEAN_DESCRIPTORS_OPTION: Final = _dcm("113105", "Clean Descriptors Option")
    RETAIN_LONGITUDINAL_FULL_DATES_OPTION: Final = _dcm(
        "113106", "Retain Longitudinal Temporal Information Full Dates Option"
    )
    # report documents (reports.sr_*, reports.secondary_capture)
    DIAGNOSTIC_IMAGING_REPORT: Final = _ln("18748-4", "Diagnostic Imaging Report")  # TID 2000 title
    REPORT_FINDING: Final = _dcm("121071", "Finding")  # CID 7002 text items
    REPORT_IMPRESSION: Final = _dcm("121073", "Impression")
    REPORT_RECOMMENDATION: Final = _dcm("121075", "Recommendation")
    PROCEDURE_DESCRIPTION: Final = _dcm("121065", "Procedure Description")
    PREVIOUS_FINDING: Final = _dcm("121069", "Previous Finding")
    ECG_GLOBAL_MEASUREMENTS: Final = _dcm("122158", "ECG Global Measurements")  # TID 3713
    ECG_LEAD_MEASUREMENTS: Final = _dcm("122159", "ECG Lead Measurements")  # TID 3714
    QUALITATIVE_ANALYSIS: Final = _dcm("122145", "Qualitative Analysis")  # TID 3717
    SUMMARY: Final = _dcm("121111", "Summary")  # TID 3719
    CLINICAL_INTERPRETATION: Final = _dcm("122147", "Clinical Interpretation")
    LEAD_ID: Final = _dcm("122148", "Lead ID")
    REJECTED_FOR_PATIENT_SAFETY: Final = _dcm("113037", "Rejected for Patient Safety Reasons")  # KOS title


class UCUM:
    """UCUM units."""

    MS: Final = _ucum("ms", "millisecond")
    S: Final = _ucum("s", "second")
    MV: Final = _ucum("mV", "millivolt")
    UV: Final = _ucum("uV", "microvolt")
    MM: Final = _ucum("mm", "millimeter")
    DEG: Final = _ucum("deg", "degree")
    BPM: Final = _ucum("/min", "per minute")
    HZ: Final = _ucum("Hz", "hertz")
    PERCENT: Final = _ucum("%", "percent")
    RATIO: Final = _ucum("1", "no units")
    CM3: Final = _ucum("cm3", "cubic centimeter")
    HU: Final = _ucum("[hnsf'U]", "Hounsfield unit")


class MMDX:
    """Local codes where no standard concept fits (technical quality statements)."""

    ECG_LEAD_OFF: Final = Code("ecg-lead-off", "MMDX", "Lead off or flat line")
    ECG_SATURATION: Final = Code("ecg-saturation", "MMDX", "Signal saturation (clipping)")
    ECG_NOISE: Final = Code("ecg-noise", "MMDX", "Excessive noise or artefact")
    ECG_TECHNICAL: Final = Code("ecg-technical", "MMDX", "Technical problem limits interpretation")
    # the ECG device's (cart's) own measurements and statements, shown beside mmdx's: a report section
    ECG_DEVICE_VALUES: Final = Code("ecg-device-values", "MMDX", "ECG device's own measurements and statements")
    # AHA/ACCF/HRS "wide-QRS tachycardia" (VT or SVT with aberrancy, not told apart): no verified SNOMED CT
    # concept (SCT 991002 "Wide QRS complex" names the QRS, not the rhythm)
    ECG_WIDE_QRS_TACHYCARDIA: Final = Code("ecg-wide-qrs-tachycardia", "MMDX", "Wide QRS tachycardia")
    #: the rate and regularity of a rhythm whose origin the criteria could not name (a statement for every record)
    ECG_RHYTHM_UNDETERMINED: Final = Code("ecg-rhythm-undetermined", "MMDX", "Rhythm of undetermined origin")
    # per-lead ECG amplitudes and fiducials (ecg.signal.measurements): no verified LOINC concept
    ECG_P_AMPLITUDE: Final = Code("ecg-p-ampl", "MMDX", "P wave amplitude (signed extremum vs PR baseline)")
    ECG_Q_AMPLITUDE: Final = Code("ecg-q-ampl", "MMDX", "Q wave amplitude")
    ECG_R_AMPLITUDE: Final = Code("ecg-r-ampl", "MMDX", "R wave amplitude")
    ECG_S_AMPLITUDE: Final = Code("ecg-s-ampl", "MMDX", "S wave amplitude")
    ECG_R_PRIME_AMPLITUDE: Final = Code("ecg-r-prime-ampl", "MMDX", "R' wave amplitude")
    ECG_ST_J: Final = Code("ecg-st-j", "MMDX", "ST level at the J point")
    ECG_ST_J60: Final = Code("ecg-st-j60", "MMDX", "ST level at J + 60 ms")
    ECG_T_AMPLITUDE: Final = Code("ecg-t-ampl", "MMDX", "T wave amplitude (signed extremum vs PR baseline)")
    # chest radiograph labels of the CheXpert set with no single SNOMED CT concept (models.vocabulary)
    ENLARGED_CARDIOMEDIASTINUM: Final = Code("cxr-enlarged-cardiomediastinum", "MMDX", "Enlarged cardiomediastinum")
    LUNG_LESION: Final = Code("cxr-lung-lesion", "MMDX", "Lung lesion")
    LUNG_OPACITY: Final = Code("cxr-lung-opacity", "MMDX", "Lung opacity")
    PLEURAL_OTHER: Final = Code("cxr-pleural-other", "MMDX", "Pleural abnormality, other")
    SUPPORT_DEVICES: Final = Code("cxr-support-devices", "MMDX", "Support devices")
    MODEL_DISAGREEMENT: Final = Code("model-disagreement", "MMDX", "AI models disagree: needs human review")
    # a report section that is a note on the processing (no model configured, a model failed), shown to the
    # reader but never sent as a finding (reports._common.notices)
    PROCESSING_NOTE: Final = Code("processing-note", "MMDX", "Processing note (not a finding)")


class FHIRCODES:
    """FHIR / HL7 terminology codes used by the FHIR bundle (reports.fhir_bundle)."""

    CATEGORY_RADIOLOGY: Final = Code("RAD", "HL7V2-0074", "Radiology")
    CATEGORY_ELECTROCARDIAC: Final = Code("EC", "HL7V2-0074", "Electrocardiac (e.g., EKG, EEC, Holter)")
    OBS_IMAGING: Final = Code("imaging", "OBS-CATEGORY", "Imaging")
    OBS_PROCEDURE: Final = Code("procedure", "OBS-CATEGORY", "Procedure")
    AIAST: Final = Code("AIAST", "V3-OBSVALUE", "Artificial Intelligence asserted")
    AGENT_AUTHOR: Final = Code("author", "PROV-PARTICIPANT", "Author")
    AGENT_VERIFIER: Final = Code("verifier", "PROV-PARTICIPANT", "Verifier")
    AGENT_DEVICE: Final = Code("device", "PROV-PARTICIPANT", "Device")
    OP_CREATE: Final = Code("CREATE", "V3-DATAOPERATION", "create")
    OP_UPDATE: Final = Code("UPDATE", "V3-DATAOPERATION", "revise")
    OP_NULLIFY: Final = Code("NULLIFY", "V3-DATAOPERATION", "nullify")
    MODEL_PROBABILITY: Final = Code("model-probability", "MMDX", "Model output probability")
    DICOMWEB_STUDY: Final = Code("dicomweb-study", "MMDX", "Study on DICOMweb")  # HL7 RP OBX
    PLACER_IDENTIFIER: Final = Code("PLAC", "HL7V2-0203", "Placer Identifier")  # the order, in basedOn
    FILLER_IDENTIFIER: Final = Code("FILL", "HL7V2-0203", "Filler Identifier")


def _mdc(value: str, meaning: str) -> Code:
    return Code(value, "MDC", meaning)


class MDC:
    """ISO/IEEE 11073 MDC ECG global measurements of DICOM CID 3227 (QTc), 3228 (timing), 3229 (axes).

    Codes and meanings as PS3.16 lists them (checked against pydicom's DICOM concept tables).
    TID 3713 codes the global measurements with these; a QTc carries its correction algorithm as a
    concept modifier (CID 3678) instead of a code per formula.  P duration has no LOINC code that
    means it (44974-4 is "Pulse intensity Palpation"), so every output codes it with MDC.
    """

    P_DURATION: Final = _mdc("2:16184", "P duration global")
    PR_INTERVAL: Final = _mdc("2:15872", "PR interval global")
    QRS_DURATION: Final = _mdc("2:16156", "QRS duration global")
    QT_INTERVAL: Final = _mdc("2:16160", "QT interval global")
    RR_INTERVAL: Final = _mdc("2:16168", "RR interval global")
    PP_INTERVAL: Final = _mdc("2:16140", "PP interval global")
    QTC_INTERVAL: Final = _mdc("2:15876", "QTc interval global")
    P_AXIS: Final = _mdc("2:16128", "P Axis")
    QRS_AXIS: Final = _mdc("2:16132", "QRS axis")
    T_AXIS: Final = _mdc("2:16136", "T axis")


class QTC_ALGORITHM:  # noqa: N801 - a code table like the others
    """DICOM CID 3678 QT Correction Algorithm, and the modifier concept that carries it in TID 3713."""

    MEASUREMENT_METHOD: Final = _sct("370129005", "Measurement Method")
    BAZETT: Final = _dcm("122730", "Bazett QT Correction Algorithm")
    HODGES: Final = _dcm("122731", "Hodges QT Correction Algorithm")
    FRIDERICIA: Final = _dcm("122732", "Fridericia QTc Algorithm")
    FRAMINGHAM: Final = _dcm("122733", "Framingham QTc Algorithm")


#: ECG lead codes of DICOM CID 3001 (ISO/IEEE 11073 MDC, partition 2), by standard lead name
ECG_LEAD_CODES: Final[dict[str, Code]] = {
    "I": _mdc("2:1", "Lead I"),
    "II": _mdc("2:2", "Lead II"),
    "V1": _mdc("2:3", "Lead V1"),
    "V2": _mdc("2:4", "Lead V2"),
    "V3": _mdc("2:5", "Lead V3"),
    "V4": _mdc("2:6", "Lead V4"),
    "V5": _mdc("2:7", "Lead V5"),
    "V6": _mdc("2:8", "Lead V6"),
    "III": _mdc("2:61", "Lead III"),
    "aVR": _mdc("2:62", "aVR, augmented voltage, right"),
    "aVL": _mdc("2:63", "aVL, augmented voltage, left"),
    "aVF": _mdc("2:64", "aVF, augmented voltage, foot"),
}
