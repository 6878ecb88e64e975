from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from storage import Options, Registry, StorageDriver, paths
from storage.digest import Digest
from storage.drivers import filesystem, memory
from storage.errors import BlobUnknown, DigestInvalid, RangeInvalid, ReadOnly, SizeInvalid, UploadUnknown
from storage.names import Name
from storage.uploads import BATCH, Uploads
from tests.oci import sha256, stored, stored_files


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def blob_bytes(registry: Registry, digest: Digest) -> bytes:
    return await stored(registry.driver, paths.blob_data(digest))


async def test_put_blob_stores_data_and_link(registry: Registry) -> None:
    data = b"layer bytes" * 100
    info = await registry.put_blob("a/b", sha256(data), chunks(data))
    assert info.size == len(data)
    hexd = hashlib.sha256(data).hexdigest()
    assert await stored_files(registry.driver) == [
        f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data",
        f"docker/registry/v2/repositories/a/b/_layers/sha256/{hexd}/link",
    ]
    assert await blob_bytes(registry, info.digest) == data


async def test_same_blob_in_two_repositories_is_stored_once(registry: Registry) -> None:
    data = os.urandom(5000)
    await registry.put_blob("one", sha256(data), chunks(data))
    await registry.put_blob("two", sha256(data), chunks(data))
    data_files = [f for f in await stored_files(registry.driver) if f.endswith("/data")]
    assert len(data_files) == 1
    assert (await registry.stat_blob("two", sha256(data))).size == 5000


async def test_digest_mismatch_stores_nothing(registry: Registry) -> None:
    with pytest.raises(DigestInvalid):
        await registry.put_blob("a", sha256(b"other"), chunks(b"data"))
    assert await stored_files(registry.driver) == []


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


async def test_upload_survives_a_lost_running_hash(registry: Registry) -> None:
    """Another worker (a second Registry on the same storage) can finish an upload: the file is hashed again."""
    data = os.urandom(4096)
    upload = await registry.start_upload("r")
    await registry.append_upload("r", upload, chunks(data[:100]))
    second = Registry(registry.driver)
    await second.append_upload("r", upload, chunks(data[100:]))
    info = await registry.commit_upload("r", upload, sha256(data))
    assert info.size == 4096


