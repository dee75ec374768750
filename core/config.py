"""Configuration: one table of sections, loaded once at start-up.

Sources, lowest to highest precedence:

1. the defaults embedded in these models (SQLite under ``./var/``, local folders);
2. ``configs/default.yaml`` of the installation, when present;
3. the file named by ``--config`` or ``MMDX_CONFIG``;
4. ``MMDX_*`` environment variables, nested with ``__``
   (``MMDX_SCP__PORT=11113``, ``MMDX_DATABASE__URL=postgresql://...``).

An unknown key or a wrong type anywhere is a :class:`core.errors.ConfigError`
naming the key, raised before anything starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core._validate import check_uid
from core.errors import ConfigError, RecordError
from core.site import SiteConfig

#: ``configs/`` of a source checkout (beside the packages).
PROJECT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Section):
    """Local folders: received objects, produced artefacts, quarantined inputs."""

    store_dir: Path = Path("var/store")
    out_dir: Path = Path("var/out")
    quarantine_dir: Path = Path("var/quarantine")
    fsync: bool = True  #: fsync received objects before acknowledging; off only for benchmarks
    #: received objects of a finished study (newest report signed or withdrawn, every delivery settled, no job
    #: pending) are deleted this many days after its last object arrived; None keeps them
    retention_days: float | None = Field(None, gt=0)
    #: artefact files of superseded report versions whose deliveries are settled are deleted after this many days
    output_retention_days: float | None = Field(None, gt=0)


class DatabaseConfig(_Section):
    """SQLAlchemy URL: SQLite file by default, PostgreSQL by URL."""

    url: str = "sqlite:///var/mmdx.db"
    echo: bool = False


class TlsConfig(_Section):
    enabled: bool = False
    certificate: Path | None = None
    private_key: Path | None = None
    ca_certificates: Path | None = None

    @model_validator(mode="after")
    def _paths_when_enabled(self) -> TlsConfig:
        if self.enabled and not (self.certificate and self.private_key):
            raise ValueError("tls.enabled needs certificate and private_key")
        return self


class ScpConfig(_Section):
    """The DICOM storage SCP (C-ECHO, C-STORE)."""

    ae_title: str = "MMDX"
    host: str = "127.0.0.1"
    port: int = Field(11112, ge=1, le=65535)
    allowed_calling_aes: list[str] = Field(default_factory=list)  #: empty: accept any (development only)
    stable_age_s: float = Field(60.0, gt=0)  #: quiet period before a study is dispatched
    max_associations: int = Field(10, ge=1)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    #: DIMSE acceptor: mmdx's lean one (``ingest.dul``, streams each object to disk as it arrives; 2-3x
    #: pynetdicom's throughput) or pynetdicom's; both pass the same tests
    engine: Literal["pynetdicom", "fast"] = "fast"

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        if not 0 < len(v) <= 16:
            raise ValueError(f"AE title {v!r} must be 1-16 characters")
        return v


class DicomPeer(_Section):
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)


class PullConfig(_Section):
    """Where studies and priors are pulled from."""

    dicomweb_url: str | None = None
    dimse_peer: DicomPeer | None = None
    timeout_s: float = Field(30.0, gt=0)
    fetch_priors: int = Field(1, ge=0)  #: how many prior studies to fetch for comparison


class EcgConfig(_Section):
    """ECG conditioning per AHA recommendations for diagnostic ECG."""

    target_rate_hz: float = Field(500.0, gt=0)
    highpass_hz: float = Field(0.05, ge=0)
    lowpass_hz: float = Field(150.0, gt=0)
    powerline_hz: Literal["auto", "50", "60", "off"] = "auto"


class ModelSpec(_Section):
    """One configured model backend."""

    backend: Literal["local_vlm", "remote_vlm", "ecg_cnn", "cxr_classifier", "labeler"]
    family: str = ""  #: gemma3, llava, qwen2_5_vl, resnet1d_wang, densenet121, xrv-all...
    path: Path | None = None
    url: str | None = None
    served_model: str | None = None
    sha256: str | None = None
    prompt_template: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    max_batch: int = Field(1, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    thresholds: dict[str, float] = Field(default_factory=dict)
    timeout_s: float = Field(120.0, gt=0)
    concurrency: int = Field(4, ge=1)
    licence: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ModelsConfig(_Section):
    """Model backends by name; ``registry`` names a YAML file with more (``configs/models.yaml``)."""

    registry: Path | None = None
    backends: dict[str, ModelSpec] = Field(default_factory=dict)


class RouteRule(_Section):
    """Which models run on which inputs."""

    modality: str | None = None
    body_part: str | None = None
    kind: Literal["imaging", "ecg"] | None = None
    models: list[str]


#: Artefact kinds as ``delivery_routing`` and ``destinations.*.artefacts`` name them.
ArtefactName = Literal["sr", "sc", "pdf", "dicom-pdf", "fhir", "oru", "html"]
#: Which artefact kinds each destination type can carry (a routing rule outside this set is refused).
DESTINATION_ACCEPTS: dict[str, frozenset[str]] = {
    "dicom": frozenset({"sr", "sc", "dicom-pdf"}),
    "stow": frozenset({"sr", "sc", "dicom-pdf"}),
    "fhir": frozenset({"fhir"}),
    "mllp": frozenset({"oru"}),
    "folder": frozenset({"sr", "sc", "pdf", "dicom-pdf", "fhir", "oru", "html"}),
    "webhook": frozenset({"sr", "sc", "pdf", "dicom-pdf", "fhir", "oru", "html"}),
}
#: Fields each destination type cannot work without.
_DESTINATION_NEEDS: dict[str, tuple[str, ...]] = {
    "dicom": ("host", "port", "ae_title"),
    "stow": ("url",),
    "fhir": ("url",),
    "mllp": ("host", "port"),
    "folder": ("path",),
    "webhook": ("url",),
}


class ClientTlsConfig(_Section):
    """TLS towards a peer: verify it against ``ca_certificates`` (system store when unset); optional client cert."""

    enabled: bool = False
    ca_certificates: Path | None = None
    certificate: Path | None = None
    private_key: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> ClientTlsConfig:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("tls: certificate and private_key go together")
        return self


class Destination(_Section):
    """A peer that receives results (PACS, FHIR server, RIS, share, alert webhook).

    Each ``type`` needs its own fields (refused on load otherwise): ``dicom`` host/port/ae_title,
    ``stow``/``fhir``/``webhook`` url, ``mllp`` host/port, ``folder`` path.
    """

    type: Literal["dicom", "stow", "fhir", "mllp", "folder", "webhook"]
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    ae_title: str | None = None  #: the peer's (called) AE title
    calling_ae_title: str | None = None  #: ours towards this peer (default: scp.ae_title)
    url: str | None = None
    path: Path | None = None
    #: HTTP Authorization header value (``Bearer <token>``, ``Basic ...``); better set by environment
    authorization: str | None = None
    tls: ClientTlsConfig = Field(default_factory=ClientTlsConfig)
    #: kinds this destination receives for every report, in addition to ``delivery_routing``
    artefacts: list[ArtefactName] = Field(default_factory=list)
    send_preliminary: bool = True  #: false: only signed (final/amended/withdrawn) versions are sent
    skip_superseded: bool = True  #: an unsent preliminary is skipped once a newer version exists
    storage_commitment: bool = False  #: dicom only: delivered only after the PACS commits to keep it
    commitment_timeout_s: float = Field(600.0, gt=0)  #: an unanswered commitment is retried after this
    min_priority: Literal["stat", "urgent", "routine"] = "stat"  #: webhook only: which drafts notify
    timeout_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(10, ge=1)
    base_delay_s: float = Field(30.0, ge=0)  #: first retry delay; doubles per attempt (with jitter)
    max_delay_s: float = Field(3600.0, ge=0)

    @model_validator(mode="after")
    def _needs(self) -> Destination:
        missing = [f for f in _DESTINATION_NEEDS[self.type] if getattr(self, f) in (None, "")]
        if missing:
            raise ValueError(f"a {self.type} destination needs {', '.join(missing)}")
        if self.storage_commitment and self.type != "dicom":
            raise ValueError(f"storage_commitment is for dicom destinations, not {self.type}")
        refused = sorted(set(self.artefacts) - DESTINATION_ACCEPTS[self.type])
        if refused:
            raise ValueError(f"a {self.type} destination cannot carry {refused}")
        for name in ("ae_title", "calling_ae_title"):
            value = getattr(self, name)
            if value is not None and not 0 < len(value) <= 16:
                raise ValueError(f"{name} {value!r} must be 1-16 characters")
        return self


class BridgeConfig(_Section):
    """The outbox loop that delivers results (``mmdx send``, ``mmdx worker``, ``mmdx serve``)."""

    poll_s: float = Field(2.0, gt=0)  #: idle wait between outbox passes
    batch_size: int = Field(100, ge=1)  #: items claimed per pass (one association per DICOM destination)
    lease_s: float = Field(300.0, gt=0)  #: a crashed sender's claims come back after this
    #: storage commitment reports (N-EVENT-REPORT) arrive here; the PACS must know this AE at this port
    commitment_ae_title: str = "MMDX-BRIDGE"
    commitment_host: str = "127.0.0.1"
    commitment_port: int | None = Field(None, ge=1, le=65535)


class DeliveryRule(_Section):
    """Which artefacts go to which destinations."""

    artefacts: list[ArtefactName]
    destinations: list[str]
    kind: Literal["imaging", "ecg"] | None = None


class ServiceConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    base_url: str | None = None
    worker_poll_s: float = Field(2.0, gt=0)
    log_format: Literal["text", "json"] = "text"  #: the services' log lines: text, or one JSON object per line
    job_lease_s: float = Field(600.0, gt=0)  #: a job whose worker stopped heartbeating is requeued after this
    #: what ``mmdx serve`` supervises besides HTTP (a larger site runs ``mmdx scp``/``worker``/``send`` alone)
    run_scp: bool = False
    workers: int = Field(1, ge=0)
    run_sender: bool = True
    worklist_refresh_s: int = Field(30, ge=5)  #: the worklist page's auto-refresh
    viewer_url: str | None = None  #: a DICOMweb viewer (OHIF) link; ``{study_uid}`` is replaced
    max_upload_mb: int = Field(512, ge=1)


#: Secrets that ship in examples and documentation; production refuses them.
DEFAULT_TOKEN_SECRETS: frozenset[str] = frozenset(
    {"", "secret", "changeme", "change-me", "mmdx", "mmdx-development-secret", "development"}
)


class AuthConfig(_Section):
    """Bearer JWTs: HS256 with a shared secret, or RS256 with a public key / the IdP's JWKS URL."""

    mode: Literal["none", "token"] = "none"
    algorithm: Literal["HS256", "RS256"] = "HS256"
    token_secret: str | None = None  #: HS256 (set it by environment: MMDX_AUTH__TOKEN_SECRET)
    public_key: Path | None = None  #: RS256: PEM public key
    jwks_url: str | None = None  #: RS256: the IdP's JWKS document
    private_key: Path | None = None  #: RS256: only for ``mmdx token`` (local use)
    issuer: str = "mmdx"
    audience: str = "mmdx"
    roles_claim: str = "roles"
    token_ttl_s: int = Field(3600, gt=0)
    cookie_secure: bool = False  #: mark the pages' session cookie Secure (behind HTTPS)

    @model_validator(mode="after")
    def _keys_for_algorithm(self) -> AuthConfig:
        if self.mode != "token":
            return self
        if self.algorithm == "HS256" and not self.token_secret:
            raise ValueError("auth.mode 'token' with HS256 needs auth.token_secret")
        if self.algorithm == "RS256" and not (self.public_key or self.jwks_url):
            raise ValueError("auth.algorithm RS256 needs auth.public_key or auth.jwks_url")
        return self


