"""Blob GETs through sendfile(2) on a real uvicorn (httptools, uvloop) on 127.0.0.1, and the fallbacks."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

import app.zerocopy
from app.config import Settings
from app.main import served_app
from tests.e2e.servers import eventually, require_e2e_mark
from tests.oci import sha256

pytestmark = pytest.mark.e2e  # starts a real uvicorn on 127.0.0.1

BLOB = os.urandom((8 << 20) + 12345)


@pytest.fixture
def driver_name() -> str:
    return "filesystem"  # sendfile needs a file descriptor, which only this driver's readers have


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    require_e2e_mark()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound before the server starts: no race for the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(served_app(settings), loop="uvloop", http="httptools", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.01)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base) as c:
        r = c.post("/v2/z/blobs/uploads/", params={"digest": sha256(BLOB)}, content=BLOB)
        assert r.status_code == 201, r.text
    # the server closes its side of that connection in its own thread: let it, before tests count descriptors
    assert eventually(lambda: not server.server_state.connections)
    yield base
    server.should_exit = True
    thread.join(10)


def test_gets_go_through_sendfile_on_one_keep_alive_connection(url: str, sendfiles: list[int]) -> None:
    digest = sha256(BLOB)
    with httpx.Client(base_url=url) as c:
        for _ in range(2):
            r = c.get(f"/v2/z/blobs/{digest}")
            assert r.status_code == 200 and r.content == BLOB
            assert r.headers["content-length"] == str(len(BLOB))
        r = c.get(f"/v2/z/blobs/{digest}", headers={"Range": "bytes=100-65635"})
        assert r.status_code == 206 and r.content == BLOB[100:65636]
        # the connection is still in a sane state for other responses
        assert c.head(f"/v2/z/blobs/{digest}").headers["content-length"] == str(len(BLOB))
        assert c.get("/v2/z/tags/list").status_code == 404
        assert c.get(f"/v2/z/blobs/{digest}", headers={"Range": f"bytes={len(BLOB) - 1}-"}).content == BLOB[-1:]
    assert sendfiles == [len(BLOB), len(BLOB), 65536, 1]


def test_busy_sendfile_threads_fall_back_to_streaming(
    url: str, sendfiles: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.zerocopy, "THREADS", 0)
    r = httpx.get(f"{url}/v2/z/blobs/{sha256(BLOB)}")
    assert r.status_code == 200 and r.content == BLOB
    assert sendfiles == []


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_client_that_hangs_up_mid_blob_leaves_the_server_serving(url: str, sendfiles: list[int]) -> None:
    """The server (in this process) keeps serving and leaks no descriptor, from the loop or the thread."""
    port = int(url.rsplit(":", 1)[1])
    before = open_descriptors()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET /v2/z/blobs/{sha256(BLOB)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(12) == b"HTTP/1.1 200"
    for _ in range(3):
        assert httpx.get(f"{url}/v2/z/blobs/{sha256(BLOB)}").content == BLOB
    assert sendfiles[-3:] == [len(BLOB)] * 3
    # At most as many: the server may still have been closing the fixture's connection at ``before``.
    assert eventually(lambda: open_descriptors() <= before, timeout=10), (open_descriptors(), before)
