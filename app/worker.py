"""How ``kura serve`` runs uvicorn: in-process for one worker, or as ``python -m app.worker FDS PARENT``.

A worker gets its settings from the environment (``SETTINGS_ENV``, set by ``kura serve``) and serves
its own listening socket, and its own debug socket when ``http.debug.addr`` is set (``FDS`` is
``fd[,debugfd]``), inherited from the supervisor (``app.supervisor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Iterator
from types import FrameType
from typing import Any

from app.config import SETTINGS_ENV, ConfigError, Settings
from app.pace import SERVER_PID_ENV

_PR_SET_PDEATHSIG = 1


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn settings from config.yml's ``http.tls``, and the protocol that bounds request heads; logging
    is ``app.logs``'s, the access log ``app.observe``'s."""
    from app.protocol import BoundedHeadProtocol  # imports uvicorn: not at module level, as main() does

    options: dict[str, Any] = {
        "http": BoundedHeadProtocol,
        "log_config": None,
        "access_log": False,
        "server_header": False,
    }
    tls = settings.http.model_extra.get("tls") if settings.http.model_extra else None
    if isinstance(tls, dict) and tls.get("certificate"):
        options |= {"ssl_certfile": tls["certificate"], "ssl_keyfile": tls.get("key")}
        if tls.get("clientcas"):
            # registry:2's mutual TLS: a client certificate signed by one of these CAs is required.
            options |= {"ssl_ca_certs": client_cas(settings.root, tls["clientcas"]), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def client_cas(root: str, paths: list[str] | str) -> str:
    """One CA file for uvicorn: the file itself, or the files of the list joined under ``<root>/kura/tls``."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if len(paths) == 1:
        return paths[0]
    bundle = b""
    for path in paths:
        try:
            with open(path, "rb") as f:
                bundle += f.read().rstrip(b"\n") + b"\n"
        except OSError as exc:
            raise ConfigError(f"http.tls.clientcas: cannot read {path}: {exc.strerror}") from None
    directory = os.path.join(root, "kura", "tls")
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, "clientcas.pem")
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".clientcas-")
    with os.fdopen(fd, "wb") as f:
        f.write(bundle)
    os.replace(temporary, target)  # workers write the same bytes; each sees a whole file
    return target


def die_with(parent: int) -> None:
    """Exit when the supervisor does, even if it is killed with no chance to stop us (SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(0)


def serve(settings: Settings, sock: socket.socket, debug: socket.socket | None) -> None:
    """Serve the registry on ``sock`` and, when given, the debug server on ``debug``, in one event loop."""
    import uvicorn

    from app import logs
    from app.debug import debug_app
    from app.main import create_app
    from app.zerocopy import ZeroCopySend

    logs.configure(settings.log)
    # uvicorn re-raises the signal that stopped it once it has put back the handlers it found: let
    # that be a clean exit (no KeyboardInterrupt traceback, and the caller's cleanup runs)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stopped)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(ZeroCopySend(app), **uvicorn_options(settings)))
    if debug is None:
        server.run(sockets=[sock])
        return
    # The registry's protocol (bounded heads) on the debug port too: it shares the registry's event loop
    options = uvicorn_options(settings) | {"lifespan": "off"}
    for key in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs", "ssl_cert_reqs"):
        options.pop(key, None)  # registry:2's debug server is plain HTTP

    class DebugServer(uvicorn.Server):
        """The registry's server owns the signals, and stops this one when it stops."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    debug_server = DebugServer(uvicorn.Config(debug_app(settings, app.state.health), **options))

    async def both() -> None:
        task = asyncio.create_task(debug_server.serve(sockets=[debug]))
        try:
            await server.serve(sockets=[sock])
        finally:
            debug_server.should_exit = True
            await task

    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(both())


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> int:
    fds, parent = [int(fd) for fd in argv[0].split(",")], int(argv[1])
    die_with(parent)
    os.environ[SERVER_PID_ENV] = str(parent)  # the server whose load its collections give way to (app.pace)
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    sockets = [socket.socket(fileno=fd) for fd in fds]
    serve(settings, sockets[0], sockets[1] if len(sockets) > 1 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
