"""Races between workers, as separate Registry objects on one root (each with its own driver, caches
and hashes, as worker processes have), and what a crash leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage import Registry, StorageDriver, paths, tags
from storage.digest import Digest
from storage.drivers import FilesystemDriver, filesystem
from storage.errors import ManifestUnknown, NameUnknown, UploadBusy, UploadUnknown
from storage.gc import touch
from storage.names import Name
from tests.oci import random_image, sha256


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def workers(driver: StorageDriver, driver_name: str, root: str) -> list[Registry]:
    """Three workers: on the filesystem each opens the root itself (locks then work across them as
    across processes); the in-memory driver is shared, as it can only be within one process."""
    if driver_name == "filesystem":
        return [Registry(FilesystemDriver(root)) for _ in range(3)]
    return [Registry(driver) for _ in range(3)]


async def test_concurrent_commits_by_three_workers(workers: list[Registry]) -> None:
    first = workers[0]
    data = os.urandom(4 << 20)
    for i in range(10):
        upload = await first.start_upload("r")
        # Half the time no committer has the running hash (another worker took the PATCH): all re-hash.
        appender = first if i % 2 else Registry(first.driver)
        await appender.append_upload("r", upload, once(data))
        results = await asyncio.gather(
            *(w.commit_upload("r", upload, sha256(data)) for w in workers), return_exceptions=True
        )
        assert any(not isinstance(r, BaseException) for r in results)
        for r in results:
            assert not isinstance(r, BaseException) or isinstance(r, UploadUnknown), repr(r)
    _, reader = await first.open_blob("r", sha256(data))
    try:
        assert b"".join([c async for c in reader.chunks()]) == data
    finally:
        reader.close()


async def test_a_commit_by_another_worker_waits_for_no_append(workers: list[Registry]) -> None:
    """The commit is refused while another worker's append holds the upload, whatever the bytes."""
    first, second = workers[0], workers[1]
    upload = await first.start_upload("r")
    started, resume = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * (1 << 20)
        started.set()
        await resume.wait()
        yield b"y"

    append = asyncio.create_task(first.append_upload("r", upload, body()))
    await started.wait()
    with pytest.raises(UploadBusy):
        await second.commit_upload("r", upload, sha256(b"x" * (1 << 20)))
    resume.set()
    assert await append == (1 << 20) + 1
    assert (await second.commit_upload("r", upload, sha256(b"x" * (1 << 20) + b"y"))).size == (1 << 20) + 1


async def test_tag_put_and_delete_by_two_workers(workers: list[Registry]) -> None:
    image = random_image(seed=50)
    a, b = workers[0], workers[1]
    for digest, blob in image.blobs.items():
        await a.put_blob("r", digest, once(blob))
    for _ in range(25):
        results = await asyncio.gather(
            a.put_manifest("r", "t", image.manifest, image.media_type),
            b.delete_manifest("r", "t"),
            return_exceptions=True,
        )
        assert not isinstance(results[0], BaseException), repr(results[0])
        assert not isinstance(results[1], BaseException) or type(results[1]).__name__ == "ManifestUnknown"
        listed = "t" in (await a.list_tags("r"))[0]
        try:
            await b.get_manifest("r", "t")
            resolves = True
        except Exception:
            resolves = False
        assert listed == resolves


async def test_a_tag_cut_off_by_a_crash_is_not_listed(registry: Registry) -> None:
    """registry:2 writes a tag's history entry before its current link: a crash in between leaves a
    directory that tags/list must not offer (its GET would be 404)."""
    image = random_image(seed=51)
    for digest, blob in image.blobs.items():
        await registry.put_blob("r", digest, once(blob))
    manifest = await registry.put_manifest("r", "good", image.manifest, image.media_type)
    await registry.driver.put_content(
        paths.tag_index_link(Name("r"), "cut", manifest.digest), str(manifest.digest).encode()
    )
    assert (await registry.list_tags("r"))[0] == ["good"]


