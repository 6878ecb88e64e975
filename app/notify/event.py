"""registry:2's event records, field for field (distribution v2.8 ``notifications/event.go``, ``bridge.go``).

Keys keep the Go struct order and Go's ``omitempty``: empty strings and zero sizes are left out of
``target``, ``actor`` and ``source``; ``request`` always has ``id``, ``method`` and ``useragent``.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import Scope

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
BLOB_MEDIA_TYPE = "application/octet-stream"  # what registry:2's blob statter reports for every blob
# The fields of distribution.Descriptor: a reference is copied from the manifest with these only.
_DESCRIPTOR_KEYS = ("mediaType", "size", "digest", "urls", "annotations", "platform")

Target = dict[str, Any]


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds and trailing zeros trimmed, as Go's ``time.Time`` marshals."""
    seconds, nanos = divmod(ns, 10**9)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}{'.' + fraction if fraction else ''}Z"


def compact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in (None, "", 0, [], {})}


def target(
    repository: str,
    *,
    digest: str | None = None,
    media_type: str | None = None,
    size: int | None = None,
    url: str | None = None,
    tag: str | None = None,
    from_repository: str | None = None,
    references: list[dict[str, Any]] | None = None,
) -> Target:
    return compact(
        {
            "mediaType": media_type,
            "size": size,
            "digest": digest,
            "length": size,  # registry:2 keeps this deprecated copy of size
            "repository": repository,
            "fromRepository": from_repository,
            "url": url,
            "tag": tag,
            "references": references,
        }
    )


def references(body: bytes) -> list[dict[str, Any]]:
    """``Manifest.References()``: config then layers of an image, the children of an index."""
    try:
        document = json.loads(body)
    except ValueError:
        return []  # stored by another server and unreadable: nothing to list, and the pull still counts
    if not isinstance(document, dict):
        return []
    if "manifests" in document:
        found = document["manifests"]
    else:
        found = [document.get("config"), *(document.get("layers") or [])]
    if not isinstance(found, list):
        return []
    return [{k: d[k] for k in _DESCRIPTOR_KEYS if k in d} for d in found if isinstance(d, dict)]


def base_url(request: Request, configured: str | None) -> str:
    """The registry's external URL as registry:2's URL builder finds it: ``http.host``, else the
    ``Forwarded`` header, else ``X-Forwarded-Proto``/``X-Forwarded-Host``, else the request itself."""
    if configured:
        return configured.rstrip("/")
    scheme, host = request.url.scheme, request.headers.get("host", "")
    forwarded = request.headers.get("forwarded")
    if forwarded:
        pairs = (p.split("=", 1) for p in forwarded.split(",", 1)[0].split(";") if "=" in p)
        fields = {k.strip().lower(): v.strip().strip('"') for k, v in pairs}
        scheme = fields.get("proto") or scheme
        host = fields.get("host") or host
    else:
        scheme = request.headers.get("x-forwarded-proto") or scheme
        host = request.headers.get("x-forwarded-host", host).split(",", 1)[0].strip() or host
    return f"{scheme}://{host}"


def remote_addr(request: Request) -> str:
    """``context.RemoteAddr``: the first X-Forwarded-For address, else X-Real-Ip, else the peer."""
    for candidate in (request.headers.get("x-forwarded-for", "").split(",", 1)[0], request.headers.get("x-real-ip")):
        if candidate and _is_ip(candidate.strip()):
            return candidate.strip()
    client = request.client
    return f"{client.host}:{client.port}" if client is not None else ""


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def actor(scope: Scope) -> str | None:
    """The verified user's name, as the auth layer leaves it in the scope: ``kura.user`` (a string),
    else the ``name`` of its ``kura.principal``. Never a name from unverified credentials."""
    user = scope.get("kura.user")
    if isinstance(user, str):
        return user
    name = getattr(scope.get("kura.principal"), "name", None)
    return name if isinstance(name, str) else None


def record(request: Request, action: str, target: Target, source: dict[str, str]) -> dict[str, Any]:
    # One id per request, kept in the scope so that an access log can print the same one.
    request_id = request.scope.setdefault("kura.request_id", str(uuid.uuid4()))
    return {
        "id": str(uuid.uuid4()),
        "timestamp": timestamp(time.time_ns()),
        "action": action,
        "target": target,
        "request": {
            "id": request_id,
            **compact({"addr": remote_addr(request), "host": request.headers.get("host")}),
            "method": request.method,
            "useragent": request.headers.get("user-agent", ""),
        },
        "actor": compact({"name": actor(request.scope)}),
        "source": compact(source),
    }


def envelope(event: dict[str, Any]) -> bytes:
    """One event per POST, indented as Go's ``json.MarshalIndent(envelope, "", "   ")``."""
    return json.dumps({"events": [event]}, indent=3, ensure_ascii=False).encode()
