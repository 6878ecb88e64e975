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
import os
from collections.abc import AsyncIterator

from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import StorageDriverHealth
from app.errors import Code, error_response

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


def probe_root(root: str) -> str | None:
    """The storage driver check: None when the root can be stat'ed (or does not exist yet)."""
    try:
        os.stat(root)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{root}: {exc.strerror}"
    return None


class Health:
    def __init__(self, root: str, settings: StorageDriverHealth) -> None:
        self.root = root
        self.settings = settings
        self.checks: list[ThresholdCheck] = []
        if settings.enabled:
            self.checks.append(ThresholdCheck("storagedriver_filesystem", settings.threshold))

    def failing(self) -> dict[str, str]:
        return {check.name: error for check in self.checks if (error := check.failing()) is not None}

    async def poll(self) -> None:
        check = self.checks[0]
        while True:
            await asyncio.sleep(self.settings.interval)
            # A hung filesystem (NFS) must not hang the poller: a stat that outlives the interval fails
            try:
                error = await asyncio.wait_for(asyncio.to_thread(probe_root, self.root), self.settings.interval or 1)
            except TimeoutError:
                error = f"{self.root}: no answer within {self.settings.interval or 1:g}s"
            if error is not None and check.failing() is None:
                log.error("storage driver health check: %s", error)
            check.update(error)

    @contextlib.asynccontextmanager
    async def polling(self) -> AsyncIterator[None]:
        """Runs the checks for the app's lifetime (from its lifespan)."""
        if not self.checks:
            yield
            return
        task = asyncio.create_task(self.poll())
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
