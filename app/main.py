"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import gc, metrics
from app.catchall import CatchAll
from app.config import Settings
from app.errors import HANDLERS
from app.health import Health, HealthGate
from app.hotroutes import HotRoutes
from app.notify.notifier import Notifier
from app.observe import Observe
from app.routes import ROUTES
from app.ui import routes as ui
from app.ui.site import Site
from app.zerocopy import ZeroCopySend
from storage import Options, Registry, drivers
from storage.gc import touch

_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


class CommonHeaders:
    """Adds the headers registry:2 puts on every response: the API version (docker checks it), then
    ``http.headers`` from the config (registry:2's image sets X-Content-Type-Options: nosniff there)."""

    def __init__(self, app: ASGIApp, headers: dict[str, list[str]]) -> None:
        self.app = app
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, vs in headers.items() for v in vs]
        self.headers = [_API_VERSION, *extra]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def open_registry(settings: Settings) -> Registry:
    """The storage the settings name, with its driver, caches and threads (close it when done)."""
    driver = drivers.create(settings.storage.driver(), {"rootdirectory": settings.root})
    if settings.http.debug.addr and settings.http.debug.prometheus.enabled:  # as the Observe middleware counts
        driver = drivers.InstrumentedDriver(driver, metrics.observe_storage_action)
    options = Options(
        delete_enabled=settings.storage.delete.enabled,
        read_only=settings.storage.maintenance.readonly.enabled,
        gc_grace=settings.kura.gc.grace,
    )
    return Registry(driver, options)


def create_app(settings: Settings) -> Starlette:
    health = Health(settings.health.storagedriver)
    notifier = Notifier.of(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Threads and caches live exactly as long as the server: created here, released on shutdown.
        app.state.registry = open_registry(settings)
        if not settings.storage.maintenance.readonly.enabled:
            await touch.publish(app.state.registry.driver, settings.kura.gc.grace)
        collecting = gc.start(settings, app.state.registry)
        try:
            async with (
                health.polling(app.state.registry.driver),
                notifier.delivering(app.state.registry.driver) if notifier else nullcontext(),
            ):
                yield
        finally:
            if collecting is not None:
                collecting.cancel()
                await asyncio.gather(collecting, return_exceptions=True)
            await app.state.registry.close()
            del app.state.registry

    routes = ROUTES
    if settings.kura.ui.enabled:
        routes = [*ROUTES, *ui.ROUTES]
    app = Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)
    shared = None
    if settings.auth.enabled:
        from app.auth.accounts import shared_accounts

        shared = shared_accounts(settings)  # one failed-login budget for the API and the UI's login
    if settings.kura.ui.enabled:
        app.state.ui = Site(settings, shared)
    app.state.settings = settings
    app.state.health = health
    app.add_middleware(HotRoutes, routes=ROUTES)  # innermost: after auth and the health gate, like a route
    if health.checks:
        app.add_middleware(HealthGate, health=health)
    if settings.auth.enabled:
        # Inside CommonHeaders, so challenges carry the API version header docker looks for.
        from app.auth.configure import middleware_options
        from app.auth.middleware import AuthMiddleware

        app.add_middleware(AuthMiddleware, **middleware_options(settings, routes, shared))
    app.state.notifier = notifier
    app.add_middleware(CatchAll)  # inside CommonHeaders: a 500 gets the common headers too
    app.add_middleware(CommonHeaders, headers=settings.http.headers)
    counted = bool(settings.http.debug.addr) and settings.http.debug.prometheus.enabled
    app.add_middleware(Observe, metrics=counted, access_log=not settings.log.accesslog.disabled)
    return app


def served_app(settings: Settings) -> ASGIApp:
    """What ``kura serve`` runs: the app, with zero-copy blob sends offered around it."""
    return ZeroCopySend(create_app(settings))
