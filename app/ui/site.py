"""The UI's state in one worker process: the gate, the session key and what it caches."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, date, datetime
from typing import Any

from app.auth.accounts import Accounts
from app.config import Settings
from app.images import explain
from app.ui.viewer import Gate
from storage import Registry, browse, secret, usage
from storage.errors import StorageError
from storage.usage import Usage

log = logging.getLogger("kura.ui")

USAGE_TTL = 30.0  # seconds the registry-wide usage walk is reused (the storage page, layer share counts)
REPORTS = 20_000  # explanations kept (manifests are immutable by digest)


class NoReferrers(explain.LocalSource):
    """For the tag list: referrers are shown on the manifest page only, and would cost a revision scan."""

    async def referrers(self, name: str, digest: str) -> list[dict[str, Any]]:
        return []


class Site:
    def __init__(self, settings: Settings, shared: Accounts | None = None) -> None:
        self.gate = Gate(settings, shared)
        self._key: bytes | None = None
        self._key_lock = asyncio.Lock()
        self._usage: tuple[float, usage.Usage] | None = None
        self._usage_lock = asyncio.Lock()
        self._walking: asyncio.Task[Usage] | None = None
        self.sizes = browse.SizeCache()
        self.tags = browse.TagCache()
        self._reports: OrderedDict[tuple[str, str, date], explain.Report] = OrderedDict()

    async def key(self, registry: Registry) -> bytes:
        if self._key is None:
            async with self._key_lock:
                if self._key is None:
                    self._key = await secret(registry, "ui-session")
        return self._key

    async def usage(self, registry: Registry) -> usage.Usage:
        async with self._usage_lock:
            if self._usage is None or time.monotonic() - self._usage[0] > USAGE_TTL:
                self._usage = (time.monotonic(), await usage.measure(registry))
            return self._usage[1]

    def known_usage(self, registry: Registry) -> Usage | None:
        """The last usage walk, without waiting for one: a stale or missing one is walked in the
        background (a page that only shows share counts must not wait for a walk of the whole store)."""
        stale = self._usage is None or time.monotonic() - self._usage[0] > USAGE_TTL
        if stale and (self._walking is None or self._walking.done()):
            self._walking = asyncio.create_task(self.usage(registry), name="kura-ui-usage")
            self._walking.add_done_callback(_quietly)
        return None if self._usage is None else self._usage[1]

    async def summary(self, registry: Registry, name: str, digest: str) -> explain.Report | None:
        """The explanation of a manifest without its referrers, cached by digest (and day: "N years ago").

        None when it cannot be explained: a page lists many manifests, and one that fails must not fail it.
        """
        today = datetime.now(UTC).date()
        key = (name, digest, today)
        found = self._reports.get(key)
        if found is None:
            try:
                found = await explain.explain(NoReferrers(registry), name, digest)
            except StorageError as exc:
                log.info("cannot explain %s@%s: %s", name, digest, exc.message)
                return None
            except Exception:
                log.warning("cannot explain %s@%s", name, digest, exc_info=True)
                return None
            self._reports[key] = found
            if len(self._reports) > REPORTS:
                self._reports.popitem(last=False)
        return found


def _quietly(task: asyncio.Task[Any]) -> None:
    """A background usage walk that failed: logged; the next page asks again."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("the storage usage walk failed", exc_info=task.exception())
