"""Manifest media types and how a stored manifest's type is recognised (registry:2's rules)."""

from __future__ import annotations

import json
from typing import Any

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

IMAGE_MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEXES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
SCHEMA1 = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
MANIFESTS = IMAGE_MANIFESTS | INDEXES
# Layers that clients download from the descriptor's ``urls``: the only blobs a manifest may
# reference without pushing them (registry:2's foreign and non-distributable layers).
NON_DISTRIBUTABLE = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


def json_object(data: bytes | None) -> dict[str, Any]:
    """A stored document as a JSON object; empty when it is missing, not JSON, or not an object."""
    try:
        value = json.loads(data) if data else None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return {}
    return value if isinstance(value, dict) else {}


def detect(document: dict[str, Any]) -> str:
    """The media type of a stored manifest: its ``mediaType``, else guessed as registry:2 does."""
    media_type = document.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    if document.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1_SIGNED
    if document.get("manifests") is not None:
        return OCI_INDEX
    return OCI_MANIFEST


def base(content_type: str | None) -> str | None:
    """``type/subtype`` of a Content-Type header, without parameters."""
    if content_type is None:
        return None
    value = content_type.split(";", 1)[0].strip().lower()
    return value or None
