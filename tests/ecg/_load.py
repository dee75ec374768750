"""Load the copied sample ECGs into core.EcgRecord for tests (until readers land, then via them)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from core.records import EcgRecord, Patient, Sex

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg"
MITDB_100 = DATA / "wfdb" / "mitdb_100" / "100"
LUDB_1 = DATA / "wfdb" / "ludb_1" / "1"
DICOM_ECG = DATA / "dicom" / "waveform_ecg.dcm"
AECG_SUBJECT1 = DATA / "hl7_aecg" / "subject1_0.xml"


def load_wfdb(path: Path, *, sampto: int | None = None) -> EcgRecord:
    import wfdb

    rec = wfdb.rdrecord(str(path), sampto=sampto)
    age = sex = None
    for c in rec.comments or []:
        m = re.match(r"<age>:\s*(\d+)", c)
        if m:
            age = float(m.group(1))
        m = re.match(r"<sex>:\s*([MF])", c)
        if m:
            sex = Sex(m.group(1))
    patient = Patient(age_years=age, sex=sex or Sex.UNKNOWN)
    return EcgRecord(
        signal=np.asarray(rec.p_signal.T, dtype=np.float32),
        lead_names=tuple(rec.sig_name),
        sampling_rate_hz=float(rec.fs),
        source=str(path),
        patient=patient,
    )


def load_dicom(path: Path = DICOM_ECG) -> EcgRecord:
    import pydicom

    ds = pydicom.dcmread(str(path))
    w = ds.WaveformSequence[0]
    names = [re.sub(r"\s*\(.*\)", "", c.ChannelSourceSequence[0].CodeMeaning) for c in w.ChannelDefinitionSequence]
    sig = ds.waveform_array(0).T / 1000.0  # uV -> mV
    age = ds.get("PatientAge")
    patient = Patient(sex=Sex.from_dicom(ds.get("PatientSex")), age_years=float(age[:3]) if age else None)
    return EcgRecord(
        signal=np.asarray(sig, dtype=np.float32),
        lead_names=tuple(names),
        sampling_rate_hz=float(w.SamplingFrequency),
        source=str(path),
        patient=patient,
    )


def ludb_reference(path: Path = LUDB_1) -> dict[str, np.ndarray]:
    """Per-beat global reference boundaries (samples) from LUDB per-lead marks.

    Global onset = earliest onset over leads, global offset = latest offset over leads
    (the CSE convention), matched per beat by the QRS peak of lead ii.
    """
    import wfdb

    leads = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
    waves: dict[str, list[list[tuple[int, int, int]]]] = {"p": [], "N": [], "t": []}
    for lead in leads:
        a = wfdb.rdann(str(path), lead)
        sym, smp = list(a.symbol), list(a.sample)
        per: dict[str, list[tuple[int, int, int]]] = {"p": [], "N": [], "t": []}
        for i, s in enumerate(sym):
            if s in per and 0 < i < len(sym) - 1 and sym[i - 1] == "(" and sym[i + 1] == ")":
                per[s].append((smp[i - 1], smp[i], smp[i + 1]))
        for k in per:
            waves[k].append(per[k])
    qrs_ii = np.array([p for _, p, _ in waves["N"][1]])
    out: dict[str, list[float]] = {k: [] for k in ("p_on", "p_off", "qrs_on", "qrs_off", "t_off", "r")}
    for r in qrs_ii:

        def pick(kind: str, lo: int, hi: int) -> list[tuple[int, int, int]]:
            return [w for lead in waves[kind] for w in lead if lo <= w[1] <= hi]

        q = pick("N", r - 60, r + 60)
        p = pick("p", r - 200, r - 20)
        t = pick("t", r + 50, r + 400)
        if not q or not p or not t:
            continue
        out["r"].append(r)
        out["qrs_on"].append(min(w[0] for w in q))
        out["qrs_off"].append(max(w[2] for w in q))
        out["p_on"].append(min(w[0] for w in p))
        out["p_off"].append(max(w[2] for w in p))
        out["t_off"].append(max(w[2] for w in t))
    return {k: np.asarray(v) for k, v in out.items()}
