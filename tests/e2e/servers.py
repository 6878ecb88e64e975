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


class Listener:
    """A socket listening on 127.0.0.1, on a port the kernel chose, for a server to inherit (``--fd``).

    Its port is known before the server starts (a config can name the server's own URL), nothing else
    can take it between "found free" and "bound" (as with a probe socket closed before the server
    bound its number), and a server the test restarts comes back on the same socket. The options are
    those of Kura's own sockets (app/cli.py): with SO_REUSEPORT each worker adds a sibling on the port.
    """

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(2048)
        self.socket.set_inheritable(True)
        self.port: int = self.socket.getsockname()[1]
        self.fd = self.socket.fileno()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.socket.close()


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port that refuses connections for as long as the block runs: bound, never listening.

    A closed port could meanwhile be taken by anything else on the machine.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def passed_fds(argv: list[str]) -> tuple[int, ...]:
    """The descriptors a ``kura serve`` command line inherits (``--fd N``, ``--debug-fd N``)."""
    return tuple(int(argv[i + 1]) for i, arg in enumerate(argv[:-1]) if arg in ("--fd", "--debug-fd"))


def announced(pattern: re.Pattern[str], process: subprocess.Popen[bytes], log: str, since: int = 0) -> str:
    """The address a server that cannot inherit a socket (a Go one) chose for port 0, from its log.

    ``pattern``'s first group is the address; only what the log gained after offset ``since`` is read.
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            f.seek(since)
            found = pattern.search(f.read().decode(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with open(log) as f:
        raise RuntimeError(f"server did not say where it listens ({pattern.pattern}):\n{f.read()}")


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
    process = spawn(argv, log, env)
    try:
        wait_ready(url, process, log)
        yield process
    finally:
        stop(process)


def spawn(argv: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``argv`` with its output appended to ``log`` and the descriptors its command line names passed on."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, pass_fds=passed_fds(argv)
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


KURA = [sys.executable, "-m", "app", "serve"]


def kura_argv(root: str, listener: Listener, *args: str, debug: Listener | None = None) -> list[str]:
    """``kura serve`` on the listener's socket (and the debug server on ``debug``'s)."""
    inherit = ["--fd", str(listener.fd), *(["--debug-fd", str(debug.fd)] if debug else [])]
    return [*KURA, "--root", root, *inherit, *args]


@contextlib.contextmanager
def kura(root: str, *args: str, delete: bool = True) -> Iterator[str]:
    env = dict(os.environ, REGISTRY_STORAGE_DELETE_ENABLED="true" if delete else "false")
    log = os.path.join(os.path.dirname(root), "kura.log")
    with (
        Listener() as listener,
        running(kura_argv(root, listener, *args), f"http://127.0.0.1:{listener.port}", log, env) as url,
    ):
        yield url


REGISTRY2_LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")  # logged at level info


@contextlib.contextmanager
def registry2_serving(config: str, log: str) -> Iterator[str]:
    """docker-registry on ``config``, unchanged but for the listen address: port 0, which it logs.

    A Go server cannot inherit a socket; the level is raised to info for the one line that says the port.
    """
    require_e2e_mark()
    env = dict(os.environ, REGISTRY_HTTP_ADDR="127.0.0.1:0", REGISTRY_LOG_LEVEL="info")
    since = os.path.getsize(log) if os.path.exists(log) else 0
    process = spawn([require(REGISTRY2), "serve", config], log, env)
    try:
        url = "http://" + announced(REGISTRY2_LISTENING, process, log, since)
        wait_ready(url, process, log)
        yield url
    finally:
        stop(process)


@contextlib.contextmanager
def registry2(root: str) -> Iterator[str]:
    config = os.path.join(os.path.dirname(root), "registry2.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n")
    with registry2_serving(config, os.path.join(os.path.dirname(root), "registry2.log")) as url:
        yield url
