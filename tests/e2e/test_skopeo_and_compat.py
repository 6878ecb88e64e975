"""Real ``kura serve`` processes, driven by skopeo and compared with the reference registry on disk."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Skopeo
from tests.e2e.servers import kura, registry2
from tests.oci import OCI_INDEX, Image, random_image, sha256, write_oci_layout

pytestmark = pytest.mark.e2e
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def host(url: str) -> str:
    return url.removeprefix("http://")


def layout_blobs(directory: str) -> dict[str, bytes]:
    out = {}
    blobs = os.path.join(directory, "blobs", "sha256")
    for name in os.listdir(blobs):
        with open(os.path.join(blobs, name), "rb") as f:
            out[name] = f.read()
    return out


def tree(root: str) -> list[str]:
    found = []
    for d, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(found)


def assert_serves(url: str, repo: str, tag: str, image: Image) -> None:
    """The server returns the image's manifest and every blob byte-exact."""
    with httpx.Client(base_url=url, headers={"Accept": ACCEPT}) as c:
        r = c.get(f"/v2/{repo}/manifests/{tag}")
        assert r.status_code == 200 and r.content == image.manifest
        assert r.headers["docker-content-digest"] == image.digest
        for digest, data in image.blobs.items():
            b = c.get(f"/v2/{repo}/blobs/{digest}")
            assert b.status_code == 200 and b.content == data


def test_skopeo_copy_in_and_out_byte_identical(tmp_path: Path, root: str, skopeo: Skopeo) -> None:
    image = random_image(layers=4, size=300_000, seed=21)
    source = str(tmp_path / "src")
    write_oci_layout(source, image, "v1")
    with kura(root) as url:
        skopeo.copy(f"oci:{source}:v1", f"docker://{host(url)}/e2e/app:v1")
        assert_serves(url, "e2e/app", "v1", image)
        out = str(tmp_path / "out")
        skopeo.copy(f"docker://{host(url)}/e2e/app:v1", f"oci:{out}:v1")
        assert layout_blobs(out) == layout_blobs(source) | {image.digest.split(":")[1]: image.manifest}
        assert json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{host(url)}/e2e/app"))["Tags"] == ["v1"]
        raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{host(url)}/e2e/app:v1")
        assert raw.encode() == image.manifest


def test_seed_scenario_tree_and_dedup(tmp_path: Path, root: str, skopeo: Skopeo) -> None:
    """After a push the tree is registry:2's; the same layers pushed to a second repository are stored once."""
    image = random_image(layers=3, seed=22)
    source = str(tmp_path / "src")
    write_oci_layout(source, image, "1")
    with kura(root) as url:
        skopeo.copy(f"oci:{source}:1", f"docker://{host(url)}/one:1")
        skopeo.copy(f"oci:{source}:1", f"docker://{host(url)}/two:1")
    files = tree(os.path.join(root, "docker", "registry", "v2"))
    data = [f for f in files if f.startswith("blobs/")]
    assert len(data) == len(image.blobs) + 1  # layers + config + manifest, once each
    for repo in ("one", "two"):
        repo_files = {f for f in files if f.startswith(f"repositories/{repo}/")}
        hexes = {d.split(":")[1] for d in image.blobs}
        m = image.digest.split(":")[1]
        assert repo_files == (
            {f"repositories/{repo}/_layers/sha256/{h}/link" for h in hexes}
            | {
                f"repositories/{repo}/_manifests/revisions/sha256/{m}/link",
                f"repositories/{repo}/_manifests/tags/1/current/link",
                f"repositories/{repo}/_manifests/tags/1/index/sha256/{m}/link",
            }
        )
    for f in files:
        if f.endswith("/link"):
            with open(os.path.join(root, "docker", "registry", "v2", f), "rb") as fh:
                link = fh.read()
            assert len(link) == 71 and link.startswith(b"sha256:") and not link.endswith(b"\n")


def test_registry2_root_served_by_kura(tmp_path: Path, root: str, skopeo: Skopeo) -> None:
    image = random_image(layers=3, size=50_000, seed=23)
    source = str(tmp_path / "src")
    write_oci_layout(source, image, "v1")
    with registry2(root) as url:
        skopeo.copy(f"oci:{source}:v1", f"docker://{host(url)}/compat/img:v1")
        skopeo.copy(f"oci:{source}:v1", f"docker://{host(url)}/compat/img:v2")
    with kura(root) as url:
        assert_serves(url, "compat/img", "v1", image)
        with httpx.Client(base_url=url) as c:
            assert c.get("/v2/compat/img/tags/list").json() == {"name": "compat/img", "tags": ["v1", "v2"]}
            assert c.get("/v2/_catalog").json() == {"repositories": ["compat/img"]}
        out = str(tmp_path / "out")
        skopeo.copy(f"docker://{host(url)}/compat/img:v1", f"oci:{out}:v1")
        assert sha256(layout_blobs(out)[image.digest.split(":")[1]]) == image.digest
        # ...and Kura keeps writing to it.
        skopeo.copy(f"oci:{source}:v1", f"docker://{host(url)}/compat/img:v3")
    with registry2(root) as url:
        assert_serves(url, "compat/img", "v3", image)


