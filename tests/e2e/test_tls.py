"""``http.tls`` from config.yml: blobs over TLS are streamed (never sendfile'd past the TLS layer)."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import Listener, kura_argv, require, started
from tests.oci import sha256

pytestmark = pytest.mark.e2e  # starts a server


@pytest.mark.parametrize("workers", ["1", "2"])
def test_blobs_over_tls(tmp_path: Path, root: str, workers: str, listener: Listener) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = [require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, *subject, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    env = dict(os.environ, REGISTRY_HTTP_TLS_CERTIFICATE=str(cert), REGISTRY_HTTP_TLS_KEY=str(key))
    port = listener.port
    url = f"https://127.0.0.1:{port}"
    data = os.urandom((3 << 20) + 7)
    with started(kura_argv(root, listener, "--workers", workers), url, str(tmp_path / "kura.log"), env):
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert))) as c:
            r = c.post("/v2/tls/blobs/uploads/", params={"digest": sha256(data)}, content=data)
            assert r.status_code == 201, r.text
            r = c.get(f"/v2/tls/blobs/{sha256(data)}")
            assert r.status_code == 200 and r.content == data
            r = c.get(f"/v2/tls/blobs/{sha256(data)}", headers={"Range": "bytes=1000-70000"})
            assert r.status_code == 206 and r.content == data[1000:70001]
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"http://127.0.0.1:{port}/v2/")  # plain HTTP on the TLS port is refused