class DeidConfig(_Section):
    """PS3.15 Basic Application Level Confidentiality Profile options."""

    retain_longitudinal_temporal: bool = False
    clean_descriptors: bool = True
    keep_mapping: bool = False
    mapping_path: Path | None = None
    burned_in_annotation: Literal["refuse", "mark"] = "refuse"
    #: secret mixed into replacement UIDs and patient pseudonyms so that re-runs match but nobody without
    #: the secret can recompute them from an original UID (set it by environment: MMDX_DEID__SALT)
    salt: str | None = None


class LimitsConfig(_Section):
    """Bounds on what one input or one peer may cost; beyond them an input is refused with its reason.

    Declared sizes are checked against these before anything is allocated, so a crafted header
    cannot make mmdx reserve gigabytes; a refused input is quarantined with the limit it hit.
    """

    max_object_bytes: int = Field(2 << 30, ge=1024)  #: one file, archive member or received DICOM object
    max_buffered_bytes: int = Field(64 << 20, ge=64 << 10)  #: a DIMSE message held in memory, per association
    max_associations_per_peer: int = Field(4, ge=1)  #: open connections from one IP address
    association_request_timeout_s: float = Field(10.0, gt=0)  #: ARTIM: from connect to A-ASSOCIATE-RQ
    idle_timeout_s: float = Field(60.0, gt=0)  #: an association that sends nothing for this long is aborted
    max_archive_ratio: float = Field(100.0, gt=1)  #: expanded/compressed size of a zip member
    max_archive_bytes: int = Field(16 << 30, ge=1024)  #: all members of one zip archive, expanded
    #: samples of one ECG analysed whole, all leads (12-lead 500 Hz: 33 min in ~1.1 GB); see ecg_window_s
    max_ecg_samples: int = Field(12_000_000, ge=1000)
    #: window of a recording over max_ecg_samples (WFDB: analysed window by window, ``ecg.holter``)
    ecg_window_s: float = Field(60.0, ge=10.0, le=3600.0)
    max_ecg_hours: float = Field(168.0, gt=0)  #: a windowed recording longer than this is refused
    parse_timeout_s: float = Field(60.0, gt=0)  #: reading one non-DICOM input (ECG formats), in a child process
    parse_memory_bytes: int = Field(4 << 30, ge=256 << 20)  #: address space of that child process


