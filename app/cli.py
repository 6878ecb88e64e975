"""``kura`` command line: ``kura serve``, ``inspect``, ``demo``, ``garbage-collect``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence

from app.config import DEFAULT_ROOT, SETTINGS_ENV, ConfigError, Settings, load

# Commands import what they use inside their own function: ``kura inspect`` need not load a server.


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


def resolve_storage(config: str | None, root: str | None) -> Settings:
    settings = load(config)
    if root:
        settings.storage.filesystem.rootdirectory = root
    elif not settings.storage.filesystem.rootdirectory:
        settings.storage.filesystem.rootdirectory = default_root()
    settings.storage.filesystem.rootdirectory = os.path.abspath(settings.root)
    return settings


def resolve(args: argparse.Namespace) -> Settings:
    settings = resolve_storage(args.config, args.root)
    host, port = settings.listen()
    if args.host or args.port:
        settings.http.addr = f"{args.host or host}:{args.port or port}"
    return settings


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per worker, all on ``host:port`` with SO_REUSEPORT.

    The kernel then spreads new connections evenly over the workers. On one shared socket the worker
    that wakes first accepts the whole backlog (libuv accepts until it is empty), so a burst of
    connections, such as a CI job's or wrk's 8, often all landed on one worker and one core.
    """
    # SO_REUSEPORT would also let us join another server of this user on the port without a word:
    # a plain bind first says whether the port is free.
    _bind(host, port, reuse_port=False).close()
    return [_bind(host, port, reuse_port=True) for _ in range(count)]


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening socket with uvicorn's own choices: SO_REUSEADDR, backlog 2048."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(args: argparse.Namespace) -> int:
    settings = resolve(args)
    os.makedirs(os.path.join(settings.root, "docker", "registry", "v2"), exist_ok=True)
    host, port = settings.listen()
    workers = args.workers or default_workers()
    if workers > 1:
        sockets = listening_sockets(host, port, workers)
    print(
        f"kura: serving http://{host}:{port}/v2/ with root {settings.root} ({workers} worker{'s' * (workers > 1)})",
        file=sys.stderr,
        flush=True,
    )
    if workers > 1:
        # Become the supervisor, a bare interpreter that keeps the workers running (app/supervisor.py).
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        argv = [sys.executable, "-m", "app.supervisor", *(str(sock.fileno()) for sock in sockets)]
        os.execv(sys.executable, argv)
    import uvicorn

    from app.main import served_app
    from app.worker import uvicorn_options

    uvicorn.run(served_app(settings), host=host, port=port, **uvicorn_options(settings))
    return 0


def split_reference(text: str) -> tuple[str | None, str, str]:
    """``[host[:port]/]repo(:tag|@digest)`` -> (host or None, repository, tag or digest)."""
    host = None
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, text = first, rest
    if "@" in text:
        repository, reference = text.split("@", 1)
    else:
        repository, _, reference = text.rpartition(":") if ":" in text else (text, "", "latest")
    return host, repository, reference or "latest"


def inspect(args: argparse.Namespace) -> int:
    import httpx

    from app.images import explain
    from app.images.remote import RemoteSource
    from storage import Registry
    from storage.drivers import FilesystemDriver
    from storage.errors import StorageError

    host, repository, reference = split_reference(args.reference)

    async def run() -> tuple[explain.Report, str]:
        if args.root:
            registry = Registry(FilesystemDriver(args.root))
            try:
                source: explain.Source = explain.LocalSource(registry)
                return await explain.explain(source, repository, reference, args.platform), repository
            finally:
                await registry.close()
        base = f"{'https' if args.tls else 'http'}://{host or 'localhost:5000'}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            report = await explain.explain(RemoteSource(client), repository, reference, args.platform)
        return report, f"{host or 'localhost:5000'}/{repository}"

    try:
        report, shown = asyncio.run(run())
    except (StorageError, httpx.HTTPError) as exc:
        print(f"kura inspect: {args.reference}: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(explain.render(report, shown, reference), end="")
    return 0


def demo(args: argparse.Namespace) -> int:
    import httpx

    from app.images.demo import Demo, push_all

    base = args.registry.rstrip("/")
    host = base.split("://", 1)[-1]

    async def run() -> list[tuple[Demo, str]]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            return await push_all(client, host)

    try:
        pushed = asyncio.run(run())
    except httpx.HTTPError as exc:
        print(f"kura demo: cannot push to {base}: {exc}", file=sys.stderr)
        return 1
    for item, digest in pushed:
        print(f"{host}/{item.repository}:{item.tag}  {digest}\n    {item.what}")
    print(f"\nExplain one: kura inspect {host}/demo/app:legacy")
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

    i = commands.add_parser("inspect", help="explain an image, index, attestation or build cache")
    i.add_argument("reference", help="host:port/repo:tag, repo@sha256:..., or repo:tag with --root")
    i.add_argument("--root", help="read a storage root on this machine instead of a registry")
    i.add_argument("--platform", help="also check that the index has an entry for this platform (os/arch)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--tls", action="store_true", help="talk HTTPS to the registry")
    i.set_defaults(func=inspect)

    d = commands.add_parser("demo", help="push BuildKit-realistic demo images (attestations, caches, artifacts)")
    d.add_argument("--registry", default="http://localhost:5000", help="registry URL (default http://localhost:5000)")
    d.set_defaults(func=demo)

    from app import gc  # its parser only: the collector is imported when the command runs

    gc.add_parser(commands)
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
