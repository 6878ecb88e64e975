"""Slows down guessing: after N failed authentications from one address within a window, 429."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

MAX_CLIENTS = 10_000  # addresses remembered; the oldest are forgotten first


class FailureLimiter:
    def __init__(self, failures: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self._clock = clock
        self._seen: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

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
