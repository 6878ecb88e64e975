"""What each route needs: the route table's handlers, each classified once (cf. registry:2's
``appendAccessRecords``). A route whose handler is missing here stops the server from starting."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from starlette.routing import BaseRoute, Route

from app.hotroutes import hot_routes
from app.routes import base, blobs, kura, listing, manifests, referrers, uploads
from app.ui import routes as ui


class Kind(Enum):
    OPEN = "open"  # no credentials at all: the liveness answer container health checks ask for
    IDENTITY = "identity"  # /v2/: any valid credentials (and docker login's check)
    CATALOG = "catalog"  # registry:catalog:*
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


KINDS: dict[Callable[..., Any], Kind] = {
    base.version_check: Kind.IDENTITY,
    listing.catalog: Kind.CATALOG,
    listing.list_tags: Kind.PULL,
    manifests.get_manifest: Kind.PULL,
    manifests.put_manifest: Kind.PUSH,
    manifests.delete_manifest: Kind.DELETE,
    uploads.start_upload: Kind.PUSH,
    # An upload session is a push in progress: cancelling one is not a delete (skopeo cancels the
    # session a refused mount left behind with DELETE, holding only pull,push).
    uploads.upload_status: Kind.PUSH,
    uploads.patch_upload: Kind.PUSH,
    uploads.finish_upload: Kind.PUSH,
    uploads.cancel_upload: Kind.PUSH,
    blobs.get_blob: Kind.PULL,
    blobs.delete_blob: Kind.DELETE,
    referrers.list_referrers: Kind.PULL,
    kura.inspect: Kind.PULL,
    kura.live: Kind.OPEN,
    # The web UI authenticates its visitors itself (a session cookie) and asks the same policies.
    **{route.endpoint: Kind.OPEN for route in ui.ROUTES},
}


@dataclass(frozen=True, slots=True)
class Need:
    kind: Kind
    repository: str | None = None
    reference: str | None = None  # of a manifest PUT: a tag makes create-vs-overwrite matter


IDENTITY = Need(Kind.IDENTITY)


def need_of(endpoint: Callable[..., Any], params: dict[str, str]) -> Need:
    """The access a request for this endpoint with these path parameters needs."""
    return Need(KINDS[endpoint], params.get("name"), params.get("reference"))


class AccessMap:
    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._table: list[tuple[re.Pattern[str], frozenset[str], Kind]] = []
        for route in routes:
            if not isinstance(route, Route) or route.endpoint not in KINDS:
                raise RuntimeError(f"route {getattr(route, 'path', route)!r} has no access rule in app/auth/access.py")
            self._table.append((route.path_regex, frozenset(route.methods or ()), KINDS[route.endpoint]))
        self._hot = hot_routes(routes)

    def need(self, method: str, path: str) -> Need:
        """The access a request needs; a path no route serves (404/405) needs only an identity."""
        for hot in self._hot:  # the same first match as the scan below, without trying every route
            params = hot.match(method, path)
            if params is not None:
                return need_of(hot.endpoint, params)
        for regex, methods, kind in self._table:
            if method not in methods:
                continue
            match = regex.match(path)
            if match is None:
                continue
            params = match.groupdict()
            return Need(kind, params.get("name"), params.get("reference"))
        return IDENTITY
