"""The parent of ``kura serve --workers N``: keeps one worker on each listening socket, nothing else.

``kura serve`` binds N sockets to the port (SO_REUSEPORT, see ``app.cli.listening_sockets``), then
replaces itself with this module (``exec``), so the supervisor is the same PID (what ``docker stop``
signals) but a bare interpreter: it imports only the standard library. uvicorn's own supervisor imports
uvicorn and the app and adds multiprocessing's resource tracker, ~50 MB for a process that serves no
request.

Each worker is a fresh ``python -m app.worker`` that inherits its own socket; the kernel spreads new
connections over the sockets. A worker that dies is started again on the same socket, which this
process keeps open, so the connections queued on it wait for the new worker instead of being reset.
SIGTERM or SIGINT stops them all. With ``http.debug.addr`` each worker also gets a debug socket (an
argument is then ``fd,debugfd``). With metrics on, a dead worker's live gauges are dropped and the
metrics directory is removed at the end (``app.multiproc``, standard library too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from app import multiproc

BOOT_WINDOW = 5.0  # a worker that dies this soon after its start cannot boot: stop, as gunicorn does
GRACE = 30.0  # seconds the workers get to finish their requests on shutdown


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    fds: tuple[int, ...]
    started: float


class Supervisor:
    def __init__(self, fds: list[tuple[int, ...]]) -> None:
        self.fds = fds
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.failed = False

    def spawn(self, fds: tuple[int, ...]) -> None:
        argv = [sys.executable, "-m", "app.worker", ",".join(map(str, fds)), str(os.getpid())]
        process = subprocess.Popen(argv, pass_fds=fds)
        self.workers[process.pid] = Worker(process, fds, time.monotonic())

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for fd in self.fds:
            self.spawn(fd)
        while not self.stopping:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            worker = self.workers.pop(pid, None)
            multiproc.forget_worker(pid)
            if worker is None or self.stopping:
                continue
            if time.monotonic() - worker.started < BOOT_WINDOW:
                _say(f"worker {pid} failed to start ({_describe(status)}); stopping")
                self.failed = True
                self.stop(signal.SIGTERM, None)
                break
            _say(f"worker {pid} exited ({_describe(status)}); starting another")
            self.spawn(worker.fds)
        return self.shutdown()

    def shutdown(self) -> int:
        deadline = time.monotonic() + GRACE
        for worker in self.workers.values():
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        multiproc.remove_directory()
        return 1 if self.failed else 0


def _say(message: str) -> None:
    print(f"kura: {message}", file=sys.stderr, flush=True)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"


def main(argv: list[str]) -> int:
    return Supervisor([tuple(int(fd) for fd in arg.split(",")) for arg in argv]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
