"""The pace of the server's own collections: they give way to requests while the workers are busy.

A low priority (``app.priority``) is not enough on a small machine. The collector's removals and
renames hold directory locks and wait for the disk's discards, which are the same locks and disk a
request needs. Its wake-ups also cost the workers' caches and cores. On two cores a collection
running flat out took 14-25 % of the request rate. So while the workers together use at least
``BUSY`` of a core, a collection starts a unit of work (a stripe, a repository, a blob, a batch of
trash) only while it has used no more than ``BUDGET`` cores of CPU time (``kura.gc.busycores``; a
token bucket of ``BURST``). It keeps going at that pace (it never stops, so a busy cache registry
still gets its disk back) and goes flat out again within a ``SAMPLE`` of the workers falling quiet.
CPU-bound processes that are not the server (a build beside it) do not slow it: only the server's
own processes are counted.

The server's processes are read from ``/proc``: the process named by ``SERVER_PID_ENV`` (the
supervisor, or the single worker) and its children, less the collector itself. Where ``/proc`` has
no children lists the collection is not paced. A collection run by hand beside servers (``kura
garbage-collect`` without ``--offline``) counts the processes that hold the root's serving lock:
every worker of every server on it (``StorageDriver.lock_holders``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence

SERVER_PID_ENV = "KURA_SERVER_PID"
BUDGET = 0.1  # cores a collection may use while the server is busy (kura.gc.busycores)
BURST = 0.05  # CPU seconds it may use at once after a wait
BUSY = 0.25  # cores the workers use together, at least, that make them busy
SAMPLE = 0.5  # seconds between two readings of the workers' CPU time
MIN_WAIT = 0.01  # seconds: the shortest wait worth a trip through the event loop
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Load:
    """The CPU time used by some processes, less ``own`` (the collector itself)."""

    def __init__(self, own: int | None = None) -> None:
        self.own = os.getpid() if own is None else own

    def listed(self) -> Sequence[int] | None:
        """The processes now; None when this system cannot tell."""
        raise NotImplementedError

    def pids(self) -> list[int] | None:
        found = self.listed()
        return None if found is None else [pid for pid in found if pid != self.own]

    def cpu_seconds(self) -> float | None:
        """User and system time used so far by the processes alive now."""
        pids = self.pids()
        if pids is None:
            return None
        ticks = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()  # after the name, which may hold anything
            except (OSError, IndexError):
                continue  # it ended meanwhile
            ticks += int(fields[11]) + int(fields[12])  # utime, stime: stat(5) fields 14 and 15
        return ticks / TICKS


class ServerLoad(Load):
    """A server's processes: ``root`` (the supervisor, or the single worker) and its children."""

    def __init__(self, root: int, own: int | None = None) -> None:
        super().__init__(own)
        self.root = root

    def listed(self) -> Sequence[int] | None:
        """None when this system does not list a process's children."""
        try:
            tasks = os.listdir(f"/proc/{self.root}/task")
        except OSError:
            return None
        children: list[int] = []
        for task in tasks:
            try:
                with open(f"/proc/{self.root}/task/{task}/children", "rb") as f:
                    children += [int(pid) for pid in f.read().split()]
            except FileNotFoundError:
                return None  # the process ended meanwhile, or no CONFIG_PROC_CHILDREN
            except OSError:
                continue
        return [self.root, *children]


class HolderLoad(Load):
    """The processes ``holders`` names: those holding a root's serving lock, every server on it."""

    def __init__(self, holders: Callable[[], Sequence[int] | None], own: int | None = None) -> None:
        super().__init__(own)
        self.holders = holders

    def listed(self) -> Sequence[int] | None:
        return self.holders()


class Pace:
    """Awaited before each unit of a collection's work (``storage.gc.sweep.Pace``): returns at once
    while the server is quiet; while it is busy, once this process has used no more CPU than
    ``budget`` cores since (a token bucket holding at most ``burst`` CPU seconds)."""

    def __init__(
        self,
        server_cpu: Callable[[], float | None],
        *,
        budget: float = BUDGET,
        burst: float = BURST,
        busy: float = BUSY,
        sample: float = SAMPLE,
        own_cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._server_cpu, self._own_cpu = server_cpu, own_cpu
        self._budget, self._burst, self._busy_cores, self._sample = budget, burst, busy, sample
        self._clock, self._sleep = clock, sleep
        self._sampled_at = self._at = clock()
        self._sampled = server_cpu()
        self._used = own_cpu()
        self._tokens = burst
        self.busy = False
        self.waited = 0.0  # seconds spent giving way, for the run's log

    async def __call__(self) -> None:
        while True:
            now = self._clock()
            if now - self._sampled_at >= self._sample:
                self._read(now)
            used = self._own_cpu()
            if not self.busy:
                self._tokens, self._at, self._used = self._burst, now, used
                return
            self._tokens = min(self._burst, self._tokens + self._budget * (now - self._at) - (used - self._used))
            self._at, self._used = now, used
            if self._tokens >= 0:
                return
            # At least a tick: a debt of a rounding error would otherwise be waited off forever.
            await self._sleep(min(self._sample, max(MIN_WAIT, -self._tokens / self._budget)))
            self.waited += self._clock() - now

    def _read(self, now: float) -> None:
        used = self._server_cpu()
        if used is None or self._sampled is None:
            self.busy = False
        else:
            # A worker that restarted counts from zero: a negative difference is no load.
            self.busy = (used - self._sampled) / (now - self._sampled_at) >= self._busy_cores
        self._sampled, self._sampled_at = used, now


def for_server(budget: float) -> Pace | None:
    """The pace of a collection the server started (``SERVER_PID_ENV`` set) with ``kura.gc.busycores``,
    else None (as for a budget of 0)."""
    pid = os.environ.get(SERVER_PID_ENV)
    if not budget or not pid or not pid.isdigit():
        return None
    return _paced(ServerLoad(int(pid)), budget)


def beside_servers(budget: float, holders: Callable[[], Sequence[int] | None]) -> Pace | None:
    """The pace of a collection run by hand (``kura garbage-collect`` without ``--offline``) beside the
    servers ``holders`` names, with ``kura.gc.busycores``; None for a budget of 0, or where the holders
    cannot be told (``StorageDriver.lock_holders``)."""
    return _paced(HolderLoad(holders), budget) if budget else None


def _paced(load: Load, budget: float) -> Pace | None:
    if load.cpu_seconds() is None:
        return None
    return Pace(load.cpu_seconds, budget=budget)
