"""registry:2's answers to a request it will not serve, byte for byte.

``WWW-Authenticate: Basic realm="..."`` (htpasswd) or ``Bearer realm="...",service="...",scope="..."``
with ``error="invalid_token"`` / ``error="insufficient_scope"`` (token), and the ``UNAUTHORIZED``
body whose detail lists the access records (``null`` for ``/v2/``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from app.auth.access import Kind, Need

_JSON = "application/json; charset=utf-8"  # registry:2's errcode.ServeJSON


def quoted(value: str) -> str:
    """Go's %q for the ASCII a realm, service or scope holds."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def records(need: Need, source: str | None = None) -> list[tuple[str, str, str]]:
    """(type, name, action) as registry:2 lists them for this request."""
    if need.kind is Kind.CATALOG:
        return [("registry", "catalog", "*")]
    if need.repository is None:
        return []
    name = need.repository
    found = {
        Kind.PULL: [("repository", name, "pull")],
        Kind.PUSH: [("repository", name, "pull"), ("repository", name, "push")],
        Kind.DELETE: [("repository", name, "delete")],
    }.get(need.kind, [])
    if source is not None:
        found.append(("repository", source, "pull"))
    return found


def scope_param(found: list[tuple[str, str, str]]) -> str:
    """``repository:a:pull,push repository:b:pull``: actions joined per resource, in order."""
    actions: dict[tuple[str, str], list[str]] = {}
    for kind, name, action in found:
        actions.setdefault((kind, name), []).append(action)
    return " ".join(f"{kind}:{name}:{','.join(acts)}" for (kind, name), acts in actions.items())


def basic(realm: str) -> str:
    return f"Basic realm={quoted(realm)}"


def bearer(realm: str, service: str, found: list[tuple[str, str, str]], error: str | None) -> str:
    value = f"Bearer realm={quoted(realm)},service={quoted(service)}"
    scope = scope_param(found)
    if scope:
        value += f",scope={quoted(scope)}"
    if error is not None:
        value += f",error={quoted(error)}"
    return value


def _body(code: str, message: str, detail: Any) -> bytes:
    document = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return json.dumps(document, separators=(",", ":")).encode()


def _detail(found: list[tuple[str, str, str]]) -> list[dict[str, str]] | None:
    return [{"Type": t, "Class": "", "Name": n, "Action": a} for t, n, a in found] or None


def unauthorized(challenge: str, found: list[tuple[str, str, str]]) -> Response:
    body = _body("UNAUTHORIZED", "authentication required", _detail(found))
    return Response(body, status_code=401, headers={"WWW-Authenticate": challenge}, media_type=_JSON)


def denied(found: list[tuple[str, str, str]], message: str = "requested access to the resource is denied") -> Response:
    return Response(_body("DENIED", message, _detail(found)), status_code=403, media_type=_JSON)


def too_many(retry_after: int) -> Response:
    body = _body("TOOMANYREQUESTS", "too many failed authentications; try again later", {"retry_after": retry_after})
    return Response(body, status_code=429, headers={"Retry-After": str(retry_after)}, media_type=_JSON)
