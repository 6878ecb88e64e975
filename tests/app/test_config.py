from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import ConfigError, Settings, load

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
        ("auth:\n  silly:\n    realm: x\n    service: y\n", "auth.silly .*test-only"),
        ("auth:\n  ldap:\n    url: x\n", "auth.ldap is not supported"),
        (
            "auth:\n  htpasswd:\n    realm: x\n    path: /p\n  token:\n    realm: r\n    service: s\n    issuer: i\n",
            "not both",
        ),
        ("auth:\n  htpasswd:\n    realm: x\n    pathh: /p\n", "invalid"),
        ("auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n    signingalgorithms: [none]\n", "none"),
        ("kura:\n  auth:\n    repositories:\n      a: {policies: [{users: [x], actions: [fly]}]}\n", "invalid"),
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


def test_inmemory_driver_is_chosen_and_needs_one_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yml"
    config.write_text("storage:\n  inmemory:\n")
    assert load(str(config), environ={}).storage.driver() == "inmemory"
    assert load(None, environ={}).storage.driver() == "filesystem"
    from app.cli import main

    assert main(["serve", "--config", str(config), "--root", str(tmp_path), "--workers", "2", "--port", "1"]) == 2
    assert "--workers 1" in capsys.readouterr().err


def test_registry2_auth_sections_load(tmp_path: Path) -> None:
    """registry:2's htpasswd and token sections, unchanged, plus Kura's own policies beside them."""
    config = tmp_path / "c.yml"
    config.write_text(
        "version: 0.1\nauth:\n  htpasswd:\n    realm: Registry Realm\n    path: /auth/htpasswd\n"
        "kura:\n  auth:\n    admins: [root]\n    repositories:\n      'team/**':\n"
        "        policies: [{users: [alice], actions: [pull, create]}]\n        anonymous: [pull]\n"
    )
    s = load(str(config), environ={})
    assert s.auth.htpasswd is not None and s.auth.htpasswd.realm == "Registry Realm"
    assert s.kura.auth.repositories["team/**"].anonymous == ["pull"]
    config.write_text(
        "auth:\n  token:\n    realm: https://auth.example/token\n    service: registry\n    issuer: acme\n"
        "    rootcertbundle: /certs/bundle.pem\n    autoredirect: false\n    signingalgorithms: [ES256, RS256]\n"
        "    jwks: /certs/jwks.json\n"
    )
    s = load(str(config), environ={"REGISTRY_AUTH_TOKEN_SERVICE": "other"})
    assert s.auth.token is not None and s.auth.token.service == "other"
    assert s.auth.token.signingalgorithms == ["ES256", "RS256"]
    assert Settings.model_validate_json(s.model_dump_json()) == s  # what workers receive
    assert not load(None, environ={"REGISTRY_AUTH": ""}).auth.enabled


def test_operations_keys() -> None:
    """http.secret, http.headers, http.debug and health read as registry:2 writes them."""
    s = load(
        None,
        environ={
            "REGISTRY_HTTP_SECRET": "s3cret",
            "REGISTRY_HTTP_DEBUG_ADDR": ":5001",
            "REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED": "true",
            "REGISTRY_HEALTH_STORAGEDRIVER_ENABLED": "true",
            "REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL": "1m30s",
            "REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD": "3",
        },
    )
    assert s.http.secret == "s3cret"
    assert s.http.debug_listen() == ("0.0.0.0", 5001)
    assert (s.http.debug.prometheus.enabled, s.http.debug.prometheus.path) == (True, "/metrics")
    assert (s.health.storagedriver.interval, s.health.storagedriver.threshold) == (90.0, 3)
    assert s.http.headers == {"X-Content-Type-Options": ["nosniff"]}


@pytest.mark.parametrize(
    "value, seconds", [("10s", 10.0), ("500ms", 0.5), ("1h2m", 3720.0), ("1.5s", 1.5), (2_000_000_000, 2.0)]
)
def test_go_durations(value: object, seconds: float) -> None:
    """Go's duration strings, or bare integer nanoseconds as YAML gives them."""
    s = Settings.model_validate({"health": {"storagedriver": {"interval": value}}})
    assert s.health.storagedriver.interval == seconds
    # the workers get the settings back from JSON: the value must survive the round trip
    assert Settings.model_validate_json(s.model_dump_json()).health.storagedriver.interval == seconds


def test_a_bad_duration_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration: health\.storagedriver\.interval: .*10s") as e:
        load(None, environ={"REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL": "ten seconds"})
    assert "\n" not in str(e.value) and "pydantic" not in str(e.value)


def test_headers_take_a_lone_string_or_a_list(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("http:\n  headers:\n    X-A: one\n    X-B: [two, three]\n")
    assert load(str(config), environ={}).http.headers == {"X-A": ["one"], "X-B": ["two", "three"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff\xfe\x00bin", "not valid YAML"),
        (b"a: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (
            b"a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
            + b"".join(b"a%d: &a%d [%s]\n" % (i, i, b", ".join([b"*a%d" % (i - 1)] * 9)) for i in range(1, 10))
            + b"http:\n  headers:\n    X: *a9\n",
            "expands to more than",
        ),
    ],
    ids=["not-utf8", "deep", "alias-bomb"],
)
def test_a_config_that_cannot_be_read_sensibly_is_one_clear_error(tmp_path: Path, text: bytes, message: str) -> None:
    """Each was a traceback; the alias bomb (10 levels of 9) grew a worker past a gigabyte."""
    config = tmp_path / "config.yml"
    config.write_bytes(text)
    with pytest.raises(ConfigError, match=message):
        load(str(config), {})
