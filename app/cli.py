"""``kura`` command line: ``kura serve``, ``inspect``, ``demo``, ``garbage-collect``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from app import gc, multiproc
from app.config import DEFAULT_ROOT, SETTINGS_ENV, ConfigError, Settings, load

if TYPE_CHECKING:
    from app.images.explain import Report

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


def workers_from(value: str, source: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{source} must be a whole number of worker processes (1 or more), got {value!r}")
    return int(value)


def _workers_argument(value: str) -> int:
    try:
        return workers_from(value, "--workers")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve_storage(config: str | None, root: str | None) -> Settings:
    """The settings of ``config`` with the storage root resolved (``--root`` wins, then the file, then
    the default), as every command that opens the store needs them."""
    settings = load(config)
    if root:
        settings.storage.filesystem.rootdirectory = root
    elif not settings.storage.filesystem.rootdirectory:
        settings.storage.filesystem.rootdirectory = default_root()
    settings.storage.filesystem.rootdirectory = os.path.abspath(settings.root)
    return settings


def resolve(args: argparse.Namespace) -> Settings:
    if args.config and args.config_file and args.config != args.config_file:
        raise ConfigError(f"two configuration files given: {args.config_file} and --config {args.config}")
    settings = resolve_storage(args.config or args.config_file, args.root)
    host, port = settings.listen()
    if args.host or args.port is not None:
        settings.http.addr = f"{args.host or host}:{port if args.port is None else args.port}"
    return settings


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per worker, all on ``host:port`` with SO_REUSEPORT.

    The kernel then spreads new connections evenly over the workers. On one shared socket the worker
    that wakes first accepts the whole backlog (libuv accepts until it is empty), so a burst of
    connections, such as a CI job's or wrk's 8, often all landed on one worker and one core.
    """
    if port == 0:
        # The kernel picks a free port for the first socket; the others join it.
        first = _bind(host, 0, reuse_port=count > 1)
        return [first, *_siblings(first, count - 1)]
    # SO_REUSEPORT would also let us join another server of this user on the port without a word:
    # a plain bind first says whether the port is free (and is the socket itself for one worker).
    first = _bind(host, port, reuse_port=False)
    if count == 1:
        return [first]
    first.close()
    return [_bind(host, port, reuse_port=True) for _ in range(count)]


def inherited_sockets(fd: int, count: int, option: str) -> list[socket.socket]:
    """The listening socket a parent bound for us (``--fd``), and what the other workers listen on.

    When the parent set SO_REUSEPORT on it, each other worker gets a socket of its own on the same
    address, as ``listening_sockets`` makes them; otherwise all workers accept on the one socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"{option} {fd}: not an open socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.close()
        raise ConfigError(f"{option} {fd}: not a listening TCP socket")
    sock.set_inheritable(True)
    if count == 1:
        return [sock]
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
        return [sock, *_siblings(sock, count - 1)]
    return [sock] * count


def _siblings(first: socket.socket, count: int) -> list[socket.socket]:
    host, port = first.getsockname()[:2]
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


def make_root(root: str) -> None:
    try:
        os.makedirs(os.path.join(root, "docker", "registry", "v2"), exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"storage root {root} is not a directory (or has a file where a directory goes)") from None
    except OSError as exc:
        raise ConfigError(f"cannot create the storage root {root}: {exc.strerror}") from None


def _address(host: str, port: int) -> str:
    """``host:port`` as config.yml and URLs write it: an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(args: argparse.Namespace) -> int:
    settings = resolve(args)
    make_root(settings.root)
    if settings.auth.enabled:
        from app.auth.configure import check

        check(settings)
    host, port = settings.listen()
    debug = settings.http.debug_listen()
    in_memory = settings.storage.driver() == "inmemory"
    default = 1 if in_memory else default_workers()
    workers = args.workers or workers_from(os.environ.get("KURA_WORKERS") or str(default), "KURA_WORKERS")
    if in_memory and workers > 1:
        raise ConfigError("storage.inmemory keeps the store inside one process: run it with --workers 1")
    if not in_memory and gc.offline_run_on(settings):
        from storage.gc.state import OfflineCollection

        # Each worker would refuse in its start-up (state.serving); said once here, without a traceback.
        print(f"kura: {OfflineCollection()}", file=sys.stderr)
        return 1
    if args.fd is not None:
        sockets = inherited_sockets(args.fd, workers, "--fd")
    else:
        sockets = listening_sockets(host, port, workers)
    host, port = sockets[0].getsockname()[:2]
    settings.http.addr = _address(host, port)  # what port 0 became
    if args.debug_fd is not None:
        debug_sockets = inherited_sockets(args.debug_fd, workers, "--debug-fd")
    else:
        debug_sockets = listening_sockets(*debug, workers) if debug else []
    if debug_sockets:
        debug = debug_sockets[0].getsockname()[:2]
        settings.http.debug.addr = _address(*debug)
    tls = (settings.http.model_extra or {}).get("tls")
    scheme = "https" if isinstance(tls, dict) and tls.get("certificate") else "http"
    print(
        f"kura: serving {scheme}://{_address(host, port)}/v2/ with root {settings.root} "
        f"({workers} worker{'s' * (workers > 1)})" + (f"; debug server on http://{_address(*debug)}/" if debug else ""),
        file=sys.stderr,
        flush=True,
    )
    # Before anything imports prometheus-client, which picks its value class from the environment
    if debug and settings.http.debug.prometheus.enabled:
        multiproc.prepare_directory()
    else:
        multiproc.disable()
    if workers > 1:
        # Become the supervisor, a bare interpreter that keeps the workers running (app/supervisor.py).
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        # glibc gives each thread that allocates its own arena (up to 8 a core), which keeps what it
        # freed: with two a process, regbench's peak was 7 MB lower at rates within their spreads
        # (README, Performance). A value the user set wins.
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        fds = [str(sock.fileno()) for sock in sockets]
        if debug_sockets:
            fds = [f"{fd},{sock.fileno()}" for fd, sock in zip(fds, debug_sockets, strict=True)]
        os.execv(sys.executable, [sys.executable, "-m", "app.supervisor", *fds])
    from app.worker import serve as serve_worker

    try:
        serve_worker(settings, sockets[0], debug_sockets[0] if debug_sockets else None)
    finally:
        multiproc.remove_directory()
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


