"""The only module that touches the filesystem directly. Everything here is synchronous; the
``Registry`` façade runs it in the executor.

Consistency model: a file at its final name is always complete, because every write goes to a
temporary file in the same directory, is fsync'd, then renamed over the target, and the directory is
fsync'd so that the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid

from storage.digest import Digest
from storage.errors import StorageError


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: str) -> str:
    # registry:2 ≥ 3.1 uses the same "<path>.<uuid>.tmp" shape, so either server may find the other's leftovers.
    return f"{path}.{uuid.uuid4().hex}.tmp"


def write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def move_into_place(source: str, target: str) -> bool:
    """Rename a complete, fsync'd file to ``target`` unless ``target`` exists. True when moved."""
    if os.path.exists(target):
        return False
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    os.replace(source, target)
    fsync_dir(directory)
    return True


def write_link(path: str, digest: Digest) -> None:
    write_atomic(path, str(digest).encode("ascii"))


def read_link(path: str) -> Digest | None:
    """The digest in a link file, None when there is no link. A corrupt link reads as no link."""
    try:
        with open(path, "rb") as f:
            raw = f.read(256)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return Digest.parse(raw.decode("ascii").strip())
    except (UnicodeDecodeError, StorageError):
        return None


def exists(path: str) -> bool:
    return os.path.exists(path)


def remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_tree(path: str) -> bool:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    return True


def list_dirs(path: str) -> list[str]:
    """Names of the sub-directories of ``path`` (empty when it does not exist)."""
    try:
        with os.scandir(path) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