async def test_stale_temporary_files_are_removed(root: str) -> None:
    driver = FilesystemDriver(root)
    await driver.put_content("a", b"1")
    tmp = os.path.join(root, "kura", "tmp")
    for name, age in (("old.tmp", filesystem.STALE_TEMP_SECONDS + 60), ("fresh.tmp", 5)):
        with open(os.path.join(tmp, name), "wb"):
            pass
        mtime = os.stat(os.path.join(tmp, name)).st_mtime - age
        os.utime(os.path.join(tmp, name), (mtime, mtime))
    driver._purged_at = 0.0  # as after a restart
    await driver.put_content("b", b"2")
    assert os.listdir(tmp) == ["fresh.tmp"]
    await driver.close()


async def test_concurrent_first_writes_on_a_fresh_root(root: str) -> None:
    """The first writes of a new root race to make kura/tmp/: none of them may fail for it."""
    driver = FilesystemDriver(root)
    await asyncio.gather(*(driver.put_content(f"d/{i}", b"x") for i in range(64)))
    assert sorted(os.listdir(os.path.join(root, "d")), key=int) == [str(i) for i in range(64)]
    await driver.close()


async def _two_manifests(registry: Registry) -> tuple[Any, Any]:
    """Two images whose manifests lie in different blob stripes (a delete holds one exclusively)."""
    for seed in range(52, 80):
        d, e = random_image(seed=seed), random_image(seed=seed + 100)
        if touch.stripe(Digest.parse(sha256(d.manifest))) != touch.stripe(Digest.parse(sha256(e.manifest))):
            break
    for image in (d, e):
        for digest, blob in image.blobs.items():
            await registry.put_blob("r", digest, once(blob))
    return d, e


async def test_a_delete_by_digest_keeps_a_tag_moved_meanwhile(
    workers: list[Registry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue: DELETE by digest took the tags pointing at it, then removed each blindly: a tag a PUT
    moved to another manifest in between was lost (the PUT had been answered 201)."""
    a, b = workers[0], workers[1]
    d, e = await _two_manifests(a)
    for tag in ("stays", "moves"):
        await a.put_manifest("r", tag, d.manifest, d.media_type)
    snapshot = tags.pointing_at

    async def moved_meanwhile(driver: StorageDriver, name: Name, digest: Digest) -> list[str]:
        found = await snapshot(driver, name, digest)
        await b.put_manifest("r", "moves", e.manifest, e.media_type)  # another worker, after the look
        return found

    monkeypatch.setattr(tags, "pointing_at", moved_meanwhile)
    assert sorted(await a.delete_manifest("r", sha256(d.manifest))) == ["stays"]
    assert (await a.list_tags("r"))[0] == ["moves"]
    assert (await b.get_manifest("r", "moves")).body == e.manifest


async def test_a_delete_by_digest_and_a_push_of_it_end_as_one_or_the_other(
    workers: list[Registry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue: a PUT of a manifest saw its revision linked, a DELETE of it by digest removed the
    revision, then the PUT pointed its new tag at it: a listed tag that no GET could resolve, and no
    DELETE remove. Now the delete waits for the push's shared stripe (or the push for the delete's)."""
    a, b = workers[0], workers[1]
    d, _ = await _two_manifests(a)
    digest = sha256(d.manifest)
    await a.put_manifest("r", digest, d.manifest, d.media_type)  # linked, untagged
    point = tags.point
    deleting: list[asyncio.Task[list[str]]] = []

    async def delete_meanwhile(driver: StorageDriver, name: Name, tag: str, target: Digest, **options: Any) -> None:
        deleting.append(asyncio.create_task(b.delete_manifest("r", digest)))
        await asyncio.wait(deleting, timeout=0.5)  # a delete not held back runs to its end here
        await point(driver, name, tag, target, **options)

    monkeypatch.setattr(tags, "point", delete_meanwhile)
    await a.put_manifest("r", "new", d.manifest, d.media_type)
    monkeypatch.setattr(tags, "point", point)
    removed = await deleting[0]
    assert removed == ["new"]  # it ran after the push, and took the push's tag with the manifest
    with contextlib.suppress(NameUnknown):  # in memory, a repository left without links is gone
        assert (await a.list_tags("r"))[0] == []
    with pytest.raises(ManifestUnknown):
        await a.get_manifest("r", digest)
