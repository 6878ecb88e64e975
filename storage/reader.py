"""Reading a stored blob by file descriptor, in large chunks, with one read ahead.

The file is opened before anything is sent, so a blob removed meanwhile (garbage collection) is still
served whole from the open descriptor.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from storage.executor import run

CHUNK = 1 << 20


class BlobReader:
    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    @classmethod
    async def open(cls, path: str) -> BlobReader:
        def _open() -> BlobReader:
            fd = os.open(path, os.O_RDONLY)
            return cls(fd, os.fstat(fd).st_size)

        return await run(_open)

    async def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive (the whole blob by default)."""
        stop = self.size if end is None else end + 1
        offset = start
        pending: asyncio.Future[bytes] | None = None
        while offset < stop or pending is not None:
            if pending is None:
                pending = asyncio.ensure_future(run(os.pread, self.fd, min(CHUNK, stop - offset), offset))
            data = await pending
            pending = None
            if not data:
                return  # the file shrank under us; the response will be short and the client sees it
            offset += len(data)
            if offset < stop:
                pending = asyncio.ensure_future(run(os.pread, self.fd, min(CHUNK, stop - offset), offset))
            yield data

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        os.close(self.fd)
