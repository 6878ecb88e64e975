"""Mark and sweep on built trees, on every driver: what garbage collection keeps and what it removes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.images import buildkit
from storage import Registry, StorageDriver, mediatypes, paths, usage
from storage.digest import Digest
from storage.driver import Busy, PathNotFound
from storage.drivers import FilesystemDriver
from storage.errors import ManifestBlobUnknown, ManifestUnknown
from storage.gc import collector, inventory, state, sweep, touch
from storage.gc.config import UploadPurging
from storage.names import Name
from tests.storage.gctree import HOUR, age, blob_ok, collect, manifest_ok, push, varied_cache


async def _stored(driver: StorageDriver, digest: str) -> bool:
    return (await driver.stat_many([paths.blob_data(Digest.parse(digest))]))[0] is not None


async def test_multi_arch_index_with_attestations_is_kept_whole(registry: Registry, driver: StorageDriver) -> None:
    index = buildkit.attested_index("r/app:1", ["amd64", "arm64"], [buildkit.PROVENANCE_V02, buildkit.SPDX], True)
    await push(registry, "r/app", index, "1")
    garbage = buildkit.single_image("amd64", marker="old")
    old = await push(registry, "r/app", garbage)  # untagged
    age(driver, 2 * HOUR)

    report = await collect(driver, delete_untagged=True)

    assert await manifest_ok(registry, "r/app", "1")
    children = json.loads(index.root[0])["manifests"]
    assert all([await manifest_ok(registry, "r/app", c["digest"]) for c in children])
    assert report.repositories["r/app"].manifests == [Digest.parse(old)]
    assert not await _stored(driver, old)
    kept = set(index.blobs)
    gone = set(garbage.blobs) - kept
    assert gone and not any([await _stored(driver, d) for d in gone])
    assert report.blobs_deleted == len(gone) + 1  # its blobs and the manifest itself


@pytest.mark.parametrize("image_manifest", [True, False])
async def test_buildkit_cache_keeps_the_tagged_cache_in_either_form(
    registry: Registry, driver: StorageDriver, image_manifest: bool
) -> None:
    first = varied_cache(1, image_manifest)
    await push(registry, "cache/app", first, "cache")
    second = varied_cache(2, image_manifest)
    await push(registry, "cache/app", second, "cache")  # a rebuild: the tag moves
    age(driver, 2 * HOUR)

    await collect(driver, delete_untagged=True)

    assert await manifest_ok(registry, "cache/app", "cache")  # legacy index children are blobs: still served
    assert all([await _stored(driver, d) for d in second.blobs])
    only_first = set(first.blobs) - set(second.blobs)
    assert only_first and not any([await _stored(driver, d) for d in only_first])
    assert not await _stored(driver, buildkit.digest_of(first.root[0]))


async def _chain(registry: Registry) -> tuple[str, str, str]:
    """An image (tagged), an SBOM of it and a signature of the SBOM (both untagged referrers)."""
    image = buildkit.single_image("amd64", marker="signed")
    image_digest = await push(registry, "r/signed", image, "v1")
    subject = buildkit.descriptor(mediatypes.OCI_MANIFEST, image.root[0])
    sbom = buildkit.artifact_for(subject, "application/spdx+json", b'{"spdx":1}', "application/spdx+json")
    sbom_digest = await push(registry, "r/signed", sbom)
    signature = buildkit.artifact_for(
        buildkit.descriptor(mediatypes.OCI_MANIFEST, sbom.root[0]),
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        b"signature",
        "application/vnd.dev.cosign.simplesigning.v1+json",
    )
    signature_digest = await push(registry, "r/signed", signature)
    return image_digest, sbom_digest, signature_digest


async def test_referrer_chain_is_kept_with_its_subject(registry: Registry, driver: StorageDriver) -> None:
    image, sbom, signature = await _chain(registry)
    age(driver, 2 * HOUR)
    report = await collect(driver, delete_untagged=True)
    assert report.manifests_deleted == 0
    for digest in (image, sbom, signature):
        assert await manifest_ok(registry, "r/signed", digest)
    assert [r["digest"] for r in await registry.list_referrers("r/signed", image)] == [sbom]


async def test_referrers_of_a_deleted_subject_go_after_the_grace_period(
    registry: Registry, driver: StorageDriver
) -> None:
    image, sbom, signature = await _chain(registry)
    await registry.delete_manifest("r/signed", image)
    report = await collect(driver)  # within the grace period: nothing goes
    assert report.manifests_deleted == 0 and await manifest_ok(registry, "r/signed", signature)

    age(driver, 2 * HOUR)
    report = await collect(driver, orphan_referrers=False)  # referrers kept as registry:2 would keep them
    assert report.manifests_deleted == 0

    report = await collect(driver)  # untagged manifests are kept, but not referrers of nothing
    assert set(report.repositories["r/signed"].manifests) == {Digest.parse(sbom), Digest.parse(signature)}
    assert not await manifest_ok(registry, "r/signed", sbom)


async def test_untagged_manifests_without_and_with_delete_untagged(registry: Registry, driver: StorageDriver) -> None:
    untagged = await push(registry, "r/u", buildkit.single_image("amd64", marker="untagged"))
    await push(registry, "r/u", buildkit.single_image("amd64", marker="tagged"), "t")
    report = await collect(driver, delete_untagged=True)
    assert report.manifests_deleted == 0  # pushed within the grace period

    age(driver, 2 * HOUR)
    report = await collect(driver)
    assert report.manifests_deleted == 0 and await manifest_ok(registry, "r/u", untagged)

    dry = await collect(driver, delete_untagged=True, dry_run=True)
    assert dry.repositories["r/u"].manifests == [Digest.parse(untagged)]
    assert await manifest_ok(registry, "r/u", untagged)  # a dry run removes nothing

    report = await collect(driver, delete_untagged=True)
    assert report.repositories["r/u"].manifests == [Digest.parse(untagged)]
    assert not await manifest_ok(registry, "r/u", untagged)
    assert await manifest_ok(registry, "r/u", "t")


async def test_fallback_tag_keeps_the_referrers_it_lists(registry: Registry, driver: StorageDriver) -> None:
    image = buildkit.single_image("amd64", marker="fallback")
    image_digest = await push(registry, "r/fb", image, "v1")
    subject = buildkit.descriptor(mediatypes.OCI_MANIFEST, image.root[0])
    sig = buildkit.artifact_for(subject, "application/example", b"sig", "application/example")
    sig_digest = await push(registry, "r/fb", sig)
    fallback = buildkit.indented(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [buildkit.descriptor(mediatypes.OCI_MANIFEST, sig.root[0])],
        }
    )
    tag = image_digest.replace(":", "-")
    await registry.put_manifest("r/fb", tag, fallback, mediatypes.OCI_INDEX)
    await registry.delete_manifest("r/fb", "v1")  # the image loses its tag; the fallback tag stays
    age(driver, 2 * HOUR)

    report = await collect(driver, delete_untagged=True)

    assert await manifest_ok(registry, "r/fb", tag) and await manifest_ok(registry, "r/fb", sig_digest)
    assert report.repositories["r/fb"].manifests == [Digest.parse(image_digest)]


async def test_unreferenced_blobs_dangling_links_and_empty_repositories(
    registry: Registry, driver: StorageDriver
) -> None:
    async def one(data: bytes) -> str:
        digest = buildkit.digest_of(data)
        await registry.put_blob("r/only-blobs", digest, _body(data), len(data))
        return digest

    lone = await one(b"an orphan blob")
    stale = await registry.start_upload("r/only-blobs")
    started = paths.upload_started_at("r/only-blobs", stale)
    await driver.put_content(started, b"2026-01-01T00:00:00Z")  # past registry:2's 168h
    fresh = await registry.start_upload("r/keep")
    await push(registry, "r/keep", buildkit.single_image("amd64", marker="keep"), "k")
    age(driver, 2 * HOUR)

    report = await collect(driver, uploads=UploadPurging())

    assert not await _stored(driver, lone)
    only = report.repositories["r/only-blobs"]
    assert only.layer_links == 1 and only.uploads == 1 and only.removed
    assert "r/only-blobs" not in (await registry.list_repositories(100, None))[0]
    assert await manifest_ok(registry, "r/keep", "k")
    assert await registry.upload_size("r/keep", fresh) == 0
    assert await _trash(driver)  # swept blobs wait there for trash_delay
    await collect(driver)
    assert not await _trash(driver)  # trash_delay 0: erased at the next run's start
    saved = await state.load(driver)
    assert [run["blobs_deleted"] for run in saved.runs] == [1, 0] and saved.generation == 1


async def _trash(driver: StorageDriver) -> list[str]:
    try:
        return await driver.list(state.TRASH)
    except PathNotFound:
        return []


async def _body(data: bytes):  # type: ignore[no-untyped-def]
    yield data


async def test_a_blob_observed_during_the_sweep_survives(registry: Registry, driver: StorageDriver) -> None:
    data = b"a layer someone is about to use"
    digest = buildkit.digest_of(data)
    await registry.put_blob("r/race", digest, _body(data), len(data))
    age(driver, 2 * HOUR)
    observed = False

    class Racing:
        """The driver, with a client's HEAD arriving just before the sweeper locks the blob's stripe."""

        def __getattr__(self, name: str) -> object:
            return getattr(driver, name)

        def lock(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
            nonlocal observed
            if path.startswith("kura/locks/blobs/") and not kwargs.get("shared") and not observed:
                observed = True
                return _then(registry.stat_blob("r/race", digest), driver.lock(path, **kwargs))  # type: ignore[arg-type]
            return driver.lock(path, **kwargs)  # type: ignore[arg-type]

    report = await collector.collect(Racing(), collector.Settings(grace=HOUR))  # type: ignore[arg-type]

    assert observed and report.postponed == 1 and report.blobs_deleted == 0
    assert await blob_ok(registry, "r/race", digest)


class _then:
    """An async context manager that first awaits ``before``, then enters ``inner``."""

    def __init__(self, before: object, inner: object) -> None:
        self.before, self.inner = before, inner

    async def __aenter__(self) -> None:
        await self.before  # type: ignore[misc]
        await self.inner.__aenter__()  # type: ignore[attr-defined]

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)  # type: ignore[attr-defined]


async def test_a_push_racing_the_sweep_gets_manifest_blob_unknown_then_succeeds(
    registry: Registry, driver: StorageDriver
) -> None:
    image = buildkit.single_image("amd64", marker="racing")
    for digest, data in image.blobs.items():
        await registry.put_blob("r/push", digest, _body(data), len(data))
    age(driver, 2 * HOUR)  # the client paused between its blob uploads and its manifest PUT
    await collect(driver)
    body, media_type = image.root
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest("r/push", "v1", body, media_type)
    await push(registry, "r/push", image, "v1")  # the client's retry pushes the blobs again
    assert await manifest_ok(registry, "r/push", "v1")


async def test_a_manifest_put_during_the_sweep_keeps_its_blobs(registry: Registry, driver: StorageDriver) -> None:
    image = buildkit.single_image("amd64", marker="in-time")
    for digest, data in image.blobs.items():
        await registry.put_blob("r/put", digest, _body(data), len(data))
    age(driver, 2 * HOUR)
    body, media_type = image.root
    pushed = False

    class Racing:
        def __getattr__(self, name: str) -> object:
            return getattr(driver, name)

        def lock(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
            nonlocal pushed
            if path.startswith("kura/locks/blobs/") and not kwargs.get("shared") and not pushed:
                pushed = True
                put = registry.put_manifest("r/put", "v1", body, media_type)
                return _then(put, driver.lock(path, **kwargs))  # type: ignore[arg-type]
            return driver.lock(path, **kwargs)  # type: ignore[arg-type]

    report = await collector.collect(Racing(), collector.Settings(grace=HOUR))  # type: ignore[arg-type]

    assert pushed and report.blobs_deleted == 0
    assert await manifest_ok(registry, "r/put", "v1")


async def test_one_collector_at_a_time(driver: StorageDriver) -> None:
    async with state.leader(driver):
        with pytest.raises(Busy):
            await collect(driver)


async def test_grace_never_shorter_than_twice_a_servers_touch_interval(
    registry: Registry, driver: StorageDriver
) -> None:
    data = b"observed a minute ago"
    digest = buildkit.digest_of(data)
    await registry.put_blob("r/floor", digest, _body(data), len(data))
    await touch.publish(driver, 600)  # a server with a 10 minute grace: it touches every 150 s
    age(driver, 60)
    report = await collect(driver, grace=10)
    assert report.grace == 300 and report.blobs_deleted == 0
    report = await collect(driver, grace=10, offline=True)  # a stopped registry: no floor
    assert report.blobs_deleted == 1


@pytest.mark.parametrize("last_chunk", [b"", b"tail"], ids=["put-without-body", "put-with-last-chunk"])
async def test_a_blob_committed_after_a_long_pause_survives_a_sweep_before_its_link(
    driver: StorageDriver, last_chunk: bytes
) -> None:
    """An upload paused for longer than the grace period: its data is old when the PUT moves it into
    ``blobs/``. A collection between that move and the repository's link must find it fresh (touched,
    or written just now by the last chunk): the client is about to be told 201."""
    swept_between = False

    class Racing:
        def __getattr__(self, name: str) -> object:
            return getattr(driver, name)

        async def put_content(self, path: str, data: bytes, **kwargs: object) -> None:
            nonlocal swept_between
            if "/_layers/" in path and not swept_between:
                swept_between = True
                await collect(driver)
            await driver.put_content(path, data, **kwargs)  # type: ignore[arg-type]

    registry = Registry(Racing())  # type: ignore[arg-type]
    data = b"paused upload " * 100
    upload = await registry.start_upload("r/paused")
    await registry.append_upload("r/paused", upload, _body(data))
    age(driver, 2 * HOUR)
    digest = f"sha256:{hashlib.sha256(data + last_chunk).hexdigest()}"
    await registry.commit_upload("r/paused", upload, digest, _body(last_chunk) if last_chunk else None)
    assert swept_between
    assert await blob_ok(registry, "r/paused", digest)


async def test_the_totals_left_are_what_a_walk_of_the_store_counts(registry: Registry, driver: StorageDriver) -> None:
    shared = buildkit.single_image("amd64", marker="shared")
    for name in ("r/one", "r/two"):
        await push(registry, name, shared, "1")  # stored once, needed by both: deduplicated
    await push(registry, "r/one", buildkit.single_image("arm64", marker="gone"))  # untagged garbage
    lone = buildkit.digest_of(b"an orphan blob")
    await registry.put_blob("r/two", lone, _body(b"an orphan blob"), 14)
    age(driver, 2 * HOUR)

    report = await collect(driver, delete_untagged=True)

    walked = await usage.measure(registry)
    assert report.blobs_deleted > 1 and report.blobs_stored == len(walked.blobs)
    assert report.bytes_stored == walked.stored
    assert report.bytes_deduplicated == walked.logical - walked.stored > 0
    saved = (await state.load(driver)).last()
    assert saved is not None and saved["bytes_stored"] == walked.stored


@pytest.mark.parametrize("offline", [False, True])
async def test_an_online_collection_holds_few_stripes_at_once_and_an_offline_one_none(
    registry: Registry, driver: StorageDriver, offline: bool
) -> None:
    for i in range(40):  # garbage in many stripes: blobs, and untagged manifests
        await push(registry, "r/many", buildkit.single_image("amd64", marker=f"gone {i}"))
    age(driver, 2 * HOUR)
    held = most = 0

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(driver, name)

        @contextlib.asynccontextmanager
        async def lock(self, path: str, **kwargs: object) -> AsyncIterator[None]:
            nonlocal held, most
            async with driver.lock(path, **kwargs):  # type: ignore[arg-type]
                exclusive = path.startswith("kura/locks/blobs/") and not kwargs.get("shared")
                held += exclusive
                most = max(most, held)
                await asyncio.sleep(0.001)  # the sweep of a stripe takes a while: others may start
                try:
                    yield
                finally:
                    held -= exclusive

    settings = collector.Settings(grace=HOUR, delete_untagged=True, offline=offline, trash_delay=0.0)
    report = await collector.collect(Counting(), settings)  # type: ignore[arg-type]

    assert report.manifests_deleted == 40 and report.blobs_deleted > 80
    assert most == (0 if offline else sweep.ONLINE_PARALLEL)  # offline, no server can race it


async def test_an_offline_collection_refuses_to_run_beside_a_server(registry: Registry, driver: StorageDriver) -> None:
    await push(registry, "r/served", buildkit.single_image("amd64", marker="gone"))
    age(driver, 2 * HOUR)
    async with state.serving(driver), state.serving(driver):  # two server processes
        with pytest.raises(state.ServerRunning):
            await collect(driver, offline=True, delete_untagged=True)
        report = await collect(driver, delete_untagged=True)  # online: beside them is fine
    assert report.manifests_deleted == 1


async def test_a_server_does_not_start_during_an_offline_collection(driver: StorageDriver) -> None:
    async with state.alone(driver):
        with pytest.raises(state.OfflineCollection):
            async with state.serving(driver):
                pass
    async with state.serving(driver):  # once it has finished
        with pytest.raises(state.ServerRunning):
            async with state.alone(driver):
                pass
    async with state.alone(driver):  # the server is gone, and its lock with it
        pass


async def test_an_offline_run_beside_a_server_collecting_is_refused_as_such(driver: StorageDriver) -> None:
    async with state.serving(driver), state.leader(driver):  # a server, and its own collection running
        with pytest.raises(state.ServerRunning):
            await collect(driver, offline=True)


async def test_an_offline_run_sweeps_a_torn_revision_and_layer_link(registry: Registry, driver: StorageDriver) -> None:
    kept = buildkit.single_image("amd64", marker="kept")
    await push(registry, "r/torn", kept, "v1")
    torn = buildkit.single_image("arm64", marker="torn")
    torn_digest = Digest.parse(await push(registry, "r/torn", torn))
    await driver.delete(paths.manifest_revision_link("r/torn", torn_digest))  # its directory may stay
    layer = Digest.parse(next(d for d in torn.blobs if d not in kept.blobs))
    await driver.delete(paths.layer_link("r/torn", layer))
    age(driver, 2 * HOUR)

    report = await collect(driver, offline=True)  # without -m: only a revision would keep it

    assert not any([await _stored(driver, d) for d in (*torn.blobs, str(torn_digest))])
    assert report.postponed == 0 and await manifest_ok(registry, "r/torn", "v1")
    layers = await driver.list(paths.join(paths.layers("r/torn"), "sha256"))
    assert sorted(layers) == sorted(Digest.parse(d).hex for d in kept.blobs)


async def test_blobs_swept_in_many_batches_while_the_walk_goes_on(
    registry: Registry, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collector, "BATCH", 3)
    kept = buildkit.single_image("amd64", marker="kept")
    await push(registry, "r/batches", kept, "v1")
    gone = [buildkit.single_image("arm64", marker=f"gone {i}") for i in range(12)]
    for image in gone:
        await push(registry, "r/batches", image)
    age(driver, 2 * HOUR)

    report = await collector.collect(driver, collector.Settings(grace=HOUR, delete_untagged=True))

    garbage = {d for image in gone for d in image.blobs} - set(kept.blobs)
    assert len(garbage) > 3 * collector.BATCH
    assert not any([await _stored(driver, d) for d in garbage])
    assert report.blobs_deleted == len(garbage) + len(gone)  # their blobs and manifests
    assert report.repositories["r/batches"].layer_links == len(garbage)
    assert await manifest_ok(registry, "r/batches", "v1")
    layers = await driver.list(paths.join(paths.layers("r/batches"), "sha256"))
    assert sorted(layers) == sorted(Digest.parse(d).hex for d in kept.blobs)


async def test_a_paced_collection_waits_only_between_units_and_removes_the_same(
    registry: Registry, driver: StorageDriver
) -> None:
    kept = buildkit.single_image("amd64", marker="kept")
    await push(registry, "r/paced", kept, "v1")
    for i in range(20):
        await push(registry, "r/paced", buildkit.single_image("arm64", marker=f"gone {i}"))
    for i in range(3):
        await push(registry, f"r/empty{i}", buildkit.single_image("arm64", marker=f"alone {i}"))
    age(driver, 2 * HOUR)
    held: dict[object, list[str]] = {}  # the locks each task holds
    calls = 0

    class Locking:
        def __getattr__(self, name: str) -> object:
            return getattr(driver, name)

        @contextlib.asynccontextmanager
        async def lock(self, path: str, **kwargs: object) -> AsyncIterator[None]:
            mine = held.setdefault(asyncio.current_task(), [])
            async with driver.lock(path, **kwargs):  # type: ignore[arg-type]
                mine.append(path)
                try:
                    yield
                finally:
                    mine.remove(path)

    async def pace() -> None:
        nonlocal calls
        mine = [p for p in held.get(asyncio.current_task(), []) if p != state.LEADER]  # no request takes that one
        assert not mine, f"a collection gave way while holding {mine}, which requests may wait for"
        calls += 1
        await asyncio.sleep(0.0005)  # gives way for real: others run meanwhile

    settings = collector.Settings(grace=HOUR, delete_untagged=True, trash_delay=0.0)
    report = await collector.collect(Locking(), settings, pace)  # type: ignore[arg-type]

    assert report.manifests_deleted == 23 and report.repositories_seen == 4
    assert calls >= report.repositories_seen + report.blobs_seen  # a repository and a blob are units
    assert sorted(n for n, r in report.repositories.items() if r.removed) == ["r/empty0", "r/empty1", "r/empty2"]
    assert await manifest_ok(registry, "r/paced", "v1")
    swept = report.repositories["r/paced"].blobs
    assert report.blobs_deleted > 40 and not any([await _stored(driver, str(d)) for d in swept])


async def test_an_earlier_runs_trash_is_erased_a_paced_batch_at_a_time(
    registry: Registry, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "ERASE_BATCH", 4)
    for i in range(10):
        await push(registry, "r/trash", buildkit.single_image("arm64", marker=f"gone {i}"))
    age(driver, 2 * HOUR)
    first = await collector.collect(driver, collector.Settings(grace=HOUR, delete_untagged=True))
    trashed = await driver.list(paths.join(state.TRASH, str(first.t0_ns)))
    assert len(trashed) == first.blobs_deleted > 8
    calls = 0

    async def pace() -> None:
        nonlocal calls
        calls += 1

    second = await collector.collect(driver, collector.Settings(grace=HOUR, trash_delay=0.0), pace)

    assert second.trash_emptied == 1
    assert (await driver.stat_many([paths.join(state.TRASH, str(first.t0_ns))]))[0] is None
    assert calls >= len(trashed) // 4  # one before each batch, at least


async def test_an_inventory_without_times_lists_the_same_links(registry: Registry, driver: StorageDriver) -> None:
    first = await push(registry, "r/inv", buildkit.single_image("amd64", marker="one"), "moved")
    await push(registry, "r/inv", buildkit.single_image("arm64", marker="two"), "moved")  # history: both
    await push(registry, "r/inv", buildkit.single_image("amd64", marker="three"), "other")
    await push(registry, "r/inv", buildkit.single_image("amd64", marker="untagged"))
    await driver.put_content(paths.join(paths.tag_dir("r/inv", "torn"), "index", "sha256", "x", "link"), b"")

    timed = await inventory.read(driver, "r/inv")
    listed = await inventory.read(driver, "r/inv", times=False)

    assert listed.revisions == timed.revisions and len(timed.revisions) == 4  # revisions stay stat'ed
    assert set(listed.layers) == set(timed.layers) and set(listed.layers.values()) == {0}
    assert min(timed.layers.values()) > 0
    assert {t: (i.digest, i.history) for t, i in listed.tags.items()} == {
        t: (i.digest, i.history) for t, i in timed.tags.items()
    }
    assert listed.tags["torn"].digest is None and Digest.parse(first) in listed.tags["moved"].history


def hashlib_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "online"])
async def test_a_symlinked_blob_directory_loses_its_link_not_what_it_points_at(
    root: str, tmp_path: Path, offline: bool
) -> None:
    """Issue: a blob directory moved elsewhere and symlinked back was swept as `<dir>/data` then
    `<dir>`, which removed the file outside the root (online when the trash was emptied). As
    registry:2's RemoveAll: the link goes, the target stays."""
    driver = FilesystemDriver(root)
    registry = Registry(driver)
    info = await registry.put_blob("r", hashlib_digest(b"garbage"), _once(b"garbage"), 7)  # in no manifest
    blob_dir = os.path.join(root, paths.blob_dir(info.digest))
    elsewhere = tmp_path / "elsewhere"
    os.rename(blob_dir, elsewhere)
    os.symlink(elsewhere, blob_dir)
    age(driver, 2 * HOUR)
    stale = time.time() - 2 * HOUR
    os.utime(elsewhere / "data", (stale, stale))  # os.walk (age) does not follow the link
    for _ in range(2):  # online: the second run empties the first one's trash
        await collect(driver, offline=offline, grace=0.0 if offline else HOUR)
    assert not os.path.lexists(blob_dir)
    assert (elsewhere / "data").read_bytes() == b"garbage"
    await registry.close()


