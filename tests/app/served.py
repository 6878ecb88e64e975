"""A real uvicorn (uvloop, Kura's HTTP protocol) in a thread, on a socket bound to 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from app.config import Settings
from app.worker import uvicorn_options
from tests.e2e.servers import eventually


@contextlib.contextmanager
def serving(app: ASGIApp, settings: Settings, **options: Any) -> Iterator[tuple[str, int]]:
    """Serve ``app`` with the options ``kura serve`` gives uvicorn (and ``options``); yield its (host, port).

    uvicorn configures no logging here (``log_config=None``): its records reach pytest's caplog.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, loop="uvloop", **(uvicorn_options(settings) | options))  # log_config=None
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        if not eventually(lambda: server.started or not thread.is_alive()) or not server.started:
            raise RuntimeError("uvicorn did not start")
        host, port = sock.getsockname()
        yield host, port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def exchange(address: tuple[str, int], request: bytes, timeout: float = 20) -> bytes:
    """Send ``request`` on a new connection and read until the server closes it."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(request)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received
