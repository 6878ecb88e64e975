"""Request heads on a real uvicorn: bounded in size (431 past MAX_HEAD) and in time (HEAD_TIMEOUT)."""

from __future__ import annotations

import json
import select
import socket
import time
import tracemalloc

import httpx
import pytest

import app.protocol
import app.zerocopy
from app.config import Settings
from app.main import served_app
from tests.app.served import exchange, serving
from tests.oci import sha256

VERSION_CHECK = b"GET /v2/ HTTP/1.1\r\nHost: t\r\n"


def test_a_head_over_the_limit_is_refused_and_a_normal_one_still_works(settings: Settings) -> None:
    big = VERSION_CHECK + b"X-Big: " + b"a" * (2 << 20) + b"\r\n\r\n"
    with serving(served_app(settings), settings) as address:
        try:
            answer = exchange(address, big)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""  # "or close the connection": the client was still sending when it closed
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        # A large head under the limit (many headers, as Go counts them too) is still served.
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(500))
        assert exchange(address, VERSION_CHECK + many + b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        r = httpx.get(f"http://{address[0]}:{address[1]}/v2/")
        assert r.status_code == 200 and r.headers["docker-distribution-api-version"] == "registry/2.0"


def test_a_url_too_long_to_parse_is_a_json_414(settings: Settings) -> None:
    """httptools refuses a request target past 65,535 bytes, which uvicorn answered in plain text;
    Go (registry:2) takes heads up to 1 MiB. No registry request has such a URL: a JSON error."""
    with serving(served_app(settings), settings) as address:
        for length in (app.protocol.MAX_URL + 1, 200_000):
            target = b"/v2/r/blobs/uploads/" + b"a" * (length - 20)
            answer = exchange(address, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n") and b"content-type: application/json" in head
            assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
        target = b"/v2/r/tags/list?last=" + b"a" * (app.protocol.MAX_URL - 100)  # long, but parsed: answered
        assert exchange(address, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")[:12] in (
            b"HTTP/1.1 404",
            b"HTTP/1.1 200",
        )
        garbage = exchange(address, b"GET /v2/ HTTP/1.1\r\nBad Header\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")  # malformed HTTP: still uvicorn's (and Go's) plain 400


@pytest.mark.parametrize("where", ["head", "trailers"])
def test_a_huge_header_is_not_read_in_full(settings: Settings, where: str) -> None:
    header = b"X-Big: " + b"a" * (64 << 20)
    with serving(served_app(settings), settings) as address, socket.create_connection(address, timeout=20) as s:
        if where == "head":
            request = VERSION_CHECK + header
        else:
            location = httpx.post(f"http://{address[0]}:{address[1]}/v2/r/blobs/uploads/").headers["location"]
            chunked = f"PATCH {location} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            request = chunked + b"5\r\nhello\r\n0\r\n" + header
        tracemalloc.start()
        try:
            # The server stops reading past the limit and closes: the send cannot complete.
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                s.sendall(request)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8 * app.protocol.MAX_HEAD  # the server never held the header (64 MiB) in memory


def test_chunked_bodies_of_tiny_chunks_are_not_framing(settings: Settings) -> None:
    # 300,000 chunks of 8 bytes: 1.5 MB of chunk-size lines in all, more than MAX_HEAD, but none too long.
    body = b"".join(b"8\r\n%08d\r\n" % i for i in range(300_000)) + b"0\r\n\r\n"
    with serving(served_app(settings), settings) as (host, port):
        location = httpx.post(f"http://{host}:{port}/v2/r/blobs/uploads/").headers["location"]
        head = f"PATCH {location} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        answer = exchange((host, port), head.encode() + body)
    assert answer.startswith(b"HTTP/1.1 202 ") and b"\r\nrange: 0-2399999\r\n" in answer


@pytest.mark.parametrize("trickle", [b"", b"X-Slow: 1\r\n"], ids=["silent", "trickling"])
def test_a_slow_head_is_dropped(settings: Settings, monkeypatch: pytest.MonkeyPatch, trickle: bytes) -> None:
    monkeypatch.setattr(app.protocol, "HEAD_TIMEOUT", 1.0)
    with serving(served_app(settings), settings) as address, socket.create_connection(address, timeout=20) as s:
        if trickle:
            s.sendall(VERSION_CHECK)
        # A header line every 0.2 s keeps each read short, never the head complete; the server must
        # end the connection (far) before the client gives up.
        dropped = False
        deadline = time.monotonic() + 60
        while not dropped and time.monotonic() < deadline:
            try:
                if trickle:
                    s.sendall(trickle)
                if select.select([s], [], [], 0.2)[0]:
                    dropped = s.recv(1024) == b""
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
        assert dropped
        # and the server still serves everyone else
        assert httpx.get(f"http://{address[0]}:{address[1]}/v2/").status_code == 200


def _closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the server ends the connection within ``seconds`` (reading whatever it sends first)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([s], [], [], left)[0] and s.recv(65536) == b"":
            return True
    return False


def test_keep_alive_ends_idle_connections_and_only_those(settings: Settings) -> None:
    """One timer per connection (app.protocol): a connection that keeps asking is never timed out from
    an earlier idle moment; once it stops, it is closed after the keep-alive timeout as uvicorn does."""
    with (
        serving(served_app(settings), settings, timeout_keep_alive=1) as address,
        socket.create_connection(address, timeout=20) as s,
    ):
        for _ in range(8):  # 2 s of requests, each well inside the 1 s timeout
            s.sendall(VERSION_CHECK + b"\r\n")
            assert not _closed_within(s, 0.25)
        assert _closed_within(s, 15)  # and then idle: dropped


@pytest.mark.parametrize("driver_name", ["filesystem"])  # sendfile needs its file descriptors
def test_blob_gets_still_go_through_sendfile(settings: Settings, sendfiles: list[int]) -> None:
    blob = b"z" * 100_000
    with serving(served_app(settings), settings) as (host, port), httpx.Client(base_url=f"http://{host}:{port}") as c:
        assert c.post("/v2/z/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code == 201
        assert c.get(f"/v2/z/blobs/{sha256(blob)}").content == blob
    assert sendfiles == [len(blob)]
