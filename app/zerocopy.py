"""ASGI's ``http.response.zerocopysend`` extension on uvicorn, with ``sendfile(2)``.

uvicorn 0.54 offers no zero-copy path, so a blob GET would copy every byte through Python twice
(``pread`` into a buffer, then into the socket). This wrapper, outermost around the app, offers the
extension when the connection is uvicorn's httptools protocol on plain TCP with a Content-Length
response: there, ``send`` is the request cycle's bound method, and once the headers have left the
transport nothing else writes to the socket until the body is complete. The body then goes from the
page cache to the socket in the kernel; the cycle is told how many bytes went out, so its own
Content-Length accounting and keep-alive handling stay exactly as they are.

Anywhere else (TLS, h11, another server, tests through ``httpx.ASGITransport``) the extension is not
offered and responses stream as before. A send that cannot take this path falls back to streaming.
"""

from __future__ import annotations

import asyncio
import os
import select
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.coalesce import Coalescing
from storage import FileReader

EXTENSION = "http.response.zerocopysend"
THREADS = 64  # sendfile threads mostly wait for slow clients; past this many, responses stream
STALL_TIMEOUT = 120.0  # seconds a client may stop reading before its connection is dropped
_HTTPTOOLS_CYCLE = "uvicorn.protocols.http.httptools_impl"


class ZeroCopySend:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Its own threads: a download to a slow client may hold one for minutes, and must not hold
        # the executor that every storage call uses. Made at startup, shut down with the server.
        self.pool: ThreadPoolExecutor | None = None
        self.busy = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan(send))
            return
        cycle = getattr(send, "__self__", None)
        if scope["type"] != "http" or scope.get("scheme") != "http" or not _is_httptools_cycle(cycle):
            await self.app(scope, receive, send)
            return
        scope = {**scope, "extensions": {**(scope.get("extensions") or {}), EXTENSION: {}}}

        coalescing = Coalescing(cycle, send)  # a small response leaves in one write (app.coalesce)

        async def send_or_sendfile(message: Message) -> None:
            if message["type"] == EXTENSION:
                coalescing.flush()
                await self.sendfile(cycle, send, message)
            else:
                await coalescing(message)

        try:
            await self.app(scope, receive, send_or_sendfile)
        finally:
            coalescing.flush()

    def _lifespan(self, send: Send) -> Send:
        async def send_and_track(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="kura-sendfile")
            await send(message)
            if message["type"] == "lifespan.shutdown.complete" and self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None

        return send_and_track

    async def sendfile(self, cycle: Any, send: Send, message: Message) -> None:
        reader: FileReader = message["file"]
        fd = reader.fileno()
        offset: int = message.get("offset") or 0
        count: int | None = message.get("count")
        if count is None:
            count = reader.size - offset
        more_body: bool = message.get("more_body", False)
        transport = cycle.transport
        if cycle.disconnected:
            return
        direct = (
            fd is not None
            and cycle.chunked_encoding is False
            and cycle.response_started
            and not cycle.response_complete
            and transport.get_extra_info("ssl_object") is None
            and transport.get_write_buffer_size() == 0
            and self.busy < THREADS
            and self.pool is not None
        )
        if not direct:
            await _stream(send, reader, offset, count, more_body)
            return
        assert fd is not None
        # The thread gets descriptors of its own and closes them itself. If the client hangs up, the
        # event loop closes the socket's at once; if this task is cancelled, the blob's is closed by
        # the response: either number may then be reused by another connection while the thread sends.
        sending = self._start(transport.get_extra_info("socket").fileno(), fd, offset, count)
        self.busy += 1
        try:
            sent = await sending
        except OSError:  # the client went away or stalled: nothing more can be said on this connection
            transport.close()
            return
        finally:
            self.busy -= 1
        cycle.expected_content_length -= sent
        if sent < count:  # the file shrank under us; end the connection rather than hang the client
            transport.close()
            return
        if not more_body:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _start(self, sock: int, fd: int, offset: int, count: int) -> asyncio.Future[int]:
        """Hand duplicates of both descriptors to a sendfile thread, which closes them when done."""
        duplicates: list[int] = []
        try:
            for descriptor in (sock, fd):
                duplicates.append(os.dup(descriptor))
            sock_copy, fd_copy = duplicates
            loop = asyncio.get_running_loop()
            return loop.run_in_executor(self.pool, _sendfile_and_close, sock_copy, fd_copy, offset, count)
        except BaseException:
            for descriptor in duplicates:
                os.close(descriptor)
            raise


_CYCLE_ATTRIBUTES = ("transport", "expected_content_length", "chunked_encoding", "response_started", "disconnected")
_CYCLE_TYPES: dict[type, bool] = {}  # per class: its __init__ sets these on every cycle it makes


def _is_httptools_cycle(cycle: object) -> bool:
    kind = type(cycle)
    known = _CYCLE_TYPES.get(kind)
    if known is None:
        known = kind.__module__ == _HTTPTOOLS_CYCLE and all(hasattr(cycle, name) for name in _CYCLE_ATTRIBUTES)
        if known or kind.__module__ != _HTTPTOOLS_CYCLE:  # a cycle that lacks one may be half made: ask again
            _CYCLE_TYPES[kind] = known
    return known


def _sendfile_and_close(sock: int, fd: int, offset: int, count: int) -> int:
    try:
        return _sendfile_all(sock, fd, offset, count)
    finally:
        os.close(sock)
        os.close(fd)


def _sendfile_all(sock: int, fd: int, offset: int, count: int) -> int:
    """sendfile until ``count`` bytes are out or the file ends; the socket is non-blocking."""
    sent = 0
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    while sent < count:
        try:
            n = os.sendfile(sock, fd, offset + sent, count - sent)
        except BlockingIOError:
            if not poller.poll(STALL_TIMEOUT * 1000):
                raise TimeoutError("client stopped reading") from None
            continue
        if n == 0:
            break
        sent += n
    return sent


async def _stream(send: Send, reader: FileReader, offset: int, count: int, more_body: bool) -> None:
    if count > 0:
        async for chunk in reader.chunks(offset, offset + count - 1):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if not more_body:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
