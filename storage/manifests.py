"""Manifests: validated on PUT, stored byte-exact in the blob store, linked as repository revisions.

Nothing about a manifest is stored except its bytes (as in registry:2): the media type is read back
from the JSON on every GET.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pydantic import ValidationError

from storage import blobs, links, mediatypes, paths, tags
from storage.digest import CANONICAL, Digest
from storage.driver import FileInfo, PathNotFound, StorageDriver
from storage.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    StorageError,
)
from storage.gc.touch import Observer
from storage.names import Name, is_tag
from storage.schema import Descriptor, ImageManifest, Index, first_error

MAX_SIZE = 4 * 1024 * 1024  # registry:2's maxManifestBodySize
# A \u escape of a UTF-16 surrogate: the only way a lone surrogate gets into a decoded string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: Digest
    media_type: str
    body: bytes
    subject: Digest | None = None


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest reference: exactly one of tag and digest is set."""

    tag: str | None
    digest: Digest | None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Raises ManifestUnknown when ``text`` is neither a tag nor a digest (GET/HEAD semantics)."""
        if is_tag(text):
            return cls(text, None)
        try:
            return cls(None, Digest.parse(text))
        except StorageError:
            raise ManifestUnknown("manifest unknown", {"reference": text[:200]}) from None


class BodyCache:
    """Manifest bytes and media types by digest, for one process: what a GET would read and parse again.

    Correct across processes because a digest names its bytes: whatever wrote ``blobs/<digest>/data``
    (this worker, another one, registry:2) wrote these very bytes, which are checked against the digest
    before they are kept. Only the bytes are cached, never existence: every read still stats the
    repository's revision link and the blob's data (one call, the stat the read needed anyway), so a
    deleted or collected manifest stops being served at once, and a data file whose size is not the
    cached body's is read again.
    """

    MAX_BODY = 256 << 10
    MAX_BYTES = 4 << 20  # per process: a few hundred typical manifests, well inside the memory budget

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[Digest, tuple[bytes, str]] = OrderedDict()

    def get(self, digest: Digest, size: int) -> tuple[bytes, str] | None:
        item = self._items.get(digest)
        if item is None or len(item[0]) != size:
            return None
        self._items.move_to_end(digest)
        return item

    def put(self, digest: Digest, body: bytes, media_type: str) -> None:
        if len(body) > self.MAX_BODY or digest in self._items or Digest.of_bytes(body, digest.algorithm) != digest:
            return
        self._items[digest] = (body, media_type)
        self._bytes += len(body)
        while self._bytes > self._max_bytes:
            _, (dropped, _) = self._items.popitem(last=False)
            self._bytes -= len(dropped)


async def read(
    driver: StorageDriver,
    observer: Observer,
    name: Name,
    ref: Reference,
    cache: BodyCache | None = None,
    tag_links: links.LinkCache | None = None,
) -> Manifest:
    digest, revision, data = await _locate(driver, name, ref, tag_links)
    if digest is None:
        raise _unknown(ref)
    data_path = paths.blob_data(digest)
    if revision is None or data is None or data.is_dir:
        raise _unknown(ref)
    cached = cache.get(digest, data.size) if cache is not None else None
    if cached is not None:
        body, media_type = cached
    else:
        try:
            body = await driver.get_content(data_path, MAX_SIZE)
        except PathNotFound:
            raise _unknown(ref) from None
        media_type = media_type_of(body)
        if cache is not None:
            cache.put(digest, body, media_type)
    await observer.pulled(name, digest)
    return Manifest(digest, media_type, body)


async def _locate(
    driver: StorageDriver, name: Name, ref: Reference, tag_links: links.LinkCache | None
) -> tuple[Digest | None, FileInfo | None, FileInfo | None]:
    """The manifest's digest, with stats of its revision link and its data (None, None, None: no tag)."""
    digest = ref.digest
    if digest is None:
        if tag_links is None:
            digest = await tags.resolve(driver, name, ref.tag or "")
        else:
            tag_path = paths.tag_current_link(name, ref.tag or "")
            guess = tag_links.guess(tag_path)
            if guess is not None:
                # One round of stats: the tag link (unchanged?) and what it named when last read.
                tag, revision, data = await driver.stat_many(
                    [tag_path, paths.manifest_revision_link(name, guess), paths.blob_data(guess)]
                )
                if tag_links.confirmed(tag_path, tag) == guess:
                    return guess, revision, data
            digest = await tag_links.read(driver, tag_path)
        if digest is None:
            return None, None, None
    revision, data = await driver.stat_many([paths.manifest_revision_link(name, digest), paths.blob_data(digest)])
    return digest, revision, data


def _unknown(ref: Reference) -> ManifestUnknown:
    return ManifestUnknown("manifest unknown", {"reference": ref.tag or str(ref.digest)})


def media_type_of(body: bytes) -> str:
    return mediatypes.detect(mediatypes.json_object(body))


