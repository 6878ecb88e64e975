"""Go-style durations as registry:2's config writes them: ``90s``, ``2h``, ``1h30m``, ``168h``."""

from __future__ import annotations

import math
import re

MAX_SECONDS = ((1 << 63) - 1) / 1e9  # Go's durations are int64 nanoseconds: about 292 years
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse(text: object) -> float:
    """Seconds in ``text``; a bare number is seconds. ``d`` (days) is accepted, as Kura's own addition.
    ValueError for anything else: another type (a boolean too), or past what Go's durations hold."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"invalid duration {text!r} (examples: 90s, 2h, 1h30m)")
    try:
        seconds = _seconds(text)
    except OverflowError:
        seconds = math.inf
    if not 0 <= seconds <= MAX_SECONDS:  # NaN fails this too
        raise ValueError(f"duration {text!r} out of range (0 to about 292 years, as Go's)")
    return seconds


def _seconds(text: str | int | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"invalid duration {text!r} (examples: 90s, 2h, 1h30m)")
    return sum(float(number) * _SECONDS[unit] for number, unit in parts)


def render(seconds: float) -> str:
    """The shortest exact Go-style form of whole seconds (``7200`` -> ``2h``)."""
    whole = int(seconds)
    if whole != seconds or whole == 0:
        return f"{seconds:g}s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out
