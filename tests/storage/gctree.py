"""Building trees for the garbage collection tests: push content through the storage façade, age it."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import AsyncIterator

from app.images import buildkit
from app.images.buildkit import Content
from storage import Registry, StorageDriver
from storage.drivers import FilesystemDriver, InMemoryDriver
from storage.errors import StorageError
from storage.gc import collector
from storage.gc.report import Report

HOUR = 3600.0


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push(registry: Registry, repository: str, content: Content, tag: str | None = None) -> str:
    """Blobs, then manifests children first; the root is tagged when ``tag`` is given. Its digest."""
    for digest, data in content.blobs.items():
        await registry.put_blob(repository, digest, _chunks(data), len(data))
    digest = ""
    for i, (body, media_type) in enumerate(content.manifests):
        digest = buildkit.digest_of(body)
        last = i == len(content.manifests) - 1
        await registry.put_manifest(repository, tag if last and tag else digest, body, media_type)
    return digest


def age(driver: StorageDriver, seconds: float) -> None:
    """Make everything stored ``seconds`` older (as if pushed that long ago)."""
    shift = int(seconds * 1e9)
    if isinstance(driver, FilesystemDriver):
        for directory, _, files in os.walk(driver.root):
            for name in files:
                path = os.path.join(directory, name)
                st = os.stat(path)
                os.utime(path, ns=(st.st_atime_ns - shift, st.st_mtime_ns - shift))
    else:
        assert isinstance(driver, InMemoryDriver)
        for file in driver._files.values():
            file.mtime_ns -= shift


async def collect(driver: StorageDriver, **options: object) -> Report:
    settings = collector.Settings(**{"grace": HOUR, "trash_delay": 0.0, **options})  # type: ignore[arg-type]
    return await collector.collect(driver, settings)


async def manifest_ok(registry: Registry, repository: str, reference: str) -> bool:
    """The manifest resolves, and everything it references (transitively) is served."""
    try:
        manifest = await registry.get_manifest(repository, reference)
    except StorageError:
        return False
    document = json.loads(manifest.body)
    for descriptor in [document.get("config"), *document.get("layers", [])]:
        if descriptor is not None and not await blob_ok(registry, repository, descriptor["digest"]):
            return False
    for child in document.get("manifests", []):
        if child["mediaType"] in (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
        ):
            if not await manifest_ok(registry, repository, child["digest"]):
                return False
        elif not await blob_ok(registry, repository, child["digest"]):
            return False
    return True


async def blob_ok(registry: Registry, repository: str, digest: str) -> bool:
    try:
        _, reader = await registry.open_blob(repository, digest)
    except StorageError:
        return False
    reader.close()
    return True


def varied_cache(build: int, image_manifest: bool, payload: int = 0) -> Content:
    """A BuildKit registry cache whose layers change with ``build`` (as a rebuild's do), in either form;
    ``payload`` incompressible bytes make its own layer that much bigger."""
    content = buildkit.cache(image_manifest)
    body, media_type = content.manifests[0]
    document = json.loads(body)
    files = {"cache/build.bin": f"build {build}\n".encode() * (50 + build) + random.Random(build).randbytes(payload)}
    extra_blob, _ = buildkit.layer(files)
    content.add_blob(extra_blob)
    entry = buildkit.descriptor(buildkit.OCI_LAYER, extra_blob)
    if image_manifest:
        document["layers"].append(entry)
    else:
        document["manifests"].insert(0, entry)
    content.manifests = [(buildkit.compact(document), media_type)]
    return content


def now_ns() -> int:
    return time.time_ns()


def stamp(driver: StorageDriver, path: str, seconds_ago: float) -> None:
    """Set one stored file's mtime to ``seconds_ago`` before now."""
    when = time.time_ns() - int(seconds_ago * 1e9)
    if isinstance(driver, FilesystemDriver):
        os.utime(driver.full(path), ns=(when, when))
    else:
        assert isinstance(driver, InMemoryDriver)
        driver._files[path].mtime_ns = when
