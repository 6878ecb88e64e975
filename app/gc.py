"""``kura garbage-collect`` (registry:2's command and flags, plus ``--offline`` and ``--grace``) and the
server's schedule, which runs the same collection online, every ``kura.gc.interval``, at most once at
a time among all worker processes (the leader lock), and purges stale uploads every
``storage.maintenance.uploadpurging.interval``.

On the filesystem driver the server runs each collection as a child process at a low CPU and disk
priority (``app.priority``: SCHED_BATCH at nice 19, the lowest best-effort I/O level), so requests win
most contentions for a core or the disk while it marks and sweeps, yet it still finishes on a busy
machine. While the server's workers are busy it also keeps to a CPU budget (``app.pace``,
``kura.gc.busycores``). Other drivers (in-memory: one process by nature) run it in the worker itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from app.config import SETTINGS_ENV, Settings

if TYPE_CHECKING:
    from app.pace import Pace
    from storage import StorageDriver
    from storage.gc import collector
    from storage.gc.report import Report

log = logging.getLogger("kura.gc")

TICK_MAX = 60.0  # seconds between looks at the schedule, at most


def add_parser(commands: Any) -> None:
    g = commands.add_parser(
        "garbage-collect",
        help="remove what no tag or manifest needs (registry:2's command; safe beside a running Kura)",
        description="Mark what tags, manifests, index children and referrers need; sweep the rest. Without "
        "--offline it is safe beside a serving Kura on the same root: it honours the grace period and the "
        "collector lock the server's own GC takes.",
    )
    g.add_argument("configuration", nargs="?", help="config.yml (as registry:2 takes it)")
    g.add_argument("--config", help="config.yml (the same as the positional argument)")
    g.add_argument("--root", help="storage root (storage.filesystem.rootdirectory)")
    g.add_argument("-d", "--dry-run", action="store_true", help="print what would be removed, remove nothing")
    g.add_argument("-m", "--delete-untagged", action="store_true", help="also remove manifests no tag reaches")
    g.add_argument("-q", "--quiet", action="store_true", help="print only the totals")
    g.add_argument("--offline", action="store_true", help="the registry is stopped: no grace period")
    g.add_argument("--grace", help="override kura.gc.grace (e.g. 90s, 2h)")
    g.add_argument("--settings-env", action="store_true", help=argparse.SUPPRESS)  # the server's own runs
    g.set_defaults(func=command)


def _settings(args: argparse.Namespace) -> Settings:
    from app.cli import resolve_storage

    if args.settings_env:
        return Settings.model_validate_json(os.environ[SETTINGS_ENV])
    return resolve_storage(args.configuration or args.config, args.root)


def command(args: argparse.Namespace) -> int:
    from app import pace as pacing
    from storage.driver import Busy
    from storage.gc import collector, duration
    from storage.gc.state import ServerRunning

    if args.settings_env:
        from app import priority

        priority.lower()  # the server's own run: before the driver starts its threads, which inherit it
    settings = _settings(args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet and not args.settings_env else logging.INFO,
        format="kura gc: %(message)s",
        stream=sys.stderr,
    )
    overrides: dict[str, object] = {"dry_run": args.dry_run, "offline": args.offline}
    if args.delete_untagged:
        overrides["delete_untagged"] = True
    if args.grace:
        try:
            overrides["grace"] = duration.parse(args.grace)
        except ValueError as exc:
            print(f"kura garbage-collect: {exc}", file=sys.stderr)
            return 2
    options = collector.Settings.of(
        settings.kura.gc, settings.kura.retention, settings.storage.maintenance.uploadpurging, **overrides
    )
    if settings.storage.driver() != "filesystem":
        print("kura garbage-collect: only a filesystem root can be collected from the command line", file=sys.stderr)
        return 2

    driver = settings.open_driver()
    if args.settings_env:
        pace = pacing.for_server(settings.kura.gc.busycores)
    else:
        pace = None if args.offline else _beside_servers(driver, settings)

    async def run() -> str:
        try:
            report = await collected(settings, driver, options, pace)
        finally:
            await driver.close()
        return report.render(quiet=args.quiet or args.settings_env)

    try:
        output = asyncio.run(run())
    except Busy:
        if args.settings_env:
            return 0  # another worker's run won the lock: nothing to say
        print("kura garbage-collect: another collection is running on this root; try again later", file=sys.stderr)
        return 1
    except ServerRunning:
        print(
            "kura garbage-collect: a Kura server is serving this root (or another offline collection "
            "runs): stop it for --offline, or collect without --offline (safe beside a server)",
            file=sys.stderr,
        )
        return 1
    if args.settings_env:
        log.info("%s", output.strip())  # the server's own run: into its log
    else:
        print(output, end="")
    if pace is not None and pace.waited:
        log.info("gave way to requests for %.1fs", pace.waited)
    return 0


def _beside_servers(driver: StorageDriver, settings: Settings) -> Pace | None:
    """A collection run by hand while servers serve the root is run as theirs are: at a low priority
    (before the driver starts a thread, which inherits it) and paced by their load (app.pace)."""
    from app import pace, priority
    from storage.gc import state

    servers = driver.lock_holders(state.SERVING)
    if not servers:
        return None
    applied = priority.lower()
    log.info("the root is served (processes %s): collecting at %s", " ".join(map(str, servers)), ", ".join(applied))
    paced = pace.beside_servers(settings.kura.gc.busycores, lambda: driver.lock_holders(state.SERVING))
    if paced is not None:
        log.info("giving way to their requests while they are busy (kura.gc.busycores %g)", settings.kura.gc.busycores)
    return paced


async def collected(
    settings: Settings, driver: StorageDriver, options: collector.Settings, pace: Pace | None = None
) -> Report:
    """One collection (paced by ``pace``, ``app.pace``), observed, with its notification events spooled."""
    from app.notify import collection
    from storage.gc import collector, sweep

    report = await observed(collector.collect(driver, options, pace or sweep.unpaced), bool(options.retention))
    try:
        await collection.spool(settings, driver, report)
    except Exception:  # the removals are done: the run's report and metrics stand
        log.exception("the collection's notification events could not all be spooled")
    return report


async def observed(run: Awaitable[Report], retention: bool) -> Report:
    """``run``, counted in the metrics (``kura_gc_*``, ``kura_retention_*``, and the stored totals
    ``kura_blobs_stored``, ``kura_bytes_stored``, ``kura_bytes_saved_by_deduplication``) unless it is a
    dry run or lost the leader lock. A server's collection runs in a child process that inherits the server's
    multiprocess directory, so its counts reach every worker's /metrics."""
    from app import metrics
    from storage.driver import Busy

    started = time.monotonic()
    try:
        report = await run
    except Busy:
        raise
    except Exception:
        metrics.observe_gc_run(time.monotonic() - started, False, 0, 0)
        if retention:
            metrics.observe_retention_run(False, 0)
        raise
    if not report.dry_run:
        metrics.observe_gc_run(time.monotonic() - started, True, report.blobs_deleted, report.bytes_freed)
        metrics.set_storage_totals(report.blobs_stored, report.bytes_stored, report.bytes_deduplicated)
        if retention:
            metrics.observe_retention_run(True, report.tags_removed)
    return report


