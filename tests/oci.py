"""Build small, real images offline (gzip'd tar layers, config, manifest) and push them with httpx."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from storage import StorageDriver, paths

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

PushMode = Literal["monolithic", "post", "chunked", "stream"]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(content), "size": len(content), **extra}


def layer(content: bytes, name: str = "file") -> tuple[bytes, bytes]:
    """A gzip'd tar holding one file: (compressed blob, uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), tar_bytes


@dataclass
class Image:
    config: bytes
    layers: list[bytes]
    manifest: bytes
    media_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def random_image(
    layers: int = 2, size: int = 2048, seed: int | None = None, docker: bool = False, arch: str = "amd64"
) -> Image:
    rng = random.Random(seed)
    blobs: list[bytes] = []
    diff_ids: list[str] = []
    for i in range(layers):
        blob, tar_bytes = layer(rng.randbytes(size), f"layer{i}.bin")
        blobs.append(blob)
        diff_ids.append(sha256(tar_bytes))
    config = json.dumps(
        {"architecture": arch, "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}},
        separators=(",", ":"),
    ).encode()
    manifest_type, config_type, layer_type = (
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER) if docker else (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": descriptor(config_type, config),
            "layers": [descriptor(layer_type, b) for b in blobs],
        },
        indent=3,
    ).encode()
    image = Image(config, blobs, manifest, manifest_type)
    image.blobs = {sha256(b): b for b in [config, *blobs]}
    return image


def index_of(images: list[Image], docker: bool = False) -> bytes:
    media_type = DOCKER_LIST if docker else OCI_INDEX
    entries = []
    for image in images:
        arch = json.loads(image.config)["architecture"]
        entries.append(descriptor(image.media_type, image.manifest, platform={"architecture": arch, "os": "linux"}))
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, indent=2).encode()


async def push_blob(client: httpx.AsyncClient, repo: str, data: bytes, mode: PushMode = "monolithic") -> str:
    digest = sha256(data)
    if mode == "post":
        r = await client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        return digest
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    if mode == "chunked":
        step = max(1, len(data) // 3 + 1)
        for start in range(0, len(data), step):
            chunk = data[start : start + step]
            headers = {"Content-Range": f"{start}-{start + len(chunk) - 1}", "Content-Type": "application/octet-stream"}
            r = await client.patch(location, content=chunk, headers=headers)
            assert r.status_code == 202, r.text
            location = r.headers["location"]
        r = await client.put(location, params={"digest": digest})
    elif mode == "stream":
        r = await client.patch(location, content=_stream(data))
        assert r.status_code == 202, r.text
        r = await client.put(r.headers["location"], params={"digest": digest})
    else:
        r = await client.put(location, params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


async def _stream(data: bytes) -> Any:
    for i in range(0, len(data), 1000):
        yield data[i : i + 1000]


async def push_image(
    client: httpx.AsyncClient, repo: str, image: Image, tag: str | None = "latest", mode: PushMode = "monolithic"
) -> str:
    for data in image.blobs.values():
        await push_blob(client, repo, data, mode)
    r = await client.put(
        f"/v2/{repo}/manifests/{tag or image.digest}",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert r.status_code == 201, r.text
    return image.digest


def write_oci_layout(directory: str, image: Image, tag: str = "latest") -> None:
    """An OCI image layout that skopeo can copy from (``oci:<directory>:<tag>``)."""
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    for data in [*image.blobs.values(), image.manifest]:
        with open(os.path.join(blobs, sha256(data).split(":")[1]), "wb") as f:
            f.write(data)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    entry = descriptor(image.media_type, image.manifest, annotations={"org.opencontainers.image.ref.name": tag})
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}, f)


async def stored_files(driver: StorageDriver) -> list[str]:
    """Every file of the registry tree, as registry:2 would see it (Kura's own ``kura/`` left out)."""
    return sorted([info.path async for info in driver.walk("") if not info.path.startswith(f"{paths.KURA}/")])


async def stored(driver: StorageDriver, path: str) -> bytes:
    return await driver.get_content(path)
