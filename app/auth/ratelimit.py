"""Slows down guessing: after N failed authentications from one address within a window, 429."""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable, Iterator

MAX_CLIENTS = 10_000  # addresses remembered; the oldest are forgotten first


class Throttled(Exception):
    """Too many password checks from one address, failed or still running: answer 429."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class FailureLimiter:
    def __init__(self, failures: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self._clock = clock
        self._seen: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._running: collections.Counter[str] = collections.Counter()  # password checks under way

    @contextlib.contextmanager
    def checking(self, client: str) -> Iterator[None]:
        """Around a password check (a bcrypt): Throttled when the client's failures in the window and
        its checks still running reach the limit. Each check counts until it ends: a burst of
        concurrent guesses would all pass ``retry_after`` before the first of them had failed."""
        times = self._seen.get(client)
        if self._running[client] + (len(times) if times else 0) >= self.failures:
            raise Throttled(self.retry_after(client) or 1)
        self._running[client] += 1
        try:
            yield
        finally:
            self._running[client] -= 1
            if not self._running[client]:
                del self._running[client]

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        times = self._seen.get(client)
        if times is None:
            return None
        horizon = self._clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._seen[client]
            return None
        if len(times) < self.failures:
            return None
        return max(1, math.ceil(times[0] - horizon))

    def failed(self, client: str) -> None:
        times = self._seen.setdefault(client, collections.deque(maxlen=self.failures))
        times.append(self._clock())
        self._seen.move_to_end(client)
        while len(self._seen) > MAX_CLIENTS:
            self._seen.popitem(last=False)
