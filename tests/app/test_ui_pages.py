"""The web UI's pages over the demo images and small pushed images: what each shows, and escaping."""

from __future__ import annotations

import asyncio
import re

import httpx
from starlette.applications import Starlette

from app.config import Settings
from app.images import buildkit
from app.images.demo import push_all
from app.ui import render
from tests.app.uikit import annotated_image
from tests.conftest import client_of, started
from tests.oci import push_blob, push_image, random_image
from tests.storage.gctree import HOUR, age, collect

HOSTILE = "<script>alert(1)</script>"


def cells(html: str, css_class: str) -> list[str]:
    return re.findall(rf'<tr class="{css_class}">(.*?)</tr>', html, re.S)


async def test_repositories_page_groups_by_namespace_with_counts_and_sizes(client: httpx.AsyncClient) -> None:
    await push_all(client, "registry.test")
    await push_image(client, "solo", random_image(layers=1, seed=3), "v1")
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<h2 id="ns-1">demo</h2>' in r.text and '<h2 id="ns-2">(top level)</h2>' in r.text
    row = re.search(
        r'<a href="/r/demo/app">demo/app</a></td>\s*<td class="num">(\d+)</td>\s*<td[^>]*>([^<]+)</td>', r.text
    )
    assert row is not None and row[1] == "6" and row[2].endswith("KiB")
    assert "Content-Security-Policy" in r.headers and r.headers["x-frame-options"] == "DENY"

    found = await client.get("/", params={"q": "cache"})
    assert 'href="/r/demo/cache"' in found.text and 'href="/r/demo/app"' not in found.text


async def test_repositories_are_paginated_by_cursor(client: httpx.AsyncClient) -> None:
    image = random_image(layers=1, seed=4)
    for i in range(55):
        await push_image(client, f"many/r{i:03d}", image, "v1")
    first = await client.get("/")
    assert first.text.count('href="/r/many/') == 50
    link = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert link is not None
    second = await client.get(link[1].replace("&amp;", "&"))
    names = re.findall(r'href="/r/(many/r\d+)"', second.text)
    assert names == [f"many/r{i:03d}" for i in range(50, 55)] and 'rel="next"' not in second.text


async def test_repository_page_shows_kinds_platforms_and_created(client: httpx.AsyncClient) -> None:
    await push_all(client, "registry.test")
    r = await client.get("/r/demo/app")
    assert r.status_code == 200
    tags = re.findall(r'<td><a href="/r/demo/app/-/manifests/([^"]+)">', r.text)
    assert tags == ["ci", "legacy", "no-provenance", "oci-artifact", "reproducible", "sbom"]
    legacy = r.text[r.text.index('manifests/legacy"') : r.text.index('manifests/no-provenance"')]
    assert ">index</span>" in legacy and "+ 2 attestations" in legacy
    assert "linux/amd64" in legacy and "linux/arm64" in legacy and "1970" not in legacy
    assert buildkit.BUILT[:10] in legacy
    reproducible = r.text[r.text.index('manifests/reproducible"') : r.text.index('manifests/sbom"')]
    assert "1970-01-01" in reproducible and "on purpose" in reproducible

    cache = await client.get("/r/demo/cache")
    assert cache.text.count(">cache</span>") == 2 and "not an image config" in cache.text


async def test_tags_sort_numerically_and_paginate(client: httpx.AsyncClient) -> None:
    image = random_image(layers=1, seed=5)
    for tag in ["v10", "v2", "v1", *[f"t{i}" for i in range(110)]]:
        await push_image(client, "sorted", image, tag)
    first = await client.get("/r/sorted")
    tags = re.findall(r'<td><a href="/r/sorted/-/manifests/([^"]+)">', first.text)
    assert len(tags) == 100 and tags[:3] == ["t0", "t1", "t2"] and tags[10] == "t10"
    assert "page 1 of 2 (113 tags)" in first.text
    last = await client.get("/r/sorted", params={"page": "2"})
    assert re.findall(r'<td><a href="/r/sorted/-/manifests/([^"]+)">', last.text)[-3:] == ["v1", "v2", "v10"]
    assert "page 1 of 2" in (await client.get("/r/sorted", params={"page": "²"})).text
    filtered = await client.get("/r/sorted", params={"q": "v"})
    assert re.findall(r'<td><a href="/r/sorted/-/manifests/([^"]+)">', filtered.text) == ["v1", "v2", "v10"]