def test_kura_root_served_by_registry2(root: str) -> None:
    images = [random_image(layers=2, seed=s, arch=a) for s, a in ((24, "amd64"), (25, "arm64"))]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": i.media_type,
                    "digest": i.digest,
                    "size": len(i.manifest),
                    "platform": {"architecture": a, "os": "linux"},
                }
                for i, a in zip(images, ("amd64", "arm64"), strict=True)
            ],
        }
    ).encode()
    with kura(root) as url, httpx.Client(base_url=url) as c:
        for mode_index, image in enumerate(images):
            for digest, data in image.blobs.items():
                if mode_index == 0:
                    loc = c.post("/v2/multi/blobs/uploads/").headers["location"]
                    half = len(data) // 2
                    c.patch(loc, content=data[:half], headers={"Content-Range": f"0-{half - 1}"})
                    assert c.put(loc, params={"digest": digest}, content=data[half:]).status_code == 201
                else:
                    assert (
                        c.post("/v2/multi/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
                    )
            r = c.put(
                f"/v2/multi/manifests/{image.digest}",
                content=image.manifest,
                headers={"Content-Type": image.media_type},
            )
            assert r.status_code == 201
        assert (
            c.put("/v2/multi/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX}).status_code == 201
        )
        assert (
            c.post("/v2/mounted/blobs/uploads/", params={"mount": images[0].digest, "from": "multi"}).status_code == 202
        )
        config = sha256(images[0].config)
        assert c.post("/v2/mounted/blobs/uploads/", params={"mount": config, "from": "multi"}).status_code == 201
    with registry2(root) as url, httpx.Client(base_url=url, headers={"Accept": ACCEPT}) as c:
        r = c.get("/v2/multi/manifests/latest")
        assert r.status_code == 200 and r.content == index
        for image in images:
            assert_serves(url, "multi", image.digest, image)
        assert c.get(f"/v2/mounted/blobs/{config}").content == images[0].config
        assert c.get("/v2/_catalog").json() == {"repositories": ["mounted", "multi"]}
    with kura(root) as url:
        assert httpx.get(f"{url}/v2/_catalog").json() == {"repositories": ["mounted", "multi"]}


def test_workers_share_upload_state(root: str) -> None:
    """With several worker processes, each PATCH may land on another worker; the upload still commits."""
    data = os.urandom(3 << 20)
    with kura(root, "--workers", "2") as url:
        location = httpx.post(f"{url}/v2/w/blobs/uploads/").headers["location"]
        step = 1 << 20
        for start in range(0, len(data), step):
            # a new connection each time, so the kernel spreads them over the workers
            r = httpx.patch(
                f"{url}{location}",
                content=data[start : start + step],
                headers={"Content-Range": f"{start}-{start + step - 1}"},
            )
            assert r.status_code == 202, r.text
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert httpx.put(f"{url}{location}", params={"digest": digest}).status_code == 201
        assert httpx.get(f"{url}/v2/w/blobs/{digest}").content == data


def test_tls_hello_on_plain_port_gets_http_400(root: str) -> None:
    """containerd probes https first and falls back only on an HTTP/ reply."""
    with kura(root) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(bytes.fromhex("16030100a5010000a10303") + os.urandom(64))
            reply = s.recv(64)
        assert reply.startswith(b"HTTP/1.1 400")


def test_serve_prints_root(tmp_path: Path, root: str) -> None:
    with kura(root):
        pass
    with open(tmp_path / "kura.log") as f:
        assert f"root {root}" in f.read()


def test_referrers_on_a_root_written_by_registry2(root: str) -> None:
    """registry:2 has no referrers API; Kura answers it from the manifests registry:2 stored."""
    image = random_image(seed=26)
    empty = b"{}"
    referrer = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.docker.attestation.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
            "layers": [],
            "subject": {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest)},
        },
        indent=2,
    ).encode()
    with registry2(root) as url, httpx.Client(base_url=url) as c:
        for data in [*image.blobs.values(), empty]:
            location = c.post("/v2/app/blobs/uploads/").headers["location"]
            # registry:2's Location carries its own query (_state): append, do not replace
            assert c.put(f"{location}&digest={sha256(data)}", content=data).status_code == 201
        headers = {"Content-Type": image.media_type}
        assert c.put("/v2/app/manifests/v1", content=image.manifest, headers=headers).status_code == 201
        r = c.put(f"/v2/app/manifests/{sha256(referrer)}", content=referrer, headers=headers)
        assert r.status_code == 201
        assert c.get(f"/v2/app/referrers/{image.digest}").status_code == 404  # registry:2 has no API
    with kura(root) as url:
        r = httpx.get(f"{url}/v2/app/referrers/{image.digest}")
        assert r.status_code == 200
        assert r.json()["manifests"] == [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(referrer),
                "size": len(referrer),
                "artifactType": "application/vnd.docker.attestation.manifest.v1+json",
            }
        ]
