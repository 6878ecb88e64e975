"""``http.tls.clientcas`` (registry:2's mutual TLS): a client certificate from one of the CAs is required."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.authkit import CA, Signer
from tests.e2e.servers import Listener, eventually, kura_argv, require, spawn, stop

pytestmark = pytest.mark.e2e


def client_files(tmp_path: Path, name: str, signer: Signer) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(signer.cert.public_bytes(Encoding.PEM))
    key.write_bytes(signer.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return str(cert), str(key)


def test_client_certificates_are_required(tmp_path: Path, root: str, listener: Listener) -> None:
    server_cert, server_key = tmp_path / "server.pem", tmp_path / "server.key"
    openssl = [require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, *subject, "-keyout", str(server_key), "-out", str(server_cert)], check=True, capture_output=True
    )
    first, second, stranger = CA("first"), CA("second"), CA("stranger")
    bundles = []
    for name, ca in (("first", first), ("second", second)):
        (tmp_path / f"{name}-ca.pem").write_bytes(ca.pem())
        bundles.append(str(tmp_path / f"{name}-ca.pem"))
    config = tmp_path / "config.yml"
    config.write_text(
        f"http:\n  tls:\n    certificate: {server_cert}\n    key: {server_key}\n"
        f"    clientcas:\n      - {bundles[0]}\n      - {bundles[1]}\n"
    )
    url = f"https://127.0.0.1:{listener.port}"
    verify = ssl.create_default_context(cafile=str(server_cert))
    contexts = [
        _with_client(server_cert, client_files(tmp_path, n, ca.leaf())) for n, ca in (("a", first), ("b", second))
    ]
    process = spawn(kura_argv(root, listener, "--config", str(config)), str(tmp_path / "kura.log"))
    try:
        assert eventually(lambda: _answers(f"{url}/v2/", contexts[0]) or process.poll() is not None)
        assert process.poll() is None, (tmp_path / "kura.log").read_text()
        for context in contexts:
            assert httpx.get(f"{url}/v2/", verify=context).status_code == 200
        for context in (verify, _with_client(server_cert, client_files(tmp_path, "stranger", stranger.leaf()))):
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"{url}/v2/", verify=context)
    finally:
        stop(process)


def _answers(url: str, context: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url, verify=context, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _with_client(server_cert: Path, files: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server_cert))
    context.load_cert_chain(*files)
    return context
