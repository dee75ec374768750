"""Filter designs shared by the signal modules, designed once per (order, corners, type, rate).

:func:`sosfiltfilt` is scipy's zero-phase filter with the filter's steady-state
initial conditions (``sosfilt_zi``, a small linear solve per section) cached
per design: scipy recomputes them on every call, which costs as much as
filtering a short median beat.  The filtering itself is scipy's, step for step,
so results are bit-identical to ``scipy.signal.sosfiltfilt``.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from scipy import signal as sps
from scipy.signal._arraytools import odd_ext

FloatArray = npt.NDArray[np.float64]


@functools.lru_cache(maxsize=128)
def butter_sos(order: int, wn: float | tuple[float, float], btype: str, fs: float) -> npt.NDArray[np.float64]:
    """Butterworth second-order sections.

    The cached array is shared between callers (scipy's filters need it writable but never write it).
    """
    return np.asarray(sps.butter(order, wn, btype=btype, fs=fs, output="sos"), dtype=np.float64)


@functools.lru_cache(maxsize=256)
def _sos_zi(sos_bytes: bytes, n_sections: int) -> FloatArray:
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(n_sections, 6)
    zi = np.asarray(sps.sosfilt_zi(sos), dtype=np.float64)
    zi.setflags(write=False)
    return zi


def sosfiltfilt(sos: FloatArray, x: FloatArray, *, padlen: int | None = None) -> FloatArray:
    """Zero-phase filtering along the last axis, odd padding: ``scipy.signal.sosfiltfilt`` with cached ``zi``.

    Parameters
    ----------
    sos
        Second-order sections (float64), e.g. from :func:`butter_sos`.
    x
        Samples along the last axis (any leading shape).
    padlen
        As scipy's (``None``: three times the number of taps).
    """
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    arr = np.asarray(x, dtype=np.float64)
    n_sections = sos.shape[0]
    ntaps = 2 * n_sections + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    edge = ntaps * 3 if padlen is None else padlen
    if arr.shape[-1] <= edge:
        raise ValueError(f"The length of the input vector x must be greater than padlen, which is {edge}.")
    ext = odd_ext(arr, edge, axis=-1) if edge > 0 else arr
    zi = _sos_zi(sos.tobytes(), n_sections)
    rows = np.array(ext.reshape(-1, ext.shape[-1]), dtype=np.float64, order="C")  # filtered in place
    _filter(sos, rows, zi * rows[:, :1, None])  # forward, from the first sample's steady state
    rows = np.array(rows[:, ::-1], order="C")
    _filter(sos, rows, zi * rows[:, :1, None])  # backward
    y = rows[:, ::-1].reshape(ext.shape)
    if edge > 0:
        y = y[..., edge:-edge]
    return np.asarray(y, dtype=np.float64)


def _filter(sos: FloatArray, rows: FloatArray, zi: FloatArray) -> None:
    """scipy's second-order-section kernel on C-ordered rows, in place (``zi``: rows x sections x 2).

    The kernel is the one ``scipy.signal.sosfilt`` ends in; its argument checks and
    copies are what this module saves.  Should a scipy release move it, the public
    function does the same arithmetic.
    """
    if _sosfilt is not None:
        _sosfilt(sos, rows, np.ascontiguousarray(zi))
    else:
        rows[...] = sps.sosfilt(sos, rows, axis=-1, zi=np.moveaxis(zi, 0, 1))[0]


try:
    from scipy.signal._sosfilt import _sosfilt
except ImportError:  # pragma: no cover - a scipy without the private kernel module
    _sosfilt = None
