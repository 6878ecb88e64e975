"""Repository-name and tag grammar (OCI distribution-spec v1.1, registry:2's limits).

Every component must start and end with ``[a-z0-9]``, so no name can contain ``..``, ``.``, an empty
component or a leading ``_``: a valid name can never address a path outside its repository.
"""

from __future__ import annotations

import re

from storage.errors import NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
NAME_MAX = 255


class Name(str):
    """A repository name that passed the grammar: storage functions take this, never a bare ``str``."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Name:
        if len(text) > NAME_MAX:
            raise NameInvalid("repository name too long", {"name": text[:NAME_MAX], "max": NAME_MAX})
        if not _NAME.fullmatch(text):
            raise NameInvalid("invalid repository name", {"name": text[:NAME_MAX]})
        return cls(text)


def is_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None


def validate_tag(tag: str) -> str:
    if not is_tag(tag):
        raise TagInvalid("invalid tag", {"tag": tag[:200]})
    return tag
