"""Sweep: remove what the mark left, each item under its blob's EXCLUSIVE stripe lock, re-checked.

Requests touch what they observe under the SHARED stripe lock (``storage.gc.touch``). So with the
exclusive lock held, a data mtime still older than the cutoff means no client was told about the
blob since T0 - grace; anything newer is postponed to the next run, never skipped for good.
Candidates are handled a stripe at a time (one lock for all of a stripe's candidates) and several
stripes at once. Swept blob directories are moved, not erased, into ``kura/trash/<T0>/``: an undo
window, and erasing (a recursive delete) happens later, off the lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from storage import paths
from storage.digest import Digest
from storage.driver import Busy, FileInfo, PathNotFound, StorageDriver
from storage.gc import state, touch

T = TypeVar("T")
PARALLEL = 8  # stripes swept at once: the kernel's unlinks overlap (2.3x on 2 cores); more only adds GIL contention
LOCK_WAIT = 5.0  # a stripe held longer than this by requests is postponed, not waited for


@dataclass(frozen=True, slots=True)
class Candidate:
    digest: Digest
    size: int


def old(info: FileInfo | None, cutoff_ns: int) -> bool:
    """Whether a stat shows nothing newer than the cutoff (a missing file is old)."""
    return info is None or (info.mtime_ns is not None and info.mtime_ns < cutoff_ns)


async def by_stripe(
    driver: StorageDriver,
    items: Iterable[T],
    digest: Callable[[T], Digest],
    work: Callable[[list[T]], Awaitable[None]],
) -> list[T]:
    """Run ``work`` on the items of each stripe (by their blob's digest) while holding it exclusively;
    returns the items of stripes that stayed busy (postponed)."""
    stripes: dict[str, list[T]] = {}
    for item in items:
        stripes.setdefault(touch.stripe(digest(item)), []).append(item)
    busy: list[T] = []
    room = asyncio.Semaphore(PARALLEL)

    async def one(lock: str, group: list[T]) -> None:
        async with room:
            try:
                async with driver.lock(lock, shared=False, wait=LOCK_WAIT, create=True):
                    await work(group)
            except Busy:
                busy.extend(group)

    await asyncio.gather(*(one(lock, group) for lock, group in sorted(stripes.items())))
    return busy


class Trash:
    """``kura/trash/<T0>/``. ``erase=True`` (offline: nothing can be reading) erases blobs at once instead."""

    def __init__(self, driver: StorageDriver, t0_ns: int, erase: bool = False) -> None:
        self.driver = driver
        self.directory = paths.join(state.TRASH, str(t0_ns))
        self.erase = erase

    async def put(self, digests: list[Digest]) -> Sequence[bool]:
        """Move the blobs in (one round trip); whether each was there."""
        if self.erase:
            await self.driver.delete_many([p for d in digests for p in (paths.blob_data(d), paths.blob_dir(d))])
            return [True] * len(digests)
        pairs = [(paths.blob_dir(d), paths.join(self.directory, f"{d.algorithm}-{d.hex}")) for d in digests]
        return await self.driver.move_many(pairs, durable=False)

    async def empty(self, older_than_ns: int) -> int:
        """Erase the trash of runs that started before ``older_than_ns``; returns how many."""
        try:
            runs = await self.driver.list(state.TRASH)
        except PathNotFound:
            return 0
        erased = 0
        for run in runs:
            if run.isdigit() and int(run) < older_than_ns:
                try:
                    await self.driver.delete(paths.join(state.TRASH, run))
                    erased += 1
                except PathNotFound:
                    pass
        return erased


async def blobs(
    driver: StorageDriver, candidates: list[Candidate], cutoff_ns: int, trash: Trash
) -> tuple[list[Candidate], int]:
    """Move the candidates that are still old into the trash; returns them, and how many were postponed."""
    wanted = {c.digest: c for c in candidates}
    swept: list[Candidate] = []
    postponed = 0

    async def work(group: list[Digest]) -> None:
        nonlocal postponed
        found = await driver.stat_many([paths.blob_data(d) for d in group])
        going = []
        for digest, info in zip(group, found, strict=True):
            if info is None:
                continue  # gone already
            if old(info, cutoff_ns):
                going.append(digest)
            else:
                postponed += 1
        for digest, moved in zip(going, await trash.put(going), strict=True):
            if moved:
                swept.append(wanted[digest])

    busy = await by_stripe(driver, wanted, lambda d: d, work)
    return swept, postponed + len(busy)


@dataclass(frozen=True, slots=True)
class Revision:
    """A repository's revision the mark left, with the tags whose history names it."""

    name: str
    digest: Digest
    tags: tuple[str, ...] = ()


async def manifests(
    driver: StorageDriver, doomed: list[Revision], cutoff_ns: int, pulled: bool = True
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

    await by_stripe(driver, doomed, lambda r: r.digest, work)
    return deleted


async def dangling_links(driver: StorageDriver, found: list[Revision], *, layers: bool) -> list[Revision]:
    """Remove the layer (or revision) links whose blob is not stored, checked under the lock."""
    removed: list[Revision] = []

    async def work(group: list[Revision]) -> None:
        stats = await driver.stat_many([paths.blob_data(r.digest) for r in group])
        gone = [r for r, info in zip(group, stats, strict=True) if info is None]
        base = paths.layers if layers else paths.manifest_revisions
        directories = [paths.join(base(r.name), r.digest.algorithm, r.digest.hex) for r in gone]
        await driver.delete_many([p for d in directories for p in (paths.join(d, "link"), d)])
        removed.extend(gone)

    await by_stripe(driver, found, lambda r: r.digest, work)
    return removed
