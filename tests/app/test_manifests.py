from __future__ import annotations

import json

import httpx
import pytest

from app.config import Settings
from tests.conftest import client_of, started
from tests.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    index_of,
    push_blob,
    push_image,
    random_image,
    sha256,
)


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


@pytest.mark.parametrize("docker", [False, True])
async def test_put_get_head_byte_exact(client: httpx.AsyncClient, docker: bool) -> None:
    image = random_image(seed=1, docker=docker)
    digest = await push_image(client, "a/b", image, "v1")
    for ref in ("v1", digest):
        # Whatever Accept says, the stored bytes and type come back.
        for accept in (None, "application/json", DOCKER_MANIFEST):
            headers = {"Accept": accept} if accept else {}
            r = await client.get(f"/v2/a/b/manifests/{ref}", headers=headers)
            assert r.status_code == 200 and r.content == image.manifest
            assert r.headers["content-type"] == image.media_type
            assert r.headers["docker-content-digest"] == digest
            assert r.headers["content-length"] == str(len(image.manifest))
        h = await client.head(f"/v2/a/b/manifests/{ref}")
        assert h.status_code == 200 and h.content == b""
        assert h.headers["content-length"] == str(len(image.manifest))
        assert h.headers["docker-content-digest"] == digest


async def test_if_none_match_is_a_304(client: httpx.AsyncClient) -> None:
    """As registry:2: If-None-Match naming the manifest's digest (quoted or bare) is a 304 without a
    body, by tag or digest; anything else is the manifest."""
    image = random_image(seed=4)
    digest = await push_image(client, "a/b", image, "v1")
    for ref in ("v1", digest):
        for method in ("GET", "HEAD"):
            for value in (f'"{digest}"', digest, f'W/"{digest}"', "*", f'"sha256:other", "{digest}"'):
                r = await client.request(method, f"/v2/a/b/manifests/{ref}", headers={"If-None-Match": value})
                assert r.status_code == 304 and r.content == b"", (ref, method, value)
                assert r.headers["etag"] == f'"{digest}"' and r.headers["docker-content-digest"] == digest
            r = await client.request(method, f"/v2/a/b/manifests/{ref}", headers={"If-None-Match": '"sha256:x"'})
            assert r.status_code == 200 and r.headers["content-length"] == str(len(image.manifest))
    r = await client.get(f"/v2/a/b/manifests/{sha256(b'none')}", headers={"If-None-Match": "*"})
    assert r.status_code == 404  # no 304 for what is not there


async def test_put_response_headers(client: httpx.AsyncClient) -> None:
    image = random_image(seed=2)
    for data in image.blobs.values():
        await push_blob(client, "r", data)
    r = await client.put("/v2/r/manifests/t", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert r.headers["docker-content-digest"] == image.digest
    assert r.headers["location"] == f"/v2/r/manifests/{image.digest}"
    assert "oci-subject" not in r.headers


@pytest.mark.parametrize("docker", [False, True])
async def test_index_round_trip(client: httpx.AsyncClient, docker: bool) -> None:
    images = [random_image(seed=s, docker=docker, arch=a) for s, a in ((3, "amd64"), (4, "arm64"))]
    for image in images:
        await push_image(client, "multi", image, tag=None)
    index = index_of(images, docker=docker)
    r = await client.put(
        "/v2/multi/manifests/latest", content=index, headers={"Content-Type": DOCKER_LIST if docker else OCI_INDEX}
    )
    assert r.status_code == 201, r.text
    g = await client.get("/v2/multi/manifests/latest")
    assert g.content == index and g.headers["content-type"] == (DOCKER_LIST if docker else OCI_INDEX)


async def test_index_with_missing_child(client: httpx.AsyncClient) -> None:
    index = index_of([random_image(seed=5)])
    r = await client.put("/v2/r/manifests/t", content=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


async def test_missing_blob(client: httpx.AsyncClient) -> None:
    image = random_image(seed=6)
    r = await client.put("/v2/r/manifests/t", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert r.json()["errors"][0]["detail"]["digest"] in image.blobs


async def test_invalid_manifests(client: httpx.AsyncClient) -> None:
    image = random_image(seed=7)
    await push_image(client, "r", image)
    cases = [
        (b"{not json", OCI_MANIFEST, "MANIFEST_INVALID"),
        (b"[]", OCI_MANIFEST, "MANIFEST_INVALID"),
        (image.manifest, OCI_INDEX, "MANIFEST_INVALID"),
        (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), None, "MANIFEST_INVALID"),
        (b'{"schemaVersion":2,"mediaType":"application/x-unknown"}', None, "MANIFEST_INVALID"),
    ]
    for body, content_type, code in cases:
        headers = {"Content-Type": content_type} if content_type else {}
        r = await client.put("/v2/r/manifests/t", content=body, headers=headers)
        assert r.status_code == 400 and error_code(r) == code, (body, r.text)


async def test_schema1_message_says_so(client: httpx.AsyncClient) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "r", "tag": "t"}).encode()
    r = await client.put(
        "/v2/r/manifests/t",
        content=body,
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
    )
    assert r.status_code == 400 and "schema 1" in r.json()["errors"][0]["message"]


