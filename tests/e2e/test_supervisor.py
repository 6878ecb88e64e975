"""``kura serve --workers N``: the supervisor keeps N workers, restarts one that dies, and stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.supervisor import BOOT_WINDOW
from tests.e2e.servers import KURA, Listener, eventually, kura_argv, passed_fds, started

pytestmark = pytest.mark.e2e  # starts a server


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def serving(tmp_path: Path, root: str, listener: Listener) -> tuple[str, list[str], str]:
    url = f"http://127.0.0.1:{listener.port}"
    return url, kura_argv(root, listener, "--workers", "2"), str(tmp_path / "kura.log")


def test_a_dead_worker_is_replaced_and_sigterm_stops_all(tmp_path: Path, root: str, listener: Listener) -> None:
    url, argv, log = serving(tmp_path, root, listener)
    with started(argv, url, log) as supervisor:
        # kura serve became the supervisor (exec): the PID a container runtime signals
        assert eventually(lambda: len(children(supervisor.pid)) == 2)
        workers = children(supervisor.pid)
        time.sleep(BOOT_WINDOW + 0.5)  # past the window in which a death means "cannot boot"
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        # Connections that arrive on the dead worker's socket wait for its replacement: none is reset.
        port = int(url.rsplit(":", 1)[1])
        with answered_connections(port, 16):
            pass
        assert eventually(lambda: len(children(supervisor.pid) - {victim}) == 2)
        assert httpx.get(f"{url}/v2/").status_code == 200
        workers = children(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
        assert not any(alive(pid) for pid in workers)
    with open(log) as f:
        assert f"worker {victim} exited (signal 9); starting another" in f.read()


def environment(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(entry.decode().partition("=")[::2] for entry in f.read().split(b"\0") if entry)


@pytest.mark.parametrize("configured", [None, "4"])
def test_workers_run_with_two_malloc_arenas_unless_told_otherwise(
    tmp_path: Path, root: str, listener: Listener, configured: str | None
) -> None:
    url, argv, log = serving(tmp_path, root, listener)
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    if configured is not None:
        env["MALLOC_ARENA_MAX"] = configured
    with started(argv, url, log, env=env) as supervisor:
        assert eventually(lambda: len(children(supervisor.pid)) == 2)
        for worker in children(supervisor.pid):
            assert environment(worker)["MALLOC_ARENA_MAX"] == (configured or "2")


def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path, root: str, listener: Listener) -> None:
    url, argv, log = serving(tmp_path, root, listener)
    with started(argv, url, log) as supervisor:
        assert eventually(lambda: len(children(supervisor.pid)) == 2)
        workers = children(supervisor.pid)
        supervisor.kill()
        supervisor.wait()
        try:
            assert eventually(lambda: not any(alive(pid) for pid in workers))
        finally:
            for pid in filter(alive, workers):
                os.kill(pid, signal.SIGKILL)


def test_workers_that_cannot_boot_stop_the_server(tmp_path: Path, root: str, listener: Listener) -> None:
    env = dict(os.environ, REGISTRY_HTTP_TLS_CERTIFICATE=str(tmp_path / "missing.pem"))
    argv = kura_argv(root, listener, "--workers", "2")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, pass_fds=passed_fds(argv))
    assert result.returncode == 1
    assert "failed to start" in result.stderr


def test_a_taken_port_is_a_clear_error(tmp_path: Path, root: str, listener: Listener) -> None:
    url, argv, log = serving(tmp_path, root, listener)
    again = [*KURA, "--root", root, "--host", "127.0.0.1", "--port", str(listener.port), "--workers", "2"]
    with started(argv, url, log):
        result = subprocess.run(again, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr and "in use" in result.stderr


@contextmanager
def answered_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` new connections, each opened at once and each answered 200 to a ``GET /v2/``."""
    clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    try:
        for client in clients:
            client.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        for client in clients:
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
        yield clients
    finally:
        for client in clients:
            client.close()


def connections_by_worker(port: int, workers: set[int]) -> dict[int, int]:
    """How many of the open connections to ``port`` each worker holds (from /proc/net/tcp and fds)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "01":  # ESTABLISHED, server side
                inodes.add(f"socket:[{fields[9]}]")
    held = {}
    for pid in workers:
        links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        held[pid] = len(links & inodes)
    return held


def test_a_burst_of_connections_is_spread_over_the_workers(tmp_path: Path, root: str, listener: Listener) -> None:
    url, argv, log = serving(tmp_path, root, listener)
    port = int(url.rsplit(":", 1)[1])
    with started(argv, url, log) as supervisor:
        assert eventually(lambda: len(children(supervisor.pid)) == 2)
        # On one shared listening socket, the first worker to wake accepted a whole burst.
        with answered_connections(port, 32):
            held = connections_by_worker(port, children(supervisor.pid))
    assert sum(held.values()) == 32
    assert min(held.values()) >= 4, held  # binomial(32, 1/2): fewer than 4 on one side is ~3e-6
