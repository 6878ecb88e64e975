"""The access log and the HTTP metrics: ``Accounting``, used by the ``Observe`` middleware around each
request and by the hot lane (``app.hotroutes``) for the requests it answers itself.

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
QUERY_KEY: Final = "kura.query"  # the query string as sent, set by a layer that rewrites ``query_string``
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


class Exchange:
    """What one request moved; slots keep the per-request cost down."""

    __slots__ = ("received", "sent", "status")

    def __init__(self) -> None:
        self.status = 0
        self.received = 0
        self.sent = 0

    def sent_message(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.sent += len(message.get("body", b""))
        elif kind == EXTENSION:
            self.sent += message.get("count") or 0
        elif kind == "http.response.start":
            self.status = message["status"]


class Accounting:
    """The metrics and the access line of each request, for ``Observe`` and for ``app.hotroutes``'s lane."""

    def __init__(self, *, metrics: bool, access_log: bool) -> None:
        self.metrics = metrics
        self.access_log = access_log
        if metrics:
            from app import metrics as families  # a server without metrics never imports prometheus-client

            self.families: Any = families
        # labelled children, looked up once: prometheus-client's labels() takes a lock and validates
        self.children: dict[tuple[str, ...], Any] = {}

    def enter(self, scope: Scope) -> str | None:
        """Counts the request in flight; its registry:2 handler name, None when metrics are off or no route."""
        if not self.metrics:
            return None
        handler = handler_of(scope["path"])
        if handler is not None:
            self._child("in_flight", handler).inc()
            if _uploading(scope, handler):
                self.families.uploads_in_progress.inc()
        return handler

    def leave(self, scope: Scope, handler: str | None) -> None:
        """Undoes ``enter``: the request is no longer in flight."""
        if handler is not None:
            self._child("in_flight", handler).dec()
            if _uploading(scope, handler):
                self.families.uploads_in_progress.dec()

    def record(self, scope: Scope, handler: str | None, exchange: Exchange, seconds: float) -> None:
        """``leave``, then the request's metrics and its access line."""
        self.leave(scope, handler)
        if handler is not None:
            self._record(scope, handler, exchange, seconds)
        if self.access_log and access.isEnabledFor(logging.INFO):
            _log_access(scope, exchange, seconds)

    def _child(self, family: str, *labels: str) -> Any:
        key = (family, *labels)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = getattr(self.families, family).labels(*labels)
        return child

    def _record(self, scope: Scope, handler: str, exchange: Exchange, seconds: float) -> None:
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


def _uploading(scope: Scope, handler: str) -> bool:
    return handler in ("blob_upload", "blob_upload_chunk") and scope["method"] in _UPLOAD_METHODS


class Observe:
    """The outermost of the app's middleware: every request the hot lane leaves to the stack."""

    def __init__(self, app: ASGIApp, *, accounting: Accounting) -> None:
        self.app = app
        self.accounting = accounting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        exchange = Exchange()

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            exchange.sent_message(message)
            await send(message)

        handler = self.accounting.enter(scope)
        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            exchange.status = exchange.status or 500  # what the outer error middleware answers
            raise
        finally:
            self.accounting.record(scope, handler, exchange, time.perf_counter() - started)


def _request_size(scope: Scope, body: int) -> int:
    """promhttp's approximate request size: request line, headers, and the body (as received here)."""
    size = len(scope["method"]) + len(scope.get("raw_path") or scope["path"]) + len(_query(scope)) + 8
    for name, value in scope["headers"]:
        size += len(name) + len(value)
    return size + body


def _query(scope: Scope) -> bytes:
    query: bytes = scope.get(QUERY_KEY) or scope["query_string"]
    return query


def _log_access(scope: Scope, exchange: Exchange, seconds: float) -> None:
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
    query = _query(scope).decode("latin-1")
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
