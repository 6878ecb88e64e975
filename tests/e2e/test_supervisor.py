"""``kura serve --workers N``: the supervisor keeps N workers, restarts one that dies, and stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from app.supervisor import BOOT_WINDOW
from tests.e2e.servers import free_port, kura_argv, started


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def eventually(check: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def serving(tmp_path: Path, root: str) -> tuple[str, list[str], str]:
    port = free_port()
    return f"http://127.0.0.1:{port}", kura_argv(root, port, "--workers", "2"), str(tmp_path / "kura.log")


def test_a_dead_worker_is_replaced_and_sigterm_stops_all(tmp_path: Path, root: str) -> None:
    url, argv, log = serving(tmp_path, root)
    with started(argv, url, log) as supervisor:
        # kura serve became the supervisor (exec): the PID a container runtime signals
        assert eventually(lambda: len(children(supervisor.pid)) == 2)
        workers = children(supervisor.pid)
        time.sleep(BOOT_WINDOW + 0.5)  # past the window in which a death means "cannot boot"
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        assert eventually(lambda: len(children(supervisor.pid) - {victim}) == 2)
        assert httpx.get(f"{url}/v2/").status_code == 200
        workers = children(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
        assert not any(alive(pid) for pid in workers)
    with open(log) as f:
        assert f"worker {victim} exited (signal 9); starting another" in f.read()


def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path, root: str) -> None:
    url, argv, log = serving(tmp_path, root)
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


def test_workers_that_cannot_boot_stop_the_server(tmp_path: Path, root: str) -> None:
    port = free_port()
    env = dict(os.environ, REGISTRY_HTTP_TLS_CERTIFICATE=str(tmp_path / "missing.pem"))
    argv = kura_argv(root, port, "--workers", "2")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "failed to start" in result.stderr


def test_a_taken_port_is_a_clear_error(tmp_path: Path, root: str) -> None:
    url, argv, log = serving(tmp_path, root)
    with started(argv, url, log):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr and "in use" in result.stderr
