"""A small response's head and body in one socket write, on uvicorn's httptools cycle.

uvicorn writes the status line and headers as soon as ``http.response.start`` is sent, then the body
with ``http.response.body``: two ``write(2)`` calls and two TCP segments for every manifest GET or blob
HEAD, and the second costs as much as the first (a quarter of a worker's time under a request-rate load
went to these two writes). Here uvicorn's own ``send`` still formats and accounts for everything (its
header checks, Content-Length, keep-alive, completion), but while it runs the cycle's transport is a
``Gathering`` that keeps the bytes; they are written once the body is complete, as one write. A body
that comes in several messages, a sendfile, or an app that stops early gets the head written first, as
before. Only ``app.zerocopy`` uses this, where it has checked that ``send`` is such a cycle's.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Send


class Gathering:
    """Stands in for the connection's transport while uvicorn writes a response: keeps what it writes."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def flush(self) -> None:
        if not self.parts:
            return
        data = b"".join(self.parts)
        self.parts.clear()
        if not self.transport.is_closing():  # the client went away meanwhile: nobody to tell
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class Coalescing:
    """The ``send`` of one request: the response head is held until its body is complete."""

    __slots__ = ("cycle", "gathering", "send")

    def __init__(self, cycle: Any, send: Send) -> None:
        self.cycle = cycle
        self.send = send
        self.gathering: Gathering | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._gathered(message)
        elif kind == "http.response.body" and self.gathering is not None and not message.get("more_body", False):
            await self._gathered(message)
            self.flush()
        else:
            self.flush()
            await self.send(message)

    async def _gathered(self, message: Message) -> None:
        cycle = self.cycle
        transport = cycle.transport
        if self.gathering is None:
            self.gathering = Gathering(transport)
        cycle.transport = self.gathering
        try:
            await self.send(message)
        finally:
            cycle.transport = transport

    def flush(self) -> None:
        """Write what is held (the app is done, or sends its body otherwise)."""
        if self.gathering is not None:
            self.gathering.flush()
            self.gathering = None
