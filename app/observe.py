"""The access log and the HTTP metrics: one wrapper around each request, inside ``ZeroCopySend``.

It counts the body bytes that really went in and out (sendfile'd blobs included), the status and the
time, then writes one ``kura.access`` line (registry:2's ``response completed`` fields) and updates
registry:2's ``registry_http_*`` families and Kura's byte counters.

An auth layer names the authenticated user by setting ``scope[USER_KEY]`` (``"kura.user"``, a string)
on the scope it was given, in place; the access log shows it as ``auth.user.name``. Credentials are
never read here: no header but Host, User-Agent and the forwarding ones is looked at.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs
from app.logs import FIELDS
from app.zerocopy import EXTENSION

USER_KEY: Final = "kura.user"
access = logging.getLogger("kura.access")

_UPLOAD_METHODS: Final = frozenset(("POST", "PATCH", "PUT"))
_PUSHED: Final = {"blob_upload": "blob", "blob_upload_chunk": "blob", "manifest": "manifest"}
_PULLED: Final = {"blob": "blob", "manifest": "manifest"}


def handler_of(path: str) -> str | None:
    """registry:2's route name for a path, tried in the order of ``app.routes.ROUTES``; None if no route."""
    if path == "/v2/":
        return "base"
    if path == "/v2/_catalog":
        return "catalog"
    if path == "/_kura/v1/live":
        return "kura_live"
    if path.startswith("/_kura/v1/inspect/"):
        return "kura_inspect"
    if not path.startswith("/v2/"):
        return None
    parts = path[4:].split("/")
    if len(parts) < 3 or (not parts[-1] and parts[-3:-1] != ["blobs", "uploads"]):
        return None
    if parts[-2:] == ["tags", "list"]:
        return "tags"
    if parts[-2] == "manifests":
        return "manifest"
    if len(parts) >= 4 and parts[-3:-1] == ["blobs", "uploads"]:
        return "blob_upload" if parts[-1] == "" else "blob_upload_chunk"
    if parts[-2] == "blobs":
        return "blob"
    if parts[-2] == "referrers":
        return "referrers"
    return None


class _Exchange:
    """What one request moved; slots keep the per-request cost down."""

    __slots__ = ("received", "sent", "status")

    def __init__(self) -> None:
        self.status = 0
        self.received = 0
        self.sent = 0


class Observe:
    def __init__(self, app: ASGIApp, *, metrics: bool, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        if metrics:
            from app import metrics as families  # a server without metrics never imports prometheus-client

            self.families: Any = families
        # labelled children, looked up once: prometheus-client's labels() takes a lock and validates
        self.children: dict[tuple[str, ...], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        handler = handler_of(scope["path"]) if self.metrics else None
        exchange = _Exchange()

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                exchange.sent += len(message.get("body", b""))
            elif kind == EXTENSION:
                exchange.sent += message.get("count") or 0
            elif kind == "http.response.start":
                exchange.status = message["status"]
            await send(message)

        uploading = handler in ("blob_upload", "blob_upload_chunk") and scope["method"] in _UPLOAD_METHODS
        if handler is not None:
            self._child("in_flight", handler).inc()
            if uploading:
                self.families.uploads_in_progress.inc()
        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            exchange.status = exchange.status or 500  # what the outer error middleware answers
            raise
        finally:
            seconds = time.perf_counter() - started
            if handler is not None:
                self._child("in_flight", handler).dec()
                if uploading:
                    self.families.uploads_in_progress.dec()
                self._record(scope, handler, exchange, seconds)
            if self.access_log and access.isEnabledFor(logging.INFO):
                _log_access(scope, exchange, seconds)

    def _child(self, family: str, *labels: str) -> Any:
        key = (family, *labels)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = getattr(self.families, family).labels(*labels)
        return child

    def _record(self, scope: Scope, handler: str, exchange: _Exchange, seconds: float) -> None:
        method = scope["method"]
        lower = method.lower()  # promhttp's method label
        self._child("requests_total", str(exchange.status), handler, lower).inc()
        self._child("request_duration", handler, lower).observe(seconds)
        self._child("request_size", handler).observe(_request_size(scope, exchange.received))
        self._child("response_size", handler).observe(exchange.sent)
        if exchange.status >= 400:
            return
        if method in _UPLOAD_METHODS and handler in _PUSHED and exchange.received:
            self._child("bytes_pushed", _PUSHED[handler]).inc(exchange.received)
        elif method == "GET" and handler in _PULLED and exchange.sent:
            self._child("bytes_pulled", _PULLED[handler]).inc(exchange.sent)


def _request_size(scope: Scope, body: int) -> int:
    """promhttp's approximate request size: request line, headers, and the body (as received here)."""
    size = len(scope["method"]) + len(scope.get("raw_path") or scope["path"]) + len(scope["query_string"]) + 8
    for name, value in scope["headers"]:
        size += len(name) + len(value)
    return size + body


def _log_access(scope: Scope, exchange: _Exchange, seconds: float) -> None:
    host = agent = forwarded = b""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"user-agent":
            agent = value
        elif name in (b"x-forwarded-for", b"x-real-ip") and not forwarded:
            forwarded = value.split(b",")[0].strip()
    client = scope.get("client")
    remote = forwarded.decode("latin-1") if forwarded else (f"{client[0]}:{client[1]}" if client else "")
    query = scope["query_string"].decode("latin-1")
    fields: dict[str, Any] = {
        "http.request.method": scope["method"],
        "http.request.uri": scope["path"] + (f"?{query}" if query else ""),
        "http.request.host": host.decode("latin-1"),
        "http.request.remoteaddr": remote,
        "http.request.useragent": agent.decode("latin-1"),
        "http.request.read": exchange.received,
        "http.response.status": exchange.status,
        "http.response.written": exchange.sent,
        "http.response.duration": f"{seconds * 1000:.3f}ms",
    }
    name = (scope.get("path_params") or {}).get("name")
    if name:
        fields["vars.name"] = name
    user = scope.get(USER_KEY)
    if user:
        fields["auth.user.name"] = user
    handler = logs.direct(access)
    if handler is not None:  # the line the record would give, without the record: written with others
        handler.later(handler.line(time.time(), "info", "response completed", fields))
        return
    # As access.info() would, less the caller lookup (a stack walk per line that no format shows)
    record = access.makeRecord(
        access.name, logging.INFO, __file__, 0, "response completed", (), None, None, {FIELDS: fields}
    )
    access.handle(record)
