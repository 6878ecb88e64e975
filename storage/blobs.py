"""Blobs: the global content-addressed store plus each repository's ``_layers`` links.

A blob is stored once under ``blobs/`` whatever the number of repositories that link it; a repository
"has" a blob when its ``_layers`` link exists and the data is there.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import links, paths
from storage.digest import Digest
from storage.driver import FileReader, PathNotFound, StorageDriver
from storage.errors import BlobUnknown
from storage.names import Name


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int


def _unknown(digest: Digest) -> BlobUnknown:
    return BlobUnknown("blob unknown to registry", {"digest": str(digest)})


async def stored_size(driver: StorageDriver, digest: Digest) -> int | None:
    """Size of the stored blob, None when it is not stored (in any repository)."""
    try:
        return (await driver.stat(paths.blob_data(digest))).size
    except PathNotFound:
        return None


async def linked_size(driver: StorageDriver, name: Name, digest: Digest) -> int | None:
    """Size of the blob when ``name`` links it and it is stored, else None (one driver round trip)."""
    link, data = await driver.stat_many([paths.layer_link(name, digest), paths.blob_data(digest)])
    return data.size if link is not None and data is not None else None


async def stat(driver: StorageDriver, name: Name, digest: Digest) -> BlobInfo:
    size = await linked_size(driver, name, digest)
    if size is None:
        raise _unknown(digest)
    return BlobInfo(digest, size)


async def open_blob(driver: StorageDriver, name: Name, digest: Digest) -> tuple[BlobInfo, FileReader]:
    if (await driver.stat_many([paths.layer_link(name, digest)]))[0] is None:
        raise _unknown(digest)
    try:
        reader = await driver.reader(paths.blob_data(digest))
    except PathNotFound:
        raise _unknown(digest) from None
    return BlobInfo(digest, reader.size), reader


async def link(driver: StorageDriver, name: Name, digest: Digest) -> None:
    await links.ensure(driver, paths.layer_link(name, digest), digest)


async def mount(driver: StorageDriver, name: Name, digest: Digest, source: Name | None) -> BlobInfo | None:
    """Link a stored blob into ``name``; None when there is nothing to mount.

    With a source repository the blob must be one of its layers (registry:2's rule). Without one, any
    stored blob mounts: it is stored once for all repositories (the spec allows mounting without ``from``).
    """
    size = await (linked_size(driver, source, digest) if source is not None else stored_size(driver, digest))
    if size is None:
        return None
    await link(driver, name, digest)
    return BlobInfo(digest, size)


async def unlink(driver: StorageDriver, name: Name, digest: Digest) -> None:
    # Like registry:2, only the repository's link goes; the data stays for garbage collection.
    try:
        await driver.delete(paths.layer_link(name, digest))
    except PathNotFound:
        raise _unknown(digest) from None


async def put_small(driver: StorageDriver, name: Name, digest: Digest, data: bytes) -> None:
    """Store a small blob held in memory (an inline ``data`` descriptor) and link it."""
    if await stored_size(driver, digest) is None:
        await driver.put_content(paths.blob_data(digest), data)
    await link(driver, name, digest)
