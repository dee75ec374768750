"""``mmdx models --check``: load what is checked, say what is wrong in the site's terms.

Describing a backend (:meth:`models.registry.Registry.describe`) only looks
at files and hashes.  A site needs more before it routes studies to a model:
does the tokenizer belong to these weights, is a weights file truncated, does
the classifier have as many outputs as labels, does the server answer.  Each
check here reads the real files with the real libraries (the safetensors
header, the model built on the ``meta`` device from its config, the
processor) and turns library exceptions into one sentence a site engineer
can act on.  ``probe`` also runs one tiny forward pass (local) or one
request (remote).
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import ModelSpec
from core.errors import ModelError
from models.protocol import ModelInfo
from models.registry import Registry
from models.weights import sha256_problem

#: bytes per element of the safetensors dtypes
_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``--check`` found about one backend: its description and every problem, in plain words."""

    info: ModelInfo
    problems: tuple[str, ...]
    probed: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a ``.safetensors`` header; ModelError when the file is corrupt or truncated."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelError(f"{path}: weights file is empty or truncated ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise ModelError(f"{path}: not a safetensors file (header length {n} for a file of {size} bytes)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: corrupt safetensors header (not a mapping)")
    data = size - 8 - n
    shapes: dict[str, tuple[int, ...]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = tuple(int(d) for d in meta["shape"])
            start, end = (int(x) for x in meta["data_offsets"])
            width = _DTYPE_BYTES[meta["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path}: corrupt safetensors header entry for {name!r}") from None
        if end > data:
            raise ModelError(
                f"{path}: weights file is truncated ({name!r} ends at byte {end} of the data, the file holds {data}); "
                "copy it again from the model release"
            )
        if end - start != math.prod(shape) * width:
            raise ModelError(f"{path}: corrupt safetensors entry {name!r} (size does not match its shape)")
        shapes[name] = shape
    return shapes


def site_terms(folder: Path, exc: BaseException) -> str:
    """A library exception while loading a model folder, said in terms a site can act on."""
    text = str(exc)
    if isinstance(exc, AttributeError) and ("token" in text or "Tokenizer" in text):
        return (
            f"{folder}: the tokenizer does not belong to this model (it lacks the image tokens the processor needs); "
            "copy tokenizer and processor files from the same release as the weights"
        )
    if isinstance(exc, OSError) and ("tokenizer" in text.lower() or "processor" in text.lower()):
        return f"{folder}: tokenizer or processor files are missing; copy them from the same release as the weights"
    if "SafetensorError" in type(exc).__name__ or "HeaderTooLarge" in text or "incomplete metadata" in text:
        return f"{folder}: a weights file is corrupt or truncated; copy it again from the model release"
    return f"{folder}: cannot load the model ({type(exc).__name__}: {text[:200]})"


def _guard(problems: list[str], folder: Path, step: Callable[[], Any]) -> Any:
    try:
        return step()
    except ModelError as exc:
        problems.append(str(exc))
    except Exception as exc:  # transformers, tokenizers and safetensors raise their own types
        problems.append(site_terms(folder, exc))
    return None


def _norm(key: str) -> str:
    """A tensor name without the wrapper prefixes that differ between the saved and the loaded layout."""
    return ".".join(p for p in key.split(".") if p not in ("model", "language_model"))


def _weights_vs_architecture(folder: Path, problems: list[str]) -> None:
    """Every safetensors header readable and every tensor shaped as the architecture of config.json expects."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    files = sorted(folder.glob("*.safetensors"))
    stored: dict[str, tuple[int, ...]] = {}
    for f in files:
        got = _guard(problems, folder, lambda f=f: safetensors_shapes(f))  # type: ignore[misc]
        if got is None:
            return
        stored.update(got)
    if not stored:
        return
    cfg = _guard(problems, folder, lambda: AutoConfig.from_pretrained(folder, local_files_only=True))
    if cfg is None:
        return
    with torch.device("meta"):
        model = _guard(problems, folder, lambda: AutoModelForImageTextToText.from_config(cfg))  # type: ignore[no-untyped-call]
    if model is None:
        return
    expected = {_norm(k): tuple(v.shape) for k, v in model.state_dict().items()}
    stored = {_norm(k): v for k, v in stored.items()}
    common = set(stored) & set(expected)
    wrong = sorted(k for k in common if stored[k] != expected[k])
    if wrong:
        k = wrong[0]
        problems.append(
            f"{folder}: {len(wrong)} weight tensor(s) do not fit config.json (e.g. {k}: file {list(stored[k])}, "
            f"architecture {list(expected[k])}): weights and config come from different models"
        )
    elif expected and not common:
        problems.append(f"{folder}: no weight tensor name matches the architecture of config.json")


def _check_local_vlm(name: str, spec: ModelSpec, registry: Registry, probe: bool) -> list[str]:
    from models.local_vlm import LocalVlmBackend

    problems: list[str] = []
    folder = spec.path
    assert folder is not None
    backend = registry.backend(name)
    assert isinstance(backend, LocalVlmBackend)
    if spec.options.get("constrained", True) and importlib.util.find_spec("xgrammar") is None:
        problems.append(
            "constrained decoding is on (options.constrained) but xgrammar is not installed: small models then "
            "rarely give valid drafts; install it as docs/models.md says, or set options.constrained: false"
        )
    _weights_vs_architecture(folder, problems)
    if problems:
        return problems
    processor = _guard(problems, folder, backend.load_processor)
    if processor is None:
        return problems
    from transformers import AutoConfig

    cfg = _guard(problems, folder, lambda: AutoConfig.from_pretrained(folder, local_files_only=True))
    if cfg is not None:
        _guard(problems, folder, lambda: backend.check_match(processor, cfg))
    if probe and not problems:
        _guard(problems, folder, lambda: backend.probe())
    return problems


def _check_remote(name: str, registry: Registry, probe: bool) -> list[str]:
    from models.remote_vlm import RemoteVlmBackend

    backend = registry.backend(name)
    assert isinstance(backend, RemoteVlmBackend)
    return backend.probe(request=True) if probe else []


def check_backend(registry: Registry, name: str, *, probe: bool = False) -> CheckResult:
    """Describe, then load and check one backend (``probe``: one forward pass or one request)."""
    spec = registry.specs[name]
    info = registry.describe(name)
    problems = list(info.missing)
    if spec.backend == "labeler":
        return CheckResult(info, ())
    if (problem := sha256_problem(spec.sha256)) and not any(problem in p for p in problems):
        problems.append(problem)
    if problems:
        return CheckResult(info, tuple(problems))
    try:
        if spec.backend == "local_vlm":
            problems += _check_local_vlm(name, spec, registry, probe)
        elif spec.backend == "remote_vlm":
            problems += _check_remote(name, registry, probe)
        else:  # classifiers: loading checks layout, label count and op_threshs
            loader = getattr(registry.backend(name), "load", None)
            if loader is not None:
                loader()
    except ModelError as exc:
        problems.append(str(exc))
    return CheckResult(info, tuple(problems), probed=probe)


def check_all(registry: Registry, *, probe: bool = False) -> list[CheckResult]:
    return [check_backend(registry, n, probe=probe) for n in registry.names()]
