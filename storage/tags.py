"""Tags: ``_manifests/tags/<tag>/{current/link, index/<alg>/<hex>/link}``."""

from __future__ import annotations

import os

from storage import fs
from storage.digest import Digest
from storage.errors import ManifestUnknown, NameUnknown
from storage.paths import Paths


def resolve(paths: Paths, name: str, tag: str) -> Digest | None:
    return fs.read_link(paths.tag_current_link(name, tag))


def point(paths: Paths, name: str, tag: str, digest: Digest) -> None:
    # Write order as registry:2's tagstore: the history entry first, then the current link. A crash
    # in between leaves the tag where it was, with a harmless extra history entry.
    index = paths.tag_index_link(name, tag, digest)
    if fs.read_link(index) != digest:
        fs.write_link(index, digest)
    current = paths.tag_current_link(name, tag)
    if fs.read_link(current) != digest:
        fs.write_link(current, digest)


def remove(paths: Paths, name: str, tag: str) -> None:
    if not fs.remove_tree(paths.tag(name, tag)):
        raise ManifestUnknown("manifest unknown", {"tag": tag})


def names(paths: Paths, name: str) -> list[str]:
    """Sorted tag names; NameUnknown when the repository has never had a manifest."""
    directory = paths.tags(name)
    try:
        with os.scandir(directory) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        if os.path.isdir(paths.manifests(name)):
            return []
        raise NameUnknown("repository name not known to registry", {"name": name}) from None


def pointing_at(paths: Paths, name: str, digest: Digest) -> list[str]:
    return [tag for tag in fs.list_dirs(paths.tags(name)) if resolve(paths, name, tag) == digest]
