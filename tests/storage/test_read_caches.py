"""The read path's caches stay correct when another process or another Registry writes the same root.

Each worker process has its own ``Registry`` (and caches); registry:2's ``garbage-collect`` and other
Kura servers write the same tree. A tag moved, a manifest deleted, a blob collected there must show in
the very next read here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest

from storage import Options, Registry, drivers, paths
from storage.digest import Digest
from storage.errors import BlobUnknown, ManifestUnknown
from storage.links import LinkCache
from storage.manifests import BodyCache
from tests.oci import Image, random_image
from tests.storage.test_manifests_tags import store


def _open(root: str) -> Registry:
    return Registry(drivers.create("filesystem", {"rootdirectory": root}), Options(delete_enabled=True))


@pytest.fixture
async def pair(tmp_path: object) -> AsyncIterator[tuple[Registry, Registry, str]]:
    """Two registries on one root, as two worker processes have."""
    root = os.path.join(str(tmp_path), "root")
    first, second = _open(root), _open(root)
    yield first, second, root
    await first.close()
    await second.close()


async def test_a_tag_moved_by_another_registry_is_seen_at_once(pair: tuple[Registry, Registry, str]) -> None:
    here, there, _ = pair
    old, new = random_image(seed=1), random_image(seed=2)
    await store(there, "r", old, "t")
    for _ in range(2):  # the second read is served from the cache
        m = await here.get_manifest("r", "t")
        assert str(m.digest) == old.digest and m.body == old.manifest
    await store(there, "r", new, "t")
    m = await here.get_manifest("r", "t")
    assert str(m.digest) == new.digest and m.body == new.manifest and m.media_type == new.media_type


async def test_a_tag_moved_by_another_process_is_seen_at_once(pair: tuple[Registry, Registry, str]) -> None:
    here, _, root = pair
    old, new = random_image(seed=3), random_image(seed=4)
    await store(here, "r", old, "t")
    assert str((await here.get_manifest("r", "t")).digest) == old.digest
    # A separate interpreter (another worker, another Kura) pushes the new image under the same tag.
    script = textwrap.dedent(
        """
        import asyncio, sys
        from storage import Options, Registry, drivers
        from tests.oci import random_image
        from tests.storage.test_manifests_tags import store

        async def main():
            reg = Registry(drivers.create("filesystem", {"rootdirectory": sys.argv[1]}), Options())
            await store(reg, "r", random_image(seed=4), "t")
            await reg.close()

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, root, cwd=os.getcwd())
    assert await process.wait() == 0
    m = await here.get_manifest("r", "t")
    assert str(m.digest) == new.digest and m.body == new.manifest


async def test_a_manifest_deleted_elsewhere_stops_being_served(pair: tuple[Registry, Registry, str]) -> None:
    here, there, _ = pair
    image = random_image(seed=5)
    digest = await store(there, "r", image, "t")
    assert (await here.get_manifest("r", digest)).body == image.manifest
    await there.delete_manifest("r", digest)
    for reference in (digest, "t"):
        with pytest.raises(ManifestUnknown):
            await here.get_manifest("r", reference)


async def test_collected_blobs_stop_being_served(pair: tuple[Registry, Registry, str]) -> None:
    """A collector that removes the data (registry:2's garbage-collect leaves the links) is seen at once:
    the cached manifest body is not served, and neither is a blob whose stat was just answered."""
    here, _, root = pair
    image: Image = random_image(seed=6)
    digest = await store(here, "r", image, "t")
    layer = next(iter(image.blobs))
    assert (await here.get_manifest("r", "t")).body == image.manifest
    assert (await here.stat_blob("r", layer)).size == len(image.blobs[layer])
    for gone in (digest, layer):
        shutil.rmtree(os.path.join(root, paths.blob_dir(Digest.parse(gone))))
    with pytest.raises(ManifestUnknown):
        await here.get_manifest("r", "t")
    with pytest.raises(BlobUnknown):
        await here.stat_blob("r", layer)