PLATFORM = re.compile(r"[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?")
DEFAULT_REGISTRY = "localhost:5000"


def inspect(args: argparse.Namespace) -> int:
    import httpx

    from app.images import explain
    from app.images.remote import RemoteSource, describe
    from storage import Registry
    from storage.drivers import FilesystemDriver
    from storage.errors import StorageError

    if args.platform is not None and not PLATFORM.fullmatch(args.platform):
        raise ConfigError(f"--platform must be os/arch or os/arch/variant (e.g. linux/arm64), got {args.platform!r}")
    host, repository, reference = split_reference(args.reference)
    base = f"{'https' if args.tls else 'http'}://{host or DEFAULT_REGISTRY}"

    async def run() -> tuple[explain.Report, str]:
        if args.root:
            registry = Registry(FilesystemDriver(args.root))
            try:
                source: explain.Source = explain.LocalSource(registry)
                return await explain.explain(source, repository, reference, args.platform), repository
            finally:
                await registry.close()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            report = await explain.explain(RemoteSource(client), repository, reference, args.platform)
        return report, f"{host or DEFAULT_REGISTRY}/{repository}"

    try:
        report, shown = asyncio.run(run())
    except StorageError as exc:
        print(f"kura inspect: {args.reference}: {exc.message or exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"kura inspect: {args.reference}: {describe(exc, base, defaulted=host is None)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(explain.render(report, shown, reference), end="")
    if args.platform is not None and not platform_found(report, args.platform):
        print(f"kura inspect: {args.reference}: no entry for platform {args.platform}", file=sys.stderr)
        return 1
    return 0


def platform_found(report: Report, platform: str) -> bool:
    """Whether a pull of ``platform`` would find an image: an index entry, or the lone image's own."""
    return any(e.kind == "image" and e.platform == platform for e in report.entries)


def registry_url(value: str) -> str:
    """``host:port`` as ``kura inspect`` takes it, or a full URL."""
    value = value.rstrip("/")
    return value if "://" in value else f"http://{value}"


def demo(args: argparse.Namespace) -> int:
    import httpx

    from app.images.demo import Demo, push_all
    from app.images.remote import describe

    base = registry_url(args.registry)
    host = base.split("://", 1)[-1]

    async def run() -> list[tuple[Demo, str]]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            return await push_all(client, host)

    try:
        pushed = asyncio.run(run())
    except httpx.HTTPError as exc:
        print(f"kura demo: cannot push to {base}: {describe(exc, base, defaulted=False)}", file=sys.stderr)
        return 1
    for item, digest in pushed:
        print(f"{host}/{item.repository}:{item.tag}  {digest}\n    {item.what}")
    print(f"\nExplain one: kura inspect {host}/demo/app:legacy")
    return 0


def kura_version() -> str:
    try:
        return version("kura")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kura", description="Kura, a private container registry (registry:2 compatible)."
    )
    top.add_argument("--version", action="version", version=f"kura {kura_version()}")
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="run the registry")
    p.add_argument("config_file", nargs="?", metavar="config.yml", help="as in `registry serve config.yml`")
    p.add_argument("--config", help="registry:2-style config.yml (default: $REGISTRY_CONFIGURATION_PATH, else none)")
    p.add_argument("--root", help="storage root (storage.filesystem.rootdirectory)")
    p.add_argument("--host", help="listen address (default from http.addr, else all interfaces)")
    p.add_argument("--port", type=int, help="listen port (default from http.addr, else 5000; 0: any free port)")
    p.add_argument("--fd", type=int, help="listen on this inherited, already listening socket (a pre-bound port)")
    p.add_argument("--debug-fd", type=int, help="the same for the debug server (http.debug.addr)")
    p.add_argument(
        "--workers",
        type=_workers_argument,
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
    d.add_argument(
        "--registry", default=DEFAULT_REGISTRY, help=f"host:port or URL of the registry (default {DEFAULT_REGISTRY})"
    )
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
