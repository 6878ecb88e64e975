"""The repository walk behind ``/v2/_catalog``.

A repository is a directory under ``repositories/`` that has a ``_layers`` child (registry:2 2.8's rule,
so a repository that only received mounts is listed) or a ``_manifests`` child (v3's rule); components
that start with ``_`` are never descended into. A depth-first walk with sorted children yields names in
registry:2's component-wise order ("a" < "a/b" < "a-c").
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from storage import paths
from storage.driver import PathNotFound, StorageDriver

_MARKERS = ("_layers", "_manifests")


def _key(name: str) -> list[str]:
    return name.split("/")


async def walk(driver: StorageDriver, after: str | None = None) -> AsyncGenerator[str, None]:
    """Repository names in component-wise order, starting strictly after ``after``."""
    after_key = _key(after) if after else None
    async for name in _walk(driver, paths.REPOSITORIES, await _children(driver, paths.REPOSITORIES), "", after_key):
        yield name


async def _children(driver: StorageDriver, directory: str) -> list[str] | None:
    try:
        return await driver.list(directory)
    except PathNotFound:
        return None  # a file, or removed meanwhile


async def _walk(
    driver: StorageDriver, directory: str, children: list[str] | None, prefix: str, after: list[str] | None
) -> AsyncIterator[str]:
    for child in sorted(c for c in children or () if not c.startswith("_")):
        name = f"{prefix}{child}"
        key = _key(name)
        if after is not None and key < after and after[: len(key)] != key:
            continue  # this whole subtree sorts before ``after``
        path = paths.join(directory, child)
        grandchildren = await _children(driver, path)
        if grandchildren is None:
            continue
        if (after is None or key > after) and any(m in grandchildren for m in _MARKERS):
            yield name
        async for found in _walk(driver, path, grandchildren, f"{name}/", after):
            yield found
