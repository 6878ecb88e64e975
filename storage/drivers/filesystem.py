"""The filesystem driver: registry:2's ``filesystem`` driver, and the only code that makes storage syscalls.

Consistency: a file at its final name is always complete. ``put_content`` writes a temporary file
under ``<root>/kura/tmp/`` (a Kura-private sibling of ``docker/``, so neither registry:2 nor a
listing ever sees a half-written file), fsyncs it, renames it over the target and fsyncs the target
directory. After a crash, what is left in ``kura/tmp/`` is removed once it is an hour old.

Which syscalls run on the event loop: what the page cache answers in microseconds (stat, a
directory of a few entries, reading or writing a small file without fsync, flock, utime, a rename
without fsync, removing a directory of a few small files). Anything that can wait on the disk
(fsync, large reads and writes, renames with their directory fsync, recursive deletes, large
directories) runs in the driver's thread pool, batched into one hop per call: a hop costs more CPU
than a dozen such syscalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import ParamSpec, TypeVar

import aiofiles.os

from storage.driver import Busy, FileInfo, PathNotFound

P = ParamSpec("P")
T = TypeVar("T")

READ_CHUNK = 1 << 20
INLINE_READ = 256 << 10  # files up to this size are read on the event loop (links, manifests)
INLINE_STATS = 32  # more stats than this in one call go to the pool
INLINE_WRITE = 64 << 10  # writes up to this size without fsync go to the page cache from the event loop
INLINE_REMOVE = 8  # a directory of at most this many small files is removed on the event loop
MAX_PIECES = 512  # per writev: well under Linux's IOV_MAX (1024)
STALE_TEMP_SECONDS = 3600
WALK_BATCH = 1000
# Garbage removal (delete_many) waits on the disk, not the CPU: every freed block is written back, and
# on a ``discard`` mount without a journal each one is a synchronous discard (~60 us here). Removals in
# different directories overlap in the kernel: 2.4x with 16 threads against 1, on 2 cores.
REMOVERS = 16
REMOVAL_CHUNK = 32  # paths per thread, at least: fewer are not worth a hop
_MISSING = (FileNotFoundError, NotADirectoryError)
# What an item that cannot be removed or moved raises: immutable, a read-only mount, a mount point
_STAYS = frozenset({errno.EPERM, errno.EACCES, errno.EROFS, errno.EBUSY})
log = logging.getLogger("kura.storage")


class FilesystemDriver:
    name = "filesystem"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._prefix = os.path.join(self.root, "")
        self._tmp = os.path.join(self.root, "kura", "tmp")
        # As asyncio's default executor would size it; its own, so that close() can shut it down.
        self._pool = ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="kura-io")
        # Background flushes wait on the disk for long; their own threads keep them off the pool.
        self._flusher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kura-flush")
        # Garbage collection's removals have threads of their own: many, since they mostly wait.
        self._removers = ThreadPoolExecutor(max_workers=REMOVERS, thread_name_prefix="kura-rm")
        self._purged_at = 0.0

    def full(self, path: str) -> str:
        # os.path.join(self.root, path), without its generality: it runs for every storage call
        if path.startswith("/"):
            raise ValueError(f"not a path below the root: {path!r}")  # storage.paths builds none: a bug
        return self._prefix + path

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = await _in_pool(fn, *args, executor=self._pool, **kwargs)
        return result

    # -- content -------------------------------------------------------------------------------

    async def get_content(self, path: str, limit: int | None = None) -> bytes:
        fd, size = _open_content(self.full(path), path)
        try:
            want = size if limit is None else min(size, limit + 1)
            if want <= INLINE_READ:
                return _read_all(fd, want)
            return await self.run(_read_all, fd, want)
        finally:
            os.close(fd)

    async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
        if not durable and len(data) <= INLINE_WRITE and not self._purge_due():
            self._put(self.full(path), data, durable)
        else:
            await self.run(self._put, self.full(path), data, durable)

    def _put(self, target: str, data: bytes, durable: bool) -> None:
        tmp = self._temp_file()
        try:
            fd = self._create(tmp)
            try:
                _write_all(fd, [data])
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            _replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if durable:
            _fsync_dir(os.path.dirname(target))

    def _temp_file(self) -> str:
        try:
            self._purge_stale_temps()
        except OSError:
            pass  # housekeeping must never fail a write
        return os.path.join(self._tmp, f"{uuid.uuid4().hex}.tmp")

    def _create(self, tmp: str) -> int:
        """A new temporary file, making ``kura/tmp/`` first when it is not there (a fresh root, or removed)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            return os.open(tmp, flags, 0o666)  # as open() makes it: the umask decides
        except FileNotFoundError:
            os.makedirs(self._tmp, exist_ok=True)
            return os.open(tmp, flags, 0o666)

    def _purge_due(self) -> bool:
        return time.time() - self._purged_at >= STALE_TEMP_SECONDS / 4

    def _purge_stale_temps(self) -> None:
        if not self._purge_due():
            return
        now = self._purged_at = time.time()
        os.makedirs(self._tmp, exist_ok=True)
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)

    # -- readers and writers -------------------------------------------------------------------

    async def reader(self, path: str) -> FileReader:
        fd, size = _open_content(self.full(path), path)
        return FileReader(fd, size, self)

    async def writer(self, path: str, *, create: bool = False) -> FileWriter:
        full = self.full(path)
        if create:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
            try:
                fd = os.open(full, flags, 0o644)
            except FileNotFoundError:
                _make_directory(os.path.dirname(full))
                fd = os.open(full, flags, 0o644)
            try:
                _lock_fd(fd, path, shared=False)  # O_EXCL made it just now: nothing moved it since
            except BaseException:
                os.close(fd)
                raise
            return FileWriter(fd, 0, self, path)
        try:
            fd = os.open(full, os.O_WRONLY | os.O_APPEND)
        except _MISSING:
            raise PathNotFound(path) from None
        try:
            _lock_fd(fd, path, shared=False)
            return FileWriter(fd, _same_file(fd, full, path).st_size, self, path)
        except BaseException:
            os.close(fd)
            raise

    # -- metadata ------------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        if not path:
            # The root itself: only "not there yet" is an answer; anything else (a file where the
            # root should be, a dead mount) is an error the health check reports.
            try:
                st = os.stat(self.root)
            except FileNotFoundError:
                raise PathNotFound(path) from None
            return FileInfo(path, st.st_size, st.st_mtime_ns, True)
        info = _stat(self.full(path), path)
        if info is None:
            raise PathNotFound(path)
        return info

    async def stat_many(self, paths: Sequence[str]) -> list[FileInfo | None]:
        if len(paths) <= INLINE_STATS:
            return [_stat(self.full(p), p) for p in paths]
        return await self.run(lambda: [_stat(self.full(p), p) for p in paths])

    async def list(self, path: str) -> list[str]:
        try:
            return os.listdir(self.full(path))
        except _MISSING:
            raise PathNotFound(path) from None

    async def move(self, source: str, target: str, *, durable: bool = True) -> None:
        await self.run(self._move, self.full(source), self.full(target), source, durable)

    def _move(self, source: str, target: str, name: str, durable: bool) -> None:
        try:
            _replace(source, target)
        except _MISSING:
            if not os.path.exists(source):
                raise PathNotFound(name) from None
            raise
        if durable:
            _fsync_dir(os.path.dirname(target))

    async def delete(self, path: str) -> None:
        full = self.full(path)
        try:
            st = os.lstat(full)
        except _MISSING:
            raise PathNotFound(path) from None
        if not S_ISDIR(st.st_mode):
            if st.st_size > INLINE_READ:
                await self.run(self._delete, full, path)  # freeing a large file's blocks takes a while
                return
            try:
                os.unlink(full)
                return
            except _MISSING:
                raise PathNotFound(path) from None
            except IsADirectoryError:
                pass  # replaced by a directory meanwhile
        # A directory: move it aside first, so that it disappears at once and whole (a writer
        # racing us recreates a fresh directory instead of losing its file midway), then remove it.
        trash = self._move_aside(full, path)
        if not _remove_small_directory(trash):
            await self.run(shutil.rmtree, trash, ignore_errors=True)

    def _move_aside(self, full: str, path: str) -> str:
        trash = os.path.join(self._tmp, f"{uuid.uuid4().hex}.deleted")
        for _ in range(2):
            try:
                os.rename(full, trash)
                return trash
            except FileNotFoundError:
                if not os.path.lexists(full):
                    raise PathNotFound(path) from None
                os.makedirs(self._tmp, exist_ok=True)  # a fresh root: make kura/tmp, then again
            except NotADirectoryError:
                raise PathNotFound(path) from None
        os.rename(full, trash)
        return trash

    async def move_many(self, pairs: Sequence[tuple[str, str]], *, durable: bool = True) -> Sequence[bool]:
        return await self.run(self._move_all, pairs, durable) if pairs else []

    def _move_all(self, pairs: Sequence[tuple[str, str]], durable: bool) -> Sequence[bool]:
        moved = []
        for source, target in pairs:
            try:
                self._move(self.full(source), self.full(target), source, durable)
                moved.append(True)
            except PathNotFound:
                moved.append(False)
            except OSError as exc:  # as in _delete_all: this one stays, the others move
                if exc.errno not in (*_STAYS, errno.EXDEV):
                    raise
                log.warning("cannot move %s: %s", source, exc.strerror)
                moved.append(False)
        return moved

    async def delete_many(self, paths: Sequence[str]) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._removers, self._delete_all, c) for c in _chunks(paths, REMOVERS))
        )

    def _delete_all(self, paths: Sequence[str]) -> None:
        # Garbage: no writer races these, so directories are removed in place (a third of the
        # syscalls of delete's move-aside).
        previous = ""
        for i, path in enumerate(paths):
            full = self.full(path)
            following = paths[i + 1] if i + 1 < len(paths) else ""
            try:
                if previous.startswith(f"{path}/"):
                    os.rmdir(full)  # the directory of the file just removed: most likely empty now
                elif following and path.startswith(f"{following}/") and _is_link(self.full(following)):
                    # A file, then its directory, which is a symlink (say to another disk): remove the
                    # link only, as registry:2's RemoveAll does, never what it points at
                    os.unlink(self.full(following))
                else:
                    os.unlink(full)
            except OSError as exc:
                try:
                    if isinstance(exc, IsADirectoryError):
                        _remove_directory(full)
                    elif exc.errno in _STAYS:
                        raise
                    elif exc.errno == errno.ENOTEMPTY:
                        _remove_tree(full)
                    elif exc.errno == errno.ENOTDIR:
                        os.unlink(full)
                    elif exc.errno != errno.ENOENT:
                        raise
                except OSError as stuck:
                    if stuck.errno not in _STAYS:
                        raise
                    # One item that cannot go (chattr +i, a read-only mount below the root) must not
                    # stop the sweep of the rest: it stays, and says so
                    log.warning("cannot remove %s: %s", path, stuck.strerror)
            previous = path

    def _delete(self, full: str, path: str) -> None:
        try:
            os.unlink(full)
            return
        except IsADirectoryError:
            pass
        except _MISSING:
            raise PathNotFound(path) from None
        shutil.rmtree(self._move_aside(full, path), ignore_errors=True)

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        # A thread walks and hands over batches: one hop per thousand files, not one per directory.
        # At most a few batches wait in the queue (the semaphore), so memory stays bounded.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[FileInfo] | None] = asyncio.Queue()
        room = threading.Semaphore(4)
        stopped = threading.Event()

        def hand_over(batch: list[FileInfo] | None) -> None:
            room.acquire()
            loop.call_soon_threadsafe(queue.put_nowait, batch)

        def produce() -> None:
            batch: list[FileInfo] = []
            try:
                for info in _walk(self.full(path), path):
                    if stopped.is_set():
                        return
                    batch.append(info)
                    if len(batch) >= WALK_BATCH:
                        hand_over(batch)
                        batch = []
                if batch and not stopped.is_set():
                    hand_over(batch)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        producer = loop.run_in_executor(self._pool, produce)
        try:
            while (batch := await queue.get()) is not None:
                room.release()
                for info in batch:
                    yield info
        finally:
            stopped.set()
            room.release()  # wake a producer waiting for room, so it sees ``stopped``
            await producer

    async def touch(self, path: str) -> None:
        try:
            os.utime(self.full(path))
        except _MISSING:
            raise PathNotFound(path) from None

    @contextlib.asynccontextmanager
    async def lock(
        self, path: str, *, shared: bool = False, wait: float = 0.0, create: bool = False
    ) -> AsyncIterator[None]:
        full = self.full(path)
        try:
            fd = os.open(full, os.O_RDONLY)
        except _MISSING:
            if not create:
                raise PathNotFound(path) from None
            _make_directory(os.path.dirname(full))
            fd = os.open(full, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            await _acquire(fd, path, shared=shared, wait=wait)
            _same_file(fd, full, path)
            yield
        finally:
            os.close(fd)  # releases the lock

    def lock_holders(self, path: str) -> Sequence[int] | None:
        """From Linux's ``/proc/locks``, whose lines name each lock's file by device and inode. In a
        container, processes of other PID namespaces are left out (the kernel shows them as 0)."""
        try:
            st = os.stat(self.full(path))
        except _MISSING:
            return []
        try:
            with open("/proc/locks", "rb") as f:
                table = f.read()
        except OSError:
            return None
        return _holders(table, st.st_dev, st.st_ino)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._flusher.shutdown(wait=False, cancel_futures=True)
        self._removers.shutdown(wait=False, cancel_futures=True)


def _chunks(paths: Sequence[str], most: int) -> list[Sequence[str]]:
    """``paths`` cut into at most ``most`` runs of REMOVAL_CHUNK paths or more, for removal in parallel;
    never between a file and its directory listed after it (delete_many's one-rmdir fast path)."""
    size = max(REMOVAL_CHUNK, -(-len(paths) // most))
    chunks: list[Sequence[str]] = []
    start = 0
    for i in range(1, len(paths)):
        if i - start >= size and not paths[i - 1].startswith(f"{paths[i]}/"):
            chunks.append(paths[start:i])
            start = i
    if start < len(paths):
        chunks.append(paths[start:])
    return chunks


class FileReader:
    """An open blob read in large chunks with one read ahead; served whole even if it is removed."""

    def __init__(self, fd: int, size: int, driver: FilesystemDriver) -> None:
        self._fd = fd
        self._size = size
        self._driver = driver

    @property
    def size(self) -> int:
        return self._size

    async def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        stop = self._size if end is None else end + 1
        offset = start
        pending: asyncio.Future[bytes] | None = None
        while offset < stop or pending is not None:
            if pending is None:
                pending = asyncio.ensure_future(
                    self._driver.run(os.pread, self._fd, min(READ_CHUNK, stop - offset), offset)
                )
            data = await pending
            pending = None
            if not data:
                return  # the file shrank under us; the response will be short and the client sees it
            offset += len(data)
            if offset < stop:
                pending = asyncio.ensure_future(
                    self._driver.run(os.pread, self._fd, min(READ_CHUNK, stop - offset), offset)
                )
            yield data

    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        os.close(self._fd)


class FileWriter:
    """An upload's data file, held open and exclusively locked (flock) for appends."""

    def __init__(self, fd: int, size: int, driver: FilesystemDriver, path: str) -> None:
        self._fd = fd
        self._size = size
        self._driver = driver
        self._path = path
        self._flushing: Future[None] | None = None

    @property
    def size(self) -> int:
        return self._size

    async def write(self, pieces: Sequence[bytes]) -> None:
        size = sum(map(len, pieces))
        if size <= INLINE_WRITE:
            _write_all(self._fd, pieces)
        else:
            await self._driver.run(_write_all, self._fd, pieces)
        self._size += size

    def start_flush(self) -> None:
        # fdatasync in the background, so the fsync at commit finds almost nothing left to write;
        # at most one at a time per writer. On a descriptor of its own, opened anew through /proc
        # rather than dup'd: a dup shares the open file and so our flock, and would keep the upload
        # locked against its own commit until the flush ends.
        if self._flushing is not None and not self._flushing.done():
            return
        fd = os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY)
        self._flushing = self._driver._flusher.submit(_flush_and_close, fd)

    async def commit(self, move_to: str | None = None) -> None:
        if move_to is None:
            await self._driver.run(os.fsync, self._fd)
        else:
            await self._driver.run(self._commit_to, move_to)
            self._path = move_to

    def _commit_to(self, target: str) -> None:
        os.fsync(self._fd)
        driver = self._driver
        driver._move(driver.full(self._path), driver.full(target), self._path, True)

    async def truncate(self, size: int) -> None:
        await self._driver.run(os.ftruncate, self._fd, size)
        self._size = size

    async def close(self) -> None:
        if self._fd >= 0:  # idempotent: closing a number twice could close someone else's file
            fd, self._fd = self._fd, -1
            os.close(fd)


def _call(fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    return fn(*args, **kwargs)


# One aiofiles wrapper made once: making one per call (aiofiles.os.wrap(fn)) costs more than the hop.
_in_pool = aiofiles.os.wrap(_call)


def _open_content(full: str, path: str) -> tuple[int, int]:
    """An open descriptor of the regular file at ``full``, and its size. PathNotFound for anything
    else there (a directory, a FIFO, a device, hand-made in the tree, hold no content) or nothing."""
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO's open would wait for a writer
    except (*_MISSING, IsADirectoryError):
        raise PathNotFound(path) from None
    st = os.fstat(fd)
    if not S_ISREG(st.st_mode):  # opening a directory read-only succeeds: only its reads fail
        os.close(fd)
        raise PathNotFound(path)
    return fd, st.st_size


def _read_all(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        data = os.read(fd, min(remaining, READ_CHUNK))
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)


def _write_all(fd: int, pieces: Sequence[bytes]) -> None:
    """Append ``pieces`` in order with ``writev`` calls (short writes, rare on files, are finished by hand)."""
    for start in range(0, len(pieces), MAX_PIECES):
        group = pieces[start : start + MAX_PIECES]
        written = os.writev(fd, group)
        for piece in group:
            if written >= len(piece):
                written -= len(piece)
                continue
            view = memoryview(piece)[written:]
            written = 0
            while view:
                view = view[os.write(fd, view) :]


def _flush_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _replace(source: str, target: str) -> None:
    """``os.replace``, creating the target's directory (again, if a racing delete removed it)."""
    for _ in range(8):
        _make_directory(os.path.dirname(target))
        try:
            os.replace(source, target)
            return
        except FileNotFoundError:
            if not os.path.exists(source):
                raise
    os.replace(source, target)


def _make_directory(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` in one syscall when the parent is there (os.makedirs takes
    two or three): it runs before every rename into the tree."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass  # a file of that name makes the caller's next step fail, as makedirs would
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _is_link(path: str) -> bool:
    try:
        return S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove_directory(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY:
            _remove_tree(path)
        elif exc.errno != errno.ENOENT:
            raise


def _remove_small_directory(path: str) -> bool:
    """Remove ``path`` if it holds only a few small files (cheap enough for the event loop); False
    when it is larger, and left for rmtree in the pool."""
    try:
        with os.scandir(path) as entries:
            names: list[str] = []
            for entry in entries:
                if len(names) >= INLINE_REMOVE or entry.is_dir(follow_symlinks=False):
                    return False
                if entry.stat(follow_symlinks=False).st_size > INLINE_READ:
                    return False
                names.append(entry.name)
        for name in names:
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except _MISSING:
        pass
    except OSError:
        return False
    return True


def _remove_tree(path: str) -> None:
    """rmtree, with a fast path for what garbage mostly is: a directory of a file or two."""
    try:
        with os.scandir(path) as entries:
            names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        if any(is_dir for _, is_dir in names):
            shutil.rmtree(path, ignore_errors=True)
            return
        for name, _ in names:
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except _MISSING:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)  # changed meanwhile: the slow, thorough way


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_fd(fd: int, path: str, *, shared: bool) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise Busy(path) from None
        raise


async def _acquire(fd: int, path: str, *, shared: bool, wait: float) -> None:
    """``flock`` within ``wait`` seconds, else ``Busy``."""
    deadline = time.monotonic() + wait
    delay = 0.002
    while True:
        try:
            _lock_fd(fd, path, shared=shared)
            return
        except Busy:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(delay)  # flock would block a thread; poll instead
            delay = min(delay * 2, 0.05)


def _holders(table: bytes, device: int, inode: int) -> list[int]:
    """The PIDs of ``/proc/locks`` lines that hold a lock on the file: ``1: FLOCK  ADVISORY  READ  1234
    fd:01:5678 0 EOF`` (the device in hex); a waiter's line has ``->`` after its number."""
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}".encode()
    pids: set[int] = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] != b"->" and fields[5] == wanted and fields[4].isdigit():
            pids.add(int(fields[4]))
    pids.discard(0)
    return sorted(pids)


def _same_file(fd: int, full: str, path: str) -> os.stat_result:
    """After a lock is had: the path must still name the locked file (it may have been moved).
    The held file's stat, for its size."""
    try:
        named = os.stat(full)
    except _MISSING:
        raise PathNotFound(path) from None
    held = os.fstat(fd)
    if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
        raise PathNotFound(path)
    return held


def _stat(full: str, path: str) -> FileInfo | None:
    try:
        st = os.stat(full)
    except _MISSING:
        return None
    is_dir = (st.st_mode & 0o170000) == 0o040000
    # The inode and ctime: a link replaced by rename gets a new inode, one rewritten in place (registry:2
    # truncates and writes) a new ctime, and nobody can set a ctime back (as utime can an mtime).
    return FileInfo(path, st.st_size, st.st_mtime_ns, is_dir, (st.st_ino, st.st_ctime_ns))


def _walk(full: str, path: str) -> Iterator[FileInfo]:
    try:
        entries = list(os.scandir(full))
    except _MISSING:
        return
    for entry in entries:
        child = f"{path}/{entry.name}" if path else entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, child)
            else:
                st = entry.stat(follow_symlinks=False)
                yield FileInfo(child, st.st_size, st.st_mtime_ns, False)
        except FileNotFoundError:
            continue  # removed while we walked
