"""``<root>/kura/gc/``: the leader and serving locks, the generation number and the record of past runs.

``state.json`` holds the last runs (for metrics and the UI), the retention policies already run once
(a new or changed policy runs dry first) and when uploads were last purged. ``generation`` holds a
number bumped by every run that removed something: a process caching anything about blobs drops it
when the number moves. Only the leader writes either file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from storage import paths
from storage.driver import Busy, PathNotFound, StorageDriver

log = logging.getLogger("kura.gc")

DIRECTORY = paths.join(paths.KURA, "gc")
LEADER = paths.join(DIRECTORY, "leader.lock")
SERVING = paths.join(DIRECTORY, "serving.lock")
STATE = paths.join(DIRECTORY, "state.json")
GENERATION = paths.join(DIRECTORY, "generation")
TRASH = paths.join(paths.KURA, "trash")
KEEP_RUNS = 20


@dataclass(slots=True)
class State:
    generation: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)  # newest last
    policies: list[str] = field(default_factory=list)  # fingerprints of retention policies that ran once
    uploads_purged_ns: int = 0
    totals: dict[str, int] = field(default_factory=dict)  # since the first run: runs, blobs_deleted, ...

    def add(self, run: dict[str, Any]) -> None:
        self.runs.append(run)
        if run.get("dry_run"):
            return
        self.totals["runs"] = self.totals.get("runs", 0) + 1
        for key in ("blobs_deleted", "bytes_freed", "manifests_deleted", "tags_removed", "uploads_purged"):
            self.totals[key] = self.totals.get(key, 0) + int(run.get(key) or 0)

    def last(self, *, dry: bool = False) -> dict[str, Any] | None:
        for run in reversed(self.runs):
            if run.get("dry_run") == dry and run.get("finished"):
                found: dict[str, Any] = run
                return found
        return None


async def load(driver: StorageDriver) -> State:
    try:
        raw = json.loads(await driver.get_content(STATE))
    except (PathNotFound, ValueError, RecursionError):
        return State()
    if not isinstance(raw, dict):
        return State()
    try:
        runs = raw.get("runs", [])
        return State(
            int(raw.get("generation", 0)),
            [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else [],
            [str(p) for p in raw.get("policies", [])],
            int(raw.get("uploads_purged_ns", 0)),
            {str(k): int(v) for k, v in dict(raw.get("totals", {})).items()},
        )
    except (TypeError, ValueError, OverflowError):
        # Edited by hand or cut short: a state nobody can read is no reason to stop collecting
        log.warning("%s is not Kura's state; starting from none", STATE)
        return State()


async def save(driver: StorageDriver, state: State) -> None:
    state.runs = state.runs[-KEEP_RUNS:]
    document = {
        "generation": state.generation,
        "runs": state.runs,
        "policies": state.policies,
        "uploads_purged_ns": state.uploads_purged_ns,
        "totals": state.totals,
    }
    await driver.put_content(STATE, json.dumps(document, indent=1).encode())
    await driver.put_content(GENERATION, str(state.generation).encode())


@asynccontextmanager
async def leader(driver: StorageDriver) -> AsyncIterator[None]:
    """The collector lock, exclusive across every process on the root; ``Busy`` when another holds it."""
    async with driver.lock(LEADER, shared=False, wait=0.0, create=True):
        yield


class ServerRunning(Exception):
    """An offline collection was asked for while a server serves the root (or another offline one runs:
    a flock does not say which)."""


class OfflineCollection(Exception):
    """A server was started while an offline collection runs on the root."""

    def __init__(self) -> None:
        super().__init__("an offline garbage collection runs on this root: start the server once it has finished")


@asynccontextmanager
async def serving(driver: StorageDriver) -> AsyncIterator[None]:
    """Held SHARED by every server process while it serves the root, so that an offline collection
    (which sweeps without stripe locks) never runs beside one. A server started during an offline
    collection does not start (``OfflineCollection``): waiting in its start-up would leave it deaf to
    SIGTERM, and a supervisor or restart policy starts it again."""
    async with AsyncExitStack() as held:
        try:
            await held.enter_async_context(driver.lock(SERVING, shared=True, create=True))
        except Busy:
            raise OfflineCollection() from None
        except OSError as exc:  # a read-only root: no collection can run on it either
            log.warning("serving without the serving lock (%s): %s", SERVING, exc)
        yield


@asynccontextmanager
async def alone(driver: StorageDriver) -> AsyncIterator[None]:
    """The serving lock, exclusively: no server serves the root meanwhile (``ServerRunning`` when one does)."""
    async with AsyncExitStack() as held:
        try:
            await held.enter_async_context(driver.lock(SERVING, shared=False, create=True))
        except Busy:
            raise ServerRunning(SERVING) from None
        yield
