"""Server logging from config.yml's ``log`` section, in registry:2's three formats.

registry:2 logs through logrus: ``text`` is ``time="..." level=info msg="..." key=value``, ``json`` one
object with ``time``, ``level``, ``msg`` and the fields, ``logstash`` the same with ``@timestamp``,
``@version`` and ``message``. Kura writes the same shapes and field names (``http.request.method``,
``vars.name``, ``err.code``, ...) so log pipelines built for registry:2 keep working. ``log.fields`` are
added to every line. uvicorn's own loggers go through the same handler; its access log is replaced by
``kura.access``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from app.config import Log

LEVELS: Final[Mapping[str, int]] = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
_NAMES: Final[Mapping[int, str]] = {
    logging.CRITICAL: "fatal",
    logging.ERROR: "error",
    logging.WARNING: "warning",
    logging.INFO: "info",
    logging.DEBUG: "debug",
}
FIELDS = "kura_fields"  # the ``extra`` key that carries a record's structured fields


class Formatter(logging.Formatter):
    def __init__(self, style: str, fields: Mapping[str, Any]) -> None:
        super().__init__()
        self.style = style
        self.fields = dict(fields)

    def format(self, record: logging.LogRecord) -> str:
        level = _NAMES.get(record.levelno, record.levelname.lower())
        fields: dict[str, Any] = getattr(record, FIELDS, {})
        if record.exc_info:
            # Only for bugs (app.errors logs client errors without one); keep it on the same record
            fields = {**fields, "error": self.formatException(record.exc_info)}
        return self.line(record.created, level, record.getMessage(), fields)

    def line(self, created: float, level: str, message: str, fields: Mapping[str, Any]) -> str:
        """The line of a record made at ``created`` (seconds since the epoch) with these fields."""
        when = timestamp(created)
        fields = {**self.fields, **fields}
        if self.style == "json":
            return json.dumps({**fields, "level": level, "msg": message, "time": when}, default=str)
        if self.style == "logstash":
            document = {**fields, "@timestamp": when, "@version": "1", "level": level, "message": message}
            return json.dumps(document, default=str)
        # Keys sorted, as logrus writes them; the time is always bare (digits, "-", ":", ".", "T", "Z").
        parts = [f"time={when} level={level} msg={_text(message)}"]
        for key, prefix in _sorted_keys(tuple(fields)):
            parts.append(prefix)
            parts.append(_text(fields[key]))
        return "".join(parts)


# Each set of field names sorted once, with its " key=" prefixes: a format keeps meeting the same few.
_ORDERS: dict[tuple[str, ...], list[tuple[str, str]]] = {}
_ORDERS_MAX = 256


def _sorted_keys(keys: tuple[str, ...]) -> list[tuple[str, str]]:
    order = _ORDERS.get(keys)
    if order is None:
        if len(_ORDERS) >= _ORDERS_MAX:
            _ORDERS.clear()
        order = _ORDERS[keys] = [(key, f" {key}=") for key in sorted(keys)]
    return order


_SECOND: list[tuple[int, str]] = [(-1, "")]  # the last whole second formatted, and its text


def timestamp(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat()`` with ``Z`` for ``+00:00``, its whole second
    formatted once: microseconds rounded half to even as datetime rounds them, none shown when zero."""
    fraction, whole = math.modf(created)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    elif micro < 0:  # before 1970: modf's parts are both negative
        micro += 1_000_000
        whole -= 1.0
    second = int(whole)
    last, text = _SECOND[0]
    if second != last:
        text = datetime.fromtimestamp(second, UTC).isoformat().removesuffix("+00:00")
        _SECOND[0] = (second, text)
    return f"{text}.{micro:06d}Z" if micro else f"{text}Z"


