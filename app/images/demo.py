"""``kura demo``: push BuildKit-realistic images that reproduce what confuses people, then explain them."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from app.images import buildkit
from app.images.buildkit import Content, descriptor
from app.images.remote import push
from storage import mediatypes


@dataclass(frozen=True)
class Demo:
    repository: str
    tag: str
    what: str


DEMOS = [
    Demo(
        "demo/app",
        "legacy",
        "docker buildx build --platform linux/amd64,linux/arm64 --push (BuildKit 0.11-0.31: legacy attestations)",
    ),
    Demo(
        "demo/app", "oci-artifact", "the same with BuildKit >= 0.32 (OCI-artifact attestations: subject + empty config)"
    ),
    Demo("demo/app", "sbom", "--sbom=true --provenance=true, one platform: still an index, SBOM + provenance"),
    Demo("demo/app", "ci", "a CI-style single-platform image with no index (Windows/ARM hosts pull it and fail)"),
    Demo("demo/app", "no-provenance", "--provenance=false --platform linux/amd64,linux/arm64: a plain index"),
    Demo("demo/app", "reproducible", "SOURCE_DATE_EPOCH=0: created is 1970-01-01 on purpose"),
    Demo("demo/cache", "buildcache", "--cache-to type=registry (BuildKit >= 0.21: image manifest + cache config)"),
    Demo("demo/cache", "legacy", "--cache-to type=registry,image-manifest=false (an index whose children are blobs)"),
    Demo("demo/artifact", "v1", "an image with an SBOM artifact attached through `subject` (see referrers)"),
]


def content_for(demo: Demo, host: str) -> list[tuple[Content, str | None]]:
    """What to push for one demo: (content, tag) pairs; untagged content is pushed by digest first."""
    name = f"{host}/{demo.repository}:{demo.tag}"
    if demo.tag == "legacy" and demo.repository == "demo/app":
        return [(buildkit.attested_index(name, ["amd64", "arm64"], [buildkit.PROVENANCE_V02], False), demo.tag)]
    if demo.tag == "oci-artifact":
        return [(buildkit.attested_index(name, ["amd64", "arm64"], [buildkit.PROVENANCE_V1], True, " (oci)"), demo.tag)]
    if demo.tag == "sbom":
        return [
            (
                buildkit.attested_index(name, ["amd64"], [buildkit.SPDX, buildkit.PROVENANCE_V02], False, " (sbom)"),
                demo.tag,
            )
        ]
    if demo.tag == "ci":
        return [(buildkit.single_image("amd64", marker=" (ci)"), demo.tag)]
    if demo.tag == "no-provenance":
        content = Content()
        images = [buildkit.image(content, arch, marker=" (no provenance)") for arch in ("amd64", "arm64")]
        index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": images}
        content.add_manifest(buildkit.indented(index), mediatypes.OCI_INDEX)
        return [(content, demo.tag)]
    if demo.tag == "reproducible":
        return [(buildkit.single_image("amd64", created="1970-01-01T00:00:00Z", marker=" (reproducible)"), demo.tag)]
    if demo.tag == "buildcache":
        return [(buildkit.cache(image_manifest=True), demo.tag)]
    if demo.repository == "demo/cache":
        return [(buildkit.cache(image_manifest=False), demo.tag)]
    image = buildkit.single_image("amd64", marker=" (with sbom)")
    subject = descriptor(mediatypes.OCI_MANIFEST, image.root[0])
    sbom = buildkit.compact({"spdxVersion": "SPDX-2.3", "name": "demo-artifact", "packages": []})
    attached = buildkit.artifact_for(subject, "application/spdx+json", sbom, "application/spdx+json")
    return [(image, demo.tag), (attached, None)]


async def push_all(client: httpx.AsyncClient, host: str) -> list[tuple[Demo, str]]:
    pushed = []
    for demo in DEMOS:
        root = ""
        for content, tag in content_for(demo, host):
            digest = await push(client, demo.repository, content, tag)
            root = root or digest
        pushed.append((demo, root))
    return pushed
