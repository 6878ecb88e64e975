"""The built-in token server's signing key: created on first start, kept under ``<root>/kura/auth/``.

Tokens carry the certificate in ``x5c`` (registry:2 2.8 and 3.x both verify that) and its libtrust
key ID in ``kid``. The certificate is also written as ``token.crt``, so a registry:2 on the same root
can name it as its ``rootcertbundle``.
"""

from __future__ import annotations

import base64
import datetime
import os
import tempfile
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

from app.auth.keys import libtrust_key_id

KEY_FILE = "token-key.pem"  # private key, then certificate; 0600
CERT_FILE = "token.crt"  # the certificate alone, for a rootcertbundle
ALGORITHM = "ES256"  # what registry:2 2.8 and 3.x and every client library know


def auth_directory(root: str) -> str:
    return os.path.join(root, "kura", "auth")


def _new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kura token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) + cert.public_bytes(Encoding.PEM)


def load_or_create(directory: str) -> bytes:
    """The key file's bytes, creating it first if needed.

    Creation is atomic and first-wins: a complete file is written under a temporary name and
    hard-linked into place, so workers starting together all end up with the one key that won.
    """
    path = os.path.join(directory, KEY_FILE)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_new_key_pem())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker won
    finally:
        os.unlink(temporary)
    with open(path, "rb") as f:
        return f.read()


def _publish_certificate(directory: str, cert: x509.Certificate) -> None:
    """``token.crt``, rewritten only when it differs (registry:2 may be reading it)."""
    path = os.path.join(directory, CERT_FILE)
    pem = cert.public_bytes(Encoding.PEM)
    try:
        with open(path, "rb") as f:
            if f.read() == pem:
                return
    except FileNotFoundError:
        pass
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".crt-")
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


class Signer:
    def __init__(self, root: str) -> None:
        directory = auth_directory(root)
        pem = load_or_create(directory)
        key = load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{os.path.join(directory, KEY_FILE)} does not hold an EC private key")
        self._key = key
        self.certificate = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----") :])
        _publish_certificate(directory, self.certificate)
        self._headers = {
            "kid": libtrust_key_id(key.public_key()),
            "x5c": [base64.b64encode(self.certificate.public_bytes(Encoding.DER)).decode()],
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers=self._headers)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()
