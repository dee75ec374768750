"""The code table: one place, every code with a display text, no accidental duplicates."""

from __future__ import annotations

import re

from core import codes
from core.codes import DCM, LOINC, SCT, UCUM, Code

LOINC_RE = re.compile(r"^\d{1,7}-\d$")


def _codes(ns: type) -> dict[str, Code]:
    return {k: v for k, v in vars(ns).items() if isinstance(v, Code)}


def _loinc_check_digit_ok(code: str) -> bool:
    """LOINC Mod-10 check digit."""
    body, check = code.split("-")
    digits = [int(d) for d in body][::-1]
    total = 0
    for i, d in enumerate(digits):
        if i % 2 == 0:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return (10 - total % 10) % 10 == int(check)


def test_loinc_codes_are_well_formed_with_valid_check_digit() -> None:
    for name, code in _codes(LOINC).items():
        assert code.scheme == "LN", name
        assert LOINC_RE.match(code.value), name
        assert _loinc_check_digit_ok(code.value), f"{name} {code.value} has a wrong check digit"


def test_snomed_codes_are_numeric_with_valid_verhoeff() -> None:
    # SNOMED CT identifiers end with a Verhoeff check digit
    d = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
         [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
         [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
         [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]  # fmt: skip
    p = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
         [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
         [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]  # fmt: skip
    for name, code in _codes(SCT).items():
        assert code.value.isdigit(), name
        c = 0
        for i, ch in enumerate(reversed(code.value)):
            c = d[c][p[i % 8][int(ch)]]
        assert c == 0, f"{name} {code.value} fails the SNOMED CT Verhoeff check"


def test_every_code_has_display_text_and_units_are_ucum() -> None:
    for ns in (LOINC, SCT, DCM, UCUM):
        for name, code in _codes(ns).items():
            assert code.meaning.strip(), name
    assert all(c.scheme == "UCUM" for c in _codes(UCUM).values())


#: Codes whose display text legitimately differs by context: DICOM CID 7000 names LOINC 18748-4
#: "Diagnostic Imaging Report" as an SR document title, LOINC itself "Diagnostic imaging study".
CONTEXT_DISPLAYS = {("LN", "18748-4")}


def test_no_two_constants_share_a_code_with_different_meanings() -> None:
    seen: dict[tuple[str, str], str] = {}
    for ns in (LOINC, SCT, DCM, UCUM, codes.MMDX):
        for code in _codes(ns).values():
            key = (code.scheme, code.value)
            if key not in CONTEXT_DISPLAYS:
                assert seen.setdefault(key, code.meaning) == code.meaning, key
    assert codes.SYSTEM_URIS["SCT"] == "http://snomed.info/sct"
