"""Tags: ``_manifests/tags/<tag>/{current/link, index/<alg>/<hex>/link}``."""

from __future__ import annotations

import os
import time
from collections import OrderedDict

from storage import fs
from storage.digest import Digest
from storage.errors import ManifestUnknown, NameUnknown
from storage.paths import Paths


def resolve(paths: Paths, name: str, tag: str) -> Digest | None:
    return fs.read_link(paths.tag_current_link(name, tag))


def point(paths: Paths, name: str, tag: str, digest: Digest) -> None:
    # Write order as registry:2's tagstore: the history entry first, then the current link. A crash
    # in between leaves the tag where it was, with a harmless extra history entry.
    index = paths.tag_index_link(name, tag, digest)
    if fs.read_link(index) != digest:
        fs.write_link(index, digest)
    current = paths.tag_current_link(name, tag)
    if fs.read_link(current) != digest:
        fs.write_link(current, digest)


def remove(paths: Paths, name: str, tag: str) -> None:
    if not fs.remove_tree(paths.tag(name, tag)):
        raise ManifestUnknown("manifest unknown", {"tag": tag})


class ListingCache:
    """Sorted tag lists, reused while the tags directory's mtime is unchanged.

    Adding or removing a tag adds or removes an entry of that directory, which sets its mtime. The
    filesystem's clock is coarse (a few ms), so a listing is only reused when the mtime it was taken at
    is over a second old: a change after that necessarily moves the mtime. Valid across processes.
    """

    RACY_NS = 1_000_000_000

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()

    def get(self, directory: str, mtime_ns: int) -> list[str] | None:
        item = self._items.get(directory)
        if item is None or item[0] != mtime_ns:
            return None
        self._items.move_to_end(directory)
        return item[1]

    def put(self, directory: str, mtime_ns: int, tags: list[str]) -> None:
        if time.time_ns() - mtime_ns < self.RACY_NS:
            return
        self._items[directory] = (mtime_ns, tags)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


def names(paths: Paths, name: str, cache: ListingCache | None = None) -> list[str]:
    """Sorted tag names; NameUnknown when the repository has never had a manifest. Do not mutate."""
    directory = paths.tags(name)
    try:
        mtime_ns = os.stat(directory).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        if os.path.isdir(paths.manifests(name)):
            return []
        raise NameUnknown("repository name not known to registry", {"name": name}) from None
    cached = cache.get(directory, mtime_ns) if cache is not None else None
    if cached is not None:
        return cached
    # Only tag directories live here (temporary files are written inside each tag's own directory).
    listing = sorted(os.listdir(directory))
    if cache is not None:
        cache.put(directory, mtime_ns, listing)
    return listing


def pointing_at(paths: Paths, name: str, digest: Digest) -> list[str]:
    return [tag for tag in fs.list_dirs(paths.tags(name)) if resolve(paths, name, tag) == digest]
