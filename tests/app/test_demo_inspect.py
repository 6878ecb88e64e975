from __future__ import annotations

from datetime import UTC, datetime

import httpx
from starlette.applications import Starlette

from app.images import buildkit, explain
from app.images.demo import DEMOS, push_all

NOW = datetime(2026, 11, 23, tzinfo=UTC)


async def reports(app: Starlette, client: httpx.AsyncClient, platform: str | None = None) -> dict[str, explain.Report]:
    pushed = await push_all(client, "registry.test")
    assert len(pushed) == len(DEMOS)
    source = explain.LocalSource(app.state.registry)
    return {
        f"{d.repository}:{d.tag}": await explain.explain(source, d.repository, d.tag, platform, now=NOW)
        for d, _ in pushed
    }


def ids(report: explain.Report) -> set[str]:
    return {f["id"] for f in report.findings}


async def test_every_demo_is_explained(app: Starlette, client: httpx.AsyncClient) -> None:
    r = await reports(app, client)

    legacy = r["demo/app:legacy"]
    assert legacy.kind == "index"
    assert [(e.kind, e.platform) for e in legacy.entries] == [
        ("image", "linux/amd64"),
        ("image", "linux/arm64"),
        ("attestation", "unknown/unknown"),
        ("attestation", "unknown/unknown"),
    ]
    amd64, _, att_amd64, att_arm64 = legacy.entries
    assert (att_amd64.attests, att_amd64.attests_platform) == (amd64.digest, "linux/amd64")
    assert att_arm64.attests_platform == "linux/arm64"
    assert att_amd64.predicates == [buildkit.PROVENANCE_V02]
    assert att_amd64.created is None and amd64.created == buildkit.BUILT
    assert "attestations-in-index" in ids(legacy) and "oci-artifact-attestations" not in ids(legacy)

    oci = r["demo/app:oci-artifact"]
    assert "oci-artifact-attestations" in ids(oci)
    image, attestation = oci.entries[0], oci.entries[2]
    assert [x["digest"] for x in image.referrers] == [attestation.digest]
    assert image.referrers[0]["artifactType"] == buildkit.ATTESTATION_ARTIFACT

    sbom = r["demo/app:sbom"]
    assert sbom.entries[1].predicates == [buildkit.SPDX, buildkit.PROVENANCE_V02]

    ci = r["demo/app:ci"]
    assert ci.kind == "image" and "single-platform" in ids(ci)

    plain = r["demo/app:no-provenance"]
    assert "attestations-in-index" not in ids(plain) and all(e.kind == "image" for e in plain.entries)

    reproducible = r["demo/app:reproducible"]
    assert "epoch-created" in ids(reproducible)
    assert reproducible.entries[0].created_note is not None and "56 years ago" in reproducible.entries[0].created_note

    for tag in ("buildcache", "legacy"):
        cache = r[f"demo/cache:{tag}"]
        assert cache.kind == "cache" and "build-cache" in ids(cache)
    assert r["demo/cache:legacy"].media_type == "application/vnd.oci.image.index.v1+json"
    assert {e.kind for e in r["demo/cache:legacy"].entries} == {"blob"}

    artifact = r["demo/artifact:v1"]
    assert [x["artifactType"] for x in artifact.entries[0].referrers] == ["application/spdx+json"]


async def test_platform_check(app: Starlette, client: httpx.AsyncClient) -> None:
    r = await reports(app, client, platform="windows/amd64")
    finding = next(f for f in r["demo/app:no-provenance"].findings if f["id"] == "no-matching-platform")
    assert "linux/amd64, linux/arm64" in finding["text"]
    assert "no-matching-platform" not in ids((await reports(app, client, platform="linux/arm64"))["demo/app:legacy"])


async def test_text_rendering(app: Starlette, client: httpx.AsyncClient) -> None:
    report = (await reports(app, client))["demo/app:legacy"]
    text = explain.render(report, "registry.test/demo/app", "legacy")
    assert text.startswith("Name:      registry.test/demo/app:legacy\n")
    assert "Platform:    unknown/unknown" in text
    assert f"Attests:     linux/amd64 image {report.entries[0].digest}" in text
    assert "Created:     not set" in text and "56 years ago" in text
    assert "1970" not in text.split("Explanation:")[0]  # never rendered as a date
    assert "--provenance=false" in text and "BUILDX_NO_DEFAULT_ATTESTATIONS=1" in text


async def test_inspect_over_http(client: httpx.AsyncClient) -> None:
    await push_all(client, "registry.test")
    r = await client.get("/_kura/v1/inspect/demo/app/manifests/legacy", params={"platform": "linux/s390x"})
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "index" and len(body["entries"]) == 4
    assert "no-matching-platform" in {f["id"] for f in body["findings"]}
    missing = await client.get("/_kura/v1/inspect/demo/app/manifests/nope")
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_demo_is_stored_byte_exact(client: httpx.AsyncClient) -> None:
    from app.images.demo import content_for

    await push_all(client, "registry.test")
    for demo in DEMOS:
        for content, _ in content_for(demo, "registry.test"):
            for body, media_type in content.manifests:
                g = await client.get(f"/v2/{demo.repository}/manifests/{buildkit.digest_of(body)}")
                assert g.content == body and g.headers["content-type"] == media_type
