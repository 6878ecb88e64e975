"""5xx responses: the common headers, ``Connection: close``, and one log record each (a traceback only for bugs)."""

from __future__ import annotations

import errno
import logging
import os
import socket

import httpx
import pytest

from app.config import Settings
from app.main import served_app
from tests.app.served import exchange, serving
from tests.e2e.servers import eventually
from tests.oci import sha256

COMMON = {"docker-distribution-api-version": "registry/2.0", "x-content-type-options": "nosniff"}


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    from storage.drivers import filesystem, memory

    async def full(self: object, pieces: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    for writer in (filesystem.FileWriter, memory._Writer):
        monkeypatch.setattr(writer, "write", full)


def broken_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    from storage.uploads import Uploads

    async def broken(self: object, name: str) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(Uploads, "start", broken)


async def test_every_status_has_the_common_headers(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    location = (await client.post("/v2/r/blobs/uploads/")).headers["location"]
    full_disk(monkeypatch)
    full = await client.patch(location, content=b"x" * 1000)
    broken_uploads(monkeypatch)
    responses = {
        404: await client.get("/v2/a/b/c"),
        405: await client.post(f"/v2/r/blobs/{sha256(b'x')}"),
        500: await client.post("/v2/r/blobs/uploads/"),
        507: full,
    }
    for status, r in responses.items():
        assert r.status_code == status
        assert {k: r.headers.get(k) for k in COMMON} == COMMON, status
        assert r.json()["errors"][0]["code"] in ("UNSUPPORTED", "UNKNOWN")
        # A server error ends the connection, and says so; a client error does not.
        assert (r.headers.get("connection") == "close") == (status >= 500), status


def test_a_full_disk_logs_one_line_and_closes_the_connection(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(served_app(settings), settings) as address:
        location = httpx.post(f"http://{address[0]}:{address[1]}/v2/r/blobs/uploads/").headers["location"]
        full_disk(monkeypatch)
        caplog.clear()
        body = os.urandom(1000)
        head = f"PATCH {location} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        # exchange() reads until the server closes: it returns only because the connection ends.
        response = exchange(address, head + body)
    status, _, rest = response.partition(b"\r\n")
    headers = rest.split(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert status == b"HTTP/1.1 507 Insufficient Storage"
    assert b"connection: close" in headers and b"docker-distribution-api-version: registry/2.0" in headers
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"storage full on PATCH {location}: No space left on device"]
    assert errors[0].exc_info is None and "Traceback" not in caplog.text


def test_a_bug_logs_its_traceback_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken_uploads(monkeypatch)
    with serving(served_app(settings), settings) as address:
        response = exchange(address, b"POST /v2/r/blobs/uploads/ HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 500 ")
    assert b"\r\nconnection: close\r\n" in response.lower()
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "RuntimeError: bug" in caplog.text
    assert tracebacks[0].getMessage() == "unexpected error on POST /v2/r/blobs/uploads/"


@pytest.mark.parametrize("length", [1000, 8 << 20], ids=["one-batch", "streamed"])
def test_a_client_hanging_up_mid_upload_is_no_error(
    settings: Settings, caplog: pytest.LogCaptureFixture, length: int
) -> None:
    caplog.set_level(logging.INFO, logger="kura")
    with serving(served_app(settings), settings) as (host, port):
        base = f"http://{host}:{port}"
        location = httpx.post(f"{base}/v2/r/blobs/uploads/").headers["location"]
        head = f"PATCH {location} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n".encode()
        with socket.create_connection((host, port)) as s:
            s.sendall(head + b"x" * (length // 2))
        # The upload is still there, at a size the client can resume from.
        assert eventually(lambda: any("hung up" in r.getMessage() for r in caplog.records))
        status = httpx.get(f"{base}{location}")
        assert status.status_code == 204
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
