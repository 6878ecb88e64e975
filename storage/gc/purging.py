"""Upload purging, as registry:2's ``storage.maintenance.uploadpurging`` does it: uploads whose
``startedat`` is older than ``age`` are removed (every ``interval``, by the server's leader).
An upload without a readable ``startedat`` counts from its newest file."""

from __future__ import annotations

import logging
import time

from storage import paths
from storage.driver import PathNotFound, StorageDriver
from storage.gc import inventory, state
from storage.gc.config import UploadPurging
from storage.gc.inventory import Upload

log = logging.getLogger("kura.gc")


def stale(uploads: list[Upload], age: float, now_ns: int) -> list[Upload]:
    def started(upload: Upload) -> int:
        return upload.started_ns if upload.started_ns is not None else upload.newest_ns

    return [u for u in uploads if now_ns - started(u) > age * 1e9]


async def purge(driver: StorageDriver, name: str, uploads: list[Upload], dry: bool) -> None:
    for upload in uploads:
        if dry:
            log.info("upload purging: %s: would remove upload %s", name, upload.upload_id)
            continue
        try:
            await driver.delete(paths.upload(name, upload.upload_id))
        except PathNotFound:
            pass


async def purge_all(driver: StorageDriver, settings: UploadPurging) -> int:
    """Purge every repository's stale uploads under the leader lock; record when in the state file."""
    now = time.time_ns()
    count = 0
    async with state.leader(driver):
        async for name in inventory.repositories(driver):
            found = stale(await inventory.uploads(driver, name), settings.age, now)
            await purge(driver, name, found, settings.dryrun)
            count += len(found)
        if not settings.dryrun:
            saved = await state.load(driver)
            saved.uploads_purged_ns = now
            await state.save(driver, saved)
    if count:
        log.info("upload purging: %s %d stale uploads", "found" if settings.dryrun else "removed", count)
    return count
