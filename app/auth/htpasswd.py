"""Accounts in an Apache htpasswd file, checked as registry:2 checks them (bcrypt entries only).

registry:2 stats the file on every request and re-reads it when it changed; so does this, once per
turn of the event loop at most (the requests answered in one turn share one look at it). It pays
bcrypt (~0.1 s of CPU at cost 10) on every request; this remembers a verified password for a short
time instead, keyed by a keyed BLAKE2b hash (per-process key), so no password is ever held in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import bcrypt

log = logging.getLogger("kura.auth")

_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")  # $2y$ is Apache htpasswd -B's spelling of $2b$
_DEFAULT_COST = 5  # htpasswd -B's default, and the cost of registry:2's dummy hash
CACHE_SIZE = 1024


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` value, or None when it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def _cost(entry: bytes) -> int:
    parts = entry.split(b"$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else _DEFAULT_COST


class Htpasswd:
    def __init__(self, path: str, cache_ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._entries: dict[str, bytes] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._dummy = b""
        self.generation = 0  # bumped on every reload; a check started before one is not cached
        self._key = os.urandom(32)
        self._verified: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._looked = False  # refreshed during this turn of the event loop
        self._checks: dict[bytes, asyncio.Future[bool]] = {}  # bcrypt checks under way, by credentials
        if not self.refresh():
            raise OSError(f"cannot read the htpasswd file {path}")

    def refresh(self) -> bool:
        """Re-read the file if it changed; False when it cannot be read (the last contents stay)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self._stamp is not None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return True
        try:
            with open(self.path, "rb") as f:
                text = f.read()
        except OSError:
            return self._stamp is not None
        self._entries = self._parse(text)
        costs = collections.Counter(_cost(e) for e in self._entries.values() if e.startswith(_BCRYPT_PREFIXES))
        cost = max(4, min(costs.most_common(1)[0][0] if costs else _DEFAULT_COST, 31))
        if not self._dummy or _cost(self._dummy) != cost:
            # An unknown user costs the same bcrypt work as a wrong password for a usual entry.
            self._dummy = bcrypt.hashpw(b"kura dummy password", bcrypt.gensalt(cost))
        self._verified.clear()
        self._stamp = stamp
        self.generation += 1
        return True

    def _parse(self, text: bytes) -> dict[str, bytes]:
        entries: dict[str, bytes] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            user, colon, entry = line.partition(b":")
            if not colon or not user or not entry:
                log.warning("htpasswd %s line %d: not a user:hash entry, ignored", self.path, number)
                continue
            if not entry.startswith(_BCRYPT_PREFIXES):
                log.warning("htpasswd %s line %d: not bcrypt (use htpasswd -B), never matches", self.path, number)
            entries[user.decode("utf-8", "replace")] = entry
        return entries

    def __contains__(self, user: str) -> bool:
        return user in self._entries

    def entry_tag(self, user: str) -> str | None:
        """A short digest of the user's entry: a refresh token dies when the password changes."""
        entry = self._entries.get(user)
        return None if entry is None else hashlib.sha256(entry).hexdigest()[:16]

    def _cache_key(self, user: str, password: str) -> bytes:
        encoded = user.encode()
        message = len(encoded).to_bytes(4, "big") + encoded + password.encode()
        return hashlib.blake2b(message, key=self._key, digest_size=32).digest()  # a keyed hash, one C call

    def cached(self, user: str, password: str) -> bool:
        """Whether this password was verified for this user within the cache's lifetime."""
        key = self._cache_key(user, password)
        expiry = self._verified.get(key)
        if expiry is None:
            return False
        if expiry < self._clock():
            del self._verified[key]
            return False
        return True

    def remembered(self, user: str, password: str) -> bool:
        """``cached``, after a look at the file (at most once per turn of the event loop): an edit to
        it (a removed user, a new password) is seen by the next request."""
        if not self._looked:
            self.refresh()
            self._looked = True
            asyncio.get_running_loop().call_soon(self._look_again)
        return self.cached(user, password)

    def remember(self, user: str, password: str, generation: int) -> None:
        if self.cache_ttl <= 0 or generation != self.generation:
            return
        self._verified[self._cache_key(user, password)] = self._clock() + self.cache_ttl
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)

    def _look_again(self) -> None:
        self._looked = False

    def check(self, user: str, password: str) -> bool:
        """The bcrypt comparison itself (slow: call it off the event loop)."""
        entry = self._entries.get(user)
        secret = password.encode()
        try:
            if entry is None or not entry.startswith(_BCRYPT_PREFIXES):
                bcrypt.checkpw(secret, self._dummy)
                return False
            return bcrypt.checkpw(secret, entry)
        except ValueError:
            # bcrypt 5 refuses passwords over 72 bytes (and malformed hashes): a failed login, not a 500.
            return False

    async def verify(
        self, user: str, password: str, checking: Callable[[], AbstractContextManager[object]] = nullcontext
    ) -> bool:
        """Whether the password is the user's: from the cache, else by bcrypt in a thread, held in
        ``checking`` (the failure limiter's). Requests with the same credentials while one is checked
        wait for that check (a client's parallel pulls with a password not yet remembered)."""
        if self.remembered(user, password):
            return True
        key = self._cache_key(user, password)
        running = self._checks.get(key)
        if running is not None:
            return await asyncio.shield(running)
        with checking():
            running = self._checks[key] = asyncio.ensure_future(self._check_and_remember(user, password))
            try:
                return await asyncio.shield(running)
            finally:
                if running.done():
                    del self._checks[key]
                else:  # this request was cancelled: the check goes on for the others
                    running.add_done_callback(lambda _: self._checks.pop(key, None))

    async def _check_and_remember(self, user: str, password: str) -> bool:
        generation = self.generation
        ok = await asyncio.get_running_loop().run_in_executor(None, self.check, user, password)
        if ok:
            self.remember(user, password, generation)
        return ok
