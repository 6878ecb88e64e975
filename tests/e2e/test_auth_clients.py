"""Real clients with credentials against a real ``kura serve``, once with htpasswd (Basic) and once with
the built-in token server: docker login/push/pull, podman login, buildah --creds, skopeo --src-creds/
--dest-creds/--authfile, ctr --user, oras and python-dxf."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.authsetup import (
    PASSWORDS,
    Registry,
    authfile,
    client,
    htpasswd_config,
    kura_with,
    tokenserver_config,
    write_config,
)
from tests.e2e.conftest import Skopeo
from tests.e2e.daemons import containerd, dockerd
from tests.e2e.servers import Listener, kura_argv, require, started
from tests.oci import random_image, sha256, write_oci_layout

pytestmark = pytest.mark.e2e
DOCKER = "/usr/bin/docker"
ALICE = f"alice:{PASSWORDS['alice']}"
MALLORY = f"mallory:{PASSWORDS['mallory']}"


def run(*argv: str, env: dict[str, str] | None = None, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd="/tmp", input=stdin)
    if check:
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def fails(*argv: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd="/tmp")
    assert result.returncode != 0, f"{' '.join(argv)} should have failed\n{result.stdout}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("authclients")


@pytest.fixture(scope="module", params=["htpasswd", "tokenserver"])
def registry(request: pytest.FixtureRequest, work: Path) -> Iterator[Registry]:
    mode = request.param
    base = work / mode
    root = base / "root"
    root.mkdir(parents=True)
    make = htpasswd_config if mode == "htpasswd" else tokenserver_config
    with Listener() as listener:
        config = make(str(base), str(root), listener.port)
        with kura_with(config, str(root), listener) as url:
            yield Registry(mode, url, config, str(root))


@pytest.fixture(scope="module")
def seeded(registry: Registry, work: Path) -> tuple[str, bytes]:
    """e2e/seed:v1, pushed by skopeo with --dest-creds: (manifest digest, manifest)."""
    image = random_image(layers=2, size=20_000, seed=61)
    layout = work / registry.mode / "layout"
    write_oci_layout(str(layout), image, "v1")
    Skopeo(work)(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        ALICE,
        f"oci:{layout}:v1",
        f"docker://{registry.host}/e2e/seed:v1",
    )
    return image.digest, image.manifest


def stored(registry: Registry, repo: str, reference: str, user: str = "alice") -> httpx.Response:
    with client(registry.url, user) as c:
        r = c.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": "*/*"})
    assert r.status_code == 200, r.text
    return r


def test_unauthenticated_requests_are_challenged(registry: Registry) -> None:
    r = httpx.get(f"{registry.url}/v2/e2e/seed/tags/list")
    assert r.status_code == 401
    if registry.mode == "htpasswd":
        assert r.headers["www-authenticate"] == 'Basic realm="Kura e2e"'
    else:
        assert r.headers["www-authenticate"] == (
            f'Bearer realm="{registry.url}/auth/token",service="kura-e2e",scope="repository:e2e/seed:pull"'
        )


def test_skopeo_creds_and_authfile(
    registry: Registry, seeded: tuple[str, bytes], skopeo: Skopeo, tmp_path: Path
) -> None:
    digest, body = seeded
    host = registry.host
    skopeo.copy(
        f"docker://{host}/e2e/seed:v1", f"docker://{host}/e2e/copy:v1", "--src-creds", ALICE, "--dest-creds", ALICE
    )
    assert stored(registry, "e2e/copy", "v1").content == body
    auth = authfile(str(tmp_path / "auth.json"), host)
    skopeo.copy(f"docker://{host}/e2e/seed:v1", f"docker://{host}/e2e/authfile:v1", "--authfile", auth)
    assert sha256(stored(registry, "e2e/authfile", "v1").content) == digest
    out = skopeo.binary, "--policy", skopeo.policy, "copy", "--src-tls-verify=false", "--dest-tls-verify=false"
    assert refused(fails(*out, "--src-creds", MALLORY, f"docker://{host}/e2e/seed:v1", f"oci:{tmp_path / 'x'}:v1"))
    # alice may only read ro/**
    assert refused(
        fails(
            *out,
            "--src-creds",
            ALICE,
            "--dest-creds",
            ALICE,
            f"docker://{host}/e2e/seed:v1",
            f"docker://{host}/ro/x:v1",
        )
    )
    assert refused(
        fails(*out, "--dest-creds", "alice:wrong", f"docker://{host}/e2e/seed:v1", f"docker://{host}/e2e/wrong:v1")
    )


@pytest.fixture(scope="module")
def docker_host(work: Path) -> Iterator[str]:
    require(DOCKER)
    with dockerd(str(work / "docker")) as host:
        yield host


def test_docker_login_push_pull(
    docker_host: str, registry: Registry, seeded: tuple[str, bytes], tmp_path: Path, skopeo: Skopeo
) -> None:
    env = dict(os.environ, DOCKER_HOST=docker_host, DOCKER_CONFIG=str(tmp_path / "docker-config"))
    host = registry.host
    assert refused(fails(DOCKER, "login", "-u", "alice", "-p", "wrong", host, env=env))
    out = run(DOCKER, "login", "-u", "alice", "--password-stdin", host, env=env, stdin=PASSWORDS["alice"])
    assert "Login Succeeded" in out
    saved = json.loads((tmp_path / "docker-config" / "config.json").read_text())["auths"][host]
    # With a token server docker keeps the refresh token (identity token), not the password.
    assert ("identitytoken" in saved) == (registry.mode == "tokenserver")
    run(DOCKER, "pull", f"{host}/e2e/seed:v1", env=env)
    run(DOCKER, "tag", f"{host}/e2e/seed:v1", f"{host}/e2e/docker:v1", env=env)
    pushed = run(DOCKER, "push", f"{host}/e2e/docker:v1", env=env)
    digest = next(line.split("digest: ")[1].split()[0] for line in pushed.splitlines() if "digest: " in line)
    assert sha256(stored(registry, "e2e/docker", "v1").content) == digest
    image_id = run(DOCKER, "image", "inspect", "-f", "{{.Id}}", f"{host}/e2e/docker:v1", env=env).strip()
    run(DOCKER, "rmi", f"{host}/e2e/docker:v1", f"{host}/e2e/seed:v1", env=env)
    run(DOCKER, "pull", f"{host}/e2e/docker@{digest}", env=env)
    assert run(DOCKER, "image", "inspect", "-f", "{{.Id}}", f"{host}/e2e/docker@{digest}", env=env).strip() == image_id
    run(DOCKER, "tag", f"{host}/e2e/docker@{digest}", f"{host}/ro/docker:v1", env=env)
    assert refused(fails(DOCKER, "push", f"{host}/ro/docker:v1", env=env))
    run(DOCKER, "logout", host, env=env)
    assert refused(fails(DOCKER, "pull", f"{host}/e2e/docker:v1", env=env))


def test_buildkit_pushes_and_imports_its_cache_with_credentials(
    docker_host: str, registry: Registry, tmp_path: Path
) -> None:
    """A BuildKit build exports its cache inline into the image it pushes, then a rebuild from an
    empty builder imports that cache from the registry: both with docker login's credentials."""
    env = dict(os.environ, DOCKER_HOST=docker_host, DOCKER_CONFIG=str(tmp_path / "docker-config"), DOCKER_BUILDKIT="1")
    host = registry.host
    run(DOCKER, "login", "-u", "alice", "--password-stdin", host, env=env, stdin=PASSWORDS["alice"])
    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text(f"cached by buildkit ({registry.mode})\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    ref = f"{host}/e2e/cached:v1"
    run(DOCKER, "build", "--progress=plain", "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", ref, str(context), env=env)
    run(DOCKER, "push", ref, env=env)
    manifest = stored(registry, "e2e/cached", "v1").json()
    with client(registry.url, "alice") as c:
        config = c.get(f"/v2/e2e/cached/blobs/{manifest['config']['digest']}").json()
    assert "moby.buildkit.cache.v0" in config  # the inline cache BuildKit exported
    run(DOCKER, "rmi", ref, env=env)
    run(DOCKER, "builder", "prune", "--all", "--force", env=env)
    rebuilt = run(
        DOCKER, "build", "--progress=plain", "--cache-from", ref, "-t", f"{host}/e2e/cached:v2", str(context), env=env
    )
    assert "importing cache manifest from" in rebuilt and "CACHED" in rebuilt, rebuilt
    run(DOCKER, "logout", host, env=env)


def storage_flags(base: Path, tool: str) -> list[str]:
    runroot = tempfile.mkdtemp(prefix=f"{tool}-", dir="/tmp")  # podman wants a runroot under 50 characters
    return ["--root", str(base / tool / "root"), "--runroot", runroot, "--storage-driver", "vfs"]


def refused(output: str) -> bool:
    """The client said it was refused (not that something else went wrong)."""
    text = output.lower()
    words = (
        "unauthorized",
        "denied",
        "forbidden",
        "authentication required",
        "no basic auth credentials",
        "invalid username",
    )
    return any(word in text for word in words)


def test_podman_login_pull_push(registry: Registry, seeded: tuple[str, bytes], tmp_path: Path) -> None:
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"))
    podman = [require("podman"), *storage_flags(tmp_path, "podman")]
    host = registry.host
    assert refused(fails(*podman, "login", "--tls-verify=false", "-u", "alice", "-p", "wrong", host, env=env))
    out = run(
        *podman,
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "--password-stdin",
        host,
        env=env,
        stdin=PASSWORDS["alice"],
    )
    assert "Login Succeeded" in out
    run(*podman, "pull", "-q", "--tls-verify=false", f"{host}/e2e/seed:v1", env=env)
    run(*podman, "tag", f"{host}/e2e/seed:v1", f"{host}/e2e/podman:v1", env=env)
    run(*podman, "push", "-q", "--tls-verify=false", f"{host}/e2e/podman:v1", env=env)
    assert (
        json.loads(stored(registry, "e2e/podman", "v1").content)["config"]["digest"]
        == json.loads(seeded[1])["config"]["digest"]
    )


def test_buildah_push_with_creds(registry: Registry, tmp_path: Path) -> None:
    buildah = [require("buildah"), *storage_flags(tmp_path, "buildah")]
    (tmp_path / "hello.txt").write_text("pushed with --creds\n")
    container = run(*buildah, "from", "scratch").strip().splitlines()[-1]
    run(*buildah, "copy", container, str(tmp_path / "hello.txt"), "/hello.txt")
    run(*buildah, "commit", "-q", container, "bh/auth:v1")
    target = f"docker://{registry.host}/e2e/buildah:v1"
    assert refused(fails(*buildah, "push", "--tls-verify=false", "--creds", MALLORY, "bh/auth:v1", target))
    run(*buildah, "push", "--tls-verify=false", "--creds", ALICE, "bh/auth:v1", target)
    assert json.loads(stored(registry, "e2e/buildah", "v1").content)["layers"]


@pytest.fixture(scope="module")
def ctr_sock(work: Path) -> Iterator[str]:
    require("ctr")
    with containerd(str(work / "containerd")) as sock:
        yield sock


def test_ctr_pull_push_with_user(ctr_sock: str, registry: Registry, seeded: tuple[str, bytes]) -> None:
    ctr = ["ctr", "-a", ctr_sock, "--namespace", registry.mode]
    host = registry.host
    assert refused(fails(*ctr, "images", "pull", "--plain-http", "--user", MALLORY, f"{host}/e2e/seed:v1"))
    run(*ctr, "images", "pull", "--plain-http", "--user", ALICE, f"{host}/e2e/seed:v1")
    run(*ctr, "images", "tag", f"{host}/e2e/seed:v1", f"{host}/e2e/ctr:v1")
    run(*ctr, "images", "push", "--plain-http", "--user", ALICE, f"{host}/e2e/ctr:v1")
    assert stored(registry, "e2e/ctr", "v1").content == seeded[1]


def test_oras_with_credentials(registry: Registry, tmp_path: Path) -> None:
    """oras-py 0.2.43's token backend keeps its first token and only renews it on a 403, so a push (HEAD
    with a pull token, then POST) fails against registry:2's 401 insufficient_scope; its basic backend
    sends credentials up front, which Kura's token-server mode accepts. Pulls use the token dance."""
    import oras.client

    payload = tmp_path / "notes.txt"
    payload.write_text("an artifact behind auth\n")
    pusher = oras.client.OrasClient(hostname=registry.host, insecure=True, auth_backend="basic")
    pusher.auth.set_basic_auth("alice", PASSWORDS["alice"])
    target = f"{registry.host}/e2e/oras:v1"
    response = pusher.push(target=target, files=[f"{payload}:text/plain"], disable_path_validation=True)
    assert response.status_code == 201
    backend = "basic" if registry.mode == "htpasswd" else "token"
    puller = oras.client.OrasClient(hostname=registry.host, insecure=True, auth_backend=backend)
    puller.auth.set_basic_auth("alice", PASSWORDS["alice"])
    pulled = puller.pull(target=target, outdir=str(tmp_path / "out"))
    assert Path(pulled[0]).read_bytes() == payload.read_bytes()
    stranger = oras.client.OrasClient(hostname=registry.host, insecure=True, auth_backend=backend)
    stranger.auth.set_basic_auth("mallory", PASSWORDS["mallory"])
    with pytest.raises(Exception, match=r"(?i)denied|unauthorized|authentication|forbidden"):
        stranger.pull(target=target, outdir=str(tmp_path / "stranger"))


def test_python_dxf_with_credentials(registry: Registry, tmp_path: Path, listener: Listener) -> None:
    """python-dxf sends credentials over HTTPS only: the same config, plus http.tls."""
    dxf = require("dxf")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    openssl = [require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    run(*openssl, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert)
    port = listener.port
    with open(registry.config) as f:
        document = yaml.safe_load(f)
    document["http"] = {"addr": f"127.0.0.1:{port}", "tls": {"certificate": cert, "key": key}}
    if registry.mode == "tokenserver":
        document["auth"]["token"]["realm"] = f"https://127.0.0.1:{port}/auth/token"
    config = write_config(str(tmp_path / "tls.yml"), document)
    url = f"https://127.0.0.1:{port}"
    with started(kura_argv(registry.root, listener, "--config", config), url, str(tmp_path / "kura.log")):
        env = dict(os.environ, DXF_HOST=f"127.0.0.1:{port}", DXF_TLSVERIFY=cert, DXF_USERNAME="alice")
        env["DXF_PASSWORD"] = PASSWORDS["alice"]
        blob = tmp_path / "blob.bin"
        blob.write_bytes(os.urandom(4096))
        digest = run(dxf, "push-blob", "e2e/dxf", str(blob), "@one", env=env).strip()
        assert digest == sha256(blob.read_bytes())
        assert run(dxf, "get-alias", "e2e/dxf", "one", env=env).split() == [digest]
        pulled = subprocess.run([dxf, "pull-blob", "e2e/dxf", digest], capture_output=True, env=env, check=True)
        assert pulled.stdout == blob.read_bytes()
        assert refused(fails(dxf, "push-blob", "e2e/dxf", str(blob), env=env | {"DXF_PASSWORD": "wrong"}))


def test_catalog_lists_only_what_the_user_may_pull(registry: Registry, seeded: tuple[str, bytes]) -> None:
    with client(registry.url, "alice") as c:
        repositories = c.get("/v2/_catalog").json()["repositories"]
    assert "e2e/seed" in repositories and all(r.startswith(("e2e/", "ro/")) for r in repositories)
    with client(registry.url, "mallory") as c:
        assert c.get("/v2/_catalog").json()["repositories"] == []


def test_anonymous_pull_where_a_policy_allows(
    ctr_sock: str, registry: Registry, seeded: tuple[str, bytes], skopeo: Skopeo, tmp_path: Path
) -> None:
    """public/** may be pulled without credentials (with the token server: an anonymous token)."""
    host = registry.host
    skopeo.copy(
        f"docker://{host}/e2e/seed:v1", f"docker://{host}/public/app:v1", "--src-creds", ALICE, "--dest-creds", ALICE
    )
    skopeo.copy(f"docker://{host}/public/app:v1", f"oci:{tmp_path / 'anonymous'}:v1")
    ctr = ["ctr", "-a", ctr_sock, "--namespace", f"anonymous-{registry.mode}"]
    run(*ctr, "images", "pull", "--plain-http", f"{host}/public/app:v1")
    assert refused(fails(*ctr, "images", "pull", "--plain-http", f"{host}/e2e/seed:v1"))
    run(*ctr, "images", "tag", f"{host}/public/app:v1", f"{host}/public/app:v2")
    fails(*ctr, "images", "push", "--plain-http", f"{host}/public/app:v2")  # a new tag: a write
    with client(registry.url, "admin") as c:
        assert c.get("/v2/public/app/manifests/v2").status_code == 404


def test_tags_are_immutable_for_create_only_users(
    registry: Registry, seeded: tuple[str, bytes], skopeo: Skopeo, tmp_path: Path
) -> None:
    """ci may publish e2e/release:1.0 and push it again unchanged, but not move it to another image."""
    host = registry.host
    ci = f"ci:{PASSWORDS['ci']}"
    skopeo.copy(
        f"docker://{host}/e2e/seed:v1", f"docker://{host}/e2e/release:1.0", "--src-creds", ci, "--dest-creds", ci
    )
    skopeo.copy(
        f"docker://{host}/e2e/seed:v1", f"docker://{host}/e2e/release:1.0", "--src-creds", ci, "--dest-creds", ci
    )
    other = random_image(layers=1, size=3000, seed=62)
    write_oci_layout(str(tmp_path / "other"), other, "v1")
    argv = [skopeo.binary, "--policy", skopeo.policy, "copy", "--dest-tls-verify=false", "--dest-creds", ci]
    assert refused(fails(*argv, f"oci:{tmp_path / 'other'}:v1", f"docker://{host}/e2e/release:1.0"))
    skopeo.copy(f"oci:{tmp_path / 'other'}:v1", f"docker://{host}/e2e/release:1.1", "--dest-creds", ci)
    assert stored(registry, "e2e/release", "1.0").content == seeded[1]
    assert stored(registry, "e2e/release", "1.1").content == other.manifest
