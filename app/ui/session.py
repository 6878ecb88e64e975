"""The UI's session cookie and CSRF tokens, both HMAC-signed with a key every worker shares.

A cookie rather than HTTP Basic: a browser keeps Basic credentials until it quits (no logout), shows
its own unlabelled prompt, and sends the password with every request. The cookie is HttpOnly,
SameSite=Strict (another site's form or link never carries it) and Secure over TLS; it names the user
and an expiry, never the password. Every visitor, logged in or not, gets one: its nonce keys the
CSRF token that every state-changing form must echo.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass

COOKIE = "kura_ui"
LIFETIME = 12 * 3600  # seconds a login lasts


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: bytes, data: bytes) -> bytes:
    return hmac.new(key, purpose + b"\0" + data, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Session:
    user: str | None
    nonce: str
    expires: int
    fresh: bool = False  # made for this request: the response sets the cookie

    @classmethod
    def new(cls, user: str | None, now: float | None = None) -> Session:
        return cls(user, _b64(os.urandom(16)), int(now or time.time()) + LIFETIME, fresh=True)

    def cookie(self, key: bytes) -> str:
        payload = json.dumps({"u": self.user, "n": self.nonce, "e": self.expires}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(_mac(key, b'session', payload))}"

    def csrf(self, key: bytes) -> str:
        return _b64(_mac(key, b"csrf", self.nonce.encode()))

    def csrf_ok(self, key: bytes, token: str) -> bool:
        return hmac.compare_digest(self.csrf(key), token)


def read(key: bytes, cookie: str | None, now: float | None = None) -> Session | None:
    """The session a cookie carries; None when it is missing, forged or expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload_text, mac_text = cookie.split(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except ValueError:
        return None
    if not hmac.compare_digest(mac, _mac(key, b"session", payload)):
        return None
    try:
        fields = json.loads(payload)
        user, nonce, expires = fields["u"], str(fields["n"]), int(fields["e"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < (now or time.time()) or not (user is None or isinstance(user, str)):
        return None
    return Session(user, nonce, expires)
