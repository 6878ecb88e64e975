"""The parent of ``kura serve --workers N``: keeps N workers on one listening socket, nothing else.

``kura serve`` binds the socket, then replaces itself with this module (``exec``), so the supervisor is
the same PID (what ``docker stop`` signals) but a bare interpreter: it imports only the standard
library. uvicorn's own supervisor imports uvicorn and the app and adds multiprocessing's resource
tracker, ~50 MB for a process that serves no request.

Each worker is a fresh ``python -m app.worker`` that inherits the socket; the kernel spreads new
connections over them. A worker that dies is started again; SIGTERM or SIGINT stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

BOOT_WINDOW = 5.0  # a worker that dies this soon after its start cannot boot: stop, as gunicorn does
GRACE = 30.0  # seconds the workers get to finish their requests on shutdown


class Supervisor:
    def __init__(self, fd: int, count: int) -> None:
        self.fd = fd
        self.count = count
        self.workers: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self.stopping = False
        self.failed = False

    def spawn(self) -> None:
        argv = [sys.executable, "-m", "app.worker", str(self.fd), str(os.getpid())]
        worker = subprocess.Popen(argv, pass_fds=(self.fd,))
        self.workers[worker.pid] = (worker, time.monotonic())

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for worker, _ in self.workers.values():
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for _ in range(self.count):
            self.spawn()
        while not self.stopping:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            entry = self.workers.pop(pid, None)
            if entry is None or self.stopping:
                continue
            if time.monotonic() - entry[1] < BOOT_WINDOW:
                _say(f"worker {pid} failed to start ({_describe(status)}); stopping")
                self.failed = True
                self.stop(signal.SIGTERM, None)
                break
            _say(f"worker {pid} exited ({_describe(status)}); starting another")
            self.spawn()
        return self.shutdown()

    def shutdown(self) -> int:
        deadline = time.monotonic() + GRACE
        for worker, _ in self.workers.values():
            try:
                worker.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        return 1 if self.failed else 0


def _say(message: str) -> None:
    print(f"kura: {message}", file=sys.stderr, flush=True)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"


def main(argv: list[str]) -> int:
    fd, count = int(argv[0]), int(argv[1])
    return Supervisor(fd, count).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
