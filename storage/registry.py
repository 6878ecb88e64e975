"""The storage façade: every operation the HTTP layer needs, validated once, over one storage driver."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
from collections.abc import AsyncIterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from storage import blobs, catalog, links, manifests, referrers, tags, uploads
from storage.blobs import BlobInfo
from storage.digest import CANONICAL, Digest
from storage.driver import FileReader, StorageDriver
from storage.errors import DeleteDisabled, ReadOnly
from storage.gc import touch
from storage.manifests import Manifest, Reference
from storage.names import Name, validate_tag


@dataclass(frozen=True, slots=True)
class Options:
    delete_enabled: bool = True
    read_only: bool = False
    gc_grace: float = touch.DEFAULT_GRACE  # seconds; requests touch what they observe every quarter of it


class Registry:
    """Owns the driver, the per-process caches and the hashing threads; ``close()`` releases them."""

    def __init__(self, driver: StorageDriver, options: Options | None = None) -> None:
        self.driver = driver
        self.options = options or Options()
        self._summaries = referrers.SummaryCache()
        self._tag_listings = tags.ListingCache()
        self._manifest_bodies = manifests.BodyCache()
        self._tag_links = links.LinkCache()
        # Hashing runs beside the write of the same batch; a thread per core is all it can use.
        self._hashing = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="kura-hash")
        self.observer = touch.Observer(driver, self.options.gc_grace)
        self._uploads = uploads.Uploads(driver, self._hashing, self.observer)

    async def close(self) -> None:
        self._hashing.shutdown(wait=False, cancel_futures=True)
        await self.driver.close()

    # -- guards --------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.options.read_only:
            raise ReadOnly("the registry is in read-only mode")

    def deletable(self) -> None:
        """Raises ReadOnly or DeleteDisabled unless deletes are allowed (the UI asks before it offers one)."""
        self._writable()
        if not self.options.delete_enabled:
            raise DeleteDisabled("deletes are disabled on this registry")

    # -- blobs ---------------------------------------------------------------------------------

    async def stat_blob(self, name: str, digest: str) -> BlobInfo:
        return await blobs.stat(self.driver, self.observer, Name.parse(name), Digest.parse(digest))

    async def open_blob(self, name: str, digest: str) -> tuple[BlobInfo, FileReader]:
        return await blobs.open_blob(self.driver, self.observer, Name.parse(name), Digest.parse(digest))

    async def delete_blob(self, name: str, digest: str) -> None:
        self.deletable()
        await blobs.unlink(self.driver, Name.parse(name), Digest.parse(digest))

    async def mount_blob(self, name: str, digest: str, source: str | None) -> BlobInfo | None:
        self._writable()
        target = Name.parse(name)
        return await blobs.mount(
            self.driver, self.observer, target, Digest.parse(digest), Name.parse(source) if source is not None else None
        )

    # -- uploads -------------------------------------------------------------------------------

    async def start_upload(self, name: str) -> str:
        self._writable()
        return await self._uploads.start(Name.parse(name))

    async def upload_size(self, name: str, upload_id: str) -> int:
        return await self._uploads.size(Name.parse(name), uploads.validate_id(upload_id))

    async def append_upload(
        self,
        name: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
        length: int | None = None,
        algorithm: str = CANONICAL,
    ) -> int:
        """Append a request body to the upload; return its new size (see ``Uploads.append``)."""
        self._writable()
        return await self._uploads.append(
            Name.parse(name), uploads.validate_id(upload_id), chunks, start, length, algorithm
        )

    async def commit_upload(
        self,
        name: str,
        upload_id: str,
        digest: str,
        chunks: AsyncIterable[bytes] | None = None,
        length: int | None = None,
        start: int | None = None,
    ) -> BlobInfo:
        """Commit the upload, after appending its last chunk when there is one (see ``Uploads.commit``)."""
        self._writable()
        return await self._uploads.commit(
            Name.parse(name), uploads.validate_id(upload_id), Digest.parse(digest), chunks, start, length
        )

    async def cancel_upload(self, name: str, upload_id: str) -> None:
        self._writable()
        await self._uploads.cancel(Name.parse(name), uploads.validate_id(upload_id))

    async def put_blob(
        self, name: str, digest: str, chunks: AsyncIterable[bytes], length: int | None = None
    ) -> BlobInfo:
        """A whole blob in one request (``POST ?digest=``): an upload that is committed at once."""
        Digest.parse(digest)  # a bad digest is refused before anything is stored
        upload_id = await self.start_upload(name)
        try:
            return await self.commit_upload(name, upload_id, digest, chunks, length)
        except BaseException:
            await asyncio.gather(self.cancel_upload(name, upload_id), return_exceptions=True)
            raise

    # -- manifests, tags, catalog ---------------------------------------------------------------

    async def get_manifest(self, name: str, reference: str) -> Manifest:
        repository = Name.parse(name)  # before the reference: a bad name is NAME_INVALID whatever follows
        ref = Reference.parse(reference)
        return await manifests.read(self.driver, self.observer, repository, ref, self._manifest_bodies, self._tag_links)

    async def put_manifest(
        self, name: str, reference: str, body: bytes, content_type: str | None, *, create_only: bool = False
    ) -> Manifest:
        """Store a manifest, and point the tag ``reference`` at it; ``create_only``: TagExists when the
        tag names another manifest."""
        self._writable()
        repository = Name.parse(name)
        ref = Reference(None, Digest.parse(reference)) if ":" in reference else Reference(validate_tag(reference), None)
        return await manifests.write(
            self.driver, self.observer, repository, ref, body, content_type, create_only=create_only
        )

    async def delete_manifest(self, name: str, reference: str) -> list[str]:
        """Delete by tag (the tag only) or by digest (with its tags); the tags a delete by digest removed."""
        self.deletable()
        return await manifests.delete(self.driver, self.observer, Name.parse(name), Reference.parse(reference))

    async def list_tags(self, name: str, limit: int | None = None, after: str | None = None) -> tuple[list[str], bool]:
        """Up to ``limit`` tags sorted after ``after``, and whether more follow."""
        listing = await tags.names(self.driver, Name.parse(name), self._tag_listings)
        start = bisect.bisect_right(listing, after) if after else 0
        stop = len(listing) if limit is None else min(len(listing), start + limit)
        return listing[start:stop], stop < len(listing)

    async def list_repositories(self, limit: int, after: str | None) -> tuple[list[str], bool]:
        """Up to ``limit`` repositories after ``after``, and whether more follow."""
        found: list[str] = []
        async with contextlib.aclosing(catalog.walk(self.driver, after)) as walk:
            async for repo in walk:
                if len(found) == limit:
                    return found, True
                found.append(repo)
        return found, False

    async def list_referrers(self, name: str, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``; empty for anything unknown."""
        return await referrers.find(self.driver, Name.parse(name), Digest.parse(digest), self._summaries, artifact_type)
