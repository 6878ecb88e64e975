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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from storage import paths
from storage.digest import Digest
from storage.driver import Busy, FileInfo, PathNotFound, StorageDriver
from storage.gc import state, touch

PARALLEL = 8  # stripes handled at once: enough to keep the driver's threads busy
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
    digests: Iterable[Digest],
    work: Callable[[list[Digest]], Awaitable[None]],
) -> list[Digest]:
    """Run ``work`` on the digests of each stripe while holding it exclusively; returns the
    digests of stripes that stayed busy (postponed)."""
    stripes: dict[str, list[Digest]] = {}
    for digest in digests:
        stripes.setdefault(touch.stripe(digest), []).append(digest)
    busy: list[Digest] = []
    room = asyncio.Semaphore(PARALLEL)

    async def one(lock: str, group: list[Digest]) -> None:
        async with room:
            try:
                async with driver.lock(lock, shared=False, wait=LOCK_WAIT, create=True):
                    await work(group)
            except Busy:
                busy.extend(group)

    await asyncio.gather(*(one(lock, group) for lock, group in sorted(stripes.items())))
    return busy


class Trash:
    def __init__(self, driver: StorageDriver, t0_ns: int) -> None:
        self.driver = driver
        self.directory = paths.join(state.TRASH, str(t0_ns))

    async def put(self, digest: Digest) -> None:
        target = paths.join(self.directory, f"{digest.algorithm}-{digest.hex}")
        await self.driver.move(paths.blob_dir(digest), target, durable=False)

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
        for digest, info in zip(group, found, strict=True):
            if info is None:
                continue  # gone already
            if not old(info, cutoff_ns):
                postponed += 1
                continue
            try:
                await trash.put(digest)
            except PathNotFound:
                continue
            swept.append(wanted[digest])

    busy = await by_stripe(driver, wanted, work)
    return swept, postponed + len(busy)


async def manifests(
    driver: StorageDriver, name: str, doomed: list[Digest], history: dict[Digest, list[str]], cutoff_ns: int
) -> tuple[list[Digest], int]:
    """Delete revisions (and the tag history entries and pull markers that name them) whose link and
    manifest are both still older than the cutoff: a push of the same manifest since, or an index
    PUT that relies on it as a child, touched one of them under the shared lock."""
    deleted: list[Digest] = []

    async def work(group: list[Digest]) -> None:
        for digest in group:
            link, data = await driver.stat_many([paths.manifest_revision_link(name, digest), paths.blob_data(digest)])
            if link is None or not old(link, cutoff_ns) or not old(data, cutoff_ns):
                continue
            revision = paths.join(paths.manifest_revisions(name), digest.algorithm, digest.hex)
            for path in [
                revision,
                *(
                    paths.join(paths.tag_dir(name, t), "index", digest.algorithm, digest.hex)
                    for t in history.get(digest, ())
                ),
                touch.pull_marker(name, digest),
            ]:
                try:
                    await driver.delete(path)
                except PathNotFound:
                    pass
            deleted.append(digest)

    await by_stripe(driver, doomed, work)
    return deleted, len(doomed) - len(deleted)


async def dangling_links(driver: StorageDriver, name: str, digests: list[Digest], *, layers: bool) -> list[Digest]:
    """Remove the repository's layer (or revision) links whose blob is not stored, checked under the lock."""
    removed: list[Digest] = []

    async def work(group: list[Digest]) -> None:
        found = await driver.stat_many([paths.blob_data(d) for d in group])
        for digest, info in zip(group, found, strict=True):
            if info is not None:
                continue
            if layers:
                path = paths.join(paths.layers(name), digest.algorithm, digest.hex)
            else:
                path = paths.join(paths.manifest_revisions(name), digest.algorithm, digest.hex)
            try:
                await driver.delete(path)
            except PathNotFound:
                continue
            removed.append(digest)

    await by_stripe(driver, digests, work)
    return removed
