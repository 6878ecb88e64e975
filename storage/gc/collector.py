"""One garbage collection over a storage driver: operations.md §1.3's collector, steps 0-5.

0. The leader lock (``kura/gc/leader.lock``; offline first the serving lock, see below), then T0,
   before anything is read.
1-2. Per repository, streamed: read its links, apply its retention policy (untag), mark, evict
   past its size cap; the revisions nothing keeps are deleted (re-checked under their stripe) in
   the background while later repositories are marked.
3-4. One walk of ``blobs/`` (only unmarked blobs are stat'ed): those whose liveness (the newest of
   their data's mtime and of every link to them) is older than T0 - grace are swept under their
   stripe lock, a batch at a time while the walk goes on (offline: between its steps), and with the
   last batch the layer links to blobs that are gone (one lock for both).
5. Tidy: repositories left empty, stale uploads; the trash of earlier runs; the state file and
   generation.

Offline (``--offline``: the collector holds the root's serving lock exclusively, so no server runs)
every link is older than the cutoff, so layer links are read from the listings without a stat
unless a retention policy needs their times, the sweeps take no stripe locks, and each blob batch
is swept before the walk goes on.

Memory: the digests the kept manifests need, with their sizes (a dict), the newest link mtime of
every linked digest (a dict), and the swept digests and orphaned layer links of this run: about 250
bytes per distinct blob, whatever the number of repositories. One repository's links are held at a
time, and at most two batches of BATCH blob candidates (one being swept, one gathered).

Time goes to removing directories (a file and its directory per blob and per link): the filesystem
driver removes with 16 threads, since each removal mostly waits on the disk (more threads were
measured slower). An online collection holds at most ``sweep.ONLINE_PARALLEL`` stripes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storage import links, paths
from storage.digest import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.gc import inventory, mark, purging, retention, state, sweep, touch
from storage.gc.config import GCConfig, RetentionPolicy, UploadPurging
from storage.gc.inventory import Inventory, Tag
from storage.gc.report import NO_REPOSITORY, Report

log = logging.getLogger("kura.gc")

BATCH = 4096  # blob candidates per sweep: one batch is swept while the walk gathers the next
DOOMED_BATCH = 1024  # doomed revisions deleted at a time, while the mark goes on
TAG_LOCK_WAIT = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    grace: float = 7200.0
    delete_untagged: bool = False
    orphan_referrers: bool = True
    dry_run: bool = False
    offline: bool = False  # the registry is stopped: no grace period, the trash is erased at once
    trash_delay: float = 3600.0
    retention: Sequence[RetentionPolicy] = ()
    uploads: UploadPurging | None = None  # purge stale uploads with these settings; None: leave them

    @classmethod
    def of(
        cls, gc: GCConfig, policies: Sequence[RetentionPolicy], uploads: UploadPurging | None, **overrides: Any
    ) -> Settings:
        """From the config sections, with the command line's ``overrides`` (field names) applied."""
        configured = cls(
            grace=gc.grace,
            delete_untagged=gc.deleteuntagged,
            orphan_referrers=gc.orphanreferrers,
            trash_delay=gc.trashdelay,
            retention=tuple(policies),
            uploads=uploads if uploads is not None and uploads.enabled else None,
        )
        return dataclasses.replace(configured, **overrides)


async def collect(driver: StorageDriver, settings: Settings, pace: sweep.Pace = sweep.unpaced) -> Report:
    """Run one collection, each unit of its work once ``pace`` allows (``sweep.Pace``);
    ``storage.driver.Busy`` when another collector holds the leader lock, ``state.ServerRunning`` when
    an offline one is asked for while a server serves the root."""
    # The serving lock first: beside a server, an offline run is refused whether or not it collects.
    async with state.alone(driver) if settings.offline else contextlib.nullcontext(), state.leader(driver):
        return await Collection(driver, settings, pace=pace).run()


@dataclass(slots=True)
class _Leftover:
    """What tidy needs of a repository once the blobs are swept."""

    orphans: list[Digest]  # layer links nothing the repository keeps needs
    revisions: int  # revision links it had (deleted and dangling ones included)
    tags_or_uploads: bool  # tags or uploads remain
    layer_count: int
    deleted: list[Digest] = field(default_factory=list)  # its manifests deleted in this run
    dangling: int = 0  # revision links without a manifest, removed


