"""BuildKit-shaped content built in Python: images, attestations (both encodings) and registry caches.

Serialisation follows BuildKit's Go encoders byte for byte: manifests and indexes are
``json.MarshalIndent(v, "", "  ")`` in struct field order; image configs are compact with sorted
top-level keys; attestation configs and in-toto statements are compact. Each function returns the
blobs (digest -> bytes) and manifests it made, so they can be pushed children first.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

from storage import mediatypes

IN_TOTO = "application/vnd.in-toto+json"
ATTESTATION_ARTIFACT = "application/vnd.docker.attestation.manifest.v1+json"
CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_JSON = b"{}"
PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
REF_TYPE = "vnd.docker.reference.type"
REF_DIGEST = "vnd.docker.reference.digest"
BUILT = "2026-08-21T10:15:42.123456789Z"
BASE_BUILT = "2026-07-15T17:40:09Z"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def indented(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode()


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(content), "size": len(content), **extra}


@dataclass
class Content:
    """Blobs and manifests to push, children before parents; ``root`` is the one to tag."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[tuple[bytes, str]] = field(default_factory=list)

    @property
    def root(self) -> tuple[bytes, str]:
        return self.manifests[-1]

    def add_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(self, body: bytes, media_type: str) -> dict[str, Any]:
        self.manifests.append((body, media_type))
        return descriptor(media_type, body)

    def merge(self, other: Content) -> None:
        self.blobs |= other.blobs
        self.manifests += other.manifests


def layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A reproducible gzip'd tar: (blob, diff id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), digest_of(tar_bytes)


def image(content: Content, arch: str, *, created: str | None = BUILT, marker: str = "") -> dict[str, Any]:
    """A runnable single-platform image (OCI types), as BuildKit writes it; returns its descriptor."""
    base, base_diff = layer({"bin/sh": f"#!fixture shell for {arch}\n".encode()})
    app, app_diff = layer({"app/hello.txt": f"hello from {arch}{marker}\n".encode()})
    history: list[dict[str, Any]] = [
        {
            "created": BASE_BUILT,
            "created_by": "ADD fixture-rootfs.tar.gz / # buildkit",
            "comment": "buildkit.dockerfile.v0",
        },
        {
            "created": BASE_BUILT,
            "created_by": 'CMD ["/bin/sh"]',
            "comment": "buildkit.dockerfile.v0",
            "empty_layer": True,
        },
        {
            "created": created or BASE_BUILT,
            "created_by": "COPY hello.txt /app/hello.txt # buildkit",
            "comment": "buildkit.dockerfile.v0",
        },
    ]
    if created is None:
        for entry in history:
            entry.pop("created")
    config_doc: dict[str, Any] = {
        "architecture": arch,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
        },
        "history": history,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [base_diff, app_diff]},
    }
    if created is not None:
        config_doc["created"] = created
    config = compact(dict(sorted(config_doc.items())))
    for blob in (config, base, app):
        content.add_blob(blob)
    manifest = indented(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": descriptor(mediatypes.OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, base), descriptor(OCI_LAYER, app)],
        }
    )
    return content.add_manifest(manifest, mediatypes.OCI_MANIFEST) | {"platform": {"architecture": arch, "os": "linux"}}


def statement(predicate_type: str, subject: dict[str, Any], name: str, v1: bool) -> bytes:
    arch = subject["platform"]["architecture"]
    purl = f"pkg:docker/{name}?platform=linux%2F{arch}"
    subjects = [{"name": purl, "digest": {"sha256": subject["digest"].split(":", 1)[1]}}]
    if predicate_type == SPDX:
        predicate: dict[str, Any] = {
            "SPDXID": "SPDXRef-DOCUMENT",
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "name": "sbom",
            "documentNamespace": "https://example.invalid/fixture",
            "creationInfo": {"created": BUILT, "creators": ["Tool: buildkit-v0.17.0", "Tool: syft-v1.0.0"]},
            "packages": [],
        }
    else:
        predicate = {
            "builder": {"id": ""},
            "buildType": "https://mobyproject.org/buildkit@v1",
            "materials": [],
            "invocation": {"environment": {"platform": f"linux/{arch}"}},
            "metadata": {"buildStartedOn": BUILT, "buildFinishedOn": BUILT, "reproducible": False},
        }
    statement_type = "https://in-toto.io/Statement/v1" if v1 else "https://in-toto.io/Statement/v0.1"
    return compact(
        {"_type": statement_type, "predicateType": predicate_type, "subject": subjects, "predicate": predicate}
    )


