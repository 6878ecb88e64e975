"""What a browser of the tree needs that the v2 API does not say: push times, sizes counted once per
blob, and each tag's history (the web UI's queries).

Push times are link mtimes: a tag's ``current/link`` is rewritten whenever the tag moves, and an
index link is written once, when the tag first points at that manifest (registry:2 never rewrites
one). Every query reads one repository, so a page of them costs a page of repositories, never a walk.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from storage import links, paths, tags
from storage.digest import Digest
from storage.driver import StorageDriver
from storage.errors import ManifestUnknown, NameUnknown, ReadOnly
from storage.gc import state
from storage.names import Name, validate_tag
from storage.registry import Registry


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    tags: int
    size: int  # the distinct blobs it links (layers, configs, manifests), each counted once
    pushed_ns: int | None  # the newest tag link, None without tags


@dataclass(frozen=True, slots=True)
class TagLink:
    tag: str
    digest: Digest
    pushed_ns: int | None  # when the tag last moved (its current/link was written)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    digest: Digest
    linked_ns: int | None  # when the tag first pointed at it
    current: bool
    present: bool  # the manifest is still stored in the repository: the tag can be pointed back at it


async def linked_blobs(driver: StorageDriver, name: Name) -> dict[Digest, int]:
    """The blobs the repository links (layer links and manifest revisions), with their sizes."""
    layers = await links.digests_under(driver, paths.layers(name))
    revisions = await links.digests_under(driver, paths.manifest_revisions(name))
    link_paths = [paths.layer_link(name, d) for d in layers]
    link_paths += [paths.manifest_revision_link(name, d) for d in revisions]
    candidates = layers + revisions
    found = await driver.stat_many(link_paths)
    live = list({d: None for d, link in zip(candidates, found, strict=True) if link is not None})
    data = await driver.stat_many([paths.blob_data(d) for d in live])
    return {d: info.size for d, info in zip(live, data, strict=True) if info is not None}


class SizeCache:
    """Repository sizes, reused while no blob or manifest was added (the ``sha256`` directories' mtimes
    are unchanged) and for at most ``TTL_NS``: removing a link leaves those mtimes alone, so a removal
    shows within that time. Mtimes less than a second old are not trusted (coarse clocks)."""

    TTL_NS = 30_000_000_000
    RACY_NS = 1_000_000_000

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, tuple[tuple[int | None, ...], int, int]] = OrderedDict()

    def get(self, name: str, stamp: tuple[int | None, ...], now_ns: int) -> int | None:
        item = self._items.get(name)
        if item is None or item[0] != stamp or now_ns - item[1] > self.TTL_NS:
            return None
        self._items.move_to_end(name)
        return item[2]

    def put(self, name: str, stamp: tuple[int | None, ...], read_at_ns: int, size: int) -> None:
        # No mtime (a driver without directory times, or no such directory yet): nothing to check against.
        if any(mtime is None or read_at_ns - mtime < self.RACY_NS for mtime in stamp):
            return
        self._items[name] = (stamp, read_at_ns, size)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def forget(self, name: str) -> None:
        self._items.pop(name, None)


async def summary(registry: Registry, name: str, sizes: SizeCache | None = None) -> RepositorySummary:
    repository = Name.parse(name)
    driver = registry.driver
    try:
        listed, _ = await registry.list_tags(repository)
    except NameUnknown:
        listed = []  # a repository that only received blobs (registry:2 lists it in the catalog)
    current = await driver.stat_many([paths.tag_current_link(repository, t) for t in listed])
    pushed = [info.mtime_ns for info in current if info is not None and info.mtime_ns is not None]
    read_at = time.time_ns()
    directories = [
        paths.join(paths.layers(repository), "sha256"),
        paths.join(paths.manifest_revisions(repository), "sha256"),
    ]
    stamp = tuple(info.mtime_ns if info else None for info in await driver.stat_many(directories))
    size = sizes.get(repository, stamp, read_at) if sizes is not None else None
    if size is None:
        size = sum((await linked_blobs(driver, repository)).values())
        if sizes is not None:
            sizes.put(repository, stamp, read_at, size)
    return RepositorySummary(repository, sum(info is not None for info in current), size, max(pushed, default=None))


class TagCache:
    """Where each tag points, reused while its ``current/link``'s mtime is unchanged (moving a tag
    rewrites that file); links written less than a second before they were read are not kept."""

    RACY_NS = 1_000_000_000

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], tuple[int, Digest]] = OrderedDict()

    def get(self, name: str, tag: str, mtime_ns: int | None) -> Digest | None:
        item = self._items.get((name, tag))
        return item[1] if item is not None and item[0] == mtime_ns else None

    def put(self, name: str, tag: str, mtime_ns: int | None, read_at_ns: int, digest: Digest) -> None:
        if mtime_ns is None or read_at_ns - mtime_ns < self.RACY_NS:
            return
        self._items[(name, tag)] = (mtime_ns, digest)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


async def tag_links(registry: Registry, name: str, names: list[str], cache: TagCache | None = None) -> list[TagLink]:
    """Where each of ``names`` points now, and when it moved there; tags gone meanwhile are left out."""
    repository = Name.parse(name)
    driver = registry.driver
    read_at = time.time_ns()
    infos = await driver.stat_many([paths.tag_current_link(repository, validate_tag(t)) for t in names])
    found: list[TagLink] = []
    for tag, info in zip(names, infos, strict=True):
        if info is None:
            continue
        digest = cache.get(repository, tag, info.mtime_ns) if cache is not None else None
        if digest is None:
            digest = await links.read(driver, paths.tag_current_link(repository, tag))
            if digest is not None and cache is not None:
                cache.put(repository, tag, info.mtime_ns, read_at, digest)
        if digest is not None:
            found.append(TagLink(tag, digest, info.mtime_ns))
    return found


async def pointing_at(registry: Registry, name: str, digest: str, cache: TagCache | None = None) -> list[str]:
    """The tags that point at ``digest`` now, with the links cached."""
    wanted = Digest.parse(digest)
    listed, _ = await registry.list_tags(name)
    return [link.tag for link in await tag_links(registry, name, listed, cache) if link.digest == wanted]


async def history(registry: Registry, name: str, tag: str) -> list[HistoryEntry]:
    """Every manifest the tag has pointed at, newest first; ManifestUnknown when there is no such tag."""
    repository = Name.parse(name)
    validate_tag(tag)
    driver = registry.driver
    current = await tags.resolve(driver, repository, tag)
    if current is None:
        raise ManifestUnknown("manifest unknown", {"tag": tag})
    index = paths.join(paths.tag_dir(repository, tag), "index")
    digests = await links.digests_under(driver, index)
    infos = await driver.stat_many([paths.tag_index_link(repository, tag, d) for d in digests])
    entries = [(d, info) for d, info in zip(digests, infos, strict=True) if info is not None]
    stored = await driver.stat_many(
        [p for d, _ in entries for p in (paths.manifest_revision_link(repository, d), paths.blob_data(d))]
    )
    result = [
        HistoryEntry(d, info.mtime_ns, d == current, stored[2 * i] is not None and stored[2 * i + 1] is not None)
        for i, (d, info) in enumerate(entries)
    ]
    if current not in {e.digest for e in result}:
        result.append(HistoryEntry(current, None, True, True))  # a tree whose history was pruned by hand
    return sorted(result, key=lambda e: (e.linked_ns or 0, str(e.digest)), reverse=True)


async def restore(registry: Registry, name: str, tag: str, digest: str) -> None:
    """Point ``tag`` back at a manifest it pointed at before (Quay's "time machine")."""
    if registry.options.read_only:
        raise ReadOnly("the registry is in read-only mode")
    wanted = Digest.parse(digest)
    # Under the manifest's shared stripe, as a PUT tags it: a delete of it by digest (which holds the
    # stripe exclusively) ends wholly before the look or after the tag points
    async with registry.observer.held(wanted):
        entry = next((e for e in await history(registry, name, tag) if e.digest == wanted), None)
        if entry is None or not entry.present:
            raise ManifestUnknown("manifest unknown", {"tag": tag, "digest": digest})
        await tags.point(registry.driver, Name.parse(name), tag, wanted)


async def gc_runs(registry: Registry) -> list[dict[str, object]]:
    """The recorded garbage collections, newest first (a dry run is a plan: what a run would remove)."""
    return list(reversed((await state.load(registry.driver)).runs))