async def test_commit_uses_the_running_hash(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload appended in this process is not read back and hashed again at commit."""

    async def no_rehash(self: Uploads, path: str, algorithm: str) -> str:
        raise AssertionError("the upload was hashed a second time")

    monkeypatch.setattr(Uploads, "_hash_stored", no_rehash)
    data = os.urandom(3 << 20)
    upload = await registry.start_upload("r")
    await registry.append_upload("r", upload, chunks(data[:1000]), start=0)
    await registry.append_upload("r", upload, chunks(data[1000:], 1 << 16), start=1000)
    assert (await registry.commit_upload("r", upload, sha256(data))).size == len(data)
    assert (await registry.put_blob("r", sha256(b"mono"), chunks(b"mono"))).size == 4


async def test_flushes_follow_upload_offsets(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A background flush starts each time the upload as a whole passes another FLUSH_EVERY bytes,
    whether it comes in one body or in chunks smaller than the interval."""
    import storage.uploads

    started: list[int] = []

    def recording(real: Callable[[Any], None]) -> Callable[[Any], None]:
        def start_flush(self: Any) -> None:
            started.append(self.size)
            real(self)

        return start_flush

    for writer in (filesystem.FileWriter, memory._Writer):
        monkeypatch.setattr(writer, "start_flush", recording(writer.start_flush))
    monkeypatch.setattr(storage.uploads, "FLUSH_EVERY", 1 << 20)
    data = os.urandom(5 << 20)
    await registry.put_blob("r", sha256(data), chunks(data, 1 << 16))
    assert [size >> 20 for size in started] == [1, 2, 3, 4, 5]
    started.clear()
    upload = await registry.start_upload("r")
    for start in range(0, len(data), 1 << 19):
        await registry.append_upload("r", upload, chunks(data[start : start + (1 << 19)], 1 << 16), start=start)
    await registry.commit_upload("r", upload, sha256(data))
    assert [size >> 20 for size in started] == [1, 2, 3, 4, 5]


async def test_background_flushes_leak_no_descriptor(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.uploads

    monkeypatch.setattr(storage.uploads, "FLUSH_EVERY", 1 << 20)
    driver = filesystem.FilesystemDriver(root)
    registry = Registry(driver)
    before = len(os.listdir("/proc/self/fd"))
    data = os.urandom(5 << 20)
    assert (await registry.put_blob("r", sha256(data), chunks(data, 1 << 16))).size == len(data)
    driver._flusher.shutdown(wait=True)  # every flush done (and its duplicate descriptor closed)
    assert len(os.listdir("/proc/self/fd")) == before
    await registry.close()


async def test_bodies_of_many_tiny_chunks(registry: Registry) -> None:
    """More chunks than one writev takes (IOV_MAX) still land in order."""
    data = os.urandom(5000)
    info = await registry.put_blob("r", sha256(data), chunks(data, 1))
    assert await blob_bytes(registry, info.digest) == data


@pytest.mark.parametrize("size", [0, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH, 5 * BATCH + 3])
async def test_bodies_around_batch_edges(registry: Registry, size: int) -> None:
    """A body that ends before, at or after a batch boundary is appended whole and in order."""
    data = os.urandom(size)
    upload = await registry.start_upload("r")
    assert await registry.append_upload("r", upload, chunks(data, 1 << 16)) == size
    assert await registry.append_upload("r", upload, chunks(b"tail")) == size + 4
    info = await registry.commit_upload("r", upload, sha256(data + b"tail"))
    assert await blob_bytes(registry, info.digest) == data + b"tail"


def test_short_writev_is_finished(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, pieces: real(fd, [bytes(pieces[0][:3])]))
    path = os.path.join(str(tmp_path), "f")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        filesystem._write_all(fd, [b"abcdef", b"", b"ghi"])
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == b"abcdefghi"


@pytest.mark.parametrize("size", [4, 3 << 20], ids=["one-batch", "streamed"])
async def test_size_mismatch_restores_the_upload(registry: Registry, size: int) -> None:
    upload = await registry.start_upload("r")
    await registry.append_upload("r", upload, chunks(b"abc"))
    with pytest.raises(SizeInvalid) as refused:
        await registry.append_upload("r", upload, chunks(os.urandom(size), 1 << 16), length=size + 6)
    assert refused.value.detail == {"declared": size + 6, "received": size}
    assert await registry.upload_size("r", upload) == 3
    info = await registry.commit_upload("r", upload, sha256(b"abc"))
    assert info.size == 3


async def test_commit_removes_whatever_the_upload_holds(registry: Registry) -> None:
    """registry:2 keeps hashstates/ beside data: a root it wrote must not keep upload leftovers."""
    upload = await registry.start_upload("r")
    await registry.append_upload("r", upload, chunks(b"abc"))
    await registry.driver.put_content(paths.join(paths.upload(Name("r"), upload), "hashstates", "sha256", "0"), b"s")
    await registry.commit_upload("r", upload, sha256(b"abc"))
    assert [f for f in await stored_files(registry.driver) if "_uploads" in f] == []


async def test_startedat_is_rfc3339_utc(registry: Registry) -> None:
    upload = await registry.start_upload("r")
    text = (await stored(registry.driver, paths.upload_started_at(Name("r"), upload))).decode()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)


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
    await registry.put_blob("r", digest, chunks(data))
    hexd = hashlib.sha512(data).hexdigest()
    assert f"docker/registry/v2/blobs/sha512/{hexd[:2]}/{hexd}/data" in await stored_files(registry.driver)


async def test_read_only_refuses_writes(driver: StorageDriver) -> None:
    reg = Registry(driver, Options(read_only=True))
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
