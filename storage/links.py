"""registry:2's link files: exactly ``<alg>:<hex>``, no newline, written atomically through the driver."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from storage import paths
from storage.digest import Digest
from storage.driver import FileInfo, PathNotFound, StorageDriver
from storage.errors import StorageError

LINK_LIMIT = 256  # a link is ~71 bytes; anything longer is not one of ours


class LinkCache:
    """Links read before, each trusted while a new stat of its path shows the version it had then.

    For the hot tag lookups: one stat instead of open, read and close, and correct across processes
    (another worker, another Kura, registry:2 on the same root), because the stat is taken *before*
    the read: a change made between the two gives a later stat another version, never a stale hit.
    A link whose version is less than ``SETTLE`` old is not kept: a file systems' timestamps move in
    clock ticks, and a rewrite within the same tick could keep the version (git's "racy" entries).
    Drivers that report no version get no caching.
    """

    SETTLE_NS = 2_000_000_000
    SIZE = 4096

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._items: OrderedDict[str, tuple[tuple[int, int], Digest]] = OrderedDict()

    def guess(self, path: str) -> Digest | None:
        """What the link said when last read; to be confirmed with ``confirmed``."""
        item = self._items.get(path)
        return None if item is None else item[1]

    def confirmed(self, path: str, info: FileInfo | None) -> Digest | None:
        """The remembered digest when ``info`` (a stat of the link) shows it unchanged since."""
        item = self._items.get(path)
        if item is None or info is None or info.version != item[0]:
            return None
        self._items.move_to_end(path)
        return item[1]

    async def read(self, driver: StorageDriver, path: str) -> Digest | None:
        """``read``, remembering the digest with the version a stat showed just before."""
        try:
            info = await driver.stat(path)
        except PathNotFound:
            self._items.pop(path, None)
            return None
        digest = await read(driver, path)
        version = info.version
        if digest is None or version is None or self._clock_ns() - version[1] < self.SETTLE_NS:
            self._items.pop(path, None)
            return digest
        self._items[path] = (version, digest)
        self._items.move_to_end(path)
        while len(self._items) > self.SIZE:
            self._items.popitem(last=False)
        return digest


async def read(driver: StorageDriver, path: str) -> Digest | None:
    """The digest in a link file, None when there is none. A corrupt link reads as no link."""
    try:
        raw = await driver.get_content(path, LINK_LIMIT)
    except PathNotFound:
        return None
    try:
        return Digest.parse(raw.decode("ascii").strip())
    except (UnicodeDecodeError, StorageError):
        return None


async def write(driver: StorageDriver, path: str, digest: Digest) -> None:
    await driver.put_content(path, str(digest).encode("ascii"))


async def ensure(driver: StorageDriver, path: str, digest: Digest) -> None:
    """Write the link unless it already says ``digest`` (a rewrite would cost two fsyncs)."""
    if await read(driver, path) != digest:
        await write(driver, path, digest)


async def digests_under(driver: StorageDriver, directory: str) -> list[Digest]:
    """The ``<alg>/<hex>`` entries below a ``_layers`` or ``revisions`` directory (links not checked)."""
    found: list[Digest] = []
    try:
        algorithms = await driver.list(directory)
    except PathNotFound:
        return found
    for algorithm in algorithms:
        try:
            hexes = await driver.list(paths.join(directory, algorithm))
        except PathNotFound:
            continue
        found += [d for encoded in hexes if (d := Digest.named(algorithm, encoded)) is not None]  # others: not ours
    return found
