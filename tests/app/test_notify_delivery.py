"""Delivery of a spool to an endpoint, against httpx's mock transport standing in for the receiver."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.notify.config import Endpoint
from app.notify.delivery import Delivery, retry_delay
from app.notify.event import MEDIA_TYPE, envelope
from app.notify.stats import EndpointStats
from storage import Spool, StorageDriver
from storage.drivers import FilesystemDriver

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def endpoint(**overrides: Any) -> Endpoint:
    fields = {"name": "hook", "url": "http://receiver.test/events", "threshold": 1, "backoff": "1ms"} | overrides
    return Endpoint.model_validate(fields)


@pytest.fixture
def spool(driver: StorageDriver) -> Spool:
    return Spool.of_endpoint(driver, "hook")


async def spool_events(spool: Spool, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for i, event_id in enumerate(ids):
        await spool.append(json.dumps({"id": event_id, "action": "push", "target": {"digest": f"n{i:04d}"}}).encode())
    return ids


async def drained(spool: Spool) -> bool:
    return await spool.pending() == []


def received_ids(requests: list[httpx.Request]) -> list[str]:
    return [json.loads(r.content)["events"][0]["id"] for r in requests]


async def until(check: Callable[[], bool | Awaitable[bool]], limit: float = 20) -> None:
    """Wait for a state (not a measurement): fails only if it never comes."""
    deadline = time.monotonic() + limit
    while not await holds(check):
        assert time.monotonic() < deadline, "the state never came"
        await asyncio.sleep(0.01)


async def holds(check: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = check()
    return await result if inspect.isawaitable(result) else result


@asynccontextmanager
async def delivering(
    spool: Spool, handler: Handler, ep: Endpoint | None = None
) -> AsyncIterator[tuple[Delivery, list[httpx.Request]]]:
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        await request.aread()
        requests.append(request)
        return await handler(request)

    delivery = Delivery(ep or endpoint(), spool, EndpointStats("hook"), asyncio.Event(), httpx.MockTransport(record))
    task = asyncio.create_task(delivery.run())
    try:
        yield delivery, requests
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def accept(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202)


async def test_events_go_in_order_as_registry2_envelopes(spool: Spool) -> None:
    ids = await spool_events(spool, 5)
    first = json.loads(await spool.read((await spool.pending())[0]) or b"")
    ep = endpoint(headers={"Authorization": ["Bearer t"], "X-Two": ["1", "2"]})
    async with delivering(spool, accept, ep) as (delivery, requests):
        await until(lambda: len(requests) == 5)
        await until(lambda: drained(spool))
    assert received_ids(requests) == ids
    request = requests[0]
    assert request.method == "POST" and str(request.url) == "http://receiver.test/events"
    assert request.content == envelope(first)
    assert request.headers["content-type"] == MEDIA_TYPE
    assert request.headers["authorization"] == "Bearer t"
    assert request.headers.get_list("x-two") == ["1", "2"]
    assert (delivery.stats.delivered, delivery.stats.failed) == (5, 0)
    assert delivery.stats.statuses == {"202 Accepted": 5}


async def test_a_failing_endpoint_gets_the_same_event_again_and_nothing_behind_it(spool: Spool) -> None:
    first, second = await spool_events(spool, 2)
    answers = iter([500, 503, 500])

    async def flaky(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers, 200))

    async with delivering(spool, flaky) as (delivery, requests):
        await until(lambda: drained(spool))
    assert received_ids(requests) == [first, first, first, first, second]
    assert (delivery.stats.failed, delivery.stats.delivered) == (3, 2)
    assert delivery.stats.statuses == {"500 Internal Server Error": 2, "503 Service Unavailable": 1, "200 OK": 2}


async def test_redirects_are_followed_and_3xx_counts_as_delivered(spool: Spool) -> None:
    await spool_events(spool, 2)

    async def moved(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/events":
            return httpx.Response(307, headers={"Location": "/moved"})
        return httpx.Response(304)

    async with delivering(spool, moved) as (delivery, requests):
        await until(lambda: drained(spool))
    assert [r.url.path for r in requests] == ["/events", "/moved", "/events", "/moved"]
    assert delivery.stats.delivered == 2 and delivery.stats.failed == 0


async def test_timeouts_and_refusals_are_retried(spool: Spool) -> None:
    """A receiver slower than ``timeout``, then one that refuses: both are errors, retried."""
    (only,) = await spool_events(spool, 1)
    calls = 0

    async def slow_then_down(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        if calls == 2:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return httpx.Response(200)

    async with delivering(spool, slow_then_down, endpoint(timeout="50ms")) as (delivery, requests):
        await until(lambda: drained(spool))
    assert received_ids(requests) == [only] * 3
    assert (delivery.stats.errors, delivery.stats.delivered) == (2, 1)


async def test_an_unreadable_record_is_dropped_and_counted(spool: Spool) -> None:
    await spool.append(b"\x00not json")
    (good,) = await spool_events(spool, 1)
    async with delivering(spool, accept) as (delivery, requests):
        await until(lambda: drained(spool))
    assert received_ids(requests) == [good]
    assert delivery.stats.dropped == 1


async def test_the_spool_bound_drops_the_oldest_and_says_so(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    ids = await spool_events(spool, 5)
    size = (await spool.pending())[0].size  # every record here has the same size
    caplog.set_level(logging.WARNING, "kura.notifications")
    async with delivering(spool, accept, endpoint(maxspoolbytes=3 * size)) as (delivery, requests):
        await until(lambda: drained(spool))
    assert received_ids(requests) == ids[2:]
    assert delivery.stats.dropped == 2
    assert "spool over" in caplog.text and "dropped its 2 oldest events" in caplog.text


async def test_pending_counts_the_spool_while_the_endpoint_is_down(spool: Spool) -> None:
    await spool_events(spool, 3)

    async def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    async with delivering(spool, down) as (delivery, _):
        await until(lambda: delivery.stats.failed >= 2)
        assert delivery.stats.pending == 3 and delivery.stats.leader
    assert len(await spool.pending()) == 3


async def test_one_delivery_leads_and_another_takes_over(driver: StorageDriver, spool: Spool) -> None:
    """Two workers' deliveries on one spool: each event is sent once; when the leader stops, the other
    one sends the rest."""
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        await request.aread()
        requests.append(request)
        return httpx.Response(200)

    deliveries = [
        Delivery(
            endpoint(),
            Spool.of_endpoint(driver, "hook"),
            EndpointStats("hook"),
            asyncio.Event(),
            httpx.MockTransport(record),
        )
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(d.run()) for d in deliveries]
    try:
        ids = await spool_events(spool, 20)
        await until(lambda: any(d.stats.leader for d in deliveries))
        await until(lambda: drained(spool))
        leader = next(i for i, d in enumerate(deliveries) if d.stats.leader)
        assert received_ids(requests) == ids
        tasks[leader].cancel()
        await asyncio.gather(tasks[leader], return_exceptions=True)
        more = await spool_events(spool, 5)
        await until(lambda: drained(spool))
        assert deliveries[1 - leader].stats.leader
        assert received_ids(requests) == ids + more
        assert deliveries[1 - leader].stats.delivered == 5
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_delivery_stops_when_cancelled_as_an_event_arrives(spool: Spool) -> None:
    """Shutdown just after a request spooled an event: the idle delivery is woken and cancelled at once,
    and it must end (Python 3.11's wait_for swallowed that cancellation: the server never stopped)."""
    delivery = Delivery(endpoint(), spool, EndpointStats("hook"), asyncio.Event(), httpx.MockTransport(accept))
    task = asyncio.create_task(delivery.run())
    try:
        await until(lambda: delivery.stats.leader and delivery.stats.pending == 0)  # now waiting in _idle
        delivery.wake.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=20)
        assert done and task.cancelled()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_retries_wait_from_the_threshold_on_doubling_up_to_the_cap() -> None:
    ep = endpoint(threshold=3, backoff="1s", maxbackoff="10s")
    assert [retry_delay(ep, n) for n in range(1, 9)] == [0, 0, 1, 2, 4, 8, 10, 10]
    assert retry_delay(ep, 10_000) == 10
    assert retry_delay(endpoint(threshold=0, backoff="0"), 10) == 1.0  # registry:2's defaults: 10 and 1s


