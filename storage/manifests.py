"""Manifests: validated on PUT, stored byte-exact in the blob store, linked as repository revisions.

Nothing about a manifest is stored except its bytes (as in registry:2): the media type is read back
from the JSON on every GET.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from storage import blobs, fs, mediatypes, tags
from storage.digest import CANONICAL, Digest
from storage.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    StorageError,
)
from storage.names import is_tag
from storage.paths import Paths
from storage.schema import Descriptor, ImageManifest, Index, first_error

MAX_SIZE = 4 * 1024 * 1024  # registry:2's maxManifestBodySize


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


def read(paths: Paths, name: str, ref: Reference) -> Manifest:
    digest = ref.digest if ref.digest is not None else tags.resolve(paths, name, ref.tag or "")
    if digest is None or not fs.exists(paths.manifest_revision_link(name, digest)):
        raise ManifestUnknown("manifest unknown", {"reference": ref.tag or str(ref.digest)})
    try:
        with open(paths.blob_data(digest), "rb") as f:
            body = f.read(MAX_SIZE + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise ManifestUnknown("manifest unknown", {"reference": str(digest)}) from None
    return Manifest(digest, media_type_of(body), body)


def media_type_of(body: bytes) -> str:
    return mediatypes.detect(mediatypes.json_object(body))


def write(paths: Paths, name: str, ref: Reference, body: bytes, content_type: str | None) -> Manifest:
    """Validate and store a manifest; link it as a revision and, for a tag, point the tag at it."""
    if len(body) > MAX_SIZE:
        raise ManifestTooLarge("manifest too large", {"size": len(body), "max": MAX_SIZE})
    document = _parse(body)
    media_type = _media_type(document, content_type)
    digest = Digest.of_bytes(body, ref.digest.algorithm if ref.digest else CANONICAL)
    if ref.digest is not None and ref.digest != digest:
        raise DigestInvalid(
            "manifest digest does not match the reference", {"expected": str(ref.digest), "actual": str(digest)}
        )
    subject = _validate(paths, name, media_type, document)

    blob = paths.blob_data(digest)
    if not fs.exists(blob):
        fs.write_atomic(blob, body)
    revision = paths.manifest_revision_link(name, digest)
    if fs.read_link(revision) != digest:
        fs.write_link(revision, digest)
    if ref.tag is not None:
        tags.point(paths, name, ref.tag, digest)
    return Manifest(digest, media_type, body, subject)


def delete(paths: Paths, name: str, ref: Reference) -> None:
    """By tag: remove the tag only. By digest: remove the revision and every tag pointing at it."""
    if ref.tag is not None:
        tags.remove(paths, name, ref.tag)
        return
    assert ref.digest is not None
    # registry:2 removes only the link file and leaves the directory.
    if not fs.remove(paths.manifest_revision_link(name, ref.digest)):
        raise ManifestUnknown("manifest unknown", {"digest": str(ref.digest)})
    for tag in tags.pointing_at(paths, name, ref.digest):
        tags.remove(paths, name, tag)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ManifestInvalid("manifest is not valid JSON", {"reason": str(exc)}) from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    return document


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
    media_type = declared or header or mediatypes.detect(document)
    if media_type not in mediatypes.MANIFESTS:
        raise ManifestInvalid("unsupported manifest media type", {"mediaType": media_type})
    return media_type


def _validate(paths: Paths, name: str, media_type: str, document: dict[str, Any]) -> Digest | None:
    """Check the document's shape and that what it references exists; return its subject digest."""
    try:
        if media_type in mediatypes.INDEXES:
            index = Index.model_validate(document)
            for child in index.manifests:
                _require_child(paths, name, child)
            subject = index.subject
        else:
            manifest = ImageManifest.model_validate(document)
            if media_type == mediatypes.DOCKER_MANIFEST and manifest.mediaType is None:
                raise ManifestInvalid("a Docker schema 2 manifest must declare its mediaType")
            for descriptor in [manifest.config, *manifest.layers]:
                _require_blob(paths, name, descriptor)
            subject = manifest.subject
    except ValidationError as exc:
        raise ManifestInvalid("manifest invalid", first_error(exc)) from None
    # The subject need not exist yet (OCI 1.1: referrers may be pushed before what they refer to).
    return _descriptor_digest(subject) if subject is not None else None


def _descriptor_digest(descriptor: Descriptor) -> Digest:
    try:
        return Digest.parse(descriptor.digest)
    except StorageError as exc:
        raise ManifestInvalid(
            "invalid digest in descriptor", {"digest": descriptor.digest[:200], "reason": exc.message}
        ) from None


def _require_blob(paths: Paths, name: str, descriptor: Descriptor) -> None:
    digest = _descriptor_digest(descriptor)
    if descriptor.urls:
        return  # non-distributable layer: fetched from its URLs, need not be here
    if blobs.linked(paths, name, digest) and blobs.stored_size(paths, digest) is not None:
        return
    inline = _inline_data(descriptor, digest)
    if inline is not None:
        blobs.put_small(paths, name, digest, inline)
        return
    raise ManifestBlobUnknown("blob unknown to registry", {"digest": str(digest)})


def _require_child(paths: Paths, name: str, descriptor: Descriptor) -> None:
    digest = _descriptor_digest(descriptor)
    # registry:2 accepts a child that is a revision *or* a layer of the repository; BuildKit's
    # legacy cache index lists layer blobs as "manifests" and relies on it.
    if fs.exists(paths.manifest_revision_link(name, digest)):
        return
    if blobs.linked(paths, name, digest) and blobs.stored_size(paths, digest) is not None:
        return
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
