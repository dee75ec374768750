"""Batch analysis: many records in one call give exactly what ``analyze`` gives each, in order.

The batch path stacks records of one rate, length and lead count and filters
them together; these tests mix rates, lengths, lead sets, mains frequencies,
pacing, unusable and corrupted records so that every branch of the grouping
(and every way out of it) is compared with the single-record path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from app.commands import ecg as ecg_cmd
from core.codes import MMDX
from core.errors import EcgError
from core.records import EcgRecord, Patient, Sex
from ecg.analysis import EcgAnalysis, analyze, analyze_batch, to_json
from ecg.readers import read_ecg
from tests.ecg._load import DICOM_ECG, LUDB_1
from tests.ecg._synth import LEADS_12, synth_ecg


def _rec(x: np.ndarray, fs: float = 500.0, leads: tuple[str, ...] | None = None, name: str = "synth") -> EcgRecord:
    names = leads or (LEADS_12[: x.shape[0]] if x.shape[0] <= 12 else tuple(f"L{i}" for i in range(x.shape[0])))
    return EcgRecord(signal=x.astype(np.float32), lead_names=names, sampling_rate_hz=fs, source=name)


def _noisy(rec: EcgRecord, rng: np.random.Generator, name: str) -> EcgRecord:
    x = np.asarray(rec.signal, dtype=np.float64) + rng.normal(0.0, 0.02, rec.signal.shape)
    return EcgRecord(
        signal=x.astype(np.float32),
        lead_names=rec.lead_names,
        sampling_rate_hz=rec.sampling_rate_hz,
        source=name,
        patient=rec.patient,
        device_measurements=rec.device_measurements,
    )


def _insufficient(a: EcgAnalysis) -> bool:
    return any(s.concept == MMDX.ECG_TECHNICAL and "insufficient" in s.text for s in a.statements)


def _mixed_batch() -> list[EcgRecord]:
    rng = np.random.default_rng(11)
    ludb, dcm = read_ecg(LUDB_1), read_ecg(DICOM_ECG)
    paced, _ = synth_ecg(rng, fs=1000.0, n_leads=3, hr_bpm=70)
    paced_x = paced.copy()
    for s in range(300, paced.shape[1], 850):
        paced_x[:, s] += 5.0  # 1 ms, 5 mV pacing artefacts
    mains50, _ = synth_ecg(rng, hr_bpm=80, powerline_hz=50.0, powerline_mv=0.1)
    mains60, _ = synth_ecg(rng, hr_bpm=95, powerline_hz=60.0, powerline_mv=0.1)
    clean, _ = synth_ecg(rng, hr_bpm=55)
    holter, _ = synth_ecg(rng, fs=360.0, duration_s=30.0, n_leads=2, hr_bpm=72)
    return [
        ludb,
        _rec(mains50, name="mains50"),
        dcm,  # 1000 Hz, with the device's own measurements
        _noisy(ludb, rng, "ludb+noise"),
        _rec(np.zeros((12, 5000)), name="flat"),  # same shape as the 500 Hz synthetics: insufficient inside a group
        _rec(paced_x, fs=1000.0, name="paced"),
        _rec(rng.normal(0, 0.5, (12, 1000)), name="two-seconds"),  # too short: insufficient before grouping
        _rec(mains60, name="mains60"),
        _noisy(dcm, rng, "dicom+noise"),
        _rec(holter, fs=360.0, leads=("MLII", "V5"), name="two-lead"),
        _rec(clean, name="clean"),
    ]


def test_mixed_batch_equals_analyze_record_by_record() -> None:
    recs = _mixed_batch()
    batch = analyze_batch(recs, group_size=3)  # 500 Hz 12-lead records span two groups
    single = [analyze(r) for r in recs]
    assert len(batch) == len(recs)
    for r, b, s in zip(recs, batch, single, strict=True):
        assert isinstance(b, EcgAnalysis), r.source
        assert b.source == r.source
        assert to_json(b) == to_json(s), r.source
    by = {r.source: b for r, b in zip(recs, batch, strict=True) if isinstance(b, EcgAnalysis)}
    assert _insufficient(by["flat"]) and _insufficient(by["two-seconds"])
    assert not _insufficient(by[str(LUDB_1)]) and len(by[str(LUDB_1)].beats) > 5
    assert by[str(DICOM_ECG)].device_comparison  # kept and compared in the batch path too
    assert by["mains50"].conditioning and by["mains50"].conditioning.powerline_hz == 50.0
    assert by["mains60"].conditioning and by["mains60"].conditioning.powerline_hz == 60.0
    assert by["clean"].conditioning and by["clean"].conditioning.powerline_hz is None
    assert by["paced"].conditioning and by["paced"].conditioning.pacing_spikes > 5


def test_a_failing_record_does_not_take_down_the_batch() -> None:
    rng = np.random.default_rng(3)
    good = [_rec(synth_ecg(rng, hr_bpm=70)[0], name=f"good{i}") for i in range(3)]
    corrupt = _rec(synth_ecg(rng, hr_bpm=70)[0], name="corrupt")
    object.__setattr__(corrupt, "signal", np.asarray(corrupt.signal[0]))  # samples lost after validation
    with pytest.raises(IndexError):
        analyze(corrupt)  # the single-record path raises ...
    out = analyze_batch([good[0], corrupt, good[1], good[2]])
    assert isinstance(out[1], EcgError) and "corrupt" in str(out[1])  # ... the batch says why, in its place
    for r, b in zip(good, (out[0], out[2], out[3]), strict=True):
        assert isinstance(b, EcgAnalysis) and to_json(b) == to_json(analyze(r))


def test_patients_apply_per_record() -> None:
    rng = np.random.default_rng(4)
    recs = [_rec(synth_ecg(rng, hr_bpm=60 + 15 * i)[0], name=f"r{i}") for i in range(3)]
    pats = [Patient(sex=Sex.FEMALE, age_years=30.0), None, Patient(sex=Sex.MALE, age_years=70.0)]
    out = analyze_batch(recs, patients=pats)
    for r, p, b in zip(recs, pats, out, strict=True):
        assert isinstance(b, EcgAnalysis) and to_json(b) == to_json(analyze(r, patient=p))
    with pytest.raises(EcgError, match="2 patients given for 3 records"):
        analyze_batch(recs, patients=pats[:2])


def test_worker_processes_give_the_same_results_in_order() -> None:
    rng = np.random.default_rng(8)
    recs = [_rec(synth_ecg(rng, hr_bpm=50 + 12 * i, n_leads=3)[0], name=f"w{i}") for i in range(5)]
    out = analyze_batch(recs, workers=2, group_size=2)
    assert [to_json(b) for b in out if isinstance(b, EcgAnalysis)] == [to_json(analyze(r)) for r in recs]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    shapes=st.lists(
        st.tuples(st.sampled_from([250.0, 500.0, 1000.0]), st.sampled_from([3.0, 10.0]), st.sampled_from([2, 12])),
        min_size=2,
        max_size=5,
    ),
)
def test_any_batch_equals_single_analysis(seed: int, shapes: list[tuple[float, float, int]]) -> None:
    rng = np.random.default_rng(seed)
    recs = []
    for k, (fs, dur, n) in enumerate(shapes * 2):  # every shape twice, so that groups really stack
        x, _ = synth_ecg(rng, fs=fs, duration_s=dur, n_leads=n, hr_bpm=float(rng.uniform(40, 150)), qt_ms=320.0)
        recs.append(_rec(x, fs=fs, name=f"h{k}"))
    out = analyze_batch(recs, group_size=int(rng.integers(1, 4)))
    assert [to_json(b) for b in out if isinstance(b, EcgAnalysis)] == [to_json(analyze(r)) for r in recs]


def _cli() -> typer.Typer:
    cli = typer.Typer()

    @cli.callback()
    def _root() -> None:
        """mmdx"""

    ecg_cmd.register(cli)
    return cli


def test_cli_several_paths_one_line_each_in_order(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<AnnotatedECG xmlns='urn:wrong'/>")
    paths = [LUDB_1, bad, DICOM_ECG, LUDB_1]
    res = CliRunner().invoke(_cli(), ["ecg", "analyze", *map(str, paths), "--json"])
    assert res.exit_code == 1  # one file failed
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [line["record"] for line in lines] == [str(LUDB_1), str(bad), str(DICOM_ECG), str(LUDB_1)]
    assert "error" in lines[1] and "error" not in lines[0]
    for p, line in zip(paths, lines, strict=True):
        if p != bad:
            assert line == json.loads(json.dumps(to_json(analyze(read_ecg(p)))))
