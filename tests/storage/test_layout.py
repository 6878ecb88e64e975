"""The on-disk tree and link bytes are registry:2's, exactly."""

from __future__ import annotations

import os
import posixpath

import pytest

from storage import StorageDriver, links, paths
from storage.digest import Digest
from storage.drivers import FilesystemDriver
from storage.names import Name

D = Digest("sha256", "ab" + "c" * 62)


def test_paths_match_registry2() -> None:
    p = paths
    a, u = Name("a"), "u"
    v2 = "docker/registry/v2"
    assert p.blob_data(D) == f"{v2}/blobs/sha256/ab/{D.hex}/data"
    assert p.layer_link(Name("a/b"), D) == f"{v2}/repositories/a/b/_layers/sha256/{D.hex}/link"
    assert p.manifest_revision_link(a, D) == f"{v2}/repositories/a/_manifests/revisions/sha256/{D.hex}/link"
    assert p.tag_current_link(a, "t") == f"{v2}/repositories/a/_manifests/tags/t/current/link"
    assert p.tag_index_link(a, "t", D) == f"{v2}/repositories/a/_manifests/tags/t/index/sha256/{D.hex}/link"
    assert p.upload_data(a, u) == f"{v2}/repositories/a/_uploads/u/data"
    assert p.upload_started_at(a, u) == f"{v2}/repositories/a/_uploads/u/startedat"


async def test_link_is_digest_without_newline(root: str) -> None:
    driver = FilesystemDriver(root)
    await links.write(driver, "x/link", D)
    with open(os.path.join(root, "x", "link"), "rb") as f:
        assert f.read() == f"sha256:{D.hex}".encode()
    assert os.path.getsize(os.path.join(root, "x", "link")) == 71
    assert await links.read(driver, "x/link") == D
    await driver.close()


async def test_put_content_leaves_no_temp_files(root: str) -> None:
    """Temporary files live under kura/tmp (invisible to registry:2), never beside the target."""
    driver = FilesystemDriver(root)
    await driver.put_content("d/f", b"one")
    await driver.put_content("d/f", b"two")
    assert os.listdir(os.path.join(root, "d")) == ["f"]
    assert os.listdir(os.path.join(root, "kura", "tmp")) == []
    with open(os.path.join(root, "d", "f"), "rb") as f:
        assert f.read() == b"two"
    await driver.close()


@pytest.mark.parametrize("raw", [b"garbage", f"{D}\n".encode()], ids=["corrupt", "newline"])
async def test_corrupt_missing_and_hand_written_links(driver: StorageDriver, raw: bytes) -> None:
    """A missing or corrupt link reads as none; a hand-written one (echo > link) still resolves."""
    assert await links.read(driver, "link") is None
    await driver.put_content("link", raw)
    assert await links.read(driver, "link") == (None if raw == b"garbage" else D)


@pytest.mark.parametrize("name", ["a", "a/b", "a//b", "/abs", "trail/", "", "."])
def test_paths_formatted_directly_are_joins(name: str) -> None:
    """The per-request paths skip posixpath.join only where it would give the same string."""
    repository = posixpath.join(paths.REPOSITORIES, name)
    assert paths.repository(name) == repository
    assert paths.manifests(name) == posixpath.join(repository, "_manifests")
    assert paths.tags(name) == posixpath.join(repository, "_manifests", "tags")
    assert paths.tag_current_link(name, "t") == posixpath.join(repository, "_manifests", "tags", "t", "current", "link")
    assert paths.layer_link(name, D) == posixpath.join(repository, "_layers", "sha256", D.hex, "link")
