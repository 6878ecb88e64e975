"""Sweep: remove what the mark left, each item re-checked, online under its blob's EXCLUSIVE stripe lock.

Requests touch what they observe under the SHARED stripe lock (``storage.gc.touch``). So with the
exclusive lock held, a data mtime still older than the cutoff means no client was told about the
blob since T0 - grace; anything newer is postponed to the next run, never skipped for good.
Online, candidates are handled a stripe at a time (one lock for all of a stripe's candidates) and
several stripes at once, and swept blob directories are moved, not erased, into
``kura/trash/<T0>/``: an undo window, and erasing (a recursive delete) happens later, off the lock.
Offline no server runs (``Stripes``): no locks, and blobs are erased at once.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from storage import paths
from storage.digest import Digest
from storage.driver import Busy, FileInfo, PathNotFound, StorageDriver
from storage.gc import state, touch

T = TypeVar("T")
PARALLEL = 16  # stripes swept at once online when no room is given, as many as the filesystem driver's removal threads
# Stripes an online collection holds at once, over all its sweeps. It runs at the lowest CPU priority
# (app.priority), so on a saturated machine it may wait long for a core while holding a stripe that a
# request waits for: few stripes held means few such requests. Online sweeps move blobs to the trash
# (renames, no discards to overlap), so more stripes at once would gain little.
ONLINE_PARALLEL = 2
LOCK_WAIT = 5.0  # a stripe held longer than this by requests is postponed, not waited for
ERASE_BATCH = 256  # trashed blobs erased at a time, paced between batches

# Awaited before each unit of a collection's work (a stripe, a repository, a blob): it returns at once,
# or later when the server it runs beside wants the machine (app.pace). Never awaited under a lock.
Pace = Callable[[], Awaitable[None]]


async def unpaced() -> None:
    """The pace of a collection with no server beside it: never wait."""


@dataclass(frozen=True, slots=True)
class Candidate:
    digest: Digest
    size: int


@dataclass(frozen=True, slots=True)
class Revision:
    """A repository's revision the mark left, with the tags whose history names it."""

    name: str
    digest: Digest
    tags: tuple[str, ...] = ()


def old(info: FileInfo | None, cutoff_ns: int) -> bool:
    """Whether a stat shows nothing newer than the cutoff (a missing file is old)."""
    return info is None or (info.mtime_ns is not None and info.mtime_ns < cutoff_ns)


OFFLINE_GROUP = 4096  # items an offline sweep handles per round trip


@dataclass(slots=True)
class Stripes:
    """How a run's sweeps hold what they remove. Online: each stripe under its EXCLUSIVE lock, as many
    stripes at once as ``room`` lets (PARALLEL without), each once ``pace`` allows. Offline
    (``locked=False``): the collector holds the root's serving lock, so no request can race it: no
    stripe locks, and the items go OFFLINE_GROUP at a time whatever their stripe (a lock and a round
    trip per stripe were most of an offline run)."""

    room: asyncio.Semaphore | None = None
    pace: Pace = unpaced
    locked: bool = True

    async def each(
        self,
        driver: StorageDriver,
        items: Iterable[T],
        digest: Callable[[T], Digest],
        work: Callable[[list[T]], Awaitable[None]],
    ) -> list[T]:
        """Run ``work`` on the items, grouped by their blob's stripe (``digest``) and held as above;
        returns the items of stripes that stayed busy (postponed)."""
        if not self.locked:
            listed = list(items)
            for start in range(0, len(listed), OFFLINE_GROUP):
                await self.pace()
                await work(listed[start : start + OFFLINE_GROUP])
            return []
        stripes: dict[str, list[T]] = {}
        for item in items:
            stripes.setdefault(touch.stripe(digest(item)), []).append(item)
        busy: list[T] = []
        room = self.room or asyncio.Semaphore(PARALLEL)

        async def one(lock: str, group: list[T]) -> None:
            async with room:
                await self.pace()
                try:
                    async with driver.lock(lock, shared=False, wait=LOCK_WAIT, create=True):
                        await work(group)
                except Busy:
                    busy.extend(group)

        await asyncio.gather(*(one(lock, group) for lock, group in sorted(stripes.items())))
        return busy


class Trash:
    """``kura/trash/<T0>/``. ``erase=True`` (offline: nothing can be reading) erases blobs at once instead."""

    def __init__(self, driver: StorageDriver, t0_ns: int, erase: bool = False, pace: Pace = unpaced) -> None:
        self.driver = driver
        self.directory = paths.join(state.TRASH, str(t0_ns))
        self.erase = erase
        self.pace = pace

    async def put(self, digests: list[Digest], garbage: Sequence[str] = ()) -> Sequence[bool]:
        """Move the blobs in, and delete the ``garbage`` paths (as ``delete_many``); whether each blob was there."""
        if self.erase:
            blobs = [p for d in digests for p in (paths.blob_data(d), paths.blob_dir(d))]
            await self.driver.delete_many([*blobs, *garbage])  # one round trip, removed in parallel
            return [True] * len(digests)
        pairs = [(paths.blob_dir(d), paths.join(self.directory, f"{d.algorithm}-{d.hex}")) for d in digests]
        moved = await self.driver.move_many(pairs, durable=False) if pairs else []
        if garbage:
            await self.driver.delete_many(garbage)
        return moved

    async def empty(self, older_than_ns: int) -> int:
        """Erase the trash of runs that started before ``older_than_ns``; returns how many."""
        try:
            runs = await self.driver.list(state.TRASH)
        except PathNotFound:
            return 0
        erased = 0
        for run in runs:
            if run.isdigit() and int(run) < older_than_ns:
                await self._erase(paths.join(state.TRASH, run))
                erased += 1
        return erased

    async def _erase(self, directory: str) -> None:
        """Erase one run's trash a batch of blobs at a time, paced: freeing blocks is most of a
        collection's disk work, and a beside server's requests wait on the same disk."""
        try:
            entries = await self.driver.list(directory)
        except PathNotFound:
            return
        for start in range(0, len(entries), ERASE_BATCH):
            await self.pace()
            batch = [paths.join(directory, e) for e in entries[start : start + ERASE_BATCH]]
            await self.driver.delete_many([p for entry in batch for p in (paths.join(entry, "data"), entry)])
        try:
            await self.driver.delete(directory)
        except PathNotFound:
            pass


