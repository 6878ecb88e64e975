"""Prometheus metrics: registry:2's families with its exact names, labels and buckets, and Kura's own.

registry:2 (``docker/go-metrics`` under namespace ``registry``, subsystem ``http``) registers, per route
name: ``requests_total{code,method}``, ``request_duration_seconds{method}``, ``request_size_bytes``,
``response_size_bytes`` and ``in_flight_requests``, each with a constant ``handler`` label. Methods are
lower case and codes numbers, as promhttp writes them; requests that match no route are not counted.

Several worker processes serve one port, so the values live in prometheus-client's multiprocess files:
``kura serve`` creates a fresh ``PROMETHEUS_MULTIPROC_DIR`` for each start (``app.multiproc``) before
any worker imports this module, the supervisor removes a dead worker's live-gauge files, and a scrape,
answered by whichever worker the kernel picks, sums every worker's files. Without that variable
(tests in one process) the values are plain in-process ones.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from app.multiproc import MULTIPROC_ENV

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# docker/go-metrics handler.go and prometheus.DefBuckets (Go's, not Python's defaults)
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60)
SIZE_BUCKETS: Final = tuple(float(1024 << i) for i in range(22))  # ExponentialBuckets(1024, 2, 22): 1 KiB..2 GiB
STORAGE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REGISTRY: Final = CollectorRegistry(auto_describe=True)

requests_total = Counter(
    "registry_http_requests_total",
    "Total number of HTTP requests made.",
    ["code", "handler", "method"],
    registry=REGISTRY,
)
request_duration = Histogram(
    "registry_http_request_duration_seconds",
    "The HTTP request latencies in seconds.",
    ["handler", "method"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
request_size = Histogram(
    "registry_http_request_size_bytes",
    "The HTTP request sizes in bytes.",
    ["handler"],
    buckets=SIZE_BUCKETS,
    registry=REGISTRY,
)
response_size = Histogram(
    "registry_http_response_size_bytes",
    "The HTTP response sizes in bytes.",
    ["handler"],
    buckets=SIZE_BUCKETS,
    registry=REGISTRY,
)
in_flight = Gauge(
    "registry_http_in_flight_requests",
    "The in-flight HTTP requests",
    ["handler"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
storage_action = Histogram(
    "registry_storage_action_seconds",
    "The number of seconds that the storage action takes",
    ["driver", "action"],
    buckets=STORAGE_BUCKETS,
    registry=REGISTRY,
)

# Kura's own families
bytes_pushed = Counter(
    "kura_bytes_pushed_total", "Bytes of blobs and manifests accepted from clients.", ["type"], registry=REGISTRY
)
bytes_pulled = Counter(
    "kura_bytes_pulled_total", "Bytes of blobs and manifests sent to clients.", ["type"], registry=REGISTRY
)
uploads_in_progress = Gauge(
    "kura_uploads_in_progress",
    "Blob upload requests (POST, PATCH, PUT) receiving data right now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
auth_failures = Counter(
    "kura_auth_failures_total", "Requests refused for bad or missing credentials.", ["reason"], registry=REGISTRY
)
gc_runs = Counter("kura_gc_runs_total", "Garbage collection runs.", ["result"], registry=REGISTRY)
gc_duration = Histogram(
    "kura_gc_duration_seconds",
    "Garbage collection run time.",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),  # a mark phase walks the whole store
    registry=REGISTRY,
)
gc_deleted_blobs = Counter("kura_gc_deleted_blobs_total", "Blobs removed by garbage collection.", registry=REGISTRY)
gc_freed_bytes = Counter("kura_gc_freed_bytes_total", "Bytes freed by garbage collection.", registry=REGISTRY)
retention_runs = Counter("kura_retention_runs_total", "Retention policy runs.", ["result"], registry=REGISTRY)
retention_untagged = Counter("kura_retention_untagged_total", "Tags removed by retention.", registry=REGISTRY)
blobs_stored = Gauge(
    "kura_blobs_stored", "Blobs in storage, as last counted.", multiprocess_mode="mostrecent", registry=REGISTRY
)
bytes_stored = Gauge(
    "kura_bytes_stored",
    "Bytes of blobs in storage, as last counted.",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
bytes_deduplicated = Gauge(
    "kura_bytes_saved_by_deduplication",
    "Bytes that repositories share instead of storing twice, as last counted.",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)


notification_events = Counter(
    "registry_notifications_events",  # the client appends _total, as go-metrics does
    "Notification events by type (Events spooled, Successes, Failures, Errors), per endpoint.",
    ["type", "endpoint"],
    registry=REGISTRY,
)
notification_pending = Gauge(
    "registry_notifications_pending_total",
    "Events waiting in the endpoint's spool, as its sender last saw it.",
    ["endpoint"],
    multiprocess_mode="max",  # one process sends per endpoint; the others report 0
    registry=REGISTRY,
)
notification_status = Counter(
    "registry_notifications_status",
    "Notification answers by status, per endpoint.",
    ["code", "endpoint"],
    registry=REGISTRY,
)
notification_dropped = Counter(
    "kura_notifications_dropped",
    "Events dropped unsent because the endpoint's spool exceeded its bound.",
    ["endpoint"],
    registry=REGISTRY,
)


# labelled children, looked up once: labels() takes a lock and validates, for every storage call
_STORAGE_ACTIONS: dict[tuple[str, str], Histogram] = {}


def observe_storage_action(driver: str, action: str, seconds: float) -> None:
    """One storage driver call (``GetContent``, ``PutContent``, ``Stat``, ``List``, ``Move``, ``Delete``, ...)."""
    child = _STORAGE_ACTIONS.get((driver, action))
    if child is None:
        child = _STORAGE_ACTIONS[driver, action] = storage_action.labels(driver, action)
    child.observe(seconds)


def count_auth_failure(reason: str) -> None:
    """For the auth layer: a refused credential (``reason`` from a small fixed set, never the credential)."""
    auth_failures.labels(reason).inc()


def observe_gc_run(seconds: float, ok: bool, deleted_blobs: int, freed_bytes: int) -> None:
    """For the garbage collector: one finished run."""
    gc_runs.labels("success" if ok else "error").inc()
    gc_duration.observe(seconds)
    gc_deleted_blobs.inc(deleted_blobs)
    gc_freed_bytes.inc(freed_bytes)


def observe_retention_run(ok: bool, untagged: int) -> None:
    """For retention: one finished run."""
    retention_runs.labels("success" if ok else "error").inc()
    retention_untagged.inc(untagged)


def set_storage_totals(blobs: int, stored: int, saved: int) -> None:
    """For whatever walks the blob store (GC's mark phase): the counts it saw."""
    blobs_stored.set(blobs)
    bytes_stored.set(stored)
    bytes_deduplicated.set(saved)


def exposition() -> bytes:
    """The text format of every worker's values (multiprocess) or this process's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # the library leaves it unannotated
        return generate_latest(registry)
    return generate_latest(REGISTRY)
