"""The chest radiograph finding vocabulary shared by drafts, classifiers and the labeler.

One table maps each finding key to its code (``core.codes``), default site,
its name in the ChestX-ray14 (NIH, NegBio) and CheXpert label sets and in the
torchxrayvision label list, and whether it is a critical result.  The draft
schema, the classifier outputs and the labeler all speak these keys, so that
their readings can be compared finding by finding (``models.safety``).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.codes import MMDX, SCT, Code


@dataclass(frozen=True, slots=True)
class FindingLabel:
    """One finding of the vocabulary."""

    key: str
    code: Code
    site: Code | None
    chestxray14: str | None = None  #: NIH / NegBio column name
    chexpert: str | None = None  #: CheXpert column name
    xrv: str | None = None  #: torchxrayvision pathology name
    critical: bool = False  #: a present finding sets STAT priority


LABELS: tuple[FindingLabel, ...] = (
    FindingLabel("atelectasis", SCT.ATELECTASIS, SCT.LUNG, "Atelectasis", "Atelectasis", "Atelectasis"),
    FindingLabel("cardiomegaly", SCT.CARDIOMEGALY, SCT.HEART, "Cardiomegaly", "Cardiomegaly", "Cardiomegaly"),
    FindingLabel("effusion", SCT.PLEURAL_EFFUSION, SCT.PLEURA, "Effusion", "Pleural Effusion", "Effusion"),
    FindingLabel("infiltration", SCT.INFILTRATE, SCT.LUNG, "Infiltration", None, "Infiltration"),
    FindingLabel("mass", SCT.MASS, SCT.LUNG, "Mass", None, "Mass"),
    FindingLabel("nodule", SCT.NODULE, SCT.LUNG, "Nodule", None, "Nodule"),
    FindingLabel("pneumonia", SCT.PNEUMONIA, SCT.LUNG, "Pneumonia", "Pneumonia", "Pneumonia"),
    FindingLabel("pneumothorax", SCT.PNEUMOTHORAX, SCT.PLEURA, "Pneumothorax", "Pneumothorax", "Pneumothorax", True),
    FindingLabel("consolidation", SCT.CONSOLIDATION, SCT.LUNG, "Consolidation", "Consolidation", "Consolidation"),
    FindingLabel("edema", SCT.EDEMA, SCT.LUNG, "Edema", "Edema", "Edema"),
    FindingLabel("emphysema", SCT.EMPHYSEMA, SCT.LUNG, "Emphysema", None, "Emphysema"),
    FindingLabel("fibrosis", SCT.FIBROSIS, SCT.LUNG, "Fibrosis", None, "Fibrosis"),
    FindingLabel(
        "pleural_thickening", SCT.PLEURAL_THICKENING, SCT.PLEURA, "Pleural_Thickening", None, "Pleural_Thickening"
    ),
    FindingLabel("hernia", SCT.HERNIA, SCT.CHEST, "Hernia", None, "Hernia"),
    FindingLabel("fracture", SCT.FRACTURE, SCT.CHEST, None, "Fracture", "Fracture"),
    FindingLabel("lung_lesion", MMDX.LUNG_LESION, SCT.LUNG, None, "Lung Lesion", "Lung Lesion"),
    FindingLabel("lung_opacity", MMDX.LUNG_OPACITY, SCT.LUNG, None, "Lung Opacity", "Lung Opacity"),
    FindingLabel(
        "enlarged_cardiomediastinum",
        MMDX.ENLARGED_CARDIOMEDIASTINUM,
        SCT.CHEST,
        None,
        "Enlarged Cardiomediastinum",
        "Enlarged Cardiomediastinum",
    ),
    FindingLabel("pleural_other", MMDX.PLEURAL_OTHER, SCT.PLEURA, None, "Pleural Other", None),
    FindingLabel("support_devices", MMDX.SUPPORT_DEVICES, SCT.CHEST, None, "Support Devices", None),
)

BY_KEY: dict[str, FindingLabel] = {lab.key: lab for lab in LABELS}
BY_XRV: dict[str, FindingLabel] = {lab.xrv: lab for lab in LABELS if lab.xrv}

#: The 14 ChestX-ray14 labels in NegBio's column order.
CHESTXRAY14: tuple[str, ...] = tuple(lab.key for lab in LABELS if lab.chestxray14)
#: The CheXpert labels this vocabulary covers (No Finding is handled by the labeler).
CHEXPERT: tuple[str, ...] = tuple(lab.key for lab in LABELS if lab.chexpert)

#: Site keys the draft schema accepts.
SITES: dict[str, Code] = {"lung": SCT.LUNG, "heart": SCT.HEART, "pleura": SCT.PLEURA, "chest": SCT.CHEST}
