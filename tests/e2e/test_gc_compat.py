"""Garbage collection and registry:2 (Debian's docker-registry) on the same trees.

- A root collected by Kura is served by registry:2, and registry:2's own ``garbage-collect`` runs on it.
- On a root written by registry:2, Kura keeps everything registry:2's GC keeps, plus the index children
  and referrers that ``garbage-collect --delete-untagged`` wrongly removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx
import pytest

from app.images import buildkit
from app.images.buildkit import Content
from storage import mediatypes
from tests.e2e.servers import REGISTRY2, kura, registry2, require

pytestmark = pytest.mark.e2e


def push(url: str, repository: str, content: Content, tag: str | None = None) -> str:
    with httpx.Client(base_url=url, timeout=60) as client:
        for digest, data in content.blobs.items():
            r = client.post(f"/v2/{repository}/blobs/uploads/")
            assert r.status_code == 202, r.text
            location = httpx.URL(r.headers["location"]).copy_merge_params({"digest": digest})  # keeps _state
            r = client.put(location, content=data)
            assert r.status_code == 201, r.text
        digest = ""
        for i, (body, media_type) in enumerate(content.manifests):
            digest = buildkit.digest_of(body)
            reference = tag if tag and i == len(content.manifests) - 1 else digest
            r = client.put(
                f"/v2/{repository}/manifests/{reference}", content=body, headers={"content-type": media_type}
            )
            assert r.status_code == 201, r.text
    return digest


def pulls(url: str, repository: str, reference: str) -> bool:
    """The manifest and everything it references (transitively) are served."""
    accept = ", ".join(sorted(mediatypes.MANIFESTS))
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.get(f"/v2/{repository}/manifests/{reference}", headers={"accept": accept})
        if r.status_code != 200:
            return False
        document = r.json()
        blobs = [d["digest"] for d in [document.get("config"), *document.get("layers", [])] if d]
        children = [c["digest"] for c in document.get("manifests", []) if c["mediaType"] in mediatypes.MANIFESTS]
        blobs += [c["digest"] for c in document.get("manifests", []) if c["mediaType"] not in mediatypes.MANIFESTS]
        if any(client.get(f"/v2/{repository}/blobs/{b}").status_code != 200 for b in blobs):
            return False
    return all(pulls(url, repository, c) for c in children)


def config(root: str) -> str:
    path = os.path.join(os.path.dirname(root), f"{os.path.basename(root)}.yml")
    with open(path, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    return path


def registry2_gc(root: str, *flags: str) -> str:
    result = subprocess.run(
        [require(REGISTRY2), "garbage-collect", *flags, config(root)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def kura_gc(root: str, *flags: str) -> str:
    argv = [sys.executable, "-m", "app", "garbage-collect", "--root", root, *flags]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def blob_files(root: str) -> set[str]:
    found = set()
    for directory, _, files in os.walk(os.path.join(root, "docker/registry/v2/blobs")):
        if "data" in files:
            found.add(os.path.basename(directory))
    return found


def content_set() -> dict[str, tuple[Content, str | None]]:
    """A multi-arch index with attestations, a signed image (an untagged referrer), and garbage."""
    image = buildkit.single_image("amd64", marker="signed")
    subject = buildkit.descriptor(mediatypes.OCI_MANIFEST, image.root[0])
    return {
        "index": (buildkit.attested_index("c/app:1", ["amd64", "arm64"], [buildkit.PROVENANCE_V02], False), "1"),
        "image": (image, "v1"),
        "signature": (buildkit.artifact_for(subject, "application/example.sig", b"sig", "application/example"), None),
        "cache": (buildkit.cache(image_manifest=False), "buildcache"),
        "garbage": (buildkit.single_image("arm64", marker="garbage"), None),
    }


def test_a_root_collected_by_kura_serves_on_registry2(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "root")
    os.makedirs(root)
    pushed = {}
    with kura(root) as url:
        for name, (content, tag) in content_set().items():
            repository = "c/cache" if name == "cache" else "c/app"
            pushed[name] = (repository, tag or push(url, repository, content), push(url, repository, content, tag))
    out = kura_gc(root, "--offline", "--delete-untagged")
    assert "c/app" in out
    with registry2(root) as url:
        for name, (repository, reference, _) in pushed.items():
            assert pulls(url, repository, reference) == (name != "garbage"), name
    registry2_gc(root)  # registry:2's own GC runs on a Kura root (without -m: it knows no referrers)
    with kura(root) as url:
        for name, (repository, reference, _) in pushed.items():
            assert pulls(url, repository, reference) == (name != "garbage"), name


def test_kura_keeps_what_registry2_keeps_plus_children_and_referrers(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "root")
    os.makedirs(root)
    pushed = {}
    with registry2(root) as url:
        for name, (content, tag) in content_set().items():
            repository = "c/cache" if name == "cache" else "c/app"
            pushed[name] = (repository, push(url, repository, content, tag))
    theirs, ours = root + "-registry2", root + "-kura"
    shutil.copytree(root, theirs, symlinks=True)
    shutil.copytree(root, ours, symlinks=True)

    registry2_gc(theirs, "--delete-untagged")
    kura_gc(ours, "--offline", "--delete-untagged")

    kept_by_registry2, kept_by_kura = blob_files(theirs), blob_files(ours)
    assert kept_by_registry2 <= kept_by_kura
    extra = kept_by_kura - kept_by_registry2
    signature = pushed["signature"][1].split(":")[1]
    assert signature in extra  # registry:2 knows no subject: it removed the untagged signature
    garbage = pushed["garbage"][1].split(":")[1]
    assert garbage not in kept_by_kura
    with kura(ours) as url:
        for name, (repository, digest) in pushed.items():
            assert pulls(url, repository, digest) == (name != "garbage"), name
