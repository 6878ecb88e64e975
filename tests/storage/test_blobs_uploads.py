from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage import Options, Registry
from storage.errors import BlobUnknown, DigestInvalid, RangeInvalid, ReadOnly, SizeInvalid, UploadUnknown
from storage.registry import BATCH
from tests.oci import sha256


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def files(root: str) -> list[str]:
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return sorted(out)


async def test_put_blob_stores_data_and_link(registry: Registry, root: str) -> None:
    data = b"layer bytes" * 100
    info = await registry.put_blob("a/b", sha256(data), chunks(data))
    assert info.size == len(data)
    hexd = hashlib.sha256(data).hexdigest()
    assert files(root) == [
        f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data",
        f"docker/registry/v2/repositories/a/b/_layers/sha256/{hexd}/link",
    ]
    with open(info.path, "rb") as f:
        assert f.read() == data


async def test_same_blob_in_two_repositories_is_stored_once(registry: Registry, root: str) -> None:
    data = os.urandom(5000)
    await registry.put_blob("one", sha256(data), chunks(data))
    await registry.put_blob("two", sha256(data), chunks(data))
    data_files = [f for f in files(root) if f.endswith("/data")]
    assert len(data_files) == 1
    assert (await registry.stat_blob("two", sha256(data))).size == 5000


async def test_digest_mismatch_stores_nothing(registry: Registry, root: str) -> None:
    with pytest.raises(DigestInvalid):
        await registry.put_blob("a", sha256(b"other"), chunks(b"data"))
    assert [f for f in files(root) if "blobs/" in f or "_layers" in f] == []
    assert [f for f in files(root) if "_uploads" in f] == []


async def test_chunked_upload_with_ranges(registry: Registry) -> None:
    data = os.urandom(3000)
    upload = await registry.start_upload("r")
    assert await registry.append_upload("r", upload, chunks(data[:1000]), start=0, length=1000) == 1000
    with pytest.raises(RangeInvalid) as err:
        await registry.append_upload("r", upload, chunks(data[2000:]), start=2000, length=1000)
    assert err.value.size == 1000
    assert await registry.append_upload("r", upload, chunks(data[1000:]), start=1000) == 3000
    info = await registry.commit_upload("r", upload, sha256(data))
    assert info.size == 3000


async def test_upload_survives_a_lost_running_hash(root: str) -> None:
    """Another worker (a fresh Registry) can finish an upload: the file is hashed again."""
    data = os.urandom(4096)
    first = Registry(root)
    upload = await first.start_upload("r")
    await first.append_upload("r", upload, chunks(data[:100]))
    second = Registry(root)
    await second.append_upload("r", upload, chunks(data[100:]))
    info = await first.commit_upload("r", upload, sha256(data))
    assert info.size == 4096


