"""Bearer tokens verified as registry:2's ``auth.token`` verifies them.

The signing key is found, in registry:2's order, from the ``x5c`` chain (verified against
``rootcertbundle``), else the ``jwk`` header's ``kid``, else the ``kid``: a libtrust key ID (2.8), an
RFC 7638 thumbprint (3.x) of a bundle certificate's key, or a key of the ``jwks`` file.
``exp``/``nbf`` get registry:2's 60 s leeway; ``iss`` must be the issuer and ``aud`` the service.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from app.auth.keys import SIGNING_KEYS, PublicKey, libtrust_key_id, thumbprints

LEEWAY = 60  # seconds, registry:2's Leeway on exp and nbf
CACHE_SIZE = 4096


class InvalidToken(Exception):
    """Anything wrong with a token; the reason is for the log, never for the client."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    access: dict[tuple[str, str], frozenset[str]]  # (type, name) -> actions

    def actions(self, kind: str, name: str) -> frozenset[str]:
        return self.access.get((kind, name), frozenset())


def load_bundle(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


def load_jwks(path: str) -> list[jwt.PyJWK]:
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    return list(jwt.PyJWKSet.from_dict(document).keys)


def _valid_now(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return cert.version == x509.Version.v1  # Go's rule: only a v1 certificate may sign without it
    except (ValueError, x509.DuplicateExtension):
        # Extensions are parsed lazily, here: a token's x5c may hold any bytes (unsigned as yet)
        return False


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):  # wrong issuer, bad signature
        return False
    return True


def _access(raw: object) -> dict[tuple[str, str], frozenset[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise InvalidToken("access claim is not a list")
    access: dict[tuple[str, str], set[str]] = {}
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidToken("access entry is not an object")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions") or []
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise InvalidToken("malformed access entry")
        access.setdefault((kind, name), set()).update(a for a in actions if isinstance(a, str))
    return {key: frozenset(value) for key, value in access.items()}


class TokenVerifier:
    def __init__(
        self,
        issuer: str,
        service: str,
        roots: Sequence[x509.Certificate],
        jwks: Iterable[jwt.PyJWK] = (),
        algorithms: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.service = service
        self.roots = list(roots)
        self.algorithms = frozenset(algorithms) - {"none"}
        self._clock = clock
        self._trusted: dict[str, Any] = {}
        for root in self.roots:
            key = root.public_key()
            if isinstance(key, SIGNING_KEYS):  # a DSA or X448 root can sign no token registry:2 knows
                for kid in {libtrust_key_id(key), *thumbprints(key)}:
                    self._trusted[kid] = key
        for jwk in jwks:
            if jwk.key_id:
                self._trusted[jwk.key_id] = jwk.key
        self._verified: collections.OrderedDict[bytes, tuple[Claims, float]] = collections.OrderedDict()

    def verify(self, token: str) -> Claims:
        """The token's claims, or InvalidToken. Verified tokens are remembered until they expire."""
        cache_key = hashlib.sha256(token.encode()).digest()
        remembered = self._remembered(cache_key)
        if remembered is not None:
            return remembered
        claims, expires = self._verify(token)
        self._verified[cache_key] = (claims, expires)
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def remembered(self, token: str) -> Claims | None:
        """The claims of a token verified before and not yet expired; None for any other."""
        return self._remembered(hashlib.sha256(token.encode()).digest())

    def _remembered(self, cache_key: bytes) -> Claims | None:
        hit = self._verified.get(cache_key)
        if hit is not None and hit[1] >= self._clock():
            return hit[0]
        return None

    def _verify(self, token: str) -> tuple[Claims, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken(f"signing algorithm {alg!r} is not accepted")
        key = self._signing_key(header)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp"], "verify_iat": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(f"token rejected: {type(exc).__name__}") from None
        exp = payload["exp"]
        if not isinstance(exp, int | float):
            raise InvalidToken("exp is not a number")
        try:
            expires = float(exp) + LEEWAY
        except OverflowError:  # an integer past any float (10**400): no time a token can mean
            raise InvalidToken("exp is out of range") from None
        subject = payload.get("sub") or ""
        return Claims(str(subject), _access(payload.get("access"))), expires

    def _signing_key(self, header: dict[str, Any]) -> Any:
        if "x5c" in header:
            return self._chain_key(header["x5c"])
        jwk = header.get("jwk")
        kid = jwk.get("kid") if isinstance(jwk, dict) else header.get("kid")
        if isinstance(kid, str) and kid in self._trusted:
            return self._trusted[kid]
        raise InvalidToken("token signed by an untrusted or unnamed key")

    def _chain_key(self, x5c: object) -> PublicKey:
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise InvalidToken("malformed x5c header")
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        except (binascii.Error, ValueError):
            raise InvalidToken("x5c holds something that is not a certificate") from None
        now = datetime.fromtimestamp(self._clock(), UTC)
        if not all(_valid_now(c, now) for c in chain):
            raise InvalidToken("a certificate of the x5c chain is expired or not yet valid")
        for child, parent in itertools.pairwise(chain):
            if not (_is_ca(parent) and _issued_by(child, parent)):
                raise InvalidToken("the x5c chain is broken")
        last = chain[-1]
        anchored = any(
            last == root or (_valid_now(root, now) and _is_ca(root) and _issued_by(last, root)) for root in self.roots
        )
        if not anchored:
            raise InvalidToken("the x5c chain does not lead to a trusted root")
        key = chain[0].public_key()
        if not isinstance(key, SIGNING_KEYS):
            raise InvalidToken("the x5c leaf holds a key no JWT algorithm uses")
        return key
