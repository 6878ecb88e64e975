"""The server's notifier: spools each event for every endpoint that wants it, and runs the deliveries.

An event is spooled after the storage change it describes is committed and before the response is
sent. So a client that saw a 2xx can count on the event (it is on disk, fsync'd, before the client
hears anything), and no event describes a change that did not happen. A crash between the commit and
the spool write loses that one event, but its client sees no success either and retries, as it does
for any failed push.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import Request

from app.config import Settings
from app.notify.config import Endpoint, Notifications
from app.notify.delivery import Delivery
from app.notify.event import Target, record
from app.notify.stats import EndpointStats
from storage.executor import run
from storage.spool import Spool


def spool_root(root: str) -> str:
    """Kura-private state beside registry:2's tree, which registry:2 never looks at."""
    return os.path.join(root, "kura", "notifications")


@dataclass
class Outlet:
    """One endpoint: its filters, its spool and its counters."""

    endpoint: Endpoint
    spool: Spool
    stats: EndpointStats
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def accepts(self, action: str, media_type: str | None) -> bool:
        return action not in self.endpoint.ignore.actions and media_type not in self.endpoint.ignored_media_types


class Notifier:
    def __init__(self, config: Notifications, root: str, host: str | None, listen_port: int) -> None:
        self.outlets = [
            Outlet(e, Spool(os.path.join(spool_root(root), e.spool_name)), EndpointStats(e.name)) for e in config.active
        ]
        self.include_references = config.events.includereferences
        self.host = host
        # registry:2's SourceRecord: this machine and the configured port, and an id per start.
        self.source = {"addr": f"{socket.gethostname()}:{listen_port}", "instanceID": str(uuid.uuid4())}

    @classmethod
    def of(cls, settings: Settings) -> Notifier | None:
        """The server's notifier; None when no endpoint is enabled, so that events cost nothing."""
        if not settings.notifications.active:
            return None
        return cls(settings.notifications, settings.root, settings.http.host, settings.listen()[1])

    def wants(self, action: str, media_type: str | None = None) -> bool:
        return any(o.accepts(action, media_type) for o in self.outlets)

    async def emit(self, request: Request, action: str, target: Target) -> None:
        outlets = [o for o in self.outlets if o.accepts(action, target.get("mediaType"))]
        if not outlets:
            return
        data = json.dumps(record(request, action, target, self.source), ensure_ascii=False).encode()
        await run(_append_all, [o.spool for o in outlets], data)
        for outlet in outlets:
            outlet.stats.spooled()
            outlet.wake.set()

    def stats(self) -> dict[str, EndpointStats]:
        return {o.endpoint.name: o.stats for o in self.outlets}

    @contextlib.asynccontextmanager
    async def delivering(self) -> AsyncIterator[None]:
        """Runs every endpoint's delivery for the lifetime of the server process."""
        tasks = [asyncio.create_task(Delivery(o.endpoint, o.spool, o.stats, o.wake).run()) for o in self.outlets]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _append_all(spools: list[Spool], data: bytes) -> None:
    for spool in spools:
        spool.append(data)
