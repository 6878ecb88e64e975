"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import gc
from app.config import Settings
from app.errors import HANDLERS
from app.routes import ROUTES
from app.zerocopy import ZeroCopySend
from storage import Options, Registry, drivers
from storage.gc import touch

_COMMON_HEADERS = [
    (b"docker-distribution-api-version", b"registry/2.0"),
    (b"x-content-type-options", b"nosniff"),
]


class CommonHeaders:
    """Adds the headers registry:2 puts on every response (docker checks the API version one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_COMMON_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def open_registry(settings: Settings) -> Registry:
    """The storage the settings name, with its driver, caches and threads (close it when done)."""
    driver = drivers.create(settings.storage.driver(), {"rootdirectory": settings.root})
    options = Options(
        delete_enabled=settings.storage.delete.enabled,
        read_only=settings.storage.maintenance.readonly.enabled,
        gc_grace=settings.kura.gc.grace,
    )
    return Registry(driver, options)


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Threads and caches live exactly as long as the server: created here, released on shutdown.
        app.state.registry = open_registry(settings)
        if not settings.storage.maintenance.readonly.enabled:
            await touch.publish(app.state.registry.driver, settings.kura.gc.grace)
        collecting = gc.start(settings, app.state.registry)
        try:
            yield
        finally:
            if collecting is not None:
                collecting.cancel()
                await asyncio.gather(collecting, return_exceptions=True)
            await app.state.registry.close()

    app = Starlette(routes=ROUTES, exception_handlers=HANDLERS, lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(CommonHeaders)
    return app


def served_app(settings: Settings) -> ASGIApp:
    """What ``kura serve`` runs: the app, with zero-copy blob sends offered around it."""
    return ZeroCopySend(create_app(settings))
