"""The repository walk behind ``/v2/_catalog``.

A repository is a directory under ``repositories/`` that has a ``_layers`` child (registry:2 2.8's rule,
so a repository that only received mounts is listed) or a ``_manifests`` child (v3's rule); components
that start with ``_`` are never descended into. A depth-first walk with sorted children yields names in
registry:2's component-wise order ("a" < "a/b" < "a-c").
"""

from __future__ import annotations

import os
from collections.abc import Iterator


def _key(name: str) -> list[str]:
    return name.split("/")


def walk(repositories: str, after: str | None = None) -> Iterator[str]:
    """Repository names in component-wise order, starting strictly after ``after``."""
    after_key = _key(after) if after else None
    yield from _walk(repositories, "", after_key)


def _walk(directory: str, prefix: str, after: list[str] | None) -> Iterator[str]:
    try:
        with os.scandir(directory) as it:
            children = sorted(e.name for e in it if not e.name.startswith("_") and e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return
    for child in children:
        name = f"{prefix}{child}"
        key = _key(name)
        if after is not None and key < after and after[: len(key)] != key:
            continue  # this whole subtree sorts before ``after``
        path = os.path.join(directory, child)
        if (after is None or key > after) and _is_repository(path):
            yield name
        yield from _walk(path, f"{name}/", after)


def _is_repository(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "_layers")) or os.path.isdir(os.path.join(path, "_manifests"))