class BatchConfig(_Section):
    """``mmdx batch`` defaults (each has a command-line option that overrides it)."""

    engine: Literal["local", "ray"] = "local"  #: local process pool, or a Ray cluster
    workers: int | None = Field(None, ge=1)  #: parallel worker processes (Ray: tasks in flight); None: usable cores
    ray_address: str | None = None  #: a running Ray cluster ("host:6379"); None starts a local one
    #: GPU share each Ray worker requests (an actor holding the loaded models; Ray sets CUDA_VISIBLE_DEVICES)
    ray_gpus_per_worker: float = Field(0.0, ge=0)
    in_flight_per_worker: int = Field(2, ge=1)  #: items queued per worker (bounds the run's memory)
    progress_every_s: float = Field(10.0, gt=0)  #: log-line interval when the output is not a terminal


class OrdersConfig(_Section):
    """Order intake: HL7 ORM/OMI listener, FHIR ServiceRequest polling, Modality Worklist, matching."""

    mllp_host: str = "127.0.0.1"
    mllp_port: int = Field(2575, ge=1, le=65535)  #: ``mmdx orders listen``
    run_listener: bool = False  #: also run the HL7 order listener inside ``mmdx serve``
    fhir_url: str | None = None  #: FHIR server polled for ServiceRequests (``mmdx orders poll``)
    fhir_authorization: str | None = None  #: HTTP Authorization header for it; better set by environment
    poll_interval_s: float = Field(60.0, gt=0)
    worklist: DicomPeer | None = None  #: Modality Worklist SCP asked by accession number for unknown orders
    calling_ae_title: str = "MMDX"
    match_window_days: int = Field(1, ge=0)  #: weaker match: same patient + procedure within this many days


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


