from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import PROJECT_CONFIG_DIR, Settings, load_settings
from core.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("MMDX_"):
            monkeypatch.delenv(key)


def test_embedded_defaults_are_sqlite_and_local_folders() -> None:
    s = load_settings(use_project_defaults=False)
    assert s.database.url.startswith("sqlite:///var/")
    assert s.storage.store_dir == Path("var/store")
    assert s.profile == "development"


def test_default_yaml_matches_embedded_defaults() -> None:
    """configs/default.yaml documents the defaults; it must not silently differ from them."""
    assert load_settings() == load_settings(use_project_defaults=False)
    assert set(yaml.safe_load((PROJECT_CONFIG_DIR / "default.yaml").read_text())) <= set(Settings.model_fields)


def test_config_file_then_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text("scp:\n  port: 11200\n  ae_title: SITE\n")
    assert load_settings(cfg).scp.port == 11200
    monkeypatch.setenv("MMDX_SCP__PORT", "11300")
    s = load_settings(cfg)
    assert (s.scp.port, s.scp.ae_title) == (11300, "SITE")
    monkeypatch.setenv("MMDX_CONFIG", str(cfg))
    assert load_settings().scp.ae_title == "SITE"


def test_unknown_key_is_an_error_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("scp:\n  prot: 104\n")
    with pytest.raises(ConfigError, match=r"unknown key 'scp\.prot'"):
        load_settings(cfg)
    cfg.write_text("databse:\n  url: x\n")
    with pytest.raises(ConfigError, match="unknown key 'databse'"):
        load_settings(cfg)


def test_wrong_type_is_an_error_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMDX_SCP__PORT", "eleven")
    with pytest.raises(ConfigError, match=r"key 'scp\.port'"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("scp: [\n", "not valid YAML"),
        ("uid_root: 1.2.03\n", "uid_root"),
        ("scp:\n  ae_title: THIS_AE_TITLE_IS_TOO_LONG\n", "scp.ae_title"),
        ("delivery_routing:\n  - artefacts: [sr]\n    destinations: [pacs]\n", "destination 'pacs'"),
        ("profile: production\n", "production needs auth"),
    ],
)
def test_invalid_files_fail_at_startup(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg)


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        s.scp.port = 1  # type: ignore[misc]
