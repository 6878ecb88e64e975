"""Random keys Kura keeps for itself under ``<root>/kura/secrets/`` (the web UI's session key).

Made once, by whichever worker asks first, under a lock so that every worker process reads the
same key: a cookie one worker signed is valid at all of them.
"""

from __future__ import annotations

import os

from storage import paths
from storage.driver import PathNotFound, StorageDriver
from storage.registry import Registry

SIZE = 32


def _path(name: str) -> str:
    return paths.join(paths.KURA, "secrets", name)


async def _stored(driver: StorageDriver, path: str) -> bytes | None:
    """The secret at ``path`` when a whole one is there."""
    try:
        found = await driver.get_content(path, SIZE)
    except PathNotFound:
        return None
    return found if len(found) == SIZE else None


async def secret(registry: Registry, name: str) -> bytes:
    driver = registry.driver
    path = _path(name)
    if (found := await _stored(driver, path)) is not None:
        return found
    async with driver.lock(f"{path}.lock", wait=10.0, create=True):
        if (found := await _stored(driver, path)) is not None:
            return found  # another worker made it while we waited
        key = os.urandom(SIZE)
        await driver.put_content(path, key)
        return key