async def write(
    driver: StorageDriver,
    observer: Observer,
    name: Name,
    ref: Reference,
    body: bytes,
    content_type: str | None,
    *,
    create_only: bool = False,
) -> Manifest:
    """Validate and store a manifest; link it as a revision and, for a tag, point the tag at it.

    What it references is touched and verified first (``storage.gc.touch``): a blob or child that
    garbage collection removed meanwhile is MANIFEST_BLOB_UNKNOWN, and the client pushes it again.
    The manifest itself is stored, linked and tagged under its own shared stripe, with its revision
    link's mtime refreshed: that mtime is its push time, and the collector's re-check.
    """
    if len(body) > MAX_SIZE:
        raise ManifestTooLarge("manifest too large", {"size": len(body), "max": MAX_SIZE})
    document = _parse(body)
    media_type = _media_type(document, content_type)
    digest = Digest.of_bytes(body, ref.digest.algorithm if ref.digest else CANONICAL)
    if ref.digest is not None and ref.digest != digest:
        raise DigestInvalid(
            "manifest digest does not match the reference", {"expected": str(ref.digest), "actual": str(digest)}
        )
    subject = await _validate(driver, observer, name, media_type, document)

    revision = paths.manifest_revision_link(name, digest)
    async with observer.held(digest):
        data, linked = await driver.stat_many([paths.blob_data(digest), revision])
        if data is None:
            await driver.put_content(paths.blob_data(digest), body)
        elif not observer.fresh(data):
            await observer.touch_held(digest)
        if linked is None:
            await links.write(driver, revision, digest)
        else:
            await observer.refresh(revision, linked)
        if ref.tag is not None:
            # create_only refused (TagExists) leaves the manifest stored, untagged, as registry:2 does
            # for a push whose tag step fails
            await tags.point(driver, name, ref.tag, digest, create_only=create_only)
            # A re-push of the same tag rewrites nothing: its link's mtime still records this push.
            await observer.refresh(paths.tag_current_link(name, ref.tag))
    return Manifest(digest, media_type, body, subject)


async def delete(driver: StorageDriver, observer: Observer, name: Name, ref: Reference) -> list[str]:
    """By tag: remove the tag only. By digest: remove the revision and every tag pointing at it; the
    tags removed.

    By digest it holds the manifest's stripe exclusively, as a sweep does: a PUT of the same manifest
    (which links it and points its tag under the shared stripe) ends wholly before or wholly after
    it, never with a tag pointing at a removed revision. A tag is removed only if it still points at
    the digest under the tag lock: one moved to another manifest meanwhile stays.
    """
    if ref.tag is not None:
        await tags.remove(driver, name, ref.tag)
        return []
    assert ref.digest is not None
    async with observer.held(ref.digest, shared=False):
        # registry:2 removes only the link file and leaves the directory.
        try:
            await driver.delete(paths.manifest_revision_link(name, ref.digest))
        except PathNotFound:
            raise ManifestUnknown("manifest unknown", {"digest": str(ref.digest)}) from None
        return [
            tag
            for tag in await tags.pointing_at(driver, name, ref.digest)
            if await tags.untag(driver, name, tag, ref.digest)
        ]


def _parse(body: bytes) -> dict[str, Any]:
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads would also take UTF-16 and UTF-32 bytes.
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestInvalid("manifest is not UTF-8 encoded JSON", {"reason": str(exc)}) from None
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise ManifestInvalid("manifest is not valid JSON", {"reason": str(exc)[:200]}) from None
    except RecursionError:
        raise ManifestInvalid("manifest is nested too deeply") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    # json.loads lets a lone surrogate through; such a string cannot be encoded again, and every
    # JSON response that would carry it (referrers, error details, inspect) would fail for good.
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(document):
        raise ManifestInvalid("manifest is not valid JSON: a string holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)")
    return document


def _no_constant(name: str) -> NoReturn:
    # Python's json extension: NaN and Infinity are no JSON numbers (RFC 8259), and could not be served again.
    raise ManifestInvalid("manifest is not valid JSON: NaN and Infinity are not JSON numbers", {"constant": name})


def _has_lone_surrogate(document: dict[str, Any]) -> bool:
    pending: list[Any] = [document]  # a stack, not recursion: the document may nest deeply
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    header = mediatypes.base(content_type)
    if header in ("application/octet-stream", "application/json"):
        header = None  # generic types say nothing about the manifest's kind
    if document.get("schemaVersion") == 1 or declared in mediatypes.SCHEMA1 or header in mediatypes.SCHEMA1:
        raise ManifestInvalid(
            "Docker image manifest schema 1 is not supported: push with a current client (schema 2 or OCI)",
            {"mediaType": declared or header},
        )
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    if declared and header and declared != header:
        raise ManifestInvalid(
            "Content-Type does not match the manifest's mediaType", {"contentType": header, "mediaType": declared}
        )
    detected = mediatypes.detect(document)
    media_type = declared or header or detected
    if media_type not in mediatypes.MANIFESTS:
        raise ManifestInvalid("unsupported manifest media type", {"mediaType": media_type})
    # A GET serves the type read back from the JSON (mediatypes.detect): a type that only the
    # Content-Type gave would have the body validated as one kind and served as another
    # (CVE-2021-41190). registry:2 requires the mediaType of both Docker types likewise.
    if media_type != detected:
        raise ManifestInvalid(
            f"a manifest without mediaType is served as {detected}: declare mediaType {media_type}",
            {"contentType": media_type, "detected": detected},
        )
    return media_type


