"""What the rules read, and how a statement is made."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.codes import Code
from core.records import Finding, Measurement, Patient, Producer, ProducerKind
from ecg.signal.atrial import AtrialActivity
from ecg.signal.measurements import GlobalMeasurements, LeadAmplitudes

VERSION = "0.1.0"
NAME = "mmdx-ecg"


def ruleset_digest() -> str:
    """sha256 over the sources of the rules and the signal code (thresholds live there)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for sub in ("rules", "signal"):
        for p in sorted((root / sub).glob("*.py")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


PRODUCER = Producer(kind=ProducerKind.RULE_ENGINE, name=NAME, version=VERSION, digest=ruleset_digest())


@dataclass(frozen=True, slots=True)
class Rule:
    """One named statement rule: its criteria in words (shown in docs and audits) and the function deciding it."""

    name: str
    criteria: str
    decide: Callable[..., Finding | None]


@dataclass(frozen=True)
class RuleInput:
    """Everything the statements are decided on (all from the same conditioned signal)."""

    fs: float
    duration_s: float
    beats: npt.NDArray[np.int64]
    labels: npt.NDArray[np.str_]
    g: GlobalMeasurements | None
    amps: tuple[LeadAmplitudes, ...]
    atrial: AtrialActivity | None
    twelve_lead: bool
    patient: Patient | None
    measurements: tuple[Measurement, ...] = ()
    paced_fraction: float = 0.0  #: fraction of beats preceded by a pacing spike
    #: per beat: QRS wider than the dominant beat's (None: not measured, e.g. a caller without beat features)
    beat_wide: npt.NDArray[np.bool_] | None = None
    #: per beat: correlation with the preceding beat where both are ventricular, else NaN
    beat_corr_prev: npt.NDArray[np.float64] | None = None
    #: QRS duration of the median lead (each lead's own onset/offset): a global QRS widened by one lead's tail
    #: is not a conduction block (None: not measured, the global QRS alone decides)
    qrs_lead_median_ms: float | None = None
    #: leads whose signal quality is good enough to support a critical statement (None: all leads)
    good_leads: frozenset[str] | None = None
    #: why the record is too poor for rhythm alarms (None: readable)
    quality_poor: str | None = None
    #: why amplitudes are implausible (None: plausible); voltage and ST criteria are then not applied
    implausible_amplitude: str | None = None

    def amp(self, lead: str) -> LeadAmplitudes | None:
        for a in self.amps:
            if a.lead == lead:
                return a
        return None

    def good(self, *leads: str) -> bool:
        """Whether every named lead is of good quality (supports a critical statement)."""
        return self.good_leads is None or all(k in self.good_leads for k in leads)

    def measurement(self, code: Code, site: str | None = None) -> tuple[Measurement, ...]:
        return tuple(m for m in self.measurements if m.code == code and (site is None or m.site == site))


def finding(
    concept: Code,
    criteria: list[str] | tuple[str, ...],
    measurements: tuple[Measurement, ...] = (),
    *,
    critical: bool = False,
    text: str | None = None,
) -> Finding:
    """A statement Finding from the rule engine."""
    return Finding(
        concept=concept,
        text=text or concept.meaning,
        producer=PRODUCER,
        criteria=tuple(criteria),
        measurements=measurements,
        critical=critical,
    )
