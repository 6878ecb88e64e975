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


async def read(driver: StorageDriver, name: str) -> Inventory:
    found = Inventory(name)
    await _manifests(driver, found)
    await _layers(driver, found)
    found.uploads = await uploads(driver, name)
    await _pulls(driver, found)
    return found


def _relative(path: str, base: str) -> list[str]:
    return path[len(base) + 1 :].split("/")


async def _manifests(driver: StorageDriver, found: Inventory) -> None:
    base = paths.manifests(found.name)
    current: list[tuple[str, int]] = []
    history: list[tuple[str, Digest]] = []
    async for info in driver.walk(base):
        parts = _relative(info.path, base)
        mtime = info.mtime_ns or 0
        if len(parts) == 4 and parts[0] == "revisions" and parts[3] == "link":
            digest = _digest(parts[1], parts[2])
            if digest is not None:
                found.revisions[digest] = mtime
        elif len(parts) == 4 and parts[0] == "tags" and parts[2:] == ["current", "link"]:
            current.append((parts[1], mtime))
        elif len(parts) == 6 and parts[0] == "tags" and parts[2] == "index" and parts[5] == "link":
            digest = _digest(parts[3], parts[4])
            if digest is not None:
                history.append((parts[1], digest))
    for tag, mtime in current:
        found.tags[tag] = Tag(await links.read(driver, paths.tag_current_link(found.name, tag)), mtime)
    for tag, digest in history:
        if tag in found.tags:
            found.tags[tag].history.append(digest)
        else:
            found.tags[tag] = Tag(None, 0, [digest])  # history without a current link: not a tag


async def _layers(driver: StorageDriver, found: Inventory) -> None:
    base = paths.layers(found.name)
    async for info in driver.walk(base):
        parts = _relative(info.path, base)
        if len(parts) == 3 and parts[2] == "link":
            digest = _digest(parts[0], parts[1])
            if digest is not None:
                found.layers[digest] = info.mtime_ns or 0


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
    base = paths.join(paths.KURA, "pulls", found.name)
    async for info in driver.walk(base):
        parts = _relative(info.path, base)
        if len(parts) == 2:  # deeper entries belong to a nested repository
            digest = _digest(parts[0], parts[1])
            if digest is not None:
                found.pulls[digest] = info.mtime_ns or 0
