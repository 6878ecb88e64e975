"""Blobs: the global content-addressed store plus each repository's ``_layers`` links.

A blob is stored once under ``blobs/`` whatever the number of repositories that link it; a repository
"has" a blob when its ``_layers`` link exists and the data is there. Every answer that a blob exists
touches it first (``storage.gc.touch``), so that garbage collection running beside requests never
removes a blob a client was just told about.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import links, paths
from storage.digest import Digest
from storage.driver import FileInfo, FileReader, PathNotFound, StorageDriver
from storage.errors import BlobUnknown
from storage.gc.touch import Observer
from storage.names import Name


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int


def _unknown(digest: Digest) -> BlobUnknown:
    return BlobUnknown("blob unknown to registry", {"digest": str(digest)})


async def stored_size(driver: StorageDriver, digest: Digest) -> int | None:
    """Size of the stored blob, None when it is not stored (in any repository)."""
    data = await stored(driver, digest)
    return data.size if data is not None else None


async def stored(driver: StorageDriver, digest: Digest) -> FileInfo | None:
    """The stat of the blob's data, None when it is not stored."""
    return (await driver.stat_many([paths.blob_data(digest)]))[0]


async def linked(driver: StorageDriver, name: Name, digest: Digest) -> FileInfo | None:
    """The stat of the blob's data when ``name`` links it and it is stored (one driver round trip)."""
    link, data = await driver.stat_many([paths.layer_link(name, digest), paths.blob_data(digest)])
    return data if link is not None else None


async def stat(driver: StorageDriver, observer: Observer, name: Name, digest: Digest) -> BlobInfo:
    data = await linked(driver, name, digest)
    if data is None or not await observer.confirm(digest, data):
        raise _unknown(digest)
    return BlobInfo(digest, data.size)


async def open_blob(
    driver: StorageDriver, observer: Observer, name: Name, digest: Digest
) -> tuple[BlobInfo, FileReader]:
    data = await linked(driver, name, digest)
    if data is None or not await observer.confirm(digest, data):
        raise _unknown(digest)
    try:
        # Open after the touch: once open, the bytes stay readable even if the blob is swept later.
        reader = await driver.reader(paths.blob_data(digest))
    except PathNotFound:
        raise _unknown(digest) from None
    return BlobInfo(digest, reader.size), reader


async def link(driver: StorageDriver, name: Name, digest: Digest) -> None:
    await links.ensure(driver, paths.layer_link(name, digest), digest)


async def mount(
    driver: StorageDriver, observer: Observer, name: Name, digest: Digest, source: Name | None
) -> BlobInfo | None:
    """Link a stored blob into ``name``; None when there is nothing to mount.

    With a source repository the blob must be one of its layers (registry:2's rule). Without one, any
    stored blob mounts: it is stored once for all repositories (the spec allows mounting without ``from``).
    The blob is touched first, so the collector cannot take it from under the new link.
    """
    data = await (linked(driver, source, digest) if source is not None else stored(driver, digest))
    if data is None or not await observer.confirm(digest, data):
        return None
    await link(driver, name, digest)
    return BlobInfo(digest, data.size)


async def unlink(driver: StorageDriver, name: Name, digest: Digest) -> None:
    # Like registry:2, only the repository's link goes; the data stays for garbage collection.
    try:
        await driver.delete(paths.layer_link(name, digest))
    except PathNotFound:
        raise _unknown(digest) from None


async def put_small(driver: StorageDriver, observer: Observer, name: Name, digest: Digest, data: bytes) -> None:
    """Store a small blob held in memory (an inline ``data`` descriptor) and link it."""
    async with observer.held(digest):
        found = await stored(driver, digest)
        if found is None:
            await driver.put_content(paths.blob_data(digest), data)
        elif not observer.fresh(found):
            await observer.touch_held(digest)
    await link(driver, name, digest)
