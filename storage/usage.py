"""How the stored bytes are shared: blob sizes, which repositories link each blob, and what
deduplication saves. One walk of ``blobs/`` and one of ``repositories/``: for the storage page and the
per-layer share counts, never for a page of repositories.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from storage import paths
from storage.digest import Digest
from storage.errors import StorageError
from storage.registry import Registry

_MARKERS = ("/_layers/", "/_manifests/revisions/")


@dataclass(slots=True)
class Usage:
    blobs: dict[Digest, int] = field(default_factory=dict)  # every stored blob, with its size
    linked: dict[str, set[Digest]] = field(default_factory=dict)  # repository -> the blobs it links
    _sharing: Counter[Digest] | None = None
    _sizes: dict[str, int] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        """Bytes on disk (each blob once)."""
        return sum(self.blobs.values())

    def size_of(self, name: str) -> int:
        found = self._sizes.get(name)
        if found is None:
            found = self._sizes[name] = sum(self.blobs.get(d, 0) for d in self.linked.get(name, ()))
        return found

    @property
    def logical(self) -> int:
        """What storing every repository on its own would take."""
        return sum(self.size_of(name) for name in self.linked)

    @property
    def unreferenced(self) -> int:
        """Bytes of blobs no repository links (garbage collection's to take)."""
        used = set().union(*self.linked.values()) if self.linked else set()
        return sum(size for d, size in self.blobs.items() if d not in used)

    def sharing(self, digest: Digest | str) -> int:
        """How many repositories link the blob."""
        if self._sharing is None:
            self._sharing = Counter(d for found in self.linked.values() for d in found)
        try:
            key = digest if isinstance(digest, Digest) else Digest.parse(digest)
        except StorageError:
            return 0
        return self._sharing[key]


def _link_digest(path: str) -> tuple[str, Digest] | None:
    """(repository, digest) of a layer or revision link path, None for any other file."""
    if not path.endswith("/link"):
        return None
    for marker in _MARKERS:
        name, found, rest = path.partition(marker)
        if found:
            parts = rest.split("/")
            if len(parts) != 3:
                return None
            digest = Digest.named(parts[0], parts[1])
            return None if digest is None else (name.removeprefix(paths.REPOSITORIES + "/"), digest)
    return None


async def measure(registry: Registry) -> Usage:
    usage = Usage()
    async for info in registry.driver.walk(paths.BLOBS):
        parts = info.path.split("/")
        if parts[-1] != "data" or len(parts) < 4:
            continue
        digest = Digest.named(parts[-4], parts[-2])
        if digest is not None:
            usage.blobs[digest] = info.size
    async for info in registry.driver.walk(paths.REPOSITORIES):
        found = _link_digest(info.path)
        if found is not None:
            usage.linked.setdefault(found[0], set()).add(found[1])
    return usage
