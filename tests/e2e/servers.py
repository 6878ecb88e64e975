"""Real servers for end-to-end tests: ``kura serve`` and the reference registry, each as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGISTRY2 = "/usr/bin/docker-registry"
marked_e2e = False  # whether the running test carries the e2e mark (set by a hook in tests/conftest.py)


def require_e2e_mark() -> None:
    """A test that starts a server must be marked e2e, so that ``-m e2e`` and ``-m "not e2e"`` split right."""
    if not marked_e2e:
        pytest.fail("this test starts a server: mark it e2e (pytestmark = pytest.mark.e2e)")


def require(binary: str) -> str:
    """The path of a client the suite needs; its absence is a failure, never a skip."""
    beside_python = os.path.join(os.path.dirname(sys.executable), binary)  # console scripts of the venv
    if os.path.isabs(binary):
        path = binary if os.path.exists(binary) else None
    else:
        path = beside_python if os.path.exists(beside_python) else shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: run scripts/test (it installs every client the suite drives)")
    return path


_LOGFMT = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def access_log(path: str) -> list[dict[str, str]]:
    """The access lines of a ``log.formatter: text`` log: ``msg="response completed"`` key=value fields."""
    entries = []
    with open(path) as f:
        for line in f:
            fields = {k: json.loads(v) if v.startswith('"') else v for k, v in _LOGFMT.findall(line)}
            if fields.get("msg") == "response completed":
                entries.append(fields)
    return entries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def eventually(check: Callable[[], bool], timeout: float = 20) -> bool:
    """Whether ``check`` holds within ``timeout`` seconds (a wait for a state, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"server exited with {process.returncode}:\n{f.read()}")
        with contextlib.suppress(httpx.HTTPError):
            # 401: up, with auth configured
            if httpx.get(f"{url}/v2/", timeout=1, verify=False).status_code in (200, 401):
                return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server at {url} did not start")


@contextlib.contextmanager
def running(argv: list[str], url: str, log: str, env: dict[str, str] | None = None) -> Iterator[str]:
    with started(argv, url, log, env):
        yield url


@contextlib.contextmanager
def started(
    argv: list[str], url: str, log: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    require_e2e_mark()
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        wait_ready(url, process, log)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kura_argv(root: str, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "app", "serve", "--root", root, "--host", "127.0.0.1", "--port", str(port), *args]


@contextlib.contextmanager
def kura(root: str, *args: str, delete: bool = True) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, REGISTRY_STORAGE_DELETE_ENABLED="true" if delete else "false")
    log = os.path.join(os.path.dirname(root), "kura.log")
    with running(kura_argv(root, port, *args), f"http://127.0.0.1:{port}", log, env) as url:
        yield url


@contextlib.contextmanager
def registry2(root: str) -> Iterator[str]:
    binary = require(REGISTRY2)
    port = free_port()
    config = os.path.join(os.path.dirname(root), "registry2.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
        )
    log = os.path.join(os.path.dirname(root), "registry2.log")
    with running([binary, "serve", config], f"http://127.0.0.1:{port}", log) as url:
        yield url