# -- the server's schedule ---------------------------------------------------------------------------


def start(settings: Settings, registry: Any) -> asyncio.Task[None] | None:
    """The schedule's task for this worker, or None when nothing is scheduled (or the root is read-only)."""
    gc = settings.kura.gc
    purging = settings.storage.maintenance.uploadpurging
    if settings.storage.maintenance.readonly.enabled or not (gc.enabled or purging.enabled):
        return None
    return asyncio.create_task(_schedule(settings, registry), name="kura-gc")


async def _schedule(settings: Settings, registry: Any) -> None:
    from storage.driver import Busy
    from storage.gc import collector, purging, state

    gc = settings.kura.gc
    uploads = settings.storage.maintenance.uploadpurging
    intervals = [i for i, on in ((gc.interval, gc.enabled), (uploads.interval, uploads.enabled)) if on]
    tick = min(TICK_MAX, max(0.2, min(intervals) / 4))
    driver = registry.driver
    while True:
        await asyncio.sleep(tick * random.uniform(0.5, 1.5))  # workers look at different moments
        try:
            saved = await state.load(driver)
            now = time.time_ns()
            last = saved.last()
            if gc.enabled and (last is None or now - int(last.get("started_ns", 0)) >= gc.interval * 1e9):
                if driver.name == "filesystem":
                    await _collect_in_child(settings)
                else:
                    await collected(settings, driver, collector.Settings.of(gc, settings.kura.retention, uploads))
            elif uploads.enabled and now - saved.uploads_purged_ns >= uploads.interval * 1e9:
                await purging.purge_all(driver, uploads)
        except Busy:
            continue  # another worker (or a `kura garbage-collect`) is collecting
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("garbage collection failed; trying again at the next interval")


async def _collect_in_child(settings: Settings) -> None:
    from app.pace import SERVER_PID_ENV

    # The collection gives way to this server's requests (app.pace): a supervised worker has named
    # its supervisor; a single worker is the server.
    env = dict(os.environ, **{SETTINGS_ENV: settings.model_dump_json()})
    env.setdefault(SERVER_PID_ENV, str(os.getpid()))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "garbage-collect",
        "--settings-env",
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        await child.wait()
    finally:
        if child.returncode is None:  # the worker is stopping: so does its collection (it is restartable)
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            await child.wait()


def offline_run_on(settings: Settings) -> bool:
    """Whether an offline collection runs on the root (it holds the serving lock exclusively)."""
    from storage.gc import state

    async def probe() -> bool:
        driver = settings.open_driver()
        try:
            async with state.serving(driver):
                return False
        except state.OfflineCollection:
            return True
        finally:
            await driver.close()

    return asyncio.run(probe())