async def test_content_type_fallback_to_media_type(client: httpx.AsyncClient) -> None:
    image = random_image(seed=8)
    for data in image.blobs.values():
        await push_blob(client, "r", data)
    r = await client.put("/v2/r/manifests/t", content=image.manifest)
    assert r.status_code == 201


async def test_too_large(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/v2/r/manifests/t", content=b" " * (4 * 1024 * 1024 + 1), headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"


async def test_reference_grammar(client: httpx.AsyncClient) -> None:
    image = random_image(seed=9)
    r = await client.get("/v2/r/manifests/-bad-")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.head("/v2/r/manifests/sha256:short")
    assert r.status_code == 404
    r = await client.put("/v2/r/manifests/-bad-", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "TAG_INVALID"
    r = await client.put("/v2/r/manifests/sha256:short", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = await client.put(
        f"/v2/r/manifests/{sha256(b'x')}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


async def test_manifest_unknown(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/r/manifests/latest")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.get(f"/v2/r/manifests/{sha256(b'x')}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"


async def test_delete_tag_and_digest(client: httpx.AsyncClient) -> None:
    image = random_image(seed=10)
    digest = await push_image(client, "r", image, "a")
    await client.put("/v2/r/manifests/b", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert (await client.delete("/v2/r/manifests/a")).status_code == 202
    assert (await client.get("/v2/r/manifests/a")).status_code == 404
    assert (await client.get("/v2/r/manifests/b")).status_code == 200
    assert (await client.delete(f"/v2/r/manifests/{digest}")).status_code == 202
    assert (await client.get("/v2/r/manifests/b")).status_code == 404
    assert (await client.get(f"/v2/r/manifests/{digest}")).status_code == 404
    listing = await client.get("/v2/r/tags/list")
    # Drivers without directories (in-memory, object stores) forget a repository with nothing in it.
    assert listing.json() == {"name": "r", "tags": []} or error_code(listing) == "NAME_UNKNOWN"
    r = await client.delete("/v2/r/manifests/a")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"


async def test_deletes_disabled(settings: Settings) -> None:
    settings.storage.delete.enabled = False
    async with started(settings) as app, client_of(app) as c:
        image = random_image(seed=11)
        digest = await push_image(c, "r", image)
        for path in ("/v2/r/manifests/latest", f"/v2/r/manifests/{digest}", f"/v2/r/blobs/{sha256(image.config)}"):
            r = await c.delete(path)
            assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"
        assert (await c.get("/v2/r/manifests/latest")).status_code == 200


async def test_read_only_mode(settings: Settings) -> None:
    settings.storage.maintenance.readonly.enabled = True
    async with started(settings) as app, client_of(app) as c:
        r = await c.post("/v2/r/blobs/uploads/")
        assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"


async def test_subject_is_accepted_before_it_exists(client: httpx.AsyncClient) -> None:
    empty = await push_blob(client, "r", b"{}")
    subject = sha256(b"not pushed yet")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example+type",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 10},
        }
    ).encode()
    r = await client.put(
        f"/v2/r/manifests/{sha256(manifest)}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201 and r.headers["oci-subject"] == subject


async def test_inline_data_descriptor_needs_no_upload(client: httpx.AsyncClient) -> None:
    """BuildKit's OCI-artifact attestations embed the 2-byte empty config as ``data``."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.empty.v1+json", b"{}", data="e30="),
            "layers": [],
        }
    ).encode()
    r = await client.put("/v2/r/manifests/t", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert (await client.get(f"/v2/r/blobs/{sha256(b'{}')}")).content == b"{}"


async def test_sha512_manifest(client: httpx.AsyncClient) -> None:
    import hashlib

    image = random_image(seed=12)
    await push_image(client, "r", image)
    digest = "sha512:" + hashlib.sha512(image.manifest).hexdigest()
    r = await client.put(f"/v2/r/manifests/{digest}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201 and r.headers["docker-content-digest"] == digest
    g = await client.get(f"/v2/r/manifests/{digest}")
    assert g.content == image.manifest


async def test_numbers_must_be_json_integers(client: httpx.AsyncClient) -> None:
    image = random_image(seed=15)
    await push_image(client, "r", image)
    doc = json.loads(image.manifest)
    for size in (True, "6", 6.0, 2**63, -1):
        layers = [doc["layers"][0] | {"size": size}]
        r = await client.put(
            "/v2/r/manifests/t",
            content=json.dumps(doc | {"layers": layers}).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", (size, r.text)
        assert r.json()["errors"][0]["detail"]["field"] == "layers.0.size"
    for version in (2.0, True, "2", 3):
        r = await client.put(
            "/v2/r/manifests/t",
            content=json.dumps(doc | {"schemaVersion": version}).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", (version, r.text)
    layers = [doc["layers"][0] | {"size": 2**63 - 1}]
    r = await client.put(
        "/v2/r/manifests/t",
        content=json.dumps(doc | {"layers": layers}).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text


async def test_non_json_numbers_and_lone_surrogates_are_refused(client: httpx.AsyncClient) -> None:
    """NaN, Infinity and lone surrogate escapes are not stored: nothing could serve them as JSON again."""
    empty = await push_blob(client, "r", b"{}")
    subject = await push_image(client, "r", random_image(seed=13), "base")

    def manifest(extra: str) -> bytes:
        config = json.dumps({"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2})
        subject_field = json.dumps({"mediaType": OCI_MANIFEST, "digest": subject, "size": 1})
        return (
            f'{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[],'
            f'"subject":{subject_field},{extra}}}'
        ).encode()

    refused = [
        manifest('"x":NaN'),
        manifest('"x":[Infinity]'),
        manifest('"x":-Infinity'),
        manifest('"annotations":{"k":"\\ud800"}'),
        manifest('"annotations":{"\\uDC00":"v"}'),
        manifest('"annotations":{"k":"\\ude00\\ud83d"}'),
        b'{"schemaVersion":2,"mediaType":"\\ud800","manifests":[]}',  # was echoed in the error detail: a 500
    ]
    for body in refused:
        r = await client.put("/v2/r/manifests/t", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", (body, r.text)
    # A paired escape is one character (an emoji); an escaped backslash before "u" is no escape.
    for body in (manifest('"annotations":{"k":"\\ud83d\\ude00"}'), manifest('"annotations":{"k":"\\\\ud800"}')):
        r = await client.put("/v2/r/manifests/t", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
    referrers = await client.get(f"/v2/r/referrers/{subject}")
    assert referrers.status_code == 200 and len(referrers.json()["manifests"]) == 2


async def test_a_manifest_is_served_as_the_type_it_was_validated_as(client: httpx.AsyncClient) -> None:
    """CVE-2021-41190: no body is both an image manifest and an index, whatever Content-Type says."""
    image = random_image(seed=14)
    await push_image(client, "r", image)
    doc = json.loads(image.manifest)
    child = descriptor(OCI_MANIFEST, b"never pushed")
    bare = {k: v for k, v in doc.items() if k != "mediaType"}
    cases = [
        (bare | {"manifests": [child]}, OCI_MANIFEST),  # was validated as an image, served as an index
        (doc | {"manifests": [child]}, None),
        (doc | {"manifests": []}, OCI_MANIFEST),
        ({"schemaVersion": 2, "manifests": [], "config": doc["config"]}, OCI_INDEX),
        ({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "layers": []}, None),
        ({"schemaVersion": 2, "manifests": []}, DOCKER_LIST),  # was served as an OCI index
        (bare, DOCKER_MANIFEST),
        (bare | {"mediaType": ""}, DOCKER_MANIFEST),
    ]
    for body, content_type in cases:
        headers = {"Content-Type": content_type} if content_type else {}
        r = await client.put("/v2/r/manifests/t", content=json.dumps(body).encode(), headers=headers)
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", (body, r.text)
        assert "mediaType" in r.json()["errors"][0]["message"] or "must not have" in r.json()["errors"][0]["message"]
    assert (await client.get("/v2/r/manifests/t")).status_code == 404
    # null is no value, as for registry:2's omitempty fields.
    r = await client.put(
        "/v2/r/manifests/t",
        content=json.dumps(bare | {"manifests": None}).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    assert (await client.get("/v2/r/manifests/t")).headers["content-type"] == OCI_MANIFEST


async def test_a_refused_manifest_writes_nothing(client: httpx.AsyncClient) -> None:
    """An inline config is stored only once every check passed: else the repository would exist, empty."""
    inline = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.empty.v1+json", b"{}", data="e30="),
        "layers": [],
    }
    missing_layer = inline | {"layers": [descriptor(OCI_LAYER, b"never pushed")]}
    bad_subject = inline | {"subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:zz", "size": 1}}
    for doc, code in ((missing_layer, "MANIFEST_BLOB_UNKNOWN"), (bad_subject, "MANIFEST_INVALID")):
        r = await client.put(
            "/v2/fresh/manifests/t", content=json.dumps(doc).encode(), headers={"Content-Type": OCI_MANIFEST}
        )
        assert r.status_code == 400 and error_code(r) == code, r.text
        assert "fresh" not in (await client.get("/v2/_catalog")).json()["repositories"]
        assert (await client.head(f"/v2/fresh/blobs/{sha256(b'{}')}")).status_code == 404
