"""Private Docker and containerd daemons for the client suite (no networking, no iptables, vfs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator

from tests.e2e.servers import require, stop


def _wait_for(path: str, process: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if process.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"daemon exited:\n{f.read()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear")


def _stop(process: subprocess.Popen[bytes], work: str) -> None:
    stop(process, timeout=30)
    # Anything a daemon left mounted under its directory would make the directory undeletable.
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(work)]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


@contextlib.contextmanager
def dockerd(work: str) -> Iterator[str]:
    """Yields DOCKER_HOST for a private dockerd; 127.0.0.0/8 registries are insecure by default."""
    binary = require("dockerd")
    os.makedirs(work, exist_ok=True)
    config = os.path.join(work, "daemon.json")
    with open(config, "w") as f:
        f.write("{}")
    sock = os.path.join(work, "docker.sock")
    log = os.path.join(work, "dockerd.log")
    argv = [
        binary, "--config-file", config, "--data-root", os.path.join(work, "data"),
        "--exec-root", os.path.join(work, "exec"), "--pidfile", os.path.join(work, "dockerd.pid"),
        "-H", f"unix://{sock}", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
    ]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(sock, process, log)
        host = f"unix://{sock}"
        deadline = time.monotonic() + 30
        while subprocess.run(["/usr/bin/docker", "-H", host, "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not answer")
            time.sleep(0.2)
        yield host
    finally:
        _stop(process, work)


@contextlib.contextmanager
def containerd(work: str) -> Iterator[str]:
    """Yields the socket of a private containerd."""
    binary = require("containerd")
    os.makedirs(work, exist_ok=True)
    sock = os.path.join(work, "ctrd.sock")
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'version = 2\nroot = "{work}/root"\nstate = "{work}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{work}/opt"\n'
        )
    log = os.path.join(work, "containerd.log")
    with open(log, "ab") as out:
        process = subprocess.Popen([binary, "--config", config], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(sock, process, log)
        yield sock
    finally:
        _stop(process, work)