class Handler(logging.StreamHandler):  # type: ignore[type-arg]  # typeshed's is generic over the stream
    """The one stderr handler; it also takes access lines already formatted (``later``) and writes them
    together at the end of the event loop's turn, one write for every request answered in that turn.

    A line waits at most until the loop's next turn (microseconds): only a process killed in between
    (SIGKILL, a crash of the interpreter) loses those lines. Any other record first writes what waits,
    so lines keep their order; so does the exit of the process.
    """

    def __init__(self, stream: Any, formatter: Formatter) -> None:
        super().__init__(stream)
        self.setFormatter(formatter)
        self.own = formatter
        self.line = formatter.line
        self.waiting: list[str] = []

    def later(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]  # a handler's lock exists once it is constructed
            self.waiting.append(line + self.terminator)
            first = len(self.waiting) == 1
        if first:
            try:
                asyncio.get_running_loop().call_soon(self.flush_waiting)
            except RuntimeError:  # no event loop to wait for: now
                self.flush_waiting()

    def flush_waiting(self) -> None:
        # Under the lock throughout: a record emitted by another thread takes its turn, and no line
        # is added to a batch already written.
        with self.lock:  # type: ignore[union-attr]
            if not self.waiting:
                return
            lines, self.waiting = self.waiting, []
            try:
                self.stream.write("".join(lines))
                self.flush()
            except Exception:  # as emit() does: a log write never fails the server
                self.handleError(logging.makeLogRecord({"msg": "access log lines", "kura_lines": len(lines)}))

    def emit(self, record: logging.LogRecord) -> None:
        self.flush_waiting()
        super().emit(record)


_BARE = re.compile(r"[A-Za-z0-9\-._/@^+:]+")


# Quoted forms of recent short strings: an access line's host, path, agent and name mostly repeat.
_QUOTED: dict[str, str] = {}
_QUOTED_MAX = 1024
_QUOTED_LONGEST = 200


def _text(value: object) -> str:
    """logrus's text quoting: bare when the value is plain, else a quoted string."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        quoted = _QUOTED.get(value)
        if quoted is None:
            quoted = _quote(value)
            if len(value) <= _QUOTED_LONGEST:
                if len(_QUOTED) >= _QUOTED_MAX:
                    _QUOTED.clear()
                _QUOTED[value] = quoted
        return quoted
    return _quote(json.dumps(value, default=str))


def _quote(text: str) -> str:
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def configure(log: Log) -> None:
    """One stderr handler on the root logger; uvicorn's loggers propagate to it."""
    global HANDLER
    handler = Handler(sys.stderr, Formatter(log.formatter, log.fields))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    if HANDLER is not None:
        HANDLER.flush_waiting()
    else:
        atexit.register(_flush_at_exit)
    HANDLER = handler
    root.setLevel(LEVELS[log.level])
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # Kura's access log (kura.access) has the repository, user and bytes; uvicorn's would repeat it
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    # As registry:2's access log, governed by log.accesslog.disabled alone, not by log.level
    access_log = logging.getLogger("kura.access")
    access_log.setLevel(logging.INFO)
    access_log.disabled = log.accesslog.disabled
    # httpx logs every request it sends at INFO, URL and all: a notification endpoint's credentials
    # (user:password@, ?token=) would reach the log, once per event. Delivery logs its own failures.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


HANDLER: Handler | None = None  # what configure() installed


def _flush_at_exit() -> None:
    if HANDLER is not None:
        HANDLER.flush_waiting()


def direct(logger: logging.Logger) -> Handler | None:
    """The handler an INFO record of ``logger`` reaches when it reaches that one alone, and it is
    ``configure()``'s own, unfiltered, with its formatter: then a line formatted directly (``Handler.line``)
    is the line the record would have given."""
    handler = HANDLER
    if handler is None or logger.filters or handler.filters or handler.level > logging.INFO:
        return None
    if handler.formatter is not handler.own:
        return None
    reached: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        reached += current.handlers
        current = current.parent if current.propagate else None
    return handler if reached == [handler] else None
