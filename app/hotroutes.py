"""The hot read routes (manifest and blob GET/HEAD), dispatched without Starlette's router.

Routing a request through Starlette costs more than answering it: the router tries each route in
turn (building a child scope for each), and the exception middleware and ``request_response`` each
build a ``Request`` and wrap the app in exception handling. This layer, the innermost middleware,
matches the hot routes with their own compiled regexes and calls **the same endpoints** with **the same
exception handlers** (``app.errors.HANDLERS``), so a response is the one the router would give, byte
for byte; every other request goes on to the router untouched. Everything outside it (metrics, access
log, common headers, auth, health gate) runs as for any request.

A hot route is taken only when no route before it in the table could match the path too: routes
whose last two segments are fixed differently can never match the same path (``.../manifests/<ref>``
against ``.../tags/list``), and any other earlier route with the method is tried first, at request time.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import HANDLERS
from app.routes import blobs, manifests

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Response]

HOT: Final[tuple[Endpoint, ...]] = (manifests.get_manifest, blobs.get_blob)
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


def handler_for(exc: Exception) -> Handler | None:
    """The exception handler Starlette would pick: the first of the exception's classes that has one."""
    for cls in type(exc).__mro__:
        if cls in HANDLERS:
            handler: Handler = HANDLERS[cls]
            return handler
    return None


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = hot_routes(routes)

    def match(self, scope: Scope) -> tuple[Endpoint, dict[str, str]] | None:
        if scope["type"] != "http" or scope["method"] not in _READS or scope.get("root_path"):
            return None
        for route in self.routes:
            params = route.match(scope["method"], scope["path"])
            if params is not None:
                return route.endpoint, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.match(scope)
        if hit is None:
            await self.app(scope, receive, send)
            return
        endpoint, params = hit
        # In place, as the router does: the access log outside reads the repository name from here.
        scope["endpoint"] = endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = handler_for(exc)
            if handler is None:
                raise  # app.catchall answers it, as it does for the router's
            response = handler(request, exc)
        await response(scope, receive, send)
