"""Limits on what a reader may allocate for one file, checked against the sizes a header declares.

A header is read before its samples: a crafted one can declare billions of
samples, so each reader checks the declared total (all leads) here before it
allocates (``limits.max_ecg_samples``; the caller scopes another value with
:func:`declared_samples_limit`), and a sampling rate must be a finite,
plausible number.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from core.config import LimitsConfig
from core.errors import EcgError

#: The fastest sampling an ECG format declares in practice is a few kHz (pacemaker-spike channels: 16 kHz).
MAX_SAMPLING_RATE_HZ: Final = 100_000.0

_MAX_SAMPLES: ContextVar[int] = ContextVar("max_ecg_samples", default=LimitsConfig().max_ecg_samples)


@contextmanager
def declared_samples_limit(max_samples: int) -> Iterator[None]:
    """Within the block, readers refuse files that declare more than ``max_samples`` samples (all leads)."""
    token = _MAX_SAMPLES.set(max_samples)
    try:
        yield
    finally:
        _MAX_SAMPLES.reset(token)


def check_declared_samples(samples: int, what: str, source: str) -> None:
    """Raise EcgError when ``samples`` (declared, all leads together) exceeds the limit."""
    limit = _MAX_SAMPLES.get()
    if samples > limit:
        raise EcgError(f"{what} declares {samples} samples, over limits.max_ecg_samples ({limit})", source=source)


def check_sampling_rate(fs: float, what: str, source: str) -> float:
    """``fs`` when it is a finite rate in (0, 100 kHz]; EcgError naming ``what`` otherwise."""
    if not math.isfinite(fs) or not 0 < fs <= MAX_SAMPLING_RATE_HZ:
        raise EcgError(
            f"{what}: sampling rate {fs!r} Hz; expected a number in (0, {MAX_SAMPLING_RATE_HZ:g}]", source=source
        )
    return fs
