"""Blob uploads under ``_uploads/<id>/{data,startedat}``, as registry:2 keeps them.

All upload state is in storage, so any worker can serve any request of an upload. Each process keeps
the running hash of the uploads it appended to (``HasherCache``); when the hash it has does not cover
the whole file (another worker appended, or a restart) the file is hashed again at commit, exactly
what registry:2 does when no ``hashstates`` match.

Integrity across requests and workers rests on the driver's exclusive writer: an append holds the
upload's data for its whole body, and a commit holds it while it verifies and moves it into
``blobs/``. So a commit can never move a file that a request is still writing (that write would land
in the stored blob), and two appends never interleave. Commits of one upload queue behind each other
on a lock of the upload's directory; the later ones find the upload gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from storage import blobs, paths
from storage.blobs import BlobInfo
from storage.digest import Digest, Hasher, new_hasher
from storage.driver import Busy, FileWriter, PathNotFound, StorageDriver
from storage.errors import DigestInvalid, RangeInvalid, SizeInvalid, UploadBusy, UploadUnknown
from storage.gc.touch import Observer
from storage.names import Name

_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
BATCH = 1 << 19  # bytes gathered before one write (and, in parallel, one hash)
MAX_PIECES = 512  # chunks per batch: one writev each
HASH_ALONE = 1 << 16  # smaller batches are hashed on the event loop: a hand-off costs more
FLUSH_EVERY = 64 << 20  # bytes appended between background flushes of an upload
COMMIT_WAIT = 60.0  # seconds a commit waits for another commit of the same upload


@dataclass(slots=True)
class RunningHash:
    algorithm: str
    offset: int  # bytes hashed; -1 once the hash is known not to cover the file
    hasher: Hasher


class HasherCache:
    """Running hashes by upload id, bounded so abandoned uploads cannot grow it without limit."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, RunningHash] = OrderedDict()

    def pop(self, upload_id: str) -> RunningHash | None:
        return self._items.pop(upload_id, None)

    def put(self, upload_id: str, item: RunningHash) -> None:
        if item.offset < 0:
            return
        self._items[upload_id] = item
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


def validate_id(upload_id: str) -> str:
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise UploadUnknown("blob upload unknown to registry", {"uuid": upload_id[:200]})
    return upload_id


def _unknown(upload_id: str) -> UploadUnknown:
    return UploadUnknown("blob upload unknown to registry", {"uuid": upload_id})


def _busy(upload_id: str) -> UploadBusy:
    return UploadBusy("another request is writing this upload; retry when it has finished", {"uuid": upload_id})


def _covers(item: RunningHash | None, algorithm: str, offset: int) -> bool:
    """Whether ``item`` is the ``algorithm`` hash of exactly the first ``offset`` bytes."""
    return item is not None and item.offset == offset and item.algorithm == algorithm


def _resume(item: RunningHash | None, algorithm: str, offset: int) -> RunningHash:
    """The running hash to continue at ``offset``: ``item`` when it is there, else a fresh one."""
    if item is not None and _covers(item, algorithm, offset):
        return item
    # At 0 a fresh hash covers the file; anywhere else the state is unknown and commit re-hashes.
    return RunningHash(algorithm, 0 if offset == 0 else -1, new_hasher(algorithm))


def _hash_more(running: RunningHash, pieces: Sequence[bytes]) -> None:
    if running.offset >= 0:
        for piece in pieces:
            running.hasher.update(piece)
            running.offset += len(piece)


