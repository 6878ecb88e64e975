"""Retention policies (operations.md §1.4): which tags a repository keeps, and its size cap.

A policy's ``keep`` rules are OR-ed (a tag stays when any rule keeps it, as in zot), the conditions
inside one rule are AND-ed ("the 3 newest AND pushed within 100h", zot PR#1866). Times are push times
(the tag's current-link mtime, refreshed on every push) and pull times (Kura's pull markers), never
the image config's ``created``, which reproducible builds set to 1970. Referrers fallback tags
(``sha256-<hex>``) are indexes of referrers, not versions: no rule ever removes them.

The size cap (for cache repositories, where one tag is rewritten by every build) evicts whole
manifests, least recently used first (last pull, else last push), until what the repository keeps
fits; the most recently pushed one always stays, so the last cache still imports.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

from storage.digest import Digest
from storage.gc.config import KeepRule, RetentionPolicy
from storage.gc.inventory import Inventory
from storage.gc.mark import Marking, sizes

_FALLBACK = re.compile(r"(sha256|sha512)-[0-9a-f]{64,128}")


def glob(pattern: str) -> re.Pattern[str]:
    """``*`` matches within a path component, ``**`` across components, ``?`` one character."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def policy_for(policies: Sequence[RetentionPolicy], name: str) -> tuple[int, RetentionPolicy] | None:
    for number, policy in enumerate(policies):
        if any(glob(p).fullmatch(name) for p in policy.repositories):
            return number, policy
    return None


def fingerprint(policy: RetentionPolicy) -> str:
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]


def is_fallback(tag: str) -> bool:
    return _FALLBACK.fullmatch(tag) is not None


def _kept_by(rule: KeepRule, inventory: Inventory, tags: list[str], now_ns: int) -> set[str]:
    def pushed(tag: str) -> int:
        return inventory.tags[tag].pushed_ns

    def pulled(tag: str) -> int:
        digest = inventory.tags[tag].digest
        return inventory.pulls.get(digest, 0) if digest is not None else 0

    matching = [
        t
        for t in tags
        if (rule.tags is None or re.search(rule.tags, t)) and not (rule.excludetags and re.search(rule.excludetags, t))
    ]
    kept = set(matching)
    if rule.pushedwithin is not None:
        kept &= {t for t in matching if now_ns - pushed(t) <= rule.pushedwithin * 1e9}
    if rule.pulledwithin is not None:
        kept &= {t for t in matching if now_ns - pulled(t) <= rule.pulledwithin * 1e9}
    for count, when in ((rule.mostrecentlypushed, pushed), (rule.mostrecentlypulled, pulled)):
        if count is not None:
            kept &= set(sorted(matching, key=lambda t: (when(t), t), reverse=True)[:count])
    return kept


def tags_to_remove(policy: RetentionPolicy, inventory: Inventory, now_ns: int) -> list[tuple[str, str]]:
    """(tag, why) for each tag the policy does not keep."""
    if policy.keep is None:
        return []
    tags = sorted(t for t, info in inventory.tags.items() if info.digest is not None and not is_fallback(t))
    kept: set[str] = set()
    for rule in policy.keep:
        kept |= _kept_by(rule, inventory, tags, now_ns)
    return [(t, "kept by no retention rule") for t in tags if t not in kept]


def kept_size(marking: Marking) -> int:
    """Bytes of everything the repository keeps, each digest once (descriptor sizes, no I/O)."""
    return sum(sizes(marking).values())


def evict(
    cap: int, inventory: Inventory, marking: Marking, remark: Callable[[set[Digest]], Marking]
) -> tuple[set[Digest], Marking]:
    """Evict least recently used top-level manifests until the kept size fits ``cap``.

    ``remark(evicted)`` marks the repository again with those manifests no roots; returns the evicted
    set and the final marking.
    """
    if kept_size(marking) <= cap:
        return set(), marking
    inner: set[Digest] = set()
    for digest in marking.kept:
        doc = marking.documents.get(digest)
        if doc is not None:
            inner.update(doc.children)
            if doc.subject is not None and doc.subject in marking.kept:
                inner.add(digest)  # a referrer goes with its subject
    tagged = {info.digest: info.pushed_ns for info in inventory.tags.values() if info.digest is not None}

    def pushed(digest: Digest) -> int:
        return max(inventory.revisions.get(digest, 0), tagged.get(digest, 0))

    top = [d for d in marking.kept if d not in inner]
    newest = max(top, key=lambda d: (pushed(d), str(d)), default=None)
    order = sorted((d for d in top if d != newest), key=lambda d: (max(inventory.pulls.get(d, 0), pushed(d)), str(d)))
    evicted: set[Digest] = set()
    for digest in order:
        evicted.add(digest)
        marking = remark(evicted)
        if kept_size(marking) <= cap:
            break
    return evicted, marking