@dataclass(slots=True)
class Collection:
    driver: StorageDriver
    settings: Settings
    t0_ns: int = field(default_factory=time.time_ns)
    needed: dict[Digest, int] = field(default_factory=dict)  # what the kept manifests need -> its size
    linked: dict[Digest, int] = field(default_factory=dict)  # the newest link mtime of each linked digest
    swept: dict[Digest, int] = field(default_factory=dict)  # blob -> size
    unlinked: list[sweep.Revision] = field(default_factory=list)  # layer links removed (their blob is gone)
    leftovers: dict[str, _Leftover] = field(default_factory=dict)
    doomed: list[sweep.Revision] = field(default_factory=list)
    dangling: list[sweep.Revision] = field(default_factory=list)
    doomed_documents: dict[tuple[str, Digest], mark.Document] = field(default_factory=dict)
    deleting: asyncio.TaskGroup = field(init=False)  # the doomed revisions' deletions, made by run()
    policies_run: set[str] = field(default_factory=set)
    pulls: bool = True  # whether any pull marker exists
    pace: sweep.Pace = sweep.unpaced
    stripes: sweep.Stripes = field(init=False)  # how the sweeps hold what they remove
    report: Report = field(init=False)
    cutoff_ns: int = field(init=False)

    def __post_init__(self) -> None:
        grace = 0.0 if self.settings.offline else self.settings.grace
        self.cutoff_ns = self.t0_ns - int(grace * 1e9)
        self.report = Report(self.t0_ns, grace, self.settings.dry_run, self.settings.offline)
        if self.settings.offline:
            self.stripes = sweep.Stripes(pace=self.pace, locked=False)
        else:  # few stripes held at once, over all sweeps
            self.stripes = sweep.Stripes(asyncio.Semaphore(sweep.ONLINE_PARALLEL), self.pace)

    @property
    def dry(self) -> bool:
        return self.settings.dry_run

    async def run(self) -> Report:
        if not self.settings.offline:
            # A server trusts an mtime younger than its touch interval: a shorter grace than twice that
            # could take a blob a client was just told about.
            floor = 2 * await touch.published(self.driver)
            if self.report.grace < floor:
                log.warning(
                    "grace raised from %gs to %gs: servers on this root touch every %gs",
                    self.report.grace,
                    floor,
                    floor / 2,
                )
                self.report.grace = floor
                self.cutoff_ns = self.t0_ns - int(floor * 1e9)
        saved = await state.load(self.driver)
        trash = sweep.Trash(self.driver, self.t0_ns, erase=self.settings.offline, pace=self.pace)
        if not self.dry:
            self.report.trash_emptied = await trash.empty(self.t0_ns - int(self.settings.trash_delay * 1e9))
        self.pulls = (await self.driver.stat_many([inventory.PULLS]))[0] is not None
        # Doomed revisions are deleted in the background while later repositories are marked: the
        # deletions wait on the disk while the mark keeps the CPU. A repository's mark may never
        # suspend (the filesystem driver answers small reads on the event loop), so the loop is given
        # a turn after each one: the deletions' next steps run, and their removal threads stay busy.
        async with asyncio.TaskGroup() as self.deleting:
            async for name in inventory.repositories(self.driver):
                await self._repository(name, saved)
                if len(self.doomed) >= DOOMED_BATCH:
                    self._delete_doomed()
                await asyncio.sleep(0)
                await self.pace()
            self._delete_doomed()
        await self._manifests()
        await self._blobs(trash)
        self.report.bytes_needed = sum(self.needed.values())
        await self._tidy()
        self.report.finished_ns = time.time_ns()
        saved.policies = sorted(set(saved.policies) | self.policies_run)
        if not self.dry:
            if self.report.blobs_deleted or self.report.manifests_deleted or self.report.tags_removed:
                saved.generation += 1
            if self.settings.uploads is not None and not self.settings.uploads.dryrun:
                saved.uploads_purged_ns = self.t0_ns
        saved.add(self.report.summary() | {"generation": saved.generation})
        try:
            # A dry run records itself too: a policy's first run is dry, and this one counts as it
            await state.save(self.driver, saved)
        except OSError as exc:
            if not self.dry:
                raise
            log.warning("dry run not recorded (%s): a new retention policy stays dry on the next run", exc)
        return self.report

    # -- per repository --------------------------------------------------------------------------

    async def _repository(self, name: str, saved: state.State) -> None:
        chosen = retention.policy_for(self.settings.retention, name)
        policy = chosen[1] if chosen else None
        # Offline every link is older than the cutoff: only a retention policy needs their times.
        times = policy is not None or not self.settings.offline
        found = await inventory.read(self.driver, name, self.pulls, times)
        report = self.report.repository(name)
        self.report.repositories_seen += 1
        self.report.manifests_seen += len(found.revisions)
        delete_untagged = self.settings.delete_untagged
        policy_dry = self.dry
        if policy is not None:
            if policy.deleteuntagged is not None:
                delete_untagged = policy.deleteuntagged
            fingerprint = retention.fingerprint(policy)
            self.policies_run.add(fingerprint)
            policy_dry = self.dry or policy.dryrun or fingerprint not in saved.policies
            for tag, why in retention.tags_to_remove(policy, found, self.t0_ns):
                await self._untag(found, tag, why, policy_dry)

        docs = await mark.documents(self.driver, found)
        rules = mark.Rules(self.cutoff_ns, delete_untagged, self.settings.orphan_referrers)
        marking = mark.mark(found, docs, rules)
        if policy is not None and policy.sizecap is not None:
            evicted, capped = retention.evict(
                policy.sizecap, found, marking, lambda out: mark.mark(found, docs, rules, out)
            )
            tagged = found.tagged()
            for digest in sorted(evicted, key=str):
                log.info("retention: %s: %s evicted by the size cap%s", name, digest, " (dry run)" * policy_dry)
                for tag in tagged.get(digest, []):
                    await self._untag(found, tag, "evicted by the size cap", policy_dry)
            if evicted and (not policy_dry or self.dry):
                marking = capped

        for digest, needed_size in mark.sizes(marking).items():
            self.report.bytes_referenced += needed_size
            self.needed.setdefault(digest, needed_size)
        for digest, mtime in (*found.revisions.items(), *found.layers.items()):
            if mtime > self.linked.get(digest, 0):
                self.linked[digest] = mtime

        history: dict[Digest, list[str]] = {}
        for tag, info in found.tags.items():
            for digest in info.history:
                history.setdefault(digest, []).append(tag)
        for digest in marking.doomed:
            self.doomed.append(sweep.Revision(name, digest, tuple(history.get(digest, ()))))
            doc = marking.documents.get(digest)
            if doc is not None:
                self.doomed_documents[(name, digest)] = doc
        self.dangling += [sweep.Revision(name, d) for d in marking.dangling]

        purged = await self._purge_uploads(found)
        report.uploads = purged
        tags_left = any(t.digest is not None for t in found.tags.values())
        self.leftovers[name] = _Leftover(
            [d for d in found.layers if d not in marking.needs],
            len(found.revisions),
            tags_left or len(found.uploads) > purged,
            len(found.layers),
        )

    def _delete_doomed(self) -> None:
        """Start deleting the doomed revisions gathered so far (a dry run only lists them)."""
        doomed, documents = self.doomed, self.doomed_documents
        self.doomed, self.doomed_documents = [], {}
        if self.dry:
            for revision in doomed:
                self.leftovers[revision.name].deleted.append(revision.digest)
        elif doomed:
            self.deleting.create_task(self._delete(doomed, documents))

    async def _delete(self, doomed: list[sweep.Revision], documents: dict[tuple[str, Digest], mark.Document]) -> None:
        """Delete doomed revisions (online a stripe at a time); keep what was touched."""
        deleted = await sweep.manifests(self.driver, doomed, self.cutoff_ns, self.pulls, self.stripes)
        for revision in set(doomed) - set(deleted):
            self._keep(documents.get((revision.name, revision.digest)), revision.digest)
        self.report.postponed += len(doomed) - len(deleted)
        for revision in deleted:
            self.leftovers[revision.name].deleted.append(revision.digest)

    async def _manifests(self) -> None:
        """Once every doomed revision is deleted: the revision links without a manifest go too."""
        if not self.dry:
            for revision in await sweep.dangling_revisions(self.driver, self.dangling, self.stripes):
                self.leftovers[revision.name].dangling += 1
        for name, left in self.leftovers.items():
            self.report.repository(name).manifests = sorted(left.deleted, key=str)

    def _keep(self, doc: mark.Document | None, digest: Digest) -> None:
        """A doomed manifest was touched during the run: it and what it references stay."""
        sizes = {digest: 0} if doc is None else {digest: doc.size}
        for blob, blob_size in doc.references() if doc is not None else ():
            sizes.setdefault(blob, blob_size)
        for kept, kept_size in sizes.items():
            if kept not in self.needed:
                self.needed[kept] = kept_size
                self.report.bytes_referenced += kept_size

    async def _untag(self, found: Inventory, tag: str, why: str, dry: bool) -> None:
        info = found.tags[tag]
        if dry:
            done = True
        else:
            done = await self._untag_unchanged(found.name, tag, info)
        if not done:
            log.info("retention: %s:%s was pushed again during the run; kept", found.name, tag)
            return
        log.info("retention: %s: %s tag %s (%s)", found.name, "would remove" if dry else "removed", tag, why)
        self.report.repository(found.name).untagged.append((tag, why))
        if done and (not dry or self.dry):
            del found.tags[tag]  # a policy that is dry while the run is not changes nothing

    async def _untag_unchanged(self, name: str, tag: str, seen: Tag) -> bool:
        """Remove the tag unless it moved or was pushed again since it was read (as a v3 tag delete)."""
        current = paths.tag_current_link(name, tag)
        async with self.driver.lock(paths.lock_stripe("tags", name), wait=TAG_LOCK_WAIT, create=True):
            (info,) = await self.driver.stat_many([current])
            if info is None or info.mtime_ns != seen.pushed_ns or await links.read(self.driver, current) != seen.digest:
                return False
            try:
                await self.driver.delete(paths.tag_dir(name, tag))
            except PathNotFound:
                return False
        return True

    async def _purge_uploads(self, found: Inventory) -> int:
        settings = self.settings.uploads
        if settings is None:
            return 0
        old = purging.stale(found.uploads, settings.age, self.t0_ns)
        await purging.purge(self.driver, found.name, old, self.dry or settings.dryrun)
        return len(old)

    # -- blobs -----------------------------------------------------------------------------------

    async def _blobs(self, trash: sweep.Trash) -> None:
        """Sweep the unmarked blobs past their grace, a batch at a time while the walk goes on (online
        its stats overlap the removals), and with the last batch, once the others are done, the layer
        links to blobs that are not stored (online their blob's stripe is held for both)."""
        async with asyncio.TaskGroup() as sweeping:
            last = await self._walk(trash, sweeping)
        orphans = [sweep.Revision(name, d) for name, left in self.leftovers.items() for d in left.orphans]
        await self._sweep(last, trash, orphans)

    async def _walk(self, trash: sweep.Trash, sweeping: asyncio.TaskGroup) -> list[sweep.Candidate]:
        """Walk the blobs, sweeping each full batch (online in the background, one at a time); the last batch."""
        batch: list[sweep.Candidate] = []
        previous: asyncio.Task[None] | None = None
        async for digest, info in inventory.blobs(self.driver, self.needed):
            await self.pace()
            self.report.blobs_seen += 1
            if info is None:
                self.report.blobs_marked += 1
                self.report.bytes_seen += self.needed[digest]
                continue
            self.report.bytes_seen += info.size
            if max(info.mtime_ns or self.t0_ns, self.linked.get(digest, 0)) >= self.cutoff_ns:
                continue  # young: within the grace period
            batch.append(sweep.Candidate(digest, info.size))
            if len(batch) >= BATCH:
                if previous is not None:
                    await previous  # at most one batch being swept and one gathered: memory stays bounded
                if self.settings.offline:
                    # Nothing to wait for but the removals, which then run alone: overlapped with the
                    # walk, their threads and the walk only contended for the interpreter (a run took
                    # 11.0 s against 6.8 s on this disk, 5.7 against 5.4 on tmpfs).
                    await self._sweep(batch, trash)
                else:
                    previous = sweeping.create_task(self._sweep(batch, trash))
                batch = []
        return batch

    async def _sweep(
        self, batch: list[sweep.Candidate], trash: sweep.Trash, orphans: list[sweep.Revision] | None = None
    ) -> None:
        if self.dry:
            swept = batch
        else:
            done = await sweep.blobs(self.driver, batch, self.cutoff_ns, trash, orphans or (), self.stripes)
            swept, self.unlinked = done.blobs, self.unlinked + done.links
            self.report.postponed += done.postponed
        for candidate in swept:
            self.swept[candidate.digest] = candidate.size
            self.report.blobs_deleted += 1
            self.report.bytes_freed += candidate.size
        if self.dry and orphans is not None:
            self.unlinked = [r for r in orphans if r.digest in self.swept]

    # -- tidy ------------------------------------------------------------------------------------

    async def _tidy(self) -> None:
        for revision in self.unlinked:
            self.report.repository(revision.name).layer_links += 1
        attributed: set[Digest] = set()
        for name, left in self.leftovers.items():
            report = self.report.repository(name)
            for digest in (*left.orphans, *left.deleted):
                if digest in self.swept:
                    report.blobs[digest] = self.swept[digest]
                    attributed.add(digest)
            revisions_left = left.revisions - len(left.deleted) - left.dangling
            if not left.tags_or_uploads and revisions_left == 0 and report.layer_links == left.layer_count:
                await self.pace()
                report.removed = self.dry or await self._remove_if_empty(name)
        unlinked = self.report.repository(NO_REPOSITORY)
        for digest, blob_size in self.swept.items():
            if digest not in attributed:
                unlinked.blobs[digest] = blob_size

    async def _remove_if_empty(self, name: str) -> bool:
        for directory in (paths.layers(name), paths.manifests(name), paths.uploads(name)):
            async for _ in self.driver.walk(directory):
                return False  # something arrived meanwhile
        for directory in (paths.layers(name), paths.manifests(name), paths.uploads(name)):
            try:
                await self.driver.delete(directory)
            except PathNotFound:
                pass
        try:
            if not await self.driver.list(paths.repository(name)):
                await self.driver.delete(paths.repository(name))
        except PathNotFound:
            pass
        return True