@dataclass(slots=True)
class Swept:
    """What a blob sweep did."""

    blobs: list[Candidate] = field(default_factory=list)  # moved to the trash (or erased)
    postponed: int = 0  # touched since the cutoff, or their stripe stayed busy
    links: list[Revision] = field(default_factory=list)  # layer links removed: their blob is not stored


async def blobs(
    driver: StorageDriver,
    candidates: list[Candidate],
    cutoff_ns: int,
    trash: Trash,
    orphans: Sequence[Revision] = (),
    stripes: Stripes | None = None,
) -> Swept:
    """Move the candidates that are still old into the trash, and remove the ``orphans`` (layer links
    nothing needs) whose blob is not stored once that is done, a stripe at a time online: one lock, one stat
    round trip and one removal round trip per stripe for both."""
    done = Swept()

    async def work(group: list[Candidate | Revision]) -> None:
        found = await driver.stat_many([paths.blob_data(item.digest) for item in group])
        going: list[Candidate] = []
        missing: set[Digest] = set()
        for item, info in zip(group, found, strict=True):
            if info is None:
                missing.add(item.digest)
            elif isinstance(item, Candidate):
                if old(info, cutoff_ns):
                    going.append(item)
                else:
                    done.postponed += 1
        # A link is dangling once its blob is gone: it was not stored, or it goes now.
        dangling = missing | {c.digest for c in going}
        links = [r for r in group if isinstance(r, Revision) and r.digest in dangling]
        moved = await trash.put([c.digest for c in going], [p for r in links for p in _layer_link_dir(r)])
        done.blobs += [c for c, there in zip(going, moved, strict=True) if there]
        done.links += links

    items: list[Candidate | Revision] = [*candidates, *orphans]
    busy = await (stripes or Stripes()).each(driver, items, lambda item: item.digest, work)
    done.postponed += sum(1 for item in busy if isinstance(item, Candidate))
    return done


async def manifests(
    driver: StorageDriver,
    doomed: list[Revision],
    cutoff_ns: int,
    pulled: bool = True,
    stripes: Stripes | None = None,
) -> list[Revision]:
    """Delete revisions (their directory, the tag history entries and pull markers naming them) whose
    link and manifest are both still older than the cutoff: a push of the same manifest since, or an
    index PUT relying on it as a child, touched one of them under the shared lock. Returns the deleted."""
    deleted: list[Revision] = []

    async def work(group: list[Revision]) -> None:
        found = await driver.stat_many(
            [p for r in group for p in (paths.manifest_revision_link(r.name, r.digest), paths.blob_data(r.digest))]
        )
        going: list[str] = []
        for i, revision in enumerate(group):
            link, data = found[2 * i], found[2 * i + 1]
            if link is None or not old(link, cutoff_ns) or not old(data, cutoff_ns):
                continue
            name, digest = revision.name, revision.digest
            for directory in [
                paths.join(paths.manifest_revisions(name), digest.algorithm, digest.hex),
                *(paths.join(paths.tag_dir(name, t), "index", digest.algorithm, digest.hex) for t in revision.tags),
            ]:
                going += [paths.join(directory, "link"), directory]
            if pulled:
                going.append(touch.pull_marker(name, digest))
            deleted.append(revision)
        await driver.delete_many(going)

    await (stripes or Stripes()).each(driver, doomed, lambda r: r.digest, work)
    return deleted


async def dangling_revisions(
    driver: StorageDriver, found: list[Revision], stripes: Stripes | None = None
) -> list[Revision]:
    """Remove the revision links whose manifest is not stored, re-checked (under the stripe lock online)."""
    removed: list[Revision] = []

    async def work(group: list[Revision]) -> None:
        stats = await driver.stat_many([paths.blob_data(r.digest) for r in group])
        gone = [r for r, info in zip(group, stats, strict=True) if info is None]
        links = [paths.manifest_revision_link(r.name, r.digest) for r in gone]
        await driver.delete_many([p for link in links for p in (link, posixpath.dirname(link))])
        removed.extend(gone)

    await (stripes or Stripes()).each(driver, found, lambda r: r.digest, work)
    return removed


def _layer_link_dir(link: Revision) -> tuple[str, str]:
    """A layer link file and its directory, in the order delete_many removes them fastest."""
    file = paths.layer_link(link.name, link.digest)
    return file, posixpath.dirname(file)
