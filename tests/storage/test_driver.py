"""The storage driver contract. Every driver runs this suite unchanged (the ``driver`` fixture is
parametrised over all of them); a new driver (S3) is done when it passes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from storage import StorageDriver
from storage.driver import Busy, PathNotFound
from storage.drivers import InstrumentedDriver


async def test_content_round_trip_and_replace(driver: StorageDriver) -> None:
    await driver.put_content("a/b/c", b"one")
    assert await driver.get_content("a/b/c") == b"one"
    await driver.put_content("a/b/c", b"two!")
    assert await driver.get_content("a/b/c") == b"two!"
    assert (await driver.stat("a/b/c")).size == 4
    with pytest.raises(PathNotFound):
        await driver.get_content("a/b/missing")


async def test_limit_reads_one_byte_past_it(driver: StorageDriver) -> None:
    await driver.put_content("f", b"0123456789")
    assert await driver.get_content("f", 3) == b"0123"
    assert await driver.get_content("f", 100) == b"0123456789"


async def test_stat_of_files_and_directories(driver: StorageDriver) -> None:
    await driver.put_content("d/e/f", b"x")
    info = await driver.stat("d/e/f")
    assert (info.size, info.is_dir) == (1, False) and info.mtime_ns is not None
    assert (await driver.stat("d/e")).is_dir
    with pytest.raises(PathNotFound):
        await driver.stat("d/nope")
    many = await driver.stat_many(["d/e/f", "d/nope", "d"])
    assert [m is not None for m in many] == [True, False, True]
    assert len(await driver.stat_many([f"x{i}" for i in range(100)])) == 100  # past the inline limit


async def test_list_gives_direct_children(driver: StorageDriver) -> None:
    for path in ("r/a/1", "r/a/2", "r/b", "r/c/d/e"):
        await driver.put_content(path, b"")
    assert sorted(await driver.list("r")) == ["a", "b", "c"]
    assert sorted(await driver.list("r/a")) == ["1", "2"]
    with pytest.raises(PathNotFound):
        await driver.list("r/none")


async def test_move_replaces_and_delete_is_recursive(driver: StorageDriver) -> None:
    await driver.put_content("src", b"new")
    await driver.put_content("dst/x", b"old")
    await driver.move("src", "dst/x")
    assert await driver.get_content("dst/x") == b"new"
    with pytest.raises(PathNotFound):
        await driver.stat("src")
    with pytest.raises(PathNotFound):
        await driver.move("src", "elsewhere")
    await driver.put_content("dst/y/z", b"")
    await driver.delete("dst")
    with pytest.raises(PathNotFound):
        await driver.stat("dst/y/z")
    with pytest.raises(PathNotFound):
        await driver.delete("dst")


async def test_move_takes_a_whole_directory(driver: StorageDriver) -> None:
    # Garbage collection moves a blob's directory into the trash in one step, not durably.
    await driver.put_content("blobs/ab/abc/data", b"blob")
    await driver.put_content("blobs/ab/abd/data", b"other")
    await driver.move("blobs/ab/abc", "trash/1/abc", durable=False)
    assert await driver.get_content("trash/1/abc/data") == b"blob"
    assert await driver.stat_many(["blobs/ab/abc/data", "blobs/ab/abc"]) == [None, None]
    assert await driver.get_content("blobs/ab/abd/data") == b"other"
    with pytest.raises(PathNotFound):
        await driver.move("blobs/ab/abc", "trash/2/abc")


async def test_move_many_and_delete_many_take_what_is_there(driver: StorageDriver) -> None:
    for path in ("m/a/data", "m/b/data", "m/c/x/y"):
        await driver.put_content(path, path.encode())
    moved = await driver.move_many([("m/a", "t/a"), ("m/none", "t/none"), ("m/b/data", "t/b")], durable=False)
    assert moved == [True, False, True]
    assert await driver.get_content("t/a/data") == b"m/a/data" and await driver.get_content("t/b") == b"m/b/data"
    await driver.delete_many(["t/a", "m/none", "m/c", "t/b"])
    assert await driver.stat_many(["t/a/data", "t/b", "m/c/x/y"]) == [None, None, None]


async def test_delete_many_removes_a_long_list_of_files_and_their_directories(driver: StorageDriver) -> None:
    # Enough for the filesystem driver to split the list among its removal threads.
    kept = [f"g/{i % 5}/{i}/data" for i in range(0, 600, 7)]
    going = [f"g/{i % 5}/{i}" for i in range(600) if i % 7]
    for i in range(600):
        await driver.put_content(f"g/{i % 5}/{i}/data", b"x", durable=False)
    await driver.delete_many([p for d in going for p in (f"{d}/data", d)] + ["g/none/data", "g/none"])
    assert sorted([info.path async for info in driver.walk("g")]) == sorted(kept)
    for directory in sorted({d.rsplit("/", 1)[0] for d in going}):
        assert sorted(await driver.list(directory)) == sorted(
            p.split("/")[2] for p in kept if p.startswith(f"{directory}/")
        )


async def test_walk_yields_every_file(driver: StorageDriver) -> None:
    expected = sorted(f"w/{i % 7}/{i}" for i in range(1100))  # more than one batch
    for path in expected:
        await driver.put_content(path, b"x", durable=False)
    assert sorted([info.path async for info in driver.walk("w")]) == expected
    assert [info async for info in driver.walk("nothing")] == []


async def test_walk_can_stop_early(driver: StorageDriver) -> None:
    for i in range(1100):
        await driver.put_content(f"w/{i}", b"", durable=False)
    seen = 0
    async for _ in driver.walk("w"):
        seen += 1
        if seen == 3:
            break
    assert seen == 3


async def test_reader_serves_ranges_and_outlives_a_delete(driver: StorageDriver) -> None:
    data = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    await driver.put_content("blob", data)
    reader = await driver.reader("blob")
    try:
        await driver.delete("blob")
        await driver.put_content("blob", b"replaced")
        assert reader.size == len(data)
        assert b"".join([c async for c in reader.chunks()]) == data
        assert b"".join([c async for c in reader.chunks(5, 1 << 20)]) == data[5 : (1 << 20) + 1]
    finally:
        reader.close()
    with pytest.raises(PathNotFound):
        await driver.reader("gone")


async def test_writer_appends_exclusively(driver: StorageDriver) -> None:
    writer = await driver.writer("up/data", create=True)
    try:
        await writer.write([b"ab", b"", b"cd"])
        assert writer.size == 4
        with pytest.raises(Busy):
            await driver.writer("up/data")
        with pytest.raises(Busy):
            async with driver.lock("up/data"):
                pass
        writer.start_flush()
        await writer.commit()
    finally:
        await writer.close()
    again = await driver.writer("up/data")
    try:
        assert again.size == 4
        await again.write([b"ef"])
        await again.truncate(5)
    finally:
        await again.close()
    assert await driver.get_content("up/data") == b"abcde"
    with pytest.raises(PathNotFound):
        await driver.writer("up/none")


async def test_a_writer_never_writes_a_moved_file(driver: StorageDriver) -> None:
    """Once a file is moved away (an upload committed), opening its old path finds nothing."""
    writer = await driver.writer("up/data", create=True)
    await writer.write([b"abc"])
    await driver.move("up/data", "blobs/x")
    await writer.close()
    with pytest.raises(PathNotFound):
        await driver.writer("up/data")
    assert await driver.get_content("blobs/x") == b"abc"


async def test_commit_can_move_the_file_in_the_same_step(driver: StorageDriver) -> None:
    """An upload becomes a blob in one call: made durable, moved (replacing a file there), still held."""
    await driver.put_content("blobs/ab/data", b"stale")
    writer = await driver.writer("up/data", create=True)
    try:
        await writer.write([b"x" * 100_000, b"yz"])  # past the inline-write size, then under it
        await writer.commit(move_to="blobs/ab/data")
        with pytest.raises(Busy):
            await driver.writer("blobs/ab/data")
    finally:
        await writer.close()
    assert await driver.get_content("blobs/ab/data") == b"x" * 100_000 + b"yz"
    with pytest.raises(PathNotFound):
        await driver.stat("up/data")
    with pytest.raises(PathNotFound):
        await driver.writer("up/data")


async def test_delete_takes_small_and_large_trees(driver: StorageDriver) -> None:
    """Whatever the driver does inline or in the background, a deleted path is gone on return."""
    await driver.put_content("small/a", b"1")
    await driver.put_content("small/b", b"2" * 300_000)  # a large file: not removed inline
    for i in range(20):
        await driver.put_content(f"wide/{i}", b"")
    await driver.put_content("deep/x/y/z", b"")
    await driver.put_content("file", b"3" * 300_000)
    for path in ("small", "wide", "deep", "file"):
        await driver.delete(path)
        with pytest.raises(PathNotFound):
            await driver.stat(path)
    left = [info.path async for info in driver.walk("")]
    assert not [path for path in left if path.startswith(("small", "wide", "deep", "file", "kura/tmp"))]


async def test_locks_shared_and_exclusive(driver: StorageDriver) -> None:
    async with driver.lock("l", create=True, shared=True), driver.lock("l", shared=True):
        with pytest.raises(Busy):
            async with driver.lock("l"):
                pass
    async with driver.lock("l"):
        with pytest.raises(Busy):
            async with driver.lock("l", shared=True):
                pass
    with pytest.raises(PathNotFound):
        async with driver.lock("no-such-lock"):
            pass


async def test_lock_waits_for_its_holder(driver: StorageDriver) -> None:
    order: list[str] = []
    held = asyncio.Event()

    async def holder() -> None:
        async with driver.lock("l", create=True):
            order.append("held")
            held.set()
            await asyncio.sleep(0.05)
            order.append("released")

    task = asyncio.create_task(holder())
    await held.wait()
    async with driver.lock("l", wait=30):
        order.append("acquired")
    await task
    assert order == ["held", "released", "acquired"]


HOLD = """import fcntl, sys
f = open(sys.argv[1])
print("locking", flush=True)
fcntl.flock(f, fcntl.LOCK_SH if sys.argv[2] == "shared" else fcntl.LOCK_EX)
print("held", flush=True)
input()"""


async def test_lock_holders_are_the_processes_holding_a_lock_now(driver: StorageDriver, root: str) -> None:
    if driver.lock_holders("l") is None:  # it cannot tell (in-memory: no other process shares it)
        async with driver.lock("l", create=True, shared=True):
            assert driver.lock_holders("l") is None
        return
    assert driver.lock_holders("l") == []  # no such file
    async with driver.lock("l", create=True, shared=True):
        assert driver.lock_holders("l") == [os.getpid()]
    assert driver.lock_holders("l") == []

    def start(mode: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLD, os.path.join(root, "l"), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert child.stdout is not None and child.stdout.readline() == b"locking\n"
        return child

    # Another process holding it, as a server's worker holds the serving lock, and one waiting for it.
    reader = start("shared")
    writer = None
    try:
        assert reader.stdout is not None and reader.stdout.readline() == b"held\n"
        async with driver.lock("l", shared=True):
            assert driver.lock_holders("l") == sorted([os.getpid(), reader.pid])
        writer = start("exclusive")  # blocks in flock(2): /proc/locks lists it as a waiter ("->")
        for _ in range(600):
            with open("/proc/locks", "rb") as table:
                if f" {writer.pid} ".encode() in table.read():
                    break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the waiting process never showed in /proc/locks")
        assert driver.lock_holders("l") == [reader.pid]
    finally:
        reader.communicate(b"\n", timeout=60)
        if writer is not None:
            assert writer.stdout is not None and writer.stdout.readline() == b"held\n"
            assert driver.lock_holders("l") == [writer.pid]
            writer.communicate(b"\n", timeout=60)
    assert driver.lock_holders("l") == []


async def test_touch_moves_the_mtime(driver: StorageDriver) -> None:
    await driver.put_content("t", b"")
    before = (await driver.stat("t")).mtime_ns
    await asyncio.sleep(0.01)
    await driver.touch("t")
    after = (await driver.stat("t")).mtime_ns
    assert before is not None and after is not None and after > before
    with pytest.raises(PathNotFound):
        await driver.touch("missing")


async def test_the_instrumented_driver_times_each_call_and_changes_nothing(driver: StorageDriver) -> None:
    seen: list[tuple[str, str]] = []
    timed = InstrumentedDriver(driver, lambda name, action, seconds: seen.append((name, action)))
    await timed.put_content("a/b", b"x")
    assert await timed.get_content("a/b") == b"x"
    assert [info.path async for info in timed.walk("a")] == ["a/b"]
    async with timed.lock("l", create=True):
        pass
    with pytest.raises(PathNotFound):
        await timed.stat("missing")  # failures are timed too
    assert seen == [(driver.name, a) for a in ("PutContent", "GetContent", "Walk", "Lock", "Stat")]