class UploadWriter:
    """One upload's data file held for one request: appends, the running hash and the flush schedule."""

    def __init__(self, file: FileWriter, running: RunningHash, hashing: Executor) -> None:
        self.file = file
        self.running = running
        self._hashing = hashing
        self._next_flush = (file.size // FLUSH_EVERY + 1) * FLUSH_EVERY  # offsets in the upload, not the request

    async def append(self, batch: Sequence[bytes]) -> None:
        size = sum(map(len, batch))
        if size < HASH_ALONE or self.running.offset < 0:
            await self.file.write(batch)
            _hash_more(self.running, batch)
        else:
            # Write and hash the same bytes at once: both release the GIL, so two cores work.
            hashed = asyncio.get_running_loop().run_in_executor(self._hashing, _hash_more, self.running, batch)
            try:
                await self.file.write(batch)
            finally:
                await asyncio.wait([hashed])  # the pieces and the hash are ours again only after both
            hashed.result()
        if self.file.size >= self._next_flush:
            self.file.start_flush()
            self._next_flush = self.file.size + FLUSH_EVERY


class Uploads:
    def __init__(self, driver: StorageDriver, hashing: Executor, observer: Observer) -> None:
        self._driver = driver
        self._hashing = hashing
        self._observer = observer
        self._hashers = HasherCache()

    async def start(self, name: Name) -> str:
        upload_id = str(uuid.uuid4())
        # registry:2 format: RFC 3339 in UTC, second precision; read back by upload purging. Not
        # durable: an upload torn by a crash is simply started again by its client.
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode("ascii")
        # Written in place, not replaced atomically: nobody knows the id yet, and purging reads a
        # torn ``startedat`` as none (the upload then counts from its newest file).
        for path, content in (
            (paths.upload_started_at(name, upload_id), started),
            (paths.upload_data(name, upload_id), b""),
        ):
            file = await self._driver.writer(path, create=True)
            try:
                if content:
                    await file.write([content])
            finally:
                await file.close()
        return upload_id

    async def size(self, name: Name, upload_id: str) -> int:
        try:
            return (await self._driver.stat(paths.upload_data(name, upload_id))).size
        except PathNotFound:
            raise _unknown(upload_id) from None

    async def _open(self, name: Name, upload_id: str) -> FileWriter:
        try:
            return await self._driver.writer(paths.upload_data(name, upload_id))
        except PathNotFound:
            raise _unknown(upload_id) from None
        except Busy:
            raise _busy(upload_id) from None

    async def append(
        self,
        name: Name,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None,
        length: int | None,
        algorithm: str,
    ) -> int:
        """Append a request body, hashing as it is written; return the upload's new size.

        ``start`` (from Content-Range) must be the current size; ``length``, when known, must be the
        number of bytes received, else the upload is put back as it was (SizeInvalid).
        """
        file = await self._open(name, upload_id)
        try:
            await self._append_held(file, upload_id, chunks, start, length, algorithm)
            return file.size
        finally:
            await file.close()

    async def _append_held(
        self,
        file: FileWriter,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None,
        length: int | None,
        algorithm: str,
    ) -> None:
        before = file.size
        if start is not None and start != before:
            raise RangeInvalid("chunk does not start at the end of the upload", before)
        writer = UploadWriter(file, _resume(self._hashers.pop(upload_id), algorithm, before), self._hashing)
        try:
            await _stream(writer, chunks)
            received = file.size - before
            if length is not None and received != length:
                await file.truncate(before)
                raise SizeInvalid(
                    "body length does not match the declared length", {"declared": length, "received": received}
                )
        except BaseException:
            writer.running.offset = -1
            raise
        self._hashers.put(upload_id, writer.running)

    async def commit(
        self,
        name: Name,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes] | None = None,
        start: int | None = None,
        length: int | None = None,
    ) -> BlobInfo:
        """Append the last chunk, if any (as ``append`` does), verify the upload against ``digest``
        and make it a blob of ``name``.

        Order (registry:2's ``blobWriter.Commit``): verify, make durable, move into ``blobs/`` unless
        the blob is already stored (then the upload is simply dropped), link into the repository,
        remove the upload. A crash between any two steps leaves an orphan upload or an unlinked
        blob, never a torn or wrong one.
        """
        try:
            async with contextlib.AsyncExitStack() as held:
                try:
                    await held.enter_async_context(self._driver.lock(paths.upload(name, upload_id), wait=COMMIT_WAIT))
                except Busy:  # only this lock's: a blob stripe's Busy is the collector's, and passes on
                    raise _busy(upload_id) from None
                info = await self._commit_held(name, upload_id, digest, chunks, start, length)
        except PathNotFound:
            raise _unknown(upload_id) from None
        await self._remove(name, upload_id)
        return info

    async def _commit_held(
        self,
        name: Name,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes] | None,
        start: int | None,
        length: int | None,
    ) -> BlobInfo:
        data = paths.upload_data(name, upload_id)
        file = await self._open(name, upload_id)
        try:
            before = file.size
            if chunks is not None:
                await self._append_held(file, upload_id, chunks, start, length, digest.algorithm)
            running = self._hashers.pop(upload_id)
            if running is not None and _covers(running, digest.algorithm, file.size):
                actual = running.hasher.hexdigest()
            else:
                actual = await self._hash_stored(data, digest.algorithm)
            matches = actual == digest.hex
            if matches:
                try:
                    await self._store(file, digest, written_now=file.size > before)
                except Busy:  # the collector held the blob's stripe: put the upload back as it was, so
                    await file.truncate(before)  # that the client may send this very request again
                    raise
            size = file.size
        finally:
            await file.close()
        if not matches:
            await self._remove(name, upload_id)
            raise DigestInvalid(
                "provided digest did not match uploaded content",
                {"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
            )
        await blobs.link(self._driver, name, digest)
        return BlobInfo(digest, size)

    async def _store(self, file: FileWriter, digest: Digest, *, written_now: bool) -> None:
        """Move the upload into ``blobs/`` unless the blob is stored; then it is touched instead (a
        dedup commit of an old blob is the race garbage collectors lost, operations.md §1.1). Both
        happen under the blob's shared stripe, so the collector cannot remove the blob in between."""
        async with self._observer.held(digest):
            found = await blobs.stored(self._driver, digest)
            if found is None:
                await file.commit(move_to=paths.blob_data(digest))  # fsync and move: one round trip
                if not written_now:  # else the append just now set the mtime the collector trusts
                    # The data's mtime is its last append, maybe long ago for a paused upload.
                    await self._observer.touch_held(digest)
            elif not self._observer.fresh(found):
                await self._observer.touch_held(digest)

    async def _hash_stored(self, path: str, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        reader = await self._driver.reader(path)
        loop = asyncio.get_running_loop()
        try:
            async for chunk in reader.chunks():
                await loop.run_in_executor(self._hashing, hasher.update, chunk)
        finally:
            reader.close()
        return hasher.hexdigest()

    async def _remove(self, name: Name, upload_id: str) -> None:
        """Drop an upload that is done with (committed, or refused for its digest): garbage no request
        writes any more, so it is removed in place, files first (a third of ``delete``'s syscalls)."""
        self._hashers.pop(upload_id)
        await self._driver.delete_many(
            [
                paths.upload_data(name, upload_id),
                paths.upload_started_at(name, upload_id),
                paths.upload(name, upload_id),
            ]
        )

    async def cancel(self, name: Name, upload_id: str) -> None:
        self._hashers.pop(upload_id)
        try:
            await self._driver.delete(paths.upload(name, upload_id))
        except PathNotFound:
            raise _unknown(upload_id) from None


async def _stream(writer: UploadWriter, chunks: AsyncIterable[bytes]) -> None:
    """Write the body batch by batch, each batch written while the next one arrives from the socket."""
    pending: asyncio.Future[None] | None = None
    batches = _batches(chunks)
    try:
        async for batch in batches:
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(writer.append(batch))
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)
        await batches.aclose()  # now, rather than by the event loop's finalizer later


async def _batches(chunks: AsyncIterable[bytes]) -> AsyncGenerator[list[bytes], None]:
    """The body's chunks in lists of about ``BATCH`` bytes (lists, never a copied buffer)."""
    batch: list[bytes] = []
    batched = 0
    async for chunk in chunks:
        if not chunk:
            continue
        batch.append(chunk)
        batched += len(chunk)
        if batched >= BATCH or len(batch) >= MAX_PIECES:
            yield batch
            batch, batched = [], 0
    if batch:
        yield batch
