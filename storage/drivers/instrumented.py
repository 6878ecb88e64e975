"""A driver that times every call of another one: registry:2's ``registry_storage_action_seconds``.

The HTTP layer wraps the driver in this only when metrics are on, so an unobserved server pays
nothing. Action names are registry:2's (``GetContent``, ``PutContent``, ``Stat``, ...) plus Kura's
own calls (``StatMany``, ``Touch``, ``Lock``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from storage.driver import FileInfo, FileReader, FileWriter, StorageDriver

Observe = Callable[[str, str, float], None]  # (driver name, action, seconds)


class InstrumentedDriver:
    def __init__(self, inner: StorageDriver, observe: Observe) -> None:
        self.inner = inner
        self.name = inner.name
        self._observe = observe

    def _done(self, action: str, started: float) -> None:
        self._observe(self.name, action, time.perf_counter() - started)

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        started = time.perf_counter()
        try:
            return await self.inner.get_content(path, limit)
        finally:
            self._done("GetContent", started)

    async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
        started = time.perf_counter()
        try:
            await self.inner.put_content(path, data, durable=durable)
        finally:
            self._done("PutContent", started)

    async def reader(self, path: str) -> FileReader:
        started = time.perf_counter()
        try:
            return await self.inner.reader(path)
        finally:
            self._done("Reader", started)

    async def writer(self, path: str, *, create: bool = False) -> FileWriter:
        started = time.perf_counter()
        try:
            return await self.inner.writer(path, create=create)
        finally:
            self._done("Writer", started)

    async def stat(self, path: str) -> FileInfo:
        started = time.perf_counter()
        try:
            return await self.inner.stat(path)
        finally:
            self._done("Stat", started)

    async def stat_many(self, paths: Sequence[str]) -> list[FileInfo | None]:
        started = time.perf_counter()
        try:
            return await self.inner.stat_many(paths)
        finally:
            self._done("StatMany", started)

    async def list(self, path: str) -> list[str]:
        started = time.perf_counter()
        try:
            return await self.inner.list(path)
        finally:
            self._done("List", started)

    async def move(self, source: str, target: str, *, durable: bool = True) -> None:
        started = time.perf_counter()
        try:
            await self.inner.move(source, target, durable=durable)
        finally:
            self._done("Move", started)

    async def move_many(self, pairs: Sequence[tuple[str, str]], *, durable: bool = True) -> Sequence[bool]:
        started = time.perf_counter()
        try:
            return await self.inner.move_many(pairs, durable=durable)
        finally:
            self._done("MoveMany", started)

    async def delete_many(self, paths: Sequence[str]) -> None:
        started = time.perf_counter()
        try:
            await self.inner.delete_many(paths)
        finally:
            self._done("DeleteMany", started)

    async def delete(self, path: str) -> None:
        started = time.perf_counter()
        try:
            await self.inner.delete(path)
        finally:
            self._done("Delete", started)

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        started = time.perf_counter()
        try:
            async for info in self.inner.walk(path):
                yield info
        finally:
            self._done("Walk", started)

    async def touch(self, path: str) -> None:
        started = time.perf_counter()
        try:
            await self.inner.touch(path)
        finally:
            self._done("Touch", started)

    @contextlib.asynccontextmanager
    async def lock(
        self, path: str, *, shared: bool = False, wait: float = 0.0, create: bool = False
    ) -> AsyncIterator[None]:
        started = time.perf_counter()
        async with self.inner.lock(path, shared=shared, wait=wait, create=create):
            self._done("Lock", started)  # the wait for the lock, not the time it is held
            yield

    def lock_holders(self, path: str) -> Sequence[int] | None:
        return self.inner.lock_holders(path)

    async def close(self) -> None:
        await self.inner.close()
