"""Shared request parsing and response headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request

from app.errors import Code, OCIError
from storage import Registry

# Numbers are ASCII digits ([0-9], never \d or str.isdigit, which take '²' that int() refuses), and at
# most 19 of them: every size or offset fits, and int() never meets its 4300-digit limit.
_NUMBER = re.compile(r"[0-9]{1,19}")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]{1,19}|\*))?")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_PAST_ANY_END = 1 << 64  # a Range position too long to read: past the end of any blob


def registry(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not _NUMBER.fullmatch(value):
        raise OCIError(Code.SIZE_INVALID, "invalid Content-Length", {"Content-Length": value[:50]})
    return int(value)


def has_body(request: Request) -> bool:
    return content_length(request) not in (None, 0) or "chunked" in request.headers.get("transfer-encoding", "").lower()


def body(request: Request) -> AsyncIterator[bytes]:
    return request.stream()


def content_range(request: Request) -> tuple[int, int] | None:
    """The inclusive ``start-end`` of an upload chunk, as the spec writes it (``bytes=`` tolerated)."""
    value = request.headers.get("content-range")
    if value is None:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None or int(match[2]) < int(match[1]):
        raise OCIError(Code.RANGE_INVALID, "invalid Content-Range", {"Content-Range": value[:100]}, status=416)
    return int(match[1]), int(match[2])


def etag(digest: str) -> str:
    return f'"{digest}"'


def not_modified(request: Request, digest: str) -> bool:
    """Whether ``If-None-Match`` names the content's ETag: quoted or bare (registry:2 takes both for
    manifests), weak (``W/``), or ``*``; in one header or several, comma-separated."""
    # Straight from the scope, not through request.headers: this runs on every hot read
    values = [value.decode("latin-1") for key, value in request.scope["headers"] if key == b"if-none-match"]
    if not values:
        return False
    wanted = ("*", digest, etag(digest))
    return any(tag.strip().removeprefix("W/") in wanted for value in values for tag in value.split(","))


def ranged(request: Request, digest: str) -> str | None:
    """The ``Range`` to honour: none when ``If-Range`` names anything but this content's ETag (a date
    never matches: blobs have no modification time to compare, as in registry:2)."""
    value = request.headers.get("range")
    condition = request.headers.get("if-range")
    if value is None or condition is None or condition.strip() == etag(digest):
        return value
    return None


def byte_range(value: str | None, size: int) -> tuple[int, int] | None:
    """A single satisfiable ``Range: bytes=a-b`` as (start, end inclusive); None means the whole blob.

    Several ranges are answered with the whole blob, which RFC 9110 allows.
    """
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = match[1], match[2]
    if first == "" and last == "":
        return None
    if first == "":
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - suffix, 0), size - 1
    start = _position(first)
    end = size - 1 if last == "" else min(_position(last), size - 1)
    if start >= size or (last != "" and _position(last) < start):
        raise _unsatisfiable(size)
    return start, end


def _position(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 19 else _PAST_ANY_END


def _unsatisfiable(size: int) -> OCIError:
    return OCIError(
        Code.RANGE_INVALID,
        "requested range not satisfiable",
        {"size": size},
        headers={"Content-Range": f"bytes */{size}"},
    )


def upload_range(size: int) -> str:
    # registry:2's form: no "bytes=" prefix, inclusive end, "0-0" for an empty upload.
    return f"0-{max(size - 1, 0)}"


def page_size(request: Request, default: int | None, maximum: int | None = None) -> int | None:
    value = request.query_params.get("n")
    if value is None or value == "":
        return default
    if not _NUMBER.fullmatch(value):
        raise OCIError(Code.PAGINATION_NUMBER_INVALID, detail={"n": value[:50]})
    n = int(value)
    return min(n, maximum) if maximum is not None else n


def next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?n={n}&last={quote(last, safe="")}>; rel="next"'
