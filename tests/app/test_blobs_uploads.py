from __future__ import annotations

import errno
import hashlib
import os

import httpx
import pytest

from tests.oci import PushMode, push_blob, sha256


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


async def test_version_check(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.parametrize("mode", ["monolithic", "post", "chunked", "stream"])
async def test_push_modes_then_get_and_head(client: httpx.AsyncClient, mode: PushMode) -> None:
    data = os.urandom(10_000)
    digest = await push_blob(client, "a/b", data, mode)
    r = await client.get(f"/v2/a/b/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["etag"] == f'"{digest}"'
    assert r.headers["content-length"] == "10000"
    h = await client.head(f"/v2/a/b/blobs/{digest}")
    assert h.status_code == 200 and h.headers["content-length"] == "10000" and h.content == b""


async def test_post_returns_session(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/r/blobs/uploads/")
    assert r.status_code == 202
    assert r.headers["range"] == "0-0"
    uid = r.headers["docker-upload-uuid"]
    assert r.headers["location"] == f"/v2/r/blobs/uploads/{uid}"
    s = await client.get(r.headers["location"])
    assert s.status_code == 204 and s.headers["range"] == "0-0"


async def test_patch_range_and_status(client: httpx.AsyncClient) -> None:
    loc = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    r = await client.patch(loc, content=b"12345", headers={"Content-Range": "0-4"})
    assert r.status_code == 202 and r.headers["range"] == "0-4"
    assert r.headers["location"] == loc
    s = await client.get(loc)
    assert s.status_code == 204 and s.headers["range"] == "0-4"
    bad = await client.patch(loc, content=b"xx", headers={"Content-Range": "10-11"})
    assert bad.status_code == 416 and error_code(bad) == "RANGE_INVALID"
    assert bad.headers["range"] == "0-4"
    done = await client.put(loc, params={"digest": sha256(b"1234567")}, content=b"67")
    assert done.status_code == 201
    assert done.headers["location"] == f"/v2/r/blobs/{sha256(b'1234567')}"


async def test_patch_malformed_range(client: httpx.AsyncClient) -> None:
    loc = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    r = await client.patch(loc, content=b"x", headers={"Content-Range": "nonsense"})
    assert r.status_code == 416 and error_code(r) == "RANGE_INVALID"


async def test_put_with_content_range(client: httpx.AsyncClient) -> None:
    loc = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    await client.patch(loc, content=b"ab", headers={"Content-Range": "0-1"})
    r = await client.put(loc, params={"digest": sha256(b"abcd")}, content=b"cd", headers={"Content-Range": "2-3"})
    assert r.status_code == 201


async def test_digest_mismatch(client: httpx.AsyncClient) -> None:
    loc = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    r = await client.put(loc, params={"digest": sha256(b"other")}, content=b"data")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert (await client.get(loc)).status_code == 404  # the upload is gone
    assert (await client.head(f"/v2/r/blobs/{sha256(b'data')}")).status_code == 404


async def test_put_without_digest(client: httpx.AsyncClient) -> None:
    loc = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    r = await client.put(loc, content=b"data")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


async def test_malformed_digest_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/r/blobs/uploads/", params={"digest": "sha256:nothex"}, content=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = await client.get("/v2/r/blobs/sha256:../../../etc/passwd")
    assert r.status_code in (400, 404)
    r = await client.get("/v2/r/blobs/notadigest")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


async def test_unknown_digest_algorithm_is_digest_invalid(client: httpx.AsyncClient) -> None:
    # As registry:2 answers: an unregistered algorithm is a bad digest (400), not a refused method (405).
    md5 = "md5:" + hashlib.md5(b"x").hexdigest()
    await push_blob(client, "r", b"x")
    for method in ("HEAD", "GET", "DELETE"):
        r = await client.request(method, f"/v2/r/blobs/{md5}")
        assert r.status_code == 400, method
        if method != "HEAD":
            assert error_code(r) == "DIGEST_INVALID"
    r = await client.post("/v2/r/blobs/uploads/", params={"digest": md5}, content=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    location = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    r = await client.put(location, params={"digest": md5}, content=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert (await client.get(f"/v2/r/referrers/{md5}")).status_code == 400
    r = await client.put(f"/v2/r/manifests/{md5}", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert (await client.get(f"/v2/r/manifests/{md5}")).status_code == 404
    # A mount it cannot parse is a mount it cannot do: registry:2 starts an upload session instead.
    for mount in (md5, "sha256:nothex"):
        r = await client.post("/v2/m/blobs/uploads/", params={"mount": mount, "from": "r"})
        assert r.status_code == 202 and "docker-upload-uuid" in r.headers


async def test_cancel_upload(client: httpx.AsyncClient) -> None:
    loc = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    assert (await client.delete(loc)).status_code == 204
    r = await client.get(loc)
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = await client.patch(loc, content=b"x")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_blob_unknown(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v2/r/blobs/{sha256(b'nothing')}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    assert r.json()["errors"][0]["message"]


async def test_range_requests(client: httpx.AsyncClient) -> None:
    data = bytes(range(256)) * 10
    digest = await push_blob(client, "r", data)
    r = await client.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = await client.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = await client.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=2550-"})
    assert r.status_code == 206 and r.content == data[2550:]
    r = await client.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=5000-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    assert error_code(r) == "RANGE_INVALID"


async def test_mount_with_and_without_from(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "src", b"shared layer")
    r = await client.post("/v2/dst/blobs/uploads/", params={"mount": digest, "from": "src"})
    assert r.status_code == 201 and r.headers["docker-content-digest"] == digest
    assert r.headers["location"] == f"/v2/dst/blobs/{digest}"
    r = await client.post("/v2/dst2/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201
    assert (await client.get(f"/v2/dst2/blobs/{digest}")).content == b"shared layer"
    r = await client.post("/v2/dst/blobs/uploads/", params={"mount": sha256(b"absent"), "from": "src"})
    assert r.status_code == 202 and "docker-upload-uuid" in r.headers
    # An empty from is no from; one that is no repository name is a mount registry:2 ignores (a session)
    r = await client.post("/v2/dst3/blobs/uploads/", params={"mount": digest, "from": ""})
    assert r.status_code == 201 and r.headers["docker-content-digest"] == digest
    for source in ("BAD..name", "/", "a" * 300):
        r = await client.post("/v2/dst4/blobs/uploads/", params={"mount": digest, "from": source})
        assert r.status_code == 202 and "docker-upload-uuid" in r.headers, source
    r = await client.post("/v2/Bad..Target/blobs/uploads/", params={"mount": digest, "from": "BAD..name"})
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"


async def test_delete_blob(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "r", b"bye")
    assert (await client.delete(f"/v2/r/blobs/{digest}")).status_code == 202
    assert (await client.head(f"/v2/r/blobs/{digest}")).status_code == 404
    r = await client.delete(f"/v2/r/blobs/{digest}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"


async def test_sha512_upload_get_and_mount(client: httpx.AsyncClient) -> None:
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = await client.post("/v2/r/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201
    assert (await client.get(f"/v2/r/blobs/{digest}")).content == data
    r = await client.post("/v2/m/blobs/uploads/", params={"mount": digest, "from": "r"})
    assert r.status_code == 201


async def test_uppercase_name_is_name_invalid(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/Upper/blobs/uploads/")
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"


async def test_every_response_has_api_version(client: httpx.AsyncClient) -> None:
    for r in [await client.get("/v2/r/blobs/x"), await client.get("/v2/nothing/here"), await client.post("/v2/")]:
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
        assert r.json()["errors"]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/a/b/c")
    assert r.status_code == 404
    r = await client.post(f"/v2/r/blobs/{sha256(b'x')}")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"


async def test_errors_never_leak_paths(client: httpx.AsyncClient, root: str) -> None:
    for r in [
        await client.get(f"/v2/r/blobs/{sha256(b'x')}"),
        await client.get("/v2/r/blobs/uploads/nope"),
        await client.get("/v2/r/manifests/latest"),
    ]:
        assert root not in r.text


@pytest.mark.parametrize("size", [1000, 3 << 20], ids=["one-batch", "streamed"])
async def test_full_disk_is_a_clear_507_and_the_upload_can_resume(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    from storage.drivers import filesystem, memory

    data = os.urandom(size)
    location = (await client.post("/v2/full/blobs/uploads/")).headers["location"]

    async def full(self: object, pieces: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as disk:
        for writer in (filesystem.FileWriter, memory._Writer):
            disk.setattr(writer, "write", full)
        r = await client.patch(location, content=data)
    assert r.status_code == 507
    assert r.json()["errors"][0] == {"code": "UNKNOWN", "message": "the registry's storage is full", "detail": {}}
    assert "storage full on PATCH" in caplog.text and "Traceback" not in caplog.text
    # once there is room again, the client resumes from the size the registry reports
    status = await client.get(location)
    assert status.status_code == 204 and status.headers["range"] == "0-0"
    assert (await client.patch(location, content=data)).status_code == 202
    r = await client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert (await client.get(f"/v2/full/blobs/{sha256(data)}")).content == data


async def test_unexpected_errors_are_logged_with_their_traceback(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from storage.uploads import Uploads

    async def broken(self: object, name: str) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(Uploads, "start", broken)
    r = await client.post("/v2/x/blobs/uploads/")
    assert r.status_code == 500 and r.json()["errors"][0]["message"] == "internal error"
    assert "RuntimeError: bug" in caplog.text


async def test_conditional_blob_reads(client: httpx.AsyncClient) -> None:
    """As Go's http.ServeContent (registry:2's blob reads): If-None-Match naming the ETag is a 304 with
    the 200's headers but no body's; If-Range other than the ETag (a date included) drops the Range."""
    data = bytes(range(256)) * 4
    digest = await push_blob(client, "r", data)
    url, tag = f"/v2/r/blobs/{digest}", f'"{digest}"'
    for method in ("GET", "HEAD"):
        for value in (tag, f"W/{tag}", "*", f'"other", {tag}'):
            r = await client.request(method, url, headers={"If-None-Match": value})
            assert r.status_code == 304 and r.content == b"", (method, value)
            assert r.headers["etag"] == tag and r.headers["docker-content-digest"] == digest
            assert "content-length" not in r.headers and "content-type" not in r.headers
        r = await client.request(method, url, headers={"If-None-Match": '"sha256:other"'})
        assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
    r = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": tag})
    assert r.status_code == 206 and r.content == data[:10]
    for condition in ('"sha256:other"', "Wed, 21 Oct 2015 07:28:00 GMT", f"W/{tag}"):
        r = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": condition})
        assert r.status_code == 200 and r.content == data, condition
