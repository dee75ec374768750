"""Local VLM backend: each tiny architecture through the production loading path."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.config import ModelSpec
from core.errors import ModelError
from core.records import ProducerKind
from models.local_vlm import LocalVlmBackend
from models.weights import digest_path

from .conftest import cxr_input

FAMILIES = ["gemma3", "llava", "qwen2_5_vl", "mllama"]


def _spec(path: Path, family: str, **kw: Any) -> ModelSpec:
    """The parse + repair path (constrained decoding off); see test_constrained_decoding for the other."""
    opts = {"constrained": False, **kw.pop("options", {})}
    kw = {"max_batch": 2, "max_new_tokens": 12, **kw}
    return ModelSpec(backend="local_vlm", family=family, path=path, options=opts, **kw)


@pytest.fixture(scope="module")
def backends(tiny_vlms: dict[str, Path]) -> dict[str, LocalVlmBackend]:
    out = {}
    for fam in FAMILIES:
        be = LocalVlmBackend(fam, _spec(tiny_vlms[fam], fam))
        be.load()
        out[fam] = be
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_describe_reports_hash_and_family(
    family: str, tiny_vlms: dict[str, Path], backends: dict[str, LocalVlmBackend]
) -> None:
    info = backends[family].describe()
    assert info.available, info.missing
    assert info.family == family
    assert info.weights_sha256 == digest_path(tiny_vlms[family])
    assert info.producer().kind is ProducerKind.MODEL


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_left_padded_generation_matches_one_by_one(family: str, backends: dict[str, LocalVlmBackend]) -> None:
    be = backends[family]
    # different image sizes and prompts of different lengths: the batch needs padding
    a = cxr_input("1.2.826.0.1.1", rows=64, cols=64, seed=1)
    b = cxr_input("1.2.826.0.1.2", rows=80, cols=48, seed=2)
    b = type(b)(**{**{f: getattr(b, f) for f in b.__slots__}, "context": type(b.context)(indication="x")})
    batched = be.generate_texts([a, b])
    assert len(batched) == 2 and all(isinstance(t, str) for t in batched)
    assert be._processor.tokenizer.padding_side == "left"
    singles = [be.generate_texts([a])[0], be.generate_texts([b])[0]]
    assert batched == singles  # greedy decoding + left padding: batching must not change the answer


@pytest.mark.parametrize("family", FAMILIES)
def test_random_model_garbage_becomes_model_error_after_one_repair(
    family: str, backends: dict[str, LocalVlmBackend]
) -> None:
    be = backends[family]
    outs = be.predict([cxr_input("1.2.826.0.1.3"), cxr_input("1.2.826.0.1.4", seed=5)])
    assert len(outs) == 2
    for out in outs:
        assert not out.ok
        assert isinstance(out.error, ModelError)
        assert "after one repair" in str(out.error)
        assert out.findings == () and out.sections == ()  # no half-filled report
        assert out.provenance["repair_used"] == "true" and out.provenance["constrained"] == "parse+repair"
        assert json.loads(out.provenance["decoding"])["do_sample"] is False


def test_bad_input_fails_only_that_study(backends: dict[str, LocalVlmBackend]) -> None:
    from models.protocol import ModelInput

    empty = ModelInput(study_instance_uid="1.2.826.0.1.9", modality="DX")  # nothing to look at
    outs = backends["gemma3"].predict([empty, cxr_input("1.2.826.0.1.10")])
    assert "no image" in str(outs[0].error)
    assert "after one repair" in str(outs[1].error)  # the other study still ran


def test_wrong_family_in_config_is_reported(tiny_vlms: dict[str, Path]) -> None:
    be = LocalVlmBackend("m", _spec(tiny_vlms["llava"], "gemma3"))
    info = be.describe()
    assert not info.available
    assert "configured family 'gemma3' but the folder holds 'llava'" in info.missing[0]
    with pytest.raises(ModelError, match="cannot run"):
        be.predict([cxr_input("1.2.826.0.1.5")])


def test_hash_mismatch_and_missing_folder(tiny_vlms: dict[str, Path], tmp_path: Path) -> None:
    info = LocalVlmBackend("m", _spec(tiny_vlms["gemma3"], "gemma3", sha256="0" * 64)).describe()
    assert any("does not match" in m for m in info.missing)
    info = LocalVlmBackend("m", _spec(tmp_path / "absent", "gemma3")).describe()
    assert info.missing == (f"weights not found: {tmp_path / 'absent'}",)


def test_corrupt_weights_give_model_error(tiny_vlms: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_vlms["gemma3"], folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    be = LocalVlmBackend("m", _spec(folder, "gemma3"))
    with pytest.raises(ModelError, match="cannot load"):
        be.load()


def test_processor_from_another_model_is_refused(tiny_vlms: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_vlms["gemma3"], folder)
    for f in tiny_vlms["llava"].iterdir():  # llava tokenizer+processor beside gemma weights
        if f.name.startswith(("tokenizer", "processor", "chat_template", "preprocessor", "special_tokens")):
            shutil.copy(f, folder / f.name)
    be = LocalVlmBackend("m", _spec(folder, "gemma3"))
    with pytest.raises(ModelError, match="different models|cannot load"):
        be.load()


def test_image_the_processor_cannot_take_fails_only_that_study(backends: dict[str, LocalVlmBackend]) -> None:
    import numpy as np

    from core.records import Image
    from models.protocol import ModelInput

    sliver = ModelInput(
        study_instance_uid="1.2.826.0.1.11",
        modality="DX",
        images=(Image(np.ones((2, 1200), dtype=np.float32), view_position="PA"),),  # aspect ratio 600: Qwen refuses
    )
    outs = backends["qwen2_5_vl"].predict([sliver, cxr_input("1.2.826.0.1.12")])
    assert "generation failed" in str(outs[0].error) and "aspect ratio" in str(outs[0].error)
    assert "after one repair" in str(outs[1].error)  # the good study was retried alone and ran


@pytest.mark.parametrize("family", ["gemma3", "mllama"])
def test_constrained_decoding_with_xgrammar(tiny_vlms: dict[str, Path], family: str) -> None:
    """xgrammar (optional extra) forces the schema's structure even on a random model."""
    if importlib.util.find_spec("xgrammar") is None:
        if os.environ.get("CI"):
            pytest.fail("xgrammar is part of the test extras in CI")
        pytest.skip("xgrammar (optional extra) not installed")
    be = LocalVlmBackend("g", _spec(tiny_vlms[family], family, max_new_tokens=16, options={"constrained": True}))
    outs = be.predict([cxr_input("1.2.826.0.1.20")])  # ~70 ms per token on CPU with the grammar mask
    for out in outs:
        assert out.provenance["constrained"] == "xgrammar"
        # a random model's text is garbage, but the grammar fixed its shape: the draft object and its first key
        assert (out.raw_text or "").startswith('{"findings": [')
        if out.ok:  # completed within the token budget: a coded, schema-valid draft
            assert out.sections
        else:  # ran out of tokens inside the JSON: an explicit error, nothing half-filled
            assert out.findings == () and "after one repair" in str(out.error)
