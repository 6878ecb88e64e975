"""registry:2's link files: exactly ``<alg>:<hex>``, no newline, written atomically through the driver."""

from __future__ import annotations

from storage import paths
from storage.digest import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.errors import StorageError

LINK_LIMIT = 256  # a link is ~71 bytes; anything longer is not one of ours


async def read(driver: StorageDriver, path: str) -> Digest | None:
    """The digest in a link file, None when there is none. A corrupt link reads as no link."""
    try:
        raw = await driver.get_content(path, LINK_LIMIT)
    except PathNotFound:
        return None
    try:
        return Digest.parse(raw.decode("ascii").strip())
    except (UnicodeDecodeError, StorageError):
        return None


async def write(driver: StorageDriver, path: str, digest: Digest) -> None:
    await driver.put_content(path, str(digest).encode("ascii"))


async def ensure(driver: StorageDriver, path: str, digest: Digest) -> None:
    """Write the link unless it already says ``digest`` (a rewrite would cost two fsyncs)."""
    if await read(driver, path) != digest:
        await write(driver, path, digest)


async def digests_under(driver: StorageDriver, directory: str) -> list[Digest]:
    """The ``<alg>/<hex>`` entries below a ``_layers`` or ``revisions`` directory (links not checked)."""
    found: list[Digest] = []
    try:
        algorithms = await driver.list(directory)
    except PathNotFound:
        return found
    for algorithm in algorithms:
        try:
            hexes = await driver.list(paths.join(directory, algorithm))
        except PathNotFound:
            continue
        for encoded in hexes:
            try:
                found.append(Digest.parse(f"{algorithm}:{encoded}"))
            except StorageError:
                continue  # not one of ours
    return found
