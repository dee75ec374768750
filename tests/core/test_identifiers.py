from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core._validate import check_uid
from core.errors import RecordError
from core.identifiers import UUID_ROOT, FixedClock, SystemClock, derive_uid, new_uid

ROOTS = ["2.25", "1.2.826.0.1.3680043.10.543", "1.2.840.113619.2.55.3.604688119.969.1268071029"]
parts = st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=5)


@given(st.sampled_from(ROOTS), parts)
def test_derived_uids_are_valid_deterministic_and_rooted(root: str, p: list[str]) -> None:
    uid = derive_uid(root, *p)
    check_uid("t", "uid", uid)
    assert uid == derive_uid(root, *p)
    assert uid.startswith(root + ".")


@given(parts, parts)
def test_different_inputs_give_different_uids(a: list[str], b: list[str]) -> None:
    if a != b:
        assert derive_uid("2.25", *a) != derive_uid("2.25", *b)


def test_order_of_parts_matters() -> None:
    assert derive_uid(UUID_ROOT, "a", "b") != derive_uid(UUID_ROOT, "b", "a")


def test_new_uids_are_unique() -> None:
    assert len({new_uid("1.2.3") for _ in range(200)}) == 200


def test_bad_root_is_rejected() -> None:
    with pytest.raises(RecordError):
        derive_uid("1.02.3", "x")
    with pytest.raises(RecordError, match="fewer than 8 digits"):
        derive_uid("1." + "2" * 58, "x")


def test_clocks() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = FixedClock(t0, step_s=1)
    assert clock.now() == t0 and clock.now() == t0 + timedelta(seconds=1)
    assert SystemClock().now().tzinfo is not None
    with pytest.raises(RecordError):
        FixedClock(datetime(2026, 1, 1))