async def test_index_page_explains_attestations_and_links_them(client: httpx.AsyncClient) -> None:
    await push_all(client, "registry.test")
    r = await client.get("/r/demo/app/-/manifests/legacy")
    assert r.status_code == 200
    assert "attestation manifest(s) listed as platform unknown/unknown" in r.text
    images = re.findall(r'<tr class="entry-image">.*?manifests/(sha256:[0-9a-f]+)"', r.text, re.S)
    attestations = cells(r.text, "entry-attestation")
    assert len(images) == 2 and len(attestations) == 2
    assert f'attests the <a href="/r/demo/app/-/manifests/{images[0]}">linux/amd64 image' in attestations[0]
    assert buildkit.PROVENANCE_V02 in attestations[0] and "<em>not set</em>" in attestations[0]
    assert "1970-01-01" not in r.text
    host = "registry.test"
    assert f"docker pull {host}/demo/app:legacy" in r.text
    assert f"docker pull --platform linux/arm64 {host}/demo/app@sha256:" in r.text


async def test_image_page_shows_layers_shared_across_repositories(client: httpx.AsyncClient) -> None:
    image = random_image(layers=2, seed=6)
    for repository in ("one", "two", "three"):
        await push_image(client, repository, image, "v1")
    await push_image(client, "other", random_image(layers=1, seed=8), "v1")
    share = r"<td>(config|layer)</td>.*?<td class=\"num\">[^<]+</td>\s*<td class=\"num\">(\d+|<span[^>]*>…</span>)</td>"
    r = await client.get("/r/two/-/manifests/v1")
    # The first page does not wait for a walk of the whole store: the counts come with a later one.
    assert [count for _, count in re.findall(share, r.text, re.S)] == [
        '<span title="counting; reload in a moment">…</span>'
    ] * 3
    for _ in range(400):
        await asyncio.sleep(0.01)  # the background walk runs on this loop
        r = await client.get("/r/two/-/manifests/v1")
        if "…</span>" not in r.text:
            break
    assert re.findall(share, r.text, re.S) == [("config", "3"), ("layer", "3"), ("layer", "3")]
    assert "&#34;architecture&#34;: &#34;amd64&#34;" in r.text  # the config, pretty-printed (and escaped)
    assert "single-platform image (linux/amd64) without an index" in r.text


async def test_referrers_are_shown_as_a_tree(client: httpx.AsyncClient) -> None:
    await push_all(client, "registry.test")
    r = await client.get("/r/demo/artifact/-/manifests/v1")
    tree = r.text[r.text.index('id="referrers-h"') :]
    assert "application/spdx+json" in tree and 'href="/r/demo/artifact/-/manifests/sha256:' in tree
    oci = await client.get("/r/demo/app/-/manifests/oci-artifact")
    assert buildkit.ATTESTATION_ARTIFACT in cells(oci.text, "entry-image")[0]


async def test_a_signature_of_an_sbom_is_nested_under_it(client: httpx.AsyncClient) -> None:
    image = random_image(layers=1, seed=9)
    await push_image(client, "signed", image, "v1")
    subject = {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest)}
    sbom = buildkit.artifact_for(subject, "application/spdx+json", b"{}", "application/spdx+json")
    from app.images.remote import push

    sbom_digest = await push(client, "signed", sbom, None)
    sbom_descriptor = {"mediaType": sbom.root[1], "digest": sbom_digest, "size": len(sbom.root[0])}
    signature = buildkit.artifact_for(sbom_descriptor, "application/vnd.dev.cosign.artifact.sig.v1+json", b"sig", "x")
    await push(client, "signed", signature, None)
    r = await client.get("/r/signed/-/manifests/v1")
    tree = r.text[r.text.index('id="referrers-h"') :]
    outer = tree.index("application/spdx+json")
    assert tree.index("application/vnd.dev.cosign.artifact.sig.v1+json") > outer
    assert tree.count('<ul class="tree">') >= 2


