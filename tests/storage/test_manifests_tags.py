from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest

from storage import Registry, StorageDriver, catalog, paths
from storage.drivers import FilesystemDriver
from storage.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    TagInvalid,
    Unsupported,
)
from storage.names import Name
from tests.oci import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, Image, descriptor, index_of, random_image, sha256, stored


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def store(registry: Registry, repo: str, image: Image, tag: str = "latest") -> str:
    for digest, data in image.blobs.items():
        await registry.put_blob(repo, digest, once(data))
    m = await registry.put_manifest(repo, tag, image.manifest, image.media_type)
    return str(m.digest)


async def test_manifest_is_stored_byte_exact_and_tagged(registry: Registry) -> None:
    image = random_image(seed=1)
    digest = await store(registry, "r", image)
    assert digest == image.digest
    for ref in ("latest", digest):
        m = await registry.get_manifest("r", ref)
        assert m.body == image.manifest and m.media_type == OCI_MANIFEST
    r = Name("r")
    assert await stored(registry.driver, paths.tag_current_link(r, "latest")) == digest.encode()
    assert await stored(registry.driver, paths.tag_index_link(r, "latest", m.digest)) == digest.encode()
    assert await stored(registry.driver, paths.blob_data(m.digest)) == image.manifest


async def test_missing_layer_is_manifest_blob_unknown(registry: Registry) -> None:
    image = random_image(seed=2)
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest("r", "t", image.manifest, image.media_type)


async def test_blob_of_another_repository_does_not_count(registry: Registry) -> None:
    image = random_image(seed=3)
    await store(registry, "other", image)
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest("r", "t", image.manifest, image.media_type)


async def test_foreign_layers_need_not_exist(registry: Registry) -> None:
    config = b'{"architecture":"amd64","os":"windows"}'
    await registry.put_blob("r", sha256(config), once(config))
    foreign = descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", b"x", urls=["https://e.x/l"])
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor("x/c", config), "layers": [foreign]}
    ).encode()
    await registry.put_manifest("r", "win", manifest, None)


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    ],
)
async def test_only_non_distributable_layers_with_urls_need_not_exist(registry: Registry, media_type: str) -> None:
    """URLs excuse a missing blob only where clients download from them (registry:2's rules for them too)."""
    config = b'{"architecture":"amd64","os":"windows"}'
    await registry.put_blob("r", sha256(config), once(config))

    def manifest(config_descriptor: dict[str, object], layer: dict[str, object]) -> bytes:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor, "layers": [layer]}
        return json.dumps(doc).encode()

    pushed = descriptor("x/c", config)
    urls = ["https://e.x/l"]
    await registry.put_manifest("r", "ok", manifest(pushed, descriptor(media_type, b"x", urls=urls)), None)
    missing = [
        manifest(descriptor("x/c", b"no config", urls=urls), descriptor(media_type, b"x", urls=urls)),
        manifest(pushed, descriptor("application/vnd.oci.image.layer.v1.tar+gzip", b"x", urls=urls)),
        manifest(pushed, descriptor(media_type, b"x", urls=[])),
    ]
    for body in missing:
        with pytest.raises(ManifestBlobUnknown):
            await registry.put_manifest("r", "t", body, None)
    for url in ("ftp://e.x/l", "https://e.x/l#part", "/relative", "http://[::1/l"):
        with pytest.raises(ManifestInvalid, match="http or https"):
            await registry.put_manifest(
                "r", "t", manifest(pushed, descriptor(media_type, b"x", urls=[*urls, url])), None
            )
    bad_digest = descriptor(media_type, b"x", urls=urls) | {"digest": "sha256:zz"}
    with pytest.raises(ManifestInvalid, match="invalid digest"):
        await registry.put_manifest("r", "t", manifest(pushed, bad_digest), None)


async def test_index_children_may_be_manifests_or_blobs(registry: Registry) -> None:
    """registry:2 semantics that BuildKit's legacy cache index relies on."""
    image = random_image(seed=4)
    await store(registry, "r", image, "child")
    blob = b"cache layer"
    await registry.put_blob("r", sha256(blob), once(blob))
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, image.manifest), descriptor("application/x-layer", blob)],
        }
    ).encode()
    m = await registry.put_manifest("r", "cache", index, OCI_INDEX)
    assert (await registry.get_manifest("r", "cache")).body == index
    missing = index_of([random_image(seed=5)])
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest("r", "bad", missing, OCI_INDEX)
    assert m.media_type == OCI_INDEX


async def test_media_type_rules(registry: Registry) -> None:
    image = random_image(seed=6)
    await store(registry, "r", image)
    with pytest.raises(ManifestInvalid, match="does not match"):
        await registry.put_manifest("r", "t", image.manifest, DOCKER_LIST)
    schema1 = json.dumps({"schemaVersion": 1, "name": "r", "tag": "t", "fsLayers": []}).encode()
    with pytest.raises(ManifestInvalid, match="schema 1"):
        await registry.put_manifest("r", "t", schema1, None)
    with pytest.raises(ManifestInvalid):
        await registry.put_manifest("r", "t", b"not json", None)
    with pytest.raises(ManifestInvalid):
        await registry.put_manifest(
            "r", "t", b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'"}', None
        )


