"""Blob uploads under ``_uploads/<id>/{data,startedat}``, as registry:2 keeps them.

All upload state is on disk, so any worker can serve any request of an upload. Each process keeps
the running hash of the uploads it appended to (``HasherCache``); when the hash it has does not cover
the whole file (another worker appended, or a restart) the file is hashed again at commit, exactly
what registry:2 does when no ``hashstates`` match.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass
from datetime import UTC, datetime

from storage import blobs, fs
from storage.digest import Digest, Hasher, new_hasher
from storage.errors import DigestInvalid, RangeInvalid, SizeInvalid, UploadUnknown
from storage.paths import Paths

_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
READ_SIZE = 1 << 20
MAX_PIECES = 512  # per writev: well under Linux's IOV_MAX (1024)
HASH_ALONE = 1 << 16  # smaller batches are hashed in the writing thread: a hand-off costs more


@dataclass(slots=True)
class RunningHash:
    algorithm: str
    offset: int
    hasher: Hasher


class HasherCache:
    """Running hashes by upload id, bounded so abandoned uploads cannot grow it without limit."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, RunningHash] = OrderedDict()

    def pop(self, upload_id: str) -> RunningHash | None:
        return self._items.pop(upload_id, None)

    def put(self, upload_id: str, item: RunningHash) -> None:
        if item.offset < 0:
            return
        self._items[upload_id] = item
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


def resume(item: RunningHash | None, algorithm: str, offset: int) -> RunningHash:
    """The running hash to continue at ``offset``: ``item`` when it is there, else a fresh one."""
    if item is not None and item.offset == offset and item.algorithm == algorithm:
        return item
    if offset == 0:
        return RunningHash(algorithm, 0, new_hasher(algorithm))
    # Unknown state: keep no hash; commit hashes the file again.
    return RunningHash(algorithm, -1, new_hasher(algorithm))


def size_invalid(declared: int, received: int) -> SizeInvalid:
    return SizeInvalid("body length does not match the declared length", {"declared": declared, "received": received})


def validate_id(upload_id: str) -> str:
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise UploadUnknown("blob upload unknown to registry", {"uuid": upload_id[:200]})
    return upload_id


def start(paths: Paths, name: str) -> str:
    upload_id = str(uuid.uuid4())
    directory = paths.upload(name, upload_id)
    os.makedirs(directory)
    # registry:2 format: RFC 3339 in UTC, second precision; read back by upload purging. Not fsync'd:
    # an upload is disposable state, and one torn by a crash is simply started again by its client.
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(paths.upload_started_at(name, upload_id), "xb") as f:
        f.write(started.encode("ascii"))
    with open(paths.upload_data(name, upload_id), "xb"):
        pass
    return upload_id


def size(paths: Paths, name: str, upload_id: str) -> int:
    try:
        return os.stat(paths.upload_data(name, upload_id)).st_size
    except (FileNotFoundError, NotADirectoryError):
        raise UploadUnknown("blob upload unknown to registry", {"uuid": upload_id}) from None


def open_for_append(paths: Paths, name: str, upload_id: str, start: int | None) -> tuple[int, int]:
    """Open the upload's data for appending: (fd, current size). ``start`` must equal the size."""
    path = paths.upload_data(name, upload_id)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except (FileNotFoundError, NotADirectoryError):
        raise UploadUnknown("blob upload unknown to registry", {"uuid": upload_id}) from None
    current = os.fstat(fd).st_size
    if start is not None and start != current:
        os.close(fd)
        raise RangeInvalid("chunk does not start at the end of the upload", current)
    return fd, current


def write_all(fd: int, pieces: Sequence[bytes]) -> None:
    """Append ``pieces`` in order with one ``writev`` (a short write, rare on files, is finished by hand)."""
    written = os.writev(fd, pieces)
    for piece in pieces:
        if written >= len(piece):
            written -= len(piece)
            continue
        view = memoryview(piece)[written:]
        written = 0
        while view:
            view = view[os.write(fd, view) :]


