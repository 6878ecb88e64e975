"""The server's collections give way to its requests (app.pace): a CPU budget while the workers are busy."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from app.pace import SERVER_PID_ENV, HolderLoad, Pace, ServerLoad, beside_servers, for_server


class World:
    """A fake clock, the server's CPU time and the collector's own, advanced by the test."""

    def __init__(self, server_cores: float) -> None:
        self.now = 1000.0
        self.server_cores = server_cores
        self.server = 0.0
        self.own = 0.0
        self.slept: list[float] = []

    def server_cpu(self) -> float:
        return self.server

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.server += self.server_cores * seconds

    def pace(self, **kwargs: float) -> Pace:
        return Pace(
            self.server_cpu,
            own_cpu=lambda: self.own,
            clock=lambda: self.now,
            sleep=self.sleep,
            **kwargs,
        )


async def _work(world: World, pace: Pace, units: int, cpu: float) -> None:
    """``units`` units of work, each using ``cpu`` seconds of CPU in as much wall time."""
    for _ in range(units):
        await pace()
        world.own += cpu
        world.advance(cpu)


async def test_a_quiet_server_lets_the_collection_run_flat_out() -> None:
    world = World(server_cores=0.1)
    pace = world.pace(budget=0.1, busy=0.25, sample=0.5)

    await _work(world, pace, 200, 0.01)

    assert world.slept == [] and not pace.busy


async def test_a_busy_server_holds_the_collection_to_its_budget() -> None:
    world = World(server_cores=1.5)
    pace = world.pace(budget=0.1, burst=0.05, busy=0.25, sample=0.5)
    started = world.now

    await _work(world, pace, 400, 0.01)  # 4 CPU seconds of work

    elapsed = world.now - started
    assert pace.busy and pace.waited > 0
    # Within its budget over the whole run (plus one sample flat out and one burst)...
    assert world.own <= 0.1 * elapsed + 0.5 + 0.05 + 0.01
    # ...and not held back further: it gets its budget.
    assert world.own >= 0.1 * (elapsed - 0.5) - 0.01
    assert max(world.slept) <= 0.5  # it looks at the server again at least every sample


async def test_the_collection_speeds_up_again_once_the_server_is_quiet() -> None:
    world = World(server_cores=1.5)
    pace = world.pace(budget=0.1, busy=0.25, sample=0.5)
    await _work(world, pace, 100, 0.01)
    assert pace.busy

    world.server_cores = 0.0
    await _work(world, pace, 60, 0.01)  # the next reading sees the quiet server
    slept = len(world.slept)
    await _work(world, pace, 200, 0.01)

    assert not pace.busy and len(world.slept) == slept


async def test_an_unknown_server_load_never_slows_the_collection() -> None:
    world = World(server_cores=2.0)
    pace = Pace(lambda: None, own_cpu=lambda: world.own, clock=lambda: world.now, sleep=world.sleep)

    await _work(world, pace, 300, 0.01)

    assert world.slept == [] and not pace.busy


@contextlib.contextmanager
def burnt() -> Iterator[subprocess.Popen[bytes]]:
    """A child process that has used 0.3 s of CPU, alive until the block ends."""
    burn = "import time\nwhile time.process_time() < 0.3: pass\nprint('done', flush=True)\ninput()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"done\n"
        yield child
    finally:
        child.communicate(b"\n", timeout=30)


def test_the_server_load_counts_the_servers_children_but_not_the_collector() -> None:
    with burnt() as child:
        as_root = ServerLoad(os.getpid(), own=os.getpid())  # this process is the server; it counts only its child
        as_collector = ServerLoad(os.getpid(), own=child.pid)  # the child is the collector: left out

        pids = as_root.pids()
        assert pids is not None and child.pid in pids and os.getpid() not in pids
        assert (as_root.cpu_seconds() or 0.0) >= 0.29
        left_out = as_collector.pids()
        assert left_out is not None and child.pid not in left_out and os.getpid() in left_out
    assert ServerLoad(2**22 + 12345).cpu_seconds() is None  # no such process: no reading, no pace


def test_the_load_beside_servers_counts_the_processes_holding_the_serving_lock() -> None:
    with burnt() as child:
        holders: list[int] | None = [child.pid, os.getpid()]
        load = HolderLoad(lambda: holders)  # this process is the collector: left out
        assert load.pids() == [child.pid]
        assert (load.cpu_seconds() or 0.0) >= 0.29
        holders = []
        assert load.cpu_seconds() == 0.0  # the servers stopped: no load, no waits
        holders = None
        assert load.cpu_seconds() is None
    assert isinstance(beside_servers(0.1, lambda: []), Pace)  # a server may start during the run
    assert beside_servers(0.0, lambda: [os.getpid()]) is None  # kura.gc.busycores: 0
    assert beside_servers(0.1, lambda: None) is None  # the driver cannot tell


def test_only_the_servers_own_runs_are_paced_and_a_zero_budget_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_PID_ENV, raising=False)
    assert for_server(0.1) is None  # `kura garbage-collect` by hand: no server known
    monkeypatch.setenv(SERVER_PID_ENV, str(os.getpid()))
    assert for_server(0.0) is None  # kura.gc.busycores: 0
    assert isinstance(for_server(0.1), Pace)
