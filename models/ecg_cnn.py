"""A 1-D CNN ECG classifier with the architecture of the PTB-XL benchmark's ``resnet1d_wang``.

Strodthoff et al., "Deep learning for ECG analysis: benchmarks and insights
from PTB-XL" (2020): a ResNet with kernel sizes 5/3, 128 filters, stem
kernel 7 without pooling, three one-block stages, and a concat-pooling head
(BatchNorm, dropout, Linear 256->128, ReLU, BatchNorm, dropout, Linear
128->71) over the 71 PTB-XL statements ("all" task).  The module tree is a
plain ``nn.Sequential`` exactly as in the benchmark code, so a hospital's
state dict trained there (``0.weight`` ... ``6.8.bias``) loads unchanged.

Input: the 12 standard leads in mV, resampled to the configured rate (100 Hz
or 500 Hz), optionally standardised with the training mean/std, cut into
2.5 s windows with 50 % overlap; window probabilities are aggregated (max by
default, as the benchmark does).  The rule-based interpretation of ``ecg``
stays the reference; ``models.safety`` compares the two.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from core.codes import SCT, Code
from core.config import ModelSpec
from core.errors import ModelError
from core.records import STANDARD_LEADS, EcgRecord, Finding, Producer
from models.protocol import ModelInfo, ModelInput, ModelOutput
from models.weights import check_weights, load_state_dict_file, require_weights

#: PTB-XL statements (scp_codes) of the "all" task with their descriptions.
PTBXL_DESCRIPTIONS: dict[str, str] = {
    "NORM": "normal ECG",
    "IMI": "inferior myocardial infarction",
    "ASMI": "anteroseptal myocardial infarction",
    "ILMI": "inferolateral myocardial infarction",
    "AMI": "anterior myocardial infarction",
    "ALMI": "anterolateral myocardial infarction",
    "LMI": "lateral myocardial infarction",
    "IPLMI": "inferoposterolateral myocardial infarction",
    "IPMI": "inferoposterior myocardial infarction",
    "PMI": "posterior myocardial infarction",
    "INJAS": "subendocardial injury in anteroseptal leads",
    "INJAL": "subendocardial injury in anterolateral leads",
    "INJIN": "subendocardial injury in inferior leads",
    "INJLA": "subendocardial injury in lateral leads",
    "INJIL": "subendocardial injury in inferolateral leads",
    "LAFB": "left anterior fascicular block",
    "IRBBB": "incomplete right bundle branch block",
    "1AVB": "first degree AV block",
    "IVCD": "non-specific intraventricular conduction disturbance",
    "CRBBB": "complete right bundle branch block",
    "CLBBB": "complete left bundle branch block",
    "LPFB": "left posterior fascicular block",
    "WPW": "Wolff-Parkinson-White syndrome",
    "ILBBB": "incomplete left bundle branch block",
    "2AVB": "second degree AV block",
    "3AVB": "third degree AV block",
    "NDT": "non-diagnostic T abnormalities",
    "NST_": "non-specific ST changes",
    "DIG": "digitalis effect",
    "LNGQT": "long QT interval",
    "ISC_": "non-specific ischemic",
    "ISCAL": "ischemic in anterolateral leads",
    "ISCIN": "ischemic in inferior leads",
    "ISCIL": "ischemic in inferolateral leads",
    "ISCAS": "ischemic in anteroseptal leads",
    "ISCLA": "ischemic in lateral leads",
    "ISCAN": "ischemic in anterior leads",
    "ANEUR": "ST-T changes compatible with ventricular aneurysm",
    "EL": "electrolytic disturbance or drug",
    "LVH": "left ventricular hypertrophy",
    "LAO/LAE": "left atrial overload/enlargement",
    "RVH": "right ventricular hypertrophy",
    "RAO/RAE": "right atrial overload/enlargement",
    "SEHYP": "septal hypertrophy",
    "ABQRS": "abnormal QRS",
    "PVC": "ventricular premature complex",
    "STD_": "non-specific ST depression",
    "VCLVH": "voltage criteria (QRS) for left ventricular hypertrophy",
    "QWAVE": "Q waves present",
    "LOWT": "low amplitude T-waves",
    "NT_": "non-specific T-wave changes",
    "PAC": "atrial premature complex",
    "LPR": "prolonged PR interval",
    "INVT": "inverted T-waves",
    "LVOLT": "low QRS voltages in the frontal and horizontal leads",
    "HVOLT": "high QRS voltage",
    "TAB_": "T-wave abnormality",
    "STE_": "non-specific ST elevation",
    "PRC(S)": "premature complex(es)",
    "SR": "sinus rhythm",
    "AFIB": "atrial fibrillation",
    "STACH": "sinus tachycardia",
    "SARRH": "sinus arrhythmia",
    "SBRAD": "sinus bradycardia",
    "PACE": "normal functioning artificial pacemaker",
    "SVARR": "supraventricular arrhythmia",
    "BIGU": "bigeminal pattern",
    "AFLT": "atrial flutter",
    "SVTAC": "supraventricular tachycardia",
    "PSVT": "paroxysmal supraventricular tachycardia",
    "TRIGU": "trigeminal pattern",
}

#: Output order of the benchmark: sklearn's MultiLabelBinarizer sorts the class names.
PTBXL_71: tuple[str, ...] = tuple(sorted(PTBXL_DESCRIPTIONS))

#: Statements with a SNOMED CT concept in ``core.codes`` (the others are kept as text).
PTBXL_TO_SCT: dict[str, Code] = {
    "NORM": SCT.NORMAL_ECG,
    "SR": SCT.SINUS_RHYTHM,
    "SBRAD": SCT.SINUS_BRADYCARDIA,
    "STACH": SCT.SINUS_TACHYCARDIA,
    "AFIB": SCT.ATRIAL_FIBRILLATION,
    "AFLT": SCT.ATRIAL_FLUTTER,
    "PAC": SCT.PREMATURE_ATRIAL_COMPLEX,
    "PVC": SCT.PREMATURE_VENTRICULAR_COMPLEX,
    "PACE": SCT.PACED_RHYTHM,
    "1AVB": SCT.FIRST_DEGREE_AV_BLOCK,
    "2AVB": SCT.SECOND_DEGREE_AV_BLOCK,
    "3AVB": SCT.COMPLETE_AV_BLOCK,
    "CLBBB": SCT.COMPLETE_LBBB,
    "CRBBB": SCT.COMPLETE_RBBB,
    "IVCD": SCT.IVCD,
    "LAFB": SCT.LAFB,
    "LPFB": SCT.LPFB,
    "LVH": SCT.LVH,
    "STE_": SCT.ST_ELEVATION,
    "STD_": SCT.ST_DEPRESSION,
    "INVT": SCT.T_WAVE_INVERSION,
    "LNGQT": SCT.PROLONGED_QT,
    "LVOLT": SCT.LOW_QRS_VOLTAGE,
}

#: Statements that are critical results when asserted (acute injury patterns).
CRITICAL: frozenset[str] = frozenset({"INJAS", "INJAL", "INJIN", "INJLA", "INJIL", "3AVB"})


def build_resnet1d_wang(num_classes: int = 71, input_channels: int = 12) -> Any:
    """The benchmark's ``resnet1d_wang`` as an ``nn.Sequential`` with its exact module names."""
    from torch import nn

    class BasicBlock1d(nn.Module):
        def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
            super().__init__()
            self.conv1 = nn.Conv1d(inplanes, planes, 5, stride=stride, padding=2, bias=False)
            self.bn1 = nn.BatchNorm1d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv1d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm1d(planes)
            self.downsample = downsample

        def forward(self, x: Any) -> Any:
            residual = x if self.downsample is None else self.downsample(x)
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.bn2(self.conv2(x))
            return self.relu(x + residual)

    class AdaptiveConcatPool1d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ap = nn.AdaptiveAvgPool1d(1)
            self.mp = nn.AdaptiveMaxPool1d(1)

        def forward(self, x: Any) -> Any:
            import torch

            return torch.cat([self.mp(x), self.ap(x)], 1)

    def stage(stride: int) -> nn.Sequential:
        down = None
        if stride != 1:
            down = nn.Sequential(nn.Conv1d(128, 128, 1, stride=stride, bias=False), nn.BatchNorm1d(128))
        return nn.Sequential(BasicBlock1d(128, 128, stride, down))

    head = nn.Sequential(
        AdaptiveConcatPool1d(),
        nn.Flatten(),
        nn.BatchNorm1d(256),
        nn.Dropout(0.25),
        nn.Linear(256, 128),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(128),
        nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )
    return nn.Sequential(
        nn.Conv1d(input_channels, 128, 7, stride=1, padding=3, bias=False),
        nn.BatchNorm1d(128),
        nn.ReLU(inplace=True),
        stage(1),
        stage(2),
        stage(2),
        head,
    )


