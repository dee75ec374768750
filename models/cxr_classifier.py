"""A DenseNet-121 multi-label chest radiograph classifier for triage and cross-checking drafts.

The network is MONAI's ``DenseNet121`` (2-D, one input channel).  Two weight
layouts load into it:

* a plain MONAI state dict (``features...layers.norm1.weight``,
  ``class_layers.out.weight``), labels from ``options.labels``;
* the torchxrayvision layout (family ``xrv``): torchvision-style names
  (``features.denseblock1.denselayer1.norm1.weight``, or the old
  ``norm.1.weight``), ``classifier.weight``/``bias`` and an ``op_threshs``
  tensor, 18 labels in xrv's order.  torchxrayvision itself cannot be
  imported here (it needs torchvision), so its key mapping and its output
  calibration (``op_norm``: each label's operating threshold maps to 0.5) are
  reimplemented.  Input: 224 x 224, one channel, scaled to [-1024, 1024].

Probabilities at or above the per-label threshold (0.5 after op_norm, or
``thresholds`` from the configuration) become present findings; the
classifier never asserts absence.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.config import ModelSpec
from core.errors import ModelError
from core.records import Finding, Image, Presence, Producer
from models.preprocess import xrv_input
from models.protocol import ModelInfo, ModelInput, ModelOutput
from models.vocabulary import BY_KEY, BY_XRV
from models.weights import check_weights, load_state_dict_file, require_weights

#: torchxrayvision's default pathology order (the 18 outputs of ``densenet121-res224-all``).
XRV_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)

_LAYER = re.compile(r"^(features\.denseblock\d+\.denselayer\d+)\.(norm|relu|conv)\.?([12])\.(.+)$")


def xrv_to_monai(state: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Rename a torchxrayvision DenseNet state dict to MONAI's names; returns (state, op_threshs or None)."""
    out: dict[str, Any] = {}
    op = None
    for key, value in state.items():
        if key == "op_threshs":
            op = value
            continue
        if key.startswith("classifier."):
            out["class_layers.out." + key.removeprefix("classifier.")] = value
            continue
        m = _LAYER.match(key)
        out[f"{m.group(1)}.layers.{m.group(2)}{m.group(3)}.{m.group(4)}" if m else key] = value
    return out, op


def op_norm(probs: Any, op_threshs: Any) -> Any:
    """torchxrayvision's calibration: a probability equal to the label's threshold maps to 0.5.

    Below the threshold ``p / (2 t)``; above ``1 - (1 - p) / (2 (1 - t))``.
    Labels whose threshold is NaN (not trained) stay NaN.
    """
    import torch

    t = op_threshs.to(probs.dtype).expand_as(probs)
    below = probs / (t * 2)
    above = 1.0 - (1.0 - probs) / ((1.0 - t) * 2)
    return torch.where(probs < t, below, above)


