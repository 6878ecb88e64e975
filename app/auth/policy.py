"""Access policies: repository globs -> users and groups -> actions (zot's model, registry:2's actions).

``push`` is every write; ``create`` is the writes that change nothing already published (blobs,
manifests by digest, a tag that does not exist yet), so a user with ``create`` but not ``push`` can
publish new tags and never move one: per-user tag immutability.
"""

from __future__ import annotations

import functools
import re

from app.auth.settings import KuraAuth, Rule

ALL = frozenset({"pull", "push", "create", "delete"})
NOTHING: frozenset[str] = frozenset()


def glob_regex(glob: str) -> re.Pattern[str]:
    """``*`` matches within one path component, ``**`` across components."""
    parts = re.split(r"(\*\*|\*|\?)", glob)
    wild = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(p) or re.escape(p) for p in parts))


class Policies:
    def __init__(self, config: KuraAuth) -> None:
        self.enabled = config.policies_enabled
        self.admins = frozenset(config.admins)
        self._groups: dict[str, set[str]] = {}
        for group, members in config.groups.items():
            for user in members:
                self._groups.setdefault(user, set()).add(group)
        # The longest glob that matches wins, as in zot.
        ordered = sorted(config.repositories.items(), key=lambda item: len(item[0]), reverse=True)
        self._rules = [(glob_regex(glob), rule) for glob, rule in ordered]
        self.rule = functools.lru_cache(maxsize=4096)(self._rule)

    def _rule(self, repository: str) -> Rule | None:
        return next((rule for pattern, rule in self._rules if pattern.fullmatch(repository)), None)

    def actions(self, user: str | None, repository: str) -> frozenset[str]:
        """What ``user`` (None: anonymous) may do on ``repository``."""
        if not self.enabled:
            return ALL if user is not None else NOTHING
        if user in self.admins:
            return ALL
        rule = self.rule(repository)
        if rule is None:
            return NOTHING
        granted = set(rule.anonymous)
        if user is not None:
            granted.update(rule.default)
            groups = self._groups.get(user, set())
            for grant in rule.policies:
                if user in grant.users or groups.intersection(grant.groups):
                    granted.update(grant.actions)
        return frozenset(granted)

    def reads_everything(self, user: str | None) -> bool:
        return user is not None and (not self.enabled or user in self.admins)
