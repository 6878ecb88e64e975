"""Per-endpoint notification counters of this process, also fed to the metrics layer.

Each method below updates registry:2's families (``notifications/metrics.go``) in ``app.metrics``:
``registry_notifications_events_total{type,endpoint}`` with type Events|Successes|Failures|Errors,
the gauge ``registry_notifications_pending_total{endpoint}`` and
``registry_notifications_status_total{code,endpoint}`` with code like "200 OK"; ``dropped`` (spool
bound reached) is Kura's own ``kura_notifications_dropped_total``.

Counters count what this process did: events it spooled, and deliveries while it led the endpoint.
``pending`` is the spool's length as last seen by this process's leader (the spool is shared, so
``Spool.pending()`` gives the exact figure from any process).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus

from app import metrics


@dataclass
class EndpointStats:
    endpoint: str
    events: int = 0  # spooled (registry:2's "Events")
    delivered: int = 0  # answered 2xx/3xx ("Successes")
    failed: int = 0  # answered with another status ("Failures")
    errors: int = 0  # no answer: refused, timed out, ... ("Errors")
    dropped: int = 0  # removed unsent because the spool exceeded its bound
    pending: int = 0
    leader: bool = False
    statuses: Counter[str] = field(default_factory=Counter)

    def spooled(self) -> None:
        self.events += 1
        metrics.notification_events.labels("Events", self.endpoint).inc()

    def unanswered(self) -> None:
        self.errors += 1
        metrics.notification_events.labels("Errors", self.endpoint).inc()

    def drop(self, count: int) -> None:
        self.dropped += count
        metrics.notification_dropped.labels(self.endpoint).inc(count)

    def set_pending(self, count: int) -> None:
        self.pending = count
        metrics.notification_pending.labels(self.endpoint).set(count)

    def answered(self, status: int) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        code = f"{status} {phrase}".rstrip()
        self.statuses[code] += 1
        metrics.notification_status.labels(code, self.endpoint).inc()
        if 200 <= status < 400:
            self.delivered += 1
            metrics.notification_events.labels("Successes", self.endpoint).inc()
        else:
            self.failed += 1
            metrics.notification_events.labels("Failures", self.endpoint).inc()
