"""What one repository holds, read in one pass: its revisions, tags, layer links, uploads and pull times.

Every link's mtime comes with it: a revision link's is the manifest's push time (refreshed on each
push), a tag's current link's the tag's, a layer link's the last upload or mount. The walk is per
repository, so memory holds one repository's links at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from storage import links, paths
from storage.digest import Digest
from storage.driver import FileInfo, PathNotFound, StorageDriver

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


async def read(driver: StorageDriver, name: str, pulls: bool = True, times: bool = True) -> Inventory:
    """Read by listing the layout's directories and stat'ing the link files they must hold (a third of
    the syscalls of a generic walk); ``pulls=False`` skips the pull markers (there are none).

    ``times=False``, for a run to which every link is older than its cutoff (offline, no retention
    policy): layer links come from the listings alone, with mtime 0, and tags are read unstat'ed,
    which saves most of the stats. A layer directory left without its link by a torn write then
    counts as a link, which keeps nothing and is swept as one. Revisions are still stat'ed: a
    revision directory without its link is no revision (as registry:2 sees it), and must not keep
    its manifest.
    """
    found = Inventory(name)
    children = await _list(driver, paths.repository(name))
    if "_layers" in children:
        found.layers = await _links(driver, paths.layers(name), times)
    if "_manifests" in children:
        kinds = await _list(driver, paths.manifests(name))
        if "revisions" in kinds:
            found.revisions = await _links(driver, paths.manifest_revisions(name), True)
        if "tags" in kinds:
            found.tags = await _tags(driver, name, times)
    if "_uploads" in children:
        found.uploads = await uploads(driver, name)
    if pulls:
        await _pulls(driver, found)
    return found


async def _list(driver: StorageDriver, directory: str) -> list[str]:
    try:
        return await driver.list(directory)
    except PathNotFound:
        return []


async def _links(driver: StorageDriver, directory: str, times: bool) -> dict[Digest, int]:
    """``<directory>/<alg>/<hex>/link`` files: digest -> the link's mtime (directories without one skipped,
    unless not ``times``)."""
    found: dict[Digest, int] = {}
    for algorithm in await _list(driver, directory):
        listed = await _list(driver, paths.join(directory, algorithm))
        digests = [d for e in listed if (d := Digest.named(algorithm, e))]
        if not times:
            found.update(dict.fromkeys(digests, 0))
            continue
        infos = await driver.stat_many([paths.join(directory, d.algorithm, d.hex, "link") for d in digests])
        for digest, info in zip(digests, infos, strict=True):
            if info is not None and not info.is_dir:
                found[digest] = info.mtime_ns or 0
    return found


async def _tags(driver: StorageDriver, name: str, times: bool) -> dict[str, Tag]:
    names = sorted(await _list(driver, paths.tags(name)))
    currents: Sequence[FileInfo | None] = [None] * len(names)
    if times:
        currents = await driver.stat_many([paths.tag_current_link(name, t) for t in names])
    found: dict[str, Tag] = {}
    for tag, current in zip(names, currents, strict=True):
        digest = None
        if current is not None or not times:
            digest = await links.read(driver, paths.tag_current_link(name, tag))
        history: list[Digest] = []
        index = paths.join(paths.tag_dir(name, tag), "index")
        for algorithm in await _list(driver, index):
            listed = await _list(driver, paths.join(index, algorithm))
            history += [d for e in listed if (d := Digest.named(algorithm, e))]
        pushed = current.mtime_ns or 0 if current is not None else 0
        found[tag] = Tag(digest, pushed, history)  # digest None: a directory that is no tag (a torn push)
    return found


async def blobs(driver: StorageDriver, known: Container[Digest]) -> AsyncIterator[tuple[Digest, FileInfo | None]]:
    """Every stored blob (``blobs/<alg>/<xx>/<hex>/data``) with its data's stat, except the ``known``
    ones, which come with None unstat'ed (a directory of theirs without data then counts as a blob)."""
    for algorithm in sorted(await _list(driver, paths.BLOBS)):
        top = paths.join(paths.BLOBS, algorithm)
        for fan in sorted(await _list(driver, top)):
            unknown: list[Digest] = []
            for entry in await _list(driver, paths.join(top, fan)):
                if (digest := Digest.named(algorithm, entry)) is None:
                    continue
                if digest in known:
                    yield digest, None
                else:
                    unknown.append(digest)
            infos = await driver.stat_many([paths.blob_data(d) for d in unknown])
            for digest, info in zip(unknown, infos, strict=True):
                if info is not None and not info.is_dir:
                    yield digest, info


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
            digest = Digest.named(parts[0], parts[1])
            if digest is not None:
                found.pulls[digest] = info.mtime_ns or 0
