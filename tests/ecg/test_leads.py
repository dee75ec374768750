"""Lead derivation (Einthoven/Goldberger) and ordering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.errors import EcgError
from core.records import STANDARD_LEADS, EcgRecord
from ecg.leads import complete_leads, complete_record, derive_limb_leads, standard_order

EIGHT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def test_derived_values_match_the_laws_on_hand_values() -> None:
    sig = np.array([[1.0, 0.2], [3.0, -0.4]], dtype=np.float32)  # I, II
    out, names = derive_limb_leads(sig, ["I", "II"])
    assert names == ("I", "II", "III", "aVR", "aVL", "aVF")
    np.testing.assert_allclose(out[2], [2.0, -0.6], atol=1e-6)  # III = II - I
    np.testing.assert_allclose(out[3], [-2.0, 0.1], atol=1e-6)  # aVR = -(I+II)/2
    np.testing.assert_allclose(out[4], [-0.5, 0.4], atol=1e-6)  # aVL = I - II/2
    np.testing.assert_allclose(out[5], [2.5, -0.5], atol=1e-6)  # aVF = II - I/2


finite = st.floats(min_value=-20, max_value=20, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.just(8), st.integers(2, 200)), elements=finite))
def test_eight_leads_become_twelve_in_standard_order(sig: np.ndarray) -> None:
    out, names = complete_leads(sig, EIGHT)
    assert names == STANDARD_LEADS
    assert out.dtype == np.float32 and out.shape == (12, sig.shape[1])
    lead = dict(zip(names, out, strict=True))
    # stored leads unchanged, exactly
    for i, n in enumerate(EIGHT):
        np.testing.assert_array_equal(lead[n], sig[i])
    tol = 1e-4 * (1 + np.abs(sig[:2]).max())
    np.testing.assert_allclose(lead["I"] + lead["III"], lead["II"], atol=tol)  # Einthoven
    np.testing.assert_allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0, atol=tol)  # Goldberger
    np.testing.assert_allclose(lead["aVF"], (lead["II"] + lead["III"]) / 2, atol=tol)


def test_stored_limb_leads_are_not_replaced() -> None:
    sig = np.arange(12, dtype=np.float32).reshape(3, 4)
    out, names = derive_limb_leads(sig, ["I", "II", "III"])
    assert names == ("I", "II", "III", "aVR", "aVL", "aVF")
    np.testing.assert_array_equal(out[2], sig[2])  # the cart's III, not II - I


def test_without_lead_i_and_ii_nothing_is_derived_and_order_is_kept() -> None:
    sig = np.ones((2, 10), dtype=np.float32)
    out, names = complete_leads(sig, ["MLII", "V5"])
    assert names == ("MLII", "V5")
    assert out.shape == (2, 10)


def test_twelve_plus_frank_leads_put_standard_first() -> None:
    names_in = ["X", "V1", "aVR", "I", "II", "III", "aVL", "aVF", "V2", "V3", "V4", "V5", "V6", "Y"]
    sig = np.arange(len(names_in), dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    out, names = standard_order(sig, names_in)
    assert names == (*STANDARD_LEADS, "X", "Y")
    assert out[names.index("X"), 0] == 0 and out[names.index("Y"), 0] == 13
    assert out[names.index("I"), 0] == names_in.index("I")


def test_mismatched_names_raise_ecg_error() -> None:
    with pytest.raises(EcgError, match="3 rows"):
        derive_limb_leads(np.zeros((2, 5)), ["I", "II", "V1"])


def test_complete_record_keeps_metadata() -> None:
    rec = EcgRecord(np.zeros((8, 20), dtype=np.float32), EIGHT, 500.0, source="x")
    full = complete_record(rec)
    assert full.has_standard_12_leads and full.lead_names == STANDARD_LEADS
    assert full.sampling_rate_hz == 500.0 and full.source == "x"
    assert complete_record(full) is full
