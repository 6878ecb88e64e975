"""Settings, defined once, mirroring registry:2's ``config.yml``.

Load order (distribution's ``configuration/parser.go`` semantics): defaults, then the YAML file, then
``REGISTRY_<SECTION>_<KEY>=value`` environment overrides applied to the parsed dict (values are YAML,
so ``true``/``1000`` get their types), then validation. Command-line flags are applied last by the CLI.
Sections Kura does not implement are refused when they would change security or behaviour (``proxy``,
other storage drivers, auth kinds other than htpasswd and token) and otherwise accepted and ignored, so
existing files keep working.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from app.auth.settings import Auth, KuraAuth
from app.notify.config import Notifications
from storage import StorageDriver, drivers
from storage.gc.config import GCConfig, RetentionPolicy, UploadPurging

ENV_PREFIX = "REGISTRY_"
CONFIG_PATH_ENV = "REGISTRY_CONFIGURATION_PATH"
DEFAULT_ROOT = "/var/lib/registry"
SETTINGS_ENV = "KURA_SETTINGS_JSON"  # hands the resolved settings to worker processes
REFUSED = ("proxy", "redis")
AUTH_KINDS = ("htpasswd", "token")
DRIVERS = drivers.NAMES  # the storage drivers Kura ships, one list for config and driver factory
STORAGE_OPTIONS = ("delete", "maintenance", "cache", "redirect", "tag")


class ConfigError(Exception):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: object) -> object:
    """A Go duration as registry:2 reads one (``10s``, ``1m30s``, or bare integer nanoseconds) -> seconds.

    A float is already seconds: the settings handed to workers as JSON come back that way.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        return value
    if isinstance(value, int):
        return value / 1e9
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"invalid duration {value!r} (examples: 10s, 500ms, 1m30s)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


def _level(value: object) -> object:
    # registry:2 lower-cases the level and knows these four; logrus spells warning "warn"
    return value.lower() if isinstance(value, str) else value


class AccessLog(_Section):
    disabled: bool = False


class Log(_Section):
    level: Annotated[Literal["error", "warn", "info", "debug"], BeforeValidator(_level)] = "info"
    formatter: Literal["text", "json", "logstash"] = "text"
    fields: dict[str, Any] = {}
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


class Prometheus(_Section):
    enabled: bool = False
    path: str = "/metrics"


class Debug(_Section):
    addr: Address | None = None  # registry:2's debug server: /debug/health, and metrics when enabled
    prometheus: Prometheus = Prometheus()


def _headers(value: object) -> object:
    """``http.headers`` is Go's http.Header: each name maps to a list of values (a lone string is one)."""
    if not isinstance(value, dict):
        return value
    return {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in value.items()}


Address = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]  # YAML reads 5000 as a number


class HTTP(_Section):
    addr: Address = ":5000"
    host: str | None = None
    secret: str | None = None  # accepted as registry:2 does; Kura signs nothing with it (upload state is on disk)
    # registry:2's image ships this in its config.yml; a config that sets http.headers replaces it, as there
    headers: Annotated[dict[str, list[str]], BeforeValidator(_headers)] = {"X-Content-Type-Options": ["nosniff"]}
    debug: Debug = Debug()

    def debug_listen(self) -> tuple[str, int] | None:
        return None if not self.debug.addr else _host_port("http.debug.addr", self.debug.addr)


class StorageDriverHealth(_Section):
    enabled: bool = False
    interval: Duration = 10.0  # registry:2's defaultCheckInterval, which 0 also means
    threshold: int = Field(0, ge=0)  # failures in a row before the check reports; 0 reports the first one


class Health(_Section):
    storagedriver: StorageDriverHealth = StorageDriverHealth()


class Catalog(_Section):
    maxentries: int = Field(1000, ge=1)


class UI(_Section):
    enabled: bool = True  # the web UI at / (registry:2 answers 404 there, and no client looks there)


