"""Touch on observation: the request side of online garbage collection (operations.md §1.3).

Any response that tells a client "this blob exists" (blob HEAD/GET 200, mount 201, upload commit 201,
each blob or child a manifest PUT relies on) first makes sure the collector will not remove it:

- if the blob's data mtime is recent (within ``interval``, a quarter of the grace period), nothing is
  done: the collector removes only data older than the whole grace period, and re-checks that under
  its exclusive lock;
- otherwise the data is touched under the blob's SHARED stripe lock. The touch fails if the data is
  gone, so a blob swept meanwhile is answered as if it never existed (404, MANIFEST_BLOB_UNKNOWN).

The stat the request already made gives the mtime, so the common path costs nothing extra.

A blob observed within the interval is not touched, so a collector must never use a grace period
shorter than twice the longest interval any server uses (``publish``; the collector raises its grace
to that).

Pull times for retention live in Kura-private markers, ``kura/pulls/<repo>/<alg>/<hex>``, whose
mtime is the last pull of that manifest (rate-limited the same way, shared by every worker, and
kept across restarts).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator

from storage import paths
from storage.digest import Digest
from storage.driver import FileInfo, PathNotFound, StorageDriver

DIVISOR = 4  # touches per grace period, at most, per blob
LOCK_WAIT = 30.0  # seconds a request waits for the sweeper to release a stripe
DEFAULT_GRACE = 7200.0


INTERVAL = paths.join(paths.KURA, "gc", "touch-interval")  # the longest any server on this root uses


async def publish(driver: StorageDriver, grace: float) -> None:
    """Record this server's touch interval, so that a collector never trusts an mtime more than it may."""
    interval = grace / DIVISOR
    if interval > await published(driver):
        await driver.put_content(INTERVAL, f"{interval:g}".encode())


async def published(driver: StorageDriver) -> float:
    """The longest touch interval (seconds) a server on this root announced; 0 when none did."""
    try:
        interval = float((await driver.get_content(INTERVAL, 64)).decode("ascii"))
    except PathNotFound:
        return 0.0
    except (UnicodeDecodeError, ValueError):
        interval = math.nan
    if not 0 <= interval < math.inf:  # NaN fails too; a large interval is the safe direction
        # Not what a server writes (edited by hand?): assume the default's, so no grace comes out short
        return DEFAULT_GRACE / DIVISOR
    return interval


def stripe(digest: Digest) -> str:
    return paths.lock_stripe("blobs", digest.hex)


def pull_marker(name: str, digest: Digest) -> str:
    return paths.join(paths.KURA, "pulls", name, digest.algorithm, digest.hex)


class Observer:
    """Touches what requests observe; one per process (``storage.Registry`` owns it)."""

    def __init__(self, driver: StorageDriver, grace: float = DEFAULT_GRACE, capacity: int = 4096) -> None:
        self.driver = driver
        self.interval_ns = int(grace * 1e9 / DIVISOR)
        self._pulls: OrderedDict[tuple[str, Digest], int] = OrderedDict()
        self._capacity = capacity

    def fresh(self, info: FileInfo) -> bool:
        return info.mtime_ns is not None and time.time_ns() - info.mtime_ns <= self.interval_ns

    @contextlib.asynccontextmanager
    async def held(self, digest: Digest, *, shared: bool = True) -> AsyncIterator[None]:
        """The blob's stripe, shared: the sweeper cannot remove the blob while it is held. Exclusive
        (``shared=False``), as a sweep holds it: no request links or observes the blob meanwhile."""
        async with self.driver.lock(stripe(digest), shared=shared, wait=LOCK_WAIT, create=True):
            yield

    async def touch_held(self, digest: Digest) -> bool:
        """Touch the blob's data (the stripe must be held); False when it is gone."""
        try:
            await self.driver.touch(paths.blob_data(digest))
        except PathNotFound:
            return False
        return True

    async def confirm(self, digest: Digest, data: FileInfo) -> bool:
        """Whether the blob whose data stat is ``data`` may be reported as existing (touched if need be)."""
        if self.fresh(data):
            return True
        async with self.held(digest):
            return await self.touch_held(digest)

    async def refresh(self, path: str, info: FileInfo | None = None) -> None:
        """Touch a link (a revision, a tag) whose mtime is a push time, unless that is recent."""
        if info is not None and self.fresh(info):
            return
        try:
            await self.driver.touch(path)
        except PathNotFound:
            pass  # removed meanwhile: the caller's own check decides what that means

    async def pulled(self, name: str, digest: Digest) -> None:
        """Record a pull of ``name@digest``: at most once per interval per process, a touch inline."""
        key = (name, digest)
        now = time.monotonic_ns()
        last = self._pulls.get(key)
        if last is not None and now - last <= self.interval_ns:
            return
        self._pulls[key] = now
        self._pulls.move_to_end(key)
        if len(self._pulls) > self._capacity:
            self._pulls.popitem(last=False)
        marker = pull_marker(name, digest)
        try:
            await self.driver.touch(marker)
        except PathNotFound:
            await self.driver.put_content(marker, b"", durable=False)
