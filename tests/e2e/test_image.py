"""The container image, built and run here without Docker Hub: a Debian base made by ``scripts/debian-base``
(debootstrap + ``docker import``), the repository's Dockerfile built by BuildKit on a private dockerd, then the
container run as users run it (no option but the image), pushed to and pulled from with skopeo."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Skopeo
from tests.e2e.daemons import dockerd
from tests.e2e.servers import REPO, eventually, require
from tests.oci import sha256

pytestmark = pytest.mark.e2e
DOCKER = "/usr/bin/docker"  # Debian's docker.io CLI, as in test_clients
CA = "/etc/ssl/certs/ca-certificates.crt"  # HTTPS here passes a proxy whose CA is only in the host's bundle
BASE_CACHE = "/var/cache/kura-test"  # the debootstrap'd root survives between runs (keyed by its inputs)
UID = 10001  # the Dockerfile's KURA_UID
FREEZE = "import importlib.metadata as m; print(*(f'{d.name}=={d.version}' for d in m.distributions()), sep='\\n')"


class Docker:
    def __init__(self, host: str) -> None:
        self.env = dict(os.environ, DOCKER_HOST=host, DOCKER=DOCKER, DOCKER_BUILDKIT="1", KURA_BASE_CACHE=BASE_CACHE)

    def __call__(self, *args: str, timeout: float = 300) -> str:
        return self.run(DOCKER, *args, timeout=timeout)

    def run(self, *argv: str, timeout: float = 300) -> str:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env, cwd="/tmp")
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr[-5000:]}"
        return result.stdout

    def inspect(self, name: str) -> Any:
        return json.loads(self("inspect", name))[0]


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    require(DOCKER)
    require("debootstrap")
    with dockerd(str(tmp_path_factory.mktemp("image-dockerd"))) as host:
        yield Docker(host)


@pytest.fixture(scope="module")
def image(docker: Docker) -> str:
    """The repository's Dockerfile built on a Debian base, the way the README says to build it without Docker Hub."""
    base = docker.run(os.path.join(REPO, "scripts", "debian-base"), timeout=600).strip()
    # The Debian base has no Python: the Dockerfile's apt branch installs it, then pip installs the lock.
    assert docker("run", "--rm", "--network", "none", base, "sh", "-c", "command -v python3 || echo none") == "none\n"
    secret = ["--secret", f"id=ca,src={CA}"] if os.path.exists(CA) else []
    build = ["build", "--network", "host", *secret, "--build-arg", f"BASE={base}", "-t", "kura:e2e", REPO]
    docker(*build, timeout=1200)
    return "kura:e2e"


@pytest.fixture(scope="module")
def container(docker: Docker, image: str) -> Iterator[str]:
    """The image run with nothing but its defaults: port 5000 inside its own network namespace, config, volume."""
    name = f"kura-e2e-{os.getpid()}"
    docker("run", "-d", "--name", name, "--network", "none", image)
    try:
        yield name
    finally:
        subprocess.run([DOCKER, "rm", "-f", "-v", name], env=docker.env, capture_output=True, timeout=60)


def in_image(docker: Docker, image: str, program: str, *args: str) -> str:
    return docker("run", "--rm", "--network", "none", "--entrypoint", program, image, *args)


def health(docker: Docker, name: str) -> str:
    status: str = docker.inspect(name)["State"]["Health"]["Status"]
    return status


def in_container_network(docker: Docker, name: str, *argv: str) -> str:
    """Runs a host program in the container's network namespace, so 127.0.0.1:5000 is the container's port."""
    pid = str(docker.inspect(name)["State"]["Pid"])
    return docker.run("nsenter", "--target", pid, "--net", *argv, timeout=180)