class Kura(_Section):
    """``kura:``, Kura's own settings (registry:2 ignores the section)."""

    auth: KuraAuth = KuraAuth()
    gc: GCConfig = GCConfig()
    retention: list[RetentionPolicy] = Field(default_factory=list)
    ui: UI = UI()


class Settings(_Section):
    version: str | float = "0.1"  # YAML reads the customary `version: 0.1` as a number
    log: Log = Log()
    storage: Storage = Storage()
    http: HTTP = HTTP()
    catalog: Catalog = Catalog()
    auth: Auth = Auth()
    health: Health = Health()
    notifications: Notifications = Notifications()
    kura: Kura = Kura()  # Kura's own keys; registry:2 ignores the section

    @property
    def root(self) -> str:
        return self.storage.filesystem.rootdirectory or DEFAULT_ROOT

    def open_driver(self) -> StorageDriver:
        """The storage driver the ``storage`` section names, on its root (close it when done)."""
        return drivers.create(self.storage.driver(), {"rootdirectory": self.root})

    def listen(self) -> tuple[str, int]:
        return _host_port("http.addr", self.http.addr)


def _host_port(key: str, addr: str) -> tuple[str, int]:
    host, colon, port = addr.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        hint = f" (did you mean :{addr}?)" if addr.isdigit() else ""
        raise ConfigError(f"{key} must be [host]:port, got {addr!r}{hint}")
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


MAX_VALUES = 100_000  # a config.yml has a few hundred


def _expanded_size(node: object) -> int:
    """How many values ``node`` holds once its shared (aliased) parts are counted at each use: each
    distinct node's size is computed once, so a bomb costs no more than its text."""
    sizes: dict[int, int] = {}

    def size(value: object) -> int:
        if not isinstance(value, dict | list):
            return 1
        known = sizes.get(id(value))
        if known is None:
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            known = sizes[id(value)] = 1 + sum(size(child) for child in children)
        return known

    return size(node)


def load(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_PATH_ENV) or None
    document: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
            expanded = _expanded_size(loaded)
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"configuration {path} is not valid YAML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"configuration {path} is nested too deeply") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"configuration {path} must be a mapping")
        if expanded > MAX_VALUES:
            # YAML aliases share one node where they are used; everything that walks the settings
            # (validation, the copy to each worker) expands them: "billion laughs"
            raise ConfigError(f"configuration {path} expands to more than {MAX_VALUES} values (YAML aliases)")
        document = loaded or {}
    document = apply_env(document, environ)
    _refuse_unsupported(document)
    try:
        return Settings.model_validate(document)
    except ValidationError as exc:
        # One line per problem, named by its config key, without pydantic's links
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def _refuse_unsupported(document: dict[str, Any]) -> None:
    for section in REFUSED:
        if document.get(section):
            raise ConfigError(f"configuration section {section!r} is not supported by Kura yet; refusing to start")
    if "auth" in document and not document["auth"]:
        del document["auth"]  # "auth:" with nothing under it, as registry:2 reads it: no auth
    auth = document.get("auth") or {}
    if not isinstance(auth, dict):
        raise ConfigError("auth must be a mapping")
    for kind in auth:
        if kind not in AUTH_KINDS:
            raise ConfigError(
                f"auth.{kind} is not supported by Kura (only htpasswd and token); refusing to start"
                + (": silly is registry:2's test-only scheme" if kind == "silly" else "")
            )
    storage = document.get("storage") or {}
    if not isinstance(storage, dict):
        raise ConfigError("storage must be a mapping")
    other = sorted(k for k in storage if k not in DRIVERS and k not in STORAGE_OPTIONS)
    if other:
        raise ConfigError(f"storage driver {other[0]!r} is not supported: Kura offers {' and '.join(DRIVERS)} storage")
    named = [k for k in storage if k in DRIVERS and (k != "filesystem" or storage[k] is not None)]
    if len(named) > 1:
        raise ConfigError(f"storage names more than one driver ({', '.join(named)}); choose one")
