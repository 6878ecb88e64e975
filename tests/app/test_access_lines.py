"""Access lines formatted directly (``app.logs.direct``) are the lines the LogRecord path writes."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import logs
from app.config import Log, Settings
from app.hotroutes import HotLane
from app.main import create_app
from tests.conftest import client_of
from tests.oci import push_image, random_image

# What differs between two runs of the same requests: the clock and the duration.
_VARYING = re.compile(r'("?(?:time|@timestamp|http\.response\.duration)"?[=:] ?)("[^"]*"|\S+?)(?=[ ,}]|$)')


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    """Where ``configure`` (below) points Kura's handler; pytest's handlers are put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    if logs.HANDLER is not None:
        logs.HANDLER.flush_waiting()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("kura.access").disabled = False


def configure(log: Log, stream: io.StringIO) -> logs.Handler:
    """Logging as ``kura serve`` sets it up, writing to ``stream`` instead of stderr."""
    logs.configure(log)
    assert logs.HANDLER is not None
    logs.HANDLER.setStream(stream)
    return logs.HANDLER


class _Keep(logging.Filter):
    """A filter that keeps everything: it only makes the handler filtered, so records take the old path."""

    def filter(self, record: logging.LogRecord) -> bool:
        return True


async def _requests(settings: Settings) -> list[tuple[str, str, dict[str, str]]]:
    application = create_app(settings)
    async with client_of(application) as client:
        image = random_image(seed=3)
        digest = await push_image(client, "team/app", image, "v1")
        layer = next(iter(image.blobs))
        return [
            ("GET", "/v2/team/app/manifests/v1", {"User-Agent": 'docker/27 "quoted" agent'}),
            ("HEAD", f"/v2/team/app/manifests/{digest}", {"X-Forwarded-For": "10.1.2.3, 10.0.0.1"}),
            ("HEAD", f"/v2/team/app/blobs/{layer}", {}),
            ("GET", "/v2/team/app/manifests/nope", {}),
            ("GET", "/v2/Bad_Name/manifests/v1?n=1&x=a b", {}),
            ("GET", "/v2/_catalog", {}),
        ]


async def _lines(settings: Settings, stream: io.StringIO, requests: list[tuple[str, str, dict[str, str]]]) -> str:
    application = create_app(settings)
    async with client_of(application) as client:
        stream.seek(0)
        stream.truncate()
        for method, url, headers in requests:
            await client.request(method, url, headers=headers)
        await asyncio.sleep(0)  # the loop's next turn writes what the last one left
        return _VARYING.sub(r"\1-", stream.getvalue())


@pytest.mark.parametrize("formatter", ["text", "json", "logstash"])
async def test_direct_lines_are_the_records_lines(
    tmp_path: Path, stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch, formatter: str
) -> None:
    config: dict[str, Any] = {
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}},
        # A configured field the access log overrides, one sorted between its own, one after them.
        "log": {"formatter": formatter, "fields": {"http.request.host": "configured", "env": "prod", "zz": 1}},
    }
    settings = Settings.model_validate(config)
    handler = configure(settings.log, stderr)
    requests = await _requests(settings)
    assert logs.direct(logging.getLogger("kura.access")) is handler

    direct = await _lines(settings, stderr, requests)
    handler.addFilter(_Keep())
    assert logs.direct(logging.getLogger("kura.access")) is None
    # the old path all the way: records, and Starlette's router rather than the hot lane
    monkeypatch.setattr(HotLane, "match", lambda self, scope: None)
    recorded = await _lines(settings, stderr, requests)
    assert direct == recorded
    assert direct.count('"response completed"') == len(requests)  # one line each, in each format


def test_only_kuras_own_unfiltered_handler_is_written_directly(stderr: io.StringIO) -> None:
    access = logging.getLogger("kura.access")
    configure(Log(), stderr)
    assert logs.direct(access) is logs.HANDLER
    extra = logging.StreamHandler(io.StringIO())
    logging.getLogger("kura").addHandler(extra)  # another handler the record would reach
    try:
        assert logs.direct(access) is None
    finally:
        logging.getLogger("kura").removeHandler(extra)
    assert logs.HANDLER is not None
    logs.HANDLER.setFormatter(logging.Formatter())  # someone else's format
    assert logs.direct(access) is None
    configure(Log(), stderr)
    access.addFilter(_Keep())
    try:
        assert logs.direct(access) is None
    finally:
        access.removeFilter(_Keep())
        access.filters.clear()


async def test_waiting_lines_keep_their_order_and_leave_by_the_next_turn(stderr: io.StringIO) -> None:
    handler = configure(Log(), stderr)
    handler.later("first")
    handler.later("second")
    assert stderr.getvalue() == ""  # held for the rest of this turn
    logging.getLogger("kura").warning("third")  # any other record writes what waits first
    assert [line.split(" msg=")[-1] if " msg=" in line else line for line in stderr.getvalue().splitlines()] == [
        "first",
        "second",
        "third",
    ]
    handler.later("fourth")
    await asyncio.sleep(0)
    assert stderr.getvalue().endswith("fourth\n")
