from __future__ import annotations

import pytest

from storage.digest import Digest
from storage.errors import DigestInvalid, NameInvalid, TagInvalid
from storage.names import Name, validate_tag

HEX = "a" * 64


def test_parse_round_trips() -> None:
    """A sha256 digest parses into algorithm and hex and prints back the same."""
    d = Digest.parse(f"sha256:{HEX}")
    assert (d.algorithm, d.hex, str(d)) == ("sha256", HEX, f"sha256:{HEX}")


def test_sha512_is_accepted() -> None:
    assert Digest.parse("sha512:" + "b" * 128).algorithm == "sha512"


@pytest.mark.parametrize(
    "text",
    ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:../../etc", "sha256", "", "sha256:" + "a" * 64 + "/x"],
)
def test_malformed_digests_are_invalid(text: str) -> None:
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


def test_unknown_algorithm_is_invalid() -> None:
    with pytest.raises(DigestInvalid, match="unsupported digest algorithm 'md5'"):
        Digest.parse("md5:" + "a" * 32)


def test_parsed_digests_are_remembered_and_bad_ones_never_are() -> None:
    text = "sha256:" + "c" * 64
    assert Digest.parse(text) is Digest.parse(text)  # the second parse is the first one's answer
    for _ in range(2):  # a refused text is refused again: nothing was kept for it
        with pytest.raises(DigestInvalid):
            Digest.parse("sha256:" + "C" * 64)
    for i in range(1500):  # past the bound the memory starts over, and parsing still answers
        assert str(Digest.parse(f"sha256:{i:064x}")) == f"sha256:{i:064x}"


def test_of_bytes_matches_hashlib() -> None:
    assert str(Digest.of_bytes(b"hello")) == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


@pytest.mark.parametrize("name", ["a", "library/ubuntu", "a.b/c-d/e__f", "x--y", "a" * 255])
def test_valid_names(name: str) -> None:
    assert Name.parse(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "Library/ubuntu", "a/../b", "..", "a//b", "_a", "a/_layers", "a/", "-a", "a" * 256, "a b"]
)
def test_invalid_names(name: str) -> None:
    """Upper case, traversal, empty or '_' components and over-long names are all NameInvalid."""
    with pytest.raises(NameInvalid):
        Name.parse(name)


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A-b_c.d", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a/b", "a:b", ".."])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(TagInvalid):
        validate_tag(tag)
