"""The hot read routes (manifest and blob GET/HEAD, tag lists), answered before the framework and its middleware.

Under a request-rate load, the layers around a route cost more than answering it: Starlette's router
tries each route in turn, and every middleware (the access log and metrics, the common headers, the
catch-all, auth, the health gate, Starlette's own error and exception layers) wraps ``send`` once more
and runs its code for each message. The app (``app.main.RegistryApp``) offers every request to
``HotLane.answer`` first. The lane takes a request only when it can answer it exactly as the whole stack
would: the path is a hot route's (matched with that route's own regex, see below), the health checks
pass, auth (when on) would let it through unchanged (``app.auth.middleware.ReadGate``), and **the same
endpoint** returns a response. It sends that response with the same common headers and accounts for it
with the same ``Accounting`` as the ``Observe`` middleware, so status, headers, body, metrics and the
access line are those of the full stack, byte for byte. Anything else (any other error the endpoint raises,
a challenge, a refusal) is left to the full stack, which answers it from the start: the endpoints
raise before they have any effect (a pull's notification and GC mark come after the lookup). The one
error the lane answers itself is a lock held past the wait (``storage.driver.Busy``, a stripe held by
a stuck collector): the full stack would only wait as long again before the same 503.

A hot route is taken only when no route before it in the table could match the path too: routes
whose last two segments are fixed differently can never match the same path (``.../manifests/<ref>``
against ``.../tags/list``), and any other earlier route with the method is tried first, at request time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from app.catchall import close_after_error
from app.errors import busy_error
from app.health import Health
from app.observe import Accounting, Exchange
from app.routes import blobs, listing, manifests
from storage.driver import Busy

if TYPE_CHECKING:
    from app.auth.middleware import ReadGate  # imported only when auth is on

Endpoint = Callable[[Request], Awaitable[Response]]

# Tag lists too: a CI walking a repository's tags a page at a time makes one request per page.
HOT: Final[tuple[Endpoint, ...]] = (manifests.get_manifest, blobs.get_blob, listing.list_tags)
_READS: Final = frozenset(("GET", "HEAD"))


@dataclass(frozen=True, slots=True)
class HotRoute:
    methods: frozenset[str]
    regex: re.Pattern[str]
    endpoint: Endpoint
    shadows: tuple[re.Pattern[str], ...]  # earlier routes that might match the same paths: tried first

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method not in self.methods:
            return None
        found = self.regex.match(path)
        if found is None or any(earlier.match(path) for earlier in self.shadows):
            return None
        return found.groupdict()


def _fixed_parent(template: str) -> str | None:
    """The next-to-last segment of a route template when every path it matches has exactly that one."""
    parts = template.split("/")
    if len(parts) < 3 or "{" in parts[-2] or ":path}" in parts[-1]:
        return None  # a parameter there, or a last parameter that may span segments
    return parts[-2]


def _disjoint(a: Route, b: Route) -> bool:
    """True when no path matches both: their next-to-last segments are fixed, and differ."""
    pa, pb = _fixed_parent(a.path), _fixed_parent(b.path)
    return pa is not None and pb is not None and pa != pb


def hot_routes(routes: Sequence[BaseRoute]) -> list[HotRoute]:
    table = [route for route in routes if isinstance(route, Route)]
    found: list[HotRoute] = []
    for endpoint in HOT:
        index = next(i for i, route in enumerate(table) if route.endpoint is endpoint)
        route = table[index]
        methods = frozenset(route.methods or ())
        earlier = [r for r in table[:index] if methods & set(r.methods or ()) and not _disjoint(r, route)]
        found.append(HotRoute(methods, route.path_regex, endpoint, tuple(r.path_regex for r in earlier)))
    return found


class HotLane:
    def __init__(
        self,
        routes: Sequence[BaseRoute],
        accounting: Accounting,
        headers: list[tuple[bytes, bytes]],
        health: Health,
        gate: ReadGate | None,
    ) -> None:
        self.routes = hot_routes(routes)
        self.accounting = accounting
        self.headers = headers  # CommonHeaders' list
        self.health = health
        self.gate = gate

    def match(self, scope: Scope) -> tuple[Endpoint, dict[str, str]] | None:
        if scope["method"] not in _READS or scope.get("root_path"):
            return None
        for route in self.routes:
            params = route.match(scope["method"], scope["path"])
            if params is not None:
                return route.endpoint, params
        return None

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answers an HTTP request as the whole app would, or returns False having sent nothing."""
        hit = self.match(scope)
        if hit is None or (self.health.checks and self.health.failing()):
            return False
        endpoint, params = hit
        if self.gate is not None and not self.gate.admits(scope, endpoint, params):
            return False
        # In place, as the router does: the access log reads the repository name from here.
        scope["endpoint"] = endpoint
        scope["path_params"] = params
        started = time.perf_counter()
        handler = self.accounting.enter(scope)
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Busy as exc:
            # The endpoint waited its LOCK_WAIT for a stripe and changed nothing: answer as the full
            # stack's handler does (its 503, logged as a rejection), not wait all over again there.
            response = busy_error(request, exc)
        except Exception:
            self.accounting.leave(scope, handler)
            return False  # the full stack answers it, from its own lookup
        except BaseException:
            self.accounting.leave(scope, handler)
            raise
        exchange = Exchange()
        common = self.headers

        async def counting_send(message: Message) -> None:
            exchange.sent_message(message)
            if message["type"] == "http.response.start":
                close_after_error(message)  # as CatchAll, inside CommonHeaders
                message["headers"] = [*message["headers"], *common]
            await send(message)

        try:
            await response(scope, receive, counting_send)
        except BaseException:
            exchange.status = exchange.status or 500  # as Observe counts it
            raise
        finally:
            self.accounting.record(scope, handler, exchange, time.perf_counter() - started)
        return True
