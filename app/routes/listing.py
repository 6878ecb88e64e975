"""``tags/list`` and ``_catalog``: sorted, paginated with ``n``/``last`` and a ``Link`` header."""

from __future__ import annotations

import re
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.auth.catalog import visible_page
from app.auth.principal import PRINCIPAL
from app.http import next_link, page_size, registry

# What JSON writes unescaped and valid tag and repository names are made of (a listing read from disk
# may still hold anything: whatever a directory is called)
_PLAIN: Final = re.compile(r"[A-Za-z0-9_./-]*")


class ListingResponse(JSONResponse):
    """JSONResponse's bytes for an object of names and lists of names. Names of plain characters, as every
    valid tag and repository name is, are written as they are: the encoder takes twice as long for a page
    of 100 tags, which a CI walking the tags asks for once per page. Anything else goes through it."""

    def render(self, content: Any) -> bytes:
        members = []
        for key, value in content.items():
            if isinstance(value, str):
                text, encoded = value, f'"{value}"'
            elif isinstance(value, list):
                try:
                    text = "".join(value)
                except TypeError:  # not all strings
                    return super().render(content)
                encoded = ('["' + '","'.join(value) + '"]') if value else "[]"
            else:
                return super().render(content)
            if not _PLAIN.fullmatch(key) or not _PLAIN.fullmatch(text):
                return super().render(content)
            members.append(f'"{key}":{encoded}')
        return ("{" + ",".join(members) + "}").encode()


async def list_tags(request: Request) -> Response:
    name = request.path_params["name"]
    n = page_size(request, default=None)
    tags, more = await registry(request).list_tags(name, n, request.query_params.get("last") or None)
    headers = {"Link": next_link(f"/v2/{name}/tags/list", n, tags[-1])} if more and n and tags else {}
    return ListingResponse({"name": name, "tags": tags}, headers=headers)


async def catalog(request: Request) -> Response:
    settings = request.app.state.settings
    n = page_size(request, default=settings.catalog.maxentries, maximum=settings.catalog.maxentries)
    assert n is not None
    last = request.query_params.get("last") or None
    principal = request.scope.get(PRINCIPAL)
    if principal is not None and principal.sees is not None:
        repositories, more = await visible_page(registry(request), principal.sees, n, last)
    else:
        repositories, more = await registry(request).list_repositories(n, last)
    headers = {}
    if more and repositories:
        headers["Link"] = next_link("/v2/_catalog", n, repositories[-1])
    return ListingResponse({"repositories": repositories}, headers=headers)
