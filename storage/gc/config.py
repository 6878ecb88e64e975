"""Kura's ``kura:`` section of config.yml for garbage collection and retention, and registry:2's
``storage.maintenance.uploadpurging``. Keys are lower-case, as registry:2 spells its own (so the
``REGISTRY_KURA_GC_GRACE=30m`` style of environment override works too).

::

    kura:
      gc:
        enabled: true            # online GC in the server (off by default)
        interval: 1h             # how often
        grace: 2h                # nothing observed, pushed or pulled this recently is removed
        deleteuntagged: false    # remove manifests no tag reaches (after the grace period)
        orphanreferrers: true    # remove untagged referrers whose subject is gone (after the grace period)
        trashdelay: 1h           # swept blobs wait in <root>/kura/trash this long before they are erased
        busycores: 0.1           # CPU the server's collection may use while its workers are busy (0: any)
      retention:
        - repositories: ["ci/**"]
          keep:                  # a tag stays when ANY rule keeps it; conditions inside a rule are AND-ed
            - tags: "^v\\d"
              mostrecentlypushed: 5
              pushedwithin: 720h
          deleteuntagged: true
        - repositories: ["cache/**"]
          sizecap: 20GiB         # evict least recently pulled manifests first
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from storage.gc import duration, size

Seconds = Annotated[float, BeforeValidator(duration.parse), Field(ge=0)]
Bytes = Annotated[int, BeforeValidator(size.parse), Field(ge=0)]


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[str | None, AfterValidator(_regex)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt retention key must not silently keep nothing


class UploadPurging(_Section):
    """registry:2's ``storage.maintenance.uploadpurging``, with its defaults."""

    enabled: bool = True
    age: Seconds = 168 * 3600.0
    interval: Seconds = 24 * 3600.0
    dryrun: bool = False


class KeepRule(_Section):
    """Keeps the tags that satisfy every condition given (an absent condition holds)."""

    tags: Regex = None  # only tags matching this (re.search); all tags when absent
    excludetags: Regex = None  # never tags matching this
    mostrecentlypushed: int | None = Field(None, ge=0)  # the N newest by push time, among the matching tags
    mostrecentlypulled: int | None = Field(None, ge=0)  # the N most recently pulled, among the matching tags
    pushedwithin: Seconds | None = None
    pulledwithin: Seconds | None = None


class RetentionPolicy(_Section):
    """Applies to the repositories matching one of its globs (``*`` within a component, ``**`` across);
    the first policy that matches a repository is the one applied to it."""

    repositories: list[str] = Field(default_factory=lambda: ["**"])
    keep: list[KeepRule] | None = None  # None: every tag stays; [] would untag everything, so refused
    deleteuntagged: bool | None = None  # overrides kura.gc.deleteuntagged for these repositories
    sizecap: Bytes | None = None
    dryrun: bool = False  # only log; a new or changed policy is also dry on its first run

    def model_post_init(self, context: object) -> None:
        if self.keep is not None and not self.keep:
            raise ValueError("retention keep: [] would remove every tag; omit keep to keep them all")


class GCConfig(_Section):
    enabled: bool = False
    interval: Seconds = 3600.0
    grace: Seconds = 7200.0
    deleteuntagged: bool = False
    orphanreferrers: bool = True
    trashdelay: Seconds = 3600.0
    busycores: float = Field(0.1, ge=0)  # CPU a server's own collection may use while its workers are busy; 0: any
