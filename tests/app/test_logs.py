"""log.level, log.formatter and log.fields, in registry:2's (logrus's) three shapes."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from app import logs
from app.config import ConfigError, Log, load
from app.worker import uvicorn_options


def record(fields: dict[str, object] | None = None) -> logging.LogRecord:
    rec = logging.LogRecord("kura", logging.WARNING, __file__, 1, "hello world", None, None)
    rec.created = 0.5
    setattr(rec, logs.FIELDS, fields or {})
    return rec


class TestFormats:
    def test_text_is_logrus_text(self) -> None:
        line = logs.Formatter("text", {"service": "kura"}).format(record({"vars.name": "a/b", "n": 3}))
        assert line == 'time=1970-01-01T00:00:00.500000Z level=warning msg="hello world" n=3 service=kura vars.name=a/b'

    def test_json(self) -> None:
        line = logs.Formatter("json", {"service": "kura"}).format(record({"http.response.status": 201}))
        assert json.loads(line) == {
            "time": "1970-01-01T00:00:00.500000Z",
            "level": "warning",
            "msg": "hello world",
            "service": "kura",
            "http.response.status": 201,
        }

    def test_logstash(self) -> None:
        document = json.loads(logs.Formatter("logstash", {"env": "prod"}).format(record()))
        assert document == {
            "@timestamp": "1970-01-01T00:00:00.500000Z",
            "@version": "1",
            "level": "warning",
            "message": "hello world",
            "env": "prod",
        }

    def test_a_bug_keeps_its_traceback_on_the_same_line(self) -> None:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            rec = logging.LogRecord(
                "kura", logging.ERROR, __file__, 1, "unexpected", None, __import__("sys").exc_info()
            )
        document = json.loads(logs.Formatter("json", {}).format(rec))
        assert "RuntimeError: boom" in document["error"] and "\n" not in logs.Formatter("json", {}).format(rec)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("kura.access").disabled = False


class TestLevels:
    @pytest.mark.parametrize(
        "level, expected", [("error", 40), ("warn", 30), ("WARN", 30), ("info", 20), ("debug", 10)]
    )
    def test_every_registry2_level_configures(self, level: str, expected: int, restore_logging: None) -> None:
        """Issue 10: `warn` crashed every worker with KeyError 'warn' (uvicorn spells it warning)."""
        settings = load(None, environ={"REGISTRY_LOG_LEVEL": level})
        logs.configure(settings.log)
        assert logging.getLogger().level == expected
        assert "log_level" not in uvicorn_options(settings)  # uvicorn never sees registry:2's spelling

    def test_an_unknown_level_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"log\.level: Input should be 'error', 'warn', 'info' or 'debug'"):
            load(None, environ={"REGISTRY_LOG_LEVEL": "verbose"})

    def test_the_access_log_ignores_the_level(self, restore_logging: None) -> None:
        """As registry:2's access log: only log.accesslog.disabled turns it off."""
        logs.configure(Log(level="error"))
        assert logging.getLogger("kura.access").isEnabledFor(logging.INFO)
        logs.configure(Log.model_validate({"level": "debug", "accesslog": {"disabled": True}}))
        assert not logging.getLogger("kura.access").isEnabledFor(logging.INFO)

    def test_fields_and_formatter_from_the_environment(self) -> None:
        s = load(None, environ={"REGISTRY_LOG_FORMATTER": "logstash", "REGISTRY_LOG_FIELDS_SERVICE": "registry"})
        assert (s.log.formatter, s.log.fields) == ("logstash", {"service": "registry"})
        with pytest.raises(ConfigError, match=r"log\.formatter"):
            load(None, environ={"REGISTRY_LOG_FORMATTER": "xml"})


class TestTimestamp:
    @pytest.mark.parametrize(
        "created",
        [0.0, 0.5, 1e9, 1e9 + 0.9999996, 1e9 + 0.0000004, 1e9 + 0.0000005, 1e9 + 0.0000015, 1e9 + 0.9999995, -0.5],
    )
    def test_rounding_at_the_edges_is_datetimes(self, created: float) -> None:
        """Half to even, a carry into the next second, no fraction at all when it rounds to zero."""
        assert logs.timestamp(created) == datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")

    def test_many_times_are_datetimes(self) -> None:
        rng = random.Random(7)
        for _ in range(20000):
            created = rng.uniform(0, 4e9) if rng.random() < 0.5 else rng.randrange(0, 1 << 32) + rng.random() / 1e5
            assert logs.timestamp(created) == datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
