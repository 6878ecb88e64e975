"""The web UI's storage queries on both drivers: summaries counted once per blob, push times, tag
history and restore, how blobs are shared across repositories, and Kura's own secrets."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage import Registry, browse, secret, usage
from storage.digest import Digest
from storage.errors import ManifestUnknown, NameInvalid, ReadOnly, TagInvalid
from storage.registry import Options
from tests.oci import Image, random_image
from tests.storage.test_manifests_tags import store


def stored_size(image: Image) -> int:
    return sum(len(b) for b in image.blobs.values()) + len(image.manifest)


async def test_a_summary_counts_each_blob_once(registry: Registry) -> None:
    image, other = random_image(layers=2, seed=1), random_image(layers=1, seed=2)
    await store(registry, "r", image, "a")
    await store(registry, "r", image, "b")  # the same blobs again: no more bytes
    await store(registry, "r", other, "c")
    found = await browse.summary(registry, "r")
    assert (found.name, found.tags) == ("r", 3)
    assert found.size == stored_size(image) + stored_size(other)
    assert found.pushed_ns is not None and abs(found.pushed_ns - time.time_ns()) < 60 * 10**9

    # Its revision link goes, so the manifest no longer counts; its config and layer stay linked
    # (in _layers) until garbage collection.
    await registry.delete_manifest("r", other.digest)
    assert (await browse.summary(registry, "r")).size == stored_size(image) + stored_size(other) - len(other.manifest)
    assert (await browse.summary(registry, "r")).tags == 2


async def test_a_cached_size_is_reused_until_a_blob_is_added(registry: Registry) -> None:
    cache = browse.SizeCache()
    cache.RACY_NS = 0  # the tree was written just now
    image = random_image(layers=1, seed=3)
    await store(registry, "r", image, "a")
    first = await browse.summary(registry, "r", cache)
    cache_hit = await browse.summary(registry, "r", cache)
    assert cache_hit.size == first.size == stored_size(image)
    await asyncio.sleep(0.01)  # a new directory's mtime must differ from the cached one
    bigger = random_image(layers=2, seed=4)
    await store(registry, "r", bigger, "b")
    found = await browse.summary(registry, "r", cache)
    assert found.size == stored_size(image) + stored_size(bigger)
    cache.forget("r")
    assert (await browse.summary(registry, "r", cache)).size == stored_size(image) + stored_size(bigger)


def test_the_size_cache_distrusts_fresh_mtimes_and_expires() -> None:
    cache = browse.SizeCache()
    now = 10 * browse.SizeCache.TTL_NS
    cache.put("fresh", (now - 10,), now, 1)
    assert cache.get("fresh", (now - 10,), now) is None
    cache.put("unknowable", (now - 2 * cache.RACY_NS, None), now, 3)  # no directory mtime to check
    assert cache.get("unknowable", (now - 2 * cache.RACY_NS, None), now) is None
    old = now - 2 * cache.RACY_NS
    cache.put("old", (old, old), now, 7)
    assert cache.get("old", (old, old), now + 1) == 7
    assert cache.get("old", (old, now - cache.RACY_NS), now + 1) is None  # a directory changed
    assert cache.get("old", (old, old), now + cache.TTL_NS + 1) is None


async def test_tag_links_say_where_tags_point_and_the_cache_follows_moves(registry: Registry) -> None:
    one, two = random_image(layers=1, seed=5), random_image(layers=1, seed=6)
    await store(registry, "r", one, "x")
    await store(registry, "r", one, "y")
    cache = browse.TagCache()
    cache.RACY_NS = 0
    links = await browse.tag_links(registry, "r", ["x", "y", "gone"], cache)
    assert [(link.tag, str(link.digest)) for link in links] == [("x", one.digest), ("y", one.digest)]
    assert await browse.pointing_at(registry, "r", one.digest, cache) == ["x", "y"]
    await asyncio.sleep(0.01)
    await store(registry, "r", two, "y")  # a move rewrites current/link: a new mtime
    assert await browse.pointing_at(registry, "r", one.digest, cache) == ["x"]
    assert await browse.pointing_at(registry, "r", two.digest, cache) == ["y"]
    with pytest.raises(TagInvalid):
        await browse.tag_links(registry, "r", ["../x"])


async def test_history_lists_every_manifest_a_tag_pointed_at_newest_first(registry: Registry) -> None:
    images = [random_image(layers=1, seed=s) for s in (7, 8, 9)]
    for image in images:
        await store(registry, "r", image, "t")
        await asyncio.sleep(0.01)
    entries = await browse.history(registry, "r", "t")
    assert [str(e.digest) for e in entries] == [i.digest for i in reversed(images)]
    assert [e.current for e in entries] == [True, False, False] and all(e.present for e in entries)

    await registry.delete_manifest("r", images[0].digest)
    entries = await browse.history(registry, "r", "t")
    assert [e.present for e in entries] == [True, True, False]
    with pytest.raises(ManifestUnknown):
        await browse.history(registry, "r", "nope")
    with pytest.raises(NameInvalid):
        await browse.history(registry, "R", "t")


async def test_restore_points_the_tag_back_at_what_it_held(registry: Registry) -> None:
    old, new, foreign = (random_image(layers=1, seed=s) for s in (10, 11, 12))
    await store(registry, "r", old, "t")
    await store(registry, "r", new, "t")
    await store(registry, "r", foreign, "other")
    await browse.restore(registry, "r", "t", old.digest)
    assert str((await registry.get_manifest("r", "t")).digest) == old.digest
    assert (await browse.history(registry, "r", "t"))[0].current is False  # history is not rewritten
    with pytest.raises(ManifestUnknown):
        await browse.restore(registry, "r", "t", foreign.digest)  # never this tag's
    await registry.delete_manifest("r", new.digest)
    with pytest.raises(ManifestUnknown):
        await browse.restore(registry, "r", "t", new.digest)  # no longer stored


async def test_restore_refuses_a_read_only_registry(registry: Registry) -> None:
    old, new = random_image(layers=1, seed=13), random_image(layers=1, seed=14)
    await store(registry, "r", old, "t")
    await store(registry, "r", new, "t")
    frozen = Registry(registry.driver, Options(read_only=True))
    with pytest.raises(ReadOnly):
        await browse.restore(frozen, "r", "t", old.digest)


async def test_usage_shows_what_deduplication_saves_and_who_shares_a_blob(registry: Registry) -> None:
    shared, alone = random_image(layers=2, seed=15), random_image(layers=1, seed=16)
    await store(registry, "a", shared)
    await store(registry, "b/c", shared)
    await store(registry, "d", alone)
    await registry.delete_blob("d", next(iter(alone.blobs)))  # its config: stored, linked by nobody
    found = await usage.measure(registry)
    assert found.stored == stored_size(shared) + stored_size(alone)
    assert found.size_of("a") == found.size_of("b/c") == stored_size(shared)
    assert found.logical == 2 * stored_size(shared) + stored_size(alone) - len(alone.config)
    assert found.unreferenced == len(alone.config)
    layer = Digest.parse(next(iter(shared.blobs)))
    assert found.sharing(layer) == 2 and found.sharing(str(layer)) == 2
    assert found.sharing(alone.digest) == 1 and found.sharing("sha256:bad") == 0


async def test_a_secret_is_made_once_and_kept(registry: Registry) -> None:
    first = await secret(registry, "ui-session")
    assert len(first) == 32 and await secret(registry, "ui-session") == first
    assert await secret(registry, "other") != first


async def test_gc_runs_are_read_newest_first(registry: Registry) -> None:
    assert await browse.gc_runs(registry) == []
    from storage.gc import state

    saved = state.State()
    saved.add({"started": "one", "dry_run": True, "finished": "x"})
    saved.add({"started": "two", "dry_run": False, "finished": "y"})
    await state.save(registry.driver, saved)
    assert [run["started"] for run in await browse.gc_runs(registry)] == ["two", "one"]
