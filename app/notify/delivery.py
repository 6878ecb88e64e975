"""Sends one endpoint's spool, oldest first, from exactly one process of the server.

Every worker runs a ``Delivery`` per endpoint, but only the holder of the spool's leader lock sends;
the others retry the lock every ``LEAD_POLL`` seconds, so a worker takes over when the leader dies
(on the filesystem driver the lock is an flock, which the kernel drops when its process dies). An
event leaves the spool only after the endpoint answered 2xx or 3xx (after redirects), as in
registry:2; anything else is retried with the same bytes, hence the same event id, and nothing
behind it is sent first.

Retries follow registry:2's breaker (``notifications/sinks.go``): the first ``threshold`` consecutive
failures are retried at once, then each further one waits ``backoff``, doubling up to ``maxbackoff``
(registry:2 keeps waiting ``backoff`` forever; its own TODO asks for a bounded exponential backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections import deque
from urllib.parse import urlsplit

import httpx

from app.notify.config import Endpoint
from app.notify.event import MEDIA_TYPE, envelope
from app.notify.stats import EndpointStats
from storage import Spool, SpoolEntry

LEAD_POLL = 0.5  # seconds between tries at the leader lock: the longest a dead leader's spool waits
IDLE_POLL = 0.2  # seconds between looks at an empty spool (other workers append to it too)
RESCAN = 5.0  # least seconds between re-listings of a non-empty spool, which also enforce its bound

log = logging.getLogger("kura.notifications")


MAX_REDIRECTS = 10  # as Go's http.Client


class Delivery:
    def __init__(
        self,
        endpoint: Endpoint,
        spool: Spool,
        stats: EndpointStats,
        wake: asyncio.Event,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.spool = spool
        self.stats = stats
        self.wake = wake
        self.transport = transport

    async def run(self) -> None:
        """Lead when possible, until cancelled."""
        last_error = None
        while True:
            try:
                async with self.spool.leading() as leads:
                    if leads:
                        self.stats.leader = True
                        try:
                            await self._lead()
                        finally:
                            self.stats.leader = False
            except Exception as exc:
                # The spool's disk failing must not end delivery for good: say so (once), then try again.
                if repr(exc) != last_error:
                    log.exception("notifications: endpoint %s: delivery failed; retrying", self.endpoint.name)
                last_error = repr(exc)
            await asyncio.sleep(LEAD_POLL)

    async def _lead(self) -> None:
        headers = [(k, v) for k, values in self.endpoint.headers.items() for v in values]
        async with httpx.AsyncClient(
            headers=headers,
            timeout=None,  # the endpoint's own timeout bounds each POST (asyncio.timeout in _send)
            follow_redirects=False,  # followed in _send, whose answers' bodies are never read
            transport=self.transport,
            trust_env=not _loopback(self.endpoint.url),  # Go never proxies loopback either
        ) as client:
            backlog: deque[SpoolEntry] = deque()
            next_scan = 0.0
            failures = 0
            while True:
                if not backlog or time.monotonic() > next_scan:
                    began = time.monotonic()
                    backlog = deque(await self._scan())
                    # A spool of 100,000 events takes ~0.7 s to list: list it at most 5% of the time.
                    next_scan = time.monotonic() + max(RESCAN, 20 * (time.monotonic() - began))
                self.stats.set_pending(len(backlog))
                if not backlog:
                    await self._idle()
                    continue
                entry = backlog[0]
                if await self._send(client, entry):
                    await self.spool.remove(entry)
                    backlog.popleft()
                    failures = 0
                    continue
                failures += 1
                await asyncio.sleep(retry_delay(self.endpoint, failures))

    async def _idle(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that comes as
        # the event is set (an event spooled just before shutdown), and the server never stops.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(IDLE_POLL):
                await self.wake.wait()
        self.wake.clear()

    async def _scan(self) -> list[SpoolEntry]:
        """The spool in order, after dropping its oldest events if it outgrew ``maxspoolbytes``."""
        entries = await self.spool.pending()
        excess = sum(e.size for e in entries) - self.endpoint.maxspoolbytes
        dropped = 0
        while excess > 0 and dropped < len(entries):
            await self.spool.remove(entries[dropped])
            excess -= entries[dropped].size
            dropped += 1
        if dropped:
            self.stats.drop(dropped)
            log.warning(
                "notifications: endpoint %s: spool over %d bytes, dropped its %d oldest events unsent",
                self.endpoint.name,
                self.endpoint.maxspoolbytes,
                dropped,
            )
        return entries[dropped:]

    async def _send(self, client: httpx.AsyncClient, entry: SpoolEntry) -> bool:
        """Whether the event is done with: delivered, or unreadable (then dropped and counted)."""
        data = await self.spool.read(entry)
        if data is None:
            return True  # removed meanwhile (the bound): nothing left to send
        try:
            body = envelope(json.loads(data))
        except ValueError:
            log.error("notifications: endpoint %s: dropping unreadable spool file %s", self.endpoint.name, entry.name)
            self.stats.drop(1)
            return True
        request = client.build_request("POST", self.endpoint.url, content=body, headers={"Content-Type": MEDIA_TYPE})
        try:
            async with asyncio.timeout(self.endpoint.effective_timeout):
                # Only the status counts: no answer's body is read (as registry:2), whatever its size,
                # a redirect's included (httpx reads those when it follows them itself)
                for _ in range(MAX_REDIRECTS + 1):
                    response = await client.send(request, stream=True)
                    await response.aclose()
                    if response.next_request is None:
                        break
                    request = response.next_request
                else:
                    raise httpx.TooManyRedirects(f"over {MAX_REDIRECTS} redirects", request=request)
        except (httpx.HTTPError, TimeoutError) as exc:
            self.stats.unanswered()
            log.warning("notifications: endpoint %s: %s", self.endpoint.name, _describe(exc))
            return False
        self.stats.answered(response.status_code)
        if 200 <= response.status_code < 400:
            return True
        log.warning("notifications: endpoint %s answered %d; will retry", self.endpoint.name, response.status_code)
        return False


def retry_delay(endpoint: Endpoint, failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures: none below the threshold, then
    ``backoff``, doubling each time up to ``maxbackoff``."""
    beyond = failures - endpoint.effective_threshold
    if beyond < 0:
        return 0.0
    cap = max(endpoint.maxbackoff.total_seconds(), endpoint.effective_backoff)
    growth: float = 2.0 ** min(beyond, 32)
    return min(endpoint.effective_backoff * growth, cap)


def _describe(exc: BaseException) -> str:
    # Never the request: its headers may carry the endpoint's credentials.
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out; will retry"
    return f"{type(exc).__name__}: {exc}; will retry"


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
