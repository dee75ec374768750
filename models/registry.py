"""The model registry: backends built from configuration, checked before anything runs.

Backends come from two places, merged by name (the settings win):

* ``models.backends`` in the mmdx configuration;
* the YAML file named by ``models.registry`` (``configs/models.yaml`` is the
  documented example), a mapping ``backends: {name: ModelSpec fields}``.
  Relative paths in that file are relative to the file.

Construction checks that each weights file or folder exists and that its
sha256 matches the configured one; :meth:`Registry.describe_all` says, per
backend, what is missing.  Nothing is loaded into memory until a backend is
first asked to predict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.config import ModelSpec, Settings
from core.errors import ConfigError, ModelError
from models.protocol import ModelBackend, ModelInfo


def read_registry_file(path: Path) -> dict[str, ModelSpec]:
    """The backends of a registry YAML file; ConfigError naming the file and key when invalid."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: model registry file not found (models.registry)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("backends", {}), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'backends' mapping of name -> model")
    specs: dict[str, ModelSpec] = {}
    for name, raw in (data.get("backends") or {}).items():
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: backends.{name}: expected a mapping, got {type(raw).__name__}")
        if raw.get("path") and not Path(raw["path"]).expanduser().is_absolute():
            raw = {**raw, "path": str((path.parent / raw["path"]).resolve())}
        try:
            specs[str(name)] = ModelSpec(**raw)
        except ValidationError as exc:
            errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: backends.{name}: {errs}") from None
    return specs


def build_backend(name: str, spec: ModelSpec) -> ModelBackend:
    """The backend object for one spec (imports the heavy libraries only for the kinds configured)."""
    if spec.backend == "local_vlm":
        from models.local_vlm import LocalVlmBackend

        return LocalVlmBackend(name, spec)
    if spec.backend == "remote_vlm":
        from models.remote_vlm import RemoteVlmBackend

        return RemoteVlmBackend(name, spec)
    if spec.backend == "ecg_cnn":
        from models.ecg_cnn import EcgCnnBackend

        return EcgCnnBackend(name, spec)
    if spec.backend == "cxr_classifier":
        from models.cxr_classifier import CxrClassifierBackend

        return CxrClassifierBackend(name, spec)
    raise ModelError(f"model {name!r}: backend {spec.backend!r} is not a model backend (the labeler needs no weights)")


@dataclass
class Registry:
    """Configured backends by name; built lazily, described without loading weights."""

    specs: dict[str, ModelSpec]
    _backends: dict[str, ModelBackend] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        specs: dict[str, ModelSpec] = {}
        if settings.models.registry is not None:
            specs.update(read_registry_file(settings.models.registry))
        specs.update(settings.models.backends)
        return cls(specs)

    @classmethod
    def from_specs(cls, specs: Mapping[str, ModelSpec]) -> Registry:
        return cls(dict(specs))

    def names(self, backend: str | None = None) -> list[str]:
        return sorted(n for n, s in self.specs.items() if backend is None or s.backend == backend)

    def backend(self, name: str) -> ModelBackend:
        if name not in self.specs:
            raise ModelError(f"model {name!r} is not configured; configured: {self.names()}")
        if name not in self._backends:
            self._backends[name] = build_backend(name, self.specs[name])
        return self._backends[name]

    def describe(self, name: str) -> ModelInfo:
        spec = self.specs[name]
        if spec.backend == "labeler":
            return ModelInfo(
                name=name,
                backend="labeler",
                family="rules",
                version="builtin",
                weights_sha256=None,
                modalities=("CR", "DX"),
                licence="Apache-2.0 (mmdx)",
                location="models.labeler",
            )
        try:
            return self.backend(name).describe()
        except ModelError as exc:
            return ModelInfo(
                name=name,
                backend=spec.backend,
                family=spec.family,
                version="?",
                weights_sha256=None,
                location=str(spec.path or spec.url),
                missing=(str(exc),),
            )

    def describe_all(self) -> list[ModelInfo]:
        return [self.describe(n) for n in self.names()]

    def available(self, backend: str | None = None) -> list[str]:
        """Names of backends that can run now (weights present, hash matching)."""
        return [n for n in self.names(backend) if self.specs[n].backend != "labeler" and self.describe(n).available]


def summary(infos: list[ModelInfo]) -> dict[str, Any]:
    """A JSON-able summary for ``mmdx models --json`` and the HTTP API."""
    return {
        "models": [
            {
                "name": i.name,
                "backend": i.backend,
                "family": i.family,
                "version": i.version,
                "weights_sha256": i.weights_sha256,
                "location": i.location,
                "licence": i.licence,
                "available": i.available,
                "missing": list(i.missing),
            }
            for i in infos
        ],
        "radiology_model_available": any(
            i.available and i.backend in ("local_vlm", "remote_vlm", "cxr_classifier") for i in infos
        ),
        "ecg_model_available": any(i.available and i.backend == "ecg_cnn" for i in infos),
    }
