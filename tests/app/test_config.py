from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import ConfigError, load

REPO = Path(__file__).resolve().parents[2]


def test_defaults_without_a_file() -> None:
    s = load(None, environ={})
    assert s.listen() == ("0.0.0.0", 5000)
    assert s.root == "/var/lib/registry"
    assert s.storage.delete.enabled is False  # registry:2's default
    assert s.catalog.maxentries == 1000


def test_registry2_image_config_loads() -> None:
    s = load(str(REPO / "deploy" / "config.yml"), environ={})
    assert s.root == "/var/lib/registry"
    assert s.storage.delete.enabled is False  # registry:2's image leaves deletes off too
    assert s.listen() == ("0.0.0.0", 5000)


def test_env_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /a\nhttp:\n  addr: 127.0.0.1:5001\n")
    s = load(
        str(config),
        environ={
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/b",
            "REGISTRY_STORAGE_DELETE_ENABLED": "true",
            "REGISTRY_HTTP_ADDR": ":6000",
            "REGISTRY_CATALOG_MAXENTRIES": "50",
            "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED": "true",
            "UNRELATED": "x",
        },
    )
    assert s.root == "/b"
    assert s.storage.delete.enabled is True
    assert s.listen() == ("0.0.0.0", 6000)
    assert s.catalog.maxentries == 50
    assert s.storage.maintenance.readonly.enabled is True


def test_configuration_path_from_env(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("storage:\n  filesystem:\n    rootdirectory: /from-env-path\n")
    assert load(None, environ={"REGISTRY_CONFIGURATION_PATH": str(config)}).root == "/from-env-path"


@pytest.mark.parametrize(
    "text, message",
    [
        ("auth:\n  htpasswd:\n    realm: x\n    path: /p\n", "auth"),
        ("proxy:\n  remoteurl: https://x\n", "proxy"),
        ("storage:\n  s3:\n    bucket: b\n", "s3"),
        ("- a list\n", "mapping"),
        ("storage: [\n", "YAML"),
        ("catalog:\n  maxentries: 0\n", "invalid"),
    ],
)
def test_refused_configurations(tmp_path: Path, text: str, message: str) -> None:
    """Features Kura lacks are refused loudly: an ignored 'auth' would leave the registry open."""
    config = tmp_path / "c.yml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(str(config), environ={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(os.path.join("/nonexistent", "config.yml"), environ={})


def test_bad_addr() -> None:
    s = load(None, environ={"REGISTRY_HTTP_ADDR": "nohost"})
    with pytest.raises(ConfigError):
        s.listen()
