"""Real credentials for auth tests: htpasswd files written by Apache's ``htpasswd -B``, and a CA (made
with ``cryptography``) whose keys sign bearer tokens with PyJWT, as an external token issuer would."""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

SERVICE = "kura-test"
ISSUER = "test-issuer"


def htpasswd(path: str, users: dict[str, str]) -> str:
    """Writes (or adds to) an htpasswd file with Apache's own tool, bcrypt (``$2y$``) entries."""
    binary = shutil.which("htpasswd")
    if binary is None:
        pytest.fail("htpasswd is not installed (apache2-utils): run scripts/test")
    for user, password in users.items():
        create = [] if os.path.exists(path) else ["-c"]
        subprocess.run([binary, "-B", "-b", *create, path, user, password], check=True, capture_output=True)
    return path


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate]

    def x5c(self) -> list[str]:
        return [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in [self.cert, *self.chain]]

    def token(
        self,
        grants: list[dict[str, Any]],
        *,
        headers: dict[str, Any] | None = None,
        lifetime: int = 300,
        now: float | None = None,
        **claims: Any,
    ) -> str:
        at = int(time.time() if now is None else now)
        payload = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": SERVICE,
            "exp": at + lifetime,
            "nbf": at,
            "iat": at,
            "jti": uuid.uuid4().hex,
            "access": grants,
        } | claims
        return jwt.encode(
            payload, self.key, algorithm="ES256", headers={"x5c": self.x5c()} if headers is None else headers
        )


class CA:
    """A root CA, with leaf signing certificates issued directly or through an intermediate."""

    def __init__(self, name: str = "Test token CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._cert(_name(name), self.key, _name(name), self.key, ca=True)

    def _cert(
        self,
        subject: x509.Name,
        subject_key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        issuer_key: ec.EllipticCurvePrivateKey,
        ca: bool,
        days: int = 30,
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    def leaf(self, via_intermediate: bool = False, days: int = 30) -> Signer:
        key = ec.generate_private_key(ec.SECP256R1())
        if not via_intermediate:
            return Signer(key, self._cert(_name("signer"), key, self.cert.subject, self.key, False, days), [])
        middle_key = ec.generate_private_key(ec.SECP256R1())
        middle = self._cert(_name("intermediate"), middle_key, self.cert.subject, self.key, True)
        return Signer(key, self._cert(_name("signer"), key, middle.subject, middle_key, False, days), [middle])

    def root_signer(self) -> Signer:
        """The CA's own key signing tokens, as registry:2 setups with one self-signed certificate do."""
        return Signer(self.key, self.cert, [])


def repository(name: str, *actions: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": list(actions)}


CATALOG = {"type": "registry", "name": "catalog", "actions": ["*"]}