@pytest.mark.parametrize("odd", ["directory", "fifo"])
async def test_a_directory_or_fifo_where_a_link_belongs_reads_as_no_link(root: str, odd: str) -> None:
    """Issue: a directory where a tag's link belongs made the tag's GET a 500 and every collection
    fail (opening a directory read-only succeeds; its read does not); a FIFO hung both for good."""
    driver = FilesystemDriver(root)
    registry = Registry(driver)
    await push(registry, "r", buildkit.single_image(marker="one"), "v1")
    await push(registry, "r", buildkit.single_image(marker="two"), "v2")
    link = os.path.join(root, paths.tag_current_link(Name.parse("r"), "v1"))
    os.unlink(link)
    os.mkdir(link) if odd == "directory" else os.mkfifo(link)
    with pytest.raises(ManifestUnknown):
        await asyncio.wait_for(registry.get_manifest("r", "v1"), 30)
    report = await asyncio.wait_for(collect(driver, offline=True, delete_untagged=True), 60)
    assert report.manifests_deleted == 1  # v1's manifest: no tag reaches it now
    assert await manifest_ok(registry, "r", "v2")
    await registry.close()


@pytest.mark.parametrize(
    "garbage",
    [
        '{"generation": "x"}',
        '{"runs": 5}',
        '{"runs": [5]}',
        '{"policies": 7}',
        '{"totals": {"a": "b"}}',
        '{"generation": 1e400}',
        '{"totals": {"runs": Infinity}}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
async def test_a_state_file_nobody_can_read_is_no_state(driver: StorageDriver, garbage: str) -> None:
    """Issue: a corrupt kura/gc/state.json made every collection fail, offline and online."""
    await driver.put_content(state.STATE, garbage.encode())
    assert await state.load(driver) == state.State()
    await collect(driver, offline=True)
    assert (await state.load(driver)).runs  # the run that followed was recorded


async def test_a_dry_run_on_a_read_only_root_still_reports(
    driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue: a dry run records itself in kura/gc/state.json; on a read-only root that write failed
    the run, with a traceback, and the report was never printed."""

    async def read_only(*_: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(state, "save", read_only)
    report = await collect(driver, offline=True, dry_run=True)
    assert report.dry_run
    with pytest.raises(OSError):  # a real run must say its record failed
        await collect(driver, offline=True)


@pytest.mark.parametrize("error", [errno.EPERM, errno.EROFS], ids=["immutable", "read-only-mount"])
async def test_what_cannot_be_removed_stays_and_the_rest_goes(
    root: str, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    """Issue: one blob that could not be removed (chattr +i, a read-only mount below the root) stopped
    the whole sweep with a traceback, and the run was not recorded."""
    driver = FilesystemDriver(root)
    registry = Registry(driver)
    kept, going = [await registry.put_blob("r", hashlib_digest(d), _once(d), 1) for d in (b"a", b"b")]
    stuck = os.path.join(root, paths.blob_data(kept.digest))
    unlink = os.unlink

    def refusing(path: str, *, dir_fd: int | None = None) -> None:
        where = path if dir_fd is None else os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        if where == stuck:  # as the kernel refuses it (shutil.rmtree unlinks by dir_fd)
            raise OSError(error, os.strerror(error), path)
        unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", refusing)
    age(driver, 2 * HOUR)
    await collect(driver, offline=True)
    assert os.path.exists(stuck) and not os.path.exists(os.path.join(root, paths.blob_data(going.digest)))
    assert (await state.load(driver)).runs
    await registry.close()


@pytest.mark.parametrize(("text", "interval"), [("450000000", 450_000_000.0), ("nan", 1800.0), ("-5", 1800.0)])
async def test_a_published_touch_interval_is_trusted_unless_it_is_no_interval(
    driver: StorageDriver, text: str, interval: float
) -> None:
    """A large interval (a grace of years) is what a server wrote and is the safe side; only what is
    no interval at all counts as the default's."""
    await driver.put_content(touch.INTERVAL, text.encode())
    assert await touch.published(driver) == interval