def hash_more(running: RunningHash, pieces: Sequence[bytes]) -> None:
    """Extend the running hash; a no-op once it is known not to cover the file."""
    if running.offset >= 0:
        for piece in pieces:
            running.hasher.update(piece)
            running.offset += len(piece)


def append_whole(
    paths: Paths,
    name: str,
    upload_id: str,
    start: int | None,
    length: int | None,
    cached: RunningHash | None,
    algorithm: str,
    pieces: Sequence[bytes],
) -> tuple[int, RunningHash]:
    """Append a whole (small) body in one go: (the upload's new size, its running hash)."""
    received = sum(map(len, pieces))
    fd, before = open_for_append(paths, name, upload_id, start)
    try:
        if length is not None and received != length:
            raise size_invalid(length, received)
        running = resume(cached, algorithm, before)
        write_all(fd, pieces)
        hash_more(running, pieces)
    finally:
        os.close(fd)
    return before + received, running


def append(fd: int, running: RunningHash, pieces: Sequence[bytes], hashing: Executor) -> None:
    """Write and hash ``pieces`` at once, hashing on ``hashing``: both release the GIL, so two cores work."""
    if sum(map(len, pieces)) < HASH_ALONE:
        write_all(fd, pieces)
        hash_more(running, pieces)
        return
    hashed = hashing.submit(hash_more, running, pieces)
    try:
        write_all(fd, pieces)
    finally:
        wait([hashed])  # the pieces and the hash state are the caller's again only after both are done
    hashed.result()


def flush_and_close(fd: int) -> None:
    """Write an upload's dirty pages to disk now, on a duplicate descriptor that this closes.

    Run in the background while the rest of the body streams in: the fsync at commit (which is what
    makes the blob durable) then finds almost nothing left to write.
    """
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def truncate(fd: int, length: int) -> None:
    os.ftruncate(fd, length)


def close(fd: int) -> None:
    os.close(fd)


def hash_file(path: str, algorithm: str) -> str:
    hasher = new_hasher(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(READ_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()


def commit(paths: Paths, name: str, upload_id: str, digest: Digest, running: RunningHash | None) -> blobs.BlobInfo:
    """Verify the upload against ``digest`` and make it a blob of ``name``.

    Order (registry:2's ``blobWriter.Commit``): verify, fsync, rename into ``blobs/`` unless the blob
    is already stored (then the upload is simply dropped), link into the repository, remove the upload.
    A crash between any two steps leaves either an orphan upload or an unlinked blob, never a torn file.
    """
    data = paths.upload_data(name, upload_id)
    length = size(paths, name, upload_id)
    if running is not None and running.offset == length and running.algorithm == digest.algorithm:
        actual = running.hasher.hexdigest()
    else:
        actual = hash_file(data, digest.algorithm)
    if actual != digest.hex:
        cancel(paths, name, upload_id)
        raise DigestInvalid(
            "provided digest did not match uploaded content",
            {"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
        )
    target = paths.blob_data(digest)
    if not fs.exists(target):
        fd = os.open(data, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fs.move_into_place(data, target)
    blobs.link(paths, name, digest)
    _remove_committed(paths, name, upload_id)
    return blobs.BlobInfo(digest, length, target)


def _remove_committed(paths: Paths, name: str, upload_id: str) -> None:
    """Drop what is left of a committed upload: normally just ``startedat`` (and ``data`` when deduplicated)."""
    for path in (paths.upload_started_at(name, upload_id), paths.upload_data(name, upload_id)):
        fs.remove(path)
    try:
        os.rmdir(paths.upload(name, upload_id))
    except OSError:  # something else in it (another server's hashstates): the slow, thorough way
        shutil.rmtree(paths.upload(name, upload_id), ignore_errors=True)


def cancel(paths: Paths, name: str, upload_id: str) -> None:
    if not fs.remove_tree(paths.upload(name, upload_id)):
        raise UploadUnknown("blob upload unknown to registry", {"uuid": upload_id})
