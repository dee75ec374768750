"""Weights on disk: which files they are, their sha256, and whether they match the configuration.

The digest of a model folder is the sha256 of a manifest: one line
``<relative path> <sha256>`` per weight/config/tokenizer file, sorted.  It
changes when any file that influences the output changes, and does not
depend on the folder's own location.  A single weights file's digest is
simply its sha256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.errors import ModelError

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_FOLDER_FILES = (".json", ".jinja", ".model", ".txt", ".tiktoken", *_WEIGHT_SUFFIXES)

_cache: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of one file (memoised on path, size and mtime: hashing 8 GB takes seconds)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _cache:
        return _cache[key]
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    _cache[key] = h.hexdigest()
    return _cache[key]


def folder_files(folder: Path) -> list[Path]:
    """The files of a model folder that determine its behaviour (weights, configs, tokenizer, template)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _FOLDER_FILES and ".cache" not in p.parts)


def digest_path(path: Path) -> str:
    """The digest of a weights file or a model folder; :class:`ModelError` when absent or empty."""
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise ModelError(f"weights not found: {path}")
    files = folder_files(path)
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise ModelError(f"{path}: no weight file ({', '.join(_WEIGHT_SUFFIXES)}) in the folder")
    manifest = "".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}\n" for p in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def sha256_problem(value: str | None) -> str | None:
    """Why a configured ``sha256`` is not one (placeholders like ``TODO`` or a 16-character prefix), else None."""
    if value is None:
        return None
    v = value.strip().lower().removeprefix("sha256:")
    if len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return None
    return (
        f"sha256 {value[:20]!r} is not a sha256 (expected 64 hexadecimal characters; "
        "copy the full digest that `mmdx models --json` prints)"
    )


def check_weights(path: Path | None, expected_sha256: str | None) -> tuple[str | None, list[str]]:
    """Digest and the list of problems (missing file, hash mismatch) in plain words."""
    if path is None:
        return None, ["no path configured"]
    if problem := sha256_problem(expected_sha256):
        return None, [problem]
    try:
        digest = digest_path(path)
    except ModelError as exc:
        return None, [str(exc)]
    except OSError as exc:
        return None, [f"{path}: cannot read weights ({exc.strerror})"]
    problems: list[str] = []
    if expected_sha256 and expected_sha256.strip().lower().removeprefix("sha256:") != digest:
        problems.append(f"{path}: sha256 {digest[:12]}... does not match the configured {expected_sha256[:12]}...")
    return digest, problems


def first_missing(paths: Iterable[Path]) -> Path | None:
    """The first of ``paths`` that does not exist (for messages naming what to install)."""
    return next((p for p in paths if not p.exists()), None)


def require_weights(name: str, path: Path | None, missing: Sequence[str]) -> Path:
    """The weights path of model ``name``; :class:`ModelError` listing ``missing`` when it cannot run."""
    if missing:
        raise ModelError(f"model {name!r} cannot run: {'; '.join(missing)}")
    assert path is not None
    return path


def load_state_dict_file(path: Path) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only``: no pickled code runs)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable state dict ({type(exc).__name__}: {str(exc)[:200]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]  # fastai learner.save() layout
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise ModelError(f"{path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}
