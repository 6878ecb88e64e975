"""The server's notifier: spools each event for every endpoint that wants it, and runs the deliveries.

An event is spooled after the storage change it describes is committed and before the response is
sent. So a client that saw a 2xx can count on the event (it is stored durably, on the filesystem
driver fsync'd, before the client hears anything), and no event describes a change that did not
happen. A crash between the commit and the spool write loses that one event, but its client sees no
success either and retries, as it does for any failed push.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import Request

from app.config import Settings
from app.notify.config import Endpoint, Notifications
from app.notify.event import Target, record
from app.notify.stats import EndpointStats
from storage import Spool, StorageDriver


@dataclass
class Outlet:
    """One endpoint: its filters, its counters and, once the server has started, its spool."""

    endpoint: Endpoint
    stats: EndpointStats
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    spool: Spool | None = None

    def started_spool(self) -> Spool:
        if self.spool is None:
            raise RuntimeError("the notifier has not started: run the app's lifespan (Notifier.delivering)")
        return self.spool

    def accepts(self, action: str, media_type: str | None) -> bool:
        return action not in self.endpoint.ignore.actions and media_type not in self.endpoint.ignored_media_types


class Notifier:
    def __init__(self, config: Notifications, host: str | None, listen_port: int) -> None:
        self.outlets = [Outlet(e, EndpointStats(e.name)) for e in config.active]
        self.include_references = config.events.includereferences
        self.host = host
        # registry:2's SourceRecord: this machine and the configured port, and an id per start.
        self.source = {"addr": f"{socket.gethostname()}:{listen_port}", "instanceID": str(uuid.uuid4())}

    @classmethod
    def of(cls, settings: Settings) -> Notifier | None:
        """The server's notifier; None when no endpoint is enabled, so that events cost nothing."""
        if not settings.notifications.active:
            return None
        return cls(settings.notifications, settings.http.host, settings.listen()[1])

    def wants(self, action: str, media_type: str | None = None) -> bool:
        return any(o.accepts(action, media_type) for o in self.outlets)

    async def emit(self, request: Request, action: str, target: Target) -> None:
        outlets = [o for o in self.outlets if o.accepts(action, target.get("mediaType"))]
        if not outlets:
            return
        data = json.dumps(record(request, action, target, self.source), ensure_ascii=False).encode()
        spools = [o.started_spool() for o in outlets]
        # The endpoints' writes at once (each waits on its fsync). If one fails, so does the request,
        # and its client retries, as for any failed push.
        await asyncio.gather(*(spool.append(data) for spool in spools))
        for outlet in outlets:
            outlet.stats.spooled()
            outlet.wake.set()

    def stats(self) -> dict[str, EndpointStats]:
        return {o.endpoint.name: o.stats for o in self.outlets}

    @contextlib.asynccontextmanager
    async def delivering(self, driver: StorageDriver) -> AsyncIterator[None]:
        """Spools on ``driver`` (the registry's) and runs every endpoint's delivery, for the lifetime
        of the server process."""
        if self.outlets:  # httpx (~2 MB a worker) only where events are sent
            from app.notify.delivery import Delivery
        for outlet in self.outlets:
            outlet.spool = Spool.of_endpoint(driver, outlet.endpoint.spool_name)
        tasks = [
            asyncio.create_task(Delivery(o.endpoint, o.started_spool(), o.stats, o.wake).run()) for o in self.outlets
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