async def test_a_rewritten_manifest_file_is_read_again(pair: tuple[Registry, Registry, str]) -> None:
    """A cached body is used only while the data file has its size; a different file is read anew."""
    here, _, root = pair
    image = random_image(seed=7)
    digest = await store(here, "r", image, "t")
    await here.get_manifest("r", "t")
    data = os.path.join(root, paths.blob_data(Digest.parse(digest)))
    with open(data, "ab") as f:
        f.write(b"\n")
    assert (await here.get_manifest("r", "t")).body == image.manifest + b"\n"


def test_body_cache_keeps_only_bytes_that_match_their_digest() -> None:
    cache = BodyCache(max_bytes=100)
    body = b'{"schemaVersion":2}'
    digest = Digest.of_bytes(body)
    cache.put(digest, b'{"schemaVersion":3}', "x")  # not what the digest names: never kept
    assert cache.get(digest, len(body)) is None
    cache.put(digest, body, "t")
    assert cache.get(digest, len(body)) == (body, "t")
    assert cache.get(digest, len(body) + 1) is None  # the file on disk is not these bytes
    others = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * 30) for i in range(5)]
    for other in others:
        cache.put(Digest.of_bytes(other), other, "t")
    assert cache.get(digest, len(body)) is None  # the oldest went first, to stay within max_bytes
    assert cache.get(Digest.of_bytes(others[-1]), len(others[-1])) is not None


def _counting_reads(registry: Registry) -> list[str]:
    """The paths ``registry`` reads whole (``get_content``) from now on."""
    read: list[str] = []
    driver = registry.driver
    real = driver.get_content

    async def counted(path: str, limit: int | None = None) -> bytes:
        read.append(path)
        return await real(path, limit)

    driver.get_content = counted  # type: ignore[method-assign]
    return read


async def _tick() -> None:
    """Let the file system's clock move on (what ``LinkCache.SETTLE_NS`` waits for in service)."""
    await asyncio.sleep(0.05)


async def test_a_settled_tag_link_costs_a_stat_and_every_kind_of_change_is_seen(
    pair: tuple[Registry, Registry, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a tag's link is old enough to trust its version, a read by tag does not open the link;
    a move by another registry (a new file renamed over it) or registry:2's in-place rewrite of the
    same file, or a delete, is seen by the very next read."""
    monkeypatch.setattr(LinkCache, "SETTLE_NS", 0)
    here, there, root = pair
    old, new = random_image(seed=21), random_image(seed=22)
    await store(there, "r", old, "t")
    await store(there, "r", new, "other")
    reads = _counting_reads(here)
    link = paths.tag_current_link("r", "t")
    for _ in range(3):
        assert str((await here.get_manifest("r", "t")).digest) == old.digest
    assert reads.count(link) == 1  # the first read; the others trusted its unchanged version

    await _tick()
    await store(there, "r", new, "t")  # another worker moves the tag
    assert str((await here.get_manifest("r", "t")).digest) == new.digest
    assert str((await here.get_manifest("r", "t")).digest) == new.digest
    assert reads.count(link) == 2

    await _tick()
    with open(os.path.join(root, link.lstrip("/")), "r+b") as f:  # registry:2's way
        f.truncate(0)
        f.write(old.digest.encode())
    assert str((await here.get_manifest("r", "t")).digest) == old.digest

    await _tick()
    await there.delete_manifest("r", "t")
    with pytest.raises(ManifestUnknown):
        await here.get_manifest("r", "t")


async def test_a_link_written_just_now_is_read_every_time(pair: tuple[Registry, Registry, str]) -> None:
    """Within ``SETTLE_NS`` of its last change a link's version may not change with its next write
    (timestamps move in ticks), so it is not trusted yet."""
    here, there, _ = pair
    image = random_image(seed=23)
    await store(there, "r", image, "t")
    reads = _counting_reads(here)
    for _ in range(3):
        assert str((await here.get_manifest("r", "t")).digest) == image.digest
    assert reads.count(paths.tag_current_link("r", "t")) == 3


async def test_no_version_no_link_cache() -> None:
    """A driver that reports no version (the in-memory one) gets every link read."""
    registry = Registry(drivers.create("inmemory", {}), Options(delete_enabled=True))
    image = random_image(seed=24)
    await store(registry, "r", image, "t")
    reads = _counting_reads(registry)
    for _ in range(2):
        assert str((await registry.get_manifest("r", "t")).digest) == image.digest
    assert len(reads) >= 2
    await registry.close()
