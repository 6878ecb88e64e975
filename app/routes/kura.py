"""Kura's own API, under ``/_kura/`` so it can never collide with ``/v2/`` names."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.http import registry
from app.images import explain


async def inspect(request: Request) -> Response:
    source = explain.LocalSource(registry(request))
    report = await explain.explain(
        source, request.path_params["name"], request.path_params["reference"], request.query_params.get("platform")
    )
    # JSONResponse's encoding, made printable: a stored string may hold a lone surrogate, which UTF-8 cannot encode.
    text = json.dumps(report.as_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(explain.printable(text), media_type="application/json")


async def live(request: Request) -> Response:
    """For container health checks: answers without touching storage (or credentials, once auth exists).

    While a ``health`` check fails it answers 503, as every other URL then does.
    """
    return JSONResponse({})
