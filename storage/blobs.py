"""Blobs: the global content-addressed store plus each repository's ``_layers`` links.

A blob is stored once under ``blobs/`` whatever the number of repositories that link it; a repository
"has" a blob when its ``_layers`` link exists and the data is there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from storage import fs
from storage.digest import Digest
from storage.errors import BlobUnknown
from storage.paths import Paths


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    path: str


def stored_size(paths: Paths, digest: Digest) -> int | None:
    """Size of the stored blob, None when it is not stored (in any repository)."""
    try:
        return os.stat(paths.blob_data(digest)).st_size
    except (FileNotFoundError, NotADirectoryError):
        return None


def linked(paths: Paths, name: str, digest: Digest) -> bool:
    return fs.exists(paths.layer_link(name, digest))


def stat(paths: Paths, name: str, digest: Digest) -> BlobInfo:
    if not linked(paths, name, digest):
        raise BlobUnknown("blob unknown to registry", {"digest": str(digest)})
    size = stored_size(paths, digest)
    if size is None:
        raise BlobUnknown("blob unknown to registry", {"digest": str(digest)})
    return BlobInfo(digest, size, paths.blob_data(digest))


def link(paths: Paths, name: str, digest: Digest) -> None:
    path = paths.layer_link(name, digest)
    if fs.read_link(path) != digest:
        fs.write_link(path, digest)


def mount(paths: Paths, name: str, digest: Digest, source: str | None) -> BlobInfo | None:
    """Link a stored blob into ``name``; None when there is nothing to mount.

    With a source repository the blob must be one of its layers (registry:2's rule). Without one, any
    stored blob mounts: it is stored once for all repositories (the spec allows mounting without ``from``).
    """
    if source is not None and not linked(paths, source, digest):
        return None
    size = stored_size(paths, digest)
    if size is None:
        return None
    link(paths, name, digest)
    return BlobInfo(digest, size, paths.blob_data(digest))


def unlink(paths: Paths, name: str, digest: Digest) -> None:
    # Like registry:2, only the repository's link goes; the data stays for garbage collection.
    if not fs.remove(paths.layer_link(name, digest)):
        raise BlobUnknown("blob unknown to registry", {"digest": str(digest)})


def put_small(paths: Paths, name: str, digest: Digest, data: bytes) -> None:
    """Store a small blob held in memory (an inline ``data`` descriptor) and link it."""
    if stored_size(paths, digest) is None:
        fs.write_atomic(paths.blob_data(digest), data)
    link(paths, name, digest)
