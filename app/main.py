"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import gc, metrics
from app.catchall import CatchAll
from app.config import Settings
from app.errors import HANDLERS
from app.health import Health, HealthGate
from app.hotroutes import HotLane
from app.notify.notifier import Notifier
from app.observe import Accounting, Observe
from app.routes import ROUTES
from app.ui import routes as ui
from app.ui.site import Site
from app.zerocopy import ZeroCopySend
from storage import Options, Registry, drivers
from storage.gc import state as gc_state
from storage.gc import touch

_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


def common_headers(configured: dict[str, list[str]]) -> list[tuple[bytes, bytes]]:
    """The headers registry:2 puts on every response: the API version (docker checks it), then
    ``http.headers`` from the config (registry:2's image sets X-Content-Type-Options: nosniff there)."""
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, vs in configured.items() for v in vs]
    return [_API_VERSION, *extra]


class CommonHeaders:
    """Adds ``common_headers`` to every response."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RegistryApp(Starlette):
    """The Starlette app, which offers each HTTP request to the hot lane (``app.hotroutes``) first."""

    lane: HotLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lane is not None and scope["type"] == "http":
            scope["app"] = self  # what Starlette sets for its routes (request.app)
            if await self.lane.answer(scope, receive, send):
                return
        await super().__call__(scope, receive, send)


def open_registry(settings: Settings) -> Registry:
    """The storage the settings name, with its driver, caches and threads (close it when done)."""
    driver = settings.open_driver()
    if settings.http.debug.addr and settings.http.debug.prometheus.enabled:  # as the Observe middleware counts
        driver = drivers.InstrumentedDriver(driver, metrics.observe_storage_action)
    options = Options(
        delete_enabled=settings.storage.delete.enabled,
        read_only=settings.storage.maintenance.readonly.enabled,
        gc_grace=settings.kura.gc.grace,
    )
    return Registry(driver, options)


async def _close_registry(app: Starlette) -> None:
    await app.state.registry.close()
    del app.state.registry


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def create_app(settings: Settings) -> RegistryApp:
    health = Health(settings.health.storagedriver)
    notifier = Notifier.of(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Threads and caches live exactly as long as the server: created here, released on shutdown
        # (the stack unwinds in reverse).
        app.state.registry = registry = open_registry(settings)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(_close_registry, app)
            # Before the registry writes anything: an offline collection may be running (then no start).
            await stack.enter_async_context(gc_state.serving(registry.driver))
            if not settings.storage.maintenance.readonly.enabled:
                await touch.publish(registry.driver, settings.kura.gc.grace)
            collecting = gc.start(settings, registry)
            if collecting is not None:
                stack.push_async_callback(_stop, collecting)
            await stack.enter_async_context(health.polling(registry.driver))
            if notifier:
                await stack.enter_async_context(notifier.delivering(registry.driver))
            yield

    routes = ROUTES
    if settings.kura.ui.enabled:
        routes = [*ROUTES, *ui.ROUTES]
    app = RegistryApp(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)
    shared = None
    if settings.auth.enabled:
        from app.auth.accounts import shared_accounts

        shared = shared_accounts(settings)  # one failed-login budget for the API and the UI's login
    if settings.kura.ui.enabled:
        app.state.ui = Site(settings, shared)
    app.state.settings = settings
    app.state.health = health
    gate = None
    if health.checks:
        app.add_middleware(HealthGate, health=health)
    if settings.auth.enabled:
        # Inside CommonHeaders, so challenges carry the API version header docker looks for.
        from app.auth.configure import middleware_options
        from app.auth.middleware import AuthMiddleware, ReadGate

        options = middleware_options(settings, routes, shared)
        app.add_middleware(AuthMiddleware, **options)
        gate = ReadGate(options["scheme"], options["limiter"], options.get("token_endpoint"))
    app.state.notifier = notifier
    headers = common_headers(settings.http.headers)
    counted = bool(settings.http.debug.addr) and settings.http.debug.prometheus.enabled
    accounting = Accounting(metrics=counted, access_log=not settings.log.accesslog.disabled)
    app.add_middleware(CatchAll)  # inside CommonHeaders: a 500 gets the common headers too
    app.add_middleware(CommonHeaders, headers=headers)
    app.add_middleware(Observe, accounting=accounting)
    app.lane = HotLane(ROUTES, accounting, headers, health, gate)
    return app


def served_app(settings: Settings) -> ASGIApp:
    """What ``kura serve`` runs: the app, with zero-copy blob sends offered around it."""
    return ZeroCopySend(create_app(settings))