async def _validate(
    driver: StorageDriver, observer: Observer, name: Name, media_type: str, document: dict[str, Any]
) -> Digest | None:
    """Check the document's shape and that what it references exists; return its subject digest.

    Nothing is written until every check has passed (inline blobs last): a refused PUT leaves no trace.
    """
    parsed: Index | ImageManifest
    try:
        # As registry:2 (>= 2.8): no field of the other kind, so that no body is both (CVE-2021-41190).
        if media_type in mediatypes.INDEXES:
            _refuse_fields(document, ("config", "layers"), "an index")
            parsed = Index.model_validate(document)
        else:
            _refuse_fields(document, ("manifests",), "an image manifest")
            parsed = ImageManifest.model_validate(document)
    except ValidationError as exc:
        raise ManifestInvalid("manifest invalid", first_error(exc)) from None
    except RecursionError:
        raise ManifestInvalid("manifest is nested too deeply") from None
    # The subject need not exist yet (OCI 1.1: referrers may be pushed before what they refer to).
    subject = _descriptor_digest(parsed.subject) if parsed.subject is not None else None
    if isinstance(parsed, Index):
        await _require_children(driver, observer, name, parsed.manifests)
    else:
        pushed = [layer for layer in parsed.layers if not _fetched_from_urls(layer)]
        await _require_blobs(driver, observer, name, [parsed.config, *pushed])
    return subject


def _refuse_fields(document: dict[str, Any], fields: tuple[str, ...], kind: str) -> None:
    # null counts as absent, as for registry:2's omitempty fields.
    present = [field for field in fields if document.get(field) is not None]
    if present:
        raise ManifestInvalid(f"{kind} must not have {' or '.join(fields)}", {"fields": present})


def _fetched_from_urls(layer: Descriptor) -> bool:
    """A non-distributable layer with URLs, which clients download from there; registry:2's rules for the URLs."""
    if layer.mediaType not in mediatypes.NON_DISTRIBUTABLE or not layer.urls:
        return False
    _descriptor_digest(layer)  # not looked up, but still a valid digest, as registry:2 checks
    for url in layer.urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or parts.fragment:
            raise ManifestInvalid(
                "a layer URL must be http or https, without a fragment",
                {"digest": layer.digest[:200], "url": url[:200]},
            )
    return True


def _descriptor_digest(descriptor: Descriptor) -> Digest:
    try:
        return Digest.parse(descriptor.digest)
    except StorageError as exc:
        raise ManifestInvalid(
            "invalid digest in descriptor", {"digest": descriptor.digest[:200], "reason": exc.message}
        ) from None


async def _require_blobs(driver: StorageDriver, observer: Observer, name: Name, descriptors: list[Descriptor]) -> None:
    wanted = [(d, _descriptor_digest(d)) for d in descriptors]
    checks = [p for _, digest in wanted for p in (paths.layer_link(name, digest), paths.blob_data(digest))]
    found = await driver.stat_many(checks)
    inlined: dict[Digest, bytes] = {}
    for i, (descriptor, digest) in enumerate(wanted):
        link, data = found[2 * i], found[2 * i + 1]
        if link is not None and data is not None and await observer.confirm(digest, data):
            continue
        inline = _inline_data(descriptor, digest)
        if inline is None:
            raise ManifestBlobUnknown("blob unknown to registry", {"digest": str(digest)})
        inlined[digest] = inline
    for digest, inline in inlined.items():
        await blobs.put_small(driver, observer, name, digest, inline)


async def _require_children(
    driver: StorageDriver, observer: Observer, name: Name, descriptors: list[Descriptor]
) -> None:
    # registry:2 accepts a child that is a revision *or* a layer of the repository; BuildKit's
    # legacy cache index lists layer blobs as "manifests" and relies on it.
    digests = [_descriptor_digest(d) for d in descriptors]
    checks = [
        p
        for digest in digests
        for p in (paths.manifest_revision_link(name, digest), paths.layer_link(name, digest), paths.blob_data(digest))
    ]
    found = await driver.stat_many(checks)
    for i, digest in enumerate(digests):
        revision, layer, data = found[3 * i : 3 * i + 3]
        if data is not None and (revision is not None or layer is not None) and await observer.confirm(digest, data):
            continue
        raise ManifestBlobUnknown("manifest unknown to the repository", {"digest": str(digest)})


def _inline_data(descriptor: Descriptor, digest: Digest) -> bytes | None:
    """The descriptor's embedded ``data`` when it decodes and matches its digest and size."""
    if descriptor.data is None:
        return None
    try:
        data = base64.b64decode(descriptor.data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) != descriptor.size or Digest.of_bytes(data, digest.algorithm) != digest:
        return None
    return data
