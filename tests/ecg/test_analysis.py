"""The analysis façade and ``mmdx ecg analyze --json``: contract, bad input, never a made-up value."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from app.commands import ecg as ecg_cmd
from core.codes import LOINC, MMDX, SCT, Code
from core.records import EcgRecord, PriorityLevel, ProducerKind
from ecg.analysis import EcgAnalysis, analyze, analyze_batch, to_json
from ecg.readers import read_ecg
from tests.ecg._load import DICOM_ECG, LUDB_1, MITDB_100
from tests.ecg._synth import LEADS_12, synth_ecg


def _cli() -> typer.Typer:
    cli = typer.Typer()

    @cli.callback()
    def _root() -> None:
        """mmdx"""

    ecg_cmd.register(cli)
    return cli


def _codes(a: EcgAnalysis) -> set[Code | None]:
    return {s.concept for s in a.statements}


def test_dicom_sample_full_analysis() -> None:
    a = analyze(read_ecg(DICOM_ECG))
    assert a.producer.kind is ProducerKind.RULE_ENGINE and re.fullmatch(r"[0-9a-f]{64}", a.producer.digest or "")
    assert SCT.SINUS_RHYTHM in _codes(a)
    assert a.priority.level is PriorityLevel.ROUTINE
    for code in (LOINC.HEART_RATE, LOINC.PR_INTERVAL, LOINC.QRS_DURATION, LOINC.QT_INTERVAL, LOINC.QTC_BAZETT):
        assert a.measurement(code) is not None, code
    assert {d.code.value for d in a.device_comparison} >= {"8625-6", "8633-0", "8634-8"}
    assert len(a.beats) == 10 and {b.label for b in a.beats} == {"N"}
    assert a.excluded_leads == ()
    assert dict(a.fiducials_ms)["qrs_on"] == 0.0


def test_cli_json_contract(tmp_path: Path) -> None:
    res = CliRunner().invoke(_cli(), ["ecg", "analyze", str(LUDB_1), str(DICOM_ECG), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [d["record"] for d in lines] == [str(LUDB_1), str(DICOM_ECG)]  # WFDB: path without extension
    ludb, dcm = lines
    assert ludb["fs"] == 500.0 and dcm["fs"] == 1000.0
    assert all(set(b) >= {"sample", "label"} and b["label"] in "NSVQ" for b in dcm["beats"])
    assert dcm["fiducials"]["qrs_on"] == 0.0
    assert set(dcm["fiducials"]) == {"p_on", "p_off", "qrs_on", "qrs_off", "t_off"}
    first = dcm["beats"][1]
    assert (
        first["p_on"] < first["qrs_on"] < first["sample"] < first["qrs_off"] < first["t_off"]
    )  # per-beat, file samples
    names = {m["code"]: m for m in dcm["measurements"] if "lead" not in m}
    assert names["8867-4"]["unit"] == "/min" and names["8633-0"]["unit"] == "ms"
    assert all({"name", "value", "unit", "code"} <= set(m) for m in dcm["measurements"])
    assert any(s["code"] == SCT.SINUS_RHYTHM.value and s["criteria"] for s in dcm["statements"])
    assert set(dcm["quality"]) == set(LEADS_12)


def test_cli_reports_unreadable_files_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "empty.hea").write_text("empty 1 500 0\nempty.dat 16 200 16 0 0 0 0 II\n")
    (tmp_path / "empty.dat").write_bytes(b"")
    bad = tmp_path / "bad.xml"
    bad.write_text("<foo xmlns='urn:wrong'/>")
    res = CliRunner().invoke(_cli(), ["ecg", "analyze", str(tmp_path / "empty"), str(bad), "--json"])
    assert res.exit_code == 1
    out = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(out) == 2 and all("error" in d and "beats" not in d for d in out)


def _rec(x: np.ndarray, fs: float = 500.0, leads: tuple[str, ...] = LEADS_12) -> EcgRecord:
    return EcgRecord(np.asarray(x, dtype=np.float32), leads[: x.shape[0]], fs, "synthetic")


def _insufficient(a: EcgAnalysis) -> bool:
    return a.measurements == () and any(s.concept == MMDX.ECG_TECHNICAL for s in a.statements)


def test_two_second_record_is_insufficient_not_measured() -> None:
    x, _ = synth_ecg(np.random.default_rng(1), duration_s=2.0)
    a = analyze(_rec(x))
    assert _insufficient(a) and a.beats == ()


def test_low_sampling_rate_is_insufficient() -> None:
    x, _ = synth_ecg(np.random.default_rng(1), fs=500.0)
    assert _insufficient(analyze(_rec(x[:, ::10], fs=50.0)))


def test_all_zero_record_is_insufficient_with_lead_statements() -> None:
    a = analyze(_rec(np.zeros((12, 5000))))
    assert _insufficient(a)
    assert sum(s.concept == MMDX.ECG_LEAD_OFF for s in a.statements) == 12
    assert len(a.excluded_leads) == 12


def test_bad_leads_are_excluded_and_reported_and_12_lead_statements_withheld() -> None:
    x, _ = synth_ecg(np.random.default_rng(2), hr_bpm=70)
    x[7] = np.nan  # V2 missing
    x[9] = np.clip(x[9], -0.05, 0.05)  # V4 clipped
    a = analyze(_rec(x))
    assert dict(a.excluded_leads) == {"V2": "missing samples", "V4": "saturated or clipped"}
    assert SCT.SINUS_RHYTHM in _codes(a)  # rhythm statements still made
    assert any("withheld" in s.text for s in a.statements)
    assert not any(m.site in ("V2", "V4") for m in a.measurements)


def test_mitdb_100_holter_length_two_leads() -> None:
    a = analyze(read_ecg(MITDB_100))
    assert len(a.beats) > 2200
    assert SCT.SINUS_RHYTHM in _codes(a) and SCT.PREMATURE_ATRIAL_COMPLEX in _codes(a)
    assert not ({SCT.LVH, SCT.LOW_QRS_VOLTAGE, SCT.STEMI} & _codes(a))  # 12-lead statements need 12 leads
    assert json.dumps(to_json(a), allow_nan=False)


def test_batch_equals_single() -> None:
    """The batch path (more cases in test_batch.py) gives each record exactly what analyze gives it."""
    recs = [_rec(synth_ecg(np.random.default_rng(s), hr_bpm=60 + 10 * s)[0]) for s in range(3)]
    batch = analyze_batch(recs)
    assert all(isinstance(b, EcgAnalysis) for b in batch)
    assert [to_json(b) for b in batch if isinstance(b, EcgAnalysis)] == [to_json(analyze(r)) for r in recs]


BOUNDS = {
    LOINC.HEART_RATE: (15, 350),
    LOINC.PR_INTERVAL: (50, 500),
    LOINC.QRS_DURATION: (30, 250),
    LOINC.QT_INTERVAL: (150, 750),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["ecg", "noise", "ecg+nan", "ecg+spikes", "flat+ecg"]),
    seconds=st.floats(1.0, 12.0),
    n_leads=st.integers(1, 12),
    scale=st.floats(0.01, 20.0),
)
def test_never_crashes_and_never_returns_unphysiological_values(
    seed: int, kind: str, seconds: float, n_leads: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    x, _ = synth_ecg(rng, duration_s=max(seconds, 1.0), n_leads=n_leads, hr_bpm=float(rng.uniform(35, 180)),
                     qt_ms=300.0, pr_ms=140.0, scale=scale)  # fmt: skip
    if kind == "noise":
        x = scale * rng.standard_normal(x.shape)
    elif kind == "ecg+nan":
        x[:, rng.integers(0, x.shape[1], x.shape[1] // 5)] = np.nan
    elif kind == "ecg+spikes":
        x[:, rng.integers(0, x.shape[1], 20)] += 10 * scale
    elif kind == "flat+ecg":
        x[: max(1, n_leads // 2)] = 0.0
    a = analyze(_rec(x))
    assert json.dumps(to_json(a), allow_nan=False)
    for m in a.measurements:
        if m.code in BOUNDS and m.site is None:
            lo, hi = BOUNDS[m.code]
            assert lo <= m.value <= hi, (m.code.meaning, m.value)
    if a.measurements:
        assert len(a.beats) >= 2
    if kind == "noise":
        assert _insufficient(a)  # noise never yields beats and intervals


def test_patient_demographics_completed_from_the_file() -> None:
    """A study patient without sex/age still gets the file's, so sex-specific thresholds apply."""
    from core.records import Patient, Sex
    from ecg.analysis import _merge_patient

    from_file = Patient(sex=Sex.MALE, age_years=50)
    merged = _merge_patient(Patient(), from_file)
    assert merged.sex is Sex.MALE and merged.age_years == 50
    given = _merge_patient(Patient(sex=Sex.FEMALE), from_file)
    assert given.sex is Sex.FEMALE and given.age_years == 50  # the caller's known values win
    assert _merge_patient(None, from_file) is from_file


def test_unphysiological_values_are_withheld_and_flagged() -> None:
    from dataclasses import replace

    from ecg.analysis import _plausible
    from ecg.signal.measurements import GlobalMeasurements

    g = GlobalMeasurements(72.0, 833.0, 160.0, 100.0, 90.0, 380.0, 416.0, 404.0, 406.0, 401.0, 55.0, 45.0, 40.0)
    same, flags = _plausible(g)
    assert same == g and flags == []
    long_qt, flags = _plausible(replace(g, qt_ms=900.0))
    assert long_qt is not None and long_qt.qt_ms is None and long_qt.qtc_bazett_ms is None
    assert len(flags) == 1 and flags[0].concept == MMDX.ECG_TECHNICAL and "900" in flags[0].text
    narrow, flags = _plausible(replace(g, qrs_ms=28.0))
    assert narrow is None and "QRS 28" in flags[0].text