async def test_no_media_type_anywhere_is_detected(registry: Registry) -> None:
    image = random_image(seed=7)
    doc = json.loads(image.manifest)
    del doc["mediaType"]
    body = json.dumps(doc).encode()
    await store(registry, "r", image)
    m = await registry.put_manifest("r", "bare", body, None)
    assert m.media_type == OCI_MANIFEST
    assert (await registry.get_manifest("r", "bare")).media_type == OCI_MANIFEST


async def test_put_by_digest_checks_the_digest(registry: Registry) -> None:
    image = random_image(seed=8)
    await store(registry, "r", image)
    with pytest.raises(DigestInvalid):
        await registry.put_manifest("r", sha256(b"else"), image.manifest, image.media_type)
    m = await registry.put_manifest("r", image.digest, image.manifest, image.media_type)
    assert str(m.digest) == image.digest


async def test_invalid_references(registry: Registry) -> None:
    image = random_image(seed=9)
    with pytest.raises(TagInvalid):
        await registry.put_manifest("r", "-bad", image.manifest, None)
    with pytest.raises(DigestInvalid):
        await registry.put_manifest("r", "sha256:zz", image.manifest, None)
    with pytest.raises(ManifestUnknown):
        await registry.get_manifest("r", "-bad")


async def test_delete_by_tag_keeps_the_manifest(registry: Registry) -> None:
    image = random_image(seed=10)
    digest = await store(registry, "r", image, "a")
    await registry.put_manifest("r", "b", image.manifest, image.media_type)
    await registry.delete_manifest("r", "a")
    assert await registry.list_tags("r") == (["b"], False)
    assert (await registry.get_manifest("r", digest)).body == image.manifest


async def test_delete_by_digest_untags(registry: Registry) -> None:
    image = random_image(seed=11)
    digest = await store(registry, "r", image, "a")
    await registry.delete_manifest("r", digest)
    try:
        assert await registry.list_tags("r") == ([], False)
    except NameUnknown:
        # Drivers without directories (in-memory, object stores) forget a repository with nothing in it.
        assert registry.driver.name != "filesystem"
    with pytest.raises(ManifestUnknown):
        await registry.get_manifest("r", digest)
    with pytest.raises(ManifestUnknown):
        await registry.delete_manifest("r", digest)


async def test_deletes_can_be_disabled(driver: StorageDriver) -> None:
    reg = Registry(driver)
    reg.options = type(reg.options)(delete_enabled=False)
    with pytest.raises(Unsupported):
        await reg.delete_manifest("r", "t")


async def test_tags_sorted_and_unknown_repository(registry: Registry) -> None:
    image = random_image(seed=12)
    for tag in ["b", "a", "C", "10"]:
        await store(registry, "r", image, tag)
    assert await registry.list_tags("r") == (["10", "C", "a", "b"], False)
    assert await registry.list_tags("r", 2) == (["10", "C"], True)
    assert await registry.list_tags("r", 2, "C") == (["a", "b"], False)
    assert await registry.list_tags("r", None, "Bz") == (["C", "a", "b"], False)
    with pytest.raises(NameUnknown):
        await registry.list_tags("nope")


async def test_catalog_order_is_component_wise(registry: Registry) -> None:
    image = random_image(seed=13)
    for repo in ["a-c", "a/b", "a", "b/x/y", "b"]:
        await store(registry, repo, image)
    for marker in ("only-blobs/_layers/x", "only-uploads/_uploads/x"):
        await registry.driver.put_content(paths.join(paths.REPOSITORIES, marker), b"")

    async def walk(after: str | None = None) -> list[str]:
        return [name async for name in catalog.walk(registry.driver, after)]

    assert await walk() == ["a", "a/b", "a-c", "b", "b/x/y", "only-blobs"]
    assert await walk(after="a/b") == ["a-c", "b", "b/x/y", "only-blobs"]
    assert await walk(after="b") == ["b/x/y", "only-blobs"]
    page, more = await registry.list_repositories(2, None)
    assert (page, more) == (["a", "a/b"], True)


async def test_tag_listing_cache_sees_new_and_removed_tags(root: str) -> None:
    """A cached listing is dropped as soon as a tag is added or removed, even from another process."""
    registry = Registry(FilesystemDriver(root))
    image = random_image(seed=14)
    await store(registry, "r", image, "a")
    tags_dir = os.path.join(root, paths.tags(Name("r")))
    os.utime(tags_dir, ns=(0, 10**9))  # an old mtime: the listing may be cached
    assert (await registry.list_tags("r"))[0] == ["a"]
    other = Registry(FilesystemDriver(root))  # another worker
    await other.put_manifest("r", "b", image.manifest, image.media_type)
    assert (await registry.list_tags("r"))[0] == ["a", "b"]
    os.utime(tags_dir, ns=(0, 2 * 10**9))
    assert (await registry.list_tags("r"))[0] == ["a", "b"]
    await other.delete_manifest("r", "a")
    assert (await registry.list_tags("r"))[0] == ["b"]
