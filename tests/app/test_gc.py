"""Garbage collection from the outside: the touch protocol over HTTP, the config section, the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app.cli import main
from app.config import Settings, load
from app.images import buildkit
from storage import Registry, StorageDriver, paths
from storage.digest import Digest
from storage.drivers import FilesystemDriver
from storage.gc import state as gc_state
from tests.conftest import started
from tests.oci import push_blob
from tests.storage.gctree import HOUR, age, collect, push


def _driver(app: Starlette) -> StorageDriver:
    reg: Registry = app.state.registry
    return reg.driver


async def _mtime(driver: StorageDriver, digest: str) -> int:
    info = await driver.stat(paths.blob_data(Digest.parse(digest)))
    assert info.mtime_ns is not None
    return info.mtime_ns


async def test_head_get_and_mount_touch_what_they_report(client: httpx.AsyncClient, app: Starlette) -> None:
    driver = _driver(app)
    digests = [await push_blob(client, "t/src", f"blob {i}".encode()) for i in range(3)]
    age(driver, 2 * HOUR)
    before = await _mtime(driver, digests[0])
    assert (await client.head(f"/v2/t/src/blobs/{digests[0]}")).status_code == 200
    assert (await client.get(f"/v2/t/src/blobs/{digests[1]}")).status_code == 200
    r = await client.post(f"/v2/t/dst/blobs/uploads/?mount={digests[2]}&from=t/src")
    assert r.status_code == 201
    for digest in digests:
        assert await _mtime(driver, digest) > before + HOUR * 1e9
    fresh = await _mtime(driver, digests[0])
    assert (await client.head(f"/v2/t/src/blobs/{digests[0]}")).status_code == 200
    assert await _mtime(driver, digests[0]) == fresh  # rate-limited: no touch while recent


async def test_a_dedup_commit_touches_the_stored_blob(client: httpx.AsyncClient, app: Starlette) -> None:
    driver = _driver(app)
    digest = await push_blob(client, "t/dedup", b"same bytes")
    age(driver, 2 * HOUR)
    before = await _mtime(driver, digest)
    assert await push_blob(client, "t/other", b"same bytes") == digest
    assert await _mtime(driver, digest) > before + HOUR * 1e9


async def test_a_swept_blob_is_unknown_everywhere(client: httpx.AsyncClient, app: Starlette) -> None:
    driver = _driver(app)
    digest = await push_blob(client, "t/gone", b"garbage")
    age(driver, 2 * HOUR)
    report = await collect(driver)
    assert report.blobs_deleted == 1
    assert (await client.head(f"/v2/t/gone/blobs/{digest}")).status_code == 404
    r = await client.post(f"/v2/t/x/blobs/uploads/?mount={digest}&from=t/gone")
    assert r.status_code == 202  # nothing to mount: an upload session instead
    config = buildkit.compact({"architecture": "amd64", "os": "linux"})
    config_digest = await push_blob(client, "t/gone", config)
    manifest = buildkit.compact(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 33},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": 7}],
        }
    )
    r = await client.put(
        "/v2/t/gone/manifests/v1",
        content=manifest,
        headers={"content-type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


def test_the_kura_section_and_upload_purging(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  maintenance:\n    uploadpurging:\n      age: 24h\n      dryrun: true\n"
        "kura:\n  gc:\n    enabled: true\n    grace: 1h30m\n  retention:\n"
        "    - repositories: ['cache/**']\n      sizecap: 2GiB\n      keep:\n        - mostrecentlypushed: 3\n"
    )
    settings = load(str(config), {"REGISTRY_KURA_GC_INTERVAL": "10m"})
    assert settings.kura.gc.enabled and settings.kura.gc.grace == 5400 and settings.kura.gc.interval == 600
    assert settings.storage.maintenance.uploadpurging.age == 86400
    assert settings.storage.maintenance.uploadpurging.dryrun
    policy = settings.kura.retention[0]
    assert policy.sizecap == 2 << 30 and policy.keep is not None and policy.keep[0].mostrecentlypushed == 3
    assert load(None, {}).kura.gc.enabled is False  # off by default


@pytest.mark.parametrize(
    "text",
    [
        "kura:\n  gc:\n    grace: soon\n",
        "kura:\n  retention:\n    - keep: []\n",
        "kura:\n  retention:\n    - keep:\n        - mostrecent: 3\n",  # a misspelt rule keeps nothing: refused
        "kura:\n  retention:\n    - keep:\n        - tags: '('\n",
        # Each of these escaped validation as a traceback (or, infinite, broke every worker's start)
        "kura:\n  gc:\n    grace: .inf\n",
        "kura:\n  gc:\n    grace: .nan\n",
        "kura:\n  gc:\n    grace: true\n",
        "kura:\n  gc:\n    grace: [1, 2]\n",
        f"kura:\n  gc:\n    grace: 1{'0' * 400}\n",
        f"kura:\n  gc:\n    grace: 1{'0' * 310}h\n",
        "storage:\n  maintenance:\n    uploadpurging:\n      age: .inf\n",
        "kura:\n  retention:\n    - keep:\n        - pushedwithin: [1]\n",
        "kura:\n  retention:\n    - sizecap: 1.5\n",
        "kura:\n  retention:\n    - sizecap: .inf\n",
        "kura:\n  retention:\n    - sizecap: [1]\n",
    ],
)
def test_bad_kura_sections_are_refused(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text(text)
    from app.config import ConfigError

    with pytest.raises(ConfigError):
        load(str(config), {})


async def _tree(root: str) -> tuple[str, str]:
    registry = Registry(FilesystemDriver(root))
    try:
        kept = await push(registry, "cli/app", buildkit.single_image("amd64", marker="kept"), "v1")
        gone = await push(registry, "cli/app", buildkit.single_image("amd64", marker="gone"))
        age(registry.driver, 3 * HOUR)
    finally:
        await registry.close()
    return kept, gone


def test_garbage_collect_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "root")
    kept, gone = asyncio.run(_tree(root))
    gone_path = os.path.join(root, paths.blob_data(Digest.parse(gone)))

    assert main(["garbage-collect", "--root", root, "--dry-run", "--delete-untagged"]) == 0
    out = capsys.readouterr().out
    assert "(dry run)" in out and "cli/app\n" in out and f"manifest {gone}" in out and "would remove" in out
    assert os.path.exists(gone_path)

    assert main(["garbage-collect", "--root", root, "-m", "--grace", "5h", "-q"]) == 0
    assert "removed 0 of" in capsys.readouterr().out and os.path.exists(gone_path)  # within 5h

    assert main(["garbage-collect", "--root", root, "-m", "--offline"]) == 0
    out = capsys.readouterr().out
    assert f"manifest {gone}" in out and not os.path.exists(gone_path)
    assert os.path.exists(os.path.join(root, paths.blob_data(Digest.parse(kept))))
    assert main(["garbage-collect", "--root", root, "--grace", "later"]) == 2


async def test_offline_collection_is_refused_while_a_server_serves_the_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "root")
    _, gone = await _tree(root)
    gone_path = os.path.join(root, paths.blob_data(Digest.parse(gone)))
    offline = ["garbage-collect", "--root", root, "-m", "--offline", "-q"]
    settings = Settings.model_validate({"storage": {"filesystem": {"rootdirectory": root}}})
    async with started(settings):
        assert await asyncio.to_thread(main, offline) == 1
        assert "a Kura server is serving this root" in capsys.readouterr().err
        assert os.path.exists(gone_path)
    assert await asyncio.to_thread(main, offline) == 0  # the server stopped
    assert not os.path.exists(gone_path)


async def test_a_collection_run_by_hand_beside_a_server_runs_as_the_servers_own(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    _, gone = await _tree(root)
    gone_path = os.path.join(root, paths.blob_data(Digest.parse(gone)))
    # A process of its own: the collector lowers its priority, which this one must keep.
    argv = [sys.executable, "-m", "app", "garbage-collect", "--root", root, "-m", "--grace", "1h"]

    def by_hand() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    alone = await asyncio.to_thread(by_hand)  # no server: at the priority it was started with
    assert alone.returncode == 0 and "the root is served" not in alone.stderr, alone.stderr
    assert f"manifest {gone}" in alone.stdout and not os.path.exists(gone_path)
    await _tree(root)  # the same images again, the untagged one aged past the grace period
    settings = Settings.model_validate({"storage": {"filesystem": {"rootdirectory": root}}})
    async with started(settings):  # it serves from this process, which holds the serving lock
        beside = await asyncio.to_thread(by_hand)
    assert beside.returncode == 0, beside.stderr
    assert f"the root is served (processes {os.getpid()}): collecting at " in beside.stderr
    assert "nice 19" in beside.stderr and "kura.gc.busycores 0.1" in beside.stderr
    assert f"manifest {gone}" in beside.stdout and not os.path.exists(gone_path)


async def test_a_server_does_not_start_during_an_offline_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "root")
    driver = FilesystemDriver(root)
    try:
        async with gc_state.alone(driver):
            assert await asyncio.to_thread(main, ["serve", "--root", root, "--port", "0"]) == 1
    finally:
        await driver.close()
    assert "an offline garbage collection runs on this root" in capsys.readouterr().err
