"""Events for what a garbage collection removed: registry:2's ``delete`` events, one per tag a
retention policy removed and one per manifest deleted, spooled for every endpoint that takes deletes.

registry:2 sends none (its GC is offline), so a receiver that mirrors the registry's content (a
scanner's database, a replica's index) never learns that an image went. These are the events an API
``DELETE`` of the same tag or manifest makes, with the same ``target`` (only ``repository`` and
``tag`` or ``digest``), so such a receiver needs no new code. No request caused them: ``request`` has
one ``id`` for the whole run, an empty ``method`` and the user agent ``kura-gc``; ``actor`` is empty.

They are appended to the endpoints' spools through the storage driver, from whichever process ran
the collection (a worker's child, or ``kura garbage-collect``), after the removals, and the server's
delivery sends them as any other event: a collection run while the server is stopped is delivered
when it starts. ``ignore.actions: [delete]`` spares an endpoint. A run whose events cannot be
spooled (a full disk) still counts as done: its removals are made, and the failure is logged.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any

from app.config import Settings
from app.notify.config import Endpoint
from app.notify.event import compact, target, timestamp
from storage import Spool, StorageDriver
from storage.gc.report import Report

USER_AGENT = "kura-gc"
# Each record is its own durable file (an fsync each): several at once overlap their disk waits, so a
# run that deleted thousands of manifests spools in seconds. The records still sort in event order.
APPENDS_AT_ONCE = 16
BATCH = 1024  # events held at once, at most


def _wants(endpoint: Endpoint) -> bool:
    return "delete" not in endpoint.ignore.actions and None not in endpoint.ignored_media_types


def targets(report: Report) -> Iterator[dict[str, Any]]:
    """Per repository in name order: its removed tags, then its deleted manifests."""
    for name in sorted(report.repositories):
        removed = report.repositories[name]
        for tag, _ in removed.untagged:
            yield target(name, tag=tag)
        for digest in removed.manifests:
            yield target(name, digest=str(digest))


async def spool(settings: Settings, driver: StorageDriver, report: Report) -> int:
    """Spool the run's events (none for a dry run); returns how many were spooled."""
    endpoints = [e for e in settings.notifications.active if _wants(e)]
    if report.dry_run or not endpoints:
        return 0
    spools = [Spool.of_endpoint(driver, e.spool_name) for e in endpoints]
    request = {"id": str(uuid.uuid4()), "method": "", "useragent": USER_AGENT}
    source = compact({"addr": f"{socket.gethostname()}:{settings.listen()[1]}", "instanceID": str(uuid.uuid4())})
    room = asyncio.Semaphore(APPENDS_AT_ONCE)

    async def append(one: Spool, data: bytes) -> None:
        async with room:  # waiters go in FIFO order, and a record's name is taken when its append starts
            await one.append(data)

    count = 0
    pending: list[Coroutine[Any, Any, None]] = []
    for event_target in targets(report):
        event = {
            "id": str(uuid.uuid4()),
            "timestamp": timestamp(time.time_ns()),
            "action": "delete",
            "target": event_target,
            "request": request,
            "actor": {},
            "source": source,
        }
        data = json.dumps(event, ensure_ascii=False).encode()
        pending += [append(one, data) for one in spools]
        count += 1
        if len(pending) >= BATCH:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return count
