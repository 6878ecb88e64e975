"""``kura`` command line: ``kura serve`` (more commands join here)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import uvicorn

from app.config import DEFAULT_ROOT, ConfigError, Settings, load
from app.main import create_app

SETTINGS_ENV = "KURA_SETTINGS_JSON"  # hands the resolved settings to worker processes
MAX_DEFAULT_WORKERS = 4  # each worker holds ~50 MB; more rarely pays on a registry's I/O-bound work


def default_workers() -> int:
    """One worker per core, up to a few: a single Python process cannot use a second core."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def default_root() -> str:
    """registry:2's /var/lib/registry when we may write there, else a per-user directory."""
    try:
        os.makedirs(DEFAULT_ROOT, exist_ok=True)
        if os.access(DEFAULT_ROOT, os.W_OK | os.X_OK):
            return DEFAULT_ROOT
    except OSError:
        pass
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "kura")


def resolve(args: argparse.Namespace) -> Settings:
    settings = load(args.config)
    if args.root:
        settings.storage.filesystem.rootdirectory = args.root
    elif not settings.storage.filesystem.rootdirectory:
        settings.storage.filesystem.rootdirectory = default_root()
    settings.storage.filesystem.rootdirectory = os.path.abspath(settings.root)
    host, port = settings.listen()
    if args.host or args.port:
        settings.http.addr = f"{args.host or host}:{args.port or port}"
    return settings


def app_from_env() -> object:
    """uvicorn factory for worker processes (``--workers`` > 1)."""
    return create_app(Settings.model_validate_json(os.environ[SETTINGS_ENV]))


def serve(args: argparse.Namespace) -> int:
    settings = resolve(args)
    os.makedirs(os.path.join(settings.root, "docker", "registry", "v2"), exist_ok=True)
    host, port = settings.listen()
    workers = args.workers or default_workers()
    print(
        f"kura: serving http://{host}:{port}/v2/ with root {settings.root} ({workers} worker{'s' * (workers > 1)})",
        file=sys.stderr,
        flush=True,
    )
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "log_level": settings.log.level.lower(),
        "access_log": not settings.log.accesslog.disabled,
        "server_header": False,
        "workers": workers,
    }
    tls = settings.http.model_extra.get("tls") if settings.http.model_extra else None
    if isinstance(tls, dict) and tls.get("certificate"):
        options |= {"ssl_certfile": tls["certificate"], "ssl_keyfile": tls.get("key")}
    if workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run("app.cli:app_from_env", factory=True, **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kura", description="Kura, a private container registry (registry:2 compatible)."
    )
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="run the registry")
    p.add_argument("--config", help="registry:2-style config.yml (default: $REGISTRY_CONFIGURATION_PATH, else none)")
    p.add_argument("--root", help="storage root (storage.filesystem.rootdirectory)")
    p.add_argument("--host", help="listen address (default from http.addr, else all interfaces)")
    p.add_argument("--port", type=int, help="listen port (default from http.addr, else 5000)")
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("KURA_WORKERS", "0")),
        help=f"worker processes (default: one per core, at most {MAX_DEFAULT_WORKERS}; env KURA_WORKERS); "
        "upload state is on disk, so any number works",
    )
    p.set_defaults(func=serve)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"kura: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
