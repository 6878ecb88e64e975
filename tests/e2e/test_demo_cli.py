"""``kura demo`` and ``kura inspect`` as a user runs them, and the demo images through skopeo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.images.demo import DEMOS
from tests.e2e.conftest import Skopeo
from tests.e2e.servers import REPO, kura

pytestmark = pytest.mark.e2e


def kura_cli(*args: str, rc: int = 0) -> str:
    result = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == rc, result.stderr
    return result.stdout if rc == 0 else result.stdout + result.stderr


def test_demo_then_inspect(tmp_path: Path, root: str, skopeo: Skopeo) -> None:
    with kura(root) as url:
        host = url.removeprefix("http://")
        out = kura_cli("demo", "--registry", host)  # host:port, as inspect takes it
        assert f"{host}/demo/app:legacy" in out and f"{host}/demo/cache:legacy" in out

        text = kura_cli("inspect", f"{host}/demo/app:legacy")
        assert "Platform:    unknown/unknown" in text and "Attests:     linux/amd64 image sha256:" in text
        assert "years ago" in text and "--provenance=false" in text

        report = json.loads(kura_cli("inspect", "--json", f"{host}/demo/app:oci-artifact"))
        assert {f["id"] for f in report["findings"]} >= {"attestations-in-index", "oci-artifact-attestations"}
        assert (
            report["entries"][0]["referrers"][0]["artifactType"]
            == "application/vnd.docker.attestation.manifest.v1+json"
        )

        # A platform that matches nothing is a failure (exit 1) that still explains why
        ci_out = kura_cli("inspect", "--json", "--platform", "windows/amd64", f"{host}/demo/app:ci", rc=1)
        ci = json.loads(ci_out[: ci_out.rindex("}") + 1])
        assert "single-platform" in {f["id"] for f in ci["findings"]}
        assert ci_out.rstrip().endswith("no entry for platform windows/amd64")
        kura_cli("inspect", "--platform", "linux/arm64", f"{host}/demo/app:legacy")
        kura_cli("inspect", "--platform", "linux/riscv64", f"{host}/demo/app:legacy", rc=1)

        missing = kura_cli("inspect", f"{host}/demo/app:nope", rc=1).strip()
        assert (
            missing == f"kura inspect: {host}/demo/app:nope: manifest unknown (MANIFEST_UNKNOWN), HTTP 404 from {url}"
        )

        # Every demo image, as text and as JSON: the finding that explains it is there.
        expected = {
            "demo/app:legacy": "attestations-in-index",
            "demo/app:oci-artifact": "oci-artifact-attestations",
            "demo/app:sbom": "attestations-in-index",
            "demo/app:ci": "single-platform",
            "demo/app:reproducible": "epoch-created",
            "demo/cache:buildcache": "build-cache",
            "demo/cache:legacy": "build-cache",
            "demo/artifact:v1": "single-platform",
        }
        for item in DEMOS:
            ref = f"{host}/{item.repository}:{item.tag}"
            text = kura_cli("inspect", ref)
            report = json.loads(kura_cli("inspect", "--json", ref))
            assert text.startswith(f"Name:      {ref}\n") and report["digest"] in text
            finding = expected.get(f"{item.repository}:{item.tag}")
            if finding is not None:
                assert finding in {f["id"] for f in report["findings"]}, ref
            else:  # the plain multi-platform index: nothing to warn about
                assert report["findings"] == [], ref

        # skopeo copies every demo index with all its children, byte for byte, into a second repository.
        for tag in ("legacy", "oci-artifact", "sbom", "no-provenance"):
            skopeo.copy(f"docker://{host}/demo/app:{tag}", f"docker://{host}/copy/app:{tag}", "--all")
            with httpx.Client(base_url=url) as c:
                a = c.get(f"/v2/demo/app/manifests/{tag}")
                b = c.get(f"/v2/copy/app/manifests/{tag}")
                assert (
                    a.content == b.content and a.headers["docker-content-digest"] == b.headers["docker-content-digest"]
                )
        layout = tmp_path / "layout"
        skopeo.copy(f"docker://{host}/demo/app:legacy", f"oci:{layout}:legacy", "--all")
        index = json.loads((layout / "index.json").read_text())
        assert index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json"

    # The same explanation from the storage root, with no server.
    local = kura_cli("inspect", "--root", root, "demo/cache:legacy")
    assert "BuildKit registry cache" in local and "Kind:      cache" in local
