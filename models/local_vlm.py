"""Vision-language models run in-process with transformers: Gemma 3 (MedGemma), LLaVA, Qwen2.5-VL, Llama 3.2 Vision.

Loading is the stock path (``AutoProcessor`` / ``AutoModelForImageTextToText``
with ``local_files_only=True`` and no remote code), so a hospital drops a
model folder in and nothing here changes.  Qwen2-VL-family processors declare
a video processor that needs torchvision; where it is absent the processor is
assembled from the image processor, the tokenizer and the chat template
(:class:`ImageOnlyQwenProcessor`), which is all still-image drafting needs.

Generation is batched with left padding, greedy by default (reproducible),
on CUDA in bfloat16 when available and on CPU in float32 otherwise.  Each
answer must parse as a :mod:`models.structured` draft; invalid answers get one
batched repair round, then become a per-study :class:`ModelError`.  A CUDA
out-of-memory halves the batch and retries.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.config import ModelSpec
from core.errors import ModelError
from models.prompts import Prompt, build_prompt, prompt_options
from models.protocol import ModelInfo, ModelInput, ModelOutput
from models.structured import DRAFT_SCHEMA, chest_labels_apply, parse_draft, repair_messages
from models.weights import check_weights

#: model_type in config.json -> family name used in configuration
FAMILIES: dict[str, str] = {
    "gemma3": "gemma3",
    "llava": "llava",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen2_vl": "qwen2_5_vl",
    "mllama": "mllama",
}
_IMAGE_TOKEN_ATTR = {
    "gemma3": "image_token_index",
    "llava": "image_token_index",
    "qwen2_5_vl": "image_token_id",
    "mllama": "image_token_index",
}
#: model types that need code or packages mmdx does not load in-process (served remotely instead)
REMOTE_ONLY: dict[str, str] = {
    "phi4_multimodal": "Phi-4 multimodal's image processor needs torchvision",
    "phi4mm": "Phi-4 multimodal needs its remote code and torchvision",
    "llava_llama": "PULSE / LLaVA forks need their own code",
    "maira2": "MAIRA-2 needs its remote code",
    "chexagent": "CheXagent needs its remote code",
}
#: embedding rows beyond ``text_config.vocab_size``: Llama 3.2 Vision's ``<|image|>`` token is id vocab_size
_EXTRA_EMBEDDINGS = {"mllama": 8}


def read_model_type(folder: Path) -> str:
    """``model_type`` of a model folder's config.json (ModelError naming the file when unreadable)."""
    cfg = folder / "config.json"
    try:
        return str(json.loads(cfg.read_text(encoding="utf-8"))["model_type"])
    except FileNotFoundError:
        raise ModelError(f"{cfg}: missing; not a transformers model folder") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelError(f"{cfg}: no readable model_type ({exc})") from None


def select_device(requested: str, dtype: str) -> tuple[Any, Any]:
    """(torch.device, torch.dtype): CUDA + bfloat16 when available and not overridden, else CPU + float32."""
    import torch

    if requested == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"device {requested!r} configured but CUDA is not available")
    auto = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, (auto if dtype == "auto" else getattr(torch, dtype))


