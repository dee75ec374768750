"""Filter designs shared by the signal modules, designed once per (order, corners, type, rate)."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from scipy import signal as sps


@functools.lru_cache(maxsize=128)
def butter_sos(order: int, wn: float | tuple[float, float], btype: str, fs: float) -> npt.NDArray[np.float64]:
    """Butterworth second-order sections.

    The cached array is shared between callers (scipy's filters need it writable but never write it).
    """
    return np.asarray(sps.butter(order, wn, btype=btype, fs=fs, output="sos"), dtype=np.float64)
