"""Settings, defined once, mirroring registry:2's ``config.yml``.

Load order (distribution's ``configuration/parser.go`` semantics): defaults, then the YAML file, then
``REGISTRY_<SECTION>_<KEY>=value`` environment overrides applied to the parsed dict (values are YAML,
so ``true``/``1000`` get their types), then validation. Command-line flags are applied last by the CLI.
Sections Kura does not implement are refused when they would change security or behaviour (``auth``,
``proxy``, other storage drivers) and otherwise accepted and ignored, so existing files keep working.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from storage.gc.config import GCConfig, RetentionPolicy, UploadPurging

ENV_PREFIX = "REGISTRY_"
CONFIG_PATH_ENV = "REGISTRY_CONFIGURATION_PATH"
DEFAULT_ROOT = "/var/lib/registry"
SETTINGS_ENV = "KURA_SETTINGS_JSON"  # hands the resolved settings to worker processes
REFUSED = ("auth", "proxy", "redis", "notifications")
DRIVERS = ("filesystem", "inmemory")
STORAGE_OPTIONS = ("delete", "maintenance", "cache", "redirect", "tag")


class ConfigError(Exception):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class AccessLog(_Section):
    disabled: bool = False


class Log(_Section):
    level: str = "info"
    accesslog: AccessLog = AccessLog()


class Filesystem(_Section):
    rootdirectory: str | None = None


class Delete(_Section):
    enabled: bool = False


class ReadOnlyMode(_Section):
    enabled: bool = False


class Maintenance(_Section):
    readonly: ReadOnlyMode = ReadOnlyMode()
    uploadpurging: UploadPurging = UploadPurging()


class Storage(_Section):
    filesystem: Filesystem = Filesystem()
    delete: Delete = Delete()
    maintenance: Maintenance = Maintenance()

    def driver(self) -> str:
        """The storage driver named in the section (registry:2 takes the one key that is not an option)."""
        named = [key for key in (self.model_extra or {}) if key in DRIVERS]
        return named[0] if named else "filesystem"


class HTTP(_Section):
    addr: str = ":5000"
    host: str | None = None
    secret: str | None = None


class Catalog(_Section):
    maxentries: int = Field(1000, ge=1)


class Kura(_Section):
    """``kura:``, Kura's own settings (registry:2 ignores the section)."""

    gc: GCConfig = GCConfig()
    retention: list[RetentionPolicy] = Field(default_factory=list)


class Settings(_Section):
    version: str | float = "0.1"  # YAML reads the customary `version: 0.1` as a number
    log: Log = Log()
    storage: Storage = Storage()
    http: HTTP = HTTP()
    catalog: Catalog = Catalog()
    kura: Kura = Kura()

    @property
    def root(self) -> str:
        return self.storage.filesystem.rootdirectory or DEFAULT_ROOT

    def listen(self) -> tuple[str, int]:
        host, _, port = self.http.addr.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"http.addr must be [host]:port, got {self.http.addr!r}")
        return host.strip("[]") or "0.0.0.0", int(port)


def apply_env(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``REGISTRY_STORAGE_DELETE_ENABLED=true`` sets ``storage.delete.enabled``."""
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX) or key == CONFIG_PATH_ENV:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("_")
        if not all(path):
            continue
        node = document
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                # registry:2 names a storage driver as a bare string ("storage: filesystem")
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(environ[key]) if environ[key] != "" else ""
    return document


def load(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_PATH_ENV) or None
    document: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"configuration {path} must be a mapping")
        document = loaded or {}
    document = apply_env(document, environ)
    _refuse_unsupported(document)
    try:
        return Settings.model_validate(document)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def _refuse_unsupported(document: dict[str, Any]) -> None:
    for section in REFUSED:
        if document.get(section):
            raise ConfigError(f"configuration section {section!r} is not supported by Kura yet; refusing to start")
    storage = document.get("storage") or {}
    if not isinstance(storage, dict):
        raise ConfigError("storage must be a mapping")
    other = sorted(k for k in storage if k not in DRIVERS and k not in STORAGE_OPTIONS)
    if other:
        raise ConfigError(f"storage driver {other[0]!r} is not supported: Kura offers {' and '.join(DRIVERS)} storage")
    named = [k for k in storage if k in DRIVERS and (k != "filesystem" or storage[k] is not None)]
    if len(named) > 1:
        raise ConfigError(f"storage names more than one driver ({', '.join(named)}); choose one")