def attestation(
    content: Content, subject: dict[str, Any], name: str, predicates: list[str], oci_artifact: bool
) -> dict[str, Any]:
    """The attestation manifest for one platform image, and its index descriptor (unknown/unknown)."""
    layers = []
    for predicate_type in predicates:
        data = statement(predicate_type, subject, name, v1=oci_artifact)
        content.add_blob(data)
        layers.append(descriptor(IN_TOTO, data, annotations={"in-toto.io/predicate-type": predicate_type}))
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST}
    if oci_artifact:
        content.add_blob(EMPTY_JSON)
        manifest["artifactType"] = ATTESTATION_ARTIFACT
        manifest["config"] = descriptor(mediatypes.OCI_EMPTY, EMPTY_JSON, data=base64.b64encode(EMPTY_JSON).decode())
    else:
        # The legacy encoding's fake image config: no "created", no "history".
        config = compact(
            {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
            }
        )
        content.add_blob(config)
        manifest["config"] = descriptor(mediatypes.OCI_CONFIG, config)
    manifest["layers"] = layers
    if oci_artifact:
        manifest["subject"] = {k: subject[k] for k in ("mediaType", "digest", "size")}
    entry = content.add_manifest(indented(manifest), mediatypes.OCI_MANIFEST)
    annotations = {REF_DIGEST: subject["digest"], REF_TYPE: "attestation-manifest"}
    return entry | {"annotations": annotations, "platform": {"architecture": "unknown", "os": "unknown"}}


def attested_index(
    name: str, arches: list[str], predicates: list[str], oci_artifact: bool, marker: str = ""
) -> Content:
    """``docker buildx build --push [--platform ...] [--sbom=true]``: images, then one attestation each."""
    content = Content()
    images = [image(content, arch, marker=marker) for arch in arches]
    attestations = [attestation(content, img, name, predicates, oci_artifact) for img in images]
    content.add_manifest(
        indented({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": images + attestations}),
        mediatypes.OCI_INDEX,
    )
    return content


def single_image(arch: str = "amd64", created: str | None = BUILT, marker: str = "") -> Content:
    """A plain image manifest with no index (``--provenance=false``, or a classic ``docker push``)."""
    content = Content()
    image(content, arch, created=created, marker=marker)
    return content


def cache(image_manifest: bool) -> Content:
    """``--cache-to type=registry``: an image manifest (BuildKit >= 0.21) or the legacy index of blobs."""
    content = Content()
    layers = []
    for i, arch in enumerate(("amd64", "stage")):
        blob, diff = layer({f"cache/{arch}.bin": f"cached layer {i}\n".encode()})
        content.add_blob(blob)
        annotations = {"buildkit/createdat": "2026-08-21T10:15:41.000000001Z", "containerd.io/uncompressed": diff}
        layers.append(descriptor(OCI_LAYER, blob, annotations=annotations))
    config = compact(
        {
            "layers": [{"blob": layers[0]["digest"], "parent": -1}, {"blob": layers[1]["digest"]}],
            "records": [
                {"digest": "sha256:" + "1" * 64},
                {
                    "layers": [{"layer": 0, "createdAt": "2026-08-21T10:15:41.000000001Z"}],
                    "digest": "sha256:" + "2" * 64,
                },
            ],
        }
    )
    content.add_blob(config)
    config_descriptor = descriptor(CACHE_CONFIG, config)
    if image_manifest:
        body = compact(
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": config_descriptor, "layers": layers}
        )
        content.add_manifest(body, mediatypes.OCI_MANIFEST)
    else:
        body = compact(
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [*layers, config_descriptor]}
        )
        content.add_manifest(body, mediatypes.OCI_INDEX)
    return content


def artifact_for(subject: dict[str, Any], artifact_type: str, payload: bytes, payload_type: str) -> Content:
    """An OCI 1.1 artifact (empty config, ``artifactType``) attached to ``subject``."""
    content = Content()
    content.add_blob(EMPTY_JSON)
    content.add_blob(payload)
    body = indented(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(mediatypes.OCI_EMPTY, EMPTY_JSON),
            "layers": [descriptor(payload_type, payload)],
            "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
            "annotations": {"org.opencontainers.image.created": BUILT},
        }
    )
    content.add_manifest(body, mediatypes.OCI_MANIFEST)
    return content
