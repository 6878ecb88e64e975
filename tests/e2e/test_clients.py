"""Real clients against a real ``kura serve``: Docker Engine, containerd, skopeo, buildah, podman, oras,
python-dxf. Each check compares bytes and digests with what the client says it pushed or pulled."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.images.demo import DEMOS, content_for
from app.images.remote import push
from storage import mediatypes
from tests.e2e.conftest import Skopeo
from tests.e2e.daemons import containerd, dockerd
from tests.e2e.servers import access_log, kura, require
from tests.oci import DOCKER_LIST, index_of, random_image, sha256, write_oci_layout

pytestmark = pytest.mark.e2e
DOCKER = "/usr/bin/docker"  # Debian's docker.io CLI: it builds with BuildKit without the buildx plugin


def run(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd="/tmp")
    if check:
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clients")


@pytest.fixture(scope="module")
def registry(work: Path) -> Iterator[str]:
    root = work / "root"
    root.mkdir()
    with kura(str(root)) as url:
        yield url


@pytest.fixture(scope="module")
def host(registry: str) -> str:
    return registry.removeprefix("http://")


@pytest.fixture(scope="module")
def multi(registry: str, host: str) -> tuple[str, dict[str, str]]:
    """demo/app:no-provenance pushed into its own repository: (index digest, {arch: manifest digest})."""
    demo = next(d for d in DEMOS if d.tag == "no-provenance")
    [(content, _)] = content_for(demo, host)

    async def go() -> str:
        async with httpx.AsyncClient(base_url=registry) as client:
            return await push(client, "clients/multi", content, "v1")

    digest = asyncio.run(go())
    index = json.loads(content.root[0])
    return digest, {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}


def manifest(registry: str, repo: str, reference: str) -> httpx.Response:
    r = httpx.get(f"{registry}/v2/{repo}/manifests/{reference}")
    assert r.status_code == 200, r.text
    return r


def repo_files(registry_root: Path, repo: str) -> set[str]:
    base = registry_root / "docker/registry/v2/repositories" / repo
    return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}


# -- Docker Engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_host(work: Path) -> Iterator[str]:
    require(DOCKER)
    with dockerd(str(work / "docker")) as docker_host:
        yield docker_host


def docker(docker_host: str, *args: str) -> str:
    return run(DOCKER, "-H", docker_host, *args).stdout


def test_docker_push_pull_and_seed_tree(
    docker_host: str, registry: str, host: str, work: Path, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = random_image(layers=2, size=20_000, seed=31)
    write_oci_layout(str(tmp_path / "layout"), image, "v1")
    archive = tmp_path / "image.tar"
    skopeo.copy(f"oci:{tmp_path / 'layout'}:v1", f"docker-archive:{archive}:seed/app:v1")
    docker(docker_host, "load", "-i", str(archive))
    ref = f"{host}/seed/app:v1"
    docker(docker_host, "tag", "seed/app:v1", ref)
    out = docker(docker_host, "push", ref)
    pushed = next(line.split("digest: ")[1].split()[0] for line in out.splitlines() if "digest: " in line)
    stored = manifest(registry, "seed/app", "v1")
    assert stored.headers["docker-content-digest"] == pushed == sha256(stored.content)

    # The seed scenario: exactly registry:2's tree for this repository.
    doc = json.loads(stored.content)
    blobs = [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]
    m = pushed.split(":")[1]
    assert repo_files(work / "root", "seed/app") == {f"_layers/sha256/{d.split(':')[1]}/link" for d in blobs} | {
        f"_manifests/revisions/sha256/{m}/link",
        "_manifests/tags/v1/current/link",
        f"_manifests/tags/v1/index/sha256/{m}/link",
    }
    for d in [*blobs, pushed]:
        hexd = d.split(":")[1]
        assert (work / "root" / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data").is_file()
    assert (
        work / "root/docker/registry/v2/repositories/seed/app/_manifests/tags/v1/current/link"
    ).read_bytes() == pushed.encode()

    image_id = docker(docker_host, "image", "inspect", "-f", "{{.Id}}", ref).strip()
    docker(docker_host, "rmi", "-f", ref, "seed/app:v1")
    docker(docker_host, "pull", ref)
    assert docker(docker_host, "image", "inspect", "-f", "{{.Id}}", ref).strip() == image_id
    docker(docker_host, "pull", f"{host}/seed/app@{pushed}")
    assert docker(docker_host, "image", "inspect", "-f", "{{.Id}}", f"{host}/seed/app@{pushed}").strip() == image_id


def test_docker_platform_pull_and_manifest_inspect(
    docker_host: str, registry: str, host: str, multi: tuple[str, dict[str, str]]
) -> None:
    _, children = multi
    ref = f"{host}/clients/multi:v1"
    docker(docker_host, "pull", "--platform", "linux/arm64", ref)
    assert docker(docker_host, "image", "inspect", "-f", "{{.Architecture}}", ref).strip() == "arm64"
    config = json.loads(manifest(registry, "clients/multi", children["arm64"]).content)["config"]["digest"]
    assert docker(docker_host, "image", "inspect", "-f", "{{.Id}}", ref).strip() == config
    # Docker 20.10's `docker manifest` understands Docker media types only (for OCI it fails on any
    # registry: "unsupported manifest media type"), so inspect a Docker manifest list.
    images = [random_image(seed=s, docker=True, arch=a) for s, a in ((33, "amd64"), (34, "arm64"))]
    with httpx.Client(base_url=registry) as c:
        for image in images:
            for digest, data in image.blobs.items():
                c.post("/v2/clients/dlist/blobs/uploads/", params={"digest": digest}, content=data).raise_for_status()
            c.put(
                f"/v2/clients/dlist/manifests/{image.digest}",
                content=image.manifest,
                headers={"Content-Type": image.media_type},
            ).raise_for_status()
        c.put(
            "/v2/clients/dlist/manifests/v1",
            content=index_of(images, docker=True),
            headers={"Content-Type": DOCKER_LIST},
        ).raise_for_status()
    inspected = json.loads(docker(docker_host, "manifest", "inspect", "--insecure", f"{host}/clients/dlist:v1"))
    assert inspected["mediaType"] == DOCKER_LIST
    assert [m["digest"] for m in inspected["manifests"]] == [i.digest for i in images]
    verbose = json.loads(docker(docker_host, "manifest", "inspect", "--insecure", "-v", f"{host}/clients/dlist:v1"))
    assert [v["Descriptor"]["digest"] for v in verbose] == [i.digest for i in images]


def test_docker_buildkit_build_and_push(docker_host: str, registry: str, host: str, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("built by buildkit\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    ref = f"{host}/built/app:v1"
    env = dict(os.environ, DOCKER_BUILDKIT="1", DOCKER_HOST=docker_host)
    run(DOCKER, "build", "-t", ref, str(tmp_path), env=env)
    docker(docker_host, "push", ref)
    doc = json.loads(manifest(registry, "built/app", "v1").content)
    layer = httpx.get(f"{registry}/v2/built/app/blobs/{doc['layers'][0]['digest']}")
    assert sha256(layer.content) == doc["layers"][0]["digest"]
    import gzip
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.content))) as tar:
        member = tar.extractfile("hello.txt")
        assert member is not None and member.read() == b"built by buildkit\n"


# -- containerd ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctr_sock(work: Path) -> Iterator[str]:
    require("ctr")
    with containerd(str(work / "containerd")) as sock:
        yield sock


def test_containerd_pull_all_platforms_and_push_index(
    ctr_sock: str, registry: str, host: str, multi: tuple[str, dict[str, str]]
) -> None:
    ctr = ["ctr", "-a", ctr_sock]
    index_digest, children = multi
    run(*ctr, "images", "pull", "--plain-http", f"{host}/clients/multi:v1")
    run(*ctr, "images", "pull", "--plain-http", "--all-platforms", f"{host}/clients/multi:v1")
    listed = run(*ctr, "images", "ls", "-q").stdout.split()
    assert f"{host}/clients/multi:v1" in listed
    run(*ctr, "images", "tag", f"{host}/clients/multi:v1", f"{host}/clients/ctr-pushed:v1")
    run(*ctr, "images", "push", "--plain-http", f"{host}/clients/ctr-pushed:v1")
    pushed = manifest(registry, "clients/ctr-pushed", "v1")
    assert pushed.headers["docker-content-digest"] == index_digest
    for child in children.values():
        assert (
            manifest(registry, "clients/ctr-pushed", child).content
            == manifest(registry, "clients/multi", child).content
        )


def test_containerd_reproduces_the_attestation_unpack_failure(ctr_sock: str, registry: str, host: str) -> None:
    """The real-world failure (containerd#8243): ``--all-platforms`` tries to unpack in-toto layers."""
    demo = next(d for d in DEMOS if d.tag == "legacy" and d.repository == "demo/app")
    [(content, _)] = content_for(demo, host)

    async def go() -> None:
        async with httpx.AsyncClient(base_url=registry) as client:
            await push(client, "clients/attested", content, "v1")

    asyncio.run(go())
    ctr = ["ctr", "-a", ctr_sock]
    run(*ctr, "images", "pull", "--plain-http", f"{host}/clients/attested:v1")  # one platform: fine
    failed = run(*ctr, "images", "pull", "--plain-http", "--all-platforms", f"{host}/clients/attested:v1", check=False)
    assert failed.returncode != 0
    assert "application/vnd.in-toto+json" in failed.stderr and "no processor for media-type" in failed.stderr


# -- skopeo -------------------------------------------------------------------------------------


def test_skopeo_delete_and_mounting_copy(registry: str, host: str, work: Path, skopeo: Skopeo, tmp_path: Path) -> None:
    image = random_image(layers=3, size=10_000, seed=32)
    write_oci_layout(str(tmp_path / "layout"), image, "v1")
    skopeo.copy(f"oci:{tmp_path / 'layout'}:v1", f"docker://{host}/sk/src:v1")
    skopeo.copy(f"docker://{host}/sk/src:v1", f"docker://{host}/sk/dst:v1")
    assert manifest(registry, "sk/dst", "v1").content == image.manifest
    mounted = set()
    for entry in access_log(str(work / "kura.log")):
        uri = entry["http.request.uri"]
        if entry["http.request.method"] == "POST" and uri.startswith("/v2/sk/dst/blobs/uploads/?"):
            query = parse_qs(urlsplit(uri).query)
            if entry["http.response.status"] == "201" and query.get("from") == ["sk/src"]:
                mounted.add(query["mount"][0])
    layers = {sha256(layer) for layer in image.layers}
    assert layers <= mounted  # skopeo mounted every layer from sk/src instead of uploading it again
    assert json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{host}/sk/dst"))["Tags"] == ["v1"]
    skopeo("delete", "--tls-verify=false", f"docker://{host}/sk/dst:v1")
    assert httpx.get(f"{registry}/v2/sk/dst/manifests/v1").status_code == 404
    assert httpx.get(f"{registry}/v2/sk/dst/manifests/{image.digest}").status_code == 404
    assert manifest(registry, "sk/src", "v1").content == image.manifest


# -- buildah and podman -------------------------------------------------------------------------


def storage_flags(work: Path, tool: str) -> list[str]:
    return ["--root", str(work / tool / "root"), "--runroot", str(work / tool / "run"), "--storage-driver", "vfs"]


def test_buildah_build_and_manifest_lists(registry: str, host: str, work: Path, tmp_path: Path) -> None:
    buildah = [require("buildah"), *storage_flags(work, "buildah")]
    (tmp_path / "hello.txt").write_text("hello from buildah\n")
    images = {}
    for arch in ("amd64", "arm64"):
        container = run(*buildah, "from", "scratch").stdout.strip()
        run(*buildah, "copy", container, str(tmp_path / "hello.txt"), "/hello.txt")
        run(*buildah, "config", "--arch", arch, "--os", "linux", container)
        run(*buildah, "commit", "-q", container, f"bh/app:{arch}")
        run(*buildah, "push", "--tls-verify=false", f"bh/app:{arch}", f"docker://{host}/bh/app:{arch}")
        images[arch] = manifest(registry, "bh/app", arch).headers["docker-content-digest"]
    run(*buildah, "manifest", "create", "bh/list")
    for arch in images:
        run(*buildah, "manifest", "add", "bh/list", f"containers-storage:localhost/bh/app:{arch}")
    for fmt, media_type in (("v2s2", mediatypes.DOCKER_MANIFEST_LIST), ("oci", mediatypes.OCI_INDEX)):
        run(
            *buildah,
            "manifest",
            "push",
            "--all",
            "--format",
            fmt,
            "--tls-verify=false",
            "bh/list",
            f"docker://{host}/bh/list:{fmt}",
        )
        r = manifest(registry, "bh/list", fmt)
        assert r.headers["content-type"] == media_type
        entries = json.loads(r.content)["manifests"]
        assert sorted(e["platform"]["architecture"] for e in entries) == ["amd64", "arm64"]
        for entry in entries:
            child = manifest(registry, "bh/list", entry["digest"])
            assert sha256(child.content) == entry["digest"] and len(child.content) == entry["size"]


def test_podman_pull_push_and_platform(registry: str, host: str, work: Path, multi: tuple[str, dict[str, str]]) -> None:
    podman = [require("podman"), *storage_flags(work, "podman")]
    ref = f"{host}/clients/multi:v1"
    run(*podman, "pull", "-q", "--tls-verify=false", "--platform", "linux/arm64", ref)
    assert run(*podman, "image", "inspect", ref, "--format", "{{.Architecture}}").stdout.strip() == "arm64"
    run(*podman, "tag", ref, f"{host}/pd/app:v1")
    run(*podman, "push", "-q", "--tls-verify=false", f"{host}/pd/app:v1")
    doc = json.loads(manifest(registry, "pd/app", "v1").content)
    arm64 = json.loads(manifest(registry, "clients/multi", multi[1]["arm64"]).content)
    assert doc["config"]["digest"] == arm64["config"]["digest"]  # the same image, whatever podman re-serialised


# -- oras and python-dxf ------------------------------------------------------------------------


def test_oras_artifact_with_subject_and_referrers(
    registry: str, host: str, tmp_path: Path, multi: tuple[str, dict[str, str]]
) -> None:
    import oras.client
    import oras.oci

    payload = tmp_path / "sbom.spdx.json"
    payload.write_text('{"spdxVersion": "SPDX-2.3"}')
    client = oras.client.OrasClient(hostname=host, insecure=True)
    target = manifest(registry, "clients/multi", multi[1]["amd64"])
    subject = oras.oci.Subject(target.headers["content-type"], multi[1]["amd64"], len(target.content))
    response = client.push(
        target=f"{host}/clients/multi:sbom",
        files=[f"{payload}:application/spdx+json"],
        subject=subject,
        manifest_annotations={"org.example.kind": "sbom"},
        disable_path_validation=True,
    )
    assert response.status_code == 201
    assert response.headers.get("OCI-Subject") == multi[1]["amd64"]
    listed = httpx.get(f"{registry}/v2/clients/multi/referrers/{multi[1]['amd64']}").json()["manifests"]
    sbom = manifest(registry, "clients/multi", "sbom")
    assert [m["digest"] for m in listed] == [sha256(sbom.content)]
    assert listed[0]["annotations"]["org.example.kind"] == "sbom"
    pulled = client.pull(target=f"{host}/clients/multi:sbom", outdir=str(tmp_path / "out"))
    assert Path(pulled[0]).read_bytes() == payload.read_bytes()


def test_python_dxf_mount_and_aliases(registry: str, host: str, tmp_path: Path) -> None:
    dxf = require("dxf")
    env = dict(os.environ, DXF_HOST=host, DXF_INSECURE="1")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(4096))
    digest = run(dxf, "push-blob", "dxf/src", str(blob), "@one", env=env).stdout.strip()
    assert digest == sha256(blob.read_bytes())
    assert run(dxf, "mount-blob", "dxf/dst", "dxf/src", digest, "@two", env=env).stdout.strip() == digest
    assert run(dxf, "get-alias", "dxf/dst", "two", env=env).stdout.split() == [digest]
    pulled = subprocess.run([dxf, "pull-blob", "dxf/dst", digest], capture_output=True, env=env, check=True).stdout
    assert pulled == blob.read_bytes()
    assert run(dxf, "del-alias", "dxf/dst", "two", env=env).stdout.split() == [digest]
    assert httpx.get(f"{registry}/v2/dxf/dst/manifests/two").status_code == 404
