"""The referrers of a manifest (OCI 1.1), derived from the stored manifests themselves.

No extra state is written, so a root written by registry:2 (which has no referrers API) answers
correctly. Manifests are immutable by digest, so what each one says about itself is parsed once
per process and cached; a query only lists the repository's revisions.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from storage import links, mediatypes, paths, tags
from storage.digest import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.names import Name


@dataclass(frozen=True, slots=True)
class Summary:
    """What a manifest contributes to a referrers listing."""

    subject: str | None
    media_type: str
    artifact_type: str | None
    size: int
    annotations: dict[str, str] | None


class SummaryCache:
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._items: OrderedDict[Digest, Summary] = OrderedDict()

    def get(self, digest: Digest) -> Summary | None:
        return self._items.get(digest)

    def put(self, digest: Digest, summary: Summary) -> None:
        self._items[digest] = summary
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


def summarize(body: bytes) -> Summary:
    document = mediatypes.json_object(body)
    subject = _get(document, "subject", "digest")
    artifact_type = document.get("artifactType")
    if not isinstance(artifact_type, str):
        # The spec: an image manifest without artifactType is listed under its config's media type.
        artifact_type = _get(document, "config", "mediaType")
    annotations = document.get("annotations")
    if not (isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())):
        annotations = None
    return Summary(subject, mediatypes.detect(document), artifact_type, len(body), annotations)


def _get(document: dict[str, Any], key: str, field: str) -> str | None:
    value = document.get(key)
    if isinstance(value, dict) and isinstance(value.get(field), str):
        result: str = value[field]
        return result
    return None


async def revision_digests(driver: StorageDriver, name: Name) -> list[Digest]:
    """Live revisions: a deleted manifest leaves its directory behind, without the link file."""
    candidates = await links.digests_under(driver, paths.manifest_revisions(name))
    found = await driver.stat_many([paths.manifest_revision_link(name, d) for d in candidates])
    return [digest for digest, link in zip(candidates, found, strict=True) if link is not None]


async def _document(driver: StorageDriver, digest: Digest) -> bytes | None:
    try:
        return await driver.get_content(paths.blob_data(digest))
    except PathNotFound:
        return None


async def find(
    driver: StorageDriver, name: Name, subject: Digest, cache: SummaryCache, artifact_type: str | None = None
) -> list[dict[str, Any]]:
    """Descriptors of the manifests in ``name`` whose ``subject`` is ``subject``, sorted by digest."""
    wanted = str(subject)
    result: list[dict[str, Any]] = []
    for digest in sorted(await revision_digests(driver, name), key=str):
        summary = cache.get(digest)
        if summary is None:
            body = await _document(driver, digest)
            if body is None:
                continue
            summary = summarize(body)
            cache.put(digest, summary)
        if summary.subject != wanted:
            continue
        if artifact_type is not None and summary.artifact_type != artifact_type:
            continue
        descriptor: dict[str, Any] = {"mediaType": summary.media_type, "digest": str(digest), "size": summary.size}
        if summary.artifact_type:
            descriptor["artifactType"] = summary.artifact_type
        if summary.annotations:
            descriptor["annotations"] = summary.annotations
        result.append(descriptor)
    seen = {d["digest"] for d in result}
    return result + await _from_fallback_tag(driver, name, subject, seen, artifact_type)


# What a tag may not hold (its grammar: [A-Za-z0-9_][A-Za-z0-9._-]{0,127})
_NOT_IN_TAGS: Final = re.compile(r"[^A-Za-z0-9_.-]")


def fallback_tag(subject: Digest) -> str:
    """The spec's referrers tag of ``subject``: its algorithm cut to 32 characters, "-", its encoded
    part cut to 64, anything a tag may not hold made "-" (a sha512 subject's is ``sha512-`` and the
    first 64 hex digits: the whole 128 would be no tag)."""
    return _NOT_IN_TAGS.sub("-", f"{subject.algorithm[:32]}-{subject.hex[:64]}")


async def _from_fallback_tag(
    driver: StorageDriver, name: Name, subject: Digest, seen: set[str], artifact_type: str | None
) -> list[dict[str, Any]]:
    """Descriptors from a client-maintained ``<alg>-<hex>`` tag index (the spec's tag schema), which
    a registry offering the API must include."""
    digest = await tags.resolve(driver, name, fallback_tag(subject))
    if digest is None:
        return []
    document = mediatypes.json_object(await _document(driver, digest))
    entries = document.get("manifests")
    found: list[dict[str, Any]] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str) or entry["digest"] in seen:
            continue
        if artifact_type is not None and entry.get("artifactType") != artifact_type:
            continue
        seen.add(entry["digest"])
        found.append(entry)
    return found
