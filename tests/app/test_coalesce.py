"""Small responses leave in one write on a real uvicorn, and every response is still whole and in order."""

from __future__ import annotations

import httpx
import pytest

import app.coalesce
from app.config import Settings
from app.main import served_app
from tests.app.served import exchange, serving
from tests.oci import random_image, sha256


@pytest.fixture
def driver_name() -> str:
    return "filesystem"  # blob GETs go through sendfile, which needs this driver's descriptors


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What each coalesced write carried."""
    found: list[bytes] = []
    real = app.coalesce.Gathering.flush

    def recording(self: app.coalesce.Gathering) -> None:
        if self.parts:
            found.append(b"".join(self.parts))
        real(self)

    monkeypatch.setattr(app.coalesce.Gathering, "flush", recording)
    return found


def _seed(base: str) -> tuple[bytes, str, bytes]:
    image = random_image(seed=21)
    with httpx.Client(base_url=base) as c:
        for digest, data in image.blobs.items():
            assert c.post("/v2/r/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
        headers = {"Content-Type": image.media_type}
        assert c.put("/v2/r/manifests/t", content=image.manifest, headers=headers).status_code == 201
    layer = next(iter(image.blobs))
    return image.manifest, layer, image.blobs[layer]


def test_head_and_body_in_one_write_pipelined_in_order(settings: Settings, writes: list[bytes]) -> None:
    with serving(served_app(settings), settings) as (host, port):
        manifest, layer, blob = _seed(f"http://{host}:{port}")
        writes.clear()
        requests = [
            b"GET /v2/r/manifests/t HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD /v2/r/manifests/t HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /v2/r/manifests/nope HTTP/1.1\r\nHost: x\r\n\r\n",
            f"HEAD /v2/r/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
            f"GET /v2/r/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),  # sendfile: head written first
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ]
        answer = exchange((host, port), b"".join(requests))
    # Every response, whole and in order, on one connection; the last one closes it.
    heads = answer.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"200", b"200", b"404", b"200", b"200", b"200"]
    assert heads[0].endswith(b"\r\n\r\n" + manifest)
    assert heads[1].endswith(b"\r\n\r\n") and f"content-length: {len(manifest)}".encode() in heads[1]
    assert b'"MANIFEST_UNKNOWN"' in heads[2]
    assert heads[3].endswith(b"\r\n\r\n") and f"content-length: {len(blob)}".encode() in heads[3]
    assert heads[4].endswith(b"\r\n\r\n" + blob)
    assert b"connection: close" in heads[5] and heads[5].endswith(b"\r\n\r\n{}")
    # Each small response was one write carrying its head and (for a GET) its whole body.
    small = [w for w in writes if w.startswith(b"HTTP/1.1 ")]
    assert [w[9:12] for w in small] == [b"200", b"200", b"404", b"200", b"200", b"200"]
    assert small[0].endswith(manifest) and small[2].endswith(b"}") and small[5].endswith(b"{}")
    assert small[4].endswith(b"\r\n\r\n")  # the blob's head alone: its body went by sendfile
    assert sha256(heads[4].split(b"\r\n\r\n", 1)[1]) == layer
