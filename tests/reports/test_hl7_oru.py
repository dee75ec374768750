"""ORU^R01: validated by hl7apy against the v2.5.1 structure, values read back, escaping and MLLP properties."""

from __future__ import annotations

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import given
from hypothesis import strategies as st

from core.codes import LOINC, SCT
from core.errors import ReportError
from core.records import Priority, PriorityLevel, ReportSection
from reports.hl7_oru import build_oru, escape, mllp_frame, mllp_unframe
from reports.signoff import amend, sign, withdraw
from tests.reports import helpers as h


def _strict(message: str):
    msg = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.validate() is True
    return msg


def _versions(kind: str):
    draft = h.chest_report() if kind == "chest" else h.ecg_report()
    final = sign(draft, h.RADIOLOGIST, h.SIGNED)
    amended = amend(final, h.RADIOLOGIST, h.AMENDED, findings=final.findings[:1])
    withdrawn = withdraw(amended, h.RADIOLOGIST, h.AMENDED, "wrong patient")
    return draft, final, amended, withdrawn


@pytest.mark.parametrize("kind", ["chest", "ecg"])
def test_every_version_is_a_valid_oru_r01_with_mapped_status(kind: str) -> None:
    study = h.chest_study() if kind == "chest" else h.ecg_study()
    for report, expected in zip(_versions(kind), "PFCW", strict=True):
        text = build_oru(report, study, h.context())
        msg = _strict(text)
        assert msg.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
        assert msg.msh.msh_12.to_er7() == "2.5.1"
        obr = msg.oru_r01_patient_result.oru_r01_order_observation.obr
        assert obr.obr_25.to_er7() == expected
        parsed = hl7.parse(text)
        assert {str(seg[11]) for seg in parsed.segments("OBX")} == {expected}


def test_values_read_back() -> None:
    text = build_oru(h.ecg_report(), h.ecg_study(), h.context())
    m = hl7.parse(text)
    assert str(m.segment("PID")[3][0][0]) == "MRN-123456"
    assert str(m.segment("PID")[5]) == "Doe^Jane"
    assert str(m.segment("TQ1")[9]) == "R"
    assert str(m.segment("OBR")[4][0][0]) == LOINC.EKG_STUDY.value
    nm = {str(s[3][0][0]): (str(s[5]), str(s[6][0][0])) for s in m.segments("OBX") if str(s[2]) == "NM"}
    assert nm["8625-6"] == ("212", "ms") and nm["8867-4"] == ("72", "/min")
    cwe = {str(s[3][0][0]): str(s[5][0][0]) for s in m.segments("OBX") if str(s[2]) == "CWE"}
    assert cwe[SCT.SINUS_RHYTHM.value] == SCT.PRESENT.value and cwe[SCT.LVH.value] == SCT.UNCERTAIN.value
    rp = [s for s in m.segments("OBX") if str(s[2]) == "RP"]
    assert rp and h.ECG_STUDY_UID in str(rp[0][5])


def test_priority_and_signer() -> None:
    r = h.chest_report(priority=Priority(PriorityLevel.STAT, "tension pneumothorax"))
    assert str(hl7.parse(build_oru(r, h.chest_study(), h.context())).segment("TQ1")[9]) == "S"
    signed = sign(h.chest_report(), h.RADIOLOGIST, h.SIGNED)
    m = hl7.parse(build_oru(signed, h.chest_study(), h.context()))
    assert str(m.segment("TQ1")[9]) == "A"
    assert "RAD-0042" in str(m.segment("OBR")[32])
    assert "Müller" in str(m.segments("OBX")[0][16])


def test_draft_never_says_final() -> None:
    text = build_oru(h.chest_report(), h.chest_study(), h.context())
    assert "PRELIMINARY" in text and "FINAL" not in text
    assert "Machine-generated content (densenet121-cxr14 2.1.0 (AI model)), not verified by a clinician." in text
    assert all(str(s[11]) == "P" for s in hl7.parse(text).segments("OBX"))


def test_report_text_with_delimiters_cannot_break_the_structure() -> None:
    nasty = "A|B^C&D~E\\F\nsecond line | with pipes"
    r = h.chest_report(sections=(ReportSection(LOINC.FINDINGS, nasty),))
    text = build_oru(r, h.chest_study(patient_name="O'Brien^Seán"), h.context())
    msg = _strict(text)
    obx = [s for s in hl7.parse(text).segments("OBX") if str(s[2]) == "TX"]
    assert [h.unescape(str(s[5])) for s in obx] == ["A|B^C&D~E\\F", "second line | with pipes"]
    assert msg.msh.msh_18.to_er7() == "UNICODE UTF-8"


def test_study_without_patient_id_still_has_pid3() -> None:
    text = build_oru(h.chest_report(), h.chest_study(with_patient_id=False), h.context())
    _strict(text)
    pid3 = hl7.parse(text).segment("PID")[3]
    assert str(pid3[0][0]).startswith("S") and len(str(pid3[0][0])) <= 15


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_escape_round_trips(text: str) -> None:
    esc = escape(text)
    assert not any(c in esc for c in "|^&~")
    clean = "".join(c if c >= " " or c == "\t" else " " for c in text)
    assert h.unescape(esc) == clean


@given(st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")), max_size=5))
def test_mllp_frames_round_trip(messages: list[bytes]) -> None:
    stream = b"".join(mllp_frame(m) for m in messages)
    assert mllp_unframe(stream) == messages


def test_mllp_rejects_broken_streams() -> None:
    with pytest.raises(ReportError, match="0x0B"):
        mllp_unframe(b"MSH|...")
    with pytest.raises(ReportError, match="terminator"):
        mllp_unframe(b"\x0bMSH|...")
    with pytest.raises(ReportError, match="framing byte"):
        mllp_frame(b"a\x1cb")
    framed = mllp_frame(build_oru(h.chest_report(), h.chest_study(), h.context()).encode())
    assert framed[:1] == b"\x0b" and framed[-2:] == b"\x1c\x0d"


def test_hl7apy_strict_validation_is_really_checking() -> None:
    from hl7apy.exceptions import ValidationError

    text = build_oru(h.chest_report(), h.chest_study(), h.context())
    broken = "\r".join(s for s in text.split("\r") if not s.startswith("OBR"))
    with pytest.raises(ValidationError, match="OBR"):
        _strict(broken)
