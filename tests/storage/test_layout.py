"""The on-disk tree and link bytes are registry:2's, exactly."""

from __future__ import annotations

import os

from storage import fs
from storage.digest import Digest
from storage.paths import Paths

D = Digest("sha256", "ab" + "c" * 62)


def test_paths_match_registry2(tmp_path: os.PathLike[str]) -> None:
    p = Paths("/r")
    v2 = "/r/docker/registry/v2"
    assert p.blob_data(D) == f"{v2}/blobs/sha256/ab/{D.hex}/data"
    assert p.layer_link("a/b", D) == f"{v2}/repositories/a/b/_layers/sha256/{D.hex}/link"
    assert p.manifest_revision_link("a", D) == f"{v2}/repositories/a/_manifests/revisions/sha256/{D.hex}/link"
    assert p.tag_current_link("a", "t") == f"{v2}/repositories/a/_manifests/tags/t/current/link"
    assert p.tag_index_link("a", "t", D) == f"{v2}/repositories/a/_manifests/tags/t/index/sha256/{D.hex}/link"
    assert p.upload_data("a", "u") == f"{v2}/repositories/a/_uploads/u/data"
    assert p.upload_started_at("a", "u") == f"{v2}/repositories/a/_uploads/u/startedat"


def test_link_is_digest_without_newline(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "x", "link")
    fs.write_link(path, D)
    with open(path, "rb") as f:
        assert f.read() == f"sha256:{D.hex}".encode()
    assert os.path.getsize(path) == 71
    assert fs.read_link(path) == D


def test_write_atomic_leaves_no_temp_files(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "d", "f")
    fs.write_atomic(path, b"one")
    fs.write_atomic(path, b"two")
    assert os.listdir(os.path.dirname(path)) == ["f"]
    with open(path, "rb") as f:
        assert f.read() == b"two"


def test_corrupt_or_missing_link_reads_as_none(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "link")
    assert fs.read_link(path) is None
    with open(path, "wb") as f:
        f.write(b"garbage")
    assert fs.read_link(path) is None


def test_link_with_trailing_newline_is_read(tmp_path: os.PathLike[str]) -> None:
    """Hand-written links (echo > link) still resolve."""
    path = os.path.join(tmp_path, "link")
    with open(path, "wb") as f:
        f.write(f"{D}\n".encode())
    assert fs.read_link(path) == D
