"""Health checks with registry:2's ``health.storagedriver`` semantics.

Every ``interval`` the storage root is stat'ed (registry:2 stats the driver's ``/``; a missing path
still means the backend answers). A check reports its error once it has failed ``threshold`` times in
a row (with 0, at once), and clears on the first success. While any check reports, ``/debug/health``
answers 503 with ``{"<check>": "<error>"}`` and every request on the main port answers 503
``UNAVAILABLE``, as registry:2's ``health.Handler`` does; ``/_kura/v1/live`` says the same cheaply.

Each worker process polls for itself: a check is a ``stat``, so N workers cost N stats per interval,
and a worker answers from its own state without asking the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import StorageDriverHealth
from app.errors import Code, error_response
from storage import PathNotFound, StorageDriver

log = logging.getLogger("kura")


class ThresholdCheck:
    """registry:2's ``thresholdUpdater``: the last error, reported after ``threshold`` failures in a row."""

    def __init__(self, name: str, threshold: int) -> None:
        self.name = name
        self.threshold = threshold
        self.error: str | None = None
        self.count = 0

    def update(self, error: str | None) -> None:
        if error is None:
            self.count = 0
        elif self.count < self.threshold:
            self.count += 1
        self.error = error

    def failing(self) -> str | None:
        return self.error if self.count >= self.threshold else None


async def probe(driver: StorageDriver) -> str | None:
    """The storage driver check, registry:2's ``Stat`` of the driver's root: None when it answers
    (a root that does not exist yet answers too)."""
    try:
        await driver.stat("")
    except PathNotFound:
        return None
    except OSError as exc:
        return f"{driver.name}: {exc.strerror or exc}"
    return None


DEFAULT_INTERVAL = 10.0  # seconds: registry:2's defaultCheckInterval


class Health:
    def __init__(self, settings: StorageDriverHealth) -> None:
        self.settings = settings
        self.checks: list[ThresholdCheck] = []
        if settings.enabled:
            self.checks.append(ThresholdCheck("storagedriver", settings.threshold))

    def failing(self) -> dict[str, str]:
        return {check.name: error for check in self.checks if (error := check.failing()) is not None}

    async def poll(self, driver: StorageDriver) -> None:
        check = self.checks[0]
        check.name = f"storagedriver_{driver.name}"  # registry:2's check name
        # registry:2 reads an interval of 0 (or less) as its default; a 0 here was a busy loop
        interval = self.settings.interval if self.settings.interval > 0 else DEFAULT_INTERVAL
        while True:
            await asyncio.sleep(interval)
            # A backend that does not answer within the interval fails the check (an object store's
            # request times out; a local filesystem answers from the page cache)
            try:
                async with asyncio.timeout(interval):
                    error = await probe(driver)
            except TimeoutError:
                error = f"{driver.name}: no answer within {interval:g}s"
            if error is not None and check.failing() is None:
                log.error("storage driver health check: %s", error)
            check.update(error)

    @contextlib.asynccontextmanager
    async def polling(self, driver: StorageDriver) -> AsyncIterator[None]:
        """Runs the checks for the app's lifetime (from its lifespan)."""
        if not self.checks:
            yield
            return
        task = asyncio.create_task(self.poll(driver))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class HealthGate:
    """registry:2's ``health.Handler``: while a check fails, every request gets 503 UNAVAILABLE."""

    def __init__(self, app: ASGIApp, health: Health) -> None:
        self.app = app
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.health.failing():
            detail = "health check failed: please see /debug/health"
            await error_response(Code.UNAVAILABLE, Code.UNAVAILABLE.message, detail, 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)