async def test_hostile_annotations_and_queries_are_text(client: httpx.AsyncClient) -> None:
    image = annotated_image({"org.opencontainers.image.title": HOSTILE, HOSTILE: "key"})
    await push_image(client, "hostile", image, "v1")
    r = await client.get("/r/hostile/-/manifests/v1")
    assert r.status_code == 200
    assert HOSTILE not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    searched = await client.get("/", params={"q": HOSTILE})
    assert HOSTILE not in searched.text and "&lt;script&gt;" in searched.text
    tags = await client.get("/r/hostile", params={"q": HOSTILE})
    assert HOSTILE not in tags.text
    bad = await client.get("/r/%3Cscript%3Ealert(1)%3C/script%3E")
    assert bad.status_code == 400 and HOSTILE not in bad.text and "invalid repository name" in bad.text
    missing = await client.get("/r/hostile/-/manifests/<script>alert(1)")
    assert missing.status_code == 404 and "<script>alert(1)" not in missing.text


async def test_unknown_things_are_html_errors_with_the_api_status(client: httpx.AsyncClient) -> None:
    await push_image(client, "known", random_image(layers=1, seed=10), "v1")
    assert (await client.get("/r/unknown")).status_code == 404
    assert (await client.get("/r/known/-/manifests/nope")).status_code == 404
    assert (await client.get("/r/known/-/tags/nope/history")).status_code == 404
    r = await client.get("/r/known/-/manifests/sha256:" + "0" * 64)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


async def test_storage_page_shows_totals_and_what_dedup_saves(client: httpx.AsyncClient) -> None:
    image = random_image(layers=1, size=4096, seed=11)
    await push_image(client, "a", image, "v1")
    await push_image(client, "b", image, "v1")
    r = await client.get("/-/storage")
    assert r.status_code == 200
    one_copy = sum(len(b) for b in image.blobs.values()) + len(image.manifest)
    saved = re.search(r"Deduplication saves</dt>\s*<dd>([^<]+)<", r.text)
    assert saved is not None and saved[1].strip() == render.size(one_copy)  # b's copy is a's
    rows = re.findall(r'<td><a href="/r/(\w+)">\w+</a></td><td class="num">([^<]+)</td>', r.text)
    assert rows == [("a", render.size(one_copy)), ("b", render.size(one_copy))]
    assert "No garbage collection has run yet" in r.text


async def test_the_ui_leaves_the_api_alone(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert (await client.get("/v2/_catalog")).json() == {"repositories": []}
    assert (await client.get("/-/static/kura.css")).headers["content-type"].startswith("text/css")
    assert (await client.get("/-/static/nope.css")).status_code == 404


async def test_the_ui_can_be_switched_off(settings: Settings) -> None:
    off = Settings.model_validate(settings.model_dump() | {"kura": {"ui": {"enabled": False}}})
    async with started(off) as application, client_of(application) as c:
        r = await c.get("/")
        assert r.status_code == 404 and "errors" in r.json()  # the API's answer to a path it does not serve
        assert not hasattr(application.state, "ui")


async def test_pages_are_not_cached_and_set_a_strict_session_cookie(app: Starlette, client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.headers["cache-control"] == "no-store"
    assert "kura_ui=" in r.headers["set-cookie"] and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()


async def test_storage_page_lists_the_garbage_collections_and_plans(app: Starlette, client: httpx.AsyncClient) -> None:
    driver = app.state.registry.driver
    await push_blob(client, "g", b"garbage nobody links")
    age(driver, 2 * HOUR)
    await collect(driver, dry_run=True)
    await collect(driver)
    r = await client.get("/-/storage")
    runs = re.findall(r"<td>(plan \(dry run\)|collection)</td>\s*<td class=\"num\">(\d+) of (\d+)</td>", r.text)
    assert runs == [("collection", "1", "1"), ("plan (dry run)", "1", "1")]  # newest first


async def test_the_session_cookie_is_secure_over_tls(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://registry.test") as tls:
        assert "secure" in (await tls.get("/")).headers["set-cookie"].lower()
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as plain:
        assert "secure" not in (await plain.get("/")).headers["set-cookie"].lower()
