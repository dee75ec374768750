"""The ECG readers check declared sizes and rates before allocating (``limits.max_ecg_samples``), in-process too."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import EcgError
from ecg.readers import read_ecg
from ecg.readers.limits import declared_samples_limit
from tests.robustness import crafted


def test_scp_ecg_declaring_billions_of_samples_is_refused_before_allocation(tmp_path: Path) -> None:
    with pytest.raises(EcgError, match="over limits.max_ecg_samples"):
        read_ecg(crafted.scp_ecg_huge(tmp_path / "huge.scp"))


def test_wfdb_header_declaring_terabytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EcgError, match="declares 12000000000000 samples, over limits.max_ecg_samples"):
        read_ecg(crafted.wfdb_huge(tmp_path))


@pytest.mark.parametrize("value", ["1e308", "inf", "1e400"])
def test_muse_sample_base_must_be_a_plausible_rate(tmp_path: Path, value: str) -> None:
    with pytest.raises(EcgError, match="sampling rate"):
        read_ecg(crafted.muse_sample_base(tmp_path / "muse.xml", value))


def test_the_limit_is_the_configured_one(tmp_path: Path) -> None:
    path = crafted.muse_sample_base(tmp_path / "muse.xml", "500")  # 8 leads x 5000 samples
    assert read_ecg(path).signal.shape[1] == 5000
    with declared_samples_limit(10_000), pytest.raises(EcgError, match=r"over limits.max_ecg_samples \(10000\)"):
        read_ecg(crafted.wfdb_huge(tmp_path))