async def test_delivery_survives_a_broken_spool_directory(root: str, caplog: pytest.LogCaptureFixture) -> None:
    """A spool that cannot be opened (a disk problem: filesystem only) is logged and retried, not the end
    of delivery for the process."""
    driver = FilesystemDriver(root)
    spool = Spool.of_endpoint(driver, "hook")
    await driver.put_content(spool.directory, b"a file where the directory should be")
    try:
        async with delivering(spool, accept) as (_, requests):
            await until(lambda: "delivery failed; retrying" in caplog.text)
            await driver.delete(spool.directory)
            ids = await spool_events(spool, 2)
            await until(lambda: drained(spool))
        assert received_ids(requests) == ids
    finally:
        await driver.close()


def test_endpoint_counters_are_registry2_metrics() -> None:
    from app import metrics
    from app.notify.stats import EndpointStats

    def value(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    stats = EndpointStats("metrics-test")
    before = value("registry_notifications_events_total", type="Successes", endpoint="metrics-test")
    stats.spooled()
    stats.answered(200)
    stats.answered(500)
    stats.set_pending(7)
    assert value("registry_notifications_events_total", type="Successes", endpoint="metrics-test") == before + 1
    assert value("registry_notifications_events_total", type="Failures", endpoint="metrics-test") >= 1
    assert value("registry_notifications_status_total", code="500 Internal Server Error", endpoint="metrics-test") >= 1
    assert value("registry_notifications_pending_total", endpoint="metrics-test") == 7


async def test_a_receiver_slower_than_httpxs_default_gets_the_configured_timeout(spool: Spool) -> None:
    """Issue: httpx's own 5 s default cut every POST short under an endpoint's longer timeout, so a
    receiver that takes 6 s never got its events. A real socket: the mock transport has no timeouts."""
    (only,) = await spool_events(spool, 1)
    received: list[bytes] = []

    async def slow_receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                v
                for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n"))
                if k.lower() == b"content-length"
            )
        )
        received.append(await reader.readexactly(length))
        await asyncio.sleep(5.5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow_receiver, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ep = endpoint(url=f"http://127.0.0.1:{port}/events", timeout="20s")
    delivery = Delivery(ep, spool, EndpointStats("hook"), asyncio.Event(), None)
    task = asyncio.create_task(delivery.run())
    try:
        await until(lambda: drained(spool), limit=60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
    assert [json.loads(body)["events"][0]["id"] for body in received] == [only]  # delivered the first time


async def test_the_receivers_answer_body_is_never_read(spool: Spool) -> None:
    """Issue: the whole answer was read into the worker's memory (an 800 MiB one: a 1.8 GB worker).
    Here an endless body: reading it would never end."""
    await spool_events(spool, 2)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    async with delivering(spool, answer) as (delivery, requests):
        await until(lambda: drained(spool))
    assert len(requests) == 2 and delivery.stats.delivered == 2


async def test_an_endpoints_credentials_stay_out_of_the_log(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    """Issue: httpx logs every request at INFO with its URL, user:password@ and ?token= included."""
    from app import logs
    from app.config import Log

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure(Log())  # as kura serve sets logging up: it replaces the root's handlers
        root.addHandler(caplog.handler)
        caplog.set_level(logging.INFO)
        await spool_events(spool, 1)
        async with delivering(spool, accept, endpoint(url="http://user:s3cret@receiver.test/e?token=t0ken")):
            await until(lambda: drained(spool))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "s3cret" not in caplog.text and "t0ken" not in caplog.text
