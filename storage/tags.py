"""Tags: ``_manifests/tags/<tag>/{current/link, index/<alg>/<hex>/link}``.

Every change of a repository's tags holds that repository's tag lock (a lock stripe shared by all
workers), so a PUT and a DELETE racing on one tag end in the state of the one that ran last, never
in a mix. A tag is listed only when its ``current/link`` resolves: a first PUT cut off by a crash
(registry:2 writes the history entry first) leaves a directory that is not a tag.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from storage import links, paths
from storage.digest import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.errors import ManifestUnknown, NameUnknown, TagExists
from storage.names import Name

LOCK_WAIT = 30.0  # seconds a tag change waits for another change of the same repository's tags


def _lock_path(name: Name) -> str:
    return paths.lock_stripe("tags", name)


async def resolve(driver: StorageDriver, name: Name, tag: str) -> Digest | None:
    return await links.read(driver, paths.tag_current_link(name, tag))


def moving_refused(tag: str) -> str:
    """Why a create-only push may not move ``tag`` (the auth layer's early look says the same)."""
    return f"tag {tag} exists and you may create tags but not move them"


async def point(driver: StorageDriver, name: Name, tag: str, digest: Digest, *, create_only: bool = False) -> None:
    """Point the tag at ``digest``; ``create_only``: TagExists if it names another manifest (decided
    under the tag lock, so two such pushes racing for a new tag cannot both win)."""
    async with driver.lock(_lock_path(name), wait=LOCK_WAIT, create=True):
        current = paths.tag_current_link(name, tag)
        before = await links.read(driver, current)
        if create_only and before not in (None, digest):
            raise TagExists(moving_refused(tag), {"tag": tag})
        # Write order as registry:2's tagstore: the history entry first, then the current link. A
        # crash in between leaves the tag where it was, with a harmless extra history entry.
        await links.ensure(driver, paths.tag_index_link(name, tag, digest), digest)
        if before != digest:
            await links.write(driver, current, digest)
        if before is None:
            # The tags directory's mtime moved when the tag's directory appeared, maybe before the
            # link did: move it again now, so a listing cached in between is seen to be stale.
            await driver.touch(paths.tags(name))


async def remove(driver: StorageDriver, name: Name, tag: str) -> None:
    async with driver.lock(_lock_path(name), wait=LOCK_WAIT, create=True):
        try:
            await driver.delete(paths.tag_dir(name, tag))
        except PathNotFound:
            raise ManifestUnknown("manifest unknown", {"tag": tag}) from None


class ListingCache:
    """Tag lists, reused while the tags directory's mtime is unchanged. Valid across processes.

    Adding or removing a tag adds or removes an entry of that directory, which sets its mtime (and
    ``point`` sets it again once a new tag resolves). Filesystem clocks are coarse, so a listing is
    kept only when the mtime was over a second old *before* the listing was read: any change after
    that read necessarily gives a newer mtime (git's "racily clean" rule).
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

    def put(self, directory: str, mtime_ns: int, read_at_ns: int, tags: list[str]) -> None:
        if read_at_ns - mtime_ns < self.RACY_NS:
            return
        self._items[directory] = (mtime_ns, tags)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


async def names(driver: StorageDriver, name: Name, cache: ListingCache | None = None) -> list[str]:
    """Sorted names of the tags that resolve; NameUnknown when the repository has no manifests. Do not mutate."""
    directory = paths.tags(name)
    read_at = time.time_ns()
    (found,) = await driver.stat_many([directory])
    if found is None:
        # No tags directory (rare: untagged, or unknown): whether the repository has manifests at all
        if (await driver.stat_many([paths.manifests(name)]))[0] is not None:
            return []
        raise NameUnknown("repository name not known to registry", {"name": name})
    mtime = found.mtime_ns
    if cache is not None and mtime is not None:
        cached = cache.get(directory, mtime)
        if cached is not None:
            return cached
    try:
        candidates = sorted(await driver.list(directory))
    except PathNotFound:
        return []
    resolved = await driver.stat_many([paths.tag_current_link(name, tag) for tag in candidates])
    listing = [tag for tag, link in zip(candidates, resolved, strict=True) if link is not None]
    if cache is not None and mtime is not None:
        cache.put(directory, mtime, read_at, listing)
    return listing


async def untag(driver: StorageDriver, name: Name, tag: str, digest: Digest) -> bool:
    """Remove the tag if it points at ``digest`` (checked under the tag lock); whether it did."""
    async with driver.lock(_lock_path(name), wait=LOCK_WAIT, create=True):
        if await resolve(driver, name, tag) != digest:
            return False  # moved by another request, or removed
        try:
            await driver.delete(paths.tag_dir(name, tag))
        except PathNotFound:
            return False
    return True


async def pointing_at(driver: StorageDriver, name: Name, digest: Digest) -> list[str]:
    try:
        candidates = await driver.list(paths.tags(name))
    except PathNotFound:
        return []
    return [tag for tag in candidates if await resolve(driver, name, tag) == digest]
