"""Retention policies and size caps, through whole collections on every driver."""

from __future__ import annotations

from typing import Any

from app.images import buildkit
from storage import Registry, StorageDriver, mediatypes, paths
from storage.digest import Digest
from storage.gc.config import RetentionPolicy
from storage.gc.report import Report
from tests.storage.gctree import HOUR, age, collect, manifest_ok, push, stamp, varied_cache


async def _tags(registry: Registry, repository: str, *names: str) -> dict[str, str]:
    """One image per tag, the first named pushed longest ago (an hour apart, all past the grace period)."""
    digests = {}
    for name in names:
        digests[name] = await push(registry, repository, buildkit.single_image("amd64", marker=name), name)
    age(registry.driver, 10 * HOUR)
    for hours, name in enumerate(reversed(names)):
        stamp(registry.driver, paths.tag_current_link(repository, name), (hours + 2) * HOUR)
    return digests


def _policy(**fields: Any) -> RetentionPolicy:
    return RetentionPolicy.model_validate(fields)


async def _enforce(driver: StorageDriver, policy: RetentionPolicy, **options: object) -> Report:
    """A policy's first run is dry: run it twice, and return the second report."""
    await collect(driver, retention=(policy,), **options)
    return await collect(driver, retention=(policy,), **options)


async def _listed(registry: Registry, repository: str) -> list[str]:
    return (await registry.list_tags(repository))[0]


async def test_a_new_policy_runs_dry_first(registry: Registry, driver: StorageDriver) -> None:
    await _tags(registry, "r/a", "one", "two", "three")
    policy = _policy(keep=[{"mostrecentlypushed": 1}])
    first = await collect(driver, retention=(policy,))
    assert [t for t, _ in first.repositories["r/a"].untagged] == ["one", "two"]
    assert await _listed(registry, "r/a") == ["one", "three", "two"]  # nothing removed yet
    second = await collect(driver, retention=(policy,))
    assert [t for t, _ in second.repositories["r/a"].untagged] == ["one", "two"]
    assert await _listed(registry, "r/a") == ["three"]


async def test_keep_the_most_recently_pushed(registry: Registry, driver: StorageDriver) -> None:
    digests = await _tags(registry, "r/n", "v1", "v2", "v3", "v4")
    await _enforce(driver, _policy(keep=[{"mostrecentlypushed": 2}]), delete_untagged=True)
    assert await _listed(registry, "r/n") == ["v3", "v4"]
    assert not await manifest_ok(registry, "r/n", digests["v1"])  # untagged, then collected
    assert await manifest_ok(registry, "r/n", "v4")


async def test_keep_pushed_within(registry: Registry, driver: StorageDriver) -> None:
    await _tags(registry, "r/w", "old", "mid", "new")  # pushed 4h, 3h, 2h ago
    await _enforce(driver, _policy(keep=[{"pushedwithin": "3h30m"}]))
    assert await _listed(registry, "r/w") == ["mid", "new"]


async def test_include_and_exclude_patterns(registry: Registry, driver: StorageDriver) -> None:
    await _tags(registry, "r/p", "v1.0", "v1.1", "v2.0-rc1", "latest", "dev-123")
    policy = _policy(keep=[{"tags": r"^v\d", "excludetags": "-rc", "mostrecentlypushed": 1}, {"tags": "^latest$"}])
    await _enforce(driver, policy)
    assert await _listed(registry, "r/p") == ["latest", "v1.1"]


async def test_conditions_in_one_rule_are_and_ed(registry: Registry, driver: StorageDriver) -> None:
    # "the 3 newest, but only within 4h30m": 5 tags pushed 6h .. 2h ago -> the newest 3, of which 3 are recent
    await _tags(registry, "r/and", "a", "b", "c", "d", "e")
    await _enforce(driver, _policy(keep=[{"mostrecentlypushed": 3, "pushedwithin": "3h30m"}]))
    assert await _listed(registry, "r/and") == ["d", "e"]


