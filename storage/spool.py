"""A durable, ordered queue of opaque records in one directory: the notification spool.

Every file operation of the spool is here, behind four verbs (``append``, ``pending``, ``read``,
``remove``) and a leader lock, so the spool can later move behind the storage driver unchanged.

Layout of ``<directory>``::

    <ns:020d>-<pid>-<seq>-<size>.event   one record, complete once it has this name
    .<...>.tmp                           a record being written; never listed, swept when old
    leader.lock                          flock'd by the one process that delivers

Consistency model: a record is written to a dot-named temporary file, fsync'd, renamed to its final
name and the directory fsync'd, so a listed record is always whole and a writer killed at any point
leaves at most a temporary file, which ``pending`` never returns. Names sort in append order: the
wall clock in nanoseconds first, then the writer's pid and its own counter, so two processes never
make the same name and a record appended after another one was acknowledged sorts after it (across
processes this trusts the wall clock not to step back between the two). The
size is in the name so that bounding the spool needs no ``stat`` per record.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import time
from dataclasses import dataclass

from storage.fs import fsync_dir

SUFFIX = ".event"
LOCK_NAME = "leader.lock"
_NAME = re.compile(r"(\d{20})-(\d+)-(\d+)-(\d+)\.event")
_counter = itertools.count()
_last_ns = 0


@dataclass(frozen=True, slots=True, order=True)
class Entry:
    name: str
    size: int


class Spool:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def append(self, data: bytes) -> Entry:
        """Store ``data`` durably as the newest record."""
        global _last_ns
        os.makedirs(self.directory, exist_ok=True)
        # Never backwards within a process, even if the wall clock steps back.
        _last_ns = max(time.time_ns(), _last_ns + 1)
        name = f"{_last_ns:020d}-{os.getpid()}-{next(_counter)}-{len(data)}{SUFFIX}"
        tmp = os.path.join(self.directory, f".{name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.directory, name))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(self.directory)
        return Entry(name, len(data))

    def pending(self) -> list[Entry]:
        """Every complete record, oldest first."""
        try:
            with os.scandir(self.directory) as entries:
                found = [Entry(e.name, int(m[4])) for e in entries if (m := _NAME.fullmatch(e.name))]
        except FileNotFoundError:
            return []
        found.sort()
        return found

    def read(self, entry: Entry) -> bytes | None:
        """The record's bytes, None when it has been removed meanwhile."""
        try:
            with open(os.path.join(self.directory, entry.name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def remove(self, entry: Entry) -> None:
        """Forget a record (delivered or dropped). Not fsync'd: a record that reappears after a power
        loss is delivered again, which at-least-once allows."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, entry.name))

    def sweep(self, older_than: float) -> int:
        """Remove temporary files left by writers that died more than ``older_than`` seconds ago."""
        removed = 0
        limit = time.time() - older_than
        try:
            with os.scandir(self.directory) as entries:
                stale = [e.path for e in entries if e.name.endswith(".tmp") and e.stat().st_mtime < limit]
        except FileNotFoundError:
            return 0
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
        return removed

    def try_lead(self) -> LeaderLock | None:
        """The leader lock when no other holder has it; the kernel frees it when its holder dies."""
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(os.path.join(self.directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return LeaderLock(fd)


class LeaderLock:
    """An flock held on an open file of its own: another open, even in this process, cannot take it."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
