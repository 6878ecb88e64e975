"""registry:2's on-disk tree, one function per path spec (distribution ``registry/storage/paths.go``).

::

    <root>/docker/registry/v2/
      blobs/<alg>/<hex[:2]>/<hex>/data                       blob_data   (layers, configs AND manifests)
      repositories/<name>/
        _layers/<alg>/<hex>/link                             layer_link
        _manifests/revisions/<alg>/<hex>/link                manifest_revision_link
        _manifests/tags/<tag>/current/link                   tag_current_link
        _manifests/tags/<tag>/index/<alg>/<hex>/link         tag_index_link (the tag's history)
        _uploads/<id>/data                                   upload_data
        _uploads/<id>/startedat                              upload_started_at

    <root>/kura/                                             Kura's own state (registry:2 never looks here)
      locks/<kind>/<xx>                                      lock_stripe (advisory locks shared by all workers)
      notifications/<endpoint>/                              notification_spool (storage.spool)

Link files hold exactly ``<alg>:<hex>`` with no newline. Paths are relative to the storage driver's
root. Callers validate names, tags, digests and upload ids before they get here (``storage.names``);
this module only joins strings.
"""

from __future__ import annotations

import hashlib
import posixpath

from storage.digest import Digest

join = posixpath.join


V2 = "docker/registry/v2"
KURA = "kura"
BLOBS = f"{V2}/blobs"
REPOSITORIES = f"{V2}/repositories"


def lock_stripe(kind: str, key: str) -> str:
    """One of 256 lock files for ``kind``; unrelated keys may share one, which only serialises them."""
    stripe = hashlib.sha256(key.encode()).hexdigest()[:2]
    return join(KURA, "locks", kind, stripe)


def notification_spool(endpoint: str) -> str:
    return join(KURA, "notifications", endpoint)


def blob_dir(digest: Digest) -> str:
    return join(BLOBS, digest.algorithm, digest.hex[:2], digest.hex)


# The per-request paths below are formatted directly: the string posixpath.join builds when every
# part is one plain segment or more (not empty, no leading or trailing "/"), as validated names, tags
# and digests are; anything else takes join itself, so the result is the same for every input.
def _plain(part: str) -> bool:
    return part != "" and part[0] != "/" and part[-1] != "/"


def blob_data(digest: Digest) -> str:
    if _plain(digest.algorithm) and _plain(digest.hex):
        return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"
    return join(blob_dir(digest), "data")


def repository(name: str) -> str:
    if _plain(name):
        return f"{REPOSITORIES}/{name}"
    return join(REPOSITORIES, name)


def layers(name: str) -> str:
    return join(repository(name), "_layers")


def layer_link(name: str, digest: Digest) -> str:
    if _plain(name) and _plain(digest.algorithm) and _plain(digest.hex):
        return f"{REPOSITORIES}/{name}/_layers/{digest.algorithm}/{digest.hex}/link"
    return join(layers(name), digest.algorithm, digest.hex, "link")


def manifests(name: str) -> str:
    if _plain(name):
        return f"{REPOSITORIES}/{name}/_manifests"
    return join(repository(name), "_manifests")


def manifest_revisions(name: str) -> str:
    return join(manifests(name), "revisions")


def manifest_revision_link(name: str, digest: Digest) -> str:
    if _plain(name) and _plain(digest.algorithm) and _plain(digest.hex):
        return f"{REPOSITORIES}/{name}/_manifests/revisions/{digest.algorithm}/{digest.hex}/link"
    return join(manifest_revisions(name), digest.algorithm, digest.hex, "link")


def tags(name: str) -> str:
    if _plain(name):
        return f"{REPOSITORIES}/{name}/_manifests/tags"
    return join(manifests(name), "tags")


def tag_dir(name: str, tag: str) -> str:
    return join(tags(name), tag)


def tag_current_link(name: str, tag: str) -> str:
    if _plain(name) and _plain(tag):
        return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}/current/link"
    return join(tag_dir(name, tag), "current", "link")


def tag_index_link(name: str, tag: str, digest: Digest) -> str:
    return join(tag_dir(name, tag), "index", digest.algorithm, digest.hex, "link")


def uploads(name: str) -> str:
    return join(repository(name), "_uploads")


def upload(name: str, upload_id: str) -> str:
    return join(uploads(name), upload_id)


def upload_data(name: str, upload_id: str) -> str:
    return join(upload(name, upload_id), "data")


def upload_started_at(name: str, upload_id: str) -> str:
    return join(upload(name, upload_id), "startedat")
