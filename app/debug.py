"""registry:2's debug server (``http.debug.addr``): ``/debug/health``, and metrics when enabled.

It listens apart from the registry (plain HTTP even when the registry has TLS, as registry:2's does)
so that it can stay on an internal interface. Every worker serves it on its own SO_REUSEPORT socket,
and any of them answers for the whole server (``app.metrics``).
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.config import Settings
from app.health import Health


def debug_app(settings: Settings, health: Health) -> Starlette:
    async def status(request: Request) -> Response:
        failing = health.failing()
        return JSONResponse(failing, status_code=503 if failing else 200)

    routes = [Route("/debug/health", status, methods=["GET"])]
    prometheus = settings.http.debug.prometheus
    if prometheus.enabled:
        from app import metrics  # only a server with metrics on pays for prometheus-client

        async def scrape(request: Request) -> Response:
            # Reading every worker's files takes a while: not on the event loop the registry shares
            return Response(await asyncio.to_thread(metrics.exposition), media_type=metrics.CONTENT_TYPE)

        routes.append(Route(prometheus.path, scrape, methods=["GET"]))
    return Starlette(routes=routes)
