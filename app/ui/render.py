"""The templates (Jinja2, autoescaped: a name or annotation holding ``<script>`` is shown as text) and
the small formatting rules pages share."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

_DIGITS = re.compile(r"(\d+)")


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(ns: int | None) -> str:
    return "" if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def short(digest: str | None) -> str:
    """``sha256:0123456789ab``: enough to tell digests apart on a page."""
    if not digest:
        return "-"
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}"


@functools.lru_cache(maxsize=100_000)  # a page of 5,000 tags sorts on every view
def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Numeric-aware order: v2 < v10, 1.9 < 1.10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment, made on the first page: Jinja2 costs each worker ~2 MB, and a
    registry that only serves clients never renders one."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("app.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt variable fails the page test, never renders as nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=size, when=when, iso=iso, short=short)
    return env
