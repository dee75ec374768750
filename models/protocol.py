"""The one protocol every model backend speaks, and the records it exchanges.

A backend is built once from a :class:`core.config.ModelSpec` (see
:mod:`models.registry`) and then asked two things: what it is
(:meth:`ModelBackend.describe`) and what it sees in a batch of studies
(:meth:`ModelBackend.predict`).  Inputs and outputs are frozen records built
from ``core`` records so that the pipeline never passes dicts between stages.

``predict`` answers one :class:`ModelOutput` per input, in order.  A study
whose inference failed carries ``error`` (a :class:`core.errors.ModelError`)
and *no* findings or sections: the rest of the batch continues, and a
half-filled draft can never reach a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.errors import ModelError
from core.records import EcgRecord, Finding, Image, Producer, ProducerKind, ReportSection, Volume


def _frozen_mapping(value: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a configured backend is, and whether it can run.

    ``missing`` lists, in plain words, what stops the backend from running
    (absent folder, hash mismatch, uninstalled extra); empty when ready.
    """

    name: str
    backend: str
    family: str
    version: str
    weights_sha256: str | None
    modalities: tuple[str, ...] = ()
    licence: str | None = None
    location: str | None = None  #: folder, file or URL
    missing: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        return not self.missing

    def producer(self) -> Producer:
        """The :class:`core.records.Producer` every finding of this backend carries.

        Raises :class:`ModelError` when no weights hash is known: a finding
        without the hash of what produced it is refused.
        """
        if not self.weights_sha256:
            raise ModelError(f"model {self.name!r}: no weights sha256 known, its findings cannot be attributed")
        return Producer(kind=ProducerKind.MODEL, name=self.name, version=self.version, digest=self.weights_sha256)

    def runnable_producer(self) -> Producer:
        """:meth:`producer`, after a :class:`ModelError` listing ``missing`` when the backend cannot run."""
        if not self.available:
            raise ModelError(f"model {self.name!r} cannot run: {'; '.join(self.missing)}")
        return self.producer()


@dataclass(frozen=True, slots=True)
class ClinicalContext:
    """What the requesting clinician and the priors tell the model (never patient identity)."""

    indication: str | None = None
    technique: str | None = None
    prior_impressions: tuple[str, ...] = ()
    patient_age_years: float | None = None
    patient_sex: str | None = None  #: DICOM code M/F/O/U


@dataclass(frozen=True, slots=True)
class ModelInput:
    """One study's worth of model input.

    ``images`` are 2D views (radiographs, key slices, an ECG printout page);
    ``volume`` a CT/MR volume a backend may montage itself; ``ecg`` the signal
    for 1-D models with ``ecg_printout`` (H x W x 3 uint8, rendered by ``ecg``)
    and ``ecg_measurements_text`` for vision-language models.
    """

    study_instance_uid: str
    modality: str
    body_part: str | None = None
    images: tuple[Image, ...] = ()
    volume: Volume | None = None
    ecg: EcgRecord | None = None
    ecg_printout: npt.NDArray[np.uint8] | None = None
    ecg_measurements_text: str | None = None
    context: ClinicalContext = field(default_factory=ClinicalContext)

    def __post_init__(self) -> None:
        if not self.modality.strip():
            raise ModelError(f"study {self.study_instance_uid}: ModelInput.modality is empty")
        if self.ecg_printout is not None:
            p = self.ecg_printout
            if not isinstance(p, np.ndarray) or p.ndim != 3 or p.shape[2] != 3:
                raise ModelError(
                    f"study {self.study_instance_uid}: ModelInput.ecg_printout must be an H x W x 3 array, "
                    f"got {getattr(p, 'shape', type(p).__name__)}"
                )

    @property
    def view_positions(self) -> tuple[str, ...]:
        return tuple(i.view_position for i in self.images if i.view_position)


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """What one backend concluded about one study.

    Either ``error`` is set and findings/sections/probabilities are empty, or
    ``error`` is None.  ``provenance`` records prompt hash, decoding settings
    and anything else needed to reproduce the output.
    """

    study_instance_uid: str
    producer: Producer
    findings: tuple[Finding, ...] = ()
    sections: tuple[ReportSection, ...] = ()
    probabilities: Mapping[str, float] = field(default_factory=dict)
    raw_text: str | None = None
    timings_s: Mapping[str, float] = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)
    error: ModelError | None = None

    def __post_init__(self) -> None:
        if self.producer.kind is not ProducerKind.MODEL or not self.producer.digest:
            raise ModelError(
                f"study {self.study_instance_uid}: model output needs a MODEL producer with a weights hash"
            )
        for f in self.findings:
            if f.producer != self.producer:
                raise ModelError(
                    f"study {self.study_instance_uid}: finding {f.text!r} has producer {f.producer.name}, "
                    f"expected {self.producer.name}"
                )
        if self.error is not None and (self.findings or self.sections or self.probabilities):
            raise ModelError(f"study {self.study_instance_uid}: a failed output cannot carry findings")
        object.__setattr__(self, "probabilities", _frozen_mapping(self.probabilities))
        object.__setattr__(self, "timings_s", _frozen_mapping(self.timings_s))
        object.__setattr__(self, "provenance", _frozen_mapping(self.provenance))

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, study_instance_uid: str, producer: Producer, error: ModelError, **kw: object) -> ModelOutput:
        """An output that says why the model produced nothing for this study."""
        return cls(study_instance_uid=study_instance_uid, producer=producer, error=error, **kw)  # type: ignore[arg-type]


@runtime_checkable
class ModelBackend(Protocol):
    """A model that drafts findings: local VLM, remote VLM, ECG CNN, CXR classifier."""

    def describe(self) -> ModelInfo:
        """Name, version, weights hash, modalities, licence and what is missing."""
        ...

    def predict(self, batch: Sequence[ModelInput]) -> list[ModelOutput]:
        """One output per input, in order; failures are per study (``ModelOutput.error``)."""
        ...
