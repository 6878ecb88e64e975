"""The storage façade: every operation the HTTP layer needs, validated and run off the event loop."""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from storage import blobs, catalog, manifests, referrers, tags, uploads
from storage.blobs import BlobInfo
from storage.digest import CANONICAL, Digest
from storage.errors import DeleteDisabled, ReadOnly
from storage.executor import run
from storage.manifests import Manifest, Reference
from storage.names import validate_name, validate_tag
from storage.paths import Paths
from storage.reader import BlobReader

BATCH = 1 << 19  # bytes gathered before one executor hop writes them (and hashes them, in parallel)
FLUSH_EVERY = 64 << 20  # bytes appended between background flushes of an upload


@dataclass(frozen=True, slots=True)
class Options:
    delete_enabled: bool = True
    read_only: bool = False


class Registry:
    def __init__(self, root: str, options: Options | None = None) -> None:
        self.paths = Paths(root)
        self.options = options or Options()
        self._hashers = uploads.HasherCache()
        self._summaries = referrers.SummaryCache()
        self._tag_listings = tags.ListingCache()
        # Background flushes block on the disk; their own threads keep them off the main executor.
        self._flusher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kura-flush")
        # Hashing runs beside the write of the same batch; a pool per core is all it can use.
        self._hashing = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="kura-hash")

    # -- guards --------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.options.read_only:
            raise ReadOnly("the registry is in read-only mode")

    def _deletable(self) -> None:
        self._writable()
        if not self.options.delete_enabled:
            raise DeleteDisabled("deletes are disabled on this registry")

    # -- blobs ---------------------------------------------------------------------------------

    async def stat_blob(self, name: str, digest: str) -> BlobInfo:
        return await run(blobs.stat, self.paths, validate_name(name), Digest.parse(digest))

    async def open_blob(self, name: str, digest: str) -> tuple[BlobInfo, BlobReader]:
        info = await self.stat_blob(name, digest)
        return info, await BlobReader.open(info.path)

    async def delete_blob(self, name: str, digest: str) -> None:
        self._deletable()
        await run(blobs.unlink, self.paths, validate_name(name), Digest.parse(digest))

    async def mount_blob(self, name: str, digest: str, source: str | None) -> BlobInfo | None:
        self._writable()
        validate_name(name)
        if source is not None:
            validate_name(source)
        return await run(blobs.mount, self.paths, name, Digest.parse(digest), source)

    # -- uploads -------------------------------------------------------------------------------

    async def start_upload(self, name: str) -> str:
        self._writable()
        return await run(uploads.start, self.paths, validate_name(name))

    async def upload_size(self, name: str, upload_id: str) -> int:
        return await run(uploads.size, self.paths, validate_name(name), uploads.validate_id(upload_id))

    async def append_upload(
        self,
        name: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
        length: int | None = None,
        algorithm: str = CANONICAL,
    ) -> int:
        """Append a request body to the upload, hashing as it is written; return the new size.

        ``start`` (from Content-Range) must be the current size; ``length``, when known, must be the
        number of bytes received, else the upload is put back as it was (SizeInvalid).
        """
        self._writable()
        validate_name(name)
        uploads.validate_id(upload_id)
        batches = _batches(chunks)
        try:
            first, ended = await anext(batches)
            if ended:
                # The whole body fits in one batch (small layers, configs): one hop opens, writes, hashes.
                size, running = await run(
                    uploads.append_whole,
                    self.paths,
                    name,
                    upload_id,
                    start,
                    length,
                    self._hashers.pop(upload_id),
                    algorithm,
                    first,
                )
                self._hashers.put(upload_id, running)
                return size
            return await self._append_stream(name, upload_id, first, batches, start, length, algorithm)
        finally:
            await batches.aclose()  # now, rather than by the event loop's finalizer later

    async def _append_stream(
        self,
        name: str,
        upload_id: str,
        first: list[bytes],
        rest: AsyncIterator[tuple[list[bytes], bool]],
        start: int | None,
        length: int | None,
        algorithm: str,
    ) -> int:
        """A body of more than one batch: each batch is written while the next one arrives."""
        fd, before = await run(uploads.open_for_append, self.paths, name, upload_id, start)
        running = uploads.resume(self._hashers.pop(upload_id), algorithm, before)
        received = 0
        pending: asyncio.Future[None] | None = None
        flushing: Future[None] | None = None
        # Boundaries are offsets in the upload, not in this request: 16 MiB PATCHes flush too.
        next_flush = (before // FLUSH_EVERY + 1) * FLUSH_EVERY
        try:
            batch, ended = first, False
            while batch:
                pending = asyncio.ensure_future(run(uploads.append, fd, running, batch, self._hashing))
                received += sum(map(len, batch))
                if before + received >= next_flush and (flushing is None or flushing.done()):
                    flushing = self._flusher.submit(uploads.flush_and_close, os.dup(fd))
                    next_flush = before + received + FLUSH_EVERY
                # One batch in flight while the next one arrives from the socket.
                batch, ended = ([], True) if ended else await anext(rest)
                await pending
                pending = None
            if length is not None and received != length:
                await run(uploads.truncate, fd, before)
                raise uploads.size_invalid(length, received)
        except BaseException:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
            running.offset = -1
            raise
        finally:
            await run(uploads.close, fd)
        self._hashers.put(upload_id, running)
        return before + received

    async def commit_upload(
        self,
        name: str,
        upload_id: str,
        digest: str,
        chunks: AsyncIterable[bytes] | None = None,
        length: int | None = None,
    ) -> BlobInfo:
        self._writable()
        validate_name(name)
        uploads.validate_id(upload_id)
        parsed = Digest.parse(digest)
        if chunks is not None:
            await self.append_upload(name, upload_id, chunks, length=length, algorithm=parsed.algorithm)
        return await run(uploads.commit, self.paths, name, upload_id, parsed, self._hashers.pop(upload_id))

    async def cancel_upload(self, name: str, upload_id: str) -> None:
        self._writable()
        self._hashers.pop(upload_id)
        await run(uploads.cancel, self.paths, validate_name(name), uploads.validate_id(upload_id))

    async def put_blob(
        self, name: str, digest: str, chunks: AsyncIterable[bytes], length: int | None = None
    ) -> BlobInfo:
        """A whole blob in one request (``POST ?digest=``): an upload that is committed at once."""
        parsed = Digest.parse(digest)
        upload_id = await self.start_upload(name)
        try:
            await self.append_upload(name, upload_id, chunks, length=length, algorithm=parsed.algorithm)
            return await self.commit_upload(name, upload_id, digest)
        except BaseException:
            await asyncio.gather(self.cancel_upload(name, upload_id), return_exceptions=True)
            raise

    # -- manifests, tags, catalog ---------------------------------------------------------------

    async def get_manifest(self, name: str, reference: str) -> Manifest:
        return await run(manifests.read, self.paths, validate_name(name), Reference.parse(reference))

    async def put_manifest(self, name: str, reference: str, body: bytes, content_type: str | None) -> Manifest:
        self._writable()
        validate_name(name)
        ref = Reference(None, Digest.parse(reference)) if ":" in reference else Reference(validate_tag(reference), None)
        return await run(manifests.write, self.paths, name, ref, body, content_type)

    async def delete_manifest(self, name: str, reference: str) -> None:
        self._deletable()
        await run(manifests.delete, self.paths, validate_name(name), Reference.parse(reference))

    async def list_tags(self, name: str, limit: int | None = None, after: str | None = None) -> tuple[list[str], bool]:
        """Up to ``limit`` tags sorted after ``after``, and whether more follow."""

        def page() -> tuple[list[str], bool]:
            listing = tags.names(self.paths, name, self._tag_listings)
            start = bisect.bisect_right(listing, after) if after else 0
            stop = len(listing) if limit is None else min(len(listing), start + limit)
            return listing[start:stop], stop < len(listing)

        validate_name(name)
        return await run(page)

    async def list_repositories(self, limit: int, after: str | None) -> tuple[list[str], bool]:
        """Up to ``limit`` repositories after ``after``, and whether more follow."""

        def page() -> tuple[list[str], bool]:
            found: list[str] = []
            for repo in catalog.walk(self.paths.repositories, after):
                if len(found) == limit:
                    return found, True
                found.append(repo)
            return found, False

        return await run(page)

    async def list_referrers(self, name: str, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``; empty for anything unknown."""
        return await run(
            referrers.find, self.paths, validate_name(name), Digest.parse(digest), self._summaries, artifact_type
        )


async def _batches(chunks: AsyncIterable[bytes]) -> AsyncGenerator[tuple[list[bytes], bool], None]:
    """The body's chunks in lists of about ``BATCH`` bytes, each with whether the body ended in it.

    Lists, never one copied buffer: a batch is written with one ``writev``. Full batches come as they
    fill, then one last (possibly empty) batch that says the body ended before it filled.
    """
    batch: list[bytes] = []
    batched = 0
    async for chunk in chunks:
        batch.append(chunk)
        batched += len(chunk)
        if batched >= BATCH or len(batch) >= uploads.MAX_PIECES:
            yield batch, False
            batch, batched = [], 0
    yield batch, True
