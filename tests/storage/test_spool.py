from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import StorageDriver
from storage import spool as spool_module
from storage.drivers import FilesystemDriver
from storage.spool import LOCK_NAME, Spool

REPO = Path(__file__).resolve().parents[2]

# Child processes run the spool on their own filesystem driver, over the test's root.
APPEND_ONE = """
import asyncio, sys
from storage.drivers import FilesystemDriver
from storage.spool import Spool
asyncio.run(Spool(FilesystemDriver(sys.argv[1]), "s").append(b"child"))
"""
APPEND_FOREVER = """
import asyncio, sys
from storage.drivers import FilesystemDriver
from storage.spool import Spool

async def main() -> None:
    spool = Spool(FilesystemDriver(sys.argv[1]), "s")
    print("ready", flush=True)
    i = 0
    while True:
        await spool.append((str(i) + ":" + "x" * 5000).encode())
        i += 1

asyncio.run(main())
"""
LEAD_FOREVER = """
import asyncio, sys
from storage.drivers import FilesystemDriver
from storage.spool import Spool

async def main() -> None:
    async with Spool(FilesystemDriver(sys.argv[1]), "s").leading() as leads:
        assert leads
        print("leading", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.fixture
async def filesystem(root: str) -> AsyncIterator[FilesystemDriver]:
    """The filesystem driver: what processes killed with SIGKILL share."""
    opened = FilesystemDriver(root)
    yield opened
    await opened.close()


def child(script: str, root: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", script, root], cwd=REPO, stdout=subprocess.PIPE)


async def test_records_come_back_in_append_order(driver: StorageDriver) -> None:
    """pending() lists every appended record, oldest first, with its size."""
    spool = Spool(driver, "s")
    written = [f"event {i}".encode() * (i + 1) for i in range(50)]
    for data in written:
        await spool.append(data)
    entries = await spool.pending()
    assert [await spool.read(e) for e in entries] == written
    assert [e.size for e in entries] == [len(d) for d in written]


async def test_a_long_spool_is_listed_whole_and_in_order(
    driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over many parsing batches, nothing is lost or reordered at the batch edges."""
    monkeypatch.setattr(spool_module, "PARSE_BATCH", 7)
    spool = Spool(driver, "s")
    appended = [await spool.append(str(i).encode()) for i in range(60)]
    await driver.put_content("s/notes.txt", b"not a record")
    assert await spool.pending() == appended


async def test_removed_records_are_not_pending(driver: StorageDriver) -> None:
    spool = Spool(driver, "s")
    first, second, third = [await spool.append(b) for b in (b"1", b"2", b"3")]
    await spool.remove(second)
    await spool.remove(second)  # removing twice is harmless (a redelivery after a crash)
    assert await spool.pending() == [first, third]
    assert await spool.read(second) is None


async def test_an_empty_or_missing_spool_has_nothing_pending(driver: StorageDriver) -> None:
    assert await Spool(driver, "never-created").pending() == []
    spool = Spool(driver, "s")
    await spool.remove(await spool.append(b"gone"))
    assert await spool.pending() == []


async def test_other_files_in_the_directory_are_not_records(driver: StorageDriver) -> None:
    spool = Spool(driver, "s")
    kept = await spool.append(b'{"id": "whole"}')
    await driver.put_content("s/notes.txt", b"not a record")
    await driver.put_content("s/1-2-3-4.event", b"not one of our names")
    assert await spool.pending() == [kept]


async def test_names_are_unique_and_ordered_across_spools(driver: StorageDriver) -> None:
    """Two spool objects on one directory never make the same name, and the order is the order of appends."""
    a, b = Spool(driver, "s"), Spool(driver, "s")
    for i in range(100):
        await (a if i % 2 else b).append(str(i).encode())
    entries = await a.pending()
    assert [await b.read(e) for e in entries] == [str(i).encode() for i in range(100)]
    assert len({e.name for e in entries}) == 100


async def test_notification_spools_are_kura_private(driver: StorageDriver) -> None:
    assert Spool.of_endpoint(driver, "ci").directory == "kura/notifications/ci"


async def test_one_leader_at_a_time_and_the_next_takes_over(driver: StorageDriver) -> None:
    spool = Spool(driver, "s")
    async with spool.leading() as leads:
        assert leads
        async with Spool(driver, "s").leading() as other:
            assert not other
        async with spool.leading() as again:  # the same spool object is refused too
            assert not again
        assert LOCK_NAME in await driver.list("s")
        assert await spool.pending() == []  # the lock file is not a record
    async with Spool(driver, "s").leading() as successor:
        assert successor


async def test_a_leader_that_fails_lets_go(driver: StorageDriver) -> None:
    spool = Spool(driver, "s")
    with pytest.raises(RuntimeError):
        async with spool.leading() as leads:
            assert leads
            raise RuntimeError("the endpoint's delivery failed")
    async with spool.leading() as leads:
        assert leads


async def test_a_record_appended_by_another_process_sorts_after_earlier_ones(
    filesystem: FilesystemDriver, root: str
) -> None:
    spool = Spool(filesystem, "s")
    for i in range(10):
        await spool.append(str(i).encode())
    with child(APPEND_ONE, root) as process:
        assert process.wait(60) == 0
    await spool.append(b"last")
    entries = await spool.pending()
    assert [await spool.read(e) for e in entries] == [str(i).encode() for i in range(10)] + [b"child", b"last"]
    assert len({e.name for e in entries}) == 12


async def test_a_writer_killed_mid_stream_leaves_only_whole_records(filesystem: FilesystemDriver, root: str) -> None:
    """SIGKILL during appends: every listed record is complete; at most the torn one is missing, and its
    temporary file is never in the spool's directory."""
    spool = Spool(filesystem, "s")
    with child(APPEND_FOREVER, root) as process:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        for _ in range(3000):  # until 20 records are in, or 30 s have passed
            if len(await spool.pending()) >= 20:
                break
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    records = [await spool.read(e) for e in await spool.pending()]
    assert len(records) >= 20
    for i, data in enumerate(records):
        assert data == (str(i) + ":" + "x" * 5000).encode()
    assert all(name.endswith(".event") for name in await filesystem.list("s"))


async def test_a_dead_leaders_lock_is_free(filesystem: FilesystemDriver, root: str) -> None:
    """The kernel releases the lock of a process killed with SIGKILL."""
    with child(LEAD_FOREVER, root) as process:
        assert process.stdout is not None and process.stdout.readline() == b"leading\n"
        async with Spool(filesystem, "s").leading() as leads:
            assert not leads
        process.send_signal(signal.SIGKILL)
    async with Spool(filesystem, "s").leading() as leads:
        assert leads
