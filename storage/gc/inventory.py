"""What one repository holds, read in one pass: its revisions, tags, layer links, uploads and pull times.

Every link's mtime comes with it: a revision link's is the manifest's push time (refreshed on each
push), a tag's current link's the tag's, a layer link's the last upload or mount. The walk is per
repository, so memory holds one repository's links at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from storage import links, paths
from storage.digest import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.errors import StorageError

_MARKERS = ("_layers", "_manifests", "_uploads")
PULLS = paths.join(paths.KURA, "pulls")


@dataclass(slots=True)
class Tag:
    digest: Digest | None  # None: a directory without a resolvable current link (a torn first push)
    pushed_ns: int
    history: list[Digest] = field(default_factory=list)  # its index/ entries


@dataclass(slots=True)
class Upload:
    upload_id: str
    started_ns: int | None  # from ``startedat``; None when unreadable
    newest_ns: int  # the newest mtime of its files


@dataclass(slots=True)
class Inventory:
    name: str
    revisions: dict[Digest, int] = field(default_factory=dict)  # digest -> revision link mtime
    tags: dict[str, Tag] = field(default_factory=dict)
    layers: dict[Digest, int] = field(default_factory=dict)  # digest -> layer link mtime
    uploads: list[Upload] = field(default_factory=list)
    pulls: dict[Digest, int] = field(default_factory=dict)  # manifest digest -> last pull (marker mtime)

    def tagged(self) -> dict[Digest, list[str]]:
        found: dict[Digest, list[str]] = {}
        for tag, info in self.tags.items():
            if info.digest is not None:
                found.setdefault(info.digest, []).append(tag)
        return found


def _digest(algorithm: str, encoded: str) -> Digest | None:
    try:
        return Digest.parse(f"{algorithm}:{encoded}")
    except StorageError:
        return None


async def repositories(driver: StorageDriver) -> AsyncIterator[str]:
    """Every repository (a directory with a ``_layers``, ``_manifests`` or ``_uploads`` child), sorted."""
    stack = [""]
    while stack:
        prefix = stack.pop()
        try:
            children = await driver.list(paths.join(paths.REPOSITORIES, prefix) if prefix else paths.REPOSITORIES)
        except PathNotFound:
            continue
        if prefix and any(c in _MARKERS for c in children):
            yield prefix
        # Reversed, so that popping the stack visits them in order.
        for child in sorted((c for c in children if not c.startswith("_")), reverse=True):
            stack.append(f"{prefix}/{child}" if prefix else child)


async def read(driver: StorageDriver, name: str, pulls: bool = True) -> Inventory:
    """One walk of the repository's directory; ``pulls=False`` skips the pull markers (there are none)."""
    found = Inventory(name)
    base = paths.repository(name)
    current: list[tuple[str, int]] = []
    history: list[tuple[str, Digest]] = []
    newest: dict[str, int] = {}
    started: set[str] = set()
    async for info in driver.walk(base):
        parts = _relative(info.path, base)
        mtime = info.mtime_ns or 0
        kind = parts[0]
        if kind == "_manifests":
            if len(parts) == 5 and parts[1] == "revisions" and parts[4] == "link":
                digest = _digest(parts[2], parts[3])
                if digest is not None:
                    found.revisions[digest] = mtime
            elif len(parts) == 5 and parts[1] == "tags" and parts[3:] == ["current", "link"]:
                current.append((parts[2], mtime))
            elif len(parts) == 7 and parts[1] == "tags" and parts[3] == "index" and parts[6] == "link":
                digest = _digest(parts[4], parts[5])
                if digest is not None:
                    history.append((parts[2], digest))
        elif kind == "_layers":
            if len(parts) == 4 and parts[3] == "link":
                digest = _digest(parts[1], parts[2])
                if digest is not None:
                    found.layers[digest] = mtime
        elif kind == "_uploads" and len(parts) >= 3:
            newest[parts[1]] = max(newest.get(parts[1], 0), mtime)
            if parts[2:] == ["startedat"]:
                started.add(parts[1])
        # Anything else belongs to a nested repository, read on its own.
    for tag, mtime in current:
        found.tags[tag] = Tag(await links.read(driver, paths.tag_current_link(name, tag)), mtime)
    for tag, digest in history:
        if tag in found.tags:
            found.tags[tag].history.append(digest)
        else:
            found.tags[tag] = Tag(None, 0, [digest])  # history without a current link: not a tag
    found.uploads = await _uploads_of(driver, name, newest, started)
    if pulls:
        await _pulls(driver, found)
    return found


def _relative(path: str, base: str) -> list[str]:
    return path[len(base) + 1 :].split("/")


async def uploads(driver: StorageDriver, name: str) -> list[Upload]:
    """The repository's uploads, with their start times."""
    base = paths.uploads(name)
    newest: dict[str, int] = {}
    started: set[str] = set()
    async for info in driver.walk(base):
        parts = _relative(info.path, base)
        newest[parts[0]] = max(newest.get(parts[0], 0), info.mtime_ns or 0)
        if parts[1:] == ["startedat"]:
            started.add(parts[0])
    return await _uploads_of(driver, name, newest, started)


async def _uploads_of(driver: StorageDriver, name: str, newest: dict[str, int], started: set[str]) -> list[Upload]:
    found: list[Upload] = []
    for upload_id, mtime in sorted(newest.items()):
        started_ns = None
        if upload_id in started:
            started_ns = await _started_at(driver, paths.upload_started_at(name, upload_id))
        found.append(Upload(upload_id, started_ns, mtime))
    return found


async def _started_at(driver: StorageDriver, path: str) -> int | None:
    try:
        text = (await driver.get_content(path, 64)).decode("ascii").strip()
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)
    except (PathNotFound, UnicodeDecodeError, ValueError):
        return None


async def _pulls(driver: StorageDriver, found: Inventory) -> None:
    base = paths.join(PULLS, found.name)
    async for info in driver.walk(base):
        parts = _relative(info.path, base)
        if len(parts) == 2:  # deeper entries belong to a nested repository
            digest = _digest(parts[0], parts[1])
            if digest is not None:
                found.pulls[digest] = info.mtime_ns or 0