class _YamlFiles(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], files: list[Path]) -> None:
        super().__init__(settings_cls)
        self._files = files

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for path in self._files:
            merged = _deep_merge(merged, _read_yaml(path))
        return merged


class Settings(BaseSettings):
    """All of mmdx's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="MMDX_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    profile: Literal["development", "production"] = "development"
    uid_root: str = "2.25"
    storage: StorageConfig = Field(default_factory=StorageConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    scp: ScpConfig = Field(default_factory=ScpConfig)
    pull: PullConfig = Field(default_factory=PullConfig)
    ecg: EcgConfig = Field(default_factory=EcgConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    model_routing: list[RouteRule] = Field(default_factory=list)
    destinations: dict[str, Destination] = Field(default_factory=dict)
    delivery_routing: list[DeliveryRule] = Field(default_factory=list)
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    deid: DeidConfig = Field(default_factory=DeidConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    site: SiteConfig = Field(default_factory=SiteConfig)
    orders: OrdersConfig = Field(default_factory=OrdersConfig)

    @field_validator("uid_root")
    @classmethod
    def _uid_root(cls, v: str) -> str:
        try:
            check_uid("Settings", "uid_root", v)
        except RecordError as exc:
            raise ValueError(str(exc)) from None
        if len(v) > 40:
            raise ValueError(f"uid_root {v!r} is too long (> 40 chars leaves too few digits for derived UIDs)")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        for rule in self.delivery_routing:
            for name in rule.destinations:
                if name not in self.destinations:
                    raise ValueError(f"delivery_routing names destination {name!r}, not defined in destinations")
                kind = self.destinations[name].type
                refused = sorted(set(rule.artefacts) - DESTINATION_ACCEPTS[kind])
                if refused:
                    raise ValueError(f"delivery_routing sends {refused} to {name!r}, a {kind} destination cannot carry")
        if any(d.storage_commitment for d in self.destinations.values()) and self.bridge.commitment_port is None:
            raise ValueError("a destination uses storage_commitment: set bridge.commitment_port for its reports")
        if self.profile == "production":
            if self.auth.mode == "none":
                raise ValueError("profile production needs auth.mode 'token'")
            secret = self.auth.token_secret
            if self.auth.algorithm == "HS256" and (
                secret is None or secret.strip().lower() in DEFAULT_TOKEN_SECRETS or len(secret) < 32
            ):
                raise ValueError(
                    "profile production refuses a default, empty or short auth.token_secret (expected >= 32 characters)"
                )
            if not self.scp.allowed_calling_aes:
                raise ValueError("profile production needs scp.allowed_calling_aes")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFiles(settings_cls, list(_PENDING_FILES)))


_PENDING_FILES: list[Path] = []


#: Sections whose cross-field errors must not echo their input (it holds secrets).
_SECTIONS_WITH_SECRETS = frozenset({"auth", "deid"})
#: Sections of named entries whose cross-field errors must not echo them either (a destination's ``authorization``).
_NAMED_WITH_SECRETS = frozenset({"destinations"})


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif not err["loc"] or (
            err["type"] == "value_error"
            and (key in _SECTIONS_WITH_SECRETS or (len(err["loc"]) == 2 and err["loc"][0] in _NAMED_WITH_SECRETS))
        ):
            lines.append(f"{key}: {err['msg']}")  # the input is a whole section (secrets): not repeated
        else:
            lines.append(f"key '{key}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def load_settings(
    config_file: Path | str | None = None, *, use_project_defaults: bool = True, **overrides: Any
) -> Settings:
    """Load and validate the configuration.

    Parameters
    ----------
    config_file:
        A YAML file (``--config``); falls back to ``$MMDX_CONFIG``.
    use_project_defaults:
        Read ``configs/default.yaml`` of the checkout first, when it exists.
    overrides:
        Section values that win over every other source (tests, CLI flags).
    """
    files: list[Path] = []
    default_yaml = PROJECT_CONFIG_DIR / "default.yaml"
    if use_project_defaults and default_yaml.is_file():
        files.append(default_yaml)
    chosen = config_file or os.environ.get("MMDX_CONFIG")
    if chosen:
        files.append(Path(chosen))
    for path in files:
        _read_yaml(path)  # fail early with the file name on a missing/invalid file
    _PENDING_FILES[:] = files
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = ", ".join(str(f) for f in files) or "defaults/environment"
        raise ConfigError(f"invalid configuration ({where}): {_format_validation_error(exc)}") from None
    finally:
        _PENDING_FILES.clear()
