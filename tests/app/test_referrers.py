from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from tests.oci import OCI_INDEX, OCI_MANIFEST, push_blob, push_image, random_image, sha256

EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2, "data": "e30="}


def artifact(subject: str, artifact_type: str | None, annotations: dict[str, str] | None = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc |= {
        "config": extra.pop("config", EMPTY),
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


async def put(client: httpx.AsyncClient, repo: str, body: bytes) -> str:
    r = await client.put(f"/v2/{repo}/manifests/{sha256(body)}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return sha256(body)


async def test_referrers_listing_and_filter(client: httpx.AsyncClient) -> None:
    image = random_image(seed=1)
    subject = await push_image(client, "r", image)
    sbom = await put(client, "r", artifact(subject, "application/spdx+json", {"org.example": "yes"}))
    sig = await put(client, "r", artifact(subject, "application/vnd.dev.sigstore.bundle+json"))
    config = await push_blob(client, "r", b'{"k":1}')
    legacy = await put(
        client,
        "r",
        artifact(subject, None, config={"mediaType": "application/vnd.example.config", "digest": config, "size": 7}),
    )
    await put(client, "r", artifact(sha256(b"another subject"), "application/spdx+json"))

    r = await client.get(f"/v2/r/referrers/{subject}")
    assert r.status_code == 200 and r.headers["content-type"] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in body["manifests"]}
    assert set(by_digest) == {sbom, sig, legacy}
    assert by_digest[sbom]["artifactType"] == "application/spdx+json"
    assert by_digest[sbom]["annotations"] == {"org.example": "yes"}
    assert by_digest[legacy]["artifactType"] == "application/vnd.example.config"
    assert by_digest[sig]["mediaType"] == OCI_MANIFEST and by_digest[sig]["size"] > 0
    assert "oci-filters-applied" not in r.headers

    f = await client.get(f"/v2/r/referrers/{subject}", params={"artifactType": "application/spdx+json"})
    assert f.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in f.json()["manifests"]] == [sbom]


async def test_unknown_subject_or_repository_is_an_empty_index(client: httpx.AsyncClient) -> None:
    for path in (f"/v2/r/referrers/{sha256(b'nothing')}", f"/v2/never/pushed/referrers/{sha256(b'x')}"):
        r = await client.get(path)
        assert r.status_code == 200 and r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


async def test_bad_digest_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/r/referrers/sha256:nope")
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"


async def test_deleted_referrer_disappears(client: httpx.AsyncClient) -> None:
    subject = await push_image(client, "r", random_image(seed=2))
    ref = await put(client, "r", artifact(subject, "application/x"))
    assert len((await client.get(f"/v2/r/referrers/{subject}")).json()["manifests"]) == 1
    assert (await client.delete(f"/v2/r/manifests/{ref}")).status_code == 202
    assert (await client.get(f"/v2/r/referrers/{subject}")).json()["manifests"] == []


async def test_fallback_tag_schema_keeps_working(client: httpx.AsyncClient) -> None:
    """Clients that do not trust the API maintain a ``sha256-<hex>`` tag holding an index."""
    subject = await push_image(client, "r", random_image(seed=3))
    ref = await put(client, "r", artifact(subject, "application/x"))
    # A cosign-style signature pushed without ``subject``, known only through the fallback tag.
    sig_body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY, "layers": []}).encode()
    sig = await put(client, "r", sig_body)
    legacy_sig = {"mediaType": OCI_MANIFEST, "digest": sig, "size": len(sig_body), "artifactType": "application/sig"}
    fallback = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": ref, "size": 1}, legacy_sig],
        }
    ).encode()
    tag = subject.replace(":", "-")
    r = await client.put(f"/v2/r/manifests/{tag}", content=fallback, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201
    assert (await client.get(f"/v2/r/manifests/{tag}")).content == fallback
    listed = (await client.get(f"/v2/r/referrers/{subject}")).json()["manifests"]
    assert [m["digest"] for m in listed] == [ref, legacy_sig["digest"]]  # the API's own entry wins for ref
    assert listed[1] == legacy_sig
    only_sig = await client.get(f"/v2/r/referrers/{subject}", params={"artifactType": "application/sig"})
    assert only_sig.json()["manifests"] == [legacy_sig]


async def test_a_sha512_subjects_fallback_tag_is_its_first_64_digits(client: httpx.AsyncClient) -> None:
    """The spec cuts the tag's encoded part to 64 characters: ``sha512-<128 hex>`` is no tag (135
    characters), so Kura looked for a tag no client can push."""
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY, "layers": []}).encode()
    subject = "sha512:" + hashlib.sha512(body).hexdigest()
    r = await client.put(f"/v2/r/manifests/{subject}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    signature = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": EMPTY,
        "layers": [],
        "annotations": {"a": "b"},
    }
    sig = await put(client, "r", json.dumps(signature).encode())
    entry = {"mediaType": OCI_MANIFEST, "digest": sig, "size": 1, "artifactType": "application/sig"}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode()
    tag = "sha512-" + subject.removeprefix("sha512:")[:64]
    r = await client.put(f"/v2/r/manifests/{tag}", content=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/r/referrers/{subject}")).json()["manifests"] == [entry]
