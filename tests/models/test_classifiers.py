"""ECG CNN (resnet1d_wang) and CXR DenseNet-121 (MONAI and torchxrayvision layouts) through the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.config import ModelSpec
from core.errors import ModelError
from core.records import EcgRecord, Image, Presence, ProducerKind
from models.cxr_classifier import XRV_LABELS, CxrClassifierBackend, op_norm, xrv_to_monai
from models.ecg_cnn import PTBXL_71, build_resnet1d_wang, ecg_windows
from models.preprocess import xrv_input
from models.protocol import ModelInput
from models.registry import Registry
from models.weights import sha256_file

from .xrv_reference import XrvStyleDenseNet, randomised

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _ecg(fs: float = 500.0, seconds: float = 10.0, leads: tuple[str, ...] = LEADS) -> EcgRecord:
    t = np.arange(int(fs * seconds)) / fs
    sig = np.stack([np.sin(2 * np.pi * 1.2 * t + k) for k in range(len(leads))]).astype(np.float32)
    return EcgRecord(signal=sig, lead_names=leads, sampling_rate_hz=fs, source="synthetic")


# --------------------------------------------------------------------------- ECG


@pytest.fixture(scope="module")
def ecg_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    model = build_resnet1d_wang()
    path = tmp_path_factory.mktemp("ecg") / "resnet1d_wang.pt"
    torch.save(model.state_dict(), path)
    return path


def test_resnet1d_wang_keeps_the_benchmark_module_names(ecg_weights: Path) -> None:
    sd = torch.load(ecg_weights, weights_only=True)
    for key in (
        "0.weight",
        "1.running_mean",
        "3.0.conv1.weight",
        "3.0.bn2.bias",
        "4.0.downsample.0.weight",
        "5.0.downsample.1.running_var",
        "6.2.weight",
        "6.4.weight",
        "6.6.bias",
        "6.8.weight",
    ):
        assert key in sd, key
    assert sd["0.weight"].shape == (128, 12, 7)
    assert sd["3.0.conv1.weight"].shape == (128, 128, 5) and sd["3.0.conv2.weight"].shape == (128, 128, 3)
    assert sd["6.4.weight"].shape == (128, 256) and sd["6.8.weight"].shape == (71, 128)


@pytest.mark.parametrize("fs", [100, 500])
def test_ecg_cnn_loads_through_registry_and_gives_71_probabilities(ecg_weights: Path, fs: int) -> None:
    spec = ModelSpec(
        backend="ecg_cnn",
        family="resnet1d_wang",
        path=ecg_weights,
        sha256=sha256_file(ecg_weights),
        options={"sampling_rate_hz": fs},
        thresholds={"default": 0.0},
    )
    reg = Registry.from_specs({"ecg": spec})
    assert reg.available() == ["ecg"]
    (out,) = reg.backend("ecg").predict([ModelInput(study_instance_uid="1.2.3.4", modality="ECG", ecg=_ecg())])
    assert out.ok, out.error
    assert list(out.probabilities) == list(PTBXL_71) and len(out.probabilities) == 71
    assert all(0.0 <= p <= 1.0 for p in out.probabilities.values())
    assert len(out.findings) == 71  # threshold 0: every statement asserted, each attributed
    assert {f.producer.digest for f in out.findings} == {sha256_file(ecg_weights)}
    # the same weights loaded again give the same numbers (eval mode, no dropout)
    again = (
        Registry.from_specs({"ecg": spec})
        .backend("ecg")
        .predict([ModelInput(study_instance_uid="1.2.3.4", modality="ECG", ecg=_ecg())])
    )
    assert dict(again[0].probabilities) == dict(out.probabilities)


def test_ecg_windows_resample_and_overlap() -> None:
    w = ecg_windows(_ecg(fs=500.0, seconds=10.0), 100.0)
    assert w.shape == (7, 12, 250)  # 10 s at 100 Hz, 2.5 s windows, 50 % overlap
    with pytest.raises(ModelError, match="needs leads"):
        ecg_windows(_ecg(leads=(*LEADS[:11], "X")), 100.0)
    with pytest.raises(ModelError, match="shorter than"):
        ecg_windows(_ecg(seconds=2.0), 100.0)


def test_ecg_cnn_wrong_state_dict_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"0.weight": torch.zeros(3)}, bad)
    be = Registry.from_specs({"e": ModelSpec(backend="ecg_cnn", path=bad)}).backend("e")
    with pytest.raises(ModelError, match="not a resnet1d_wang state dict"):
        be.predict([ModelInput(study_instance_uid="1.2.3", modality="ECG", ecg=_ecg())])
    info = Registry.from_specs({"e": ModelSpec(backend="ecg_cnn", path=tmp_path / "none.pt")}).describe("e")
    assert not info.available and "weights not found" in info.missing[0]


# --------------------------------------------------------------------------- CXR


@pytest.fixture(scope="module")
def xrv_model_and_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(5)
    ref = randomised(XrvStyleDenseNet())
    path = tmp_path_factory.mktemp("cxr") / "xrv-all.pt"
    torch.save(ref.state_dict(), path)
    return ref, path


def test_xrv_state_dict_has_xrv_key_names(xrv_model_and_file: tuple[torch.nn.Module, Path]) -> None:
    _, path = xrv_model_and_file
    sd = torch.load(path, weights_only=True)
    for key in (
        "features.conv0.weight",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.transition3.conv.weight",
        "features.norm5.running_var",
        "classifier.weight",
        "op_threshs",
    ):
        assert key in sd, key
    mapped, op = xrv_to_monai(sd)
    assert "features.denseblock1.denselayer1.layers.norm1.weight" in mapped
    assert "class_layers.out.weight" in mapped and op is not None and op.shape == (18,)


def test_xrv_checkpoint_loads_and_matches_the_reference_forward(
    xrv_model_and_file: tuple[torch.nn.Module, Path],
) -> None:
    ref, path = xrv_model_and_file
    spec = ModelSpec(backend="cxr_classifier", family="xrv-all", path=path, options={"size": 96})  # 224 in use
    be = Registry.from_specs({"cxr": spec}).backend("cxr")
    assert isinstance(be, CxrClassifierBackend)
    rng = np.random.default_rng(0)
    img = Image(rng.integers(0, 4096, (300, 260)).astype(np.uint16), view_position="PA", window=(2048.0, 4096.0))
    ours = be.probabilities([img])[0]
    with torch.inference_mode():
        theirs = ref(torch.from_numpy(xrv_input(img, 96))[None])[0].numpy()
    assert list(ours) == list(XRV_LABELS)
    np.testing.assert_allclose(np.array(list(ours.values())), theirs, rtol=1e-4, atol=1e-5)


def test_op_norm_maps_threshold_to_half_and_is_monotonic() -> None:
    t = torch.tensor([0.1, 0.3, 0.7])
    p = torch.tensor([[0.1, 0.3, 0.7], [0.05, 0.65, 1.0], [0.0, 0.0, 0.35]])
    out = op_norm(p, t)
    np.testing.assert_allclose(out[0].numpy(), [0.5, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(out[1].numpy(), [0.25, 0.75, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[2].numpy(), [0.0, 0.0, 0.25], atol=1e-6)


def test_xrv_input_range_and_shape() -> None:
    img = Image(np.linspace(0, 1000, 120 * 90).reshape(120, 90).astype(np.float32), window=(500.0, 1001.0))
    x = xrv_input(img)
    assert x.shape == (1, 224, 224) and x.dtype == np.float32
    assert x.min() >= -1024 and x.max() <= 1024 and x.max() - x.min() > 1500


def test_plain_monai_state_dict_with_thresholds(tmp_path: Path) -> None:
    from monai.networks.nets.densenet import DenseNet121

    torch.manual_seed(1)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
    with torch.no_grad():
        out_layer: Any = net.class_layers.out
        out_layer.weight.zero_()
        out_layer.bias.copy_(torch.tensor([8.0, -8.0]))  # pneumothorax certain, effusion not
    path = tmp_path / "monai.pt"
    torch.save(net.state_dict(), path)
    spec = ModelSpec(
        backend="cxr_classifier",
        family="densenet121",
        path=path,
        options={"labels": ["pneumothorax", "effusion"]},
        thresholds={"default": 0.5},
    )
    be = Registry.from_specs({"c": spec}).backend("c")
    rng = np.random.default_rng(2)
    lateral_only = ModelInput(
        study_instance_uid="1.2.3.1",
        modality="DX",
        images=(Image(rng.random((64, 64)).astype(np.float32), view_position="LL"),),
    )
    frontal = ModelInput(
        study_instance_uid="1.2.3.2",
        modality="DX",
        images=(Image(rng.random((64, 64)).astype(np.float32), view_position="PA"),),
    )
    lat, out = be.predict([lateral_only, frontal])
    assert "no frontal" in str(lat.error)
    assert out.ok and out.probabilities["pneumothorax"] > 0.99 and out.probabilities["effusion"] < 0.01
    (f,) = out.findings
    assert f.presence is Presence.PRESENT and f.critical and f.producer.kind is ProducerKind.MODEL


def test_label_count_mismatch_is_explained(tmp_path: Path, xrv_model_and_file: tuple[torch.nn.Module, Path]) -> None:
    _, path = xrv_model_and_file
    spec = ModelSpec(backend="cxr_classifier", family="densenet121", path=path, options={"labels": ["a", "b"]})
    be = CxrClassifierBackend("c", spec)
    with pytest.raises(ModelError, match="18 outputs, 2 labels"):
        be.load()
