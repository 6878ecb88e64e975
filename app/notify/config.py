"""registry:2's ``notifications`` section (``configuration.Notifications``), plus two Kura keys.

Durations are read as registry:2 reads a ``time.Duration`` from YAML: a string in Go's
``time.ParseDuration`` syntax ("500ms", "1m30s", "1.5h") or an integer number of nanoseconds. Zero
or negative values mean the default, as in ``notifications/endpoint.go``'s ``defaults``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

_UNITS_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_COMPONENT = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


_MAX_NS = (1 << 63) - 1  # a Go time.Duration is an int64 of nanoseconds


def parse_duration(text: str) -> timedelta:
    """Go's ``time.ParseDuration``: a signed sequence of decimal numbers, each with a unit."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return timedelta(0)
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total = Fraction(0)
    position = 0
    while position < len(body):
        match = _COMPONENT.match(body, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (use a number and a unit: ns, us, ms, s, m, h)")
        total += Fraction(match[1]) * _UNITS_NS[match[2]]
        position = match.end()
    nanoseconds = int(total)  # Go truncates below a nanosecond
    if nanoseconds > _MAX_NS:
        raise ValueError(f"duration {text!r} out of range (Go's durations end at about 292 years)")
    return timedelta(microseconds=(-nanoseconds if text[:1] == "-" else nanoseconds) / 1000)


def _duration(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a duration must be a string such as '500ms' or an integer of nanoseconds")
    if isinstance(value, int):
        if abs(value) > _MAX_NS:
            raise ValueError(f"duration {value} out of range (an int64 of nanoseconds, as Go's)")
        return timedelta(microseconds=value / 1000)  # YAML integers are nanoseconds, as for Go
    if isinstance(value, str):
        return parse_duration(value.strip())
    return value


def _go_duration(value: timedelta) -> str:
    # Serialised in Go syntax, so the settings handed to workers as JSON read back exactly.
    return f"{round(value / timedelta(microseconds=1)) * 1000}ns"


Duration = Annotated[timedelta, BeforeValidator(_duration), PlainSerializer(_go_duration, return_type=str)]


# RFC 9110: a field name is a token; a value here visible ASCII, spaces and tabs (what httpx sends
# as it is: anything else, a CR or LF above all, would fail every delivery or split the request)
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


def _header_value(name: str, value: Any) -> Any:
    # Go reads the YAML text into a string; PyYAML has already typed it, so numbers are put back and
    # booleans (yes, no, on, off, ...), whose text is lost, must be quoted.
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"headers: {name!r} is not a header name")
    if isinstance(value, bool):
        raise ValueError(f"headers.{name}: YAML reads this value as a boolean; quote it")
    text = str(value) if isinstance(value, int | float) else value
    if isinstance(text, str) and not _FIELD_VALUE.fullmatch(text):
        raise ValueError(f"headers.{name}: a value may hold visible ASCII, spaces and tabs only")
    return text


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class Ignore(_Section):
    mediatypes: list[str] = []
    actions: list[str] = []


class Endpoint(_Section):
    name: str = ""
    disabled: bool = False
    url: str = ""
    headers: dict[str, list[str]] = {}
    timeout: Duration = timedelta(0)
    threshold: int = 0
    backoff: Duration = timedelta(0)
    ignoredmediatypes: list[str] = []
    ignore: Ignore = Ignore()
    # Kura's own keys (registry:2 ignores unknown keys, so the file stays valid for it):
    maxbackoff: Duration = timedelta(minutes=5)  # the cap of the exponential backoff
    maxspoolbytes: int = Field(64 << 20, ge=1)  # the spool's bound in event bytes; the oldest go first

    @field_validator("headers", mode="before")
    @classmethod
    def _header_lists(cls, value: Any) -> Any:
        # http.Header is map[string][]string; a lone value is the common slip, and means one value.
        if not isinstance(value, dict):
            return value
        return {k: [_header_value(k, v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in value.items()}

    @property
    def effective_timeout(self) -> float:
        return self.timeout.total_seconds() if self.timeout > timedelta(0) else 1.0

    @property
    def effective_threshold(self) -> int:
        return self.threshold if self.threshold > 0 else 10

    @property
    def effective_backoff(self) -> float:
        return self.backoff.total_seconds() if self.backoff > timedelta(0) else 1.0

    @property
    def ignored_media_types(self) -> frozenset[str]:
        return frozenset([*self.ignore.mediatypes, *self.ignoredmediatypes])

    @property
    def spool_name(self) -> str:
        """The endpoint's directory name: its name, escaped so that any name is one safe component."""
        escaped = quote(self.name, safe="")
        return "%2E" + escaped[1:] if escaped.startswith(".") else escaped


_MAX_NAME = 255  # bytes of a file name on Linux file systems


class Events(_Section):
    includereferences: bool = False


class Notifications(_Section):
    events: Events = Events()
    endpoints: list[Endpoint] = []

    @model_validator(mode="after")
    def _check_endpoints(self) -> Notifications:
        seen: set[str] = set()
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.disabled:
                continue
            where = f"notifications.endpoints[{i}]"
            if not endpoint.name:
                raise ValueError(f"{where}.name is required: it names the endpoint's spool directory")
            if len(endpoint.spool_name) > _MAX_NAME:
                raise ValueError(f"{where}.name is too long: it names a directory ({_MAX_NAME} bytes once escaped)")
            if endpoint.name in seen:
                raise ValueError(f"{where}.name {endpoint.name!r} is used twice: each endpoint needs its own spool")
            seen.add(endpoint.name)
            url = urlsplit(endpoint.url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"{where}.url must be an http:// or https:// URL")
        return self

    @property
    def active(self) -> list[Endpoint]:
        return [e for e in self.endpoints if not e.disabled]
