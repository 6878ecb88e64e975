"""The storage driver: the one seam through which the registry reads and writes bytes.

Modelled on registry:2's ``storagedriver.StorageDriver`` (content get/put, reader, appending
writer, stat, list, move, delete, walk), plus what online GC and concurrent workers need:
modification times, ``touch`` and advisory locks. Paths are ``/``-separated and relative to the
driver's root (``docker/registry/v2/blobs/...``); callers build them with ``storage.paths``.

Every method is a coroutine so that an object store (S3 through aiobotocore) implements it natively,
without a thread per request. The filesystem driver decides per call whether a syscall is cheap
enough for the event loop or goes to its thread pool.

Optional fast paths are capabilities, not requirements: a ``FileReader`` may expose ``fileno()``
(the HTTP layer then uses ``sendfile``), and a ``FileWriter`` may flush in the background.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class PathNotFound(Exception):
    """Nothing is stored at the path (or, for ``list``, it is not a directory)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Busy(Exception):
    """The path is locked by another request (any worker process); the caller may retry later."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    mtime_ns: int | None  # None where the driver keeps no modification time (a "directory" of keys)
    is_dir: bool
    # (identity, wall-clock ns of the last change of any kind): differs after every rewrite, rename over
    # or in-place write of the path, so content read after a stat may be trusted while a later stat
    # shows the same version (``storage.links.LinkCache``). None where the driver cannot say.
    version: tuple[int, int] | None = None


class FileReader(Protocol):
    """An open stored file: what it holds stays readable even if the path is removed meanwhile."""

    @property
    def size(self) -> int: ...

    def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive (the whole file by default)."""
        ...

    def fileno(self) -> int | None:
        """A descriptor the kernel can ``sendfile`` from, or None when there is none."""
        ...

    def close(self) -> None: ...


class FileWriter(Protocol):
    """An exclusive, appending writer: while it is open no other writer or lock holds the path."""

    @property
    def size(self) -> int: ...

    async def write(self, pieces: Sequence[bytes]) -> None:
        """Append ``pieces`` in order."""
        ...

    def start_flush(self) -> None:
        """Start making what was written durable, in the background (a hint; may do nothing)."""
        ...

    async def commit(self, move_to: str | None = None) -> None:
        """Make everything written durable (the file at its path survives a crash).

        With ``move_to`` the file then also moves there, as ``StorageDriver.move`` would, in the same
        round trip: an upload becomes a blob in one step (an object store completes its multipart
        upload at the target). The writer still holds the file, at its new path, until ``close``.
        """
        ...

    async def truncate(self, size: int) -> None: ...

    async def close(self) -> None:
        """Release the file (and its lock); what was written stays."""
        ...


class StorageDriver(Protocol):
    name: str  # the driver label of registry:2's storage metrics ("filesystem", "inmemory")

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        """The whole file (at most ``limit`` bytes + 1, so callers can tell it is too large)."""
        ...

    async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Replace the file atomically: readers see the old bytes or the new, never a mix."""
        ...

    async def reader(self, path: str) -> FileReader: ...

    async def writer(self, path: str, *, create: bool = False) -> FileWriter:
        """Open for appending, exclusively (``Busy`` when held); ``create`` starts an empty file."""
        ...

    async def stat(self, path: str) -> FileInfo: ...

    async def stat_many(self, paths: Sequence[str]) -> list[FileInfo | None]:
        """``stat`` of each path, None for the missing ones: one round trip for many small checks."""
        ...

    async def list(self, path: str) -> list[str]:
        """Names of the direct children of a directory, unsorted."""
        ...

    async def move(self, source: str, target: str, *, durable: bool = True) -> None:
        """Rename a file, or a directory and everything below it, atomically, replacing a ``target`` file.

        ``durable=False`` skips making the rename survive a crash (garbage collection's moves to the
        trash: after a crash the blob is in either place, and both are fine).
        """
        ...

    async def delete(self, path: str) -> None:
        """Remove a file, or a directory and everything below it."""
        ...

    async def move_many(self, pairs: Sequence[tuple[str, str]], *, durable: bool = True) -> Sequence[bool]:
        """``move`` each (source, target) in one round trip; whether each source was there to move."""
        ...

    async def delete_many(self, paths: Sequence[str]) -> None:
        """``delete`` each path in one round trip; missing ones are skipped. For garbage (what collection
        sweeps under its locks, an upload done with): a directory need not disappear at once and whole.
        Listing a directory's files before the directory saves the driver from looking inside it."""
        ...

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file below ``path`` (not directories), in no particular order; nothing if missing."""
        ...

    async def touch(self, path: str) -> None:
        """Set the modification time to now (garbage collection's grace period counts from it)."""
        ...

    def lock(
        self, path: str, *, shared: bool = False, wait: float = 0.0, create: bool = False
    ) -> AbstractAsyncContextManager[None]:
        """An advisory lock on ``path``, across worker processes; ``Busy`` if not had within ``wait`` s.

        Exclusive locks conflict with writers of the same path. ``create`` makes an empty lock file
        when the path does not exist; otherwise a missing path is ``PathNotFound``.
        """
        ...

    def lock_holders(self, path: str) -> Sequence[int] | None:
        """The processes of this host that hold a lock on ``path`` now (none when it does not exist);
        None when the driver cannot tell (no process table, a store other hosts share)."""
        ...

    async def close(self) -> None:
        """Release threads and connections; called once, when the server stops."""
        ...