async def test_commit_uses_the_running_hash(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload appended in this process is not read back and hashed again at commit."""
    from storage import uploads

    def no_rehash(path: str, algorithm: str) -> str:
        raise AssertionError("the upload was hashed a second time")

    monkeypatch.setattr(uploads, "hash_file", no_rehash)
    data = os.urandom(3 << 20)
    upload = await registry.start_upload("r")
    await registry.append_upload("r", upload, chunks(data[:1000]), start=0)
    await registry.append_upload("r", upload, chunks(data[1000:], 1 << 16), start=1000)
    assert (await registry.commit_upload("r", upload, sha256(data))).size == len(data)
    assert (await registry.put_blob("r", sha256(b"mono"), chunks(b"mono"))).size == 4


def drain(registry: Registry) -> None:
    """Wait for every background flush (a fresh pool takes over)."""
    registry._flusher.shutdown(wait=True)
    registry._flusher = ThreadPoolExecutor(max_workers=2)


async def test_large_uploads_are_flushed_in_the_background(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long uploads start their writeback early, on duplicate descriptors that never leak."""
    import storage.registry
    from storage import uploads

    flushed: list[int] = []
    real = uploads.flush_and_close

    def record(fd: int) -> None:
        flushed.append(fd)
        real(fd)

    monkeypatch.setattr(storage.registry, "FLUSH_EVERY", 1 << 20)
    monkeypatch.setattr(uploads, "flush_and_close", record)
    before = len(os.listdir("/proc/self/fd"))
    data = os.urandom(5 << 20)
    info = await registry.put_blob("r", sha256(data), chunks(data, 1 << 16))
    drain(registry)
    assert info.size == len(data)
    assert 2 <= len(flushed) <= 5
    # Chunks smaller than the flush interval still flush once the upload as a whole passes it.
    flushed.clear()
    upload = await registry.start_upload("r")
    for start in range(0, len(data), 1 << 19):
        await registry.append_upload("r", upload, chunks(data[start : start + (1 << 19)], 1 << 16), start=start)
    await registry.commit_upload("r", upload, sha256(data))
    drain(registry)
    assert 2 <= len(flushed) <= 5
    assert len(os.listdir("/proc/self/fd")) == before


async def test_bodies_of_many_tiny_chunks(registry: Registry, root: str) -> None:
    """More chunks than one writev takes (IOV_MAX) still land in order."""
    data = os.urandom(5000)
    info = await registry.put_blob("r", sha256(data), chunks(data, 1))
    with open(info.path, "rb") as f:
        assert f.read() == data


@pytest.mark.parametrize("size", [0, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH, 5 * BATCH + 3])
async def test_bodies_around_batch_edges(registry: Registry, size: int) -> None:
    """A body that ends before, at or after a batch boundary is appended whole and in order."""
    data = os.urandom(size)
    upload = await registry.start_upload("r")
    assert await registry.append_upload("r", upload, chunks(data, 1 << 16)) == size
    assert await registry.append_upload("r", upload, chunks(b"tail")) == size + 4
    info = await registry.commit_upload("r", upload, sha256(data + b"tail"))
    with open(info.path, "rb") as f:
        assert f.read() == data + b"tail"


def test_short_writev_is_finished(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import uploads

    real = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, pieces: real(fd, [bytes(pieces[0][:3])]))
    path = os.path.join(str(tmp_path), "f")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        uploads.write_all(fd, [b"abcdef", b"", b"ghi"])
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == b"abcdefghi"


@pytest.mark.parametrize("size", [4, 3 << 20], ids=["one-batch", "streamed"])
async def test_size_mismatch_restores_the_upload(registry: Registry, size: int) -> None:
    upload = await registry.start_upload("r")
    await registry.append_upload("r", upload, chunks(b"abc"))
    with pytest.raises(SizeInvalid):
        await registry.append_upload("r", upload, chunks(os.urandom(size), 1 << 16), length=size + 6)
    assert await registry.upload_size("r", upload) == 3
    info = await registry.commit_upload("r", upload, sha256(b"abc"))
    assert info.size == 3


async def test_commit_removes_whatever_the_upload_holds(registry: Registry, root: str) -> None:
    """registry:2 keeps hashstates/ beside data: a root it wrote must not keep upload leftovers."""
    upload = await registry.start_upload("r")
    await registry.append_upload("r", upload, chunks(b"abc"))
    hashstates = os.path.join(registry.paths.upload("r", upload), "hashstates", "sha256")
    os.makedirs(hashstates)
    with open(os.path.join(hashstates, "0"), "wb") as f:
        f.write(b"state")
    await registry.commit_upload("r", upload, sha256(b"abc"))
    assert not os.path.exists(registry.paths.upload("r", upload))
    assert os.listdir(registry.paths.uploads("r")) == []


async def test_startedat_is_rfc3339_utc(registry: Registry, root: str) -> None:
    upload = await registry.start_upload("r")
    path = registry.paths.upload_started_at("r", upload)
    with open(path) as f:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", f.read())


async def test_cancel_removes_the_upload(registry: Registry) -> None:
    upload = await registry.start_upload("r")
    await registry.cancel_upload("r", upload)
    with pytest.raises(UploadUnknown):
        await registry.upload_size("r", upload)


@pytest.mark.parametrize("upload_id", ["..", "../x", "a/b", ""])
async def test_upload_ids_cannot_escape(registry: Registry, upload_id: str) -> None:
    with pytest.raises(UploadUnknown):
        await registry.upload_size("r", upload_id)


async def test_mount_links_a_stored_blob(registry: Registry) -> None:
    data = b"shared"
    await registry.put_blob("src", sha256(data), chunks(data))
    assert await registry.mount_blob("dst", sha256(data), "src") is not None
    assert await registry.mount_blob("dst2", sha256(data), None) is not None
    assert await registry.mount_blob("dst", sha256(b"missing"), "src") is None
    assert await registry.mount_blob("dst3", sha256(data), "not-a-source") is None


async def test_delete_blob_unlinks_only_the_repository(registry: Registry) -> None:
    data = b"x" * 10
    await registry.put_blob("a", sha256(data), chunks(data))
    await registry.put_blob("b", sha256(data), chunks(data))
    await registry.delete_blob("a", sha256(data))
    with pytest.raises(BlobUnknown):
        await registry.stat_blob("a", sha256(data))
    assert (await registry.stat_blob("b", sha256(data))).size == 10


async def test_sha512_blob(registry: Registry) -> None:
    data = b"five twelve"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    info = await registry.put_blob("r", digest, chunks(data))
    assert info.path.endswith(
        f"blobs/sha512/{hashlib.sha512(data).hexdigest()[:2]}/{hashlib.sha512(data).hexdigest()}/data"
    )


async def test_read_only_refuses_writes(root: str) -> None:
    reg = Registry(root, Options(read_only=True))
    with pytest.raises(ReadOnly):
        await reg.start_upload("r")


async def test_reader_streams_ranges(registry: Registry) -> None:
    data = os.urandom(3 * (1 << 20) + 5)
    await registry.put_blob("r", sha256(data), chunks(data, 1 << 16))
    _, reader = await registry.open_blob("r", sha256(data))
    try:
        whole = b"".join([c async for c in reader.chunks()])
        part = b"".join([c async for c in reader.chunks(10, (1 << 20) + 20)])
    finally:
        reader.close()
    assert whole == data
    assert part == data[10 : (1 << 20) + 21]
