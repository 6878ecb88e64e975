"""Hostile and buggy clients: racing requests never corrupt what is stored, and never get a 500."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from storage.digest import Digest
from storage.gc import touch
from tests.oci import OCI_MANIFEST, push_image, random_image, sha256


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


async def test_a_commit_while_a_patch_streams_never_changes_the_blob(client: httpx.AsyncClient) -> None:
    """Issue: PUT ?digest= of the bytes so far while a streamed PATCH is paused was 201, and the PATCH
    then kept writing into blobs/.../data. Now the commit is refused while the PATCH holds the upload."""
    location = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    first, rest = os.urandom(4 << 20), os.urandom(1 << 20)
    sent, resume = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(first), 1 << 16):
            yield first[i : i + (1 << 16)]
        sent.set()
        await resume.wait()
        yield rest

    patch = asyncio.create_task(client.patch(location, content=body()))
    await sent.wait()
    await asyncio.sleep(0.05)  # let the server write what it has
    size = int((await client.get(location)).headers["range"].split("-")[1]) + 1
    so_far = sha256(first[:size])
    put = await client.put(location, params={"digest": so_far})
    assert put.status_code == 400 and error_code(put) == "BLOB_UPLOAD_INVALID", put.text
    resume.set()
    r = await patch
    assert r.status_code == 202 and r.headers["range"] == f"0-{len(first) + len(rest) - 1}"
    assert (await client.get(f"/v2/r/blobs/{so_far}")).status_code == 404
    whole = sha256(first + rest)
    assert (await client.put(location, params={"digest": whole})).status_code == 201
    got = await client.get(f"/v2/r/blobs/{whole}")
    assert hashlib.sha256(got.content).hexdigest() == whole.split(":")[1]


async def test_concurrent_commits_of_one_upload(client: httpx.AsyncClient) -> None:
    """Issue: three concurrent PUT ?digest= gave [201, 201, 500]."""
    data = os.urandom(3 << 20)
    for _ in range(5):
        location = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
        assert (await client.patch(location, content=data)).status_code == 202
        results = await asyncio.gather(*(client.put(location, params={"digest": sha256(data)}) for _ in range(3)))
        codes = sorted(r.status_code for r in results)
        assert codes[0] == 201 and set(codes) <= {201, 404}, [r.text for r in results]
        for r in results:
            if r.status_code == 404:
                assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"
        assert (await client.get(f"/v2/r/blobs/{sha256(data)}")).content == data


async def test_two_patches_of_one_upload_never_interleave(client: httpx.AsyncClient) -> None:
    location = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    started, resume = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * (1 << 20)
        started.set()
        await resume.wait()
        yield b"a" * (1 << 20)

    first = asyncio.create_task(client.patch(location, content=slow()))
    await started.wait()
    second = await client.patch(location, content=b"b" * 1000)
    assert second.status_code == 400 and error_code(second) == "BLOB_UPLOAD_INVALID"
    resume.set()
    assert (await first).status_code == 202
    r = await client.put(location, params={"digest": sha256(b"a" * (2 << 20))})
    assert r.status_code == 201


async def test_put_and_delete_racing_on_a_tag(client: httpx.AsyncClient) -> None:
    """Issue: PUT and DELETE of one tag at once gave 500s; the tag must end as one of them left it."""
    image = random_image(seed=40)
    await push_image(client, "r", image, "base")
    for _ in range(20):
        put, delete = await asyncio.gather(
            client.put("/v2/r/manifests/t", content=image.manifest, headers={"Content-Type": image.media_type}),
            client.delete("/v2/r/manifests/t"),
        )
        assert put.status_code == 201, put.text
        assert delete.status_code in (202, 404), delete.text
        tags = (await client.get("/v2/r/tags/list")).json()["tags"]
        get = await client.get("/v2/r/manifests/t")
        # Either order is a state one of the requests asked for; a listed tag always resolves.
        assert ("t" in tags) == (get.status_code == 200)
        if get.status_code == 200:
            assert get.content == image.manifest


async def test_deeply_nested_manifest_is_invalid_not_500(client: httpx.AsyncClient) -> None:
    body = b'{"a":' * 5000 + b"1" + b"}" * 5000
    for nested in (body, b"[" * 100_000 + b"]" * 100_000):
        r = await client.put("/v2/r/manifests/t", content=nested, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", r.text


async def test_utf16_manifest_is_refused(client: httpx.AsyncClient) -> None:
    image = random_image(seed=41)
    await push_image(client, "r", image, "ok")
    text = json.loads(image.manifest)
    for encoding in ("utf-16", "utf-32", "utf-16-le"):
        body = json.dumps(text).encode(encoding)
        r = await client.put("/v2/r/manifests/t", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", (encoding, r.text)


async def test_a_push_that_meets_a_sweep_is_told_to_retry_and_its_retry_succeeds(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue: a commit waiting longer than LOCK_WAIT for the blob's stripe, held by the collector, was
    400 BLOB_UPLOAD_INVALID ("another request is writing this upload"), blaming the client, and the
    body a monolithic commit had appended stayed, so its retry would append it a second time. Now:
    503 with Retry-After, and the upload as it was before the request, for chunked and monolithic
    commits and a manifest PUT."""
    monkeypatch.setattr(touch, "LOCK_WAIT", 0.2)
    driver = app.state.registry.driver
    chunked, whole = os.urandom(1 << 20), os.urandom(1 << 16)
    chunked_at = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    assert (await client.patch(chunked_at, content=chunked)).status_code == 202
    whole_at = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    config = b"{}"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": 2},
            "layers": [],
        }
    ).encode()
    pushed = await client.post("/v2/r/blobs/uploads/", params={"digest": sha256(config)}, content=config)
    assert pushed.status_code == 201
    stripes = {touch.stripe(Digest.parse(sha256(b))) for b in (chunked, whole, manifest)}
    async with contextlib.AsyncExitStack() as sweeping:  # the collector's exclusive stripes
        for stripe in sorted(stripes):
            await sweeping.enter_async_context(driver.lock(stripe, shared=False, create=True))
        refused = [
            await client.put(chunked_at, params={"digest": sha256(chunked)}),
            await client.put(whole_at, params={"digest": sha256(whole)}, content=whole),
            await client.put("/v2/r/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}),
        ]
        for r in refused:
            assert r.status_code == 503 and error_code(r) == "UNAVAILABLE", r.text
            assert r.headers["retry-after"] == "1"
        assert (await client.get(chunked_at)).headers["range"] == f"0-{len(chunked) - 1}"
        assert (await client.get(whole_at)).headers["range"] == "0-0"  # the body it appended was taken back
    assert (await client.put(chunked_at, params={"digest": sha256(chunked)})).status_code == 201
    assert (await client.put(whole_at, params={"digest": sha256(whole)}, content=whole)).status_code == 201
    r = await client.put("/v2/r/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    for blob in (chunked, whole):
        assert (await client.get(f"/v2/r/blobs/{sha256(blob)}")).content == blob