def test_image_is_laid_out_like_registry2(docker: Docker, image: str) -> None:
    config = docker.inspect(image)["Config"]
    assert config["User"] == "kura"
    assert list(config["ExposedPorts"]) == ["5000/tcp"]
    assert list(config["Volumes"]) == ["/var/lib/registry"]
    assert config["Entrypoint"] + config["Cmd"] == ["kura", "serve", "--config", "/etc/docker/registry/config.yml"]
    shipped = in_image(docker, image, "cat", "/etc/docker/registry/config.yml")
    assert shipped == (Path(REPO) / "deploy" / "config.yml").read_text()
    # The installed versions are the lock's, exactly.
    frozen = in_image(docker, image, "python3", "-c", FREEZE)
    lock = (Path(REPO) / "requirements.lock").read_text()
    pins = {normal(line.split(" ")[0]) for line in lock.splitlines() if "==" in line and not line.startswith(" ")}
    pins -= {p for p in pins if p.startswith("setuptools==")}  # the build backend, removed after the install
    assert {normal(p) for p in frozen.split()} == pins | {f"kura=={version()}"}


def version() -> str:
    project: dict[str, str] = tomllib.loads((Path(REPO) / "pyproject.toml").read_text())["project"]
    return project["version"]


def normal(pin: str) -> str:
    """A name==version pin with the name normalised as in PEP 503 (PyJWT, pydantic_core)."""
    name, version = pin.split("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def test_container_becomes_healthy_and_runs_as_non_root(docker: Docker, container: str) -> None:
    assert eventually(lambda: health(docker, container) == "healthy", timeout=120), docker.inspect(container)["State"]
    pid = docker.inspect(container)["State"]["Pid"]
    processes = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    assert len(processes) >= 2  # the supervisor and its workers
    for process in processes:
        status = Path(f"/proc/{process}/status").read_text()
        [uids] = [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")]
        assert uids == [str(UID)] * 4, (process, uids)  # real, effective, saved, filesystem
    volume = next(m for m in docker.inspect(container)["Mounts"] if m["Destination"] == "/var/lib/registry")
    assert os.stat(volume["Source"]).st_uid == UID  # a named volume starts out owned by kura


def test_healthcheck_fails_when_the_registry_does_not_answer(docker: Docker, container: str) -> None:
    check = docker.inspect(container)["Config"]["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    argv = [DOCKER, "exec", "-e", "KURA_HEALTHCHECK_URL=http://127.0.0.1:1/v2/", container, *check[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, env=docker.env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("http://127.0.0.1:1/v2/: ") and "Traceback" not in result.stderr


def test_push_pull_and_restart_keep_the_data(docker: Docker, container: str, skopeo: Skopeo, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("served from the kura image\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    docker("build", "-t", "tiny:v1", str(tmp_path))
    assert eventually(lambda: health(docker, container) == "healthy", timeout=120)
    copy = [skopeo.binary, "--policy", skopeo.policy, "copy", "--src-tls-verify=false", "--dest-tls-verify=false"]
    daemon = ["--src-daemon-host", docker.env["DOCKER_HOST"]]
    in_container_network(docker, container, *copy, *daemon, "docker-daemon:tiny:v1", "docker://127.0.0.1:5000/tiny:v1")

    def pull(into: Path) -> bytes:
        in_container_network(docker, container, *copy, "docker://127.0.0.1:5000/tiny:v1", f"oci:{into}:v1")
        [entry] = json.loads((into / "index.json").read_text())["manifests"]
        manifest = json.loads((into / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes())
        [layer] = manifest["layers"]
        data = (into / "blobs" / "sha256" / str(layer["digest"]).split(":")[1]).read_bytes()
        assert sha256(data) == layer["digest"]
        return data

    first = pull(tmp_path / "pulled")
    # The blob is in the volume, in registry:2's tree, written by the kura user.
    volume = next(m for m in docker.inspect(container)["Mounts"] if m["Destination"] == "/var/lib/registry")
    blob = Path(volume["Source"], "docker/registry/v2/blobs/sha256", sha256(first)[7:9], sha256(first)[7:], "data")
    assert blob.read_bytes() == first and blob.stat().st_uid == UID
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as tar:
        member = tar.extractfile("hello.txt")
        assert member is not None and member.read() == b"served from the kura image\n"

    # docker stop sends SIGTERM to PID 1, Kura's supervisor: exit status 0, not 137 from a SIGKILL after the grace.
    docker("stop", "--time", "60", container)
    state = docker.inspect(container)["State"]
    assert state["ExitCode"] == 0, state
    docker("start", container)
    assert eventually(lambda: health(docker, container) == "healthy", timeout=120)
    assert pull(tmp_path / "again") == first
