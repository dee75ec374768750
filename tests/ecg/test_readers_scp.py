"""SCP-ECG reader on synthetic files (the available real samples are GPL and are not copied).

The reader was also checked by hand against the GPL sample Example.scp, which holds the same
ECG as the HL7 aECG example: all 12 leads decoded identical to the aECG digits.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.codes import LOINC
from core.errors import EcgError
from core.records import STANDARD_LEADS, Sex
from ecg.readers import EcgFormat, detect_format, read_ecg
from ecg.readers._common import measurement_of
from ecg.readers.scp_ecg import crc_ccitt, decode_default_huffman, undo_differences
from tests.ecg.synth_formats import huffman_default_encode, write_scp

EIGHT = (1, 2, 3, 4, 5, 6, 7, 8)  # I, II, V1-V6
NAMES = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-32768, 32767), max_size=300))
def test_default_huffman_round_trip(values: list[int]) -> None:
    assert decode_default_huffman(huffman_default_encode(values), len(values)).tolist() == values


def test_default_huffman_codes_by_hand() -> None:
    # "0" 0 | "100" +1 | "101" -1 | "1111111101" -8 | "1111111110"+8 bits 100
    bits = "0" + "100" + "101" + "1111111101" + "1111111110" + format(100, "08b")
    bits += "0" * (-len(bits) % 8)
    stream = int(bits, 2).to_bytes(len(bits) // 8, "big")
    assert decode_default_huffman(stream, 5).tolist() == [0, 1, -1, -8, 100]
    with pytest.raises(ValueError, match="ends"):
        decode_default_huffman(stream, 11)  # 5 padding zeros decode as 0s, then the stream ends


@pytest.mark.parametrize("order", [0, 1, 2])
def test_differences_invert(order: int) -> None:
    x = np.array([5, -3, 10, 10, 7, -20, 0], dtype=np.int64)
    d = x.copy()
    if order == 1:
        d[1:] = np.diff(x)
    if order == 2:
        d[2:] = x[2:] - 2 * x[1:-1] + x[:-2]
    np.testing.assert_array_equal(undo_differences(d, order), x)


@settings(max_examples=20, deadline=None)
@given(
    counts=arrays(np.int16, st.tuples(st.just(8), st.integers(2, 400)), elements=st.integers(-8000, 8000)),
    huffman=st.booleans(),
    difference=st.sampled_from([0, 1, 2]),
    avm=st.sampled_from([1000, 2500, 4880, 5000]),
)
def test_round_trip_exact_within_the_amplitude_step(
    counts: np.ndarray, huffman: bool, difference: int, avm: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_scp(
            Path(tmp) / "r.scp",
            dict(zip(EIGHT, counts, strict=True)),
            avm_nv=avm,
            huffman=huffman,
            difference=difference,
        )
        rec = read_ecg(path)
    assert rec.lead_names == STANDARD_LEADS and rec.sampling_rate_hz == 500.0
    for i, name in enumerate(NAMES):
        np.testing.assert_allclose(rec.lead(name), counts[i].astype(np.float64) * avm / 1e6, rtol=1e-6, atol=1e-7)


def test_metadata_measurements_and_statements(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    leads = {i: rng.integers(-500, 500, 1000).astype(np.int16) for i in (*EIGHT, 61, 62, 63, 64)}
    path = write_scp(
        tmp_path / "m.bin",
        leads,
        interval_us=1000,
        age_years=70,
        sex=2,
        acquired=(2024, 5, 6, 7, 8, 9),
        boundaries_ms=(100, 200, 250, 340, 650),
        axes=(50, -30, 40),
        statements=["Sinus rhythm", "Left axis deviation"],
    )
    assert detect_format(path) is EcgFormat.SCP_ECG
    rec = read_ecg(path)
    assert rec.lead_names == STANDARD_LEADS and rec.sampling_rate_hz == 1000.0
    np.testing.assert_allclose(rec.lead("aVF"), leads[64] * 0.005, atol=1e-6)  # stored, not derived
    assert rec.patient.sex is Sex.FEMALE and rec.patient.age_years == 70
    assert rec.acquired_at is not None and rec.acquired_at.isoformat() == "2024-05-06T07:08:09"
    assert measurement_of(rec, LOINC.PR_INTERVAL) == 150
    assert measurement_of(rec, LOINC.QRS_DURATION) == 90
    assert measurement_of(rec, LOINC.QT_INTERVAL) == 400
    assert measurement_of(rec, LOINC.QRS_AXIS) == -30
    assert rec.device_statements == ("Sinus rhythm", "Left axis deviation")


def _leads() -> dict[int, np.ndarray]:
    return {i: np.arange(50, dtype=np.int16) for i in EIGHT}


def test_reference_beat_subtraction_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EcgError, match="reference beat subtraction"):
        read_ecg(write_scp(tmp_path / "a.scp", _leads(), reference_beat_subtraction=True))


def test_bimodal_compression_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EcgError, match="bimodal"):
        read_ecg(write_scp(tmp_path / "b.scp", _leads(), bimodal=True))


def _refresh_file_crc(data: bytearray) -> bytes:
    data[0:2] = struct.pack("<H", crc_ccitt(bytes(data[2:])))
    return bytes(data)


def test_corrupt_section_fails_naming_it(tmp_path: Path) -> None:
    path = write_scp(tmp_path / "c.scp", _leads())
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55  # inside section 6, the last one; the file CRC is made valid again
    path.write_bytes(_refresh_file_crc(data))
    with pytest.raises(EcgError, match="section 6 CRC mismatch"):
        read_ecg(path)


def test_truncated_file_is_not_scp(tmp_path: Path) -> None:
    path = write_scp(tmp_path / "t.scp", _leads())
    path.write_bytes(path.read_bytes()[:-10])
    assert detect_format(path) is None
    with pytest.raises(EcgError, match="not a recognised ECG file"):
        read_ecg(path)
