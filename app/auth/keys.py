"""Key identifiers registry:2 uses: libtrust key IDs (2.8) and RFC 7638 JWK thumbprints (3.x)."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
SIGNING_KEYS = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)  # for isinstance
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def libtrust_key_id(key: PublicKey) -> str:
    """base32 of the first 240 bits of SHA-256(DER SubjectPublicKeyInfo), in groups of 4 joined by ':'."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _int_bytes(value: int, length: int | None = None) -> bytes:
    return value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")


def thumbprints(key: PublicKey) -> set[str]:
    """RFC 7638 SHA-256 thumbprints of the key.

    For EC keys both the RFC's fixed-length coordinates and registry:3's minimal big-endian ones
    (``big.Int.Bytes()``) are given: they differ for one key in 256, and a kid may carry either.
    """
    members: list[dict[str, str]]
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        members = [{"e": _b64(_int_bytes(numbers.e)), "kty": "RSA", "n": _b64(_int_bytes(numbers.n))}]
    elif isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = _CURVES.get(key.curve.name, key.curve.name)
        members = [
            {"crv": crv, "kty": "EC", "x": _b64(_int_bytes(point.x, n)), "y": _b64(_int_bytes(point.y, n))}
            for n in (size, None)
        ]
    else:
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        members = [{"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}]
    return {_b64(hashlib.sha256(json.dumps(m, separators=(",", ":")).encode()).digest()) for m in members}
