"""A collection spools registry:2 ``delete`` events for the tags retention removed and the manifests it
deleted, for the endpoints that take deletes, on every driver."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from app import gc
from app.config import Settings
from app.images import buildkit
from app.notify import collection
from storage import Registry, Spool, StorageDriver, paths
from storage.gc import collector
from storage.gc.config import RetentionPolicy
from tests.storage.gctree import HOUR, age, push, stamp


def _settings(driver_name: str, root: str) -> Settings:
    storage: dict[str, Any] = {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}}
    if driver_name != "filesystem":
        storage[driver_name] = None
    endpoints = [
        {"name": "hook", "url": "http://receiver.test/events"},
        {"name": "pushes", "url": "http://receiver.test/pushes", "ignore": {"actions": ["delete"]}},
        {"name": "off", "url": "http://receiver.test/off", "disabled": True},
    ]
    return Settings.model_validate({"storage": storage, "notifications": {"endpoints": endpoints}})


async def _events(driver: StorageDriver, endpoint: str) -> list[dict[str, Any]]:
    spool = Spool.of_endpoint(driver, endpoint)
    bodies = [await spool.read(entry) for entry in await spool.pending()]
    return [json.loads(body) for body in bodies if body is not None]


async def test_removed_tags_and_deleted_manifests_become_delete_events(
    registry: Registry, driver: StorageDriver, driver_name: str, root: str
) -> None:
    old = await push(registry, "r/app", buildkit.single_image("amd64", marker="old"), "old")
    new = await push(registry, "r/app", buildkit.single_image("amd64", marker="new"), "new")
    untagged = await push(registry, "r/other", buildkit.single_image("arm64", marker="untagged"))
    await push(registry, "r/other", buildkit.single_image("arm64", marker="kept"), "kept")
    age(driver, 10 * HOUR)
    stamp(driver, paths.tag_current_link("r/app", "new"), 5 * HOUR)  # the most recently pushed
    policy = RetentionPolicy.model_validate(
        {"repositories": ["r/app"], "keep": [{"mostrecentlypushed": 1}], "deleteuntagged": True}
    )
    settings = _settings(driver_name, root)
    options = collector.Settings(grace=HOUR, delete_untagged=True, retention=(policy,))

    # A dry run (which is also the new policy's first, dry, run) changes nothing: no events.
    dry = await gc.collected(settings, driver, dataclasses.replace(options, dry_run=True))
    assert dry.tags_removed == 1 and dry.manifests_deleted == 2 and await _events(driver, "hook") == []
    report = await gc.collected(settings, driver, options)  # the old tag goes, then its manifest

    assert report.tags_removed == 1 and report.manifests_deleted == 2
    events = await _events(driver, "hook")
    assert [(e["action"], e["target"]) for e in events] == [
        ("delete", {"repository": "r/app", "tag": "old"}),
        ("delete", {"repository": "r/app", "digest": old}),
        ("delete", {"repository": "r/other", "digest": untagged}),
    ]
    assert new not in {e["target"].get("digest") for e in events}
    assert {e["request"]["id"] for e in events} == {events[0]["request"]["id"]}  # one per run
    first = events[0]
    assert first["request"]["method"] == "" and first["request"]["useragent"] == "kura-gc"
    assert first["actor"] == {} and first["source"]["addr"].endswith(":5000")
    assert len({e["id"] for e in events}) == 3
    assert await _events(driver, "pushes") == []  # it ignores deletes
    assert await _events(driver, "off") == []


async def test_many_events_are_spooled_at_once_in_event_order(
    registry: Registry, driver: StorageDriver, driver_name: str, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "BATCH", 5)  # several batches, each with appends in flight together
    gone = [await push(registry, f"r/many{i:02d}", buildkit.single_image("arm64", marker=f"m{i}")) for i in range(12)]
    age(driver, 10 * HOUR)

    report = await gc.collected(
        _settings(driver_name, root), driver, collector.Settings(grace=HOUR, delete_untagged=True)
    )

    assert report.manifests_deleted == 12
    events = await _events(driver, "hook")
    assert [e["target"] for e in events] == [{"repository": f"r/many{i:02d}", "digest": d} for i, d in enumerate(gone)]


async def test_a_run_whose_events_cannot_be_spooled_still_stands(
    registry: Registry, driver: StorageDriver, driver_name: str, root: str, caplog: pytest.LogCaptureFixture
) -> None:
    untagged = await push(registry, "r/full", buildkit.single_image("arm64", marker="gone"))
    age(driver, 10 * HOUR)

    class FullDisk:
        def __getattr__(self, name: str) -> object:
            return getattr(driver, name)

        async def put_content(self, path: str, data: bytes, *, durable: bool = True) -> None:
            if path.startswith("kura/notifications/"):
                raise OSError(28, "No space left on device")
            await driver.put_content(path, data, durable=durable)

    options = collector.Settings(grace=HOUR, delete_untagged=True)
    report = await gc.collected(_settings(driver_name, root), FullDisk(), options)  # type: ignore[arg-type]

    assert report.manifests_deleted == 1 and not report.dry_run
    assert [str(d) for d in report.repositories["r/full"].manifests] == [untagged]
    assert "notification events could not all be spooled" in caplog.text