class CxrClassifierBackend:
    """DenseNet-121 over frontal chest radiographs; see the module docstring."""

    def __init__(self, name: str, spec: ModelSpec) -> None:
        self.name = name
        self.spec = spec
        self.layout = "xrv" if spec.family.startswith("xrv") else "monai"
        default = XRV_LABELS if self.layout == "xrv" else ()
        self.labels: tuple[str, ...] = tuple(spec.options.get("labels", default))
        self.size = int(spec.options.get("size", 224))
        self._digest, self._missing = check_weights(spec.path, spec.sha256)
        if not self.labels:
            self._missing.append("options.labels: a plain MONAI state dict needs its label list")
        self._model: Any = None
        self._op: Any = None
        self._device: Any = None

    def describe(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            backend="cxr_classifier",
            family=self.spec.family or "densenet121",
            version=str(self.spec.options.get("version", self.layout)),
            weights_sha256=self._digest,
            modalities=("CR", "DX"),
            licence=self.spec.licence,
            location=str(self.spec.path),
            missing=tuple(self._missing),
        )

    def load(self) -> None:
        if self._model is not None:
            return
        path = require_weights(self.name, self.spec.path, self._missing)
        import torch
        from monai.networks.nets.densenet import DenseNet121

        state = load_state_dict_file(path)
        op = None
        if self.layout == "xrv" or "classifier.weight" in state:
            state, op = xrv_to_monai(state)
        if op is None and "op_threshs" in self.spec.options:
            op = torch.tensor(self.spec.options["op_threshs"], dtype=torch.float32)
        out_w = state.get("class_layers.out.weight")
        if out_w is None or out_w.shape[0] != len(self.labels):
            got = None if out_w is None else out_w.shape[0]
            raise ModelError(
                f"{self.spec.path}: classifier has {got} outputs, {len(self.labels)} labels are configured"
            )
        if op is not None and op.numel() != len(self.labels):
            raise ModelError(f"{self.spec.path}: op_threshs has {op.numel()} values for {len(self.labels)} labels")
        model = DenseNet121(spatial_dims=2, in_channels=1, out_channels=len(self.labels))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"{self.spec.path}: not a DenseNet-121 {self.layout} state dict: {str(exc)[:300]}"
            ) from None
        from models.local_vlm import select_device

        self._device, _ = select_device(self.spec.device, "float32")
        self._model = model.eval().to(self._device)
        self._op = op.float().to(self._device) if op is not None else None

    def probabilities(self, images: Sequence[Image]) -> list[dict[str, float]]:
        """Label -> probability per image (calibrated with op_threshs when present)."""
        import torch

        self.load()
        x = torch.from_numpy(np.stack([xrv_input(im, self.size) for im in images])).to(self._device)
        with torch.inference_mode():
            p = torch.sigmoid(self._model(x))
            if self._op is not None:
                p = op_norm(p, self._op)
        return [{lab: float(v) for lab, v in zip(self.labels, row, strict=True)} for row in p.cpu().numpy()]

    def vocabulary_key(self, label: str) -> str | None:
        """The shared vocabulary key of a classifier label (xrv names or vocabulary keys)."""
        if label in BY_KEY:
            return label
        lab = BY_XRV.get(label)
        return lab.key if lab else None

    def threshold(self, label: str) -> float:
        return float(self.spec.thresholds.get(label, self.spec.thresholds.get("default", 0.5)))

    def findings(self, probs: dict[str, float], producer: Producer, sop_uid: str | None = None) -> tuple[Finding, ...]:
        from core.records import EvidenceRef

        out = []
        for label, p in probs.items():
            if math.isnan(p) or p < self.threshold(label):
                continue
            key = self.vocabulary_key(label)
            vocab = BY_KEY.get(key) if key else None
            out.append(
                Finding(
                    concept=vocab.code if vocab else None,
                    text=f"{vocab.code.meaning if vocab else label} (AI triage classifier, "
                    f"score {p:.2f} >= {self.threshold(label):.2f})",
                    producer=producer,
                    presence=Presence.PRESENT,
                    site=vocab.site if vocab else None,
                    probability=min(1.0, max(0.0, p)),
                    evidence=(EvidenceRef(sop_instance_uid=sop_uid),) if sop_uid else (),
                    critical=bool(vocab and vocab.critical),
                )
            )
        return tuple(out)

    def predict(self, batch: Sequence[ModelInput]) -> list[ModelOutput]:
        producer = self.describe().runnable_producer()
        self.load()
        outs = []
        for inp in batch:
            t0 = time.perf_counter()
            frontal = [im for im in inp.images if (im.view_position or "PA").upper() in ("PA", "AP", "")]
            if not frontal:
                err = ModelError(f"study {inp.study_instance_uid}: no frontal (PA/AP) radiograph for the classifier")
                outs.append(ModelOutput.failed(inp.study_instance_uid, producer, err))
                continue
            try:
                per_image = self.probabilities(frontal)
            except (ModelError, ValueError, RuntimeError) as exc:
                err = ModelError(f"study {inp.study_instance_uid}: classifier failed on the image: {exc}")
                outs.append(ModelOutput.failed(inp.study_instance_uid, producer, err))
                continue
            probs = {lab: max(p[lab] for p in per_image) for lab in self.labels}  # most suspicious view wins
            best = int(np.argmax([max(p.values()) for p in per_image]))
            finite = {k: v for k, v in probs.items() if not math.isnan(v)}
            outs.append(
                ModelOutput(
                    study_instance_uid=inp.study_instance_uid,
                    producer=producer,
                    findings=self.findings(finite, producer, frontal[best].sop_instance_uid),
                    probabilities={k: min(1.0, max(0.0, v)) for k, v in finite.items()},
                    timings_s={"inference": time.perf_counter() - t0},
                    provenance={"layout": self.layout, "op_norm": str(self._op is not None).lower()},
                )
            )
        return outs
