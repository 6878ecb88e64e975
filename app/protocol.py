"""uvicorn's httptools protocol with a bounded request head: ``MAX_HEAD`` bytes, within ``HEAD_TIMEOUT``.

uvicorn bounds neither. httptools gathers a header in memory until its line ends, so a 48 MiB header
was read in full and answered; a client trickling a head a byte at a time held its connection (and a
slot of the server) for as long as it liked. Go's net/http, which registry:2 runs on, refuses a head
past 1 MiB (``DefaultMaxHeaderBytes``) with a 431. Here what is not body is counted as it arrives
(a head, and in a chunked body each chunk-size line and the trailers, which httptools gathers the
same way): once more than ``MAX_HEAD`` bytes of it came without its end, a head gets a 431 and
trailers a closed connection. A head may end within the read that crosses the limit (a read is at
most 256 KiB). A head not complete ``HEAD_TIMEOUT`` seconds after its first byte, or after the
connection opened, ends the connection.

Timers: uvicorn starts and cancels a keep-alive timer around every request, and a bounded head would
add one more; in uvloop each pair costs more than the rest of this class. Here each connection has
at most one timer per bound (head, keep-alive), which marks nothing per request: when it fires it
looks at when the current head began (or the connection went idle) and closes, lapses, or re-arms
for what is left. Deadlines are the same as with a timer per request.

A body itself streams under uvicorn's own flow control. The request cycles are uvicorn's own class,
so ``app.zerocopy`` still recognises them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD = 1 << 20  # bytes: request line and headers, as Go's DefaultMaxHeaderBytes
HEAD_TIMEOUT = 60.0  # seconds to send a whole head; read when a head begins, so tests may shorten it
LINGER = 0.5  # seconds the 431 is given to reach the client before the connection is closed

MAX_URL = 65535  # bytes: httptools.parse_url refuses a longer request target
_URL_TOO_LONG = (
    b'{"errors":[{"code":"UNSUPPORTED","message":"request URL longer than %d bytes","detail":{}}]}' % MAX_URL
)
_TOO_LARGE = b"431 Request Header Fields Too Large"
_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 " + _TOO_LARGE + b"\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _TOO_LARGE
)


class BoundedHeadProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_head = True  # the next bytes are (or begin) a request head
        # Bytes read since the last complete part (head, chunk) that were not body: a head, a chunk-size
        # line, trailers. httptools holds a header (or trailer) in memory until its line ends.
        self.framing = 0
        self.head_began: float | None = None  # loop time the head being read began; None between heads
        self.head_timer: asyncio.TimerHandle | None = None
        self.idle_since: float | None = None  # loop time the last response ended with nothing to do since
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_clock()  # a connection that never sends its first head is dropped too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        for timer in (self.head_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.idle_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head and self.head_began is None:
            self._start_clock()
        self.framing += len(data)
        super().data_received(data)
        if self.framing > MAX_HEAD and not self.transport.is_closing():
            self._refuse()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.framing = 0
        self._stop_clock()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.framing -= len(body)
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self.framing = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True  # what follows is the next request's head
        self.framing = 0

    def on_response_complete(self) -> None:
        """uvicorn's (0.54), with its keep-alive timer armed as this class arms timers."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request waits: start it
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_later(self.timeout_keep_alive, self._check_idle)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this on every read and at every response's end
        self.idle_since = None  # a pending check finds the connection busy and lapses

    def _check_idle(self) -> None:
        self.idle_timer = None
        if self.idle_since is None:
            return
        left = self.idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:  # idle again since a later response
            self.idle_timer = self.loop.call_later(left, self._check_idle)
            return
        self.idle_since = None
        self.timeout_keep_alive_handler()

    def _start_clock(self) -> None:
        self.head_began = self.loop.time()
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(HEAD_TIMEOUT, self._check_head)

    def _stop_clock(self) -> None:
        self.head_began = None  # a pending check finds no head and lapses

    def _check_head(self) -> None:
        self.head_timer = None
        if self.head_began is None:
            return
        left = self.head_began + HEAD_TIMEOUT - self.loop.time()
        if left > 0:  # a later head than the one this check was set for
            self.head_timer = self.loop.call_later(left, self._check_head)
            return
        self.head_began = None
        if not self.transport.is_closing():
            self.logger.warning("Request head not received within %g s: connection closed.", HEAD_TIMEOUT)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools cannot parse (plain text, as Go's), except for a URL
        too long for httptools, which Go's 1 MiB head would take: a JSON 414, since no registry
        request has such a URL."""
        if len(self.url) <= MAX_URL:
            super().send_400_response(msg)
            return
        self.logger.warning("Request URL over %d bytes: refused with 414.", MAX_URL)
        content = [b"HTTP/1.1 414 URI Too Long\r\n"]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(_URL_TOO_LONG),
            b"connection: close\r\n\r\n",
            _URL_TOO_LONG,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()

    def _refuse(self) -> None:
        self._stop_clock()
        if not self.in_head or (self.cycle is not None and not self.cycle.response_complete):
            # Trailers, or a pipelined head behind a response still being written: no room for a 431.
            self.logger.warning("Request trailers or head over %d bytes: connection closed.", MAX_HEAD)
            self.transport.close()
            return
        self.logger.warning("Request head over %d bytes: refused with 431.", MAX_HEAD)
        # As Go does: read no more, end our side, let the 431 travel, then close (a reset if the
        # client is still sending, which is why it gets a moment first).
        self.flow.pause_reading()
        self.transport.write(_TOO_LARGE_RESPONSE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)