class ImageOnlyQwenProcessor:
    """A Qwen2/2.5-VL processor for still images that needs no torchvision.

    Does what ``Qwen2_5_VLProcessor`` does for images: renders the chat
    template, expands each ``<|image_pad|>`` to the number of merged patches
    of its image, tokenises with left padding and marks image tokens in
    ``mm_token_type_ids`` (the model's M-RoPE needs them).
    """

    def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ModelError(
                f"tokenizer has no image token {self.image_token!r}: processor does not match a Qwen-VL model"
            )

    @classmethod
    def from_pretrained(cls, folder: Path) -> ImageOnlyQwenProcessor:
        from transformers import AutoImageProcessor, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        ip = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        template = None
        for name in ("chat_template.jinja", "chat_template.json"):
            p = folder / name
            if p.is_file():
                text = p.read_text(encoding="utf-8")
                template = json.loads(text)["chat_template"] if name.endswith(".json") else text
                break
        template = template or getattr(tok, "chat_template", None)
        if not template:
            raise ModelError(f"{folder}: no chat template (chat_template.jinja/.json or tokenizer_config.json)")
        return cls(ip, tok, template)

    def apply_chat_template(self, conversations: list[list[dict[str, Any]]], **_: Any) -> Any:
        import torch
        from transformers import BatchFeature

        texts, images = [], []
        for conv in conversations:
            texts.append(
                self.tokenizer.apply_chat_template(
                    conv, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
                )
            )
            images += [
                c["image"]
                for turn in conv
                if isinstance(turn["content"], list)
                for c in turn["content"]
                if c["type"] == "image"
            ]
        data: dict[str, Any] = {}
        if images:
            pix = self.image_processor(images=images, return_tensors="pt")
            data.update(pix)
            merge = self.image_processor.merge_size**2
            counts = iter((pix["image_grid_thw"].prod(dim=-1) // merge).tolist())
            placeholder = "\0IMG\0"
            expanded = []
            for t in texts:
                while self.image_token in t:
                    t = t.replace(self.image_token, placeholder * int(next(counts)), 1)
                expanded.append(t.replace(placeholder, self.image_token))
            texts = expanded
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        data.update(enc)
        data["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).to(torch.int32)
        return BatchFeature(data=data)

    def batch_decode(self, ids: Any, **kw: Any) -> list[str]:
        return list(self.tokenizer.batch_decode(ids, **kw))


class LocalVlmBackend:
    """A VLM folder loaded in this process; see the module docstring."""

    def __init__(self, name: str, spec: ModelSpec) -> None:
        if spec.path is None:
            raise ModelError(f"model {name!r}: local_vlm needs a path")
        self.name = name
        self.spec = spec
        self._digest, self._missing = check_weights(spec.path, spec.sha256)
        self._family = spec.family
        if not self._missing:
            try:
                model_type = read_model_type(spec.path)
            except ModelError as exc:
                self._missing.append(str(exc))
            else:
                family = FAMILIES.get(model_type)
                if family is None:
                    why = REMOTE_ONLY.get(model_type, f"in-process families: {sorted(set(FAMILIES.values()))}")
                    self._missing.append(
                        f"{spec.path}: model_type {model_type!r} cannot run in-process ({why}); serve it with an "
                        "OpenAI-compatible server (vLLM) and configure it as remote_vlm (docs/models.md)"
                    )
                elif spec.family and spec.family != family:
                    self._missing.append(
                        f"{spec.path}: configured family {spec.family!r} but the folder holds {family!r}"
                    )
                else:
                    self._family = family
        self._model: Any = None
        self._lock = threading.RLock()  # one generation at a time per loaded model (worker threads share it)
        self._processor: Any = None
        self._device: Any = None
        self._logits_processor_factory: Any = None

    # ------------------------------------------------------------------ protocol

    def describe(self) -> ModelInfo:
        version = str(self.spec.options.get("version", f"sha256:{(self._digest or 'unknown')[:12]}"))
        return ModelInfo(
            name=self.name,
            backend="local_vlm",
            family=self._family,
            version=version,
            weights_sha256=self._digest,
            modalities=tuple(self.spec.options.get("modalities", ("CR", "DX", "CT", "MR", "ECG"))),
            licence=self.spec.licence,
            location=str(self.spec.path),
            missing=tuple(self._missing),
        )

    def predict(self, batch: Sequence[ModelInput]) -> list[ModelOutput]:
        info = self.describe()
        producer = info.producer() if info.weights_sha256 else None
        if producer is None or not info.available:
            raise ModelError(f"model {self.name!r} cannot run: {'; '.join(info.missing) or 'no weights hash'}")
        self.load()
        results: dict[int, ModelOutput] = {}
        prompts: dict[int, Prompt] = {}
        for i, inp in enumerate(batch):
            try:
                prompts[i] = build_prompt(inp, self.spec.prompt_template, **prompt_options(self.spec.options))
            except ModelError as exc:
                results[i] = ModelOutput.failed(inp.study_instance_uid, producer, exc)
        order = list(prompts)
        convs = {i: self._conversation(prompts[i].messages, prompts[i].images) for i in order}
        t0 = time.perf_counter()
        answers = self._generate_all(order, convs)
        need_repair: dict[int, tuple[str, ModelError]] = {}
        for i in order:
            ans = answers[i]
            if isinstance(ans, ModelError):
                results[i] = ModelOutput.failed(batch[i].study_instance_uid, producer, ans)
                continue
            try:
                parse_draft(ans)
            except ModelError as exc:
                need_repair[i] = (ans, exc)
        repaired: dict[int, str | ModelError] = {}
        if need_repair:
            rconvs = {i: convs[i] + repair_messages(prev, err) for i, (prev, err) in need_repair.items()}
            repaired = self._generate_all(list(need_repair), rconvs)
        per_study = (time.perf_counter() - t0) / max(1, len(order))  # generation and repair, shared by the batch
        for i in order:
            if i in results:
                continue
            text = answers[i]
            assert isinstance(text, str)
            repair_used = i in need_repair
            if repair_used:
                r = repaired[i]
                if isinstance(r, ModelError):
                    results[i] = ModelOutput.failed(
                        batch[i].study_instance_uid, producer, r, timings_s={"generate": per_study}
                    )
                    continue
                text = r
            prov = self._provenance(prompts[i], repair_used)
            try:
                draft = parse_draft(text)
            except ModelError as exc:
                err = ModelError(
                    f"study {batch[i].study_instance_uid}: model {self.name!r} "
                    f"gave no valid draft after one repair: {exc}"
                )
                results[i] = ModelOutput.failed(
                    batch[i].study_instance_uid,
                    producer,
                    err,
                    raw_text=text,
                    provenance=prov,
                    timings_s={"generate": per_study},
                )
                continue
            results[i] = ModelOutput(
                study_instance_uid=batch[i].study_instance_uid,
                producer=producer,
                findings=draft.to_findings(producer, coded=chest_labels_apply(batch[i].modality, batch[i].body_part)),
                sections=draft.to_sections(),
                raw_text=text,
                timings_s={"generate": per_study},
                provenance=prov,
            )
        return [results[i] for i in range(len(batch))]

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load processor and model once (idempotent, thread-safe); ModelError on any mismatch or load failure."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForImageTextToText
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no progress bars in a service log
        folder = self.spec.path
        assert folder is not None
        self._device, dtype = select_device(self.spec.device, self.spec.dtype)
        try:
            processor = self.load_processor()
            model = AutoModelForImageTextToText.from_pretrained(
                folder, local_files_only=True, trust_remote_code=False, dtype=dtype
            )
        except Exception as exc:  # safetensors, tokenizers and torch raise their own types for corrupt files
            from models.check import site_terms

            raise ModelError(f"model {self.name!r} cannot load: {site_terms(folder, exc)}") from None
        self.check_match(processor, model.config)
        processor.tokenizer.padding_side = "left"
        self._processor = processor
        self._model = model.to(self._device).eval()
        torch.manual_seed(int(self.spec.options.get("seed", 0)))
        if self.spec.options.get("constrained", True) and importlib.util.find_spec("xgrammar") is not None:
            self._logits_processor_factory = self._xgrammar_factory()

    def load_processor(self) -> Any:
        """The processor of the folder (image-only Qwen processor where torchvision is absent)."""
        from transformers import AutoProcessor

        folder = self.spec.path
        assert folder is not None
        if self._family == "qwen2_5_vl" and importlib.util.find_spec("torchvision") is None:
            return ImageOnlyQwenProcessor.from_pretrained(folder)
        return AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            folder, local_files_only=True, trust_remote_code=False
        )

    def probe(self) -> None:
        """One tiny generation (two new tokens) on a blank image: the whole load and forward path runs."""
        from models.protocol import ModelInput

        self.load()
        blank = np.zeros((64, 64), dtype=np.uint8)
        from core.records import Image

        inp = ModelInput(study_instance_uid="2.25.1", modality="DX", body_part="CHEST", images=(Image(blank),))
        p = build_prompt(inp, self.spec.prompt_template, **prompt_options(self.spec.options))
        kept = self._logits_processor_factory
        self._logits_processor_factory = None  # the probe checks the model, not the grammar
        try:
            self._generate([self._conversation(p.messages, p.images)], max_new_tokens=2)
        finally:
            self._logits_processor_factory = kept

    def check_match(self, processor: Any, cfg: Any) -> None:
        """ModelError when the processor's tokenizer or image token does not belong to the model config."""
        text_vocab = getattr(getattr(cfg, "text_config", cfg), "vocab_size", None)
        if text_vocab is not None:
            text_vocab += _EXTRA_EMBEDDINGS.get(self._family, 0)
        tok = processor.tokenizer
        if text_vocab is not None and len(tok) > text_vocab:
            raise ModelError(
                f"model {self.name!r}: tokenizer has {len(tok)} tokens but the model only {text_vocab}: "
                "processor and weights come from different models"
            )
        attr = _IMAGE_TOKEN_ATTR.get(self._family)
        expected = getattr(cfg, attr, None) if attr else None
        image_token = getattr(tok, "image_token", None)  # the soft token the model replaces with image features
        token_id = tok.convert_tokens_to_ids(image_token) if image_token else getattr(processor, "image_token_id", None)
        if expected is not None and token_id is not None and token_id != expected:
            raise ModelError(
                f"model {self.name!r}: the processor's image token is id {token_id}, the model expects {expected}: "
                "processor and weights come from different models"
            )

    def _xgrammar_factory(self) -> Any:
        import xgrammar as xgr

        text_cfg = getattr(self._model.config, "text_config", self._model.config)
        info = xgr.TokenizerInfo.from_huggingface(self._processor.tokenizer, vocab_size=text_cfg.vocab_size)
        compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(DRAFT_SCHEMA), any_whitespace=False)
        return lambda: xgr.contrib.hf.LogitsProcessor(compiled)

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _conversation(messages: list[dict[str, Any]], images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        from PIL import Image as PILImage

        pil = iter(PILImage.fromarray(np.asarray(im, dtype=np.uint8)) for im in images)
        conv = []
        for turn in messages:
            content = [dict(c, image=next(pil)) if c["type"] == "image" else c for c in turn["content"]]
            conv.append({"role": turn["role"], "content": content})
        return conv

    def _generate_all(self, order: list[int], convs: dict[int, list[dict[str, Any]]]) -> dict[int, str | ModelError]:
        out: dict[int, str | ModelError] = {}
        size = self.spec.max_batch
        pending = list(order)
        while pending:
            chunk = pending[:size]
            try:
                texts = self._generate([convs[i] for i in chunk])
            except Exception as exc:
                if _is_oom(exc) and size > 1:
                    self._empty_cache()
                    size = max(1, size // 2)
                    continue
                err = ModelError(f"model {self.name!r}: generation failed: {type(exc).__name__}: {str(exc)[:300]}")
                if len(chunk) > 1:  # isolate the study at fault: retry one by one
                    for i in chunk:
                        try:
                            out[i] = self._generate([convs[i]])[0]
                        except Exception as one:
                            out[i] = ModelError(
                                f"model {self.name!r}: generation failed: {type(one).__name__}: {str(one)[:300]}"
                            )
                else:
                    out[chunk[0]] = err
                pending = pending[len(chunk) :]
                continue
            out.update(zip(chunk, texts, strict=True))
            pending = pending[len(chunk) :]
        return out

    def _generate(self, conversations: list[list[dict[str, Any]]], max_new_tokens: int | None = None) -> list[str]:
        import torch

        inputs = self._processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        inputs = inputs.to(self._device)
        if "pixel_values" in inputs and self._model.dtype != torch.float32:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._model.dtype)
        kwargs = self.decoding_settings()
        if max_new_tokens is not None:
            kwargs["max_new_tokens"] = max_new_tokens
            kwargs.pop("min_new_tokens", None)
        if self._logits_processor_factory is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([self._logits_processor_factory()])
        with self._lock, torch.inference_mode():
            ids = self._model.generate(**inputs, **kwargs)
        new = ids[:, inputs["input_ids"].shape[1] :]
        return list(self._processor.batch_decode(new, skip_special_tokens=True))

    def decoding_settings(self) -> dict[str, Any]:
        """Generation arguments: greedy unless the configuration asks for sampling."""
        opts = self.spec.options
        settings: dict[str, Any] = {
            "max_new_tokens": self.spec.max_new_tokens,
            "do_sample": bool(opts.get("do_sample", False)),
        }
        if settings["do_sample"]:
            settings["temperature"] = float(opts.get("temperature", 0.7))
            settings["top_p"] = float(opts.get("top_p", 0.95))
        else:
            settings["num_beams"] = int(opts.get("num_beams", 1))
        if "min_new_tokens" in opts:  # benchmarks: every answer the same length
            settings["min_new_tokens"] = int(opts["min_new_tokens"])
        return settings

    def _provenance(self, prompt: Prompt, repaired: bool) -> dict[str, str]:
        return {
            "prompt_template": prompt.template_name,
            "prompt_sha256": prompt.sha256,
            "decoding": json.dumps(self.decoding_settings(), sort_keys=True),
            "constrained": "xgrammar" if self._logits_processor_factory else "parse+repair",
            "repair_used": str(repaired).lower(),
            "device": str(self._device),
            "dtype": str(getattr(self._model, "dtype", "")),
        }

    def _empty_cache(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ for benchmarks

    def generate_texts(self, batch: Sequence[ModelInput]) -> list[str]:
        """Raw generation for a batch, no parsing (used by the benchmark to time the model alone)."""
        self.load()
        convs = []
        for inp in batch:
            p = build_prompt(inp, self.spec.prompt_template, **prompt_options(self.spec.options))
            convs.append(self._conversation(p.messages, p.images))
        return self._generate(convs)


def _is_oom(exc: BaseException) -> bool:
    import torch

    msg = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in msg or "not enough memory" in msg
