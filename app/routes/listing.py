"""``tags/list`` and ``_catalog``: sorted, paginated with ``n``/``last`` and a ``Link`` header."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.auth.catalog import visible_page
from app.auth.principal import PRINCIPAL
from app.http import next_link, page_size, registry


async def list_tags(request: Request) -> Response:
    name = request.path_params["name"]
    n = page_size(request, default=None)
    tags, more = await registry(request).list_tags(name, n, request.query_params.get("last") or None)
    headers = {"Link": next_link(f"/v2/{name}/tags/list", n, tags[-1])} if more and n and tags else {}
    return JSONResponse({"name": name, "tags": tags}, headers=headers)


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
    return JSONResponse({"repositories": repositories}, headers=headers)
