"""The in-memory driver (registry:2's ``inmemory``): for tests and throwaway registries, one process only.

Files are byte arrays keyed by path; directories exist implicitly while a file lies below them.
It honours the same contract as the filesystem driver (atomic puts, exclusive writers, locks, a
reader that keeps serving a removed file), which the shared driver test suite checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from storage.driver import Busy, FileInfo, PathNotFound


@dataclass
class _File:
    data: bytearray
    mtime_ns: int = field(default_factory=time.time_ns)


class InMemoryDriver:
    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self._exclusive: set[str] = set()
        self._shared: dict[str, int] = {}

    def _file(self, path: str) -> _File:
        found = self._files.get(path)
        if found is None:
            raise PathNotFound(path)
        return found

    def _below(self, path: str) -> list[str]:
        prefix = f"{path}/" if path else ""  # "" is the root
        return [p for p in self._files if p.startswith(prefix)]

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        data = self._file(path).data
        return bytes(data if limit is None else data[: limit + 1])

    async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
        if self._below(path):
            raise IsADirectoryError(path)
        self._files[path] = _File(bytearray(data))  # a new object: open readers keep the old bytes

    async def reader(self, path: str) -> _Reader:
        return _Reader(bytes(self._file(path).data))

    async def writer(self, path: str, *, create: bool = False) -> _Writer:
        if create:
            if path in self._files:
                raise FileExistsError(path)
            self._files[path] = _File(bytearray())
        file = self._file(path)
        if path in self._exclusive or self._shared.get(path):
            raise Busy(path)
        self._exclusive.add(path)
        return _Writer(self, path, file)

    async def stat(self, path: str) -> FileInfo:
        info = self._stat(path)
        if info is None:
            raise PathNotFound(path)
        return info

    def _stat(self, path: str) -> FileInfo | None:
        file = self._files.get(path)
        if file is not None:
            return FileInfo(path, len(file.data), file.mtime_ns, False)
        below = self._below(path)
        if not below:
            return None
        return FileInfo(path, 0, None, True)

    async def stat_many(self, paths: Sequence[str]) -> list[FileInfo | None]:
        return [self._stat(p) for p in paths]

    async def list(self, path: str) -> list[str]:
        below = self._below(path)
        if not below:
            raise PathNotFound(path)
        start = len(path) + 1 if path else 0
        return sorted({p[start:].split("/", 1)[0] for p in below})

    async def move(self, source: str, target: str, *, durable: bool = True) -> None:
        if self._below(target):
            raise IsADirectoryError(target)
        if source not in self._files:
            below = self._below(source)
            if not below:
                raise PathNotFound(source)
            for path in below:  # a directory: every file below it, at once (no await in between)
                self._files[target + path[len(source) :]] = self._files.pop(path)
            return
        self._files[target] = self._files.pop(source)

    async def move_many(self, pairs: Sequence[tuple[str, str]], *, durable: bool = True) -> Sequence[bool]:
        moved = []
        for source, target in pairs:
            try:
                await self.move(source, target)
                moved.append(True)
            except PathNotFound:
                moved.append(False)
        return moved

    async def delete_many(self, paths: Sequence[str]) -> None:
        for path in paths:
            try:
                await self.delete(path)
            except PathNotFound:
                pass

    async def delete(self, path: str) -> None:
        if path in self._files:
            del self._files[path]
            return
        below = self._below(path)
        if not below:
            raise PathNotFound(path)
        for p in below:
            del self._files[p]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        for p in self._below(path):
            file = self._files.get(p)
            if file is not None:
                yield FileInfo(p, len(file.data), file.mtime_ns, False)
            await asyncio.sleep(0)

    async def touch(self, path: str) -> None:
        if path in self._files:
            self._files[path].mtime_ns = time.time_ns()
        elif not self._below(path):
            raise PathNotFound(path)  # a directory keeps no mtime here; touching one is a no-op

    @contextlib.asynccontextmanager
    async def lock(
        self, path: str, *, shared: bool = False, wait: float = 0.0, create: bool = False
    ) -> AsyncIterator[None]:
        if self._stat(path) is None:
            if not create:
                raise PathNotFound(path)
            self._files[path] = _File(bytearray())
        deadline = time.monotonic() + wait
        while path in self._exclusive or (not shared and self._shared.get(path)):
            if time.monotonic() >= deadline:
                raise Busy(path)
            await asyncio.sleep(0.002)
        if shared:
            self._shared[path] = self._shared.get(path, 0) + 1
        else:
            self._exclusive.add(path)
        try:
            yield
        finally:
            if shared:
                self._shared[path] -= 1
            else:
                self._exclusive.discard(path)

    def lock_holders(self, path: str) -> Sequence[int] | None:
        return None  # its locks are this process's own: nothing else can run beside it

    async def close(self) -> None:
        pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    async def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        stop = len(self._data) if end is None else end + 1
        for offset in range(start, stop, 1 << 20):
            yield self._data[offset : min(offset + (1 << 20), stop)]

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class _Writer:
    def __init__(self, driver: InMemoryDriver, path: str, file: _File) -> None:
        self._driver = driver
        self._path = path
        self._file = file

    @property
    def size(self) -> int:
        return len(self._file.data)

    async def write(self, pieces: Sequence[bytes]) -> None:
        for piece in pieces:
            self._file.data += piece
        self._file.mtime_ns = time.time_ns()

    def start_flush(self) -> None:
        pass

    async def commit(self, move_to: str | None = None) -> None:
        if move_to is not None:
            await self._driver.move(self._path, move_to)
            self._driver._exclusive.discard(self._path)
            self._driver._exclusive.add(move_to)
            self._path = move_to

    async def truncate(self, size: int) -> None:
        del self._file.data[size:]

    async def close(self) -> None:
        self._driver._exclusive.discard(self._path)
