"""What the pipeline will do with each series of a study, decided before doing it.

The plan is shown to the user (``mmdx run`` prints it) and drives
:func:`app.pipeline.process_study`, so what is printed is what is run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core.config import Settings
from core.records import Series, Study
from models.routing import models_for

ECG_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform Storage
        "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG Waveform Storage
        "1.2.840.10008.5.1.4.1.1.9.1.3",  # Ambulatory ECG Waveform Storage
    }
)
#: Why a series is skipped when the run's analyses leave its action out (``mmdx batch --analyses``).
NOT_CHOSEN = "its analysis is not among the run's chosen analyses"
#: Objects that are results or documents, not acquisitions: never re-analysed.
DERIVED_MODALITIES = frozenset({"SR", "SEG", "KO", "PR", "DOC", "RTSTRUCT", "RTDOSE", "RTPLAN", "REG"})
PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "RF", "XA"})
CROSS_SECTIONAL_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})


class Action(enum.Enum):
    """What happens to a series."""

    ECG_ANALYSIS = "ECG measurements + rule-based interpretation"
    IMAGE_MODELS = "image models"
    EXAM_ONLY = "exam, technique and comparison only"  #: imaging without a configured model
    SKIP = "not analysed"


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    series: Series
    action: Action
    detail: str

    @property
    def summary(self) -> str:
        if self.action is Action.SKIP:
            return f"{self.series.modality}: not analysed, {self.detail}"
        if self.action is Action.EXAM_ONLY:
            return f"{self.series.modality}: {self.action.value}; {self.detail}"
        return f"{self.series.modality}: {self.action.value} ({self.detail})"


@dataclass(frozen=True, slots=True)
class StudyPlan:
    study: Study
    series: tuple[SeriesPlan, ...]

    def of(self, action: Action) -> tuple[SeriesPlan, ...]:
        return tuple(p for p in self.series if p.action is action)

    def only(self, actions: frozenset[Action]) -> StudyPlan:
        """The plan with every series whose action is not in ``actions`` skipped (a run's chosen analyses)."""
        return StudyPlan(
            self.study,
            tuple(
                p if p.action in actions or p.action is Action.SKIP else SeriesPlan(p.series, Action.SKIP, NOT_CHOSEN)
                for p in self.series
            ),
        )


def _plan_series(series: Series, settings: Settings) -> SeriesPlan:
    """Decide the action for one series from its modality, SOP classes and the model routing."""
    sop_classes = {i.sop_class_uid for i in series.instances}
    if series.modality == "ECG" or sop_classes & ECG_SOP_CLASSES:
        return SeriesPlan(series, Action.ECG_ANALYSIS, f"{len(series.instances)} recording(s)")
    if series.modality in DERIVED_MODALITIES:
        return SeriesPlan(series, Action.SKIP, f"{series.modality} is a derived object")
    if series.modality in PROJECTION_MODALITIES or series.modality in CROSS_SECTIONAL_MODALITIES:
        models = models_for(settings.model_routing, series.modality, series.body_part)
        if models:
            return SeriesPlan(series, Action.IMAGE_MODELS, ", ".join(models))
        return SeriesPlan(series, Action.EXAM_ONLY, f"no model configured for {series.modality} (see model_routing)")
    return SeriesPlan(series, Action.SKIP, f"modality {series.modality} is not supported")


def plan_study(study: Study, settings: Settings) -> StudyPlan:
    return StudyPlan(study, tuple(_plan_series(s, settings) for s in study.series))
