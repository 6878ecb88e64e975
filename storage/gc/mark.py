"""Mark: what a repository keeps, and every digest it needs (operations.md §1.3, step 2).

Roots are every tag (``sha256-<hex>`` referrers fallback tags included: they are tags) and every
revision pushed within the grace period; untagged revisions too unless untagged manifests are
deleted. From the roots the mark follows configs, layers and index children (a child that is no
revision of the repository, like the layer blobs of BuildKit's legacy cache index, is marked as a
blob), and from every kept manifest its referrers: a manifest whose ``subject`` is kept is kept.
An untagged referrer whose subject is gone is no root when ``orphan_referrers`` is on, so it goes
once its grace period is over, even where untagged manifests are otherwise kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from typing import Any

from storage import paths
from storage.digest import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.errors import StorageError
from storage.gc.inventory import Inventory
from storage.manifests import MAX_SIZE


@dataclass(frozen=True, slots=True)
class Document:
    """What a stored manifest references."""

    blobs: tuple[Digest, ...]  # config and layers
    children: tuple[Digest, ...]  # index manifests[]
    subject: Digest | None
    size: int  # of the manifest itself
    blob_sizes: tuple[int, ...] = ()  # the descriptors' sizes, parallel to blobs + children

    def references(self) -> Iterator[tuple[Digest, int]]:
        """Each blob and child with the size its descriptor declares (as the pushing client sent it)."""
        return zip((*self.blobs, *self.children), self.blob_sizes, strict=False)


@dataclass(frozen=True, slots=True)
class Rules:
    cutoff_ns: int  # T0 - grace: anything newer is kept
    delete_untagged: bool
    orphan_referrers: bool


@dataclass(slots=True)
class Marking:
    """One repository's outcome."""

    kept: set[Digest] = field(default_factory=set)  # manifests kept
    doomed: list[Digest] = field(default_factory=list)  # revisions to delete
    dangling: list[Digest] = field(default_factory=list)  # revisions whose manifest is not stored
    needs: set[Digest] = field(default_factory=set)  # every digest the kept manifests need
    documents: dict[Digest, Document] = field(default_factory=dict)


def _digest(value: Any) -> Digest | None:
    if isinstance(value, dict) and isinstance(value.get("digest"), str):
        try:
            return Digest.parse(value["digest"])
        except StorageError:
            return None
    return None


def _size(value: Any) -> int:
    size = value.get("size") if isinstance(value, dict) else None
    return size if isinstance(size, int) and size >= 0 else 0


def parse(body: bytes) -> Document:
    """A stored manifest's references; an unreadable one references nothing."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        return Document((), (), None, len(body))
    config = document.get("config")
    layers = document.get("layers")
    manifests = document.get("manifests")
    blob_descriptors = [config, *(layers if isinstance(layers, list) else [])]
    child_descriptors = manifests if isinstance(manifests, list) else []
    blobs = [(d, _size(x)) for x in blob_descriptors if (d := _digest(x)) is not None]
    children = [(d, _size(x)) for x in child_descriptors if (d := _digest(x)) is not None]
    return Document(
        tuple(d for d, _ in blobs),
        tuple(d for d, _ in children),
        _digest(document.get("subject")),
        len(body),
        tuple(s for _, s in blobs + children),
    )


async def load(driver: StorageDriver, digest: Digest) -> Document | None:
    try:
        body = await driver.get_content(paths.blob_data(digest), MAX_SIZE)
    except PathNotFound:
        return None
    return parse(body[:MAX_SIZE])


async def documents(driver: StorageDriver, inventory: Inventory) -> dict[Digest, Document | None]:
    """Every revision's document (None when its manifest is not stored), and every tagged digest's."""
    wanted = set(inventory.revisions) | {t.digest for t in inventory.tags.values() if t.digest is not None}
    return {digest: await load(driver, digest) for digest in sorted(wanted, key=str)}


def mark(
    inventory: Inventory,
    docs: dict[Digest, Document | None],
    rules: Rules,
    evicted: Set[Digest] = frozenset(),
) -> Marking:
    """``evicted`` (by a size cap) are no roots, whatever tags or grace say."""
    result = Marking()
    tagged = inventory.tagged()
    referrers: dict[Digest, list[Digest]] = {}
    for digest, doc in docs.items():
        if doc is not None:
            result.documents[digest] = doc
            if doc.subject is not None:
                referrers.setdefault(doc.subject, []).append(digest)

    roots: list[Digest] = [d for d in tagged if d not in evicted]
    for digest, pushed in inventory.revisions.items():
        doc = docs.get(digest)
        if digest in evicted:
            continue
        if digest in tagged or pushed >= rules.cutoff_ns:
            roots.append(digest)
        elif doc is not None and doc.subject is not None and rules.orphan_referrers:
            continue  # kept only through its subject (or as a child)
        elif not rules.delete_untagged:
            roots.append(digest)

    stack = roots
    while stack:
        digest = stack.pop()
        if digest in result.kept:
            continue
        result.kept.add(digest)
        result.needs.add(digest)
        doc = result.documents.get(digest)
        if doc is None:
            continue
        result.needs.update(doc.blobs)
        for child in doc.children:
            result.needs.add(child)
            if child in inventory.revisions:
                stack.append(child)
        stack.extend(referrers.get(digest, ()))

    for digest in inventory.revisions:
        if docs.get(digest) is None:
            result.dangling.append(digest)
        elif digest not in result.kept:
            result.doomed.append(digest)
    return result


def sizes(marking: Marking) -> dict[Digest, int]:
    """Every digest the repository needs, with its size, without I/O: a kept manifest's is its body's
    length, a blob's (or child's) the first descriptor's naming it, as the pushing client declared it."""
    found: dict[Digest, int] = {}
    for digest in marking.kept:
        doc = marking.documents.get(digest)
        if doc is None:
            continue
        found[digest] = doc.size
        for blob, blob_size in doc.references():
            found.setdefault(blob, blob_size)
    return found
