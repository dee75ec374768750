"""Lead algebra: derive the limb leads a file leaves out, and put leads in standard order.

Many carts (GE MUSE, SCP-ECG "8 independent leads") store only I, II and V1-V6, because
the other four limb leads are linear combinations of I and II (Einthoven's and Goldberger's
laws).  Downstream code (measurements, interpretation, the printout) wants all twelve in the
conventional order, so readers call :func:`complete_leads` once at the edge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from core.errors import EcgError
from core.records import STANDARD_LEADS, EcgRecord, normalise_lead_name

#: Leads that can be computed from I and II, with their coefficients (a, b): lead = a*I + b*II.
DERIVABLE_LIMB_LEADS: dict[str, tuple[float, float]] = {
    "III": (-1.0, 1.0),  # III = II - I            (Einthoven)
    "aVR": (-0.5, -0.5),  # aVR = -(I + II) / 2    (Goldberger)
    "aVL": (1.0, -0.5),  # aVL = I - II / 2
    "aVF": (-0.5, 1.0),  # aVF = II - I / 2
}


def derive_limb_leads(
    signal: npt.NDArray[np.floating], lead_names: Sequence[str]
) -> tuple[npt.NDArray[np.float32], tuple[str, ...]]:
    """Append III, aVR, aVL and aVF where they are missing and I and II are present.

    Leads already in the input are kept as stored (a cart's own III is not replaced by
    the computed one).  Without both I and II nothing can be derived and the input is
    returned unchanged (as float32).

    Parameters
    ----------
    signal
        Leads x samples, any float dtype, in millivolts.
    lead_names
        One name per row; normalised with :func:`core.records.normalise_lead_name`.
    """
    sig = np.asarray(signal, dtype=np.float32)
    if sig.ndim != 2 or sig.shape[0] != len(lead_names):
        raise EcgError(f"expected a leads x samples array with {len(lead_names)} rows, got shape {sig.shape}")
    names = tuple(normalise_lead_name(n) for n in lead_names)
    if "I" not in names or "II" not in names:
        return sig, names
    lead_i = sig[names.index("I")].astype(np.float64)
    lead_ii = sig[names.index("II")].astype(np.float64)
    extra_rows: list[npt.NDArray[np.float32]] = []
    extra_names: list[str] = []
    for name, (a, b) in DERIVABLE_LIMB_LEADS.items():
        if name not in names:
            extra_rows.append((a * lead_i + b * lead_ii).astype(np.float32))
            extra_names.append(name)
    if not extra_rows:
        return sig, names
    return np.vstack([sig, *extra_rows]), names + tuple(extra_names)


def standard_order(
    signal: npt.NDArray[np.floating], lead_names: Sequence[str]
) -> tuple[npt.NDArray[np.float32], tuple[str, ...]]:
    """Reorder a 12-lead record: the standard leads in display order, any others after, as found.

    A record that lacks some of the 12 standard leads (a 2-lead Holter "MLII, V5", a
    3-lead monitor strip) keeps the file's order: there the first lead is the one the
    recording was set up around, and renderers use it for the rhythm strip.
    """
    names = tuple(normalise_lead_name(n) for n in lead_names)
    sig = np.asarray(signal, dtype=np.float32)
    if not set(STANDARD_LEADS) <= set(names):
        return sig, names
    order = [names.index(s) for s in STANDARD_LEADS if s in names]
    order += [i for i, n in enumerate(names) if n not in STANDARD_LEADS]
    return np.ascontiguousarray(sig[order]), tuple(names[i] for i in order)


def complete_leads(
    signal: npt.NDArray[np.floating], lead_names: Sequence[str]
) -> tuple[npt.NDArray[np.float32], tuple[str, ...]]:
    """Derive missing limb leads, then put leads in standard order."""
    sig, names = derive_limb_leads(signal, lead_names)
    return standard_order(sig, names)


def complete_record(record: EcgRecord) -> EcgRecord:
    """The same record with derived limb leads added and leads in standard order."""
    sig, names = complete_leads(record.signal, record.lead_names)
    if names == record.lead_names:
        return record
    return dataclasses.replace(record, signal=sig, lead_names=names)