def ecg_windows(
    record: EcgRecord, fs: float, window_s: float = 2.5, mean: Any = 0.0, std: Any = 1.0
) -> npt.NDArray[np.float32]:
    """Windows (n, 12, samples) of the 12 standard leads at ``fs``, standardised, 50 % overlap.

    Pure function over the record's array; raises ModelError when a standard lead is missing.
    """
    missing = [lead for lead in STANDARD_LEADS if lead not in record.lead_names]
    if missing:
        raise ModelError(f"ECG {record.source}: the 12-lead model needs leads {missing}, absent from the record")
    x = np.stack([record.lead(lead) for lead in STANDARD_LEADS]).astype(np.float64)
    if not np.isfinite(x).all():
        raise ModelError(f"ECG {record.source}: the signal contains NaN or infinite samples")
    src = round(record.sampling_rate_hz)
    if abs(src - fs) > 1e-6:
        dst = round(fs)
        g = int(np.gcd(src, dst))
        x = resample_poly(x, dst // g, src // g, axis=1)
    x = (x - np.asarray(mean, dtype=float).reshape(-1, 1)) / np.asarray(std, dtype=float).reshape(-1, 1)
    n = round(window_s * fs)
    if x.shape[1] < n:
        raise ModelError(
            f"ECG {record.source}: {record.duration_s:.2f} s is shorter than the {window_s} s model window"
        )
    step = max(1, n // 2)
    starts = list(range(0, x.shape[1] - n + 1, step))
    return np.stack([x[:, s : s + n] for s in starts]).astype(np.float32)


class EcgCnnBackend:
    """resnet1d_wang over 12-lead ECGs; one probability per PTB-XL statement."""

    def __init__(self, name: str, spec: ModelSpec) -> None:
        self.name = name
        self.spec = spec
        self.fs = float(spec.options.get("sampling_rate_hz", 100))
        if self.fs not in (100.0, 500.0):
            raise ModelError(f"model {name!r}: options.sampling_rate_hz must be 100 or 500, got {self.fs}")
        self.labels: tuple[str, ...] = tuple(spec.options.get("labels", PTBXL_71))
        self.aggregate = str(spec.options.get("aggregate", "max"))
        if self.aggregate not in ("max", "mean"):
            raise ModelError(f"model {name!r}: options.aggregate must be 'max' or 'mean', got {self.aggregate!r}")
        self._digest, self._missing = check_weights(spec.path, spec.sha256)
        self._model: Any = None

    def describe(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            backend="ecg_cnn",
            family=self.spec.family or "resnet1d_wang",
            version=str(self.spec.options.get("version", f"{int(self.fs)}Hz")),
            weights_sha256=self._digest,
            modalities=("ECG",),
            licence=self.spec.licence,
            location=str(self.spec.path),
            missing=tuple(self._missing),
        )

    def load(self) -> None:
        if self._model is not None:
            return
        sd = load_state_dict_file(require_weights(self.name, self.spec.path, self._missing))
        model = build_resnet1d_wang(num_classes=len(self.labels))
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"{self.spec.path}: not a resnet1d_wang state dict for {len(self.labels)} outputs: {str(exc)[:300]}"
            ) from None
        self._model = model.eval()

    def probabilities(self, record: EcgRecord) -> dict[str, float]:
        """Statement -> probability for one ECG (sigmoid, aggregated over windows)."""
        import torch

        self.load()
        opts = self.spec.options
        win = ecg_windows(
            record, self.fs, float(opts.get("window_s", 2.5)), opts.get("input_mean", 0.0), opts.get("input_std", 1.0)
        )
        with torch.inference_mode():
            p = torch.sigmoid(self._model(torch.from_numpy(win))).numpy()
        agg = p.max(axis=0) if self.aggregate == "max" else p.mean(axis=0)
        return {lab: float(v) for lab, v in zip(self.labels, agg, strict=True)}

    def findings(self, probs: dict[str, float], producer: Producer) -> tuple[Finding, ...]:
        out = []
        for lab, p in sorted(probs.items(), key=lambda kv: -kv[1]):
            thr = self.spec.thresholds.get(lab, self.spec.thresholds.get("default", 0.5))
            if p < thr:
                continue
            desc = PTBXL_DESCRIPTIONS.get(lab, lab)
            out.append(
                Finding(
                    concept=PTBXL_TO_SCT.get(lab),
                    text=f"{desc} (AI ECG classifier, PTB-XL {lab}, p={p:.2f} >= {thr:.2f})",
                    producer=producer,
                    probability=p,
                    criteria=(f"PTB-XL:{lab}",),
                    critical=lab in CRITICAL,
                )
            )
        return tuple(out)

    def predict(self, batch: Sequence[ModelInput]) -> list[ModelOutput]:
        producer = self.describe().runnable_producer()
        self.load()
        outs = []
        for inp in batch:
            t0 = time.perf_counter()
            if inp.ecg is None:
                outs.append(
                    ModelOutput.failed(
                        inp.study_instance_uid, producer, ModelError(f"study {inp.study_instance_uid}: no ECG signal")
                    )
                )
                continue
            try:
                probs = self.probabilities(inp.ecg)
            except ModelError as exc:
                outs.append(ModelOutput.failed(inp.study_instance_uid, producer, exc))
                continue
            outs.append(
                ModelOutput(
                    study_instance_uid=inp.study_instance_uid,
                    producer=producer,
                    findings=self.findings(probs, producer),
                    probabilities=probs,
                    timings_s={"inference": time.perf_counter() - t0},
                    provenance={"sampling_rate_hz": str(self.fs), "aggregate": self.aggregate},
                )
            )
        return outs
