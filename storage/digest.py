"""Content digests: parsing, the hashers behind them, and the OCI digest grammar."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from storage.errors import DigestInvalid

# OCI image-spec descriptor grammar: algorithm ":" encoded.
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# Registered algorithms and the exact form of their encoded part (lower-case hex, fixed length).
_ENCODED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
CANONICAL = "sha256"
# Digests parsed lately, by their text: the same few are parsed on every pull (a tag's link, a HEAD's path).
_PARSED: dict[str, Digest] = {}
_PARSED_MAX = 1024


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``alg:hex``; a malformed digest and an unregistered algorithm are both DigestInvalid.

        An algorithm we do not know is a bad digest, as registry:2 answers it: 400, not 405 (which would
        say the method is refused).
        """
        found = _PARSED.get(text)
        if found is not None:
            return found
        found = cls._parse(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = found
        return found

    @classmethod
    def _parse(cls, text: str) -> Digest:
        if not _GRAMMAR.fullmatch(text):
            raise DigestInvalid("invalid digest", {"digest": text[:200]})
        algorithm, encoded = text.split(":", 1)
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}", {"digest": text[:200]})
        if not pattern.fullmatch(encoded):
            raise DigestInvalid("invalid digest", {"digest": text[:200]})
        return cls(algorithm, encoded)

    @classmethod
    def named(cls, algorithm: str, encoded: str) -> Digest | None:
        """The digest a stored path names by its ``<alg>/<hex>`` parts, None when they name none:
        ``parse``'s rules, without its text handling or cache (a walk of the store meets each once)."""
        pattern = _ENCODED.get(algorithm)
        if pattern is None or not pattern.fullmatch(encoded):
            return None
        return cls(algorithm, encoded)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = CANONICAL) -> Digest:
        hasher = new_hasher(algorithm)
        hasher.update(data)
        return cls(algorithm, hasher.hexdigest())

    def hasher(self) -> Hasher:
        return new_hasher(self.algorithm)


def new_hasher(algorithm: str) -> Hasher:
    return hashlib.new(algorithm)


def well_formed_digest(text: str) -> bool:
    """Whether ``text`` follows the OCI digest grammar (whatever its algorithm)."""
    return _GRAMMAR.fullmatch(text) is not None


def looks_like_digest(text: str) -> bool:
    """True when ``text`` is shaped like a digest (a tag can never contain ':')."""
    return ":" in text
