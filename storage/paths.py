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

Link files hold exactly ``<alg>:<hex>`` with no newline. Callers validate names, tags, digests and
upload ids before they get here; this module only joins strings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from storage.digest import Digest


@dataclass(frozen=True, slots=True)
class Paths:
    root: str

    @property
    def v2(self) -> str:
        return os.path.join(self.root, "docker", "registry", "v2")

    @property
    def blobs(self) -> str:
        return os.path.join(self.v2, "blobs")

    @property
    def repositories(self) -> str:
        return os.path.join(self.v2, "repositories")

    def blob_dir(self, digest: Digest) -> str:
        return os.path.join(self.blobs, digest.algorithm, digest.hex[:2], digest.hex)

    def blob_data(self, digest: Digest) -> str:
        return os.path.join(self.blob_dir(digest), "data")

    def repository(self, name: str) -> str:
        return os.path.join(self.repositories, name)

    def layers(self, name: str) -> str:
        return os.path.join(self.repository(name), "_layers")

    def layer_link(self, name: str, digest: Digest) -> str:
        return os.path.join(self.layers(name), digest.algorithm, digest.hex, "link")

    def manifests(self, name: str) -> str:
        return os.path.join(self.repository(name), "_manifests")

    def manifest_revisions(self, name: str) -> str:
        return os.path.join(self.manifests(name), "revisions")

    def manifest_revision_link(self, name: str, digest: Digest) -> str:
        return os.path.join(self.manifest_revisions(name), digest.algorithm, digest.hex, "link")

    def tags(self, name: str) -> str:
        return os.path.join(self.manifests(name), "tags")

    def tag(self, name: str, tag: str) -> str:
        return os.path.join(self.tags(name), tag)

    def tag_current_link(self, name: str, tag: str) -> str:
        return os.path.join(self.tag(name, tag), "current", "link")

    def tag_index_link(self, name: str, tag: str, digest: Digest) -> str:
        return os.path.join(self.tag(name, tag), "index", digest.algorithm, digest.hex, "link")

    def uploads(self, name: str) -> str:
        return os.path.join(self.repository(name), "_uploads")

    def upload(self, name: str, upload_id: str) -> str:
        return os.path.join(self.uploads(name), upload_id)

    def upload_data(self, name: str, upload_id: str) -> str:
        return os.path.join(self.upload(name, upload_id), "data")

    def upload_started_at(self, name: str, upload_id: str) -> str:
        return os.path.join(self.upload(name, upload_id), "startedat")
