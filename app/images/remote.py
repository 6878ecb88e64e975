"""Reading a registry over HTTP, for ``kura inspect`` of ``host:port/repo:tag`` and ``kura demo``."""

from __future__ import annotations

from typing import Any

import httpx

from app.images.buildkit import Content, descriptor
from app.images.explain import CONFIG_LIMIT
from storage import mediatypes

ACCEPT = ", ".join(sorted(mediatypes.MANIFESTS))


def describe(exc: httpx.HTTPError, base: str, *, defaulted: bool) -> str:
    """One line for a failed request: the registry's own error, or what went wrong reaching it."""
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        try:
            error = response.json()["errors"][0]
            said = f"{error['message']} ({error['code']})"
        except (ValueError, LookupError, TypeError):
            said = response.reason_phrase or "error"
        return f"{said}, HTTP {response.status_code} from {base}"
    why = str(exc) or type(exc).__name__
    hint = " (no registry host given, so this default was tried; write host:port/repo:tag)" if defaulted else ""
    return f"cannot reach {base}{hint}: {why}"


class RemoteSource:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        r = await self.client.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": ACCEPT})
        r.raise_for_status()
        media_type = r.headers.get("content-type", "").split(";")[0]
        digest = r.headers.get("docker-content-digest") or descriptor("", r.content)["digest"]
        return r.content, media_type, digest

    def unreadable(self, exc: Exception) -> str | None:
        # 404 only: a 401, 429 or 5xx says nothing about the child, and stops the inspect as any failure
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404:
            return "HTTP 404"
        return None

    async def blob(self, name: str, digest: str) -> bytes | None:
        async with self.client.stream("GET", f"/v2/{name}/blobs/{digest}") as r:
            if r.status_code != 200 or int(r.headers.get("content-length", "0")) > CONFIG_LIMIT:
                return None
            return await r.aread()

    async def referrers(self, name: str, digest: str) -> list[dict[str, Any]]:
        r = await self.client.get(f"/v2/{name}/referrers/{digest}")
        if r.status_code != 200:
            return []  # a registry without the API (registry:2 answers 404)
        manifests = r.json().get("manifests")
        return manifests if isinstance(manifests, list) else []


async def push(client: httpx.AsyncClient, name: str, content: Content, tag: str | None) -> str:
    """Push blobs (skipping those present), then manifests children first; tag the last one."""
    for digest, data in content.blobs.items():
        if (await client.head(f"/v2/{name}/blobs/{digest}")).status_code == 200:
            continue
        r = await client.post(f"/v2/{name}/blobs/uploads/")
        r.raise_for_status()
        location = r.headers["location"]
        separator = "&" if "?" in location else "?"
        r = await client.put(f"{location}{separator}digest={digest}", content=data)
        r.raise_for_status()
    for index, (body, media_type) in enumerate(content.manifests):
        digest = descriptor(media_type, body)["digest"]
        reference = tag if tag is not None and index == len(content.manifests) - 1 else digest
        r = await client.put(f"/v2/{name}/manifests/{reference}", content=body, headers={"Content-Type": media_type})
        r.raise_for_status()
    return str(descriptor("", content.root[0])["digest"])