async def test_keep_pulled_within(registry: Registry, driver: StorageDriver) -> None:
    await _tags(registry, "r/pull", "used", "unused")
    await registry.get_manifest("r/pull", "used")  # a pull now
    await _enforce(driver, _policy(keep=[{"pulledwithin": "1h"}]))
    assert await _listed(registry, "r/pull") == ["used"]


async def test_most_recently_pulled(registry: Registry, driver: StorageDriver) -> None:
    await _tags(registry, "r/mrp", "x", "y", "z")
    await registry.get_manifest("r/mrp", "x")
    await _enforce(driver, _policy(keep=[{"mostrecentlypulled": 1}]))
    assert await _listed(registry, "r/mrp") == ["x"]


async def test_dryrun_policy_and_repository_globs(registry: Registry, driver: StorageDriver) -> None:
    await _tags(registry, "team/a/app", "1", "2")
    await _tags(registry, "team/b", "1", "2")
    await _tags(registry, "other", "1", "2")
    policies = (
        _policy(repositories=["team/*/**"], keep=[{"mostrecentlypushed": 1}]),
        _policy(repositories=["team/*"], keep=[{"mostrecentlypushed": 1}], dryrun=True),
    )
    await collect(driver, retention=policies)
    report = await collect(driver, retention=policies)
    assert await _listed(registry, "team/a/app") == ["2"]
    assert await _listed(registry, "team/b") == ["1", "2"]  # dry forever, but logged
    assert [t for t, _ in report.repositories["team/b"].untagged] == ["1"]
    assert await _listed(registry, "other") == ["1", "2"]  # no policy matches it


async def test_policy_delete_untagged_and_fallback_tags(registry: Registry, driver: StorageDriver) -> None:
    digests = await _tags(registry, "r/fb", "v1", "v2")
    untagged = await push(registry, "r/fb", buildkit.single_image("amd64", marker="loose"))
    fallback_tag = digests["v2"].replace(":", "-")
    index = buildkit.indented({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []})
    await registry.put_manifest("r/fb", fallback_tag, index, mediatypes.OCI_INDEX)
    age(driver, 2 * HOUR)
    await _enforce(driver, _policy(keep=[{"tags": "^v2$"}], deleteuntagged=True))
    assert await _listed(registry, "r/fb") == [fallback_tag, "v2"]  # no rule removes a fallback tag
    assert not await manifest_ok(registry, "r/fb", untagged)


async def test_size_cap_evicts_the_least_recently_pulled(registry: Registry, driver: StorageDriver) -> None:
    caches = [varied_cache(build, image_manifest=build % 2 == 0) for build in range(1, 6)]
    digests = [await push(registry, "cache/app", cache, "buildcache") for cache in caches]  # the tag moves
    age(driver, 10 * HOUR)
    for hours, digest in enumerate(reversed(digests)):  # pushed 5h .. 1h past the grace period
        stamp(driver, paths.manifest_revision_link("cache/app", Digest.parse(digest)), (hours + 2) * HOUR)
    await registry.get_manifest("cache/app", digests[1])  # build 2 was pulled (imported) just now
    one = sum(len(b) for b in caches[-1].blobs.values()) + len(caches[-1].root[0])
    policy = _policy(repositories=["cache/**"], sizecap=int(one * 2.2))

    report = await _enforce(driver, policy)

    kept = [d for d in digests if await manifest_ok(registry, "cache/app", d)]
    assert kept == [digests[1], digests[4]]  # the newest always, then the most recently pulled
    assert await manifest_ok(registry, "cache/app", "buildcache")
    assert report.blobs_deleted > 0


async def test_size_cap_always_keeps_the_newest(registry: Registry, driver: StorageDriver) -> None:
    old = await push(registry, "cache/tiny", varied_cache(1, image_manifest=True))
    age(driver, 10 * HOUR)
    newest = await push(registry, "cache/tiny", varied_cache(2, image_manifest=False))
    await registry.get_manifest("cache/tiny", old)  # pulled more recently than the newest was pushed
    age(driver, 3 * HOUR)
    await _enforce(driver, _policy(sizecap="1B"))
    assert await manifest_ok(registry, "cache/tiny", newest)  # the last cache still imports
    assert not await manifest_ok(registry, "cache/tiny", old)
