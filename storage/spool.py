"""A durable, ordered queue of opaque records in one driver directory: the notification spool.

Four verbs (``append``, ``pending``, ``read``, ``remove``) and a leader lock, all through the storage
driver, so the spool works on any driver the registry runs on.

Layout of ``<directory>`` (``kura/notifications/<endpoint>/`` for a notification endpoint)::

    <ns:020d>-<pid>-<seq>-<size>.event   one record
    leader.lock                          locked by the one process that delivers

Consistency model: a record is stored with the driver's ``put_content``, which is atomic and durable
(on the filesystem: a temporary file under ``kura/tmp/``, fsync, rename, directory fsync), so a
listed record is always whole, and a writer killed at any point leaves at most a temporary file
outside the spool, which the driver removes once it is an hour old. Names sort in append order: the
wall clock in nanoseconds first, then the writer's pid and its own counter, so two processes never
make the same name and a record appended after another one was acknowledged sorts after it (across
processes this trusts the wall clock not to step back between the two). The size is in the name so
that bounding the spool needs no ``stat`` per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from storage import paths
from storage.driver import Busy, PathNotFound, StorageDriver

SUFFIX = ".event"
LOCK_NAME = "leader.lock"
PARSE_BATCH = 4096  # names parsed between two yields to the event loop: a long spool never stalls it
_NAME = re.compile(r"(\d{20})-(\d+)-(\d+)-(\d+)\.event")
_counter = itertools.count()
_last_ns = 0


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    name: str
    size: int


class Spool:
    def __init__(self, driver: StorageDriver, directory: str) -> None:
        self.driver = driver
        self.directory = directory

    @classmethod
    def of_endpoint(cls, driver: StorageDriver, endpoint: str) -> Spool:
        """The spool of a notification endpoint (``endpoint`` is already one safe path component)."""
        return cls(driver, paths.notification_spool(endpoint))

    def _path(self, name: str) -> str:
        return paths.join(self.directory, name)

    async def append(self, data: bytes) -> SpoolEntry:
        """Store ``data`` durably as the newest record."""
        global _last_ns
        # Never backwards within a process, even if the wall clock steps back.
        _last_ns = max(time.time_ns(), _last_ns + 1)
        name = f"{_last_ns:020d}-{os.getpid()}-{next(_counter)}-{len(data)}{SUFFIX}"
        await self.driver.put_content(self._path(name), data, durable=True)
        return SpoolEntry(name, len(data))

    async def pending(self) -> list[SpoolEntry]:
        """Every record, oldest first."""
        try:
            names = await self.driver.list(self.directory)
        except PathNotFound:
            return []
        names.sort()  # the order of the names is the order of appends (see above)
        found: list[SpoolEntry] = []
        for start in range(0, len(names), PARSE_BATCH):
            if start:
                await asyncio.sleep(0)
            found.extend(
                SpoolEntry(n, int(m[4])) for n in names[start : start + PARSE_BATCH] if (m := _NAME.fullmatch(n))
            )
        return found

    async def read(self, entry: SpoolEntry) -> bytes | None:
        """The record's bytes, None when it has been removed meanwhile."""
        try:
            return await self.driver.get_content(self._path(entry.name))
        except PathNotFound:
            return None

    async def remove(self, entry: SpoolEntry) -> None:
        """Forget a record (delivered or dropped). Not made durable: a record that reappears after a
        power loss is delivered again, which at-least-once allows."""
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(self._path(entry.name))

    @contextlib.asynccontextmanager
    async def leading(self) -> AsyncIterator[bool]:
        """Whether this holder leads, for as long as the context lasts: the leader lock, had at once
        or not at all. One holder at a time, across processes, and even within one process; on the
        filesystem it is an flock, which the kernel frees when its holder dies."""
        async with contextlib.AsyncExitStack() as held:
            try:
                await held.enter_async_context(self.driver.lock(self._path(LOCK_NAME), create=True))
                leads = True
            except Busy:
                leads = False
            yield leads
